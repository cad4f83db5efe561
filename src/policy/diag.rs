//! Policy diagnostics: `file:line:col: message`, then the line and a caret under the column.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// The offending source line, for the caret display.
    pub excerpt: Option<String>,
}

impl Diagnostic {
    /// Places `message` at the byte range `span` of `source`.
    pub fn at(file: &str, source: &str, span: Option<Range<usize>>, message: String) -> Self {
        let Some(span) = span else {
            return Diagnostic {
                file: file.to_string(),
                line: 0,
                col: 0,
                message,
                excerpt: None,
            };
        };
        let start = span.start.min(source.len());
        let before = &source[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = source[line_start..start].chars().count() + 1;
        let excerpt = source[line_start..].lines().next().map(str::to_string);
        Diagnostic {
            file: file.to_string(),
            line,
            col,
            message,
            excerpt,
        }
    }

    /// A diagnostic about the file as a whole (cannot be read, not root-owned).
    pub fn whole(file: &str, message: String) -> Self {
        Diagnostic::at(file, "", None, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )?;
        if let Some(text) = &self.excerpt {
            let gutter = self.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {:>col$}",
                "",
                self.line,
                text,
                "",
                "^",
                col = self.col
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let src = "a = 1\nbad = 2\n";
        let d = Diagnostic::at("p.toml", src, Some(6..9), "unknown key".into());
        assert_eq!((d.line, d.col), (2, 1));
        assert!(d.to_string().starts_with("p.toml:2:1: unknown key"));
        assert!(d.to_string().ends_with("| ^"));
    }
}
