//! The only reader of the process environment: who is asking, through which door, and what.
//!
//! `SUDO_UID` is believed only when the gateway runs as root (sudo set it; a user cannot make a
//! root process). Everything else a caller can set is read as data, never as an option.
#![forbid(unsafe_code)]

use std::env;
use std::ffi::OsString;

use nix::unistd::{geteuid, getuid, Uid, User};

#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub uid: u32,
}

/// The account the request is made for.
pub fn caller() -> Result<Caller, String> {
    let root = geteuid().is_root();
    let uid = if root {
        match env::var_os("SUDO_UID") {
            Some(v) => {
                let text = v.to_str().ok_or("SUDO_UID is not text")?;
                Uid::from_raw(
                    text.parse::<u32>()
                        .map_err(|_| format!("SUDO_UID {text:?} is not a uid"))?,
                )
            }
            None => getuid(),
        }
    } else {
        getuid()
    };
    let name = match passwd_name(uid.as_raw()) {
        Some(name) => name,
        None => {
            User::from_uid(uid)
                .map_err(|e| format!("cannot look up uid {uid}: {e}"))?
                .ok_or_else(|| format!("uid {uid} has no account"))?
                .name
        }
    };
    if root {
        if let Some(named) = env::var_os("SUDO_USER") {
            if named != OsString::from(&name) {
                return Err(format!(
                    "SUDO_USER {named:?} does not match SUDO_UID {uid} ({name})"
                ));
            }
        }
    }
    Ok(Caller {
        user: name,
        uid: uid.as_raw(),
    })
}

const PASSWD: &str = "/etc/passwd";
/// Larger than any real /etc/passwd; entries past it are left to the C library.
const MAX_PASSWD_BYTES: u64 = 4 << 20;
const PASSWD_FIRST_READ: usize = 4 << 10;

/// The first name `/etc/passwd` gives `uid`, read the way the C library's `files` source
/// reads it. Nothing found (or no readable file) means the caller asks the C library, which
/// also knows the directory services. Either answer must still match `SUDO_USER`, so the two
/// cannot disagree into an allow. Reading the file here spares each request the C library's
/// allocator start-up and stdio, its largest single cost (see README, Performance).
fn passwd_name(uid: u32) -> Option<String> {
    use std::io::Read;
    let file = crate::system::open_read(std::path::Path::new(PASSWD)).ok()?;
    // `take` hides the file's size from `read_to_string`, which would then start with a
    // 32-byte read and double it: seven reads for a 2 kB file. One page covers a usual file.
    let mut text = String::with_capacity(PASSWD_FIRST_READ);
    file.take(MAX_PASSWD_BYTES).read_to_string(&mut text).ok()?;
    passwd_lookup(&text, uid).map(str::to_string)
}

fn passwd_lookup(text: &str, uid: u32) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let found = fields.next()?.parse::<u32>().ok()? == uid;
        // name:password:uid:gid:gecos:home:shell; a line short of that is not an entry.
        (found && fields.count() == 4 && valid_name(name)).then_some(name)
    })
}

/// Compat (`+`/`-`) lines and blank names are not accounts of the `files` source.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(['+', '-'])
}

pub fn is_root() -> bool {
    geteuid().is_root()
}

/// `SSH_ORIGINAL_COMMAND`: `None` when the client sent no command. Bytes that are not UTF-8 are
/// kept visible (lossy) so the split refuses them with a clear message.
pub fn ssh_command() -> Option<String> {
    env::var_os("SSH_ORIGINAL_COMMAND").map(|v| match v.into_string() {
        Ok(s) => s,
        Err(raw) => raw.to_string_lossy().into_owned(),
    })
}

/// The client's address and port from `SSH_CONNECTION`, reduced to the characters an address
/// can contain. Audit metadata only: nothing is decided on it.
pub fn ssh_client() -> Option<String> {
    let v = env::var("SSH_CONNECTION").ok()?;
    let mut parts = v.split(' ');
    let (addr, port) = (parts.next()?, parts.next()?);
    let clean = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '%'))
            .take(64)
            .collect::<String>()
    };
    Some(format!("{} {}", clean(addr), clean(port)))
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::passwd_lookup;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
+nisuser::1500:1500:::
:x:1600:1600::/:/bin/sh
short:x:1700:1700
toor:x:0:0:second root:/root:/bin/sh
ai-worker:x:1001:1001:AI agent,,,:/home/ai-worker:/bin/sh
spaces:x: 1002:1002::/:/bin/sh
empty:x::1003::/:/bin/sh
vastai_kaalia:x:1004:1004::/var/lib/vastai_kaalia:/usr/sbin/nologin
";

    #[test]
    fn the_first_entry_for_a_uid_names_it() {
        assert_eq!(passwd_lookup(PASSWD, 0), Some("root"));
        assert_eq!(passwd_lookup(PASSWD, 1001), Some("ai-worker"));
        assert_eq!(passwd_lookup(PASSWD, 1004), Some("vastai_kaalia"));
    }

    #[test]
    fn lines_that_are_not_entries_name_nobody() {
        // Compat lines, a blank name, a short line, a uid with a space or none at all: the C
        // library is asked instead, and its answer must still match SUDO_USER.
        for uid in [1500, 1600, 1700, 1002, 1003, 4242] {
            assert_eq!(passwd_lookup(PASSWD, uid), None, "uid {uid}");
        }
        assert_eq!(passwd_lookup("", 0), None);
        assert_eq!(
            passwd_lookup("root:x:0:0:root:/root:/bin/sh:extra\n", 0),
            None
        );
    }
}
