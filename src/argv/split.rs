//! Splits an SSH command string (`SSH_ORIGINAL_COMMAND`) into words with POSIX quoting, and
//! refuses everything a shell would have interpreted instead of taking literally.
//!
//! sshd hands a forced command the client's string untouched; a shell would expand, redirect or
//! chain it. The gateway never runs a shell, so a caller who writes `docker ps; id` or
//! `cat $(x)` gets a clear refusal instead of a request that means something else.
#![forbid(unsafe_code)]

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    /// Byte offset in the input.
    pub offset: usize,
    pub kind: SplitErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitErrorKind {
    /// `; & | < > ( ) $` or a backtick outside single quotes.
    ShellSyntax(char),
    /// `* ? [` outside quotes.
    Glob(char),
    /// `~` at the start of a word.
    Tilde,
    /// `#` at the start of a word.
    Comment,
    /// NUL, CR, LF, TAB or any other control character, quoted or not.
    Control(char),
    /// A non-ASCII space or an invisible formatting character.
    Invisible(char),
    /// A quote that is never closed.
    Unbalanced(char),
    /// A backslash at the very end.
    TrailingBackslash,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.offset;
        match self.kind {
            SplitErrorKind::ShellSyntax(c) => write!(
                f,
                "character {c:?} at offset {at} is shell syntax; no shell runs here, so chaining, \
                 redirection and expansion are refused (quote it with '...' if it is data)"
            ),
            SplitErrorKind::Glob(c) => write!(
                f,
                "wildcard {c:?} at offset {at} would be expanded by a shell; quote it with '...' \
                 if it is meant literally"
            ),
            SplitErrorKind::Tilde => write!(
                f,
                "'~' at offset {at} starts a word; home-directory expansion is not supported, \
                 write the absolute path"
            ),
            SplitErrorKind::Comment => write!(
                f,
                "'#' at offset {at} starts a shell comment; quote it if it is data"
            ),
            SplitErrorKind::Control(c) => write!(
                f,
                "control character U+{:04X} at offset {at} is not accepted (one command per \
                 request, no tabs or newlines)",
                c as u32
            ),
            SplitErrorKind::Invisible(c) => write!(
                f,
                "invisible or non-ASCII space character U+{:04X} at offset {at} is not accepted",
                c as u32
            ),
            SplitErrorKind::Unbalanced(q) => {
                write!(f, "quote {q} opened at offset {at} is never closed")
            }
            SplitErrorKind::TrailingBackslash => {
                write!(f, "the command ends with a lone backslash")
            }
        }
    }
}

/// Characters that look like a space or like nothing at all: every Unicode space separator but
/// U+0020, the C1 controls and the format characters (category Cf) a terminal would hide.
pub fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x80..=0x9F | 0xA0 | 0xAD | 0x34F | 0x61C | 0x115F | 0x1160 | 0x1680 | 0x17B4 | 0x17B5
        | 0x180B..=0x180E | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F | 0x3000
        | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single(usize),
    Double(usize),
}

/// Splits `s` into words, or says what a shell would have done with it.
pub fn split(s: &str) -> Result<Vec<String>, SplitError> {
    let err = |offset, kind| Err(SplitError { offset, kind });
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = Quote::None;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c.is_control() {
            return err(at, SplitErrorKind::Control(c));
        }
        if is_invisible(c) {
            return err(at, SplitErrorKind::Invisible(c));
        }
        match quote {
            Quote::Single(_) => {
                if c == '\'' {
                    quote = Quote::None;
                } else {
                    word.push(c);
                }
            }
            Quote::Double(_) => match c {
                '"' => quote = Quote::None,
                '$' | '`' => return err(at, SplitErrorKind::ShellSyntax(c)),
                '\\' => match chars.peek() {
                    Some(&(_, n @ ('$' | '`' | '"' | '\\'))) => {
                        word.push(n);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                _ => word.push(c),
            },
            Quote::None => match c {
                ' ' => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                '\'' => {
                    quote = Quote::Single(at);
                    in_word = true;
                }
                '"' => {
                    quote = Quote::Double(at);
                    in_word = true;
                }
                '\\' => match chars.next() {
                    // The escaped character skips the loop's own checks: repeat them.
                    Some((at, n)) if n.is_control() => return err(at, SplitErrorKind::Control(n)),
                    Some((at, n)) if is_invisible(n) => {
                        return err(at, SplitErrorKind::Invisible(n))
                    }
                    Some((_, n)) => {
                        word.push(n);
                        in_word = true;
                    }
                    None => return err(at, SplitErrorKind::TrailingBackslash),
                },
                ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' => {
                    return err(at, SplitErrorKind::ShellSyntax(c))
                }
                '*' | '?' | '[' => return err(at, SplitErrorKind::Glob(c)),
                '~' if !in_word => return err(at, SplitErrorKind::Tilde),
                '#' if !in_word => return err(at, SplitErrorKind::Comment),
                _ => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
    }
    match quote {
        Quote::Single(at) => err(at, SplitErrorKind::Unbalanced('\'')),
        Quote::Double(at) => err(at, SplitErrorKind::Unbalanced('"')),
        Quote::None => {
            if in_word {
                words.push(word);
            }
            Ok(words)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_way_a_posix_shell_would() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("docker ps", &["docker", "ps"], "plain words"),
            ("  docker   ps  ", &["docker", "ps"], "runs of spaces"),
            (
                "docker ps --format '{{.Names}}'",
                &["docker", "ps", "--format", "{{.Names}}"],
                "single quotes",
            ),
            (
                "docker ps --format {{.Names}}",
                &["docker", "ps", "--format", "{{.Names}}"],
                "braces are ordinary",
            ),
            ("a \"b c\"", &["a", "b c"], "double quotes"),
            ("a 'it''s'", &["a", "its"], "adjacent quoted parts join"),
            ("a ''", &["a", ""], "an empty quoted word is a word"),
            (
                "a \"x\\\"y\"",
                &["a", "x\"y"],
                "escaped quote in double quotes",
            ),
            (
                "a \"x\\ny\"",
                &["a", "x\\ny"],
                "other backslashes stay in double quotes",
            ),
            ("a x\\ y", &["a", "x y"], "escaped space"),
            (
                "a 'x;y|z$(id)'",
                &["a", "x;y|z$(id)"],
                "metacharacters are data inside single quotes",
            ),
            ("a '*'", &["a", "*"], "quoted wildcard"),
            ("a b#c", &["a", "b#c"], "# inside a word is data"),
            ("a b~c", &["a", "b~c"], "~ inside a word is data"),
            ("a key=value", &["a", "key=value"], "= is ordinary"),
            ("", &[], "nothing at all"),
            ("   ", &[], "only spaces"),
        ];
        for (input, want, why) in cases {
            assert_eq!(split(input).unwrap(), *want, "{why}: {input:?}");
        }
    }

    #[test]
    fn refuses_what_a_shell_would_interpret() {
        let cases = [
            (
                "docker ps; id",
                SplitErrorKind::ShellSyntax(';'),
                "command chaining",
            ),
            (
                "docker ps && id",
                SplitErrorKind::ShellSyntax('&'),
                "and-list",
            ),
            ("docker ps | sh", SplitErrorKind::ShellSyntax('|'), "pipe"),
            (
                "docker ps > /etc/x",
                SplitErrorKind::ShellSyntax('>'),
                "redirection",
            ),
            (
                "docker ps < /etc/x",
                SplitErrorKind::ShellSyntax('<'),
                "input redirection",
            ),
            (
                "docker $(id)",
                SplitErrorKind::ShellSyntax('$'),
                "command substitution",
            ),
            ("docker `id`", SplitErrorKind::ShellSyntax('`'), "backticks"),
            (
                "docker \"$HOME\"",
                SplitErrorKind::ShellSyntax('$'),
                "expansion inside double quotes",
            ),
            (
                "docker \"`id`\"",
                SplitErrorKind::ShellSyntax('`'),
                "backticks inside double quotes",
            ),
            ("(docker ps)", SplitErrorKind::ShellSyntax('('), "subshell"),
            ("cat /var/log/*", SplitErrorKind::Glob('*'), "glob"),
            ("ls ?", SplitErrorKind::Glob('?'), "glob"),
            ("ls [ab]", SplitErrorKind::Glob('['), "glob"),
            ("ls ~root", SplitErrorKind::Tilde, "tilde expansion"),
            ("ls #x", SplitErrorKind::Comment, "comment"),
            ("docker ps\nid", SplitErrorKind::Control('\n'), "newline"),
            (
                "docker ps\rid",
                SplitErrorKind::Control('\r'),
                "carriage return",
            ),
            ("docker\tps", SplitErrorKind::Control('\t'), "tab"),
            ("docker ps\0", SplitErrorKind::Control('\0'), "NUL"),
            (
                "docker 'ps\n'",
                SplitErrorKind::Control('\n'),
                "newline inside quotes",
            ),
            (
                "docker ps\\\nid",
                SplitErrorKind::Control('\n'),
                "escaped newline",
            ),
            (
                "docker\u{a0}ps",
                SplitErrorKind::Invisible('\u{a0}'),
                "no-break space",
            ),
            (
                "docker\u{200b}ps",
                SplitErrorKind::Invisible('\u{200b}'),
                "zero-width space",
            ),
            (
                "docker\u{202e}sp",
                SplitErrorKind::Invisible('\u{202e}'),
                "right-to-left override",
            ),
            (
                "docker\u{feff}",
                SplitErrorKind::Invisible('\u{feff}'),
                "byte-order mark",
            ),
            (
                "docker\u{3000}ps",
                SplitErrorKind::Invisible('\u{3000}'),
                "ideographic space",
            ),
            (
                "j\\\u{a0}x",
                SplitErrorKind::Invisible('\u{a0}'),
                "escaped no-break space (found by fuzzing)",
            ),
            (
                "docker 'ps",
                SplitErrorKind::Unbalanced('\''),
                "open single quote",
            ),
            (
                "docker \"ps",
                SplitErrorKind::Unbalanced('"'),
                "open double quote",
            ),
            (
                "docker ps\\",
                SplitErrorKind::TrailingBackslash,
                "lone backslash",
            ),
        ];
        for (input, want, why) in cases {
            let got = split(input).unwrap_err();
            assert_eq!(got.kind, want, "{why}: {input:?}");
        }
    }

    #[test]
    fn error_messages_name_the_character_and_offset() {
        let e = split("docker ps; id").unwrap_err();
        assert_eq!(e.offset, 9);
        assert!(e.to_string().contains("';' at offset 9"));
    }
}
