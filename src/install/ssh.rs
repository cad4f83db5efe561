//! The SSH side of an install: key lines with the forced command, and the sshd drop-in that makes
//! sshd read them from a root-owned file.
//!
//! Why not rewrite `~/.ssh/authorized_keys` in place: the user owns the home directory, so a user
//! who ever gets to write a file there could rename `.ssh` away and bring their own keys. The
//! drop-in's `Match User` block points `AuthorizedKeysFile` at `/etc/gateway/authorized_keys/%u`
//! (root-owned) and adds `ForceCommand`, so even a key line without the `command=` option runs only
//! the gateway. The user's own file is never touched: uninstall removes the drop-in and the old
//! keys work as before.
#![forbid(unsafe_code)]

use crate::pipeline::GATEWAY_PATH;

pub const KEYS_DIR: &str = "/etc/gateway/authorized_keys";
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/00-gateway.conf";

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// Options of an existing key line that only narrow what the key may do; everything else
/// (`command=`, `environment=`, `permitopen=`, `pty`, `port-forwarding`...) is dropped.
const KEPT_OPTIONS: &[&str] = &["from", "expiry-time"];

/// A public key ready to be written with the gateway's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kept_options: Vec<String>,
    pub kind: String,
    pub blob: String,
    pub comment: String,
}

impl Key {
    pub fn line(&self) -> String {
        let mut opts = vec![
            "restrict".to_string(),
            format!("command=\"{GATEWAY_PATH} ssh\""),
        ];
        opts.extend(self.kept_options.iter().cloned());
        let mut l = format!("{} {} {}", opts.join(","), self.kind, self.blob);
        if !self.comment.is_empty() {
            l.push(' ');
            l.push_str(&self.comment);
        }
        l
    }
}

/// Splits the options field of a key line (`a,b="x,y",c`), honouring quotes.
fn split_options(s: &str) -> Result<(Vec<String>, &str), String> {
    let b = s.as_bytes();
    let mut opts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                opts.push(s[start..i].to_string());
                start = i + 1;
            }
            b' ' | b'\t' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err("unbalanced quotes in the options".into());
    }
    opts.push(s[start..i].to_string());
    Ok((opts, s[i..].trim_start()))
}

/// Parses an authorized_keys text. Returns the keys and a note for each line or option dropped.
pub fn parse_keys(text: &str) -> (Vec<Key>, Vec<String>) {
    let mut keys = Vec::new();
    let mut notes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let first = l.split_whitespace().next().unwrap_or("");
        let (options, rest) = if KEY_TYPES.contains(&first) {
            (Vec::new(), l)
        } else {
            match split_options(l) {
                Ok(x) => x,
                Err(e) => {
                    notes.push(format!("line {}: skipped: {e}", n + 1));
                    continue;
                }
            }
        };
        let mut words = rest.splitn(3, [' ', '\t']);
        let kind = words.next().unwrap_or("");
        let blob = words.next().unwrap_or("");
        let comment: String = words
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        if !KEY_TYPES.contains(&kind) {
            notes.push(format!(
                "line {}: skipped: unknown key type {kind:?}",
                n + 1
            ));
            continue;
        }
        let blob_ok = !blob.is_empty()
            && blob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if !blob_ok {
            notes.push(format!("line {}: skipped: the key is not base64", n + 1));
            continue;
        }
        let mut kept = Vec::new();
        for o in options {
            let name = o.split('=').next().unwrap_or("").to_ascii_lowercase();
            if KEPT_OPTIONS.contains(&name.as_str()) && o.contains("=\"") && o.ends_with('"') {
                kept.push(o);
            } else {
                notes.push(format!("line {}: option {o:?} dropped", n + 1));
            }
        }
        keys.push(Key {
            kept_options: kept,
            kind: kind.to_string(),
            blob: blob.to_string(),
            comment,
        });
    }
    (keys, notes)
}

/// The root-owned authorized_keys file for one user.
pub fn render_keys(user: &str, keys: &[Key]) -> String {
    let mut s = format!(
        "# {user}: keys that reach only `{GATEWAY_PATH} ssh`. Written by gateway install;\n\
         # sshd reads this file instead of ~{user}/.ssh/authorized_keys (see {SSHD_DROPIN}).\n"
    );
    for k in keys {
        s.push_str(&k.line());
        s.push('\n');
    }
    s
}

/// The sshd drop-in for the SSH users. `Match` in an included file ends with that file (checked
/// with OpenSSH 9.2), and the `00-` name puts it before other drop-ins: sshd keeps the first value
/// it reads for a keyword.
pub fn render_dropin(users: &[String]) -> String {
    format!(
        "# Written by gateway install, removed by gateway uninstall. The gateway's SSH users get\n\
         # only the gateway: keys from a root-owned file, a forced command, no forwarding, no pty,\n\
         # no ~/.ssh/rc.\n\
         Match User {}\n\
         \tAuthorizedKeysFile {KEYS_DIR}/%u\n\
         \tAuthorizedKeysCommand none\n\
         \tForceCommand {GATEWAY_PATH} ssh\n\
         \tDisableForwarding yes\n\
         \tPermitTTY no\n\
         \tPermitUserRC no\n\
         \tPermitTunnel no\n",
        users.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_key_lines_get_the_forced_command_and_keep_only_narrowing_options() {
        // (line, expected key line or None when skipped, why)
        let table: &[(&str, Option<&str>, &str)] = &[
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc agent@host",
                Some("restrict,command=\"/usr/local/bin/gateway ssh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc agent@host"),
                "a plain key gets restrict and the forced command",
            ),
            (
                "command=\"/bin/bash\",no-pty,environment=\"X=1\" ssh-rsa AAAAB3Nza== k",
                Some("restrict,command=\"/usr/local/bin/gateway ssh\" ssh-rsa AAAAB3Nza== k"),
                "an old forced command and widening options are dropped",
            ),
            (
                "from=\"10.0.0.0/8,192.168.1.1\",pty ssh-ed25519 AAAA",
                Some("restrict,command=\"/usr/local/bin/gateway ssh\",from=\"10.0.0.0/8,192.168.1.1\" ssh-ed25519 AAAA"),
                "from= narrows who may use the key, so it stays (its comma inside quotes too)",
            ),
            ("ssh-ed25519 AAA$(id)", None, "a blob that is not base64 is refused"),
            ("bogus-type AAAA", None, "an unknown key type is refused"),
            ("command=\"x ssh-ed25519 AAAA", None, "unbalanced quotes are refused"),
        ];
        for (line, want, why) in table {
            let (keys, _) = parse_keys(line);
            assert_eq!(keys.first().map(Key::line).as_deref(), *want, "{why}");
        }
    }

    #[test]
    fn comments_and_blank_lines_are_not_keys() {
        let (keys, notes) = parse_keys("# hello\n\n  \nssh-ed25519 AAAA c\n");
        assert_eq!(keys.len(), 1);
        assert!(notes.is_empty());
    }
}
