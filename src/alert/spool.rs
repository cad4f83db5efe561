//! The on-disk spool, root-only (directories 0700, files 0600):
//!
//! ```text
//! SPOOL/new/<ms>-<pid>-<n>.json    alerts written by requests, the watcher and the sudo log scan
//! SPOOL/queue/<same name>          alerts a deliverer has taken in, folded into messages that pass
//! SPOOL/out/<id>.json              messages built from them, with the webhooks still to reach
//! SPOOL/state.json                 coalescing windows, webhook back-off, sudo log position
//! SPOOL/notify.lock                held (flock) by the one running `gateway notify`
//! SPOOL/intake.json                alert files in new/, and alerts counted instead (the cap)
//! ```
//!
//! Every file appears by rename, so a reader never sees half a file. An alert leaves `queue/` only
//! after the message that carries it is on disk; a message leaves `out/` only once every webhook
//! took it, when it expires, or folded into a note by the spool's cap. `new/` holds at most
//! `spool_max_files` alert files (and `spool_max_mb`): beyond that, a request counts its alert
//! in the intake ledger instead of writing it (see `intake`).
#![forbid(unsafe_code)]

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::intake::{self, Admission, Limits};
use super::{Alert, Kind};
use crate::policy::AlertSettings;

/// The largest spool file read back; an alert carries at most the policy's request caps.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// A temporary file this old was left by a writer that died before its rename.
const STALE_TMP_MS: u64 = 3_600_000;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Spool files by name, each parsed or with the reason it could not be.
pub type Files<T> = Vec<(String, Result<T, String>)>;

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    limits: Limits,
}

/// Where an alert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A file in `new/`.
    File,
    /// `new/` was at its cap: the alert was counted in the intake ledger, and the next message
    /// built says so.
    Counted,
}

/// The outcome of taking the deliverer's lock.
#[derive(Debug)]
pub enum Lock {
    Held(Flock<File>),
    /// Another deliverer holds it (its pid, as it wrote it).
    Busy(String),
}

impl Spool {
    /// The spool at `root`, with the default cap.
    pub fn new(root: &Path) -> Spool {
        Spool::for_settings(&AlertSettings {
            spool_dir: root.to_path_buf(),
            ..AlertSettings::default()
        })
    }

    /// The spool and cap the `[alerts]` settings name.
    pub fn for_settings(settings: &AlertSettings) -> Spool {
        Spool {
            root: settings.spool_dir.clone(),
            limits: Limits {
                files: settings.spool_max_files,
                bytes: settings.spool_max_bytes(),
            },
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn new_dir(&self) -> PathBuf {
        self.root.join("new")
    }

    fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }

    fn out_dir(&self) -> PathBuf {
        self.root.join("out")
    }

    /// Writes one alert into `new/`: a temporary file, then a rename. This is all a request
    /// does for an alert: two directory checks, the intake ledger (one small file, read and
    /// rewritten under a brief lock), one small write, one rename; no fsync, no listing. When
    /// `new/` is at its cap, the alert is counted in the ledger instead of written.
    pub fn put(&self, alert: &Alert) -> Result<Stored, String> {
        self.write_new(alert, false)
    }

    /// As `put`, synced to disk: for alerts whose source moves on once they are queued (the
    /// sudo log position, a watcher snapshot), so a power cut cannot lose them.
    pub fn put_durable(&self, alert: &Alert) -> Result<Stored, String> {
        self.write_new(alert, true)
    }

    fn write_new(&self, alert: &Alert, durable: bool) -> Result<Stored, String> {
        secure_dir(&self.root, false)?;
        let dir = self.new_dir();
        secure_dir(&dir, true)?;
        let body = serde_json::to_vec(alert).map_err(|e| format!("cannot encode: {e}"))?;
        // A changed sudoers file or crontab is never only counted: a flood of denials must not
        // hide it. Watch alerts are few (one per change of a watched file).
        if alert.kind != Kind::Watch {
            let len = body.len() as u64;
            // A ledger that cannot be used costs the count, never the alert.
            if let Ok(Admission::Count) =
                intake::admit(&self.root, self.limits, alert, len, durable)
            {
                return Ok(Stored::Counted);
            }
        }
        let name = format!(
            "{:013}-{}-{}.json",
            alert.unix_ms,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        write_atomic(&dir, &name, &body, durable)?;
        Ok(Stored::File)
    }

    /// How many alert files wait in `new/`, and their bytes (for the intake ledger's recount).
    pub fn new_census(&self) -> Result<(u64, u64), String> {
        let dir = self.new_dir();
        let names = names(&dir, "json")?;
        let bytes = names
            .iter()
            .filter_map(|n| fs::symlink_metadata(dir.join(n)).ok())
            .map(|m| m.len())
            .sum();
        Ok((names.len() as u64, bytes))
    }

    /// Creates or checks every directory of the spool.
    pub fn prepare(&self) -> Result<(), String> {
        secure_dir(&self.root, false)?;
        for d in [self.new_dir(), self.queue_dir(), self.out_dir()] {
            secure_dir(&d, true)?;
        }
        Ok(())
    }

    /// Takes the deliverer's lock without waiting.
    pub fn lock(&self) -> Result<Lock, String> {
        let path = self.root.join("notify.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                held.set_len(0).map_err(|e| e.to_string())?;
                let _ = writeln!(&mut *held, "{}", std::process::id());
                Ok(Lock::Held(held))
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                Ok(Lock::Busy(pid.trim().to_string()))
            }
            Err((_, e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }

    /// Whether a deliverer holds the lock now. Cheap (open + flock), for the request's path.
    pub fn deliverer_running(&self) -> bool {
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(self.root.join("notify.lock"))
        else {
            return false;
        };
        matches!(
            Flock::lock(file, FlockArg::LockSharedNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    }

    /// Whether `new/` holds an alert no deliverer has taken in yet.
    pub fn has_new(&self) -> bool {
        names(&self.new_dir(), "json").is_ok_and(|n| !n.is_empty())
    }

    /// Whether nothing waits: no queued alert, no message (file names only, nothing parsed).
    pub fn is_idle(&self) -> bool {
        [self.queue_dir(), self.out_dir()]
            .iter()
            .all(|d| names(d, "json").is_ok_and(|n| n.is_empty()))
    }

    /// Moves every finished alert from `new/` to `queue/`; removes stale temporary files.
    pub fn take_in(&self, now_ms: u64) -> Result<usize, String> {
        let dir = self.new_dir();
        let mut moved = 0;
        for name in names(&dir, "json")? {
            match fs::rename(dir.join(&name), self.queue_dir().join(&name)) {
                Ok(()) => moved += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot move {name} into the queue: {e}")),
            }
        }
        for name in names(&dir, "tmp")? {
            let p = dir.join(&name);
            let old = fs::symlink_metadata(&p)
                .ok()
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| super::to_ms(t) + STALE_TMP_MS < now_ms);
            if old {
                let _ = fs::remove_file(p);
            }
        }
        if moved > 0 {
            sync_dir(&self.queue_dir());
        }
        Ok(moved)
    }

    /// Every queued alert by file name; an unreadable file is reported as an error string.
    pub fn queued(&self) -> Result<Files<Alert>, String> {
        read_all(&self.queue_dir())
    }

    /// The names of the queued alerts, oldest first (names start with the alert's time).
    pub fn queued_names(&self) -> Result<Vec<String>, String> {
        names(&self.queue_dir(), "json")
    }

    /// The queued alerts with these names, each parsed or with the reason it could not be.
    pub fn read_queued(&self, names: &[String]) -> Files<Alert> {
        names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    read_json(&self.queue_dir().join(n), MAX_FILE_BYTES),
                )
            })
            .collect()
    }

    pub fn remove_queued(&self, names: &[String]) {
        for n in names {
            let _ = fs::remove_file(self.queue_dir().join(n));
        }
        sync_dir(&self.queue_dir());
    }

    pub fn messages<T: DeserializeOwned>(&self) -> Result<Files<T>, String> {
        read_all(&self.out_dir())
    }

    /// The ids of the waiting messages with their file sizes, in name order.
    pub fn message_ids(&self) -> Result<Vec<(String, u64)>, String> {
        let dir = self.out_dir();
        Ok(names(&dir, "json")?
            .into_iter()
            .map(|n| {
                let size = fs::symlink_metadata(dir.join(&n)).map_or(0, |m| m.len());
                (n.trim_end_matches(".json").to_string(), size)
            })
            .collect())
    }

    /// One message; `Ok(None)` when there is no such file.
    pub fn message<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, String> {
        let path = self.out_dir().join(format!("{id}.json"));
        match read_json(&path, MAX_FILE_BYTES) {
            Ok(m) => Ok(Some(m)),
            Err(_) if !path.exists() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_message<T: Serialize>(&self, id: &str, message: &T) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|e| format!("cannot encode: {e}"))?;
        write_atomic(&self.out_dir(), &format!("{id}.json"), &body, true)
    }

    pub fn remove_message(&self, id: &str) {
        self.remove_messages(&[id.to_string()]);
    }

    pub fn remove_messages(&self, ids: &[String]) {
        for id in ids {
            let _ = fs::remove_file(self.out_dir().join(format!("{id}.json")));
        }
        sync_dir(&self.out_dir());
    }

    pub fn load_state<T: DeserializeOwned + Default>(&self) -> Result<T, String> {
        let path = self.root.join("state.json");
        if !path.exists() {
            return Ok(T::default());
        }
        read_json(&path, MAX_FILE_BYTES).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn save_state<T: Serialize>(&self, state: &T) -> Result<(), String> {
        let body = serde_json::to_vec_pretty(state).map_err(|e| format!("cannot encode: {e}"))?;
        write_atomic(&self.root, "state.json", &body, true)
    }
}

/// A root-owned directory, not a link, created 0700 when missing. `private`: only root may
/// enter it (0700); else only root may write it (the spool's top, which systemd's
/// `MakeDirectory=` may have created 0755, holds only directories and 0600 files).
pub fn secure_dir(dir: &Path, private: bool) -> Result<(), String> {
    let md = match fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            fs::symlink_metadata(dir)
                .map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?
        }
        Err(e) => return Err(format!("cannot inspect {}: {e}", dir.display())),
    };
    let others = if private { 0o077 } else { 0o022 };
    if !md.is_dir() || md.uid() != 0 || md.mode() & others != 0 {
        return Err(format!(
            "{} must be a directory owned by root {}",
            dir.display(),
            if private {
                "with mode 0700"
            } else {
                "that no one else can write"
            }
        ));
    }
    Ok(())
}

/// Writes `dir/name` through a temporary `.name.tmp` and a rename. With `durable`, the file and
/// the directory are synced, so the write survives a power cut.
pub fn write_atomic(dir: &Path, name: &str, body: &[u8], durable: bool) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    if durable {
        // Durable writes happen under a lock; a temporary file here was left by a crash.
        let _ = fs::remove_file(&tmp);
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let written = file
        .write_all(body)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, &dest)) {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", dest.display()));
    }
    if durable {
        sync_dir(dir);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// File names in `dir` ending in `.ext`, sorted; names starting with a dot are temporary
/// files, listed only when `ext` is "tmp".
fn names(dir: &Path, ext: &str) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let hidden = name.starts_with('.');
        if name.ends_with(&format!(".{ext}")) && hidden == (ext == "tmp") {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a JSON file the spool or the watcher wrote (no link followed, at most `max` bytes).
pub fn read_json<T: DeserializeOwned>(path: &Path, max: u64) -> Result<T, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a valid spool file: {e}"))
}

fn read_all<T: DeserializeOwned>(dir: &Path) -> Result<Files<T>, String> {
    Ok(names(dir, "json")?
        .into_iter()
        .map(|n| {
            let v = read_json(&dir.join(&n), MAX_FILE_BYTES);
            (n, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Kind;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gateway-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn alerts_move_from_new_to_queue_whole() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root: the spool refuses directories not owned by root");
        }
        let root = temp("move");
        let spool = Spool::new(&root);
        let a = Alert::new(Kind::Deny, 42, "h".into(), "r".into());
        spool.put(&a).unwrap();
        spool.put(&a).unwrap();
        spool.prepare().unwrap();
        assert!(spool.has_new());
        assert_eq!(spool.take_in(0).unwrap(), 2);
        assert!(!spool.has_new());
        let q = spool.queued().unwrap();
        assert_eq!(q.len(), 2, "two writes in one process get two names");
        assert_eq!(q[0].1.as_ref().unwrap(), &a);
        let mode = fs::metadata(root.join("queue").join(&q[0].0))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "alert files are root-only");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_unsafe_spool_directory_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root");
        }
        // (setup, why)
        type Setup = fn(&Path);
        let rows: &[(Setup, &str)] = &[
            (
                |p| {
                    fs::create_dir_all(p.join("new")).unwrap();
                    fs::set_permissions(p.join("new"), fs::Permissions::from_mode(0o755)).unwrap();
                },
                "alerts others can list or read would show who was denied what",
            ),
            (
                |p| {
                    fs::create_dir_all(p).unwrap();
                    fs::set_permissions(p, fs::Permissions::from_mode(0o775)).unwrap();
                },
                "a spool its group can write could have its directories swapped",
            ),
            (
                |p| {
                    fs::create_dir_all(p).unwrap();
                    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap();
                    std::os::unix::fs::chown(p, Some(65534), None).unwrap();
                },
                "a spool another user owns could be filled or emptied by that user",
            ),
            (
                |p| std::os::unix::fs::symlink("/tmp", p).unwrap(),
                "a link could point the spool anywhere",
            ),
        ];
        use std::os::unix::fs::PermissionsExt;
        for (setup, why) in rows {
            let root = temp("unsafe");
            setup(&root);
            let err = Spool::new(&root)
                .put(&Alert::new(Kind::Deny, 1, "h".into(), "r".into()))
                .unwrap_err();
            assert!(
                err.contains("must be a directory owned by root"),
                "{why}: {err}"
            );
            let _ = fs::remove_file(&root);
            let _ = fs::remove_dir_all(&root);
        }
    }
}
