//! A root-only cache of the validated policy, so a request does not pay for TOML parsing.
//!
//! Parsing `gateway.toml` costs about a millisecond; every request needs the policy. The
//! validated model is kept as JSON in a directory only root can write, keyed by the identity of
//! the policy file and of the gateway binary (device, inode, size, mtime, ctime). A key that does
//! not match, a file that is not root's, or anything unreadable means the cache is ignored and
//! the TOML is read, as if there were no cache. Writing the cache is best effort.
#![forbid(unsafe_code)]

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Diagnostic, Policy};
use crate::trust;

/// Where `run` and `ssh` keep the cache.
pub const CACHE_PATH: &str = "/var/cache/gateway/policy.json";
const FORMAT: u32 = 1;
const MAX_CACHE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        let md = fs::metadata(path).ok()?;
        Some(FileId {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    format: u32,
    version: String,
    binary: FileId,
    policy: FileId,
}

impl Key {
    fn of(policy: &Path, exe: &Path) -> Option<Key> {
        Some(Key {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_string(),
            binary: FileId::of(exe)?,
            policy: FileId::of(policy)?,
        })
    }
}

#[derive(Serialize)]
struct CachedRef<'a> {
    key: &'a Key,
    policy: &'a Policy,
}

#[derive(Deserialize)]
struct Cached {
    key: Key,
    policy: Policy,
}

/// The policy at `path`, from the cache at `cache` when it is current for this policy file and
/// the gateway binary `exe`, else from the TOML (and the cache is refreshed).
pub fn load(path: &Path, cache: &Path, exe: &Path) -> Result<Policy, Vec<Diagnostic>> {
    let key = Key::of(path, exe);
    if let Some(key) = &key {
        if let Some(policy) = read(cache, key) {
            return Ok(policy);
        }
    }
    let policy = Policy::load(path)?;
    if let Some(key) = key {
        // Only a key taken before the read is stored: a file that changed meanwhile gets a
        // new ctime, so the stale entry can never match again.
        let _ = write(cache, &key, &policy);
    }
    Ok(policy)
}

fn read(cache: &Path, key: &Key) -> Option<Policy> {
    trust::resolve_locked(cache.parent()?).ok()?;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(cache)
        .ok()?;
    let md = file.metadata().ok()?;
    if !md.is_file() || md.uid() != 0 || md.mode() & 0o077 != 0 || md.size() > MAX_CACHE_BYTES {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let cached: Cached = serde_json::from_str(&text).ok()?;
    (cached.key == *key).then_some(cached.policy)
}

fn write(cache: &Path, key: &Key, policy: &Policy) -> Result<(), String> {
    let dir = cache.parent().ok_or("no directory")?;
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| e.to_string())?;
    }
    trust::resolve_locked(dir).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec(&CachedRef { key, policy }).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".policy.{}.tmp", std::process::id()));
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    let written = f.write_all(&json).and_then(|_| f.sync_all());
    if let Err(e) = written.and_then(|_| fs::rename(&tmp, cache)) {
        let _ = fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    Ok(())
}
