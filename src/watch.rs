//! `gateway watch`: compares the files that decide who runs what as root with root-only
//! snapshots, and queues an alert with a unified diff for each change.
//!
//! Watched: root's crontab, `/etc/crontab`, `/etc/anacrontab`, `/etc/cron.d/*`, the
//! `/etc/cron.{hourly,daily,weekly,monthly}` scripts, `/etc/sudoers` and `/etc/sudoers.d/*`, the
//! managed users' `~/.ssh/authorized_keys{,2}`, the gateway policy, and the webhooks file (whose
//! changes are reported without contents: it holds secrets). The first run records a baseline
//! and alerts nothing. Started by `gateway-watch.path` (on a change) and `gateway-watch.timer`.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::alert::notify::load_policy;
use crate::alert::spool::{read_json, secure_dir, write_atomic, Spool};
use crate::alert::{now_ms, trigger, Alert, Kind};
use crate::pipeline::{EXIT_CONFIG, EXIT_DENY};
use crate::policy::Policy;
use crate::request;

/// A watched file larger than this is compared by size and time only.
const MAX_CONTENT_BYTES: u64 = 4 << 20;
/// A diff longer than this many lines is cut (the message says so).
const MAX_DIFF_LINES: usize = 400;
const BASELINE: &str = ".baseline";

const FIXED: &[&str] = &[
    "/var/spool/cron/crontabs/root",
    "/var/spool/cron/root",
    "/etc/crontab",
    "/etc/anacrontab",
    "/etc/sudoers",
];
const DIRECTORIES: &[&str] = &[
    "/etc/cron.d",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/sudoers.d",
];

#[derive(Debug)]
pub struct Options {
    pub config: PathBuf,
}

/// What a watched file was at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub size: u64,
    /// Where a symbolic link points (its target's contents are what is compared).
    #[serde(default)]
    pub link: Option<String>,
    /// The contents, when text and small enough; else `None` and `mtime` decides.
    pub text: Option<String>,
    #[serde(default)]
    pub mtime: i64,
}

/// A file to watch, and whether its contents may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub secret: bool,
}

/// Every file watched for this policy (which sits at `config`).
pub fn targets(policy: &Policy, config: &Path) -> Vec<Target> {
    let mut paths: BTreeSet<PathBuf> = FIXED.iter().map(PathBuf::from).collect();
    for dir in DIRECTORIES {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                paths.insert(e.path());
            }
        }
    }
    for name in policy.users.keys() {
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            for f in ["authorized_keys", "authorized_keys2"] {
                paths.insert(u.dir.join(".ssh").join(f));
            }
        }
    }
    paths.insert(std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf()));
    let mut out: Vec<Target> = paths
        .into_iter()
        .map(|path| Target {
            path,
            secret: false,
        })
        .collect();
    out.push(Target {
        path: policy.alerts.webhooks_file.clone(),
        secret: true,
    });
    out
}

/// The snapshot file's name: the path with `%` and `/` escaped.
fn snapshot_name(path: &Path) -> String {
    let p = path.display().to_string();
    format!("{}.json", p.replace('%', "%25").replace('/', "%2F"))
}

/// Reads a file as it is now; `None` when it does not exist.
pub fn take(path: &Path) -> io::Result<Option<Snapshot>> {
    let lmd = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let link = if lmd.file_type().is_symlink() {
        Some(fs::read_link(path)?.display().to_string())
    } else {
        None
    };
    // The target of a link decides the contents; a dangling link has none.
    let (md, mut file) = match (&link, File::open(path)) {
        (_, Ok(f)) => (f.metadata()?, Some(f)),
        (Some(_), Err(_)) => (lmd.clone(), None),
        (None, Err(e)) => return Err(e),
    };
    let mut text = None;
    if md.is_file() && md.size() <= MAX_CONTENT_BYTES {
        if let Some(f) = file.as_mut() {
            let mut bytes = Vec::new();
            f.take(MAX_CONTENT_BYTES).read_to_end(&mut bytes)?;
            text = Some(match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            });
        }
    } else if md.is_dir() {
        text = Some(String::new());
    }
    Ok(Some(Snapshot {
        path: path.display().to_string(),
        uid: lmd.uid(),
        gid: lmd.gid(),
        mode: md.mode(),
        size: md.size(),
        link,
        text,
        mtime: md.mtime(),
    }))
}

/// A unified diff of two versions, cut to `MAX_DIFF_LINES`.
pub fn diff(path: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let text = crate::install::diff::labelled(&format!("a{path}"), &format!("b{path}"), old, new);
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= MAX_DIFF_LINES {
        return text;
    }
    let mut cut = lines[..MAX_DIFF_LINES].join("\n");
    cut.push_str(&format!(
        "\n... ({} more diff lines)\n",
        lines.len() - MAX_DIFF_LINES
    ));
    cut
}

/// What changed between two snapshots of one file, or `None` when nothing did.
pub fn compare(
    target: &Target,
    old: Option<&Snapshot>,
    new: Option<&Snapshot>,
) -> Option<(String, Option<String>)> {
    let path = target.path.display().to_string();
    let text = |s: Option<&Snapshot>| s.and_then(|s| s.text.clone()).unwrap_or_default();
    let hidden = "contents not shown: this file holds webhook credentials".to_string();
    match (old, new) {
        (None, None) => None,
        (a, b) if a == b => None,
        (None, Some(n)) => Some((
            format!(
                "created (owner {}:{}, mode {:04o})",
                n.uid,
                n.gid,
                n.mode & 0o7777
            ),
            if target.secret {
                Some(hidden)
            } else {
                Some(diff(&path, "", &text(new)))
            },
        )),
        (Some(_), None) => Some((
            "deleted".into(),
            if target.secret {
                Some(hidden)
            } else {
                Some(diff(&path, &text(old), ""))
            },
        )),
        (Some(o), Some(n)) => {
            let mut what = Vec::new();
            if (o.uid, o.gid) != (n.uid, n.gid) {
                what.push(format!("owner {}:{} -> {}:{}", o.uid, o.gid, n.uid, n.gid));
            }
            if o.mode != n.mode {
                what.push(format!(
                    "mode {:04o} -> {:04o}",
                    o.mode & 0o7777,
                    n.mode & 0o7777
                ));
            }
            if o.link != n.link {
                what.push(format!(
                    "link {} -> {}",
                    o.link.as_deref().unwrap_or("(none)"),
                    n.link.as_deref().unwrap_or("(none)")
                ));
            }
            let contents =
                o.text != n.text || (o.text.is_none() && (o.size, o.mtime) != (n.size, n.mtime));
            let mut body = None;
            if contents {
                what.insert(0, "modified".into());
                body = Some(if target.secret {
                    hidden
                } else if o.text.is_none() || n.text.is_none() {
                    format!(
                        "(too large to compare line by line: {} -> {} bytes)",
                        o.size, n.size
                    )
                } else {
                    diff(&path, &text(old), &text(new))
                });
            }
            if what.is_empty() {
                // Only the time stamp moved: not a change worth a message.
                return None;
            }
            Some((what.join("; "), body))
        }
    }
}

fn load_snapshot(dir: &Path, name: &str) -> Option<Snapshot> {
    // Escaped text can take twice the file's size, and then some.
    read_json(&dir.join(name), 4 * MAX_CONTENT_BYTES).ok()
}

pub fn run(opts: &Options) -> u8 {
    if !request::is_root() {
        eprintln!("gateway: watch reads root-only files; run it as root");
        return EXIT_DENY;
    }
    let policy = match load_policy(&opts.config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gateway: {e}");
            return EXIT_CONFIG;
        }
    };
    let settings = &policy.alerts;
    if !settings.enabled {
        println!("alerts are disabled ([alerts] enabled = false); nothing watched");
        return 0;
    }
    let dir = &settings.snapshot_dir;
    if let Err(e) = secure_dir(dir, true) {
        eprintln!("gateway: {e}");
        return EXIT_CONFIG;
    }
    // One watcher at a time: the timer and the path unit may fire together.
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(dir.join("watch.lock"))
        .map_err(|e| e.to_string())
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| e.to_string()));
    let _lock = match lock {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gateway: cannot lock {}: {e}", dir.display());
            return EXIT_CONFIG;
        }
    };
    let baseline = !dir.join(BASELINE).exists();
    let host = request::hostname();
    let spool = Spool::new(&settings.spool_dir);
    let targets = targets(&policy, &opts.config);
    let mut seen = BTreeSet::new();
    let mut alerts = 0;
    let mut failed = false;
    let mut check = |t: &Target, seen: &mut BTreeSet<String>| -> Result<(), String> {
        let name = snapshot_name(&t.path);
        seen.insert(name.clone());
        let now = take(&t.path).map_err(|e| format!("cannot read {}: {e}", t.path.display()))?;
        let before = load_snapshot(dir, &name);
        if !baseline {
            if let Some((what, diff)) = compare(t, before.as_ref(), now.as_ref()) {
                let mut a = Alert::new(Kind::Watch, now_ms(), host.clone(), what);
                a.path = Some(t.path.display().to_string());
                a.diff = diff;
                // The snapshot moves on only once the alert is safely queued.
                spool.put_durable(&a)?;
                alerts += 1;
            }
        }
        match now {
            Some(s) if before.as_ref() != Some(&s) => {
                let body = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
                write_atomic(dir, &name, &body, true)
            }
            None if before.is_some() => fs::remove_file(dir.join(&name)).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    };
    for t in &targets {
        if let Err(e) = check(t, &mut seen) {
            eprintln!("gateway watch: {e}");
            failed = true;
        }
    }
    // Snapshots of files no longer listed: a file removed from a watched directory.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with('.') || seen.contains(&name) {
                continue;
            }
            let Some(old) = load_snapshot(dir, &name) else {
                continue;
            };
            let t = Target {
                path: PathBuf::from(&old.path),
                secret: false,
            };
            if t.path.symlink_metadata().is_ok() {
                // Still there, just no longer watched (a user left the policy).
                let _ = fs::remove_file(e.path());
                continue;
            }
            if let Err(e) = check(&t, &mut seen) {
                eprintln!("gateway watch: {e}");
                failed = true;
            }
        }
    }
    if baseline {
        if let Err(e) = write_atomic(dir, BASELINE, b"", true) {
            eprintln!("gateway watch: {e}");
            return EXIT_CONFIG;
        }
        println!(
            "baseline recorded for {} watched paths in {}",
            targets.len(),
            dir.display()
        );
    } else {
        println!(
            "{alerts} change(s) found in {} watched paths",
            targets.len()
        );
    }
    if alerts > 0 {
        trigger::start(settings, &opts.config, true);
    }
    if failed {
        EXIT_CONFIG
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(text: &str, mode: u32) -> Snapshot {
        Snapshot {
            path: "/etc/crontab".into(),
            uid: 0,
            gid: 0,
            mode,
            size: text.len() as u64,
            link: None,
            text: Some(text.into()),
            mtime: 1,
        }
    }

    #[test]
    fn changes_table() {
        let t = Target {
            path: "/etc/crontab".into(),
            secret: false,
        };
        let a = snap("a\nb\n", 0o100644);
        let b = snap("a\nb\n* * * * * root /tmp/x\n", 0o100644);
        let c = snap("a\nb\n", 0o100666);
        let mut d = a.clone();
        d.mtime = 99;
        // (old, new, expected summary, diff must contain, why)
        type Row<'a> = (
            Option<&'a Snapshot>,
            Option<&'a Snapshot>,
            Option<&'a str>,
            &'a str,
            &'a str,
        );
        let rows: &[Row] = &[
            (Some(&a), Some(&a), None, "", "unchanged files say nothing"),
            (
                Some(&a),
                Some(&d),
                None,
                "",
                "a touched file with the same contents says nothing",
            ),
            (
                Some(&a),
                Some(&b),
                Some("modified"),
                "+* * * * * root /tmp/x",
                "an added line shows as +",
            ),
            (
                Some(&b),
                Some(&a),
                Some("modified"),
                "-* * * * * root /tmp/x",
                "a removed line shows as -",
            ),
            (
                Some(&a),
                Some(&c),
                Some("mode 0644 -> 0666"),
                "",
                "a mode change is a change",
            ),
            (
                None,
                Some(&b),
                Some("created (owner 0:0, mode 0644)"),
                "+a",
                "a new file shows whole",
            ),
            (
                Some(&b),
                None,
                Some("deleted"),
                "-a",
                "a deleted file shows what it held",
            ),
        ];
        for (old, new, want, needle, why) in rows {
            let got = compare(&t, *old, *new);
            assert_eq!(got.as_ref().map(|g| g.0.as_str()), *want, "{why}");
            if !needle.is_empty() {
                let diff = got.unwrap().1.unwrap();
                assert!(diff.contains(needle), "{why}: {diff}");
                assert!(diff.contains("--- a/etc/crontab"), "{why}: {diff}");
            }
        }
    }

    #[test]
    fn secret_files_never_show_their_contents() {
        let t = Target {
            path: "/etc/gateway/webhooks.toml".into(),
            secret: true,
        };
        let old = snap("url = \"https://old\"\n", 0o100600);
        let new = snap("url = \"https://new-secret\"\n", 0o100600);
        let (what, body) = compare(&t, Some(&old), Some(&new)).unwrap();
        assert_eq!(what, "modified");
        assert!(!body.unwrap().contains("secret"));
    }

    #[test]
    fn a_large_watched_file_round_trips_through_its_snapshot() {
        let dir = std::env::temp_dir().join(format!("gateway-watch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("big");
        // Quotes double in JSON: the snapshot is far larger than the file.
        fs::write(&file, "\"".repeat(3 << 20)).unwrap();
        let snap = take(&file).unwrap().unwrap();
        assert!(snap.text.is_some(), "compared line by line below 4 MiB");
        let name = snapshot_name(&file);
        write_atomic(&dir, &name, &serde_json::to_vec(&snap).unwrap(), false).unwrap();
        assert_eq!(
            load_snapshot(&dir, &name),
            Some(snap),
            "read back whole, not cut"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshot_names_cannot_collide_or_escape_the_directory() {
        assert_eq!(
            snapshot_name(Path::new("/etc/cron.d/x")),
            "%2Fetc%2Fcron.d%2Fx.json"
        );
        assert_ne!(
            snapshot_name(Path::new("/a%2Fb")),
            snapshot_name(Path::new("/a/b")),
            "an escaped path is not a different path's name"
        );
    }
}
