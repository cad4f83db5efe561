//! spf13/pflag as the docker CLI (and its compose plugin) read an argv: exact long names, `=` or
//! next-word values, bool flags that never take the next word, short clusters, `--`, and the
//! choice between interspersed operands and stopping at the first one.
//!
//! Every branch mirrors `parseArgs`, `parseLongArg` and `parseSingleShortArg` of pflag, byte for
//! byte; where pflag would silently skip a token (`-test.*`), this tokeniser refuses it instead.
//! It imports nothing from the crate.
#![forbid(unsafe_code)]

use std::fmt;

/// How a flag reads its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `NoOptDefVal = "true"`: alone it means true; a value only with `=`, read by Go's ParseBool.
    Bool,
    /// Always has a value: after `=`, attached to a short letter, or the next word (whatever it is).
    Value,
}

/// What a repeated flag does in docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Scalars: the last occurrence wins.
    Last,
    /// Lists, slices and maps: each occurrence adds an item.
    Append,
}

/// One flag of a command, as docker/cli or compose defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The long name without dashes (`volume`).
    pub name: &'static str,
    /// Other long names bound to the same value (`net` for `network`).
    pub aliases: &'static [&'static str],
    pub short: Option<u8>,
    pub kind: Kind,
    pub repeat: Repeat,
}

/// A command's flags and whether operands may be followed by more flags.
#[derive(Debug, Clone, Copy)]
pub struct FlagSet<'a> {
    pub flags: &'a [Flag],
    /// False for `docker run`/`create`, the docker root and the compose root: the first operand
    /// ends the flags and everything after it is an operand.
    pub interspersed: bool,
}

/// A flag's value as pflag stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Text(String),
}

/// One occurrence of a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUse {
    /// Index into the flag set.
    pub flag: usize,
    /// How the caller wrote the flag: `--rm`, `--net`, `-v`.
    pub spelled: String,
    pub value: Value,
    /// The argv index of the word holding the flag.
    pub index: usize,
    /// The argv index of the word holding the value (the next word for `--name x`).
    pub value_index: usize,
}

/// An operand with its argv index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub value: String,
    pub index: usize,
}

/// The flags and operands pflag would have found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub flags: Vec<FlagUse>,
    pub args: Vec<Arg>,
    /// How many operands came before `--` (pflag's `ArgsLenAtDash`), if `--` was read.
    pub dash: Option<usize>,
}

/// Why pflag (or this stricter copy of it) would not read the argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `--name` or the short letter is not defined for this command.
    Unknown { index: usize, flag: String },
    /// `---x`, `--=x`.
    BadSyntax { index: usize, word: String },
    /// A value flag as the last word.
    MissingValue { index: usize, flag: String },
    /// A bool flag given a value Go's ParseBool refuses (`--rm=yes`).
    BadBool {
        index: usize,
        flag: String,
        value: String,
    },
    /// `-test.*`: pflag skips it silently, which no reader of the request would expect.
    GoTest { index: usize, word: String },
}

impl Error {
    pub fn index(&self) -> usize {
        match self {
            Error::Unknown { index, .. }
            | Error::BadSyntax { index, .. }
            | Error::MissingValue { index, .. }
            | Error::BadBool { index, .. }
            | Error::GoTest { index, .. } => *index,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unknown { flag, .. } => write!(f, "unknown flag {flag}"),
            Error::BadSyntax { word, .. } => write!(f, "bad flag syntax {word:?}"),
            Error::MissingValue { flag, .. } => write!(f, "flag {flag} needs a value"),
            Error::BadBool { flag, value, .. } => write!(
                f,
                "flag {flag} is a switch; {value:?} is not true/false (write {flag} or {flag}=false)"
            ),
            Error::GoTest { word, .. } => write!(
                f,
                "{word:?} would be silently ignored by docker's flag parser (-test.* flags)"
            ),
        }
    }
}

/// Go's `strconv.ParseBool`: these twelve spellings and nothing else.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl FlagSet<'_> {
    /// The flag a long name (without dashes) selects: exact match only, no abbreviations.
    pub fn long(&self, name: &str) -> Option<usize> {
        self.flags
            .iter()
            .position(|f| f.name == name || f.aliases.contains(&name))
    }

    /// The flag a short letter selects.
    pub fn short(&self, c: u8) -> Option<usize> {
        self.flags.iter().position(|f| f.short == Some(c))
    }

    /// Reads `argv` (the words after the command name) as pflag's `Parse` would.
    pub fn parse(&self, argv: &[String]) -> Result<Parsed, Error> {
        let mut out = Parsed::default();
        let mut i = 0;
        while i < argv.len() {
            let s = &argv[i];
            let index = i;
            i += 1;
            let b = s.as_bytes();
            if b.is_empty() || b[0] != b'-' || b.len() == 1 {
                out.args.push(Arg {
                    value: s.clone(),
                    index,
                });
                if !self.interspersed {
                    push_rest(&mut out, argv, i);
                    return Ok(out);
                }
                continue;
            }
            if b[1] == b'-' {
                if b.len() == 2 {
                    out.dash = Some(out.args.len());
                    push_rest(&mut out, argv, i);
                    return Ok(out);
                }
                i = self.parse_long(s, index, argv, i, &mut out)?;
            } else {
                i = self.parse_short(s, index, argv, i, &mut out)?;
            }
        }
        Ok(out)
    }

    fn parse_long(
        &self,
        s: &str,
        index: usize,
        argv: &[String],
        mut next: usize,
        out: &mut Parsed,
    ) -> Result<usize, Error> {
        let body = &s[2..];
        if body.starts_with(['-', '=']) {
            return Err(Error::BadSyntax {
                index,
                word: s.to_string(),
            });
        }
        let (name, attached) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let spelled = format!("--{name}");
        let flag = self.long(name).ok_or_else(|| Error::Unknown {
            index,
            flag: spelled.clone(),
        })?;
        let kind = self.flags[flag].kind;
        let (value, value_index) = match (attached, kind) {
            (Some(v), Kind::Bool) => (bool_value(&spelled, v, index)?, index),
            (Some(v), Kind::Value) => (Value::Text(v.to_string()), index),
            (None, Kind::Bool) => (Value::Bool(true), index),
            (None, Kind::Value) => match argv.get(next) {
                Some(v) => {
                    next += 1;
                    (Value::Text(v.clone()), next - 1)
                }
                None => {
                    return Err(Error::MissingValue {
                        index,
                        flag: spelled,
                    })
                }
            },
        };
        out.flags.push(FlagUse {
            flag,
            spelled,
            value,
            index,
            value_index,
        });
        Ok(next)
    }

    fn parse_short(
        &self,
        s: &str,
        index: usize,
        argv: &[String],
        mut next: usize,
        out: &mut Parsed,
    ) -> Result<usize, Error> {
        let mut rest = &s.as_bytes()[1..];
        while !rest.is_empty() {
            if rest.starts_with(b"test.") {
                return Err(Error::GoTest {
                    index,
                    word: s.to_string(),
                });
            }
            let c = rest[0];
            let flag = self.short(c).ok_or_else(|| Error::Unknown {
                index,
                flag: format!("-{}", String::from_utf8_lossy(&rest[..1])),
            })?;
            // A known shorthand is ASCII, so the byte offsets below are char boundaries.
            let spelled = format!("-{}", c as char);
            let tail = &s[s.len() - rest.len() + 1..];
            let kind = self.flags[flag].kind;
            let (value, value_index);
            if rest.len() > 2 && rest[1] == b'=' {
                let v = &tail[1..];
                value = match kind {
                    Kind::Bool => bool_value(&spelled, v, index)?,
                    Kind::Value => Value::Text(v.to_string()),
                };
                value_index = index;
                rest = &[];
            } else if kind == Kind::Bool {
                value = Value::Bool(true);
                value_index = index;
                rest = &rest[1..];
            } else if rest.len() > 1 {
                value = Value::Text(tail.to_string());
                value_index = index;
                rest = &[];
            } else if let Some(v) = argv.get(next) {
                value = Value::Text(v.clone());
                value_index = next;
                next += 1;
                rest = &[];
            } else {
                return Err(Error::MissingValue {
                    index,
                    flag: spelled,
                });
            }
            out.flags.push(FlagUse {
                flag,
                spelled,
                value,
                index,
                value_index,
            });
        }
        Ok(next)
    }
}

fn bool_value(flag: &str, v: &str, index: usize) -> Result<Value, Error> {
    parse_bool(v)
        .map(Value::Bool)
        .ok_or_else(|| Error::BadBool {
            index,
            flag: flag.to_string(),
            value: v.to_string(),
        })
}

fn push_rest(out: &mut Parsed, argv: &[String], from: usize) {
    for (j, a) in argv.iter().enumerate().skip(from) {
        out.args.push(Arg {
            value: a.clone(),
            index: j,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn flag(name: &'static str, short: Option<u8>, kind: Kind) -> Flag {
        Flag {
            name,
            aliases: &[],
            short,
            kind,
            repeat: Repeat::Last,
        }
    }

    /// A slice of `docker run`'s real table: enough bools and value flags to exercise every row.
    const RUN: &[Flag] = &[
        flag("interactive", Some(b'i'), Kind::Bool),
        flag("tty", Some(b't'), Kind::Bool),
        flag("detach", Some(b'd'), Kind::Bool),
        flag("rm", None, Kind::Bool),
        flag("privileged", None, Kind::Bool),
        flag("volume", Some(b'v'), Kind::Value),
        flag("publish", Some(b'p'), Kind::Value),
        flag("env", Some(b'e'), Kind::Value),
        flag("hostname", Some(b'h'), Kind::Value),
        flag("name", None, Kind::Value),
        Flag {
            name: "network",
            aliases: &["net"],
            short: None,
            kind: Kind::Value,
            repeat: Repeat::Last,
        },
    ];

    fn w(s: &str) -> Vec<String> {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    }

    /// `name=value` per flag use and the operands, for compact expectations.
    fn show(p: &Parsed) -> String {
        let mut parts: Vec<String> = p
            .flags
            .iter()
            .map(|u| {
                let name = RUN[u.flag].name;
                match &u.value {
                    Value::Bool(b) => format!("{name}={b}"),
                    Value::Text(t) => format!("{name}:{t}"),
                }
            })
            .collect();
        parts.push(format!(
            "| {}",
            p.args
                .iter()
                .map(|a| a.value.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        if let Some(d) = p.dash {
            parts.push(format!("dash@{d}"));
        }
        parts.join(" ")
    }

    fn parse(argv: &[String], interspersed: bool) -> Result<String, Error> {
        FlagSet {
            flags: RUN,
            interspersed,
        }
        .parse(argv)
        .map(|p| show(&p))
    }

    #[test]
    fn every_row_of_the_pflag_table_reads_as_pflag_reads_it() {
        // (argv, interspersed, expected parse, why)
        let rows: &[(&str, bool, &str, &str)] = &[
            (
                "alpine --privileged",
                false,
                "| alpine --privileged",
                "not interspersed: the first operand ends the flags, later words are the command",
            ),
            (
                "alpine --rm",
                true,
                "rm=true | alpine",
                "interspersed: flags after operands are still flags",
            ),
            ("- --rm", false, "| - --rm", "a lone dash is an operand"),
            (
                "--rm -- --privileged x",
                false,
                "rm=true | --privileged x dash@0",
                "-- ends the flags; what follows is operands",
            ),
            (
                "--name=a=b alpine",
                false,
                "name:a=b | alpine",
                "--flag=value splits at the first =",
            ),
            (
                "--name= alpine",
                false,
                "name: | alpine",
                "--flag= sets an empty value",
            ),
            (
                "--name --privileged alpine",
                false,
                "name:--privileged | alpine",
                "a value flag takes the next word even when it looks like a flag",
            ),
            (
                "--rm true alpine",
                true,
                "rm=true | true alpine",
                "a bool never takes the next word",
            ),
            (
                "--rm=false alpine",
                false,
                "rm=false | alpine",
                "a bool takes a value only after =",
            ),
            (
                "--rm=T --rm=0 --rm=FALSE --rm=True x",
                false,
                "rm=true rm=false rm=false rm=true | x",
                "Go ParseBool spellings",
            ),
            (
                "--net=host x",
                false,
                "network:host | x",
                "a second long name of the same flag",
            ),
            (
                "-itv /:/h alpine",
                false,
                "interactive=true tty=true volume:/:/h | alpine",
                "a trailing value letter in a cluster takes the next word",
            ),
            (
                "-itv/:/h alpine",
                false,
                "interactive=true tty=true volume:/:/h | alpine",
                "a value letter takes the rest of its word",
            ),
            (
                "-v/:/h alpine",
                false,
                "volume:/:/h | alpine",
                "attached value",
            ),
            (
                "-v=/:/h alpine",
                false,
                "volume:/:/h | alpine",
                "-x=value drops the =",
            ),
            (
                "-p8080:80 alpine",
                false,
                "publish:8080:80 | alpine",
                "attached value",
            ),
            (
                "-it=false alpine",
                false,
                "interactive=true tty=false | alpine",
                "= applies to the letter it follows",
            ),
            (
                "-d=1 x",
                false,
                "detach=true | x",
                "bool short with = and a ParseBool spelling",
            ),
            (
                "-v= alpine",
                false,
                "volume:= | alpine",
                "-x= (two characters) is not the = form: the value is a literal =",
            ),
            (
                "-ve=x alpine",
                false,
                "volume:e=x | alpine",
                "a value letter swallows the rest, = included",
            ),
            (
                "-hfoo x",
                false,
                "hostname:foo | x",
                "-h is a value flag for run",
            ),
            (
                "-e -v x",
                false,
                "env:-v | x",
                "a short value flag takes the next word unconditionally",
            ),
        ];
        for (argv, interspersed, want, why) in rows {
            let got =
                parse(&w(argv), *interspersed).unwrap_or_else(|e| panic!("{why}: {argv:?}: {e}"));
            assert_eq!(&got, want, "{why}: {argv:?}");
        }
        // An empty word is an operand, so without interspersing it ends the flags.
        let words = vec![String::new(), "--rm".to_string()];
        assert_eq!(parse(&words, false).unwrap(), "|  --rm");
    }

    #[test]
    fn words_pflag_refuses_or_skips_are_errors() {
        let rows: &[(&str, &str, &str)] = &[
            ("---x alpine", "bad flag syntax", "three dashes"),
            ("--=x alpine", "bad flag syntax", "an empty long name"),
            (
                "--priv alpine",
                "unknown flag --priv",
                "no long abbreviations",
            ),
            (
                "--Privileged alpine",
                "unknown flag --Privileged",
                "names are case-sensitive",
            ),
            ("--rm=yes alpine", "not true/false", "yes is not a Go bool"),
            ("--rm= alpine", "not true/false", "an empty bool value"),
            ("-d=on x", "not true/false", "on is not a Go bool"),
            (
                "-d= x",
                "unknown flag -=",
                "-x= on a bool: = is then read as a letter",
            ),
            (
                "-tfalse x",
                "unknown flag -f",
                "-tfalse is -t then the letters f,a,l,s,e",
            ),
            ("-Z x", "unknown flag -Z", "unknown shorthand"),
            (
                "-test.v x",
                "silently ignored",
                "pflag skips -test.* without a word",
            ),
            (
                "-itest.v x",
                "silently ignored",
                "the skip applies mid-cluster too",
            ),
            ("--name", "needs a value", "a value flag at the end"),
            ("-v", "needs a value", "a short value flag at the end"),
            (
                "-\u{e9} x",
                "unknown flag",
                "a non-ASCII shorthand cannot exist",
            ),
        ];
        for (argv, want, why) in rows {
            let err = parse(&w(argv), false).expect_err(why);
            assert!(err.to_string().contains(want), "{why}: {argv:?} gave {err}");
        }
    }

    #[test]
    fn value_indexes_point_at_the_word_that_held_the_value() {
        let p = FlagSet {
            flags: RUN,
            interspersed: false,
        }
        .parse(&w("--name x -v/a:/b -e y alpine"))
        .unwrap();
        let idx: Vec<(usize, usize)> = p.flags.iter().map(|u| (u.index, u.value_index)).collect();
        assert_eq!(idx, vec![(0, 1), (2, 2), (3, 4)]);
        assert_eq!(p.args[0].index, 5);
    }

    #[test]
    fn go_bool_spellings_are_exactly_twelve() {
        for s in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(s), Some(true), "{s}");
        }
        for s in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(s), Some(false), "{s}");
        }
        for s in ["yes", "on", "tRUE", " true", "2", ""] {
            assert_eq!(parse_bool(s), None, "{s:?}");
        }
    }
}
