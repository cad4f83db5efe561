//! The one decision: `decide(&Policy, &Request) -> Decision`, shared by `run`, `ssh` and `check`.
//!
//! It reads no environment and starts nothing. Apart from `lstat`-ing the paths a rule names and
//! the program it would run, it is a pure function of the policy and the request.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use serde::Serialize;

use crate::argv::split;
use crate::policy::{Mode, Outcome, Policy, Program, Refusal, Resolution, Rule, User, Wrapped};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sudo,
    Ssh,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sudo => "sudo",
            Channel::Ssh => "ssh",
        }
    }
}

/// What was asked: an argv (sudo) or the raw SSH command string (`None`: no command sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Argv(Vec<String>),
    Ssh(Option<String>),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub user: String,
    pub channel: Channel,
    pub input: Input,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// Exactly what will run: the policy's path, the validated argv, the whole environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecPlan {
    pub path: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub time_limit: Option<u64>,
    /// False when no configured path exists on this host (`check` still shows the plan).
    pub installed: bool,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    /// Audit mode let through a request the rules deny.
    pub would_deny: bool,
    pub mode: Option<Mode>,
    pub rule: Option<String>,
    pub reason: String,
    /// The argument the refusal is about.
    pub argument: Option<String>,
    pub hint: Option<String>,
    /// What the caller may run instead, on a denial (rendered by `alternatives`).
    pub allowed: Alternatives,
    /// The request as words, once split.
    pub argv: Option<Vec<String>>,
    pub plan: Option<ExecPlan>,
}

impl Decision {
    /// A denial decided before any rule was read (no policy, unknown caller).
    pub fn refused(reason: String) -> Decision {
        Decision::deny(reason)
    }

    fn deny(reason: String) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            would_deny: false,
            mode: None,
            rule: None,
            reason,
            argument: None,
            hint: None,
            allowed: Alternatives::None,
            argv: None,
            plan: None,
        }
    }

    /// Turns an allow into a deny for a reason found after the decision (binary missing at
    /// exec time, audit log unwritable).
    pub fn overrule(&mut self, reason: String) {
        self.verdict = Verdict::Deny;
        self.would_deny = false;
        self.reason = reason;
        self.plan = None;
    }
}

pub fn decide(policy: &Policy, req: &Request) -> Decision {
    let mut d = decide_inner(policy, req);
    if d.verdict == Verdict::Deny {
        if let Some(user) = policy.users.get(&req.user) {
            d.mode = Some(user.mode);
            if user.mode == Mode::Audit {
                audit_mode_pass(policy, &mut d);
            }
        }
    }
    d
}

/// Audit mode: a denied request for a program the policy knows runs as written, recorded as
/// "would deny". Requests that cannot be read, unknown programs and untrusted binaries stay denied.
fn audit_mode_pass(policy: &Policy, d: &mut Decision) {
    let Some(argv) = &d.argv else { return };
    let Some(program) = argv.first().and_then(|a| policy.program_for(a)) else {
        return;
    };
    if let Ok(plan) = plan_for(policy, program, argv[1..].to_vec(), &[], None) {
        d.verdict = Verdict::Allow;
        d.would_deny = true;
        d.plan = Some(plan);
    }
}

fn decide_inner(policy: &Policy, req: &Request) -> Decision {
    let argv = match &req.input {
        Input::Argv(a) => a.clone(),
        Input::Ssh(None) => {
            let mut d = Decision::deny("no command given: this account has no shell".into());
            if policy.users.contains_key(&req.user) {
                d.allowed = Alternatives::Everything;
            }
            return d;
        }
        Input::Ssh(Some(command)) => match split::split(command) {
            Ok(words) => match strip_sudo(words) {
                Ok(w) => w,
                Err(reason) => return Decision::deny(reason),
            },
            Err(e) => return Decision::deny(format!("the command cannot be read: {e}")),
        },
    };
    let mut d = judge(policy, req, &argv);
    d.argv = Some(argv);
    d
}

/// A leading bare `sudo` is how both hosts document calls; who runs a program is the policy's
/// decision, so `sudo` with options of its own is refused.
fn strip_sudo(mut words: Vec<String>) -> Result<Vec<String>, String> {
    if words.first().map(String::as_str) != Some("sudo") {
        return Ok(words);
    }
    match words.get(1) {
        None => Err("sudo needs a command".into()),
        Some(w) if w.starts_with('-') => Err(format!(
            "sudo option {w} is not accepted: the policy decides who a program runs as"
        )),
        Some(_) => {
            words.remove(0);
            Ok(words)
        }
    }
}

fn refusal_decision(r: Refusal) -> Decision {
    let mut d = Decision::deny(r.message);
    d.argument = r.argument;
    d
}

fn judge(policy: &Policy, req: &Request, argv: &[String]) -> Decision {
    let Some(user) = policy.users.get(&req.user) else {
        return Decision::deny(format!(
            "user {} has no rules in the gateway policy",
            req.user
        ));
    };
    if let Err(r) = within_limits(policy, argv) {
        return refusal_decision(r);
    }
    let Some(argv0) = argv.first() else {
        let mut d = Decision::deny("empty command".into());
        d.allowed = Alternatives::Everything;
        return d;
    };
    let Some(program) = policy.program_for(argv0) else {
        let mut d = refusal_decision(unknown_program(argv0));
        d.allowed = Alternatives::Everything;
        return d;
    };
    if policy.rules_for(user, &program.name).next().is_none() {
        let mut d = Decision::deny(format!("{} may not run {}", user.name, program.name));
        d.argument = Some(argv0.clone());
        d.allowed = Alternatives::Everything;
        return d;
    }
    // Rules that cannot concern this request would only repeat one refusal: read the first.
    let mut candidates: Vec<&Rule> = policy
        .candidate_rules(user, &program.name, &argv[1..])
        .collect();
    if candidates.is_empty() {
        candidates.extend(policy.rules_for(user, &program.name).take(1));
    }
    let mut best: Option<(Refusal, &Rule)> = None;
    for rule in &candidates {
        let result = rule
            .evaluate(&argv[1..])
            .and_then(|outcome| finish(policy, user, program, rule, outcome));
        match result {
            Ok(plan) => {
                return Decision {
                    verdict: Verdict::Allow,
                    would_deny: false,
                    mode: Some(user.mode),
                    rule: Some(rule.name.clone()),
                    reason: format!("allowed by rule {}", rule.name),
                    argument: None,
                    hint: None,
                    allowed: Alternatives::None,
                    argv: None,
                    plan: Some(plan),
                }
            }
            Err(r) => {
                if best.as_ref().is_none_or(|(b, _)| r.outranks(b)) {
                    best = Some((r, rule));
                }
            }
        }
    }
    let (refusal, rule) = best.expect("at least one rule was evaluated");
    let hint = refusal.hint.clone().or_else(|| rule.hint.clone());
    let mut d = refusal_decision(Refusal {
        message: format!("{}: {}", program.name, refusal.message),
        ..refusal
    });
    d.rule = Some(rule.name.clone());
    d.hint = hint;
    d.allowed = Alternatives::Program(program.name.clone());
    d
}

/// Whole-request caps and characters no rule may accept (THREATS 16, 17).
fn within_limits(policy: &Policy, argv: &[String]) -> Result<(), Refusal> {
    let s = &policy.settings;
    if argv.len() > s.max_args {
        return Err(Refusal::missing(
            s.max_args,
            format!("too many arguments ({} > {})", argv.len(), s.max_args),
        ));
    }
    let mut total = 0;
    for (i, a) in argv.iter().enumerate() {
        total += a.len();
        if a.len() > s.max_arg_bytes {
            let shown: String = a.chars().take(32).collect();
            return Err(Refusal::at(
                i,
                &shown,
                format!("argument {i} is longer than {} bytes", s.max_arg_bytes),
            ));
        }
        if let Some(c) = a
            .chars()
            .find(|&c| c.is_control() || (!c.is_ascii() && split::is_invisible(c)))
        {
            return Err(Refusal::at(
                i,
                a,
                format!(
                    "argument {i} contains the control or invisible character U+{:04X}",
                    c as u32
                ),
            ));
        }
    }
    if total > s.max_total_bytes {
        return Err(Refusal::missing(
            argv.len(),
            format!("the request is longer than {} bytes", s.max_total_bytes),
        ));
    }
    Ok(())
}

fn unknown_program(argv0: &str) -> Refusal {
    let message = if is_env_assignment(argv0) {
        format!("{argv0:?} sets an environment variable; the environment is fixed by the policy")
    } else if argv0 == "env" {
        "env is not allowed: the environment is fixed by the policy".to_string()
    } else if argv0.contains('/') {
        format!(
            "{argv0} is not one of the program paths in the policy; call the program by its name"
        )
    } else {
        format!("unknown program {argv0:?}")
    };
    Refusal::at(0, argv0, message)
}

fn is_env_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Turns a rule's outcome into a plan; a wrapper's inner request is judged again in full.
fn finish(
    policy: &Policy,
    user: &User,
    program: &Program,
    rule: &Rule,
    outcome: Outcome,
) -> Result<ExecPlan, Refusal> {
    match outcome {
        Outcome::Args(args) => plan_for(policy, program, args, &rule.env, rule.time_limit),
        Outcome::Wrap(wrapped, programs) => {
            let inner = inner_plan(policy, user, &wrapped, &programs)?;
            let mut args = wrapped.before.clone();
            args.push(inner.path.display().to_string());
            args.extend(inner.argv.into_iter().skip(1));
            let mut env = rule.env.clone();
            env.extend(inner.env_additions);
            let limit = match (rule.time_limit, inner.time_limit) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut plan = plan_for(policy, program, args, &env, limit)?;
            plan.installed &= inner.installed;
            Ok(plan)
        }
    }
}

struct InnerPlan {
    path: PathBuf,
    argv: Vec<String>,
    env_additions: Vec<(String, String)>,
    time_limit: Option<u64>,
    installed: bool,
}

fn inner_plan(
    policy: &Policy,
    user: &User,
    wrapped: &Wrapped,
    programs: &[String],
) -> Result<InnerPlan, Refusal> {
    let shift = |mut r: Refusal| {
        r.index += wrapped.offset;
        r
    };
    let argv0 = &wrapped.inner[0];
    let program = policy
        .program_for(argv0)
        .filter(|p| programs.contains(&p.name))
        .ok_or_else(|| {
            Refusal::at(
                wrapped.offset,
                argv0,
                format!(
                    "{argv0:?} cannot run under this wrapper; allowed: {}",
                    programs.join(", ")
                ),
            )
        })?;
    let mut best: Option<Refusal> = None;
    for rule in policy.rules_for(user, &program.name) {
        if rule.is_wrapper() {
            continue;
        }
        match rule.evaluate(&wrapped.inner[1..]) {
            Ok(Outcome::Args(args)) => {
                let plan = plan_for(policy, program, args, &[], None).map_err(shift)?;
                return Ok(InnerPlan {
                    path: plan.path,
                    argv: plan.argv,
                    env_additions: rule.env.clone(),
                    time_limit: rule.time_limit,
                    installed: plan.installed,
                });
            }
            Ok(Outcome::Wrap(..)) => {}
            Err(mut r) => {
                r.index += 1;
                r.message = format!("{}: {}", program.name, r.message);
                if best.as_ref().is_none_or(|b| r.outranks(b)) {
                    best = Some(r);
                }
            }
        }
    }
    Err(shift(best.unwrap_or_else(|| {
        Refusal::at(
            0,
            argv0,
            format!("{} may not run {}", user.name, program.name),
        )
    })))
}

/// The environment every program gets; rules may add to it.
fn base_env(policy: &Policy) -> Vec<(String, String)> {
    let s = &policy.settings;
    vec![
        ("PATH".into(), s.exec_path.clone()),
        ("HOME".into(), "/root".into()),
        ("LANG".into(), s.lang.clone()),
        ("PAGER".into(), "cat".into()),
        ("LESSSECURE".into(), "1".into()),
        ("SYSTEMD_PAGER".into(), "cat".into()),
        ("SYSTEMD_PAGERSECURE".into(), "1".into()),
    ]
}

fn plan_for(
    policy: &Policy,
    program: &Program,
    args: Vec<String>,
    extra_env: &[(String, String)],
    time_limit: Option<u64>,
) -> Result<ExecPlan, Refusal> {
    let (path, installed) = match program.resolve() {
        Resolution::Trusted(p) => (p.clone(), true),
        Resolution::Missing => (program.paths[0].clone(), false),
        Resolution::Untrusted(why) => {
            return Err(Refusal::missing(
                usize::MAX,
                format!("refusing to run {}: {why}", program.name),
            ))
        }
    };
    let mut env = base_env(policy);
    for (k, v) in extra_env {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(path.display().to_string());
    argv.extend(args);
    Ok(ExecPlan {
        path,
        argv,
        env,
        time_limit,
        installed,
    })
}

/// What a denied caller may run instead. Kept as a description and rendered only when shown:
/// formatting every synopsis of a user's rules costs more than the decision itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alternatives {
    None,
    /// Every rule the user holds.
    Everything,
    /// The user's rules for this program.
    Program(String),
}

/// One line per rule (each with its description): what `user` may run instead.
pub fn alternatives(policy: &Policy, user: &str, which: &Alternatives) -> Vec<String> {
    let Some(user) = policy.users.get(user) else {
        return Vec::new();
    };
    let line = |r: &Rule| match &r.description {
        Some(d) => format!("{}    # {d}", r.synopsis()),
        None => r.synopsis(),
    };
    match which {
        Alternatives::None => Vec::new(),
        Alternatives::Everything => user
            .rules
            .iter()
            .filter_map(|r| policy.rules.get(r))
            .map(line)
            .collect(),
        Alternatives::Program(p) => policy.rules_for(user, p).map(|r| r.synopsis()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_assignments_are_recognised() {
        for (w, yes) in [
            ("LD_PRELOAD=/tmp/x.so", true),
            ("PATH=/tmp", true),
            ("a=b", true),
            ("=x", false),
            ("1A=b", false),
            ("docker", false),
            ("if=/dev/zero", true),
        ] {
            assert_eq!(is_env_assignment(w), yes, "{w}");
        }
    }

    #[test]
    fn a_leading_bare_sudo_is_dropped_and_sudo_options_are_refused() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(strip_sudo(w("sudo docker ps")).unwrap(), w("docker ps"));
        assert_eq!(strip_sudo(w("docker ps")).unwrap(), w("docker ps"));
        assert!(strip_sudo(w("sudo -u root docker ps")).is_err());
        assert!(strip_sudo(w("sudo")).is_err());
        assert_eq!(
            strip_sudo(w("sudo sudo docker")).unwrap(),
            w("sudo docker"),
            "only one sudo is dropped; the second is an unknown program"
        );
    }
}
