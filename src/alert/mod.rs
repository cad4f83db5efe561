//! Alerts: every deny and audit-mode "would deny", sudo's own refusals and watched-file changes
//! become one small file in a root-only spool; `gateway notify` delivers them to Discord, Slack
//! or a JSON webhook, out of the request's path.
//!
//! The request's share is [`raise`]: one `open(O_EXCL)` + write + rename, then a trigger that
//! does not wait for delivery. Everything that can be slow (HTTP, retries, coalescing) happens in
//! `gateway notify`, under a lock, from the spool on disk.
#![forbid(unsafe_code)]

pub mod http;
pub mod intake;
pub mod notify;
pub mod plan;
pub mod render;
pub mod spool;
pub mod sudolog;
pub mod trigger;
pub mod webhooks;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::audit::{self, Context};
use crate::clock;
use crate::decision::{Decision, Input, Request, Verdict};
use crate::policy::{AlertSettings, POLICY_PATH};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The gateway denied a request.
    Deny,
    /// Audit mode ran a request the rules deny.
    WouldDeny,
    /// sudo refused a managed user before the gateway saw the request.
    SudoDeny,
    /// A watched file (crontab, sudoers, authorized_keys, the policy) changed.
    Watch,
    /// Something about the alerting itself (an unreadable spool file, a test message).
    Notice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deny => "deny",
            Kind::WouldDeny => "would-deny",
            Kind::SudoDeny => "sudo-deny",
            Kind::Watch => "watch",
            Kind::Notice => "notice",
        }
    }

    /// "denials", "changes": the plural an operator reads in a summary.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deny => "denials",
            Kind::WouldDeny => "audit-mode would-deny runs",
            Kind::SudoDeny => "sudo refusals",
            Kind::Watch => "changes",
            Kind::Notice => "notices",
        }
    }
}

/// One alert as it sits in the spool (one JSON file each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: Kind,
    /// Milliseconds since the epoch; orders and windows alerts.
    pub unix_ms: u64,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `sudo` or `ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_client: Option<String>,
    /// The request's words (for SSH: once split; `command` keeps the raw line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
    /// The watched file (watch alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A unified diff (watch alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Syslog severities (RFC 5424) for what alerting reports about itself.
pub(crate) const SYSLOG_ERR: u8 = 3;
pub(crate) const SYSLOG_WARNING: u8 = 4;

pub fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

pub fn rfc3339_ms(ms: u64) -> String {
    clock::rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

impl Alert {
    /// A bare alert of `kind` at `unix_ms` on this host; callers fill in the rest.
    pub fn new(kind: Kind, unix_ms: u64, host: String, reason: String) -> Alert {
        Alert {
            kind,
            unix_ms,
            host,
            user: None,
            channel: None,
            ssh_client: None,
            argv: None,
            command: None,
            run_as: None,
            rule: None,
            reason,
            path: None,
            diff: None,
        }
    }

    pub fn from_decision(req: &Request, d: &Decision, ctx: &Context) -> Alert {
        let kind = if d.verdict == Verdict::Deny {
            Kind::Deny
        } else {
            Kind::WouldDeny
        };
        let mut a = Alert::new(kind, to_ms(ctx.time), ctx.host.clone(), d.reason.clone());
        a.user = Some(req.user.clone());
        a.channel = Some(req.channel.as_str().to_string());
        a.ssh_client = ctx.ssh_client.clone();
        a.rule = d.rule.clone();
        match &req.input {
            Input::Argv(argv) => a.argv = Some(argv.clone()),
            Input::Ssh(cmd) => {
                a.command = cmd.clone();
                a.argv = d.argv.clone();
            }
        }
        a
    }

    /// The name of the program asked for: the basename of argv[0], or "-".
    pub fn program(&self) -> &str {
        self.argv
            .as_ref()
            .and_then(|a| a.first())
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .filter(|p| !p.is_empty())
            .unwrap_or("-")
    }

    /// Alerts with the same key are "of the same kind" and coalesce into one summary.
    pub fn key(&self) -> String {
        match self.kind {
            Kind::Watch => format!("watch\u{1f}{}", self.path.as_deref().unwrap_or("-")),
            Kind::Notice => format!("notice\u{1f}{}", self.reason),
            k => format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                k.as_str(),
                self.user.as_deref().unwrap_or("-"),
                self.channel.as_deref().unwrap_or("-"),
                self.program()
            ),
        }
    }

    /// The request as one line for display: the raw SSH command, else the argv words.
    pub fn request_line(&self) -> Option<String> {
        if let Some(c) = &self.command {
            return Some(c.clone());
        }
        self.argv.as_ref().map(|a| crate::check::shell_words(a))
    }
}

/// What `gateway check` says about alerting, on stderr. False when the webhooks file exists
/// but cannot be used (a missing file is only a warning: alerts wait in the spool).
pub fn check_report(settings: &AlertSettings) -> bool {
    if !settings.enabled {
        eprintln!("note: alerts are disabled ([alerts] enabled = false)");
        return true;
    }
    let file = settings.webhooks_file.display();
    match webhooks::load(&settings.webhooks_file) {
        Ok(sinks) if sinks.is_empty() => {
            eprintln!("warning: {file} lists no webhook; alerts will wait in the spool");
            true
        }
        Ok(sinks) => {
            let names: Vec<String> = sinks
                .iter()
                .map(|s| format!("{} ({})", s.name, s.kind.as_str()))
                .collect();
            eprintln!("note: alerts go to {}", names.join(", "));
            true
        }
        Err(webhooks::WebhooksError::Missing) => {
            eprintln!(
                "warning: {file} does not exist; alerts will wait in the spool until it does \
                 (see docs/alerts.md)"
            );
            true
        }
        Err(_) if !crate::request::is_root() => {
            eprintln!("note: {file} is root's; run gateway check as root to check it");
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}

/// The request's call: queue an alert for a deny or an audit-mode "would deny", and start its
/// delivery without waiting for it. It never changes the decision and never fails the request:
/// the audit record is already written, so a spool that cannot be written costs the alert only,
/// and that failure goes to syslog (authpriv, err).
pub fn raise(settings: &AlertSettings, req: &Request, d: &Decision, ctx: &Context) {
    if !settings.enabled || !(d.verdict == Verdict::Deny || d.would_deny) {
        return;
    }
    let alert = Alert::from_decision(req, d, ctx);
    // At the spool's cap the alert is only counted; the deliverer still has a note to build.
    match spool::Spool::for_settings(settings).put(&alert) {
        // An audit-mode pass goes on to run the program, which must not inherit a child.
        Ok(_) => trigger::start(settings, Path::new(POLICY_PATH), d.would_deny),
        Err(e) => {
            let _ = audit::syslog(
                SYSLOG_ERR,
                ctx.time,
                &format!("alert for user {:?} could not be queued: {e}", req.user),
            );
        }
    }
}
