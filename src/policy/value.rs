//! Typed values: what an option value or an operand may be.
//!
//! Every check answers with the reason a value was refused; `describe` says what would have been
//! accepted, so a denial can tell the caller what to write instead.
#![forbid(unsafe_code)]

use std::path::{Component, Path};
use std::sync::{Arc, OnceLock};

use regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::trust::{self, Kind};

/// The longest value any typed check looks at.
const MAX_VALUE_LEN: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ValueSpec {
    /// A type defined under `[types]`, shared by name.
    Named(Arc<NamedType>),
    Enum(Vec<String>),
    Regex(Pattern),
    Int {
        min: i64,
        max: i64,
    },
    List {
        item: Box<ValueSpec>,
        sep: char,
        max_items: usize,
    },
    Path(PathRule),
    AnyOf(Vec<ValueSpec>),
    /// A network interface that exists on this host (`/sys/class/net/NAME`).
    Iface,
    /// A value with docker's grammar (image references, `-p`, `-v`, `--gpus`, ...).
    Docker(super::docker::values::DockerType),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NamedType {
    pub name: String,
    pub description: Option<String>,
    pub spec: ValueSpec,
}

/// An anchored regular expression over printable ASCII.
///
/// Values are printable ASCII before a pattern sees them, so patterns are built without
/// Unicode: `\d`, `\w`, `\s` and `(?i)` mean their ASCII sense, and Unicode classes
/// (`\p{...}`) are refused when the policy loads. (This also keeps Unicode's tables out of the
/// binary, which every request would otherwise pay to load.)
///
/// The syntax is checked when the policy loads; the automaton is built on first use, because a
/// request touches a handful of the policy's patterns and building one can take 100 µs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pattern {
    pub source: String,
    anchored: String,
    #[serde(skip)]
    re: OnceLock<Option<Regex>>,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        let anchored = format!("^(?:{source})$");
        let ast = regex_syntax::ast::parse::Parser::new()
            .parse(&anchored)
            .map_err(|e| e.to_string())?;
        regex_syntax::ast::visit(&ast, NoUnicodeFlag)?;
        regex_syntax::hir::translate::TranslatorBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .translate(&anchored, &ast)
            .map_err(|e| e.to_string())?;
        Ok(Pattern {
            source: source.to_string(),
            anchored,
            re: OnceLock::new(),
        })
    }

    /// A pattern that cannot be built (over the size limit) matches nothing: fail closed.
    pub fn is_match(&self, value: &str) -> bool {
        printable_ascii(value)
            && self
                .re
                .get_or_init(|| self.automaton().ok())
                .as_ref()
                .is_some_and(|re| re.is_match(value.as_bytes()))
    }

    /// Builds the automaton now; `check` uses it to report patterns that cannot be built.
    pub fn build(&self) -> Result<(), String> {
        self.automaton().map(|_| ()).map_err(|e| e.to_string())
    }

    fn automaton(&self) -> Result<Regex, regex::Error> {
        RegexBuilder::new(&self.anchored).unicode(false).build()
    }
}

/// Refuses the `u` flag: a pattern means the same whichever Unicode tables the build carries.
struct NoUnicodeFlag;

impl regex_syntax::ast::Visitor for NoUnicodeFlag {
    type Output = ();
    type Err = String;

    fn finish(self) -> Result<(), String> {
        Ok(())
    }

    fn visit_pre(&mut self, ast: &regex_syntax::ast::Ast) -> Result<(), String> {
        use regex_syntax::ast::{Ast, Flag, FlagsItemKind, GroupKind};
        let flags = match ast {
            Ast::Flags(f) => Some(&f.flags),
            Ast::Group(g) => match &g.kind {
                GroupKind::NonCapturing(f) => Some(f),
                _ => None,
            },
            _ => None,
        };
        let unicode = flags.is_some_and(|f| {
            f.items
                .iter()
                .any(|i| i.kind == FlagsItemKind::Flag(Flag::Unicode))
        });
        if unicode {
            return Err("the u flag is not available: patterns match printable ASCII, and \\d, \\w, \\s and (?i) have their ASCII meaning".into());
        }
        Ok(())
    }
}

fn printable_ascii(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A path below a fixed directory whose remainder matches a pattern.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathRule {
    pub prefix: String,
    pub name: Pattern,
    pub kind: Kind,
    pub must_exist: bool,
}

impl ValueSpec {
    /// Accepts `value` or says why not.
    pub fn check(&self, value: &str) -> Result<(), String> {
        if value.len() > MAX_VALUE_LEN {
            return Err(format!("longer than {MAX_VALUE_LEN} bytes"));
        }
        match self {
            ValueSpec::Named(t) => t.spec.check(value),
            ValueSpec::Enum(options) => {
                if options.iter().any(|o| o == value) {
                    Ok(())
                } else {
                    Err("not one of the allowed values".into())
                }
            }
            ValueSpec::Regex(p) => {
                if p.is_match(value) {
                    Ok(())
                } else {
                    Err("does not match the allowed pattern".into())
                }
            }
            ValueSpec::Int { min, max } => check_int(value, *min, *max),
            ValueSpec::List {
                item,
                sep,
                max_items,
            } => {
                let items: Vec<&str> = value.split(*sep).collect();
                if items.len() > *max_items {
                    return Err(format!("more than {max_items} items"));
                }
                for it in items {
                    if it.is_empty() {
                        return Err(format!("empty item in the {sep:?}-separated list"));
                    }
                    item.check(it)
                        .map_err(|why| format!("item {it:?}: {why}"))?;
                }
                Ok(())
            }
            ValueSpec::Path(rule) => rule.check(value),
            ValueSpec::AnyOf(specs) => {
                let mut why = Vec::new();
                for s in specs {
                    match s.check(value) {
                        Ok(()) => return Ok(()),
                        Err(e) => why.push(e),
                    }
                }
                Err(why.join("; "))
            }
            ValueSpec::Iface => check_iface(value),
            ValueSpec::Docker(t) => t.check(value),
        }
    }

    /// What this type accepts, in words.
    pub fn describe(&self) -> String {
        match self {
            ValueSpec::Named(t) => match &t.description {
                Some(d) => format!("{} ({d})", t.name),
                None => format!("{} ({})", t.name, t.spec.describe()),
            },
            ValueSpec::Enum(options) => {
                let shown: Vec<&str> = options.iter().take(16).map(String::as_str).collect();
                let more = if options.len() > 16 { ", ..." } else { "" };
                format!("one of {}{more}", shown.join(", "))
            }
            ValueSpec::Regex(p) => format!("text matching {}", p.source),
            ValueSpec::Int { min, max } => format!("a decimal integer from {min} to {max}"),
            ValueSpec::List { item, sep, .. } => {
                format!("a {sep:?}-separated list of {}", item.describe())
            }
            ValueSpec::Path(rule) => format!(
                "{} {}/{} (no symbolic links, root-owned directories)",
                rule.kind.describe(),
                rule.prefix,
                rule.name.source
            ),
            ValueSpec::AnyOf(specs) => {
                let parts: Vec<String> = specs.iter().map(ValueSpec::describe).collect();
                format!("either {}", parts.join(" or "))
            }
            ValueSpec::Iface => "the name of a network interface of this host".into(),
            ValueSpec::Docker(t) => t.describe(),
        }
    }

    /// A short placeholder for synopses: the type name or its only value.
    pub fn placeholder(&self) -> String {
        match self {
            ValueSpec::Named(t) => t.name.to_uppercase(),
            ValueSpec::Enum(options) if options.len() <= 4 => options.join("|"),
            ValueSpec::Int { .. } => "N".into(),
            ValueSpec::Iface => "IFACE".into(),
            ValueSpec::Path(_) => "PATH".into(),
            ValueSpec::Docker(t) => t.placeholder().into(),
            _ => "VALUE".into(),
        }
    }
}

/// Decimal only: no sign unless the range allows negatives, no leading zeros, no `0x`, no `_`.
fn check_int(value: &str, min: i64, max: i64) -> Result<(), String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let well_formed = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && (digits.len() == value.len() || digits != "0");
    if !well_formed {
        return Err("not a plain decimal integer".into());
    }
    let n: i64 = value
        .parse()
        .map_err(|_| "not a plain decimal integer".to_string())?;
    if n < min || n > max {
        return Err(format!("{n} is outside {min}..={max}"));
    }
    Ok(())
}

fn check_iface(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 15
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b))
        && !value.starts_with(['-', '.']);
    if !ok {
        return Err("not an interface name".into());
    }
    if Path::new("/sys/class/net").join(value).exists() {
        Ok(())
    } else {
        Err("no such network interface on this host".into())
    }
}

impl PathRule {
    fn check(&self, value: &str) -> Result<(), String> {
        lexically_clean(value)?;
        let rest = value
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| format!("not below {}", self.prefix))?;
        if !self.name.is_match(rest) {
            return Err(format!(
                "{rest:?} below {} does not match {}",
                self.prefix, self.name.source
            ));
        }
        trust::check_data_path(Path::new(value), self.kind, self.must_exist)
            .map_err(|e| e.to_string())
    }
}

/// Absolute, no `.` or `..` component, no `//`, no trailing `/`.
pub fn lexically_clean(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if value.len() > 1 && value.ends_with('/') {
        return Err("ends with '/'".into());
    }
    if value.contains("//") {
        return Err("contains '//'".into());
    }
    if Path::new(value)
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
        || value.split('/').any(|c| c == "." || c == "..")
    {
        return Err("contains a '.' or '..' component".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_plain_decimal() {
        let cases = [
            ("1", true, "one"),
            ("1000", true, "upper bound"),
            ("0", false, "below the range"),
            ("1001", false, "above the range"),
            ("010", false, "leading zero would be octal to Go"),
            ("0x10", false, "hexadecimal"),
            ("1_000", false, "digit separators"),
            ("+5", false, "explicit sign"),
            ("-1", false, "negative"),
            (" 5", false, "surrounding space"),
            ("", false, "empty"),
            ("99999999999999999999", false, "overflow"),
        ];
        for (v, ok, why) in cases {
            assert_eq!(check_int(v, 1, 1000).is_ok(), ok, "{why}: {v:?}");
        }
        assert!(check_int("-5", -10, 10).is_ok());
        assert!(check_int("-0", -10, 10).is_err());
    }

    #[test]
    fn patterns_are_anchored_and_ascii_only() {
        let p = Pattern::new("[a-z]+").unwrap();
        assert!(p.is_match("abc"));
        assert!(!p.is_match("abc;id"), "anchored at the end");
        assert!(!p.is_match("-abc"), "anchored at the start");
        assert!(!p.is_match("abc\n"), "no trailing newline");
        let w = Pattern::new(r"\w+").unwrap();
        assert!(!w.is_match("d\u{43e}cker"), "a Cyrillic letter is refused");
        assert!(w.is_match("docker_1"));
    }

    #[test]
    fn patterns_have_ascii_meanings_only() {
        let d = Pattern::new(r"\d{2}").unwrap();
        assert!(d.is_match("42"));
        assert!(!d.is_match("\u{664}\u{662}"), "Arabic-Indic digits");
        let i = Pattern::new("(?i)k").unwrap();
        assert!(i.is_match("K") && i.is_match("k"));
        assert!(!i.is_match("\u{212a}"), "the Kelvin sign is not a k");
        let not_slash = Pattern::new("[^/]+").unwrap();
        assert!(not_slash.is_match("a.b") && !not_slash.is_match("a/b"));
        assert!(
            !not_slash.is_match("\u{e9}"),
            "a negated class still takes ASCII only"
        );
        let dot = Pattern::new("a.c").unwrap();
        assert!(dot.is_match("a-c") && !dot.is_match("a\u{e9}c"));
        // Unicode classes have no ASCII meaning: the policy does not load.
        for p in [r"\p{Greek}", r"\pL", r"(?u)\w"] {
            assert!(Pattern::new(p).is_err(), "{p}");
        }
    }

    #[test]
    fn paths_are_checked_lexically_first() {
        for (v, ok) in [
            ("/var/lib/docker/tmpfileA", true),
            ("var/lib/docker/x", false),
            ("/var/lib/docker/../x", false),
            ("/var/lib/docker/./x", false),
            ("/var/lib//docker/x", false),
            ("/var/lib/docker/x/", false),
        ] {
            assert_eq!(lexically_clean(v).is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn lists_check_every_item() {
        let spec = ValueSpec::List {
            item: Box::new(ValueSpec::Enum(vec!["csv".into(), "noheader".into()])),
            sep: ',',
            max_items: 3,
        };
        assert!(spec.check("csv,noheader").is_ok());
        assert!(spec.check("csv,,noheader").is_err());
        assert!(spec.check("csv,xml").is_err());
        assert!(spec.check("csv,csv,csv,csv").is_err());
    }
}
