//! The `[alerts]` table: where alerts queue, where the webhook list lives, how bursts coalesce
//! and how long an undelivered alert is kept. The webhook URLs are not here: they live in the
//! root-only file `webhooks_file` names, which only `gateway notify` and `gateway alert test` read.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::raw::{RawAlerts, Str};
use super::{value, Builder};

/// How a request starts delivery after queueing an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// The systemd path unit when systemd runs and the unit is enabled, else a detached child.
    Auto,
    /// Only the systemd path unit (the request starts nothing).
    Systemd,
    /// Always a detached `gateway notify` child.
    Spawn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSettings {
    /// Queue an alert for every deny and audit-mode "would deny".
    pub enabled: bool,
    /// Root-only (0600) TOML file listing the webhooks.
    pub webhooks_file: PathBuf,
    /// Root-only spool: `new/` (requests drop alerts), `queue/`, `out/`, state and lock.
    pub spool_dir: PathBuf,
    /// Root-only snapshots of the watched files (`gateway watch`).
    pub snapshot_dir: PathBuf,
    /// sudo's JSON event log (`Defaults logfile=... log_format=json`); `None` turns the scan off.
    pub sudo_log: Option<PathBuf>,
    /// Alerts of one kind within this many seconds of the first become one summary message.
    pub coalesce_seconds: u64,
    /// At most this many separate first-of-their-kind messages per window; the rest fold into
    /// one overflow summary.
    pub max_messages_per_window: u64,
    /// An alert not delivered after this many hours is dropped (and counted in the next message).
    pub expire_hours: u64,
    /// The longest wait between two delivery attempts to an unreachable webhook.
    pub retry_max_seconds: u64,
    pub trigger: Trigger,
    /// The spool's hard cap, in files: `new/` takes no more alert files (requests count the
    /// rest), and the deliverer folds the oldest waiting messages beyond it into one note.
    pub spool_max_files: u64,
    /// The same cap in MiB of file contents.
    pub spool_max_mb: u64,
}

impl AlertSettings {
    /// The spool cap in bytes.
    pub fn spool_max_bytes(&self) -> u64 {
        self.spool_max_mb.saturating_mul(1 << 20)
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            enabled: true,
            webhooks_file: PathBuf::from("/etc/gateway/webhooks.toml"),
            spool_dir: PathBuf::from("/var/spool/gateway"),
            snapshot_dir: PathBuf::from("/var/lib/gateway/snapshots"),
            sudo_log: Some(PathBuf::from("/var/log/gateway-sudo.json")),
            coalesce_seconds: 60,
            max_messages_per_window: 10,
            expire_hours: 168,
            retry_max_seconds: 300,
            trigger: Trigger::Auto,
            spool_max_files: 10_000,
            spool_max_mb: 32,
        }
    }
}

fn path(b: &mut Builder, key: &str, s: &Str) -> PathBuf {
    if let Err(why) = value::lexically_clean(s.get_ref()) {
        b.error(Some(s.span()), format!("alerts.{key}: {why}"));
    }
    PathBuf::from(s.get_ref())
}

fn bounded(
    b: &mut Builder,
    key: &str,
    v: &Option<Spanned<u64>>,
    range: [u64; 2],
    dflt: u64,
) -> u64 {
    let Some(v) = v else { return dflt };
    let n = *v.get_ref();
    if n < range[0] || n > range[1] {
        b.error(
            Some(v.span()),
            format!("alerts.{key} must be between {} and {}", range[0], range[1]),
        );
    }
    n
}

pub(crate) fn build(b: &mut Builder, raw: &RawAlerts) -> AlertSettings {
    let mut out = AlertSettings::default();
    out.enabled = raw.enabled.unwrap_or(out.enabled);
    if let Some(p) = &raw.webhooks_file {
        out.webhooks_file = path(b, "webhooks_file", p);
    }
    if let Some(p) = &raw.spool_dir {
        out.spool_dir = path(b, "spool_dir", p);
    }
    if let Some(p) = &raw.snapshot_dir {
        out.snapshot_dir = path(b, "snapshot_dir", p);
    }
    if let Some(p) = &raw.sudo_log {
        out.sudo_log = if p.get_ref().is_empty() {
            None
        } else {
            Some(path(b, "sudo_log", p))
        };
    }
    out.coalesce_seconds = bounded(
        b,
        "coalesce_seconds",
        &raw.coalesce_seconds,
        [1, 3600],
        out.coalesce_seconds,
    );
    out.max_messages_per_window = bounded(
        b,
        "max_messages_per_window",
        &raw.max_messages_per_window,
        [1, 100],
        out.max_messages_per_window,
    );
    out.expire_hours = bounded(
        b,
        "expire_hours",
        &raw.expire_hours,
        [1, 8760],
        out.expire_hours,
    );
    out.retry_max_seconds = bounded(
        b,
        "retry_max_seconds",
        &raw.retry_max_seconds,
        [1, 86_400],
        out.retry_max_seconds,
    );
    out.spool_max_files = bounded(
        b,
        "spool_max_files",
        &raw.spool_max_files,
        [100, 1_000_000],
        out.spool_max_files,
    );
    out.spool_max_mb = bounded(
        b,
        "spool_max_mb",
        &raw.spool_max_mb,
        [1, 65_536],
        out.spool_max_mb,
    );
    if let Some(t) = &raw.trigger {
        out.trigger = match t.get_ref().as_str() {
            "auto" => Trigger::Auto,
            "systemd" => Trigger::Systemd,
            "spawn" => Trigger::Spawn,
            other => {
                b.error(
                    Some(t.span()),
                    format!("alerts.trigger {other:?}: use auto, systemd or spawn"),
                );
                out.trigger
            }
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn load(table: &str) -> Result<AlertSettings, String> {
        Policy::parse("t.toml", table)
            .map(|p| p.alerts)
            .map_err(|d| {
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    #[test]
    fn alerts_settings_table() {
        // (policy text, expected Ok(check) or Err(fragment), why)
        type Check = fn(&AlertSettings) -> bool;
        let rows: &[(&str, Result<Check, &str>, &str)] = &[
            (
                "",
                Ok(|a| *a == AlertSettings::default()),
                "no table means the documented defaults",
            ),
            (
                "[alerts]\nenabled = false\n",
                Ok(|a| !a.enabled),
                "alerts can be turned off",
            ),
            (
                "[alerts]\nsudo_log = \"\"\n",
                Ok(|a| a.sudo_log.is_none()),
                "an empty sudo_log turns the sudo log scan off",
            ),
            (
                "[alerts]\ncoalesce_seconds = 5\ntrigger = \"spawn\"\n",
                Ok(|a| a.coalesce_seconds == 5 && a.trigger == Trigger::Spawn),
                "values are taken as written",
            ),
            (
                "[alerts]\nspool_dir = \"var/spool\"\n",
                Err("alerts.spool_dir: not an absolute path"),
                "a relative spool would depend on the working directory",
            ),
            (
                "[alerts]\nwebhooks_file = \"/etc/../tmp/w\"\n",
                Err("contains a '.' or '..' component"),
                "paths are lexically clean",
            ),
            (
                "[alerts]\ncoalesce_seconds = 0\n",
                Err("alerts.coalesce_seconds must be between 1 and 3600"),
                "a zero window would send every alert separately",
            ),
            (
                "[alerts]\nexpire_hours = 100000\n",
                Err("alerts.expire_hours must be between 1 and 8760"),
                "the expiry is bounded so the spool cannot grow for years",
            ),
            (
                "[alerts]\nspool_max_files = 500\nspool_max_mb = 4\n",
                Ok(|a| a.spool_max_files == 500 && a.spool_max_bytes() == 4 << 20),
                "the spool cap is configurable, in files and MiB",
            ),
            (
                "[alerts]\nspool_max_files = 10\n",
                Err("alerts.spool_max_files must be between 100 and 1000000"),
                "a cap below a few windows' messages would fold every burst into a note",
            ),
            (
                "[alerts]\nspool_max_mb = 0\n",
                Err("alerts.spool_max_mb must be between 1 and 65536"),
                "a zero byte cap would keep no alert at all",
            ),
            (
                "[alerts]\ntrigger = \"cron\"\n",
                Err("use auto, systemd or spawn"),
                "unknown trigger names are refused",
            ),
            (
                "[alerts]\nwebhook_url = \"https://x\"\n",
                Err("unknown field"),
                "URLs never go into the policy, which is world-readable",
            ),
        ];
        for (text, want, why) in rows {
            match (load(text), want) {
                (Ok(a), Ok(check)) => assert!(check(&a), "{why}: {a:?}"),
                (Err(e), Err(frag)) => assert!(e.contains(frag), "{why}: {e}"),
                (got, _) => panic!("{why}: unexpected {got:?}"),
            }
        }
    }
}
