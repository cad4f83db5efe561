//! Fuzzes docker argv through the pflag tokeniser and the shipped policy's docker rules.
//! Input: words separated by NUL bytes. Properties: nothing panics; the tokeniser's indexes stay
//! inside the argv; an allowed request runs the policy's docker path with a canonical argv in
//! which every flag is `--long[=value]` and a `--` comes before any operand.
#![no_main]

use std::sync::OnceLock;

use gateway::argv::pflag::{FlagSet, Value};
use gateway::decision::{decide, Channel, Input, Request, Verdict};
use gateway::policy::docker::flags;
use gateway::policy::Policy;
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::parse("gateway.toml", include_str!("../../gateway.toml")).expect("policy loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let words: Vec<String> = text.split('\0').map(String::from).collect();
    if words.len() > 64 {
        return;
    }
    for command in flags::COMMANDS {
        let set: FlagSet = command.flag_set();
        if let Ok(p) = set.parse(&words) {
            for u in &p.flags {
                assert!(u.index < words.len() && u.value_index < words.len());
                assert!(u.flag < set.flags.len());
                if let Value::Text(_) = u.value {
                    assert_eq!(set.flags[u.flag].kind, gateway::argv::pflag::Kind::Value);
                }
            }
            for a in &p.args {
                assert_eq!(words[a.index], a.value);
            }
        }
    }
    let mut argv = vec!["docker".to_string()];
    argv.extend(words);
    for user in ["ai-worker", "vastai_kaalia"] {
        let d = decide(
            policy(),
            &Request {
                user: user.into(),
                channel: Channel::Sudo,
                input: Input::Argv(argv.clone()),
            },
        );
        if d.verdict == Verdict::Allow {
            let plan = d.plan.expect("an allow has a plan");
            assert!(plan.argv[0].ends_with("/docker"));
            let dash = plan.argv.iter().position(|w| w == "--").unwrap_or(plan.argv.len());
            for w in &plan.argv[1..dash] {
                assert!(!w.starts_with('-') || w.starts_with("--"), "short flag in {:?}", plan.argv);
            }
            assert!(plan.env.iter().any(|(k, _)| k == "DOCKER_HOST"));
        }
    }
});
