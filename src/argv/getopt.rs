//! GNU `getopt_long` as glibc implements it (`posix/getopt.c`), minus the parts the gateway
//! refuses on purpose: long-option abbreviations are reported, not expanded.
//!
//! Permute order (the default) treats options after operands as options; require order (an
//! optstring starting with `+`, as tshark and virsh use) stops at the first operand. `--` ends
//! options in both. `-` alone is an operand. A short cluster `-abc` is read left to right and the
//! first value-taking letter swallows the rest of the word, or the next word.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use super::{Operand, OptDef, OptUse, ParseError, Parsed};

/// Where option scanning stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// glibc default: options anywhere.
    Permute,
    /// Optstring with a leading `+`: the first operand ends the options.
    RequireOrder,
}

pub fn parse(args: &[String], defs: &[OptDef], order: Order) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut only_operands = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if only_operands {
            out.operands.push(Operand {
                value: arg.clone(),
                index: i,
            });
        } else if arg == "--" {
            only_operands = true;
        } else if let Some(body) = arg.strip_prefix("--") {
            i = long_option(args, i, body, defs, &mut out)?;
        } else if arg.len() > 1 && arg.starts_with('-') {
            i = short_cluster(args, i, defs, &mut out)?;
        } else {
            out.operands.push(Operand {
                value: arg.clone(),
                index: i,
            });
            if order == Order::RequireOrder {
                only_operands = true;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Reads `--name`, `--name=value` or `--name value`; returns the index of the last word used.
fn long_option(
    args: &[String],
    i: usize,
    body: &str,
    defs: &[OptDef],
    out: &mut Parsed,
) -> Result<usize, ParseError> {
    let (name, attached) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let spelled = format!("--{name}");
    let Some(def) = defs.iter().position(|d| d.has_name(&spelled)) else {
        return Err(unknown_long(i, &spelled, defs));
    };
    let mut last = i;
    let value = if defs[def].takes_value {
        match attached {
            Some(v) => Some(v.to_string()),
            None => {
                last = i + 1;
                Some(args.get(last).cloned().ok_or(ParseError::MissingValue {
                    index: i,
                    option: spelled.clone(),
                })?)
            }
        }
    } else if attached.is_some() {
        return Err(ParseError::UnexpectedValue {
            index: i,
            option: spelled,
        });
    } else {
        None
    };
    out.options.push(OptUse {
        def,
        spelled,
        value,
        index: i,
    });
    Ok(last)
}

/// An unknown long option, told apart from an abbreviation glibc would have expanded.
fn unknown_long(index: usize, spelled: &str, defs: &[OptDef]) -> ParseError {
    let mut longer = defs
        .iter()
        .flat_map(|d| d.names.iter())
        .filter(|n| n.starts_with("--") && n.len() > spelled.len() && n.starts_with(spelled));
    match (longer.next(), longer.next()) {
        (Some(full), None) if spelled.len() > 2 => ParseError::Abbreviation {
            index,
            given: spelled.to_string(),
            full: full.clone(),
        },
        _ => ParseError::UnknownOption {
            index,
            option: spelled.to_string(),
        },
    }
}

/// Reads `-abc`, `-ovalue`, `-o value`; returns the index of the last word used.
fn short_cluster(
    args: &[String],
    i: usize,
    defs: &[OptDef],
    out: &mut Parsed,
) -> Result<usize, ParseError> {
    let word = &args[i];
    for (pos, c) in word.char_indices().skip(1) {
        let spelled = format!("-{c}");
        let Some(def) = defs.iter().position(|d| d.has_name(&spelled)) else {
            return Err(if pos == 1 {
                ParseError::UnknownOption {
                    index: i,
                    option: spelled,
                }
            } else {
                ParseError::UnknownInCluster {
                    index: i,
                    option: spelled,
                }
            });
        };
        if defs[def].takes_value {
            let rest = &word[pos + c.len_utf8()..];
            let (value, last) = if rest.is_empty() {
                let v = args.get(i + 1).cloned().ok_or(ParseError::MissingValue {
                    index: i,
                    option: spelled.clone(),
                })?;
                (v, i + 1)
            } else {
                (rest.to_string(), i)
            };
            out.options.push(OptUse {
                def,
                spelled,
                value: Some(value),
                index: i,
            });
            return Ok(last);
        }
        out.options.push(OptUse {
            def,
            spelled,
            value: None,
            index: i,
        });
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<OptDef> {
        vec![
            OptDef::new(&["-u", "--unit"], true),
            OptDef::new(&["-n", "--lines"], true),
            OptDef::new(&["-k", "--dmesg"], false),
            OptDef::new(&["--no-pager"], false),
            OptDef::new(&["-t"], false),
            OptDef::new(&["-l"], false),
        ]
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    }

    fn summary(p: &Parsed) -> String {
        let mut out = Vec::new();
        for o in &p.options {
            match &o.value {
                Some(v) => out.push(format!("{}={}", o.spelled, v)),
                None => out.push(o.spelled.clone()),
            }
        }
        for a in &p.operands {
            out.push(format!("[{}]", a.value));
        }
        out.join(" ")
    }

    #[test]
    fn reads_each_spelling_of_an_option_the_way_glibc_does() {
        let cases = [
            ("-u ssh", "-u=ssh", "separate short value"),
            ("-ussh", "-u=ssh", "attached short value"),
            ("--unit ssh", "--unit=ssh", "separate long value"),
            ("--unit=ssh", "--unit=ssh", "attached long value"),
            ("--unit=", "--unit=", "empty attached long value"),
            (
                "-u=ssh",
                "-u==ssh",
                "getopt keeps the = in an attached short value",
            ),
            (
                "-kn 5",
                "-k -n=5",
                "cluster ending in a value-taking letter takes the next word",
            ),
            ("-kn5", "-k -n=5", "cluster with attached value"),
            (
                "-u -k",
                "-u=-k",
                "a value-taking option consumes the next word even if it is dashed",
            ),
            (
                "x -k",
                "-k [x]",
                "permute: options after operands are options",
            ),
            ("-- -k", "[-k]", "-- ends options"),
            ("- -k", "-k [-]", "a lone dash is an operand"),
            ("-tl", "-t -l", "bundled flags"),
        ];
        for (input, want, why) in cases {
            let p = parse(&words(input), &table(), Order::Permute).unwrap();
            assert_eq!(summary(&p), want, "{why}: {input}");
        }
    }

    #[test]
    fn require_order_stops_at_the_first_operand() {
        let p = parse(&words("-k x -t"), &table(), Order::RequireOrder).unwrap();
        assert_eq!(summary(&p), "-k [x] [-t]");
    }

    #[test]
    fn refuses_what_it_cannot_explain() {
        let cases = [
            (
                "--un ssh",
                "--un is an abbreviation of --unit",
                "unique prefix",
            ),
            (
                "--no-p",
                "--no-p is an abbreviation of --no-pager",
                "unique prefix",
            ),
            ("--rotate", "option --rotate is not allowed", "unknown long"),
            ("-x", "option -x is not allowed", "unknown short"),
            (
                "-kx",
                "option -x is not allowed",
                "unknown letter inside a cluster",
            ),
            (
                "-k=1",
                "option -= is not allowed",
                "= after a flag letter is another letter",
            ),
            (
                "--dmesg=1",
                "option --dmesg takes no value",
                "value given to a flag",
            ),
            ("-u", "option -u needs a value", "value missing at the end"),
            (
                "--lines",
                "option --lines needs a value",
                "value missing at the end",
            ),
            (
                "-\u{e9}",
                "option -\u{e9} is not allowed",
                "non-ASCII letter",
            ),
        ];
        for (input, want, why) in cases {
            let err = parse(&words(input), &table(), Order::Permute).unwrap_err();
            assert!(err.to_string().contains(want), "{why}: {input}: {err}");
        }
    }

    #[test]
    fn an_ambiguous_prefix_is_reported_as_unknown() {
        let defs = vec![
            OptDef::new(&["--vacuum-size"], true),
            OptDef::new(&["--vacuum-time"], true),
        ];
        let err = parse(&words("--vacuum"), &defs, Order::Permute).unwrap_err();
        assert_eq!(
            err,
            ParseError::UnknownOption {
                index: 0,
                option: "--vacuum".into()
            }
        );
    }
}
