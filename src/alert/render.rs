//! A message body as each webhook wants it: a Discord embed, Slack blocks, or plain JSON.
//!
//! Everything in an alert that a caller typed (argv, SSH command, reasons that quote them, file
//! contents in diffs) is untrusted text: control and invisible characters are shown escaped,
//! markdown is escaped outside code blocks, code fences cannot be closed early, and mentions are
//! switched off, so a request cannot ping `@everyone` or fake a link in the operator's channel.
#![forbid(unsafe_code)]

use serde_json::{json, Value};

use super::plan::{Body, Form};
use super::webhooks::SinkKind;
use super::{rfc3339_ms, Alert, Kind};
use crate::argv::split::is_invisible;

// Discord's documented embed limits.
const DISCORD_TITLE: usize = 256;
const DISCORD_DESCRIPTION: usize = 4096;
const DISCORD_FIELD: usize = 1024;
// Slack's limit for a section block's text.
const SLACK_SECTION: usize = 3000;

pub fn payload(kind: SinkKind, body: &Body) -> Value {
    match kind {
        SinkKind::Discord => discord(body),
        SinkKind::Slack => slack(body),
        SinkKind::Json => generic(body),
    }
}

/// Control and invisible characters as visible escapes (`\n`, `\u{202e}`).
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible(c) || c == '\u{feff}' || c == '\u{ad}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Like `visible`, but keeps line breaks (diffs are multi-line).
fn visible_lines(s: &str) -> String {
    s.split('\n').map(visible).collect::<Vec<_>>().join("\n")
}

/// Untrusted text shown as Discord/Slack markdown: escaped, on one line.
fn md(s: &str) -> String {
    let mut out = String::new();
    for c in visible(s).chars() {
        if "\\*_~`|>[]()<#@".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text inside a code block: a run of three backticks would end it, so it is broken up.
fn fenced(lang: &str, s: &str, max: usize) -> String {
    let inner = s.replace("```", "`\u{200b}``");
    let budget = max.saturating_sub(lang.len() + 9);
    format!("```{lang}\n{}\n```", cut(&inner, budget))
}

/// At most `max` characters, marked when shortened.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(6)).collect();
    t.push_str(" [...]");
    t
}

fn window_words(seconds: u64) -> String {
    match seconds {
        60 => "minute".into(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "second".into(),
        s => format!("{s} seconds"),
    }
}

/// The headline, the same for every webhook format.
pub fn title(b: &Body) -> String {
    let a = &b.sample;
    let user = a.user.as_deref().unwrap_or("?");
    let t = match b.form {
        Form::Test => "Test message from gateway: alerts reach this channel".to_string(),
        Form::Summary => format!(
            "{} more {} of the same kind in the last {}",
            b.count,
            a.kind.plural(),
            window_words(b.window_seconds)
        ),
        Form::Overflow => format!(
            "{} more alerts of other kinds in the last {} (message limit reached)",
            b.count,
            window_words(b.window_seconds)
        ),
        Form::Dropped => format!(
            "{} alerts not kept: the spool was full (counted here; the audit log has each)",
            b.count
        ),
        Form::Single => match a.kind {
            Kind::Deny => format!("Denied: {user} via {}", a.channel.as_deref().unwrap_or("?")),
            Kind::WouldDeny => format!("Audit mode: the rules deny this, and it ran: {user}"),
            Kind::SudoDeny => format!("sudo refused {user}"),
            Kind::Watch => format!("Changed: {}", a.path.as_deref().unwrap_or("?")),
            Kind::Notice => format!("gateway: {}", a.reason),
        },
    };
    visible(&t)
}

fn color(kind: Kind) -> u32 {
    match kind {
        Kind::Deny => 0xE74C3C,
        Kind::SudoDeny => 0xC0392B,
        Kind::WouldDeny => 0xE67E22,
        Kind::Watch => 0xF1C40F,
        Kind::Notice => 0x3498DB,
    }
}

/// (label, value, shown as code) for the facts of one alert.
fn facts(a: &Alert) -> Vec<(&'static str, String, bool)> {
    let mut f = vec![("Host", a.host.clone(), false)];
    if let Some(u) = &a.user {
        f.push(("User", u.clone(), false));
    }
    if let Some(c) = &a.channel {
        let mut c = c.clone();
        if let Some(client) = &a.ssh_client {
            c = format!("{c} from {client}");
        }
        f.push(("Channel", c, false));
    }
    if let Some(r) = &a.run_as {
        f.push(("Run as", r.clone(), false));
    }
    if let Some(line) = a.request_line() {
        f.push(("Command", line, true));
    }
    if let Some(argv) = &a.argv {
        if a.command.is_some() || argv.iter().any(|w| w.chars().any(|c| c.is_control())) {
            f.push((
                "argv",
                serde_json::to_string(argv).unwrap_or_default(),
                true,
            ));
        }
    }
    if let Some(p) = &a.path {
        f.push(("File", p.clone(), true));
    }
    if a.kind != Kind::Watch {
        f.push(("Reason", a.reason.clone(), false));
    }
    if let Some(r) = &a.rule {
        // On a deny, the rule is the one whose refusal is reported.
        f.push(("Refused by rule", r.clone(), false));
    }
    f.push(("Time", rfc3339_ms(a.unix_ms), false));
    f
}

/// The body text under the title: the diff, or the summary's details and tally.
fn description(b: &Body, max: usize, code: impl Fn(&str, &str, usize) -> String) -> String {
    let a = &b.sample;
    let mut parts: Vec<String> = Vec::new();
    match b.form {
        Form::Single | Form::Test => {
            if let (Kind::Watch, Some(diff)) = (a.kind, &a.diff) {
                parts.push(md(&a.reason));
                parts.push(code("diff", &visible_lines(diff), max.saturating_sub(200)));
            }
        }
        Form::Summary | Form::Overflow | Form::Dropped => {
            parts.push(if b.form == Form::Dropped {
                let mut lines = vec![format!(
                    "From {} to {}.",
                    rfc3339_ms(b.first_ms),
                    rfc3339_ms(b.last_ms)
                )];
                lines.extend(b.details.iter().map(|d| md(d)));
                lines.join("\n")
            } else {
                format!(
                    "From {} to {}; the latest is shown below.",
                    rfc3339_ms(b.first_ms),
                    rfc3339_ms(b.last_ms)
                )
            });
            if !b.tally.is_empty() {
                let lines: Vec<String> = b
                    .tally
                    .iter()
                    .map(|(who, n)| format!("{n} x {}", visible(who)))
                    .collect();
                parts.push(code("", &lines.join("\n"), 1000));
            }
            if !b.details.is_empty() && b.form != Form::Dropped {
                let mut text = b
                    .details
                    .iter()
                    .map(|d| visible_lines(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                if b.details_omitted > 0 {
                    text.push_str(&format!(
                        "\n... and {}{} more different ones",
                        if b.details_capped { "at least " } else { "" },
                        b.details_omitted
                    ));
                }
                let lang = if a.kind == Kind::Watch { "diff" } else { "" };
                let room = max.saturating_sub(parts.iter().map(|p| p.len()).sum::<usize>() + 200);
                parts.push(code(lang, &text, room));
            }
        }
    }
    if b.expired > 0 {
        parts.push(format!(
            "Note: {} older alert(s) expired undelivered (webhook unreachable too long).",
            b.expired
        ));
    }
    cut(&parts.join("\n"), max)
}

fn discord(b: &Body) -> Value {
    let a = &b.sample;
    let fields: Vec<Value> = facts(a)
        .into_iter()
        .map(|(name, value, code)| {
            let v = if value.is_empty() {
                // Discord refuses an embed with an empty field value.
                "-".to_string()
            } else if code {
                fenced("", &visible(&value), DISCORD_FIELD)
            } else {
                cut(&md(&value), DISCORD_FIELD)
            };
            json!({"name": name, "value": v, "inline": !code && name != "Reason"})
        })
        .collect();
    let mut embed = json!({
        "title": cut(&title(b), DISCORD_TITLE),
        "color": color(a.kind),
        "fields": fields,
        "timestamp": rfc3339_ms(a.unix_ms),
        "footer": {"text": format!("gateway · {}", a.kind.as_str())},
    });
    let d = description(b, DISCORD_DESCRIPTION, fenced);
    if !d.is_empty() {
        embed["description"] = Value::String(d);
    }
    json!({
        "username": "gateway",
        "content": Value::Null,
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

/// Slack mrkdwn needs only `&`, `<` and `>` escaped; `<...>` is how it spells links and mentions.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack(b: &Body) -> Value {
    let a = &b.sample;
    let head = slack_escape(&title(b));
    let facts: Vec<String> = facts(a)
        .into_iter()
        .map(|(name, value, code)| {
            let v = slack_escape(&visible(&value));
            if code {
                format!("*{name}:* ```{}```", v.replace("```", "`\u{200b}``"))
            } else {
                format!("*{name}:* {}", v.replace(['*', '_', '~', '`'], "\u{2022}"))
            }
        })
        .collect();
    let slack_code = |_lang: &str, s: &str, max: usize| {
        format!(
            "```{}```",
            cut(
                &slack_escape(s).replace("```", "`\u{200b}``"),
                max.saturating_sub(6)
            )
        )
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title(b), 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&facts.join("\n"), SLACK_SECTION)}}),
    ];
    let d = description(b, SLACK_SECTION, slack_code);
    if !d.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": d}}));
    }
    json!({"text": cut(&head, SLACK_SECTION), "blocks": blocks})
}

/// The generic webhook gets the facts as data: the body, plus a rendered title.
fn generic(b: &Body) -> Value {
    json!({
        "source": "gateway",
        "title": title(b),
        "form": b.form,
        "count": b.count,
        "window_seconds": b.window_seconds,
        "first": rfc3339_ms(b.first_ms),
        "last": rfc3339_ms(b.last_ms),
        "alert": &b.sample,
        "time": rfc3339_ms(b.sample.unix_ms),
        "details": &b.details,
        "details_omitted": b.details_omitted,
        "tally": &b.tally,
        "expired": b.expired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Alert {
        let mut a = Alert::new(
            Kind::Deny,
            1_795_358_225_000,
            "gpu-01".into(),
            "option \"-v\" value \"[x](http://evil)\" is not allowed".into(),
        );
        a.user = Some("ai-worker".into());
        a.channel = Some("ssh".into());
        a.command = Some("docker run -v /:/h @everyone ```\n<!channel> \u{202e}x".into());
        a.argv = Some(vec!["docker".into(), "run".into(), "@everyone".into()]);
        a
    }

    #[test]
    fn discord_embeds_carry_the_facts_and_no_live_markup() {
        let v = payload(SinkKind::Discord, &Body::single(&hostile(), 60));
        assert_eq!(
            v["allowed_mentions"]["parse"],
            json!([]),
            "mentions never ping"
        );
        let e = &v["embeds"][0];
        assert_eq!(e["title"], "Denied: ai-worker via ssh");
        let fields: Vec<(String, String)> = e["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().into(),
                    f["value"].as_str().unwrap().into(),
                )
            })
            .collect();
        let get = |n: &str| {
            fields
                .iter()
                .find(|f| f.0 == n)
                .map(|f| f.1.clone())
                .unwrap()
        };
        assert_eq!(get("Host"), "gpu-01");
        assert_eq!(get("Time"), "2026-11-22T14:37:05.000000Z");
        let cmd = get("Command");
        // The fence opens once and closes once: the caller's ``` is broken up.
        assert_eq!(cmd.matches("```").count(), 2, "{cmd}");
        assert!(cmd.contains("\\n") && cmd.contains("\\u{202e}"), "{cmd}");
        let reason = get("Reason");
        assert!(
            reason.contains("\\[x\\]\\(http://evil\\)"),
            "links are escaped: {reason}"
        );
    }

    #[test]
    fn slack_text_cannot_mention_or_link() {
        let v = payload(SinkKind::Slack, &Body::single(&hostile(), 60));
        let text = v.to_string();
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(text.contains("&lt;!channel&gt;"));
    }

    #[test]
    fn summaries_say_how_many_and_of_what() {
        let mut b = Body::single(&hostile(), 60);
        b.form = Form::Summary;
        b.count = 57;
        assert_eq!(
            title(&b),
            "57 more denials of the same kind in the last minute"
        );
        b.window_seconds = 5;
        assert_eq!(
            title(&b),
            "57 more denials of the same kind in the last 5 seconds"
        );
        let j = payload(SinkKind::Json, &b);
        assert_eq!(j["count"], 57);
        assert_eq!(j["alert"]["user"], "ai-worker");
    }

    #[test]
    fn long_text_is_cut_to_the_limits() {
        let mut a = hostile();
        a.command = Some("x".repeat(10_000));
        a.reason = "y".repeat(10_000);
        let v = payload(SinkKind::Discord, &Body::single(&a, 60));
        for f in v["embeds"][0]["fields"].as_array().unwrap() {
            assert!(f["value"].as_str().unwrap().chars().count() <= DISCORD_FIELD);
        }
    }
}
