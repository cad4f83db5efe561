//! `gateway deploy`: install, update or uninstall on many hosts at once over the operator's own
//! `ssh` and `scp`, one thread per host, and a result table at the end.
//!
//! The remote side runs the command through the login user's shell, so only fixed words and
//! validated ones (host names, the temporary directory, user names) are ever sent: no quoting is
//! needed and none is attempted. Locally, ssh and scp get argv vectors; no shell is involved.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::features::Feature;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Update,
    Uninstall,
}

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub servers: Vec<String>,
    pub action: Action,
    pub dry_run: bool,
    pub restore_permissive: bool,
    pub features: Vec<Feature>,
    pub policy: Option<PathBuf>,
    pub binary: Option<PathBuf>,
    pub webhook_file: Option<PathBuf>,
    pub ssh_users: Vec<String>,
    pub set_login_shell: bool,
    /// `ssh -F FILE` / `scp -F FILE`.
    pub ssh_config: Option<PathBuf>,
    /// Run the remote command through `sudo -n` (the login user is not root).
    pub sudo: bool,
    pub parallel: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Installed, but a check found something that defeats the gateway there.
    Defeated,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub host: String,
    pub status: Status,
    pub code: Option<i32>,
    pub changes: Option<u32>,
    pub defeats: Option<u32>,
    pub weakens: Option<u32>,
    pub seconds: f64,
    pub output: String,
}

/// `[user@]host`: a host name, IPv4 address or ssh_config alias, and an optional login name.
/// Nothing that ssh could read as an option or the remote shell as syntax.
pub fn valid_server(s: &str) -> bool {
    let (user, host) = match s.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, s),
    };
    let user_ok = user.is_none_or(super::plain_user_name);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.as_bytes()[0].is_ascii_alphanumeric()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    user_ok && host_ok
}

fn valid_tempdir(s: &str) -> bool {
    s.strip_prefix("/tmp/gateway-deploy.")
        .is_some_and(|r| r.len() == 10 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Tools {
    ssh: PathBuf,
    scp: PathBuf,
}

impl Tools {
    fn common(&self, c: &mut Command, opts: &DeployOptions) {
        if let Some(f) = &opts.ssh_config {
            c.arg("-F").arg(f);
        }
        c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]);
        c.stdin(Stdio::null());
    }

    fn ssh(&self, opts: &DeployOptions, host: &str, words: &[String]) -> Command {
        let mut c = Command::new(&self.ssh);
        self.common(&mut c, opts);
        c.arg("--").arg(host).args(words);
        c
    }

    fn scp(&self, opts: &DeployOptions, local: &Path, host: &str, remote: &str) -> Command {
        let mut c = Command::new(&self.scp);
        self.common(&mut c, opts);
        c.arg("-q")
            .arg("--")
            .arg(local)
            .arg(format!("{host}:{remote}"));
        c
    }
}

/// The words of the remote gateway command (after the uploaded binary's path).
pub fn remote_words(opts: &DeployOptions, dir: &str) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    match opts.action {
        Action::Uninstall => {
            w.push("uninstall".into());
            if opts.restore_permissive {
                w.push("--restore-permissive".into());
            }
        }
        Action::Install | Action::Update => {
            w.push("install".into());
            if opts.action == Action::Update {
                w.push("--update".into());
            }
            for f in &opts.features {
                w.push(format!("--{}", f.name()));
            }
            if opts.policy.is_some() {
                w.push("--policy".into());
                w.push(format!("{dir}/gateway.toml"));
            }
            if opts.webhook_file.is_some() {
                w.push("--webhook-file".into());
                w.push(format!("{dir}/webhook"));
            }
            for u in &opts.ssh_users {
                w.push("--ssh-user".into());
                w.push(u.clone());
            }
            if opts.set_login_shell {
                w.push("--set-login-shell".into());
            }
            w.push("--yes".into());
        }
    }
    if opts.dry_run {
        w.push("--dry-run".into());
    }
    w
}

fn tail(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("gateway-result:"))
        .unwrap_or("")
        .chars()
        .take(100)
        .collect()
}

fn run(c: &mut Command, log: &mut String) -> Result<i32, String> {
    let out = c.output().map_err(|e| format!("cannot start: {e}"))?;
    log.push_str(&String::from_utf8_lossy(&out.stdout));
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(out.status.code().unwrap_or(-1))
}

fn one_host(tools: &Tools, opts: &DeployOptions, host: &str, binary: &Path) -> Outcome {
    let start = Instant::now();
    let mut log = String::new();
    let mut outcome = Outcome {
        host: host.to_string(),
        status: Status::Failed(String::new()),
        code: None,
        changes: None,
        defeats: None,
        weakens: None,
        seconds: 0.0,
        output: String::new(),
    };
    let mktemp: Vec<String> = ["mktemp", "-d", "/tmp/gateway-deploy.XXXXXXXXXX"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let made = tools.ssh(opts, host, &mktemp).output();
    let dir = match made {
        Ok(o) if o.status.success() => {
            let d = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if valid_tempdir(&d) {
                Ok(d)
            } else {
                Err(format!("mktemp answered {d:?}"))
            }
        }
        Ok(o) => Err(format!(
            "ssh: {}",
            tail(&String::from_utf8_lossy(&o.stderr))
        )),
        Err(e) => Err(format!("cannot start ssh: {e}")),
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            outcome.status = Status::Failed(e.clone());
            log.push_str(&e);
            outcome.output = log;
            outcome.seconds = start.elapsed().as_secs_f64();
            return outcome;
        }
    };
    let mut uploads: Vec<(PathBuf, String)> =
        vec![(binary.to_path_buf(), format!("{dir}/gateway"))];
    if let Some(p) = &opts.policy {
        uploads.push((p.clone(), format!("{dir}/gateway.toml")));
    }
    if let Some(p) = &opts.webhook_file {
        uploads.push((p.clone(), format!("{dir}/webhook")));
    }
    let mut failure = None;
    for (local, remote) in &uploads {
        match run(&mut tools.scp(opts, local, host, remote), &mut log) {
            Ok(0) => {}
            Ok(c) => {
                failure = Some(format!(
                    "scp {} failed ({c}): {}",
                    local.display(),
                    tail(&log)
                ));
                break;
            }
            Err(e) => {
                failure = Some(format!("scp: {e}"));
                break;
            }
        }
    }
    if failure.is_none() {
        let mut words = Vec::new();
        if opts.sudo {
            words.extend(["sudo".to_string(), "-n".to_string()]);
        }
        words.push(format!("{dir}/gateway"));
        words.extend(remote_words(opts, &dir));
        let before = log.len();
        match run(&mut tools.ssh(opts, host, &words), &mut log) {
            Ok(code) => {
                outcome.code = Some(code);
                let mine = &log[before..];
                if let Some(line) = mine.lines().find(|l| l.starts_with("gateway-result:")) {
                    let field = |k: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(k))
                            .and_then(|v| v.parse().ok())
                    };
                    outcome.changes = field("changes=");
                    outcome.defeats = field("defeats=");
                    outcome.weakens = field("weakens=");
                }
                outcome.status = match code {
                    0 => Status::Ok,
                    2 => Status::Defeated,
                    _ => Status::Failed(tail(mine)),
                };
            }
            Err(e) => failure = Some(format!("ssh: {e}")),
        }
    }
    if let Some(f) = failure {
        outcome.status = Status::Failed(f);
    }
    // The temporary directory goes whatever happened.
    let cleanup: Vec<String> = vec!["rm".into(), "-rf".into(), dir];
    let _ = run(&mut tools.ssh(opts, host, &cleanup), &mut String::new());
    outcome.output = log;
    outcome.seconds = start.elapsed().as_secs_f64();
    outcome
}

/// Runs the action on every server, at most `parallel` at a time. Outcomes come back in the
/// order the servers were given.
pub fn deploy(opts: &DeployOptions) -> Result<Vec<Outcome>, String> {
    for s in &opts.servers {
        if !valid_server(s) {
            return Err(format!(
                "{s:?} is not a server name (use [user@]host; ports and options go in the ssh \
                 config given with --ssh-config)"
            ));
        }
    }
    for u in &opts.ssh_users {
        if !super::plain_user_name(u) {
            return Err(format!("{u:?} is not a user name"));
        }
    }
    let tools = Tools {
        ssh: find_program("ssh").ok_or("ssh is not in PATH")?,
        scp: find_program("scp").ok_or("scp is not in PATH")?,
    };
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?,
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; opts.servers.len()]);
    std::thread::scope(|scope| {
        for _ in 0..opts.parallel.clamp(1, 64).min(opts.servers.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(host) = opts.servers.get(i) else {
                    break;
                };
                let o = one_host(&tools, opts, host, &binary);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(o);
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| "a worker panicked")?;
    Ok(results.into_iter().flatten().collect())
}

/// The per-host table.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:width$}  {:8}  {:>7}  {:>7}  {:>7}  {:>6}  DETAIL",
        "HOST", "RESULT", "CHANGES", "DEFEATS", "WEAKENS", "TIME"
    );
    let num = |n: Option<u32>| n.map_or("-".to_string(), |n| n.to_string());
    for o in outcomes {
        let (result, detail) = match &o.status {
            Status::Ok => ("ok", String::new()),
            Status::Defeated => ("DEFEATED", "a check found a way around the gateway".into()),
            Status::Failed(why) => ("FAILED", why.clone()),
        };
        let _ = writeln!(
            s,
            "{:width$}  {:8}  {:>7}  {:>7}  {:>7}  {:>5.1}s  {detail}",
            o.host,
            result,
            num(o.changes),
            num(o.defeats),
            num(o.weakens),
            o.seconds
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_server_names_reach_ssh() {
        // (server, accepted, why)
        let table: &[(&str, bool, &str)] = &[
            ("gpu-01.example.net", true, "a host name"),
            ("root@10.0.0.5", true, "a login name and an address"),
            ("host_alias", true, "an ssh_config alias"),
            (
                "-oProxyCommand=id",
                false,
                "would be read by ssh as an option",
            ),
            ("a;id", false, "remote-shell syntax"),
            ("a b", false, "two words"),
            (
                "Root@host",
                false,
                "a login name sudo and sshd would not treat as plain",
            ),
            ("host:22", false, "ports belong in the ssh config"),
            ("", false, "empty"),
        ];
        for (s, ok, why) in table {
            assert_eq!(valid_server(s), *ok, "{s:?}: {why}");
        }
    }

    #[test]
    fn the_remote_command_is_made_of_fixed_words() {
        let opts = DeployOptions {
            servers: vec![],
            action: Action::Install,
            dry_run: true,
            restore_permissive: false,
            features: vec![Feature::SudoRestrictions, Feature::CoreLimits],
            policy: Some("/x/y.toml".into()),
            binary: None,
            webhook_file: None,
            ssh_users: vec!["ai-worker".into()],
            set_login_shell: false,
            ssh_config: None,
            sudo: false,
            parallel: 4,
        };
        let w = remote_words(&opts, "/tmp/gateway-deploy.abcdefghij");
        assert_eq!(
            w.join(" "),
            "install --sudo-restrictions --core-limits --policy \
             /tmp/gateway-deploy.abcdefghij/gateway.toml --ssh-user ai-worker --yes --dry-run"
        );
        assert!(valid_tempdir("/tmp/gateway-deploy.abcdefghij"));
        assert!(!valid_tempdir("/tmp/gateway-deploy.abc;id"));
    }
}
