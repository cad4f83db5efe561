//! Any request judged by the shipped policy: never a panic, and an allowed request always runs
//! a configured absolute path with arguments free of control characters.
#![no_main]

use std::sync::OnceLock;

use gateway::decision::{decide, Channel, Input, Request, Verdict};
use gateway::policy::Policy;
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::parse("gateway.toml", include_str!("../../gateway.toml")).expect("shipped policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    let user = if sel & 1 == 0 { "vastai_kaalia" } else { "ai-worker" };
    let req = if sel & 2 == 0 {
        Request {
            user: user.into(),
            channel: Channel::Sudo,
            input: Input::Argv(s.split('\0').map(String::from).collect()),
        }
    } else {
        Request { user: user.into(), channel: Channel::Ssh, input: Input::Ssh(Some(s.into())) }
    };
    let d = decide(policy(), &req);
    if d.verdict == Verdict::Allow {
        let plan = d.plan.expect("an allow carries a plan");
        let program = policy().programs.values().find(|p| p.paths.contains(&plan.path));
        assert!(program.is_some(), "runs a configured path: {}", plan.path.display());
        for a in &plan.argv {
            assert!(!a.chars().any(char::is_control), "{a:?}");
        }
    }
});
