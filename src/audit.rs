//! One record per decision: a JSON line in the append-only audit file and an escaped, capped
//! syslog line (authpriv). A record can make an allow fail (unwritable log), never the reverse.
#![forbid(unsafe_code)]

use std::fs::DirBuilder;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::SystemTime;

use nix::fcntl::OFlag;
use serde::Serialize;

use crate::decision::{Channel, Decision, Request, Verdict};
use crate::{clock, system};

const SYSLOG_SOCKET: &str = "/dev/log";
const SYSLOG_MAX: usize = 1024;
const LOG_AUTHPRIV: u8 = 10;
const SEV_WARNING: u8 = 4;
const SEV_NOTICE: u8 = 5;
const SEV_ERR: u8 = 3;

/// Facts about the request that are not part of the decision.
#[derive(Debug, Clone)]
pub struct Context {
    pub time: SystemTime,
    pub host: String,
    pub uid: Option<u32>,
    pub ssh_client: Option<String>,
}

#[derive(Serialize)]
pub struct ExecView<'a> {
    pub path: &'a Path,
    pub argv: &'a [String],
}

/// The audit record, also valid input for `gateway check --batch`.
#[derive(Serialize)]
pub struct Record<'a> {
    pub time: String,
    pub host: &'a str,
    pub user: &'a str,
    pub uid: Option<u32>,
    pub channel: Channel,
    pub ssh_client: Option<&'a str>,
    /// The raw SSH command (`null`: none sent, or a sudo request).
    pub command: Option<&'a str>,
    pub argv: Option<&'a [String]>,
    pub verdict: Verdict,
    pub would_deny: bool,
    pub mode: Option<&'static str>,
    pub rule: Option<&'a str>,
    pub reason: &'a str,
    pub argument: Option<&'a str>,
    pub exec: Option<ExecView<'a>>,
}

impl<'a> Record<'a> {
    pub fn new(req: &'a Request, d: &'a Decision, ctx: &'a Context) -> Record<'a> {
        let (command, argv) = match &req.input {
            crate::decision::Input::Ssh(c) => (c.as_deref(), d.argv.as_deref()),
            crate::decision::Input::Argv(a) => (None, Some(a.as_slice())),
        };
        Record {
            time: clock::rfc3339(ctx.time),
            host: &ctx.host,
            user: &req.user,
            uid: ctx.uid,
            channel: req.channel,
            ssh_client: ctx.ssh_client.as_deref(),
            command,
            argv,
            verdict: d.verdict,
            would_deny: d.would_deny,
            mode: d.mode.map(|m| m.as_str()),
            rule: d.rule.as_deref(),
            reason: &d.reason,
            argument: d.argument.as_deref(),
            exec: d.plan.as_ref().map(|p| ExecView {
                path: &p.path,
                argv: &p.argv,
            }),
        }
    }
}

/// Appends the JSON line. The file must be a root-owned regular file that no one else can
/// write; its directory is created 0700 if missing.
pub fn append(path: &Path, record: &Record) -> Result<(), String> {
    let mut line = serde_json::to_vec(record).map_err(|e| format!("cannot encode: {e}"))?;
    line.push(b'\n');
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_NOFOLLOW;
    let open = || system::open(path, flags, 0o600);
    // The directory is made on the first record only; every other request opens directly.
    let opened = match (open(), path.parent()) {
        (Err(e), Some(dir)) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            open()
        }
        (opened, _) => opened,
    };
    let mut file = opened.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let md = file
        .metadata()
        .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    if !md.is_file() || md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be a root-owned regular file writable only by root",
            path.display()
        ));
    }
    file.write_all(&line)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The syslog form of a record: `key=value` pairs, strings JSON-escaped, capped.
pub fn syslog_line(record: &Record) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let argv = record
        .argv
        .map(|a| serde_json::to_string(a).unwrap_or_default())
        .unwrap_or_else(|| "null".into());
    let verdict = match (record.verdict, record.would_deny) {
        (Verdict::Allow, true) => "would-deny",
        (Verdict::Allow, false) => "allow",
        (Verdict::Deny, _) => "deny",
    };
    let mut line = format!(
        "verdict={verdict} user={} channel={} rule={} argv={argv} reason={}",
        q(record.user),
        record.channel.as_str(),
        record.rule.map(q).unwrap_or_else(|| "-".into()),
        q(record.reason),
    );
    if let Some(c) = record.command {
        line.push_str(&format!(" command={}", q(c)));
    }
    if let Some(c) = record.ssh_client {
        line.push_str(&format!(" client={}", q(c)));
    }
    cap(&mut line, SYSLOG_MAX);
    line
}

fn cap(line: &mut String, max: usize) {
    if line.len() > max {
        let mut end = max - 3;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
}

/// Sends one line to the local syslog socket, facility authpriv.
pub fn syslog(severity: u8, time: SystemTime, message: &str) -> Result<(), String> {
    let pri = LOG_AUTHPRIV * 8 + severity;
    let mut msg = message.replace(['\n', '\r', '\0'], " ");
    cap(&mut msg, SYSLOG_MAX);
    let datagram = format!(
        "<{pri}>{} gateway[{}]: {msg}",
        clock::syslog_stamp(time),
        std::process::id()
    );
    let sock = UnixDatagram::unbound().map_err(|e| e.to_string())?;
    sock.send_to(datagram.as_bytes(), SYSLOG_SOCKET)
        .map(|_| ())
        .map_err(|e| format!("syslog: {e}"))
}

/// Writes both records. The file is the record of truth: if it fails, the caller must deny,
/// and the failure itself goes to syslog.
pub fn record(
    audit_log: &Path,
    use_syslog: bool,
    req: &Request,
    d: &Decision,
    ctx: &Context,
) -> Result<(), String> {
    let rec = Record::new(req, d, ctx);
    let written = append(audit_log, &rec);
    if use_syslog {
        let sev = if d.verdict == Verdict::Allow && !d.would_deny {
            SEV_NOTICE
        } else {
            SEV_WARNING
        };
        if let Err(e) = syslog(sev, ctx.time, &syslog_line(&rec)) {
            eprintln!("gateway: warning: {e}");
        }
    }
    if let Err(e) = &written {
        let _ = syslog(SEV_ERR, ctx.time, &format!("audit log failure: {e}"));
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Decision, Input};

    fn sample() -> (Request, Decision, Context) {
        let req = Request {
            user: "ai-worker".into(),
            channel: Channel::Ssh,
            input: Input::Ssh(Some("docker ps\nid".into())),
        };
        let d = Decision {
            verdict: Verdict::Deny,
            would_deny: false,
            mode: None,
            rule: None,
            reason: "line\nbreak \"quoted\"".into(),
            argument: None,
            hint: None,
            allowed: crate::decision::Alternatives::None,
            argv: None,
            plan: None,
        };
        let ctx = Context {
            time: SystemTime::UNIX_EPOCH,
            host: "h".into(),
            uid: Some(1000),
            ssh_client: Some("127.0.0.1 4242".into()),
        };
        (req, d, ctx)
    }

    #[test]
    fn records_are_one_json_line_with_escaped_content() {
        let (req, d, ctx) = sample();
        let json = serde_json::to_string(&Record::new(&req, &d, &ctx)).unwrap();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["command"], "docker ps\nid");
        assert_eq!(v["channel"], "ssh");
        assert_eq!(v["verdict"], "deny");
    }

    #[test]
    fn syslog_lines_are_escaped_and_capped() {
        let (req, mut d, ctx) = sample();
        d.reason = "x".repeat(5000);
        let line = syslog_line(&Record::new(&req, &d, &ctx));
        assert!(line.len() <= SYSLOG_MAX);
        assert!(line.ends_with("..."));
        let (req, d, ctx) = sample();
        let line = syslog_line(&Record::new(&req, &d, &ctx));
        assert!(!line.contains('\n'));
        assert!(line.contains(r#"reason="line\nbreak \"quoted\"""#));
    }

    /// A directory of this process's own for `tag`, not there yet.
    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-audit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_audit_file_must_not_be_writable_by_others() {
        let dir = scratch("modes");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let (req, d, ctx) = sample();
        let rec = Record::new(&req, &d, &ctx);
        if nix::unistd::geteuid().is_root() {
            append(&path, &rec).unwrap();
            std::os::unix::fs::chown(&path, Some(1), None).unwrap();
            assert!(
                append(&path, &rec).is_err(),
                "a file owned by another uid is refused"
            );
        } else {
            assert!(append(&path, &rec).is_err(), "a non-root file is refused");
        }
        let _ = std::fs::remove_file(&path);
        let link = dir.join("link.jsonl");
        let _ = std::os::unix::fs::symlink("/etc/passwd", &link);
        assert!(append(&link, &rec).is_err(), "a symlink is never followed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_audit_directory_is_made_on_the_first_record() {
        let top = scratch("new");
        let path = top.join("log/audit.jsonl");
        let (req, d, ctx) = sample();
        let rec = Record::new(&req, &d, &ctx);
        let first = append(&path, &rec);
        if nix::unistd::geteuid().is_root() {
            first.unwrap();
            append(&path, &rec).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), 2, "both records are kept");
            let mode = std::fs::metadata(top.join("log")).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o700, "the new directory is root's alone");
        } else {
            assert!(first.is_err(), "a file made by a non-root user is refused");
        }
        let _ = std::fs::remove_dir_all(&top);
    }
}
