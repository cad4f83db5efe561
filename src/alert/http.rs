//! One POST to one webhook, and what its answer means for the next attempt.
//!
//! ureq (blocking, rustls with the ring provider, the system's trust store); no redirects,
//! no proxy from the environment, short timeouts. Error text is built here from the error's
//! kind and its cause with the URL taken out, so it can be printed and logged.
//!
//! ureq rather than reqwest: the same rustls stack without tokio and hyper, which were half of
//! the binary and a large part of what every request's start-up relocates (README, Performance).
#![forbid(unsafe_code)]

use std::io::{self, Read};
use std::time::Duration;

use serde_json::Value;
use ureq::http::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::webhooks::Sink;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A 429 without a usable wait: this long.
const DEFAULT_RETRY_MS: u64 = 5_000;
/// A wait longer than this is not believed.
const MAX_RETRY_MS: u64 = 3_600_000;
const MAX_BODY_BYTES: u64 = 64 * 1024;

/// What one attempt means for the webhook and for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx. `pause_ms`: the webhook said its rate-limit bucket is empty; wait before the next.
    Delivered { status: u16, pause_ms: Option<u64> },
    /// 429: nothing goes to this webhook for `wait_ms`; the message is sent again after.
    RateLimited { wait_ms: u64 },
    /// No answer, a server error, or a webhook that no longer exists: the webhook backs off as
    /// a whole.
    Unreachable(String),
    /// Another 3xx/4xx (400, 413, ...): this message is refused; others may still pass.
    Refused(u16),
}

impl Outcome {
    /// For reports: "HTTP 204", "connection refused", ... (never a URL).
    pub fn describe(&self) -> String {
        match self {
            Outcome::Delivered { status, .. } => format!("delivered (HTTP {status})"),
            Outcome::RateLimited { wait_ms } => {
                format!(
                    "rate limited (HTTP 429), retry after {:.1} s",
                    *wait_ms as f64 / 1000.0
                )
            }
            Outcome::Unreachable(why) => format!("not delivered: {why}"),
            Outcome::Refused(status) => format!("refused (HTTP {status})"),
        }
    }
}

pub struct Client {
    agent: Agent,
}

impl Default for Client {
    /// Nothing here can fail: the trust store and the connection are met at the first send,
    /// and a failure there is that send's outcome.
    fn default() -> Client {
        // rustls is built without a provider of its own; ring keeps the build light.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::PlatformVerifier)
            .build();
        let agent = Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            // A redirect is answered like any other refusal; the status is what counts.
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .user_agent(concat!("gateway/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent();
        Client { agent }
    }
}

impl Client {
    pub fn send(&self, sink: &Sink, payload: &Value) -> Outcome {
        let body = serde_json::to_vec(payload).unwrap_or_default();
        let mut req = self
            .agent
            .post(sink.url.as_str())
            .header(CONTENT_TYPE, "application/json");
        for (k, v) in &sink.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send(&body[..]) {
            Ok(resp) => classify(resp),
            Err(e) => Outcome::Unreachable(scrub(&describe_error(&e), sink)),
        }
    }
}

fn classify(mut resp: Response<Body>) -> Outcome {
    let status = resp.status().as_u16();
    match status {
        200..=299 => Outcome::Delivered {
            status,
            pause_ms: bucket_empty(resp.headers()),
        },
        429 => {
            let mut text = Vec::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(MAX_BODY_BYTES)
                .read_to_end(&mut text);
            Outcome::RateLimited {
                wait_ms: retry_after_ms(resp.headers(), &text),
            }
        }
        500..=599 => Outcome::Unreachable(format!("HTTP {status}")),
        // The webhook itself is gone or refuses us (deleted, wrong token): no message can pass.
        401 | 403 | 404 | 410 => Outcome::Unreachable(format!(
            "HTTP {status} (the webhook was deleted, or its URL is wrong)"
        )),
        _ => Outcome::Refused(status),
    }
}

fn seconds_ms(s: &str) -> Option<u64> {
    let f: f64 = s.trim().parse().ok()?;
    (f.is_finite() && f >= 0.0).then(|| (f * 1000.0).ceil() as u64)
}

/// How long a 429 asks to wait: the larger of the `Retry-After` header (seconds) and Discord's
/// JSON `retry_after` (seconds, fractional), capped at an hour; 5 s when neither is usable.
pub fn retry_after_ms(headers: &HeaderMap, body: &[u8]) -> u64 {
    let header = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(seconds_ms);
    let json = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after").cloned())
        .and_then(|v| v.as_f64())
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| (f * 1000.0).ceil() as u64);
    match (header, json) {
        (None, None) => DEFAULT_RETRY_MS,
        (h, j) => h.unwrap_or(0).max(j.unwrap_or(0)).min(MAX_RETRY_MS),
    }
}

/// Discord's `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After`: the bucket is empty.
fn bucket_empty(headers: &HeaderMap) -> Option<u64> {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if get("x-ratelimit-remaining")?.trim() != "0" {
        return None;
    }
    get("x-ratelimit-reset-after")
        .and_then(seconds_ms)
        .map(|ms| ms.min(MAX_RETRY_MS))
}

fn describe_error(e: &ureq::Error) -> String {
    use ureq::Error as E;
    let what = match e {
        E::Timeout(_) => "timed out",
        E::HostNotFound | E::ConnectionFailed | E::Rustls(_) | E::Tls(_) => "cannot connect",
        E::Io(io) if refused(io) || tls_failed(io) => "cannot connect",
        _ => "request failed",
    };
    let cause = match e {
        E::Io(io) => io.to_string(),
        E::Timeout(phase) => format!("while waiting to {}", phase_of(phase)),
        E::HostNotFound => "host not found".into(),
        E::ConnectionFailed => String::new(),
        other => other.to_string(),
    };
    if cause.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {cause}")
    }
}

fn phase_of(t: &ureq::Timeout) -> String {
    use ureq::Timeout as T;
    match t {
        T::Resolve => "resolve the host".into(),
        T::Connect => "connect".into(),
        T::SendRequest | T::SendBody => "send the request".into(),
        T::RecvResponse | T::RecvBody => "receive the answer".into(),
        other => format!("finish ({other})"),
    }
}

/// A TLS handshake that failed (an untrusted certificate, say): no secure connection.
fn tls_failed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// The socket errors that mean nobody answered at that address.
fn refused(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::AddrNotAvailable
            | K::NotConnected
    )
}

/// Takes the URL, its path and its host out of a message, in case a library quoted them.
fn scrub(text: &str, sink: &Sink) -> String {
    let mut t = text.replace(sink.url.as_str(), "<url>");
    let path = sink.url.path();
    if path.len() > 1 {
        t = t.replace(path, "<path>");
    }
    if let Some(q) = sink.url.query() {
        t = t.replace(q, "<query>");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::HeaderValue;

    #[test]
    fn retry_after_table() {
        // (Retry-After header, body, expected ms, why)
        let rows: &[(Option<&str>, &str, u64, &str)] = &[
            (
                None,
                r#"{"message":"You are being rate limited.","retry_after":1.234,"global":false}"#,
                1234,
                "Discord's JSON body, fractional seconds",
            ),
            (
                Some("2"),
                "",
                2000,
                "the standard header in seconds (Slack)",
            ),
            (
                Some("1"),
                r#"{"retry_after":1.5}"#,
                1500,
                "both: the longer wait wins",
            ),
            (
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                "",
                5000,
                "an HTTP date is not trusted: the default",
            ),
            (None, "not json", 5000, "nothing usable: the default"),
            (
                Some("999999"),
                "",
                3_600_000,
                "absurd waits are capped at an hour",
            ),
            (
                None,
                r#"{"retry_after":-3}"#,
                5000,
                "negative waits are ignored",
            ),
        ];
        for (header, body, want, why) in rows {
            let mut h = HeaderMap::new();
            if let Some(v) = header {
                h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(retry_after_ms(&h, body.as_bytes()), *want, "{why}");
        }
    }

    #[test]
    fn errors_read_as_what_happened_without_the_url() {
        use ureq::Error as E;
        let io = |kind| E::Io(io::Error::new(kind, "os says no"));
        let tls = E::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        // (error, expected text, why)
        let rows: Vec<(E, &str, &str)> = vec![
            (
                io(io::ErrorKind::ConnectionRefused),
                "cannot connect: os says no",
                "nobody listens",
            ),
            (
                io(io::ErrorKind::NetworkUnreachable),
                "cannot connect: os says no",
                "no route",
            ),
            (
                tls,
                "cannot connect: invalid peer certificate: UnknownIssuer",
                "TLS",
            ),
            (
                E::Timeout(ureq::Timeout::Connect),
                "timed out: while waiting to connect",
                "a blackholed address",
            ),
            (
                E::Timeout(ureq::Timeout::Global),
                "timed out: while waiting to finish (global)",
                "the total budget",
            ),
            (E::HostNotFound, "cannot connect: host not found", "DNS"),
            (
                io(io::ErrorKind::UnexpectedEof),
                "request failed: os says no",
                "the server hung up mid-answer",
            ),
        ];
        for (e, want, why) in rows {
            assert_eq!(describe_error(&e), want, "{why}");
        }
    }

    #[test]
    fn an_empty_discord_bucket_pauses_the_webhook() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset-after", HeaderValue::from_static("0.75"));
        assert_eq!(bucket_empty(&h), Some(750));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("3"));
        assert_eq!(bucket_empty(&h), None);
    }
}
