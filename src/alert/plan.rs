//! Coalescing: which queued alerts become which messages. Pure: alerts, the saved windows and
//! the time in; messages and the alerts still held out.
//!
//! The first alert of a kind (same user, channel and program; same file for the watcher) goes
//! out at once as its own message and opens a window of `coalesce_seconds`. Alerts of that kind
//! inside the window are held and, when it closes, leave as one summary: "57 more denials of the
//! same kind in the last minute". At most `max_messages_per_window` windows may open per window
//! length; alerts that would open more join one overflow summary. A burst of any size therefore
//! gives at most about 2 x max + 1 messages per window, and their counts add up to the burst.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Alert, Kind};

/// The overflow window's key; no alert key contains a bare `*`.
const OVERFLOW: &str = "*";
/// Details listed in a summary, and the length of each.
const MAX_DETAILS: usize = 10;
const MAX_DETAIL_CHARS: usize = 1500;
const MAX_TALLY: usize = 10;

/// A queued alert and its spool file name.
#[derive(Debug, Clone)]
pub struct Queued {
    pub name: String,
    pub alert: Alert,
}

/// The windows that outlive one `gateway notify` run (saved in the spool's state file).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Windows {
    /// Key -> the alert time (ms) that opened its window.
    pub open: BTreeMap<String, u64>,
    /// Alert times of the first-of-their-kind messages, for the per-window cap.
    pub firsts: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// One alert, sent as soon as it is seen.
    Single,
    /// The rest of one kind's window.
    Summary,
    /// Alerts of kinds that found no room under the per-window cap.
    Overflow,
    /// `gateway alert test`.
    Test,
}

/// What one message says, whatever the webhook's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub form: Form,
    /// How many alerts this message accounts for.
    pub count: u64,
    pub window_seconds: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    /// The alert shown in full: the only one, or the latest of a summary.
    pub sample: Alert,
    /// One line per distinct further detail (request and reason, or diff), at most ten.
    #[serde(default)]
    pub details: Vec<String>,
    /// Distinct details that are not listed.
    #[serde(default)]
    pub details_omitted: u64,
    /// Overflow: "kind user program" -> count, largest first.
    #[serde(default)]
    pub tally: Vec<(String, u64)>,
    /// Alerts dropped undelivered (expired) since the previous message was built.
    #[serde(default)]
    pub expired: u64,
}

/// A message to build, and the queued alerts it accounts for.
#[derive(Debug)]
pub struct Planned {
    pub body: Body,
    pub alerts: Vec<String>,
}

#[derive(Debug)]
pub struct Plan {
    pub messages: Vec<Planned>,
    /// Held alerts stay queued until their window closes at `next_close` (ms).
    pub held: usize,
    pub next_close: Option<u64>,
}

impl Body {
    pub fn single(a: &Alert, window_seconds: u64) -> Body {
        Body {
            form: Form::Single,
            count: 1,
            window_seconds,
            first_ms: a.unix_ms,
            last_ms: a.unix_ms,
            sample: a.clone(),
            details: Vec::new(),
            details_omitted: 0,
            tally: Vec::new(),
            expired: 0,
        }
    }

    fn group(form: Form, held: &[Queued], window_seconds: u64) -> Body {
        let last = &held[held.len() - 1].alert;
        let mut details: Vec<String> = Vec::new();
        let mut distinct = std::collections::BTreeSet::new();
        let mut tally: BTreeMap<String, u64> = BTreeMap::new();
        for q in held {
            let d = detail(&q.alert);
            if distinct.insert(d.clone()) && details.len() < MAX_DETAILS {
                details.push(d);
            }
            if form == Form::Overflow {
                let a = &q.alert;
                let who = format!(
                    "{} {} {}",
                    a.kind.as_str(),
                    a.user.as_deref().unwrap_or("-"),
                    match a.kind {
                        Kind::Watch => a.path.as_deref().unwrap_or("-"),
                        _ => a.program(),
                    }
                );
                *tally.entry(who).or_default() += 1;
            }
        }
        let mut tally: Vec<(String, u64)> = tally.into_iter().collect();
        tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = tally.iter().skip(MAX_TALLY).map(|t| t.1).sum();
        tally.truncate(MAX_TALLY);
        if rest > 0 {
            tally.push(("other".into(), rest));
        }
        Body {
            form,
            count: held.len() as u64,
            window_seconds,
            first_ms: held[0].alert.unix_ms,
            last_ms: last.unix_ms,
            sample: last.clone(),
            details_omitted: (distinct.len() - details.len()) as u64,
            details,
            tally,
            expired: 0,
        }
    }
}

/// One line that tells alerts of one kind apart: the request and reason, or the diff.
pub fn detail(a: &Alert) -> String {
    let text = match (a.kind, &a.diff) {
        (Kind::Watch, Some(diff)) => diff.clone(),
        _ => match a.request_line() {
            Some(r) => format!("{r} -- {}", a.reason),
            None => a.reason.clone(),
        },
    };
    let mut t: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    if t.len() < text.len() {
        t.push_str(" [...]");
    }
    t
}

/// Decides the messages for everything queued at `now` (ms). Alerts are taken in time order;
/// `windows` is updated in place and must be saved with the messages.
pub fn plan(
    windows: &mut Windows,
    mut queued: Vec<Queued>,
    now: u64,
    window_s: u64,
    max: u64,
) -> Plan {
    let window = window_s * 1000;
    queued.sort_by(|a, b| (a.alert.unix_ms, &a.name).cmp(&(b.alert.unix_ms, &b.name)));
    // A first older than every alert here by a whole window can no longer count against one.
    let horizon = queued
        .first()
        .map_or(now, |q| q.alert.unix_ms.min(now))
        .saturating_sub(window);
    windows.firsts.retain(|&t| t >= horizon);
    let mut held: BTreeMap<String, Vec<Queued>> = BTreeMap::new();
    let mut messages = Vec::new();
    let close = |key: &str, group: Vec<Queued>, messages: &mut Vec<Planned>| {
        let form = if key == OVERFLOW {
            Form::Overflow
        } else {
            Form::Summary
        };
        messages.push(Planned {
            body: Body::group(form, &group, window_s),
            alerts: group.into_iter().map(|q| q.name).collect(),
        });
    };
    for q in queued {
        let ms = q.alert.unix_ms;
        let key = q.alert.key();
        if windows.open.get(&key).is_some_and(|&s| ms < s + window) {
            held.entry(key).or_default().push(q);
            continue;
        }
        if let Some(group) = held.remove(&key) {
            close(&key, group, &mut messages);
        }
        let recent = windows
            .firsts
            .iter()
            .filter(|&&t| t <= ms && ms < t + window)
            .count() as u64;
        if recent < max {
            windows.open.insert(key, ms);
            windows.firsts.push(ms);
            messages.push(Planned {
                body: Body::single(&q.alert, window_s),
                alerts: vec![q.name],
            });
            continue;
        }
        if windows.open.get(OVERFLOW).is_none_or(|&s| ms >= s + window) {
            if let Some(group) = held.remove(OVERFLOW) {
                close(OVERFLOW, group, &mut messages);
            }
            windows.open.insert(OVERFLOW.into(), ms);
        }
        held.entry(OVERFLOW.into()).or_default().push(q);
    }
    let mut still = 0;
    let mut next_close: Option<u64> = None;
    for (key, group) in held {
        let end = windows.open.get(&key).copied().unwrap_or(0) + window;
        if now >= end {
            close(&key, group, &mut messages);
        } else {
            still += group.len();
            next_close = Some(next_close.map_or(end, |n: u64| n.min(end)));
        }
    }
    windows.open.retain(|_, &mut s| now < s + window);
    Plan {
        messages,
        held: still,
        next_close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(ms: u64, user: &str, program: &str) -> Alert {
        let mut a = Alert::new(
            Kind::Deny,
            ms,
            "h".into(),
            format!("{program} is not allowed"),
        );
        a.user = Some(user.into());
        a.channel = Some("sudo".into());
        a.argv = Some(vec![program.into(), format!("-{ms}")]);
        a
    }

    fn queue(alerts: Vec<Alert>) -> Vec<Queued> {
        alerts
            .into_iter()
            .enumerate()
            .map(|(i, alert)| Queued {
                name: format!("{:06}.json", i),
                alert,
            })
            .collect()
    }

    fn total(p: &Plan) -> u64 {
        p.messages.iter().map(|m| m.body.count).sum()
    }

    #[test]
    fn a_burst_of_one_kind_is_one_message_and_one_summary() {
        let mut w = Windows::default();
        let burst = (0..1000)
            .map(|i| deny(10_000 + i, "u", "nvidia-smi"))
            .collect();
        // While the window is open, only the first message goes out; the rest wait.
        let p = plan(&mut w, queue(burst), 11_000, 60, 10);
        assert_eq!(p.messages.len(), 1);
        assert_eq!(p.messages[0].body.form, Form::Single);
        assert_eq!(p.held, 999);
        assert_eq!(p.next_close, Some(70_000));
        // At the close, the held 999 become one summary that lists distinct requests (capped).
        let rest = (1..1000)
            .map(|i| deny(10_000 + i, "u", "nvidia-smi"))
            .collect();
        let p = plan(&mut w, queue(rest), 70_000, 60, 10);
        assert_eq!(p.messages.len(), 1);
        let b = &p.messages[0].body;
        assert_eq!((b.form, b.count), (Form::Summary, 999));
        assert_eq!(b.details.len(), MAX_DETAILS);
        assert_eq!(
            b.details_omitted,
            999 - MAX_DETAILS as u64,
            "every request differs"
        );
        assert!(w.open.is_empty(), "closed windows are forgotten");
    }

    #[test]
    fn coalescing_table() {
        // (alerts as (ms, user, program), now, max, expected forms, why)
        type Row = (
            &'static [(u64, &'static str, &'static str)],
            u64,
            u64,
            &'static [(Form, u64)],
            &'static str,
        );
        let rows: &[Row] = &[
            (
                &[(0, "a", "x"), (1000, "a", "x"), (2000, "a", "x")],
                100_000,
                10,
                &[(Form::Single, 1), (Form::Summary, 2)],
                "one kind in one window: the first alone, the rest summarised",
            ),
            (
                &[(0, "a", "x"), (1000, "b", "x"), (2000, "a", "y")],
                100_000,
                10,
                &[(Form::Single, 1), (Form::Single, 1), (Form::Single, 1)],
                "another user or program is another kind",
            ),
            (
                &[(0, "a", "x"), (61_000, "a", "x")],
                100_000,
                10,
                &[(Form::Single, 1), (Form::Single, 1)],
                "after the window, the next alert opens a new one",
            ),
            (
                &[(0, "a", "x"), (1000, "a", "x"), (61_000, "a", "x")],
                200_000,
                10,
                &[(Form::Single, 1), (Form::Summary, 1), (Form::Single, 1)],
                "a window closed by a later alert is summarised before it",
            ),
            (
                &[
                    (0, "a", "p1"),
                    (1, "a", "p2"),
                    (2, "a", "p3"),
                    (3, "a", "p4"),
                    (4, "a", "p4"),
                ],
                100_000,
                2,
                &[(Form::Single, 1), (Form::Single, 1), (Form::Overflow, 3)],
                "beyond the cap, new kinds fold into one overflow summary",
            ),
        ];
        for (alerts, now, max, want, why) in rows {
            let mut w = Windows::default();
            let q = queue(alerts.iter().map(|&(ms, u, p)| deny(ms, u, p)).collect());
            let n = q.len() as u64;
            let p = plan(&mut w, q, *now, 60, *max);
            let got: Vec<(Form, u64)> = p
                .messages
                .iter()
                .map(|m| (m.body.form, m.body.count))
                .collect();
            assert_eq!(&got, want, "{why}");
            assert_eq!(total(&p), n, "{why}: every alert is accounted for");
        }
    }

    #[test]
    fn held_alerts_are_planned_the_same_way_on_the_next_run() {
        let mut w = Windows::default();
        let all: Vec<Alert> = (0..5)
            .map(|i| deny(i * 100, "u", &format!("p{i}")))
            .collect();
        let p = plan(&mut w, queue(all.clone()), 1000, 60, 2);
        assert_eq!(p.messages.len(), 2);
        assert_eq!(p.held, 3);
        // The next run sees only the held files again (the others were sent and removed).
        let held = queue(all[2..].to_vec());
        let p = plan(&mut w, held.clone(), 2000, 60, 2);
        assert!(p.messages.is_empty(), "still inside the overflow window");
        let p = plan(&mut w, held, 60_200, 60, 2);
        assert_eq!(p.messages.len(), 1);
        assert_eq!(
            (p.messages[0].body.form, p.messages[0].body.count),
            (Form::Overflow, 3)
        );
        assert_eq!(p.messages[0].body.tally.len(), 3);
    }

    #[test]
    fn many_kinds_at_once_stay_bounded_and_add_up() {
        let mut w = Windows::default();
        let burst: Vec<Alert> = (0..1000)
            .map(|i| deny(i, "u", &format!("p{}", i % 100)))
            .collect();
        let p1 = plan(&mut w, queue(burst.clone()), 500, 60, 10);
        let sent: Vec<String> = p1.messages.iter().flat_map(|m| m.alerts.clone()).collect();
        let rest: Vec<Queued> = queue(burst)
            .into_iter()
            .filter(|q| !sent.contains(&q.name))
            .collect();
        let p2 = plan(&mut w, rest, 120_000, 60, 10);
        let n = p1.messages.len() + p2.messages.len();
        assert!(n <= 21, "{n} messages for 1000 alerts of 100 kinds");
        assert_eq!(total(&p1) + total(&p2), 1000);
    }
}
