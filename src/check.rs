//! `gateway check`: the same decision as a real request, stopped before exec and printed.
//!
//! Three forms: validate a policy and run its `[[test]]` cases; judge one request; judge a
//! stream of JSON lines (audit records are valid input, so a new policy can replay old traffic).
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decision::{self, decide, Channel, Decision, ExecPlan, Input, Request, Verdict};
use crate::pipeline::{EXIT_CONFIG, EXIT_DENY, EXIT_USAGE};
use crate::policy::{self, Expect, Policy, TestInput};

#[derive(Debug)]
pub struct Options {
    pub config: PathBuf,
    pub user: Option<String>,
    pub ssh: Option<String>,
    pub argv: Vec<String>,
    pub batch: Option<String>,
    pub json: bool,
}

pub fn run(opts: Options) -> u8 {
    if let Err(d) = policy::check_policy_file(&opts.config) {
        eprintln!("warning: {d}");
        eprintln!(
            "warning: `gateway run` and `gateway ssh` would deny every request with this file"
        );
    }
    let policy = match Policy::load_strict(&opts.config) {
        Ok(p) => p,
        Err(diags) => {
            for d in &diags {
                eprintln!("error: {d}");
            }
            eprintln!(
                "{}: {} error(s); the policy was not loaded",
                opts.config.display(),
                diags.len()
            );
            return EXIT_CONFIG;
        }
    };
    match (&opts.batch, &opts.user) {
        (Some(source), _) => batch(&policy, source),
        (None, Some(user)) => {
            let input = match &opts.ssh {
                Some(cmd) => Input::Ssh(Some(cmd.clone())),
                None if opts.argv.is_empty() => {
                    eprintln!("error: give the request after --, or --ssh 'COMMAND'");
                    return EXIT_USAGE;
                }
                None => Input::Argv(opts.argv.clone()),
            };
            one(&policy, user, input, opts.json)
        }
        (None, None) => {
            if opts.ssh.is_some() || !opts.argv.is_empty() {
                eprintln!("error: --user is needed to judge a request");
                return EXIT_USAGE;
            }
            let code = self_test(&policy, &opts.config);
            let alerts_ok = crate::alert::check_report(&policy.alerts);
            if code == 0 && !alerts_ok {
                EXIT_CONFIG
            } else {
                code
            }
        }
    }
}

fn channel_of(input: &Input) -> Channel {
    match input {
        Input::Argv(_) => Channel::Sudo,
        Input::Ssh(_) => Channel::Ssh,
    }
}

/// A deny, or an audit-mode pass of something the rules deny.
fn rules_deny(d: &Decision) -> bool {
    d.verdict == Verdict::Deny || d.would_deny
}

/// Runs the policy's `[[test]]` cases; prints failures and a summary line. 0 when all pass.
pub fn self_test(policy: &Policy, path: &Path) -> u8 {
    let mut failures = 0;
    for t in &policy.tests {
        let input = match &t.input {
            TestInput::Argv(a) => Input::Argv(a.clone()),
            TestInput::Ssh(c) => Input::Ssh(c.clone()),
        };
        let req = Request {
            user: t.user.clone(),
            channel: channel_of(&input),
            input,
        };
        let d = decide(policy, &req);
        let mut problems = Vec::new();
        match (t.expect, rules_deny(&d)) {
            (Expect::Allow, true) => {
                problems.push(format!("expected allow, got deny: {}", d.reason))
            }
            (Expect::Deny, false) => problems.push(format!(
                "expected deny, got allow by rule {}",
                d.rule.as_deref().unwrap_or("-")
            )),
            _ => {}
        }
        if let (Some(want), Some(plan)) = (&t.exec, &d.plan) {
            if &plan.argv != want {
                problems.push(format!("expected exec {want:?}, got {:?}", plan.argv));
            }
        }
        if let Some(want) = &t.reason {
            if !d.reason.contains(want.as_str()) {
                problems.push(format!(
                    "expected a reason containing {want:?}, got {:?}",
                    d.reason
                ));
            }
        }
        if !problems.is_empty() {
            failures += 1;
            let what = match &t.input {
                TestInput::Argv(a) => shell_words(a),
                TestInput::Ssh(Some(c)) => format!("ssh {c:?}"),
                TestInput::Ssh(None) => "ssh (no command)".into(),
            };
            eprintln!("{}: test failed for {}: {what}", t.location, t.user);
            for p in problems {
                eprintln!("    {p}");
            }
            if let Some(why) = &t.why {
                eprintln!("    (test: {why})");
            }
        }
    }
    let n = policy.tests.len();
    if failures > 0 {
        eprintln!("{}: {failures} of {n} tests failed", path.display());
        return EXIT_CONFIG;
    }
    println!(
        "{}: policy OK: {} users, {} programs, {} rules; {n} tests passed",
        path.display(),
        policy.users.len(),
        policy.programs.len(),
        policy.rules.len()
    );
    0
}

#[derive(Serialize)]
struct ExecJson<'a> {
    path: &'a Path,
    argv: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<std::collections::BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_limit: Option<u64>,
    installed: bool,
}

#[derive(Serialize)]
struct DecisionJson<'a> {
    verdict: Verdict,
    would_deny: bool,
    rule: Option<&'a str>,
    reason: &'a str,
    argument: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed: Vec<String>,
    exec: Option<ExecJson<'a>>,
}

/// The decision as JSON; `detail` adds the environment and the alternatives (single checks),
/// which batch output leaves out.
fn to_json<'a>(d: &'a Decision, detail: Option<(&Policy, &str)>) -> DecisionJson<'a> {
    let with_env = detail.is_some();
    DecisionJson {
        verdict: d.verdict,
        would_deny: d.would_deny,
        rule: d.rule.as_deref(),
        reason: &d.reason,
        argument: d.argument.as_deref(),
        hint: d.hint.as_deref(),
        allowed: detail
            .map(|(p, user)| decision::alternatives(p, user, &d.allowed))
            .unwrap_or_default(),
        exec: d.plan.as_ref().map(|p| exec_json(p, with_env)),
    }
}

fn exec_json(p: &ExecPlan, with_env: bool) -> ExecJson<'_> {
    ExecJson {
        path: &p.path,
        argv: &p.argv,
        env: with_env.then(|| {
            p.env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        }),
        time_limit: p.time_limit,
        installed: p.installed,
    }
}

fn one(policy: &Policy, user: &str, input: Input, json: bool) -> u8 {
    let req = Request {
        user: user.to_string(),
        channel: channel_of(&input),
        input,
    };
    let d = decide(policy, &req);
    if json {
        let detail = Some((policy, user));
        println!(
            "{}",
            serde_json::to_string(&to_json(&d, detail)).unwrap_or_default()
        );
    } else {
        print!("{}", human(policy, user, &d));
    }
    match d.verdict {
        Verdict::Allow => 0,
        Verdict::Deny => EXIT_DENY,
    }
}

/// The decision as an operator reads it.
pub fn human(policy: &Policy, user: &str, d: &Decision) -> String {
    let mut s = String::new();
    match (d.verdict, d.would_deny) {
        (Verdict::Allow, false) => {
            let _ = writeln!(s, "allow: {}", d.reason);
        }
        (Verdict::Allow, true) => {
            let _ = writeln!(s, "allow (audit mode; the rules would deny): {}", d.reason);
        }
        (Verdict::Deny, _) => {
            let _ = writeln!(s, "deny: {}", d.reason);
        }
    }
    if let Some(a) = &d.argument {
        let _ = writeln!(s, "  argument: {a:?}");
    }
    if let Some(h) = &d.hint {
        let _ = writeln!(s, "  hint: {h}");
    }
    if let Some(p) = &d.plan {
        let _ = writeln!(s, "  path: {}", p.path.display());
        let _ = writeln!(s, "  argv: {}", shell_words(&p.argv));
        let env: Vec<String> = p.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "  env:  {}", shell_words(&env));
        let _ = writeln!(s, "  cwd:  /");
        if let Some(t) = p.time_limit {
            let _ = writeln!(s, "  time limit: {t} s");
        }
        if !p.installed {
            let _ = writeln!(
                s,
                "  note: {} is not installed on this host; a real request would be denied",
                p.path.display()
            );
        }
    }
    let allowed = decision::alternatives(policy, user, &d.allowed);
    if !allowed.is_empty() {
        let _ = writeln!(s, "  allowed instead:");
        for a in &allowed {
            let _ = writeln!(s, "    {a}");
        }
    }
    s
}

/// Words quoted for display (never for execution).
pub fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%{}^".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One batch input line. Audit records carry more fields; they are ignored.
#[derive(Deserialize)]
struct BatchLine {
    user: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    command: Option<String>,
}

fn batch_request(line: &str) -> Result<Request, String> {
    let l: BatchLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let (channel, input) = match l.channel.as_deref() {
        Some("ssh") => (Channel::Ssh, Input::Ssh(l.command)),
        None | Some("sudo") => match l.argv {
            Some(a) => (Channel::Sudo, Input::Argv(a)),
            None => return Err("a sudo request needs \"argv\"".into()),
        },
        Some(other) => return Err(format!("unknown channel {other:?}")),
    };
    Ok(Request {
        user: l.user,
        channel,
        input,
    })
}

fn batch(policy: &Policy, source: &str) -> u8 {
    let reader: Box<dyn BufRead> = if source == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        match File::open(source) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("error: cannot open {source}: {e}");
                return EXIT_USAGE;
            }
        }
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut buf = Vec::with_capacity(256);
    for (n, line) in reader.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: line {}: {e}", n + 1);
                return EXIT_USAGE;
            }
        };
        buf.clear();
        match batch_request(&line) {
            Ok(req) => {
                let d = decide(policy, &req);
                let _ = serde_json::to_writer(&mut buf, &to_json(&d, None));
            }
            Err(e) => {
                let d = Decision::refused(format!("line {}: invalid request: {e}", n + 1));
                let mut v = serde_json::to_value(to_json(&d, None)).unwrap_or_default();
                v["error"] = serde_json::Value::Bool(true);
                let _ = serde_json::to_writer(&mut buf, &v);
            }
        }
        buf.push(b'\n');
        if out.write_all(&buf).is_err() {
            return EXIT_USAGE;
        }
    }
    if out.flush().is_err() {
        return EXIT_USAGE;
    }
    0
}
