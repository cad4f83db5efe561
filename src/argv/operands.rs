//! `NAME=VALUE` operand dialect of coreutils `dd` (`src/dd.c` `scanargs`).
//!
//! The name is the text before the first `=`; the value is everything after it (`of=a=b` names
//! the file `a=b`). dd itself also reads `--help`, `--version` and `--`; the gateway accepts none
//! of them, so any word starting with `-` is refused.
#![forbid(unsafe_code)]

use super::{OptDef, OptUse, ParseError, Parsed};

pub fn parse(args: &[String], defs: &[OptDef]) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    for (index, arg) in args.iter().enumerate() {
        if arg.starts_with('-') {
            return Err(ParseError::UnknownOption {
                index,
                option: arg.clone(),
            });
        }
        let Some((name, value)) = arg.split_once('=') else {
            return Err(ParseError::BadWord {
                index,
                word: arg.clone(),
                expected: "an operand of the form NAME=VALUE".into(),
            });
        };
        let Some(def) = defs.iter().position(|d| d.has_name(name)) else {
            return Err(ParseError::UnknownOption {
                index,
                option: format!("{name}="),
            });
        };
        out.options.push(OptUse {
            def,
            spelled: name.to_string(),
            value: Some(value.to_string()),
            index,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[&str]) -> Result<Parsed, ParseError> {
        let defs = vec![OptDef::new(&["if"], true), OptDef::new(&["of"], true)];
        let args: Vec<String> = input.iter().map(|s| s.to_string()).collect();
        parse(&args, &defs)
    }

    #[test]
    fn splits_at_the_first_equals_sign() {
        let p = run(&["if=/dev/zero", "of=a=b"]).unwrap();
        assert_eq!(p.options[1].value.as_deref(), Some("a=b"));
    }

    #[test]
    fn refuses_options_bare_words_and_unknown_operands() {
        for (input, why) in [
            ("--help", "dd's own options are not offered"),
            ("--", "not even the end-of-options marker"),
            ("/dev/sda", "a word without ="),
            ("seek=1", "an operand outside the table"),
            ("=x", "an empty name"),
        ] {
            assert!(run(&[input]).is_err(), "{why}: {input}");
        }
    }
}
