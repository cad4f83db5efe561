//! The spool's intake ledger, `SPOOL/intake.json`: how many alert files wait in `new/`, and the
//! alerts that were counted instead of written because `new/` was at its cap.
//!
//! It is what lets a request enforce the cap in O(1): one small file read and rewritten under a
//! brief `flock`, never a directory listing. The deliverer recounts `new/` on every pass (so a
//! count that drifted, after a failed write or a crash, heals) and turns what was counted into a
//! note message, so an alert that was not kept is still reported. A counted record moves to
//! `taking` before its note is written and leaves the ledger only once the note is on disk; the
//! note's name comes from the record's number, so a crash in between builds it once.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::plan::{add_tally, tally_key};
use super::{now_ms, Alert};

/// The ledger's file name in the spool.
pub const FILE: &str = "intake.json";
/// The ledger is a few hundred bytes; anything larger is not ours.
const MAX_BYTES: u64 = 64 << 10;
/// A request tries the lock this many times, `REQUEST_PAUSE` apart (about a millisecond in
/// all; the lock is held for microseconds), then writes its alert uncounted: the cap may be
/// passed by a few files, the request never waits.
const REQUEST_TRIES: u32 = 10;
const REQUEST_PAUSE: Duration = Duration::from_micros(100);
/// The deliverer waits up to about two seconds, then delivers without the ledger this pass:
/// a request stopped while it holds the lock (job control) must not stall delivery.
const DELIVERER_TRIES: u32 = 2000;
const DELIVERER_PAUSE: Duration = Duration::from_millis(1);

/// The cap `new/` is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub files: u64,
    pub bytes: u64,
}

/// Alerts counted instead of written: how many, when, and of which kinds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unspooled {
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    /// "kind user program" -> count (the largest kinds, then "other").
    #[serde(default)]
    pub tally: Vec<(String, u64)>,
}

impl Unspooled {
    fn add(&mut self, a: &Alert) {
        if self.count == 0 {
            self.first_ms = a.unix_ms;
            self.last_ms = a.unix_ms;
        }
        self.count += 1;
        self.first_ms = self.first_ms.min(a.unix_ms);
        self.last_ms = self.last_ms.max(a.unix_ms);
        add_tally(&mut self.tally, tally_key(a), 1);
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Ledger {
    /// Alert files in `new/`: recounted by each deliverer pass, one more per admitted alert.
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// The number the current `unspooled` record will carry.
    #[serde(default)]
    pub gen: u64,
    #[serde(default)]
    pub unspooled: Unspooled,
    /// A record the deliverer took (with its number), kept until its note is on disk.
    #[serde(default)]
    pub taking: Option<(u64, Unspooled)>,
    /// When a request found the ledger unreadable and started a new one (reported, then cleared).
    #[serde(default)]
    pub reset_ms: Option<u64>,
}

impl Ledger {
    fn fresh() -> Ledger {
        Ledger {
            // Distinct from the numbers of any earlier ledger, so no note name repeats.
            gen: now_ms(),
            ..Ledger::default()
        }
    }
}

/// What a request does with its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Write,
    /// `new/` is at its cap: the alert was counted in the ledger instead.
    Count,
}

/// The ledger file, locked.
struct Locked(Flock<File>);

impl Locked {
    /// `deliverer`: wait up to about two seconds for the lock; else a few quick tries.
    fn open(root: &Path, deliverer: bool) -> Result<Locked, String> {
        let path = root.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let md = file.metadata().map_err(|e| e.to_string())?;
        if !md.is_file() || md.uid() != 0 || md.mode() & 0o077 != 0 {
            return Err(format!(
                "{} must be a regular file only root can read",
                path.display()
            ));
        }
        let (max, pause) = if deliverer {
            (DELIVERER_TRIES, DELIVERER_PAUSE)
        } else {
            (REQUEST_TRIES, REQUEST_PAUSE)
        };
        let mut tries = 0;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => return Ok(Locked(held)),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if tries < max => {
                    file = f;
                    tries += 1;
                    sleep(pause);
                }
                Err((_, e)) => return Err(format!("cannot lock {}: {e}", path.display())),
            }
        }
    }

    /// The ledger; an empty file is a new ledger.
    fn read(&mut self) -> Result<Ledger, String> {
        let mut bytes = Vec::new();
        self.0
            .seek(SeekFrom::Start(0))
            .and_then(|_| (&*self.0).take(MAX_BYTES).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read the intake ledger: {e}"))?;
        if bytes.is_empty() {
            return Ok(Ledger::fresh());
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("the intake ledger is unreadable: {e}"))
    }

    fn write(&mut self, l: &Ledger) -> Result<(), String> {
        let body = serde_json::to_vec(l).map_err(|e| e.to_string())?;
        self.0
            .write_all_at(&body, 0)
            .and_then(|()| self.0.set_len(body.len() as u64))
            .map_err(|e| format!("cannot write the intake ledger: {e}"))
    }

    fn sync(&self) -> Result<(), String> {
        self.0
            .sync_data()
            .map_err(|e| format!("cannot sync the intake ledger: {e}"))
    }
}

/// A request's question: write this alert of `len` bytes, or count it? `durable`: the caller
/// moves on once this returns (sudo's log position), so a count is synced to disk.
pub fn admit(
    root: &Path,
    limits: Limits,
    alert: &Alert,
    len: u64,
    durable: bool,
) -> Result<Admission, String> {
    let mut locked = Locked::open(root, false)?;
    let mut ledger = locked.read().unwrap_or_else(|_| Ledger {
        reset_ms: Some(now_ms()),
        ..Ledger::fresh()
    });
    // One alert always fits in an empty new/, however large.
    let full =
        ledger.files >= limits.files || (ledger.files > 0 && ledger.bytes + len > limits.bytes);
    if full {
        ledger.unspooled.add(alert);
    } else {
        ledger.files += 1;
        ledger.bytes += len;
    }
    locked.write(&ledger)?;
    if full && durable {
        locked.sync()?;
    }
    Ok(if full {
        Admission::Count
    } else {
        Admission::Write
    })
}

/// What the deliverer's pass found in the ledger.
#[derive(Debug, Default)]
pub struct Taken {
    /// Alerts counted instead of written, and the record's number (which names its note).
    pub record: Option<(u64, Unspooled)>,
    /// When the ledger was found unreadable and started again.
    pub reset_ms: Option<u64>,
}

/// The deliverer's pass: sets the count of `new/` to what is there now (`files`, `bytes`, from
/// a listing made just before) and takes the counted alerts out for a note. The caller writes
/// the note, then calls `settle` with the record's number.
pub fn take(root: &Path, files: u64, bytes: u64) -> Result<Taken, String> {
    let mut locked = Locked::open(root, true)?;
    let (mut ledger, unreadable) = match locked.read() {
        Ok(l) => (l, None),
        Err(_) => (Ledger::fresh(), Some(now_ms())),
    };
    let reset_ms = ledger.reset_ms.take().or(unreadable);
    ledger.files = files;
    ledger.bytes = bytes;
    if ledger.taking.is_none() && ledger.unspooled.count > 0 {
        ledger.taking = Some((ledger.gen, std::mem::take(&mut ledger.unspooled)));
        ledger.gen += 1;
    }
    locked.write(&ledger)?;
    Ok(Taken {
        record: ledger.taking,
        reset_ms,
    })
}

/// The note for record `gen` is on disk: forget the record (synced, so it is never noted twice).
pub fn settle(root: &Path, gen: u64) -> Result<(), String> {
    let mut locked = Locked::open(root, true)?;
    let mut ledger = locked.read()?;
    if ledger.taking.as_ref().is_some_and(|(g, _)| *g == gen) {
        ledger.taking = None;
        locked.write(&ledger)?;
        locked.sync()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Kind;

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gateway-intake-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn deny(ms: u64, program: &str) -> Alert {
        let mut a = Alert::new(Kind::Deny, ms, "h".into(), "r".into());
        a.user = Some("u".into());
        a.argv = Some(vec![program.into()]);
        a
    }

    #[test]
    fn the_cap_counts_what_it_turns_away_and_the_deliverer_takes_the_count_once() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root: the ledger must be root's");
        }
        let root = temp("cap");
        let limits = Limits {
            files: 3,
            bytes: 1000,
        };
        // (alert time, program, size, expected, why)
        let rows = [
            (
                10,
                "a",
                2000,
                Admission::Write,
                "one alert fits an empty new/, however large",
            ),
            (
                12,
                "b",
                10,
                Admission::Count,
                "then the byte cap is reached",
            ),
            (
                9,
                "c",
                10,
                Admission::Count,
                "counted, with its time and kind",
            ),
        ];
        for (ms, p, len, want, why) in rows {
            let got = admit(&root, limits, &deny(ms, p), len, false).unwrap();
            assert_eq!(got, want, "{why}");
        }
        // The deliverer emptied new/: the count restarts from what is there, and the record
        // of the two counted alerts is taken out once.
        let t = take(&root, 0, 0).unwrap();
        let (gen, rec) = t.record.clone().expect("a record");
        assert_eq!((rec.count, rec.first_ms, rec.last_ms), (2, 9, 12));
        assert_eq!(
            rec.tally,
            vec![("deny u b".to_string(), 1), ("deny u c".to_string(), 1)]
        );
        // Until the note is settled, a new pass sees the same record (a crash in between).
        assert_eq!(take(&root, 0, 0).unwrap().record, Some((gen, rec)));
        settle(&root, gen).unwrap();
        assert_eq!(take(&root, 0, 0).unwrap().record, None, "noted once");
        // The file cap: three small alerts fit, the fourth is counted.
        let got: Vec<Admission> = (0..4)
            .map(|i| admit(&root, limits, &deny(20 + i, "a"), 10, false).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                Admission::Write,
                Admission::Write,
                Admission::Write,
                Admission::Count
            ],
            "room again after the recount, up to the file cap"
        );
        // A ledger that cannot be read is started again, and that is reported.
        std::fs::write(root.join(FILE), b"{torn").unwrap();
        admit(&root, limits, &deny(30, "a"), 10, false).unwrap();
        assert!(take(&root, 0, 0).unwrap().reset_ms.is_some());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
