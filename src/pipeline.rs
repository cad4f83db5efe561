//! The two doors, one pipeline: read the policy, judge, record, then run or refuse.
//!
//! `run` is what sudo starts (directly, or through a shim link named after a program). `ssh` is
//! the forced command: started as the user by sshd, it re-enters itself through the same sudoers
//! entry, so the decision and the audit record are always made by root.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::audit::{self, Context};
use crate::decision::{self, decide, Channel, Decision, Input, Request, Verdict};
use crate::policy::{self, Policy, Settings, POLICY_PATH};
use crate::{alert, exec, request, trust};

/// Where the gateway is installed; the sudoers entry and the SSH re-entry name this path.
pub const GATEWAY_PATH: &str = "/usr/local/bin/gateway";
const SUDO_CANDIDATES: &[&str] = &["/run/wrappers/bin/sudo", "/usr/bin/sudo", "/bin/sudo"];

pub const EXIT_USAGE: u8 = 64;
pub const EXIT_DENY: u8 = 77;
pub const EXIT_CONFIG: u8 = 78;

/// The sudo door: `gateway run [--] PROGRAM ARGS...` or a shim link named PROGRAM.
pub fn run(argv: Vec<OsString>) -> u8 {
    let (words, bad) = to_utf8(argv);
    let pre = bad.map(|i| format!("argument {i} is not valid UTF-8"));
    handle(Channel::Sudo, Input::Argv(words), pre)
}

/// The SSH door: `gateway ssh` as the forced command of an `authorized_keys` line.
pub fn ssh() -> u8 {
    if !request::is_root() {
        return reenter_through_sudo();
    }
    handle(Channel::Ssh, Input::Ssh(request::ssh_command()), None)
}

fn reenter_through_sudo() -> u8 {
    let Some(sudo) = SUDO_CANDIDATES.iter().find(|p| Path::new(p).exists()) else {
        eprintln!("gateway: sudo is not installed; this account cannot run anything");
        return EXIT_DENY;
    };
    let err = Command::new(sudo)
        .args(["-n", GATEWAY_PATH, "ssh"])
        .current_dir("/")
        .exec();
    eprintln!("gateway: cannot start {sudo}: {err}");
    EXIT_DENY
}

fn to_utf8(argv: Vec<OsString>) -> (Vec<String>, Option<usize>) {
    let mut bad = None;
    let words = argv
        .into_iter()
        .enumerate()
        .map(|(i, a)| match a.into_string() {
            Ok(s) => s,
            Err(raw) => {
                bad.get_or_insert(i);
                raw.to_string_lossy().into_owned()
            }
        })
        .collect();
    (words, bad)
}

/// The policy `run` and `ssh` use for a request by `user`, after checking that root alone
/// controls it and this binary.
fn load_trusted(user: &str) -> Result<Policy, String> {
    let exe = crate::system::current_exe()
        .map_err(|e| format!("cannot locate the gateway binary: {e}"))?;
    let (_, exe_md) = trust::resolve_locked_metadata(&exe)
        .map_err(|e| format!("the gateway binary is not locked to root: {e}"))?;
    let path = Path::new(POLICY_PATH);
    let policy_md = policy::check_policy_file(path).map_err(|d| d.to_string())?;
    let cache = Path::new(policy::cache::CACHE_PATH);
    let key = policy::cache::Key::from_metadata(&policy_md, &exe_md);
    policy::cache::load_keyed(path, cache, Some(key), user).map_err(|diags| {
        let more = if diags.len() > 1 {
            format!(" (and {} more; run gateway check)", diags.len() - 1)
        } else {
            String::new()
        };
        format!("the policy cannot be used: {}{more}", diags[0])
    })
}

fn handle(channel: Channel, input: Input, pre_denial: Option<String>) -> u8 {
    let time = SystemTime::now();
    if !request::is_root() {
        eprintln!(
            "gateway: denied: `gateway run` works only through sudo; the sudoers entry is what \
             grants root"
        );
        return EXIT_DENY;
    }
    let (user, uid, caller_error) = match request::caller() {
        Ok(c) => (c.user, Some(c.uid), None),
        Err(e) => ("?".to_string(), None, Some(e)),
    };
    let ctx = Context {
        time,
        host: request::hostname(),
        uid,
        ssh_client: (channel == Channel::Ssh)
            .then(request::ssh_client)
            .flatten(),
    };
    let req = Request {
        user,
        channel,
        input,
    };
    let mut config_error = false;
    let loaded = load_trusted(&req.user);
    let settings = loaded
        .as_ref()
        .map(|p| p.settings.clone())
        .unwrap_or_default();
    let mut decision = match (&loaded, caller_error.or(pre_denial)) {
        (_, Some(reason)) => Decision::refused(reason),
        (Err(reason), None) => {
            config_error = true;
            Decision::refused(reason.clone())
        }
        (Ok(policy), None) => decide(policy, &req),
    };
    if let Some(plan) = &decision.plan {
        if !plan.installed {
            let reason = format!("{} is not installed on this host", plan.path.display());
            decision.overrule(reason);
        }
    }
    let recorded = record(&settings, &req, &decision, &ctx);
    if let Err(e) = &recorded {
        decision.overrule(format!(
            "the audit log could not be written ({e}); nothing runs without a record"
        ));
    }
    // Deny and would-deny only; queued on disk, delivered by another process, never fails this.
    let alerts = loaded
        .as_ref()
        .map(|p| p.alerts.clone())
        .unwrap_or_default();
    alert::raise(&alerts, &req, &decision, &ctx);
    if recorded.is_err() {
        explain(loaded.as_ref().ok(), &req, &decision);
        return EXIT_DENY;
    }
    match (decision.verdict, &decision.plan) {
        (Verdict::Allow, Some(plan)) => exec::run(plan),
        _ => {
            explain(loaded.as_ref().ok(), &req, &decision);
            if config_error {
                EXIT_CONFIG
            } else {
                EXIT_DENY
            }
        }
    }
}

fn record(settings: &Settings, req: &Request, d: &Decision, ctx: &Context) -> Result<(), String> {
    audit::record(&settings.audit_log, settings.syslog, req, d, ctx)
}

/// Tells the caller why, and what they may run instead.
fn explain(policy: Option<&Policy>, req: &Request, d: &Decision) {
    let allowed = policy
        .map(|p| decision::alternatives(p, &req.user, &d.allowed))
        .unwrap_or_default();
    if req.input == Input::Ssh(None) {
        println!("This account runs commands through gateway; there is no shell.");
        if allowed.is_empty() {
            println!("{} may run nothing.", req.user);
        } else {
            println!("{} may run:", req.user);
            for line in &allowed {
                println!("    {line}");
            }
        }
        return;
    }
    eprintln!("gateway: denied: {}", d.reason);
    if let Some(hint) = &d.hint {
        eprintln!("gateway: hint: {hint}");
    }
    if !allowed.is_empty() {
        eprintln!("gateway: {} may run:", req.user);
        for line in &allowed {
            eprintln!("    {line}");
        }
    }
}
