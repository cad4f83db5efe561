//! Exact-spelling dialect for programs with hand-written parsers (nvidia-smi, lshw, hdparm,
//! kill, virsh, iptables in its fixed shapes).
//!
//! Their real grammars are closed or quirky (`-pm` is one option, not `-p -m`; lshw matches whole
//! single-dash words), so the gateway accepts only the documented spelling of each option: a word
//! equal to a name is that option; a `-name` option's value is the next word; a `--name` option's
//! value is attached as `--name=value`. No clusters, no abbreviations. Every other word is an
//! operand, left for the rule's argument pattern to accept or refuse.
#![forbid(unsafe_code)]

use super::{Operand, OptDef, OptUse, ParseError, Parsed};

pub fn parse(args: &[String], defs: &[OptDef]) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if let Some(def) = defs.iter().position(|d| d.has_name(arg)) {
            let start = i;
            let value = if !defs[def].takes_value {
                None
            } else if arg.starts_with("--") {
                return Err(ParseError::ValueForm {
                    index: i,
                    option: arg.clone(),
                    expected: format!("{arg}=VALUE"),
                });
            } else {
                i += 1;
                Some(args.get(i).cloned().ok_or(ParseError::MissingValue {
                    index: start,
                    option: arg.clone(),
                })?)
            };
            out.options.push(OptUse {
                def,
                spelled: arg.clone(),
                value,
                index: start,
            });
        } else if let Some((def, name, value)) = attached_long(arg, defs) {
            if !defs[def].takes_value {
                return Err(ParseError::UnexpectedValue {
                    index: i,
                    option: name.to_string(),
                });
            }
            out.options.push(OptUse {
                def,
                spelled: name.to_string(),
                value: Some(value.to_string()),
                index: i,
            });
        } else {
            out.operands.push(Operand {
                value: arg.clone(),
                index: i,
            });
        }
        i += 1;
    }
    Ok(out)
}

/// `--name=value` where `--name` is in the table.
fn attached_long<'a>(arg: &'a str, defs: &[OptDef]) -> Option<(usize, &'a str, &'a str)> {
    if !arg.starts_with("--") {
        return None;
    }
    let (name, value) = arg.split_once('=')?;
    let def = defs.iter().position(|d| d.has_name(name))?;
    Some((def, name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<OptDef> {
        vec![
            OptDef::new(&["-pm"], true),
            OptDef::new(&["-q"], false),
            OptDef::new(&["-d"], true),
            OptDef::new(&["--query-gpu"], true),
            OptDef::new(&["--format"], true),
            OptDef::new(&["-L"], false),
        ]
    }

    fn run(input: &[&str]) -> Result<Parsed, ParseError> {
        let args: Vec<String> = input.iter().map(|s| s.to_string()).collect();
        parse(&args, &table())
    }

    #[test]
    fn reads_documented_spellings_only() {
        let p = run(&["-pm", "1"]).unwrap();
        assert_eq!(p.options[0].value.as_deref(), Some("1"));
        assert_eq!(p.options[0].index, 0);

        let p = run(&["--query-gpu=name,uuid", "--format=csv"]).unwrap();
        assert_eq!(p.options.len(), 2);
        assert_eq!(p.options[1].value.as_deref(), Some("csv"));

        let p = run(&["-q", "-d", "MEMORY"]).unwrap();
        assert_eq!(p.options[1].spelled, "-d");
        assert_eq!(p.options[1].index, 1);
    }

    #[test]
    fn leaves_unknown_words_as_operands_for_the_pattern_to_judge() {
        let p = run(&["-p", "-m", "-pm1", "-r"]).unwrap();
        assert!(p.options.is_empty(), "no clustering, no attached values");
        assert_eq!(p.operands.len(), 4);
    }

    #[test]
    fn refuses_other_value_forms() {
        assert!(matches!(
            run(&["--format", "csv"]),
            Err(ParseError::ValueForm { .. })
        ));
        assert!(matches!(
            run(&["-pm"]),
            Err(ParseError::MissingValue { .. })
        ));
        assert!(matches!(
            run(&["-q=1"]),
            Ok(Parsed { ref operands, .. }) if operands.len() == 1
        ));
    }
}
