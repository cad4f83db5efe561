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
    /// A template whose lines holding `@USER@` are repeated once per managed user
    /// (contrib/limits.d/gateway.conf).
    PerUser,
    /// Installed only where systemd does not run (the cron.d stand-in for the timers).
    WithoutSystemd,
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

/// Files the features install, one row each (docs/alerts.md says what each is for).
pub const ASSETS: &[Asset] = &[
    Asset {
        feature: Feature::Alerts,
        source: "contrib/systemd/gateway-notify.service",
        dest: "/etc/systemd/system/gateway-notify.service",
        mode: 0o644,
        content: include_bytes!("../../contrib/systemd/gateway-notify.service"),
        kind: AssetKind::Unit { enable: false },
    },
    Asset {
        feature: Feature::Alerts,
        source: "contrib/systemd/gateway-notify.path",
        dest: "/etc/systemd/system/gateway-notify.path",
        mode: 0o644,
        content: include_bytes!("../../contrib/systemd/gateway-notify.path"),
        kind: AssetKind::Unit { enable: true },
    },
    Asset {
        feature: Feature::Alerts,
        source: "contrib/systemd/gateway-notify.timer",
        dest: "/etc/systemd/system/gateway-notify.timer",
        mode: 0o644,
        content: include_bytes!("../../contrib/systemd/gateway-notify.timer"),
        kind: AssetKind::Unit { enable: true },
    },
    Asset {
        feature: Feature::Alerts,
        source: "contrib/tmpfiles.d/gateway.conf",
        dest: "/etc/tmpfiles.d/gateway.conf",
        mode: 0o644,
        content: include_bytes!("../../contrib/tmpfiles.d/gateway.conf"),
        kind: AssetKind::File,
    },
    Asset {
        feature: Feature::Alerts,
        source: "contrib/logrotate.d/gateway",
        dest: "/etc/logrotate.d/gateway",
        mode: 0o644,
        content: include_bytes!("../../contrib/logrotate.d/gateway"),
        kind: AssetKind::File,
    },
    Asset {
        feature: Feature::Alerts,
        source: "contrib/cron.d/gateway-notify",
        dest: "/etc/cron.d/gateway-notify",
        mode: 0o644,
        content: include_bytes!("../../contrib/cron.d/gateway-notify"),
        kind: AssetKind::WithoutSystemd,
    },
    Asset {
        feature: Feature::CrontabWatch,
        source: "contrib/systemd/gateway-watch.service",
        dest: "/etc/systemd/system/gateway-watch.service",
        mode: 0o644,
        content: include_bytes!("../../contrib/systemd/gateway-watch.service"),
        kind: AssetKind::Unit { enable: false },
    },
    Asset {
        feature: Feature::CrontabWatch,
        source: "contrib/systemd/gateway-watch.path",
        dest: "/etc/systemd/system/gateway-watch.path",
        mode: 0o644,
        content: include_bytes!("../../contrib/systemd/gateway-watch.path"),
        kind: AssetKind::Unit { enable: true },
    },
    Asset {
        feature: Feature::CrontabWatch,
        source: "contrib/systemd/gateway-watch.timer",
        dest: "/etc/systemd/system/gateway-watch.timer",
        mode: 0o644,
        content: include_bytes!("../../contrib/systemd/gateway-watch.timer"),
        kind: AssetKind::Unit { enable: true },
    },
    Asset {
        feature: Feature::CrontabWatch,
        source: "contrib/cron.d/gateway-watch",
        dest: "/etc/cron.d/gateway-watch",
        mode: 0o644,
        content: include_bytes!("../../contrib/cron.d/gateway-watch"),
        kind: AssetKind::WithoutSystemd,
    },
    Asset {
        feature: Feature::CoreLimits,
        source: "contrib/limits.d/gateway.conf",
        dest: "/etc/security/limits.d/gateway.conf",
        mode: 0o644,
        content: include_bytes!("../../contrib/limits.d/gateway.conf"),
        kind: AssetKind::PerUser,
    },
    Asset {
        feature: Feature::CoreLimits,
        source: "contrib/sysctl.d/50-gateway.conf",
        dest: "/etc/sysctl.d/50-gateway.conf",
        mode: 0o644,
        content: include_bytes!("../../contrib/sysctl.d/50-gateway.conf"),
        kind: AssetKind::Sysctl,
    },
    Asset {
        feature: Feature::CoreLimits,
        source: "contrib/systemd/coredump.conf.d/gateway.conf",
        dest: "/etc/systemd/coredump.conf.d/gateway.conf",
        mode: 0o644,
        content: include_bytes!("../../contrib/systemd/coredump.conf.d/gateway.conf"),
        kind: AssetKind::File,
    },
];

/// Where `--webhook URL` is written for the alerts feature (root-only; the policy's
/// `[alerts] webhooks_file` names it).
pub const WEBHOOK_PATH: &str = "/etc/gateway/webhooks.toml";

/// The webhooks file for one URL, its kind told by the address (contrib/webhooks.toml.example
/// describes the format). The URL was checked to hold no quote or backslash.
pub fn render_webhooks(url: &str) -> String {
    let kind = if url.starts_with("https://discord.com/api/webhooks/")
        || url.starts_with("https://discordapp.com/api/webhooks/")
    {
        "discord"
    } else if url.starts_with("https://hooks.slack.com/") {
        "slack"
    } else {
        "json"
    };
    format!(
        "# /etc/gateway/webhooks.toml, written by `gateway install --webhook`. Root's alone: the URL\n\
         # is a credential. Add more [[webhook]] tables by hand; `gateway alert test` checks them.\n\
         [[webhook]]\nname = \"install\"\nkind = \"{kind}\"\nurl = \"{url}\"\n"
    )
}

/// The bytes to install for an asset on a host with these managed users.
pub fn render(a: &Asset, users: &[String]) -> Vec<u8> {
    if a.kind != AssetKind::PerUser {
        return a.content.to_vec();
    }
    let text = String::from_utf8_lossy(a.content);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if line.contains("@USER@") && !line.trim_start().starts_with('#') {
            for u in users {
                out.push_str(&line.replace("@USER@", u));
            }
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_lines_repeat_for_each_managed_user_and_comments_stay() {
        let a = Asset {
            feature: Feature::CoreLimits,
            source: "contrib/limits.d/gateway.conf",
            dest: "/etc/security/limits.d/gateway.conf",
            mode: 0o644,
            content: b"# replacing @USER@ with the name\n@USER@    soft    core    0\n@USER@    hard    core    0\n",
            kind: AssetKind::PerUser,
        };
        let users = vec!["ai-worker".to_string(), "vastai_kaalia".to_string()];
        assert_eq!(
            String::from_utf8(render(&a, &users)).unwrap(),
            "# replacing @USER@ with the name\n\
             ai-worker    soft    core    0\nvastai_kaalia    soft    core    0\n\
             ai-worker    hard    core    0\nvastai_kaalia    hard    core    0\n"
        );
    }

    #[test]
    fn the_webhook_kind_follows_the_address() {
        // (url, kind, why)
        let table = [
            (
                "https://discord.com/api/webhooks/1/x",
                "discord",
                "Discord's webhook host",
            ),
            (
                "https://hooks.slack.com/services/T/B/X",
                "slack",
                "Slack's incoming webhooks",
            ),
            (
                "https://siem.example.net/ingest",
                "json",
                "anything else gets the generic JSON",
            ),
        ];
        for (url, kind, why) in table {
            let text = render_webhooks(url);
            let parsed: toml::Table = toml::from_str(&text).unwrap();
            let w = &parsed["webhook"][0];
            assert_eq!(w["kind"].as_str(), Some(kind), "{why}");
            assert_eq!(w["url"].as_str(), Some(url));
        }
    }
}
