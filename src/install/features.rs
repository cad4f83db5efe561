//! What each installable feature consists of: a table of files taken from `contrib/` at build
//! time, and what to do after writing them. Adding a file to a feature is one row here.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    /// Binary, policy, shims, the sudoers entry, the managed users' old grants taken away, and
    /// the forced command for SSH users.
    SudoRestrictions,
    /// Alert delivery units and the webhook file (issue 4).
    Alerts,
    /// Watchers for crontabs, sudoers, keys and the policy (issue 4).
    CrontabWatch,
    /// Core size 0 for the managed users, `fs.suid_dumpable=0` (issue 4).
    CoreLimits,
}

impl Feature {
    pub const ALL: [Feature; 4] = [
        Feature::SudoRestrictions,
        Feature::Alerts,
        Feature::CrontabWatch,
        Feature::CoreLimits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::SudoRestrictions => "sudo-restrictions",
            Feature::Alerts => "alerts",
            Feature::CrontabWatch => "crontab-watch",
            Feature::CoreLimits => "core-limits",
        }
    }

    pub fn question(self) -> &'static str {
        match self {
            Feature::SudoRestrictions => {
                "Route the managed users' sudo (and SSH, if chosen) through the gateway"
            }
            Feature::Alerts => "Send an alert to a webhook on every denied request",
            Feature::CrontabWatch => "Alert when crontabs, sudoers, keys or the policy change",
            Feature::CoreLimits => "Set core dumps to size 0 (limits.d, sysctl)",
        }
    }
}

/// What happens after an asset is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    /// A plain file.
    File,
    /// A systemd unit; `enable` units are enabled and started when systemd runs.
    Unit { enable: bool },
    /// A sysctl.d file, applied with `sysctl -p FILE`.
    Sysctl,
}

#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub feature: Feature,
    /// Where it comes from in the repository (for messages and docs).
    pub source: &'static str,
    pub dest: &'static str,
    pub mode: u32,
    pub content: &'static [u8],
    pub kind: AssetKind,
}

/// Files the features install. The alerts issue's units (`contrib/systemd/`), limits and sysctl
/// files (`contrib/limits.d/`, `contrib/sysctl.d/`) join this table when they land, one row each:
///
/// ```text
/// Asset { feature: Feature::Alerts, source: "contrib/systemd/gateway-notify.service",
///         dest: "/etc/systemd/system/gateway-notify.service", mode: 0o644,
///         content: include_bytes!("../../contrib/systemd/gateway-notify.service"),
///         kind: AssetKind::Unit { enable: false } },
/// ```
pub const ASSETS: &[Asset] = &[];

/// Where `--webhook URL` is written for the alerts feature (root-only; the policy refers to it).
pub const WEBHOOK_PATH: &str = "/etc/gateway/webhook";

pub fn assets(feature: Feature) -> impl Iterator<Item = &'static Asset> {
    ASSETS.iter().filter(move |a| a.feature == feature)
}

/// The unit name of an asset installed under a systemd directory.
pub fn unit_name(a: &Asset) -> Option<&'static str> {
    match a.kind {
        AssetKind::Unit { .. } => a.dest.rsplit('/').next(),
        _ => None,
    }
}
