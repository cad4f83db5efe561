//! The webhook list: a root-only TOML file (`[alerts] webhooks_file`), read by `gateway notify`
//! and `gateway alert test`, never by a request.
//!
//! ```toml
//! [[webhook]]
//! name = "ops-discord"          # shown in reports and kept in the spool; the URL never is
//! kind = "discord"              # discord | slack | json
//! url = "https://discord.com/api/webhooks/ID/TOKEN"
//! headers = { Authorization = "Bearer ..." }   # optional, json webhooks
//! ```
//!
//! A webhook URL is a credential: whoever has it can post to the channel. So the file must be
//! root's alone (no group or other access), and no message this module produces quotes a URL,
//! a header value, or the TOML text around an error.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use serde::Deserialize;

use crate::trust;

const MAX_FILE_BYTES: u64 = 64 * 1024;
const KEYS: &[&str] = &[
    "webhook", "name", "kind", "url", "headers", "discord", "slack", "json",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Discord,
    Slack,
    Json,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Discord => "discord",
            SinkKind::Slack => "slack",
            SinkKind::Json => "json",
        }
    }
}

/// One webhook. `Debug` leaves the secret parts out.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sink({} {})", self.name, self.kind.as_str())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    webhook: Vec<RawSink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    kind: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Why the list cannot be used. None of these strings contains a URL or a header value.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhooksError {
    /// The file does not exist: alerts wait in the spool until it does.
    Missing,
    Unusable(String),
}

impl fmt::Display for WebhooksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhooksError::Missing => f.write_str("the file does not exist"),
            WebhooksError::Unusable(s) => f.write_str(s),
        }
    }
}

/// A TOML error message with every quoted fragment that is not a known key blanked out, so a
/// misplaced URL cannot leak through it.
fn redact(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(['`', '"']) {
        let q = rest.as_bytes()[i] as char;
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(q) {
            Some(j) => {
                let inner = &after[..j];
                if KEYS.contains(&inner) {
                    out.push_str(&format!("{q}{inner}{q}"));
                } else {
                    out.push_str(&format!("{q}...{q}"));
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str("...");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.lines().next().unwrap_or("").trim().to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn loopback(url: &url::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Parses the file's text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Sink>, WebhooksError> {
    let bad = |s: String| WebhooksError::Unusable(format!("{file}: {s}"));
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!("line {}: ", line_of(text, s.start)))
            .unwrap_or_default();
        bad(format!("{at}{}", redact(e.message())))
    })?;
    let mut sinks: Vec<Sink> = Vec::new();
    for (i, r) in raw.webhook.into_iter().enumerate() {
        let n = i + 1;
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(bad(format!(
                "webhook {n}: name must be 1-64 letters, digits, '.', '_' or '-'"
            )));
        }
        let name = r.name;
        if sinks.iter().any(|s| s.name == name) {
            return Err(bad(format!("webhook {name:?} is listed twice")));
        }
        let kind = match r.kind.as_str() {
            "discord" => SinkKind::Discord,
            "slack" => SinkKind::Slack,
            "json" => SinkKind::Json,
            _ => {
                return Err(bad(format!(
                    "webhook {name:?}: kind must be discord, slack or json"
                )))
            }
        };
        let url = url::Url::parse(&r.url)
            .map_err(|_| bad(format!("webhook {name:?}: url is not a valid URL")))?;
        let secure = url.scheme() == "https" || (url.scheme() == "http" && loopback(&url));
        if !secure || url.host().is_none() {
            return Err(bad(format!(
                "webhook {name:?}: url must use https (plain http only to a loopback address)"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(format!(
                "webhook {name:?}: put credentials in headers, not in the url"
            )));
        }
        for (k, v) in &r.headers {
            let valid = ureq::http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                && ureq::http::HeaderValue::from_str(v).is_ok();
            if !valid {
                return Err(bad(format!(
                    "webhook {name:?}: header {:?} is not a valid HTTP header",
                    redact(&format!("`{k}`"))
                )));
            }
        }
        sinks.push(Sink {
            name,
            kind,
            url,
            headers: r.headers.into_iter().collect(),
        });
    }
    Ok(sinks)
}

/// Reads the list from `path`, which root alone may read or change.
pub fn load(path: &Path) -> Result<Vec<Sink>, WebhooksError> {
    let shown = path.display().to_string();
    let bad = |s: String| WebhooksError::Unusable(format!("{shown}: {s}"));
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(WebhooksError::Missing),
        Err(e) => return Err(bad(format!("cannot inspect: {e}"))),
        Ok(_) => {}
    }
    trust::resolve_locked(path).map_err(|e| bad(format!("refused: {e}")))?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| bad(format!("cannot open: {e}")))?;
    let md = file
        .metadata()
        .map_err(|e| bad(format!("cannot inspect: {e}")))?;
    if !md.is_file() || md.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "must be a regular file only root can read (chmod 600); it is mode {:04o}",
            md.mode() & 0o7777
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(bad(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| bad("not valid UTF-8".into()))?;
    parse(&shown, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-T0KEN";

    #[test]
    fn webhook_file_table() {
        // (file text, Ok(number of webhooks) or Err(fragment), why)
        let rows: &[(String, Result<usize, &str>, &str)] = &[
            (
                format!("[[webhook]]\nname = \"d\"\nkind = \"discord\"\nurl = \"https://discord.com/api/webhooks/1/{SECRET}\"\n"),
                Ok(1),
                "a Discord webhook over https",
            ),
            (
                format!("[[webhook]]\nname = \"t\"\nkind = \"json\"\nurl = \"http://127.0.0.1:18001/{SECRET}\"\nheaders = {{ Authorization = \"Bearer x\" }}\n"),
                Ok(1),
                "plain http is fine to a loopback receiver, with headers",
            ),
            (String::new(), Ok(0), "an empty file lists no webhook"),
            (
                format!("[[webhook]]\nname = \"d\"\nkind = \"discord\"\nurl = \"http://discord.com/{SECRET}\"\n"),
                Err("url must use https"),
                "plain http to another host would send the secret in clear",
            ),
            (
                format!("[[webhook]]\nname = \"d\"\nkind = \"teams\"\nurl = \"https://x/{SECRET}\"\n"),
                Err("kind must be discord, slack or json"),
                "unknown formats are refused",
            ),
            (
                format!("[[webhook]]\nname = \"d\"\nkind = \"json\"\nurl = \"https://u:{SECRET}@x/\"\n"),
                Err("not in the url"),
                "credentials in the URL would be logged by proxies",
            ),
            (
                format!("[[webhook]]\nname = [\"https://x/{SECRET}\"]\nkind = \"json\"\nurl = \"https://x\"\n"),
                Err("line 2"),
                "a TOML error names the line, never the text",
            ),
            (
                format!("[[webhook]]\nname = \"d\"\nkind = \"json\"\nurl = \"https://x\"\nurl2 = \"{SECRET}\"\n"),
                Err("unknown field"),
                "typos are refused",
            ),
            (
                format!("url = \"https://x/{SECRET}\n"),
                Err("line 1"),
                "even an unterminated string does not leak",
            ),
        ];
        for (text, want, why) in rows {
            match (parse("w.toml", text), want) {
                (Ok(s), Ok(n)) => assert_eq!(s.len(), *n, "{why}"),
                (Err(e), Err(frag)) => {
                    let e = e.to_string();
                    assert!(e.contains(frag), "{why}: {e}");
                    assert!(!e.contains(SECRET), "{why}: the secret leaked: {e}");
                }
                (got, _) => panic!("{why}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn debug_output_hides_the_url() {
        let s = parse(
            "w",
            &format!("[[webhook]]\nname = \"d\"\nkind = \"slack\"\nurl = \"https://h/{SECRET}\"\n"),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains(SECRET));
    }
}
