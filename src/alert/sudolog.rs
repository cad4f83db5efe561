//! sudo's own refusals. A request sudo refuses (`sudo /usr/bin/whoami` when only the gateway is
//! allowed) never reaches the gateway, so the sudoers drop-in has sudo log the managed users'
//! events as JSON (`Defaults:GATEWAY_USERS logfile=..., log_format=json`), and `gateway notify`
//! reads what is new since its saved position.
//!
//! sudo 1.9's JSON log file is one object that grows: `{` then `"reject": {...}` entries
//! separated by `,`, with the closing `}` rewritten after each one (so keys repeat). This module
//! reads entries one by one from a byte offset, and keeps the offset just after the last whole
//! entry: a half-written one is read again next time, never skipped.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Alert, Kind};

/// Read at most this much per scan; the rest waits for the next pass.
const MAX_SCAN_BYTES: u64 = 8 << 20;

/// Where the previous scan stopped, in which file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// One entry of the log: its event type (`accept`, `reject`, `alert`, ...) and body.
#[derive(Debug, PartialEq)]
pub struct Event {
    pub kind: String,
    pub body: Value,
    /// Where the scan stands once this entry is handled.
    pub after: Position,
}

/// The entries of a buffer: (type, body, offset in the buffer just after it).
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<(String, Value, usize)>,
    /// Bytes used by whole entries; a half-written one after them is left for later.
    pub used: usize,
    /// Set when the buffer is damaged at `used` (entries before it are still good).
    pub error: Option<String>,
}

/// Entries in `buf`, read from file offset `base`.
pub fn parse_events(buf: &[u8], base: u64) -> Parsed {
    let mut p = Parsed::default();
    let fail = |mut p: Parsed, at: usize, what: String| {
        p.error = Some(format!("offset {}: {what}", base + at as u64));
        p
    };
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < buf.len() && buf[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        ws(&mut i);
        if base + i as u64 == 0 && buf.first() == Some(&b'{') {
            i += 1;
            continue;
        }
        if buf.get(i) == Some(&b',') {
            i += 1;
            ws(&mut i);
        }
        match buf.get(i) {
            None | Some(b'}') => return p,
            Some(b'"') => {}
            Some(_) => return fail(p, i, "unexpected byte (not a sudo JSON log?)".into()),
        }
        let mut keys = serde_json::Deserializer::from_slice(&buf[i..]).into_iter::<String>();
        let kind = match keys.next() {
            Some(Ok(k)) => k,
            Some(Err(e)) if e.is_eof() => return p,
            Some(Err(e)) => return fail(p, i, e.to_string()),
            None => return p,
        };
        i += keys.byte_offset();
        ws(&mut i);
        match buf.get(i) {
            Some(b':') => i += 1,
            None => return p,
            Some(_) => return fail(p, i, "expected ':'".into()),
        }
        let mut values = serde_json::Deserializer::from_slice(&buf[i..]).into_iter::<Value>();
        let body = match values.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) if e.is_eof() => return p,
            Some(Err(e)) => return fail(p, i, e.to_string()),
            None => return p,
        };
        i += values.byte_offset();
        p.used = i;
        p.entries.push((kind, body, i));
    }
}

/// The alert for a refusal of a managed user, or `None` for other events and users.
pub fn to_alert(e: &Event, users: &BTreeSet<String>, host: &str) -> Option<Alert> {
    if e.kind != "reject" && e.kind != "alert" {
        return None;
    }
    let s = |k: &str| e.body.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let user = s("submituser")?;
    if !users.contains(&user) {
        return None;
    }
    let time = e
        .body
        .get("submit_time")
        .or_else(|| e.body.get("server_time"));
    let secs = time.and_then(|t| t.get("seconds")).and_then(Value::as_u64);
    let nanos = time
        .and_then(|t| t.get("nanoseconds"))
        .and_then(Value::as_u64);
    let ms = match secs {
        Some(sec) => sec * 1000 + nanos.unwrap_or(0) / 1_000_000,
        None => super::now_ms(),
    };
    let reason = s("reason").unwrap_or_else(|| e.kind.clone());
    let mut a = Alert::new(
        Kind::SudoDeny,
        ms,
        s("submithost").unwrap_or_else(|| host.to_string()),
        format!("sudo: {reason}"),
    );
    a.user = Some(user);
    a.channel = Some("sudo".into());
    a.run_as = s("runuser");
    a.argv = e
        .body
        .get("runargv")
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .or_else(|| s("command").map(|c| vec![c]));
    Some(a)
}

/// What one scan found: the entries, and a damaged stretch it skipped (if any).
#[derive(Debug, Default)]
pub struct Scan {
    pub events: Vec<Event>,
    pub damaged: Option<String>,
}

/// Reads the events added to `path` since `pos`, and moves `pos` past them. After a rotation,
/// the rest of the previous file (now `PATH.1`, as logrotate names it) is read first; then the
/// new file, from its start. A missing file is no error; one that is not root's is.
pub fn scan(path: &Path, pos: &mut Option<Position>) -> Result<Scan, String> {
    let mut out = Scan::default();
    if let Some(p) = pos.clone() {
        let rotated = PathBuf::from(format!("{}.1", path.display()));
        let moved = std::fs::symlink_metadata(&rotated)
            .is_ok_and(|md| (md.dev(), md.ino()) == (p.dev, p.ino));
        if moved {
            let mut old = Some(p);
            out = scan_file(&rotated, &mut old)?;
            *pos = None;
        }
    }
    let now = scan_file(path, pos)?;
    out.events.extend(now.events);
    out.damaged = out.damaged.or(now.damaged);
    Ok(out)
}

/// One file: from `pos` when it is this file and not shorter, else from its start.
fn scan_file(path: &Path, pos: &mut Option<Position>) -> Result<Scan, String> {
    let shown = path.display();
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(e) => return Err(format!("cannot open {shown}: {e}")),
    };
    let md = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !md.is_file() || md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(format!(
            "{shown} must be a root-owned file only root can write (sudo creates it so)"
        ));
    }
    let start = match pos {
        Some(p) if p.dev == md.dev() && p.ino == md.ino() && p.offset <= md.size() => p.offset,
        _ => 0,
    };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| format!("{shown}: {e}"))?;
    let mut buf = Vec::new();
    (&mut file)
        .take(MAX_SCAN_BYTES)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{shown}: {e}"))?;
    let at = |offset: usize| Position {
        dev: md.dev(),
        ino: md.ino(),
        offset: start + offset as u64,
    };
    let parsed = parse_events(&buf, start);
    let events = parsed
        .entries
        .into_iter()
        .map(|(kind, body, end)| Event {
            kind,
            body,
            after: at(end),
        })
        .collect();
    // A damaged stretch is skipped to the end of what is there now, so one bad byte cannot
    // stop the scan for good; the entries before it still count.
    let (end, damaged) = match parsed.error {
        Some(e) => (buf.len(), Some(format!("{shown}: {e}; skipped to its end"))),
        None => (parsed.used, None),
    };
    *pos = Some(at(end));
    Ok(Scan { events, damaged })
}

/// Whether the log grew (or was replaced) since `pos`.
pub fn has_more(path: &Path, pos: &Option<Position>) -> bool {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    match pos {
        Some(p) => p.dev != md.dev() || p.ino != md.ino() || md.size() > p.offset + 3,
        None => md.size() > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape sudo 1.9.13 writes, checked against a real `sudo -n /usr/bin/whoami` on Debian 12
    // (fields trimmed): the object stays open to new entries, its `}` rewritten after each.
    const LOG: &str = r#"{
    "reject": {
        "uuid": "8e7e7bd8da",
        "reason": "a password is required",
        "submit_time": { "seconds": 1795359657, "nanoseconds": 441387321 },
        "submituser": "gwtaexp",
        "command": "/usr/bin/whoami",
        "runuser": "root",
        "submithost": "vm",
        "runargv": [ "/usr/bin/whoami", "\nx" ]
    },
    "accept": {
        "submituser": "gwtaexp",
        "command": "/usr/local/bin/gateway",
        "runargv": [ "/usr/local/bin/gateway", "run", "ss" ]
    }
}
"#;

    #[test]
    fn entries_are_read_one_by_one_and_the_offset_stops_after_the_last() {
        let p = parse_events(LOG.as_bytes(), 0);
        let used = p.used;
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[0].0, "reject");
        assert_eq!(p.entries[1].0, "accept");
        assert_eq!(p.entries[1].2, used);
        assert_eq!(
            &LOG[used..],
            "\n}\n",
            "the closing brace is left for sudo to overwrite"
        );
        // sudo appends: the closing brace becomes ",\n  "reject": {...}\n}".
        let grown = format!(
            "{}{}",
            &LOG[..used],
            ",\n    \"reject\": { \"submituser\": \"gwtaexp\", \"reason\": \"command not allowed\" }\n}\n"
        );
        let more = parse_events(&grown.as_bytes()[used..], used as u64);
        assert_eq!(more.entries.len(), 1);
        assert_eq!(more.entries[0].1["reason"], "command not allowed");
        assert_eq!(&grown[used + more.used..], "\n}\n");
    }

    #[test]
    fn a_half_written_entry_waits_for_the_next_scan() {
        let cut = LOG.find("\"accept\"").unwrap() + 20;
        let p = parse_events(&LOG.as_bytes()[..cut], 0);
        assert_eq!(p.entries.len(), 1, "only the complete entry");
        assert!(p.used < cut && p.error.is_none());
    }

    #[test]
    fn refusals_of_managed_users_become_alerts() {
        let events: Vec<Event> = parse_events(LOG.as_bytes(), 0)
            .entries
            .into_iter()
            .map(|(kind, body, end)| Event {
                kind,
                body,
                after: Position {
                    dev: 0,
                    ino: 0,
                    offset: end as u64,
                },
            })
            .collect();
        let users: BTreeSet<String> = ["gwtaexp".to_string()].into();
        let a = to_alert(&events[0], &users, "here").unwrap();
        assert_eq!(a.kind, Kind::SudoDeny);
        assert_eq!(a.user.as_deref(), Some("gwtaexp"));
        assert_eq!(a.reason, "sudo: a password is required");
        assert_eq!(
            a.argv.as_deref(),
            Some(&["/usr/bin/whoami".to_string(), "\nx".to_string()][..])
        );
        assert_eq!(a.unix_ms, 1_795_359_657_441);
        assert_eq!(a.host, "vm");
        assert!(
            to_alert(&events[1], &users, "here").is_none(),
            "accepted runs are not alerts"
        );
        assert!(
            to_alert(&events[0], &BTreeSet::new(), "here").is_none(),
            "other users are not ours"
        );
    }

    #[test]
    fn a_rotated_log_is_finished_before_the_new_one_is_read() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root: the log must be root's");
        }
        let dir = std::env::temp_dir().join(format!("gateway-sudolog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sudo-events.json");
        let entry = |reason: &str| {
            format!("    \"reject\": {{ \"submituser\": \"u\", \"reason\": \"{reason}\" }}")
        };
        std::fs::write(&log, format!("{{\n{}\n}}\n", entry("one"))).unwrap();
        let mut pos = None;
        assert_eq!(scan(&log, &mut pos).unwrap().events.len(), 1);
        // sudo adds one more, then logrotate moves the file and sudo starts a new one.
        std::fs::write(
            &log,
            format!("{{\n{},\n{}\n}}\n", entry("one"), entry("two")),
        )
        .unwrap_or(());
        let reasons = |s: Scan| -> Vec<String> {
            s.events
                .iter()
                .map(|e| e.body["reason"].as_str().unwrap().to_string())
                .collect()
        };
        std::fs::rename(&log, dir.join("sudo-events.json.1")).unwrap();
        std::fs::write(&log, format!("{{\n{}\n}}\n", entry("three"))).unwrap();
        assert_eq!(reasons(scan(&log, &mut pos).unwrap()), ["two", "three"]);
        assert!(
            scan(&log, &mut pos).unwrap().events.is_empty(),
            "nothing twice"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_is_reported_and_the_entries_before_it_still_count() {
        let text = format!("{}, garbage", &LOG[..LOG.rfind('}').unwrap()].trim_end());
        let p = parse_events(text.as_bytes(), 0);
        assert_eq!(p.entries.len(), 2, "the whole entries before the damage");
        assert!(p.error.unwrap().contains("not a sudo JSON log"));
        assert!(parse_events(b"{\n  garbage", 0).error.is_some());
    }
}
