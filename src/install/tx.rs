//! Every change install and uninstall make to the filesystem goes through one transaction: each
//! write is atomic (a root-owned temporary file beside the target, optionally validated, then
//! renamed), every replaced or removed file is copied to a timestamped backup first, and every
//! step is recorded so that a failure later on puts the host back as it was. In dry-run mode the
//! same calls print a diff and touch nothing.
#![forbid(unsafe_code)]

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{chown, Gid, Uid};

use super::diff;

/// What is at a path, read without following a final symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Absent,
    File {
        bytes: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Link(PathBuf),
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

pub fn read_entry(path: &Path) -> Result<Entry, String> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entry::Absent),
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    };
    let t = md.file_type();
    if t.is_symlink() {
        let target = fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Entry::Link(target));
    }
    if t.is_dir() {
        return Ok(Entry::Dir {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        });
    }
    if !t.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Entry::File {
        bytes,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    })
}

/// A check run on the staged file before it replaces the real one (`visudo -cf`, `sshd -t`).
pub type Validator<'a> = &'a dyn Fn(&Path) -> Result<(), String>;

#[derive(Debug)]
enum Undo {
    Put(PathBuf, Entry),
    Command(Vec<String>),
}

#[derive(Debug)]
pub struct Tx {
    pub dry_run: bool,
    backup_dir: PathBuf,
    undo: Vec<Undo>,
    /// Paths changed (or, in dry-run, that would change), in order.
    pub changed: Vec<PathBuf>,
    /// Files copied into `backup_dir`: (original path, backup path).
    pub backups: Vec<(PathBuf, PathBuf)>,
}

impl Tx {
    pub fn new(dry_run: bool, backup_dir: PathBuf) -> Tx {
        Tx {
            dry_run,
            backup_dir,
            undo: Vec::new(),
            changed: Vec::new(),
            backups: Vec::new(),
        }
    }

    pub fn backup_dir(&self) -> &Path {
        &self.backup_dir
    }

    fn note(&mut self, path: &Path, before: &Entry, after: &Entry) {
        self.changed.push(path.to_path_buf());
        let p = path.display().to_string();
        let text = |e: &Entry| match e {
            Entry::File { bytes, .. } => std::str::from_utf8(bytes).ok().map(str::to_string),
            _ => None,
        };
        let describe = |e: &Entry| match e {
            Entry::Absent => "absent".to_string(),
            Entry::File { bytes, mode, .. } => {
                format!("file, {} bytes, mode {mode:04o}", bytes.len())
            }
            Entry::Link(t) => format!("symlink to {}", t.display()),
            Entry::Dir { mode, .. } => format!("directory, mode {mode:04o}"),
        };
        let verb = if self.dry_run {
            "would change"
        } else {
            "changed"
        };
        // A file only root may read (the webhooks file) is a secret: its content is not shown.
        let secret = |e: &Entry| matches!(e, Entry::File { mode, .. } if mode & 0o044 == 0);
        if secret(before) || secret(after) {
            println!("{verb}: {p}: root-only file, content not shown");
            return;
        }
        match (before, after) {
            (Entry::File { .. } | Entry::Absent, Entry::File { .. } | Entry::Absent)
                if text(before).is_some() || text(after).is_some() =>
            {
                let (old, new) = (text(before), text(after));
                let binary = matches!(before, Entry::File { .. }) && old.is_none()
                    || matches!(after, Entry::File { .. }) && new.is_none();
                if binary {
                    println!("{verb}: {p}: {} -> {}", describe(before), describe(after));
                } else if self.dry_run {
                    print!("{}", diff::unified(&p, old.as_deref(), new.as_deref()));
                    if let (Entry::File { mode: a, .. }, Entry::File { mode: b, .. }) =
                        (before, after)
                    {
                        if a != b && old == new {
                            println!("{verb}: {p}: mode {a:04o} -> {b:04o}");
                        }
                    }
                } else {
                    println!("{verb}: {p}: {} -> {}", describe(before), describe(after));
                }
            }
            _ => println!("{verb}: {p}: {} -> {}", describe(before), describe(after)),
        }
    }

    /// Copies the current file at `path` into the backup directory; returns the copy's path.
    pub fn backup(&mut self, path: &Path) -> Result<Option<PathBuf>, String> {
        let Entry::File { bytes, .. } = read_entry(path)? else {
            return Ok(None);
        };
        let rel = path.strip_prefix("/").unwrap_or(path);
        let dest = self.backup_dir.join(rel);
        if self.dry_run {
            return Ok(Some(dest));
        }
        if let Some(parent) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        // The same file backed up twice in one run keeps its first (original) copy.
        if !dest.exists() {
            write_atomic(&dest, &bytes, 0o600, None)?;
            self.backups.push((path.to_path_buf(), dest.clone()));
        }
        Ok(Some(dest))
    }

    /// Makes `path` a root-owned file with exactly these bytes and mode. Returns whether
    /// anything changed.
    pub fn put_file(
        &mut self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        validate: Option<Validator>,
    ) -> Result<bool, String> {
        let before = read_entry(path)?;
        let after = Entry::File {
            bytes: bytes.to_vec(),
            mode,
            uid: 0,
            gid: 0,
        };
        if before == after {
            return Ok(false);
        }
        if matches!(before, Entry::Dir { .. }) {
            return Err(format!("{} is a directory", path.display()));
        }
        if self.dry_run {
            if let Some(v) = validate {
                validate_bytes(path, bytes, v)?;
            }
            self.note(path, &before, &after);
            return Ok(true);
        }
        self.backup(path)?;
        write_atomic(path, bytes, mode, validate)?;
        self.note(path, &before, &after);
        self.undo.push(Undo::Put(path.to_path_buf(), before));
        Ok(true)
    }

    /// Makes `path` a symbolic link to `target`.
    pub fn put_link(&mut self, path: &Path, target: &Path) -> Result<bool, String> {
        let before = read_entry(path)?;
        let after = Entry::Link(target.to_path_buf());
        if before == after {
            return Ok(false);
        }
        if matches!(before, Entry::Dir { .. }) {
            return Err(format!("{} is a directory", path.display()));
        }
        if !self.dry_run {
            self.backup(path)?;
            put_entry(path, &after)?;
            self.undo
                .push(Undo::Put(path.to_path_buf(), before.clone()));
        }
        self.note(path, &before, &after);
        Ok(true)
    }

    /// Makes `path` a root-owned directory with `mode` (parents must exist).
    pub fn put_dir(&mut self, path: &Path, mode: u32) -> Result<bool, String> {
        let before = read_entry(path)?;
        let after = Entry::Dir {
            mode,
            uid: 0,
            gid: 0,
        };
        if before == after {
            return Ok(false);
        }
        if !matches!(before, Entry::Absent | Entry::Dir { .. }) {
            return Err(format!("{} exists and is not a directory", path.display()));
        }
        if !self.dry_run {
            put_entry(path, &after)?;
            self.undo
                .push(Undo::Put(path.to_path_buf(), before.clone()));
        }
        self.note(path, &before, &after);
        Ok(true)
    }

    /// Removes a file or link (backed up first), or an empty directory. A directory that is not
    /// empty is left and reported.
    pub fn remove(&mut self, path: &Path) -> Result<bool, String> {
        let before = read_entry(path)?;
        if before == Entry::Absent {
            return Ok(false);
        }
        if let Entry::Dir { .. } = before {
            let empty = fs::read_dir(path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                println!("kept: {} (not empty)", path.display());
                return Ok(false);
            }
        }
        if !self.dry_run {
            self.backup(path)?;
            put_entry(path, &Entry::Absent)?;
            self.undo
                .push(Undo::Put(path.to_path_buf(), before.clone()));
        }
        self.note(path, &before, &Entry::Absent);
        Ok(true)
    }

    /// Puts back an entry recorded earlier (a backup being restored), owner and mode included.
    pub fn restore(&mut self, path: &Path, entry: &Entry) -> Result<bool, String> {
        let before = read_entry(path)?;
        if before == *entry {
            return Ok(false);
        }
        if !self.dry_run {
            put_entry(path, entry)?;
            self.undo
                .push(Undo::Put(path.to_path_buf(), before.clone()));
        }
        self.note(path, &before, entry);
        Ok(true)
    }

    /// Runs a command that changes the system; `undo` is what reverses it on rollback.
    pub fn command(&mut self, argv: &[String], undo: Option<Vec<String>>) -> Result<(), String> {
        if self.dry_run {
            println!("would run: {}", argv.join(" "));
            return Ok(());
        }
        println!("run: {}", argv.join(" "));
        run_checked(argv)?;
        if let Some(u) = undo {
            self.undo.push(Undo::Command(u));
        }
        Ok(())
    }

    /// Undoes every recorded step, newest first.
    pub fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            let result = match &u {
                Undo::Put(path, entry) => put_entry(path, entry),
                Undo::Command(argv) => run_checked(argv),
            };
            match result {
                Ok(()) => match &u {
                    Undo::Put(p, _) => println!("rolled back: {}", p.display()),
                    Undo::Command(a) => println!("rolled back: {}", a.join(" ")),
                },
                Err(e) => eprintln!("gateway: rollback step failed: {e}"),
            }
        }
    }

    /// Keeps every change: nothing will be rolled back.
    pub fn commit(&mut self) {
        self.undo.clear();
    }
}

/// Runs a command with a fixed environment; its output is shown to the operator.
pub fn run_checked(argv: &[String]) -> Result<(), String> {
    let out = system_command(argv)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    let msg2 = String::from_utf8_lossy(&out.stdout);
    Err(format!(
        "{} failed ({}): {}{}",
        argv.join(" "),
        out.status,
        msg.trim(),
        if msg2.trim().is_empty() {
            String::new()
        } else {
            format!(" {}", msg2.trim())
        }
    ))
}

/// A command for the system's own tools: absolute program, cleared environment, C locale (their
/// output is parsed), working directory `/`.
pub fn system_command(argv: &[String]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .current_dir("/");
    c
}

fn validate_bytes(path: &Path, bytes: &[u8], v: Validator) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("gateway-validate.{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = path.file_name().unwrap_or_default();
    let staged = dir.join(name);
    let result = write_new(&staged, bytes, 0o600).and_then(|()| v(&staged));
    let _ = fs::remove_file(&staged);
    let _ = fs::remove_dir(&dir);
    result.map_err(|e| format!("{}: {e}", path.display()))
}

fn staged_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A leading dot and a dot inside: neither sudo's @includedir nor sshd's *.conf read it.
    path.with_file_name(format!(".{name}.gateway-new"))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let err = |e: io::Error| format!("cannot write {}: {e}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    chown(path, Some(Uid::from_raw(0)), Some(Gid::from_raw(0))).map_err(|e| err(e.into()))?;
    f.write_all(bytes).map_err(err)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(())
}

/// Writes `bytes` beside `path`, validates the staged copy, renames it into place.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    validate: Option<Validator>,
) -> Result<(), String> {
    let staged = staged_path(path);
    let _ = fs::remove_file(&staged);
    write_new(&staged, bytes, mode)?;
    if let Some(v) = validate {
        if let Err(e) = v(&staged) {
            let _ = fs::remove_file(&staged);
            return Err(format!("{} was not installed: {e}", path.display()));
        }
    }
    fs::rename(&staged, path).map_err(|e| {
        let _ = fs::remove_file(&staged);
        format!("cannot rename into {}: {e}", path.display())
    })
}

/// Makes the filesystem hold `entry` at `path`.
fn put_entry(path: &Path, entry: &Entry) -> Result<(), String> {
    let err = |e: io::Error| format!("{}: {e}", path.display());
    let current = read_entry(path)?;
    match entry {
        Entry::Absent => match current {
            Entry::Absent => Ok(()),
            Entry::Dir { .. } => fs::remove_dir(path).map_err(err),
            _ => fs::remove_file(path).map_err(err),
        },
        Entry::File {
            bytes,
            mode,
            uid,
            gid,
        } => {
            write_atomic(path, bytes, *mode, None)?;
            chown(path, Some(Uid::from_raw(*uid)), Some(Gid::from_raw(*gid)))
                .map_err(|e| err(e.into()))
        }
        Entry::Link(target) => {
            let staged = staged_path(path);
            let _ = fs::remove_file(&staged);
            std::os::unix::fs::symlink(target, &staged).map_err(err)?;
            fs::rename(&staged, path).map_err(err)
        }
        Entry::Dir { mode, uid, gid } => {
            match current {
                Entry::Dir { .. } => {}
                Entry::Absent => fs::DirBuilder::new()
                    .mode(*mode)
                    .create(path)
                    .map_err(err)?,
                _ => return Err(format!("{} exists and is not a directory", path.display())),
            }
            chown(path, Some(Uid::from_raw(*uid)), Some(Gid::from_raw(*gid)))
                .map_err(|e| err(e.into()))?;
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).map_err(err)
        }
    }
}
