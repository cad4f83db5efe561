//! `gateway notify`: the deliverer. One at a time (a lock in the spool); it takes in new alerts
//! and sudo's refusals, expires what is too old, coalesces, and posts each message to every
//! webhook, with exponential back-off per webhook, 429 waits honoured, and every step on disk,
//! so a crash, an outage or a reboot loses nothing.
//!
//! It folds every queued alert into its message on each pass, whether or not a webhook is
//! configured or reachable: what waits on disk is messages (one per window and kind), not one
//! file per alert. Beyond the spool's cap it folds the oldest waiting messages into one note
//! that counts them, and turns the alerts requests only counted (see `intake`) into a note too.
//!
//! It stays while something is due soon (a window closing, a retry within `LINGER_MS`), then
//! exits; the systemd timer (or the next alert's trigger) starts it again for later retries.
//! `gateway alert test` lives here too: the same client and formats, without the spool.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::http::{self, Outcome};
use super::plan::{self, Body, Form, Planned, Queued, Window, Windows};
use super::spool::{Lock, Spool};
use super::webhooks::{self, Sink, WebhooksError};
use super::{intake, now_ms, render, rfc3339_ms, sudolog, Alert, Kind};
use crate::pipeline::{EXIT_CONFIG, EXIT_DENY};
use crate::policy::{self, AlertSettings, Policy, POLICY_PATH};
use crate::{audit, request};

/// Stay for work due within this long; later work is the timer's.
const LINGER_MS: u64 = 120_000;
/// How often a waiting deliverer looks for new alerts.
const POLL: Duration = Duration::from_millis(200);
/// First retry after this long; doubles up to `retry_max_seconds`.
const BACKOFF_BASE_MS: u64 = 1_000;
/// `gateway alert test` exit status when a webhook did not take the message.
pub const EXIT_UNDELIVERED: u8 = 69;
/// Queued alerts read and folded per step: each step's messages are written, then its files
/// removed, so memory and a message's list of carried files stay bounded however long the queue.
const FOLD_CHUNK: usize = 1000;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A message on its way: what it says, which queued alerts it carries, which webhooks took it
/// and which still have to. It is done when every configured webhook took it: a webhook
/// renamed or added in the meantime gets it too, one removed is no longer waited for.
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub created_ms: u64,
    pub body: Body,
    pub alerts: Vec<String>,
    pub pending: BTreeMap<String, Attempt>,
    #[serde(default)]
    pub delivered: BTreeSet<String>,
    /// A summary's window: later parts of it merge into this message, which is sent once the
    /// window has closed. (`alerts` then names the files of the latest part only: the others
    /// left the queue once an earlier version of this message was on disk.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// A note of the spool's cap: the messages it counts, removed once the note is on disk (a
    /// deliverer that starts after a crash in between removes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<String>,
}

impl Message {
    fn new(id: String, body: Body, alerts: Vec<String>, sinks: &[Sink], now: u64) -> Message {
        Message {
            id,
            created_ms: now,
            body,
            alerts,
            pending: sinks
                .iter()
                .map(|s| (s.name.clone(), Attempt::default()))
                .collect(),
            delivered: BTreeSet::new(),
            window: None,
            folded: Vec::new(),
        }
    }

    /// Whether nothing has gone out yet, so it may still change.
    fn unsent(&self) -> bool {
        self.delivered.is_empty() && self.pending.values().all(|a| a.attempts == 0)
    }

    /// A summary whose window has not closed yet.
    fn waits_for_window(&self, now: u64) -> Option<u64> {
        self.window.as_ref().map(|w| w.end_ms).filter(|&e| e > now)
    }

    /// Brings `pending` in line with the webhooks configured now; true if it changed.
    fn retarget(&mut self, sinks: &[Sink]) -> bool {
        let before = self.pending.len();
        self.pending
            .retain(|k, _| sinks.iter().any(|s| &s.name == k));
        let mut changed = self.pending.len() != before;
        for s in sinks {
            if !self.delivered.contains(&s.name) && !self.pending.contains_key(&s.name) {
                self.pending.insert(s.name.clone(), Attempt::default());
                changed = true;
            }
        }
        changed
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub attempts: u32,
    pub next_ms: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SinkState {
    failures: u32,
    next_ms: u64,
}

/// Everything the deliverer remembers between runs (`SPOOL/state.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    windows: Windows,
    #[serde(default)]
    sinks: BTreeMap<String, SinkState>,
    /// Alerts dropped undelivered since the last message was built.
    #[serde(default)]
    expired: u64,
    #[serde(default)]
    sudo_log: Option<sudolog::Position>,
}

#[derive(Debug)]
pub struct Options {
    pub config: PathBuf,
    /// One pass: deliver what is due now, then exit.
    pub once: bool,
    /// Started detached by a request: leave its session (no controlling terminal) first.
    pub new_session: bool,
}

fn backoff_ms(failures: u32, max_s: u64) -> u64 {
    let exp = BACKOFF_BASE_MS.saturating_mul(1u64 << failures.saturating_sub(1).min(30));
    exp.min(max_s * 1000)
}

/// Bytes as MiB for messages ("32 MiB", "0.4 MiB").
fn mib(bytes: u64) -> String {
    let m = bytes as f64 / f64::from(1u32 << 20);
    if m >= 10.0 || m.fract() == 0.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// Prints to stderr (the journal under systemd) and, for what an operator must see even when
/// nobody reads stderr (a detached deliverer), to syslog.
fn warn(msg: &str) {
    eprintln!("gateway notify: {msg}");
    let _ = audit::syslog(
        super::SYSLOG_WARNING,
        SystemTime::now(),
        &format!("notify: {msg}"),
    );
}

/// Loads a policy for the root-side tools, with the same ownership check as a request.
pub fn load_policy(config: &Path) -> Result<Policy, String> {
    policy::check_policy_file(config).map_err(|d| d.to_string())?;
    Policy::load(config).map_err(|diags| {
        format!(
            "{} (run gateway check --config {})",
            diags[0],
            config.display()
        )
    })
}

/// The managed users and the alert settings of the policy at `config`. The system policy that
/// cannot be used still leaves the default settings: a broken policy denies every request,
/// and those denials are exactly what the operator must hear about.
fn prepare(config: &Path) -> Result<(BTreeSet<String>, AlertSettings), u8> {
    if !request::is_root() {
        eprintln!("gateway: this command reads root-only files; run it as root");
        return Err(EXIT_DENY);
    }
    match load_policy(config) {
        Ok(p) => Ok((p.users.keys().cloned().collect(), p.alerts)),
        Err(e) if config == Path::new(POLICY_PATH) => {
            warn(&format!(
                "{e}; delivering with the default [alerts] settings"
            ));
            Ok((BTreeSet::new(), AlertSettings::default()))
        }
        Err(e) => {
            eprintln!("gateway: {e}");
            Err(EXIT_CONFIG)
        }
    }
}

pub fn run(opts: &Options) -> u8 {
    if opts.new_session {
        let _ = nix::unistd::setsid();
    }
    let (users, settings) = match prepare(&opts.config) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if !settings.enabled {
        println!("alerts are disabled ([alerts] enabled = false); nothing to deliver");
        return 0;
    }
    let spool = Spool::for_settings(&settings);
    if let Err(e) = spool.prepare() {
        warn(&e);
        return EXIT_CONFIG;
    }
    loop {
        let lock = match spool.lock() {
            Ok(Lock::Held(l)) => l,
            Ok(Lock::Busy(pid)) => {
                println!("another gateway notify (pid {pid}) is delivering; it takes these too");
                return 0;
            }
            Err(e) => {
                warn(&e);
                return EXIT_CONFIG;
            }
        };
        let mut d = Deliverer {
            settings: &settings,
            spool: &spool,
            users: &users,
            host: request::hostname(),
            client: None,
            state: State::default(),
            sinks_warned: false,
            sudo_error: None,
        };
        let code = d.run(opts.once);
        drop(lock);
        // A request that queued an alert while we held the lock started no deliverer (see
        // trigger::start): after letting go, the alert is ours to take.
        if code != 0 || !spool.has_new() {
            return code;
        }
    }
}

struct Deliverer<'a> {
    settings: &'a AlertSettings,
    spool: &'a Spool,
    users: &'a BTreeSet<String>,
    host: String,
    client: Option<http::Client>,
    state: State,
    sinks_warned: bool,
    /// The last sudo log problem, reported once rather than on every pass.
    sudo_error: Option<String>,
}

impl Deliverer<'_> {
    fn run(&mut self, once: bool) -> u8 {
        self.state = match self.spool.load_state() {
            Ok(s) => s,
            Err(e) => {
                self.notice(format!(
                    "the deliverer's state was unreadable and was reset ({e}); some alerts may \
                     repeat"
                ));
                State::default()
            }
        };
        self.forget_carried();
        loop {
            let now = now_ms();
            self.scan_sudo_log();
            if let Err(e) = self.spool.take_in(now) {
                warn(&e);
                return EXIT_CONFIG;
            }
            let sinks = self.sinks();
            // The ledger's count waits for the next pass if it cannot be had; delivery goes on.
            if let Err(e) = self.take_intake(&sinks, now) {
                warn(&format!("intake ledger: {e}"));
            }
            let built = self
                .build_messages(&sinks, now)
                .and_then(|n| self.enforce_cap(&sinks, now).map(|()| n));
            let next_close = match built {
                Ok(n) => n,
                Err(e) => {
                    warn(&e);
                    return EXIT_CONFIG;
                }
            };
            let next_send = self.deliver(&sinks);
            if let Err(e) = self.spool.save_state(&self.state) {
                warn(&e);
                return EXIT_CONFIG;
            }
            if once {
                return 0;
            }
            if self.spool.is_idle() || sinks.is_empty() {
                return 0;
            }
            let due = [next_close, next_send].into_iter().flatten().min();
            let now = now_ms();
            let Some(due) = due.filter(|&d| d <= now + LINGER_MS) else {
                return 0;
            };
            self.wait_until(due);
        }
    }

    /// Sleeps until `due`, waking early for a new alert or a new sudo log entry.
    fn wait_until(&self, due: u64) {
        while now_ms() < due {
            let sudo_grew = self.sudo_error.is_none()
                && self
                    .settings
                    .sudo_log
                    .as_ref()
                    .is_some_and(|p| sudolog::has_more(p, &self.state.sudo_log));
            if self.spool.has_new() || sudo_grew {
                return;
            }
            sleep(POLL.min(Duration::from_millis(due.saturating_sub(now_ms()))));
        }
    }

    /// A notice about the alerting itself, queued like any alert.
    fn notice(&self, reason: String) {
        warn(&reason);
        let a = Alert::new(Kind::Notice, now_ms(), self.host.clone(), reason);
        if let Err(e) = self.spool.put(&a) {
            warn(&format!("cannot queue a notice: {e}"));
        }
    }

    /// After a crash between writing a message and removing its alerts from the queue, those
    /// alerts are still queued; they are already carried, so they go now. Likewise the
    /// messages a cap note already counts.
    fn forget_carried(&self) {
        let Ok(ids) = self.spool.message_ids() else {
            return;
        };
        let mut carried = Vec::new();
        for (id, _) in ids {
            let Ok(Some(mut m)) = self.spool.message::<Message>(&id) else {
                continue;
            };
            carried.append(&mut m.alerts);
            if !m.folded.is_empty() {
                self.spool.remove_messages(&m.folded);
                m.folded.clear();
                if let Err(e) = self.spool.write_message(&m.id, &m) {
                    warn(&e);
                }
            }
        }
        self.spool.remove_queued(&carried);
    }

    fn scan_sudo_log(&mut self) {
        let Some(path) = &self.settings.sudo_log else {
            return;
        };
        let before = self.state.sudo_log.clone();
        let mut scanned = before.clone();
        let problem = match sudolog::scan(path, &mut scanned) {
            Ok(scan) => {
                // The position moves past an event only once its alert is on disk.
                let mut done = scanned;
                for e in scan.events {
                    if let Some(a) = sudolog::to_alert(&e, self.users, &self.host) {
                        if let Err(err) = self.spool.put_durable(&a) {
                            warn(&format!("cannot queue a sudo refusal: {err}"));
                            done = self.state.sudo_log.clone();
                            break;
                        }
                    }
                    self.state.sudo_log = Some(e.after);
                }
                self.state.sudo_log = done;
                scan.damaged
            }
            Err(e) => Some(e),
        };
        match problem {
            Some(e) if self.sudo_error.as_ref() != Some(&e) => {
                self.notice(format!("sudo log: {e}"));
                self.sudo_error = Some(e);
            }
            Some(_) => {}
            None => self.sudo_error = None,
        }
        if self.state.sudo_log != before {
            if let Err(e) = self.spool.save_state(&self.state) {
                warn(&e);
            }
        }
    }

    fn sinks(&mut self) -> Vec<Sink> {
        match webhooks::load(&self.settings.webhooks_file) {
            Ok(s) => {
                if s.is_empty() && !self.sinks_warned {
                    warn("no webhook is configured; alerts wait in the spool (as messages) until one is");
                    self.sinks_warned = true;
                }
                s
            }
            Err(e) => {
                if !self.sinks_warned {
                    let what = match e {
                        WebhooksError::Missing => format!(
                            "{} does not exist; alerts wait in the spool until it does",
                            self.settings.webhooks_file.display()
                        ),
                        e => format!("{e}; alerts wait in the spool"),
                    };
                    warn(&what);
                    self.sinks_warned = true;
                }
                Vec::new()
            }
        }
    }

    fn expire_before(&self, now: u64) -> u64 {
        now.saturating_sub(self.settings.expire_hours * 3_600_000)
    }

    /// Turns the alerts requests counted instead of writing (the cap on `new/`) into a note.
    /// The record stays in the ledger until the note is on disk; the note's name comes from
    /// the record's number, so a crash in between does not count them twice.
    fn take_intake(&mut self, sinks: &[Sink], now: u64) -> Result<(), String> {
        let (files, bytes) = self.spool.new_census()?;
        let taken = intake::take(self.spool.root(), files, bytes)?;
        if let Some(ms) = taken.reset_ms {
            self.notice(format!(
                "the spool's intake ledger was unreadable and was started again at {}; alerts it \
                 had counted as not queued before then are in no message (the audit log has \
                 every decision)",
                rfc3339_ms(ms)
            ));
        }
        let Some((gen, rec)) = taken.record else {
            return Ok(());
        };
        let id = format!("{:013}-unspooled-{gen}", rec.first_ms);
        if !matches!(self.spool.message::<Message>(&id), Ok(Some(_))) {
            let limits = self.spool.limits();
            let why = format!(
                "{} alert(s) were counted, not queued: new/ held its limit of {} files or {} \
                 ([alerts] spool_max_files, spool_max_mb)",
                rec.count,
                limits.files,
                mib(limits.bytes)
            );
            warn(&why);
            let details = vec![
                why.clone(),
                "The requests themselves were decided and audited as usual: the audit log and \
                 syslog have each of them."
                    .to_string(),
            ];
            let body = Body::dropped(
                self.host.clone(),
                why,
                (rec.first_ms, rec.last_ms),
                rec.count,
                rec.tally,
                details,
            );
            let m = Message::new(id.clone(), body, Vec::new(), sinks, now);
            self.spool.write_message(&id, &m)?;
        }
        intake::settle(self.spool.root(), gen)
    }

    /// Expires old alerts, then folds every queued alert into its message, a step of
    /// `FOLD_CHUNK` at a time. Returns when the next window closes.
    fn build_messages(&mut self, sinks: &[Sink], now: u64) -> Result<Option<u64>, String> {
        let mut next_close: Option<u64> = None;
        for chunk in self.spool.queued_names()?.chunks(FOLD_CHUNK) {
            if let Some(c) = self.fold(chunk, sinks, now)? {
                next_close = Some(next_close.map_or(c, |n| n.min(c)));
            }
        }
        Ok(next_close)
    }

    /// One step of `build_messages`: these queued files become messages (new ones, or parts of
    /// a window's waiting summary), written to disk before the files are removed.
    fn fold(&mut self, names: &[String], sinks: &[Sink], now: u64) -> Result<Option<u64>, String> {
        let cutoff = self.expire_before(now);
        let mut queued = Vec::new();
        let mut dropped = Vec::new();
        for (name, alert) in self.spool.read_queued(names) {
            match alert {
                Ok(a) if a.unix_ms < cutoff => dropped.push(name),
                Ok(alert) => queued.push(Queued { name, alert }),
                Err(e) => {
                    // Nothing in it can be delivered; say so instead of dropping it silently.
                    let mut a = Alert::new(
                        Kind::Notice,
                        now,
                        self.host.clone(),
                        format!("an alert file in the spool was unreadable ({name}: {e})"),
                    );
                    a.path = Some(
                        self.spool
                            .root()
                            .join("queue")
                            .join(&name)
                            .display()
                            .to_string(),
                    );
                    queued.push(Queued { name, alert: a });
                }
            }
        }
        if !dropped.is_empty() {
            warn(&format!(
                "{} alert(s) expired after {} h undelivered",
                dropped.len(),
                self.settings.expire_hours
            ));
            self.state.expired += dropped.len() as u64;
        }
        let plan = plan::plan(
            &mut self.state.windows,
            queued,
            now,
            self.settings.coalesce_seconds,
            self.settings.max_messages_per_window,
        );
        let mut done = Vec::new();
        for (i, p) in plan.messages.into_iter().enumerate() {
            let mut m = match p.window.clone() {
                Some(w) => self.accumulate(w, p, sinks, now),
                None => Message::new(
                    format!(
                        "{:013}-{}-{:06}",
                        p.body.first_ms,
                        std::process::id(),
                        SEQ.fetch_add(1, Ordering::Relaxed)
                    ),
                    p.body,
                    p.alerts,
                    sinks,
                    now,
                ),
            };
            if i == 0 {
                // The first message says how many expired; it carries their files too, so a
                // crash before they are removed does not count them again.
                m.body.expired += std::mem::take(&mut self.state.expired);
                m.alerts.extend(dropped.iter().cloned());
            }
            self.spool.write_message(&m.id, &m)?;
            done.append(&mut m.alerts);
        }
        done.append(&mut dropped);
        // Windows first, then the queue: a crash in between repeats nothing and loses nothing.
        self.spool.save_state(&self.state)?;
        self.spool.remove_queued(&done);
        Ok(plan.next_close)
    }

    /// The message for window `w` with part `p` added: the window's waiting summary if there
    /// is one and nothing of it went out yet, else a new message.
    fn accumulate(&self, w: Window, p: Planned, sinks: &[Sink], now: u64) -> Message {
        let id = format!("{:013}-w{:016x}", w.start_ms, plan::fingerprint(&w.key));
        match self.spool.message::<Message>(&id) {
            Ok(Some(mut m)) if m.window.as_ref() == Some(&w) && m.unsent() => {
                m.body.merge(p.body);
                m.alerts = p.alerts;
                m
            }
            found => {
                // Another window under this name (a fingerprint collision), one already sent,
                // or an unreadable file (reported when delivering): a message of its own.
                let id = match found {
                    Ok(None) => id,
                    _ => format!(
                        "{id}-{}-{:06}",
                        std::process::id(),
                        SEQ.fetch_add(1, Ordering::Relaxed)
                    ),
                };
                let mut m = Message::new(id, p.body, p.alerts, sinks, now);
                m.window = Some(w);
                m
            }
        }
    }

    /// The spool's last line of defence: while `out/` holds more than `spool_max_files`
    /// messages or `spool_max_mb`, the oldest ones nobody has taken yet are folded into one
    /// note that counts their alerts by kind and time (watch alerts last: a flood of denials
    /// must not push out a diff of sudoers), down to 90 % of the cap. The note is on disk
    /// before the messages go.
    fn enforce_cap(&mut self, sinks: &[Sink], now: u64) -> Result<(), String> {
        let limits = self.spool.limits();
        let ids = self.spool.message_ids()?;
        let (held_files, held_bytes) = (ids.len() as u64, ids.iter().map(|i| i.1).sum::<u64>());
        if held_files <= limits.files && held_bytes <= limits.bytes {
            return Ok(());
        }
        let (target_files, target_bytes) = (
            limits.files - limits.files / 10,
            limits.bytes - limits.bytes / 10,
        );
        let why = format!(
            "the spool held {held_files} waiting messages ({}), over its limit of {} files or {} \
             ([alerts] spool_max_files, spool_max_mb)",
            mib(held_bytes),
            limits.files,
            mib(limits.bytes)
        );
        let mut note = Body::dropped(
            self.host.clone(),
            why.clone(),
            (u64::MAX, 0),
            0,
            Vec::new(),
            Vec::new(),
        );
        let (mut files, mut bytes) = (held_files, held_bytes);
        let mut folded = Vec::new();
        let mut watch = Vec::new();
        for watch_pass in [false, true] {
            let candidates = if watch_pass {
                std::mem::take(&mut watch)
            } else {
                ids.clone()
            };
            for (id, size) in candidates {
                if files <= target_files && bytes <= target_bytes {
                    break;
                }
                let Ok(Some(m)) = self.spool.message::<Message>(&id) else {
                    continue;
                };
                if !m.unsent() {
                    continue;
                }
                if !watch_pass && m.body.sample.kind == Kind::Watch {
                    watch.push((id, size));
                    continue;
                }
                note.absorb(&m.body);
                folded.push(id);
                files -= 1;
                bytes = bytes.saturating_sub(size);
            }
        }
        if folded.is_empty() {
            warn(&format!(
                "{why}; every waiting message is partly delivered, none was folded"
            ));
            return Ok(());
        }
        let alerts = note.count;
        note.details = vec![format!(
            "{} waiting message(s) with {alerts} alert(s) were folded into this note: {why}.",
            folded.len()
        )];
        note.sample.reason = format!(
            "{alerts} alert(s) in {} waiting message(s) were folded into this note: {why}",
            folded.len()
        );
        warn(&note.sample.reason);
        let id = format!(
            "{:013}-dropped-{}-{:06}",
            note.first_ms,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut m = Message::new(id, note, Vec::new(), sinks, now);
        m.folded = folded;
        self.spool.write_message(&m.id, &m)?;
        self.spool.remove_messages(&m.folded);
        m.folded.clear();
        self.spool.write_message(&m.id, &m)
    }

    /// Built when the first message is due, not for a pass with nothing to send.
    fn client(&mut self) -> &http::Client {
        self.client.get_or_insert_with(http::Client::default)
    }

    /// Sends every due message to every webhook that is not backing off, one message file at a
    /// time; expires messages too old to send, with or without webhooks. Returns when the next
    /// attempt is due, or the next window closes.
    fn deliver(&mut self, sinks: &[Sink]) -> Option<u64> {
        let cutoff = self.expire_before(now_ms());
        let max_s = self.settings.retry_max_seconds;
        // (earliest attempt of a message, webhook) for what is still pending, and window ends.
        let mut waiting: Vec<(u64, String)> = Vec::new();
        let mut next_window: Option<u64> = None;
        for (id, _) in self.spool.message_ids().unwrap_or_default() {
            let mut m = match self.spool.message::<Message>(&id) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    self.notice(format!(
                        "a message file in the spool was unreadable ({id}: {e})"
                    ));
                    self.spool.remove_message(&id);
                    continue;
                }
            };
            if m.body.first_ms < cutoff {
                warn(&format!(
                    "a message for {} alert(s) expired after {} h undelivered",
                    m.body.count, self.settings.expire_hours
                ));
                self.state.expired += m.body.count + m.body.expired;
                self.spool.remove_message(&id);
                continue;
            }
            if sinks.is_empty() {
                continue;
            }
            if m.retarget(sinks) {
                self.settle(&m);
            }
            if let Some(end) = m.waits_for_window(now_ms()) {
                next_window = Some(next_window.map_or(end, |n| n.min(end)));
                continue;
            }
            for sink in sinks {
                let mut ss = self
                    .state
                    .sinks
                    .get(&sink.name)
                    .cloned()
                    .unwrap_or_default();
                if ss.next_ms > now_ms() {
                    continue;
                }
                let Some(att) = m.pending.get(&sink.name) else {
                    continue;
                };
                if att.next_ms > now_ms() {
                    continue;
                }
                let payload = render::payload(sink.kind, &m.body);
                let outcome = self.client().send(sink, &payload);
                let now = now_ms();
                match &outcome {
                    Outcome::Delivered { pause_ms, .. } => {
                        if ss.failures > 0 {
                            warn(&format!("webhook {}: reachable again", sink.name));
                        }
                        ss.failures = 0;
                        m.pending.remove(&sink.name);
                        m.delivered.insert(sink.name.clone());
                        if let Some(p) = pause_ms {
                            ss.next_ms = now + p;
                        }
                    }
                    Outcome::RateLimited { wait_ms } => {
                        eprintln!(
                            "gateway notify: webhook {}: {}",
                            sink.name,
                            outcome.describe()
                        );
                        ss.next_ms = now + wait_ms;
                    }
                    Outcome::Unreachable(_) => {
                        ss.failures += 1;
                        let wait = backoff_ms(ss.failures, max_s);
                        ss.next_ms = now + wait;
                        warn(&format!(
                            "webhook {}: {}; next attempt in {:.1} s",
                            sink.name,
                            outcome.describe(),
                            wait as f64 / 1000.0
                        ));
                    }
                    Outcome::Refused(_) => {
                        let att = m.pending.entry(sink.name.clone()).or_default();
                        att.attempts += 1;
                        let wait = backoff_ms(att.attempts, max_s);
                        att.next_ms = now + wait;
                        warn(&format!(
                            "webhook {}: message {} {}; next attempt in {:.1} s",
                            sink.name,
                            m.id,
                            outcome.describe(),
                            wait as f64 / 1000.0
                        ));
                    }
                }
                self.state.sinks.insert(sink.name.clone(), ss);
                self.settle(&m);
            }
            waiting.extend(m.pending.iter().map(|(n, att)| (att.next_ms, n.clone())));
        }
        // The earliest moment any webhook may take any of the messages still pending.
        let next_send = waiting
            .iter()
            .map(|(t, name)| {
                let ss = self.state.sinks.get(name).map_or(0, |s| s.next_ms);
                (*t).max(ss)
            })
            .min();
        [next_send, next_window].into_iter().flatten().min()
    }

    /// Saves a message's progress, or removes it once every webhook has it.
    fn settle(&self, m: &Message) {
        if m.pending.is_empty() {
            self.spool.remove_message(&m.id);
        } else if let Err(e) = self.spool.write_message(&m.id, m) {
            warn(&e);
        }
    }
}

/// `gateway alert test`: one test message to each webhook, and what each answered.
pub fn test(config: &Path) -> u8 {
    let (_, settings) = match prepare(config) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let file = settings.webhooks_file.display();
    let sinks = match webhooks::load(&settings.webhooks_file) {
        Ok(s) if s.is_empty() => {
            println!("{file}: no webhook configured");
            return EXIT_UNDELIVERED;
        }
        Ok(s) => s,
        Err(e) => {
            println!("{file}: {e}");
            return if e == WebhooksError::Missing {
                EXIT_UNDELIVERED
            } else {
                EXIT_CONFIG
            };
        }
    };
    let client = http::Client::default();
    let mut sample = Alert::new(
        Kind::Notice,
        now_ms(),
        request::hostname(),
        "test message (gateway alert test)".into(),
    );
    sample.user = request::caller().ok().map(|c| c.user);
    let body = Body {
        form: Form::Test,
        ..Body::single(&sample, settings.coalesce_seconds)
    };
    let mut failed = 0;
    for s in &sinks {
        let outcome = client.send(s, &render::payload(s.kind, &body));
        if !matches!(outcome, Outcome::Delivered { .. }) {
            failed += 1;
        }
        println!("{} ({}): {}", s.name, s.kind.as_str(), outcome.describe());
    }
    if failed > 0 {
        EXIT_UNDELIVERED
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(name: &str) -> Sink {
        let text =
            format!("[[webhook]]\nname = {name:?}\nkind = \"json\"\nurl = \"https://h/x\"\n");
        super::webhooks::parse("w", &text).unwrap().remove(0)
    }

    #[test]
    fn a_message_follows_the_configured_webhooks() {
        let a = Alert::new(Kind::Deny, 1, "h".into(), "r".into());
        let mut m = Message {
            id: "m".into(),
            created_ms: 1,
            body: Body::single(&a, 60),
            alerts: vec![],
            pending: [
                ("old".to_string(), Attempt::default()),
                ("b".to_string(), Attempt::default()),
            ]
            .into(),
            delivered: ["a".to_string()].into(),
            window: None,
            folded: Vec::new(),
        };
        // "old" was renamed "new": the message is not dropped, it goes to "new".
        assert!(m.retarget(&[sink("a"), sink("b"), sink("new")]));
        let pending: Vec<&String> = m.pending.keys().collect();
        assert_eq!(
            pending,
            ["b", "new"],
            "a already took it; b and new still must"
        );
        assert!(!m.retarget(&[sink("a"), sink("b"), sink("new")]), "stable");
        // A webhook removed for good is no longer waited for.
        m.retarget(&[sink("a")]);
        assert!(m.pending.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_configured_maximum() {
        let got: Vec<u64> = (1..=10).map(|n| backoff_ms(n, 60)).collect();
        assert_eq!(
            got,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(
            backoff_ms(200, 300),
            300_000,
            "no overflow after many failures"
        );
    }
}
