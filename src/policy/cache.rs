//! A root-only cache of the validated policy, so a request does not pay for TOML parsing.
//!
//! Parsing `gateway.toml` costs about a millisecond; every request needs the policy. The
//! validated model is kept as JSON in a directory only root can write, keyed by the identity of
//! the policy file and of the gateway binary (device, inode, size, mtime, ctime). A key that does
//! not match, a file that is not root's, or anything unreadable means the cache is ignored and
//! the TOML is read, as if there were no cache. Writing the cache is best effort.
//!
//! A request concerns one user, so it reads only that user from the cache: the policy it gets
//! has the settings, alerts and programs, that user alone, and that user's rules, each rule
//! decoded only when the decision looks at it. Every decision and message about that user is
//! the same as with the whole policy (tests/policy_cache.rs checks it on every shipped case).
//!
//! The file: one line of JSON (the key, the policy without users or rules, and where each
//! user's section is), then the rule bodies, then one section per user (the user, and for each
//! of its rules the program, selector and where the body is). Offsets count from the byte
//! after the first line.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::rules::{read_piece, Slot};
use super::{Diagnostic, Policy, Rules, User};
use crate::{system, trust};

/// Where `run` and `ssh` keep the cache.
pub const CACHE_PATH: &str = "/var/cache/gateway/policy.json";
const FORMAT: u32 = 2;
const MAX_CACHE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl From<&Metadata> for FileId {
    fn from(md: &Metadata) -> FileId {
        FileId {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// What a cache is valid for: this policy file and this binary, as they are now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    format: u32,
    version: String,
    binary: FileId,
    policy: FileId,
}

impl Key {
    fn of(policy: &Path, exe: &Path) -> Option<Key> {
        let (policy, exe) = (fs::metadata(policy).ok()?, fs::metadata(exe).ok()?);
        Some(Key::from_metadata(&policy, &exe))
    }

    /// The key from what the trust walks of the policy and the binary saw (`stat` of each).
    pub fn from_metadata(policy: &Metadata, exe: &Metadata) -> Key {
        Key {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_string(),
            binary: FileId::from(exe),
            policy: FileId::from(policy),
        }
    }
}

/// Where a piece of the file is, counted from the byte after the first line.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Span {
    at: u64,
    len: usize,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    key: &'a Key,
    policy: &'a Policy,
    users: BTreeMap<&'a str, Span>,
}

#[derive(Deserialize)]
struct HeaderIn {
    key: Key,
    policy: Policy,
    users: BTreeMap<String, Span>,
}

#[derive(Serialize)]
struct SectionOut<'a> {
    user: &'a User,
    rules: BTreeMap<&'a str, &'a Slot>,
}

#[derive(Deserialize)]
struct SectionIn {
    user: User,
    rules: BTreeMap<String, Slot>,
}

/// What one read takes first (one page); the shipped policy's first line is about 3 kB, and a
/// longer one takes a second read.
const FIRST_READ: usize = 4 << 10;
/// The largest user section the cache may hold; a bigger span is a corrupt cache.
const MAX_SECTION: usize = 1 << 20;

/// The policy at `path` as a request by `user` needs it: from the cache at `cache` when it is
/// current for this policy file and the gateway binary `exe` (then it holds `user` alone), else
/// the whole policy from the TOML (and the cache is refreshed).
pub fn load_for(
    path: &Path,
    cache: &Path,
    exe: &Path,
    user: &str,
) -> Result<Policy, Vec<Diagnostic>> {
    load_keyed(path, cache, Key::of(path, exe), user)
}

/// [`load_for`] with the key already taken (`None`: the files could not be examined, so the
/// cache is neither read nor written).
pub fn load_keyed(
    path: &Path,
    cache: &Path,
    key: Option<Key>,
    user: &str,
) -> Result<Policy, Vec<Diagnostic>> {
    if let Some(key) = &key {
        if let Some(policy) = read(cache, key, user) {
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

/// The cached policy for a request by `user`, if the cache at `cache` is root's alone and
/// current for the policy file at `path` and the binary `exe`; `None` means the caller reads
/// the TOML.
pub fn read_current(path: &Path, cache: &Path, exe: &Path, user: &str) -> Option<Policy> {
    read(cache, &Key::of(path, exe)?, user)
}

fn read(cache: &Path, key: &Key, user: &str) -> Option<Policy> {
    trust::resolve_locked(cache.parent()?).ok()?;
    let file = system::open_read_nofollow(cache).ok()?;
    let md = file.metadata().ok()?;
    if !md.is_file() || md.uid() != 0 || md.mode() & 0o077 != 0 || md.size() > MAX_CACHE_BYTES {
        return None;
    }
    let size = usize::try_from(md.size()).ok()?;
    let mut head = vec![0; size.min(FIRST_READ)];
    file.read_exact_at(&mut head, 0).ok()?;
    if !head.contains(&b'\n') && head.len() < size {
        head.resize(size, 0);
        file.read_exact_at(&mut head, 0).ok()?;
    }
    let line = head.iter().position(|&b| b == b'\n')?;
    let header: HeaderIn = serde_json::from_slice(&head[..line]).ok()?;
    if header.key != *key {
        return None;
    }
    let base = line as u64 + 1;
    let mut policy = header.policy;
    // A user the policy does not name gets a policy without users, as the TOML would give.
    let Some(span) = header.users.get(user) else {
        return Some(policy);
    };
    let bytes = read_piece(&file, base, span.at, span.len, MAX_SECTION)?;
    let section: SectionIn = serde_json::from_slice(&bytes).ok()?;
    if section.user.name != user {
        return None;
    }
    policy.users.insert(section.user.name.clone(), section.user);
    policy.rules = Rules::from_slots(section.rules, file, base);
    Some(policy)
}

/// The cache file's bytes for `policy`, or `None` if a rule cannot be had.
fn encode(key: &Key, policy: &Policy) -> Option<Vec<u8>> {
    let mut rest = Vec::new();
    let mut slots = BTreeMap::new();
    for r in policy.rules.all()? {
        let at = rest.len();
        serde_json::to_writer(&mut rest, r.rule).ok()?;
        let slot = Slot {
            program: r.program.to_string(),
            selector: r.selector.map(str::to_string),
            at: at as u64,
            len: rest.len() - at,
        };
        slots.insert(r.name, slot);
    }
    let mut users = BTreeMap::new();
    for (name, user) in &policy.users {
        let rules = user
            .rules
            .iter()
            .map(|r| Some((r.as_str(), slots.get(r.as_str())?)))
            .collect::<Option<_>>()?;
        let at = rest.len();
        serde_json::to_writer(&mut rest, &SectionOut { user, rules }).ok()?;
        let span = Span {
            at: at as u64,
            len: rest.len() - at,
        };
        users.insert(name.as_str(), span);
    }
    let mut out = serde_json::to_vec(&HeaderOut { key, policy, users }).ok()?;
    out.push(b'\n');
    out.extend_from_slice(&rest);
    Some(out)
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
    let json = encode(key, policy).ok_or("a rule cannot be encoded")?;
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
