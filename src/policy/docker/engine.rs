//! The one question the gateway asks the Docker engine: what a named volume really is.
//!
//! `docker volume create --opt type=none --opt o=bind --opt device=/ x` makes a volume named `x`
//! that mounts the host's `/`, so `-v x:/data` is a bind mount in disguise. Before allowing a
//! named volume the rule asks the engine (`GET /volumes/NAME`, HTTP/1.0 over the unix socket) and
//! refuses when the volume exists with options or another driver, or when the engine cannot be
//! asked. Every docker rule pins `DOCKER_HOST` to this socket, so the CLI talks to the engine
//! that was asked.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The engine's API socket; the docker CLI is pinned to it through `DOCKER_HOST`.
pub const SOCKET: &str = "/var/run/docker.sock";
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RESPONSE: u64 = 1 << 20;

/// What a named volume is, as far as the host's filesystem is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// Not there yet: `docker run` creates a plain local volume.
    Missing,
    /// A local-driver volume without options: a directory under the engine's data root.
    Plain,
    /// Anything else, with what it is.
    Other(String),
}

/// Asks the engine about volume `name` (already checked to be a plain volume name).
pub fn volume(name: &str) -> Result<Volume, String> {
    let (status, body) = get(&format!("/volumes/{name}"))?;
    match status {
        404 => Ok(Volume::Missing),
        200 => classify(&body),
        other => Err(format!("the engine answered HTTP {other}")),
    }
}

fn classify(body: &[u8]) -> Result<Volume, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable engine answer: {e}"))?;
    let driver = v.get("Driver").and_then(|d| d.as_str()).unwrap_or("");
    if driver != "local" {
        return Ok(Volume::Other(format!(
            "it uses the volume driver {driver:?}, not \"local\""
        )));
    }
    match v.get("Options") {
        None | Some(serde_json::Value::Null) => Ok(Volume::Plain),
        Some(serde_json::Value::Object(o)) if o.is_empty() => Ok(Volume::Plain),
        Some(o) => Ok(Volume::Other(format!(
            "it was created with driver options {o} (type/o/device options can bind-mount a host path)"
        ))),
    }
}

/// One HTTP/1.0 GET; the engine closes the connection after answering.
fn get(path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = UnixStream::connect(SOCKET)
        .map_err(|e| format!("cannot reach the docker engine at {SOCKET}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
        .map_err(|e| format!("cannot ask the docker engine: {e}"))?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(|e| format!("no answer from the docker engine: {e}"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("a truncated answer from the docker engine")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("an answer from the docker engine without an HTTP status")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        return Err("the docker engine answered in chunks to an HTTP/1.0 request".into());
    }
    Ok((status, raw[split + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_classified_by_driver_and_options() {
        let rows: &[(&str, Option<Volume>, &str)] = &[
            (
                r#"{"Name":"a","Driver":"local","Options":null}"#,
                Some(Volume::Plain),
                "created by docker run: no options",
            ),
            (
                r#"{"Name":"a","Driver":"local","Options":{}}"#,
                Some(Volume::Plain),
                "created by docker volume create without --opt",
            ),
            (
                r#"{"Name":"a","Driver":"local","Options":{"device":"/","o":"bind","type":"none"}}"#,
                None,
                "a bind of / in disguise",
            ),
            (
                r#"{"Name":"a","Driver":"local","Options":{"type":"tmpfs"}}"#,
                None,
                "any option is refused: an allowlist of options would be a denylist of mounts",
            ),
            (
                r#"{"Name":"a","Driver":"sshfs","Options":null}"#,
                None,
                "a plugin driver",
            ),
            (r#"{"Name":"a"}"#, None, "no driver at all"),
        ];
        for (body, want, why) in rows {
            let got = classify(body.as_bytes()).unwrap();
            match want {
                Some(w) => assert_eq!(&got, w, "{why}"),
                None => assert!(matches!(got, Volume::Other(_)), "{why}: {got:?}"),
            }
        }
        assert!(classify(b"not json").is_err());
    }

    #[test]
    fn responses_are_split_at_the_blank_line() {
        let (s, b) =
            parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n{\"message\":\"x\"}").unwrap();
        assert_eq!((s, b.as_slice()), (404, &b"{\"message\":\"x\"}"[..]));
        assert!(parse_response(b"HTTP/1.0 200 OK\r\n").is_err(), "truncated");
        assert!(parse_response(b"garbage\r\n\r\n").is_err(), "no status");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n").is_err()
        );
    }
}
