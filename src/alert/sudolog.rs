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
}

/// Entries in `buf` (read from file offset `base`), and how many bytes they used up.
/// Stops before an entry that is not complete yet; a damaged file is an error.
pub fn parse_events(buf: &[u8], base: u64) -> Result<(Vec<Event>, usize), String> {
    let mut events = Vec::new();
    let mut i = 0;
    let mut used = 0;
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
            None | Some(b'}') => return Ok((events, used)),
            Some(b'"') => {}
            Some(_) => {
                return Err(format!(
                    "unexpected byte at offset {} (not a sudo JSON log?)",
                    base + i as u64
                ))
            }
        }
        let mut keys = serde_json::Deserializer::from_slice(&buf[i..]).into_iter::<String>();
        let kind = match keys.next() {
            Some(Ok(k)) => k,
            Some(Err(e)) if e.is_eof() => return Ok((events, used)),
            Some(Err(e)) => return Err(format!("offset {}: {e}", base + i as u64)),
            None => return Ok((events, used)),
        };
        i += keys.byte_offset();
        ws(&mut i);
        match buf.get(i) {
            Some(b':') => i += 1,
            None => return Ok((events, used)),
            Some(_) => return Err(format!("offset {}: expected ':'", base + i as u64)),
        }
        let mut values = serde_json::Deserializer::from_slice(&buf[i..]).into_iter::<Value>();
        let body = match values.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) if e.is_eof() => return Ok((events, used)),
            Some(Err(e)) => return Err(format!("offset {}: {e}", base + i as u64)),
            None => return Ok((events, used)),
        };
        i += values.byte_offset();
        used = i;
        events.push(Event { kind, body });
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

/// Reads the events added to `path` since `pos`, updating `pos`. After a rotation, the rest of
/// the previous file (now `PATH.1`, as logrotate names it) is read first; then the new file,
/// from its start. A missing file is no error.
pub fn scan(path: &Path, pos: &mut Option<Position>) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    if let Some(p) = pos.clone() {
        let rotated = PathBuf::from(format!("{}.1", path.display()));
        let moved = std::fs::symlink_metadata(&rotated)
            .is_ok_and(|md| (md.dev(), md.ino()) == (p.dev, p.ino));
        if moved {
            let mut old = Some(p);
            events = scan_file(&rotated, &mut old)?;
            *pos = None;
        }
    }
    events.extend(scan_file(path, pos)?);
    Ok(events)
}

/// One file: from `pos` when it is this file and not shorter, else from its start.
fn scan_file(path: &Path, pos: &mut Option<Position>) -> Result<Vec<Event>, String> {
    let shown = path.display();
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
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
    let (events, used) = match parse_events(&buf, start) {
        Ok(r) => r,
        Err(e) => {
            // A damaged file: skip what is there now, so one bad byte cannot stop the scan.
            *pos = Some(Position {
                dev: md.dev(),
                ino: md.ino(),
                offset: start + buf.len() as u64,
            });
            return Err(format!("{shown}: {e}; skipped to its end"));
        }
    };
    *pos = Some(Position {
        dev: md.dev(),
        ino: md.ino(),
        offset: start + used as u64,
    });
    Ok(events)
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
        let (events, used) = parse_events(LOG.as_bytes(), 0).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, "reject");
        assert_eq!(events[1].kind, "accept");
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
        let (more, used2) = parse_events(&grown.as_bytes()[used..], used as u64).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].body["reason"], "command not allowed");
        assert_eq!(&grown[used + used2..], "\n}\n");
    }

    #[test]
    fn a_half_written_entry_waits_for_the_next_scan() {
        let cut = LOG.find("\"accept\"").unwrap() + 20;
        let (events, used) = parse_events(&LOG.as_bytes()[..cut], 0).unwrap();
        assert_eq!(events.len(), 1, "only the complete entry");
        assert!(used < cut);
    }

    #[test]
    fn refusals_of_managed_users_become_alerts() {
        let (events, _) = parse_events(LOG.as_bytes(), 0).unwrap();
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
        assert_eq!(scan(&log, &mut pos).unwrap().len(), 1);
        // sudo adds one more, then logrotate moves the file and sudo starts a new one.
        std::fs::write(
            &log,
            format!("{{\n{},\n{}\n}}\n", entry("one"), entry("two")),
        )
        .unwrap_or(());
        let reasons = |ev: Vec<Event>| -> Vec<String> {
            ev.iter()
                .map(|e| e.body["reason"].as_str().unwrap().to_string())
                .collect()
        };
        std::fs::rename(&log, dir.join("sudo-events.json.1")).unwrap();
        std::fs::write(&log, format!("{{\n{}\n}}\n", entry("three"))).unwrap();
        assert_eq!(reasons(scan(&log, &mut pos).unwrap()), ["two", "three"]);
        assert!(scan(&log, &mut pos).unwrap().is_empty(), "nothing twice");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error_not_a_silent_stop() {
        assert!(parse_events(b"{\n  garbage", 0).is_err());
    }
}
