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
    let uid = if geteuid().is_root() {
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
    let user = User::from_uid(uid)
        .map_err(|e| format!("cannot look up uid {uid}: {e}"))?
        .ok_or_else(|| format!("uid {uid} has no account"))?;
    if geteuid().is_root() {
        if let Some(named) = env::var_os("SUDO_USER") {
            if named != OsString::from(&user.name) {
                return Err(format!(
                    "SUDO_USER {named:?} does not match SUDO_UID {uid} ({})",
                    user.name
                ));
            }
        }
    }
    Ok(Caller {
        user: user.name,
        uid: uid.as_raw(),
    })
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
