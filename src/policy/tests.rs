//! The loader refuses what it cannot use, and says where.

use super::*;

const BASE: &str = r#"
[users.alice]
rules = ["ls"]

[programs.ls]
paths = ["/usr/bin/ls"]
dialect = "getopt"

[rules.ls]
program = "ls"
options."-l" = {}
"#;

fn errors(text: &str) -> Vec<String> {
    match Policy::parse_strict("p.toml", text) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

fn first_error(text: &str) -> String {
    errors(text)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("policy was accepted:\n{text}"))
}

#[test]
fn the_base_policy_loads() {
    assert!(errors(BASE).is_empty(), "{:?}", errors(BASE));
}

#[test]
fn mistakes_are_reported_at_file_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[settings]\nbogus = 1\n",
            "p.toml:2:1: unknown field `bogus`",
            "unknown key at the top of a table",
        ),
        (
            "[rules.ls.options.\"-a\"]\nrepeats = true\n",
            "p.toml:2:1: unknown field `repeats`",
            "misspelled option key",
        ),
        (
            "[types.t]\nregex = \"a(b\"\n",
            "p.toml:2:9: invalid regular expression",
            "unbalanced parenthesis",
        ),
        (
            "[types.t]\nregex = \"[z-a]\"\n",
            "p.toml:2:9: invalid regular expression",
            "inverted class range",
        ),
        (
            "[types.t]\nenum = [\"a\"]\nbogus = 1\n",
            "p.toml:3:1: unknown field `bogus`",
            "unknown key inside a value type",
        ),
        (
            "[rules.x]\nprogram = \"ls\"\noptions.\"-a\" = { value = \"nosuchtype\" }\n",
            "p.toml:3:26: unknown type \"nosuchtype\"",
            "reference to a type that does not exist",
        ),
        (
            "[rules.x]\nprogram = \"cat\"\n",
            "p.toml:2:11: rule x names program \"cat\"",
            "rule for an unknown program",
        ),
        (
            "[users.bob]\nrules = [\"nope\"]\n",
            "p.toml:2:10: unknown rule \"nope\"",
            "user with an unknown rule",
        ),
        (
            "[programs.cat]\npaths = [\"bin/cat\"]\ndialect = \"getopt\"\n",
            "p.toml:2:10: program path: not an absolute path",
            "relative program path",
        ),
        (
            "[programs.cat]\npaths = [\"/usr/bin/../../tmp/cat\"]\ndialect = \"getopt\"\n",
            "p.toml:2:10: program path: contains a '.' or '..' component",
            "dot-dot in a program path",
        ),
        (
            "[programs.cat]\npaths = [\"/usr/bin/cat\"]\ndialect = \"gnu\"\n",
            "p.toml:3:11: unknown dialect \"gnu\"",
            "unknown dialect",
        ),
        (
            "[rules.x]\nprogram = \"ls\"\noptions.\"--a=b\" = {}\n",
            "is not an option name for this program's dialect",
            "malformed option name",
        ),
        (
            "[rules.x]\nprogram = \"ls\"\noptions.\"-a\" = { requires = [\"-b\"] }\n",
            "p.toml:3:30: -b is not one of this rule's options",
            "requires names an option the rule lacks",
        ),
        (
            "[rules.x]\nprogram = \"ls\"\nenv = { LD_PRELOAD = \"/tmp/x.so\" }\n",
            "cannot be set for a program",
            "loader variables in a rule's environment",
        ),
        (
            "[types.t]\npath = { prefix = \"/\", name = \"x\" }\n",
            "a path prefix of / allows everything",
            "a path type that is not narrow",
        ),
        (
            "[types.t]\nregex = \"a\"\nenum = [\"b\"]\n",
            "exactly one of",
            "two kinds in one type",
        ),
        (
            "[types.t]\nlist = \"t\"\n",
            "refers to itself",
            "a type defined by itself",
        ),
        (
            "[rules.x]\nprogram = \"ls\"\nargs = [\"{word}...\", \"{word}\"]\n[types.word]\nregex = \"a\"\n",
            "a repeated placeholder must be the last word",
            "a repeated placeholder in the middle",
        ),
        (
            "[[test]]\nuser = \"alice\"\nargv = [\"ls\"]\nexpect = \"maybe\"\n",
            "expect must be \"allow\" or \"deny\"",
            "a test with an unknown verdict",
        ),
        (
            "[settings]\naudit_log = \"relative.jsonl\"\n",
            "audit_log: not an absolute path",
            "relative audit log",
        ),
        (
            "[[test]]\nuser = \"alice\"\nallow = [\"ls; id\"]\n",
            "p.toml:3:10: cannot split test line",
            "a test line with shell syntax",
        ),
        ("[programs.gateway]\npaths = [\"/x\"]\ndialect = \"exact\"\n", "cannot be a program name", "the gateway itself"),
        ("this is not toml", "p.toml:1:6", "not TOML at all"),
    ];
    for (extra, want, why) in cases {
        let text = format!("{extra}{BASE}");
        let got = first_error(&text);
        assert!(got.contains(want), "{why}: expected {want:?}, got:\n{got}");
    }
}

#[test]
fn a_diagnostic_shows_the_line_and_a_caret() {
    let got = first_error(&format!("[types.t]\nregex = \"a(b\"\n{BASE}"));
    let lines: Vec<&str> = got.lines().collect();
    assert!(lines[2].ends_with("regex = \"a(b\""), "{got}");
    assert_eq!(lines[3].trim_end(), "  |         ^", "{got}");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text =
        format!("[users.bob]\nrules = [\"nope1\", \"nope2\"]\n[types.t]\nregex = \"(\"\n{BASE}");
    assert_eq!(errors(&text).len(), 3, "{:?}", errors(&text));
}

#[test]
fn an_unused_type_is_still_checked() {
    let got = first_error(&format!("[types.unused]\nregex = \"(\"\n{BASE}"));
    assert!(got.contains("p.toml:2:9"), "{got}");
}

#[test]
fn the_lenient_parse_defers_building_but_not_syntax() {
    // A syntax error is found at load in both modes; only building the automaton waits.
    let text = format!("[types.t]\nregex = \"(\"\n{BASE}");
    assert!(Policy::parse("p.toml", &text).is_err());
}
