//! Coalescing: which queued alerts become which messages. Pure: alerts, the saved windows and
//! the time in; messages and the alerts still held out.
//!
//! The first alert of a kind (same user, channel and program; same file for the watcher) goes
//! out at once as its own message and opens a window of `coalesce_seconds`. Alerts of that kind
//! inside the window are held and, when it closes, leave as one summary: "57 more denials of the
//! same kind in the last minute". At most `max_messages_per_window` windows may open per window
//! length; alerts that would open more join one overflow summary. A burst of any size therefore
//! gives at most about 2 x max + 1 messages per window, and their counts add up to the burst.
//!
//! Every queued alert is planned at once: a summary whose window is still open is planned too,
//! with its window, and the deliverer folds it into that window's waiting message (see
//! [`Body::merge`]), so what waits on disk is one message per window and kind, not one file per
//! alert, whether or not a webhook is there to take it.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Alert, Kind};

/// The overflow window's key; no alert key contains a bare `*`.
const OVERFLOW: &str = "*";
/// Details listed in a summary, and the length of each.
const MAX_DETAILS: usize = 10;
const MAX_DETAIL_CHARS: usize = 1500;
const MAX_TALLY: usize = 10;
/// The tally line that adds up the kinds beyond `MAX_TALLY`.
const OTHER: &str = "other";
const MAX_TALLY_KEY_CHARS: usize = 160;
/// Fingerprints of distinct details a message keeps, to count distinct requests across merges.
const MAX_SEEN: usize = 512;

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
    /// Alerts the spool's cap kept out (counted by requests, or folded from waiting messages).
    Dropped,
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
    /// Fingerprints of the distinct details counted so far (at most `MAX_SEEN`), so parts of a
    /// window merged later still count distinct requests once. Not shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<u64>,
    /// More distinct details than `seen` holds: `details_omitted` is a lower bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub details_capped: bool,
}

/// The coalescing window a summary belongs to: its kind's key and when it opened and closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub key: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// A message to build, and the queued alerts it accounts for.
#[derive(Debug)]
pub struct Planned {
    pub body: Body,
    pub alerts: Vec<String>,
    /// Summaries: their window. Parts of one window, planned in separate runs, merge into one
    /// message, which is sent when the window closes.
    pub window: Option<Window>,
}

#[derive(Debug)]
pub struct Plan {
    pub messages: Vec<Planned>,
    /// Alerts in summaries whose window is still open; the first closes at `next_close` (ms).
    pub held: usize,
    pub next_close: Option<u64>,
}

/// "kind user program" (or the file, for the watcher): one line of a tally.
pub fn tally_key(a: &Alert) -> String {
    let key = format!(
        "{} {} {}",
        a.kind.as_str(),
        a.user.as_deref().unwrap_or("-"),
        match a.kind {
            Kind::Watch => a.path.as_deref().unwrap_or("-"),
            _ => a.program(),
        }
    );
    key.chars().take(MAX_TALLY_KEY_CHARS).collect()
}

/// Adds `n` to `key` in a tally of at most `MAX_TALLY` kinds, largest first; kinds beyond
/// those go to a last "other" line, so the lines always add up to every alert counted. (Which
/// kinds are listed is a close guess across merges; the sum is exact.)
pub fn add_tally(tally: &mut Vec<(String, u64)>, key: String, n: u64) {
    let other = match tally.last() {
        Some((k, _)) if k == OTHER => tally.pop().map_or(0, |t| t.1),
        _ => 0,
    };
    let mut other = other;
    if key == OTHER {
        other += n;
    } else if let Some(t) = tally.iter_mut().find(|t| t.0 == key) {
        t.1 += n;
    } else if tally.len() < MAX_TALLY {
        tally.push((key, n));
    } else if tally.last().is_some_and(|t| t.1 < n) {
        // A kind larger than the smallest listed takes its line; the smallest joins "other".
        other += tally.pop().map_or(0, |t| t.1);
        tally.push((key, n));
    } else {
        other += n;
    }
    tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if other > 0 {
        tally.push((OTHER.into(), other));
    }
}

/// A stable 64-bit fingerprint (FNV-1a): of a detail line, of a window's key.
pub fn fingerprint(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
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
            seen: Vec::new(),
            details_capped: false,
        }
    }

    /// A note for alerts the spool's cap kept out: `count` of them, from `first_ms` to
    /// `last_ms`, by kind in `tally`, with `why` as its reason and `details` as its lines.
    pub fn dropped(
        host: String,
        why: String,
        span: (u64, u64),
        count: u64,
        tally: Vec<(String, u64)>,
        details: Vec<String>,
    ) -> Body {
        let sample = Alert::new(Kind::Notice, span.1, host, why);
        Body {
            form: Form::Dropped,
            count,
            first_ms: span.0,
            last_ms: span.1,
            tally,
            details,
            ..Body::single(&sample, 0)
        }
    }

    /// Counts a whole message into this note (the spool's cap folds it away): its alerts, its
    /// expired count, its time span and its kinds.
    pub fn absorb(&mut self, b: &Body) {
        self.count += b.count;
        self.expired += b.expired;
        self.first_ms = self.first_ms.min(b.first_ms);
        self.last_ms = self.last_ms.max(b.last_ms);
        if b.tally.is_empty() {
            add_tally(&mut self.tally, tally_key(&b.sample), b.count);
        } else {
            for (k, n) in &b.tally {
                add_tally(&mut self.tally, k.clone(), *n);
            }
        }
    }

    /// Adds a later part of the same window (`other`, planned in another run) to this summary:
    /// the counts add up, the latest alert becomes the sample, distinct details are counted
    /// once (exactly up to `MAX_SEEN` of them, then as a lower bound).
    pub fn merge(&mut self, other: Body) {
        self.count += other.count;
        self.expired += other.expired;
        self.first_ms = self.first_ms.min(other.first_ms);
        let seen: BTreeSet<u64> = self.seen.iter().copied().collect();
        let listed: BTreeSet<u64> = other.details.iter().map(|d| fingerprint(d)).collect();
        let mut new: Vec<(u64, Option<String>)> = other
            .details
            .into_iter()
            .map(|d| (fingerprint(&d), Some(d)))
            .collect();
        new.extend(
            other
                .seen
                .iter()
                .filter(|f| !listed.contains(f))
                .map(|&f| (f, None)),
        );
        let mut added = BTreeSet::new();
        for (f, detail) in new {
            if seen.contains(&f) || !added.insert(f) {
                continue;
            }
            if self.seen.len() >= MAX_SEEN {
                self.details_capped = true;
                continue;
            }
            self.seen.push(f);
            match detail {
                Some(d) if self.details.len() < MAX_DETAILS => self.details.push(d),
                _ => self.details_omitted += 1,
            }
        }
        self.details_capped |= other.details_capped;
        for (k, n) in other.tally {
            add_tally(&mut self.tally, k, n);
        }
        if other.last_ms >= self.last_ms {
            self.last_ms = other.last_ms;
            self.sample = other.sample;
        }
    }

    fn group(form: Form, held: &[Queued], window_seconds: u64) -> Body {
        let last = &held[held.len() - 1].alert;
        let mut details: Vec<String> = Vec::new();
        let mut distinct = BTreeSet::new();
        let mut tally: BTreeMap<String, u64> = BTreeMap::new();
        for q in held {
            let d = detail(&q.alert);
            if distinct.insert(d.clone()) && details.len() < MAX_DETAILS {
                details.push(d);
            }
            if form == Form::Overflow {
                *tally.entry(tally_key(&q.alert)).or_default() += 1;
            }
        }
        // The listed details first, so a later merge recognises them.
        let mut seen: Vec<u64> = details.iter().map(|d| fingerprint(d)).collect();
        let listed: BTreeSet<u64> = seen.iter().copied().collect();
        seen.extend(
            distinct
                .iter()
                .map(|d| fingerprint(d))
                .filter(|f| !listed.contains(f))
                .take(MAX_SEEN.saturating_sub(listed.len())),
        );
        let mut tally: Vec<(String, u64)> = tally.into_iter().collect();
        tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = tally.iter().skip(MAX_TALLY).map(|t| t.1).sum();
        tally.truncate(MAX_TALLY);
        if rest > 0 {
            tally.push((OTHER.into(), rest));
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
            details_capped: distinct.len() > seen.len(),
            seen,
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
    let close = |key: &str, start: u64, group: Vec<Queued>, messages: &mut Vec<Planned>| {
        let form = if key == OVERFLOW {
            Form::Overflow
        } else {
            Form::Summary
        };
        messages.push(Planned {
            body: Body::group(form, &group, window_s),
            alerts: group.into_iter().map(|q| q.name).collect(),
            window: Some(Window {
                key: key.to_string(),
                start_ms: start,
                end_ms: start + window,
            }),
        });
    };
    for q in queued {
        let ms = q.alert.unix_ms;
        let key = q.alert.key();
        let open = windows.open.get(&key).copied();
        if open.is_some_and(|s| ms < s + window) {
            held.entry(key).or_default().push(q);
            continue;
        }
        if let (Some(group), Some(start)) = (held.remove(&key), open) {
            close(&key, start, group, &mut messages);
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
                window: None,
            });
            continue;
        }
        let overflow = windows.open.get(OVERFLOW).copied();
        if overflow.is_none_or(|s| ms >= s + window) {
            if let (Some(group), Some(start)) = (held.remove(OVERFLOW), overflow) {
                close(OVERFLOW, start, group, &mut messages);
            }
            windows.open.insert(OVERFLOW.into(), ms);
        }
        held.entry(OVERFLOW.into()).or_default().push(q);
    }
    let mut still = 0;
    let mut next_close: Option<u64> = None;
    for (key, group) in held {
        let start = windows.open.get(&key).copied().unwrap_or(0);
        let end = start + window;
        if now < end {
            still += group.len();
            next_close = Some(next_close.map_or(end, |n: u64| n.min(end)));
        }
        close(&key, start, group, &mut messages);
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
        // While the window is open, the first goes out; the other 999 are planned into the
        // window's summary, which waits for the window to close.
        let p = plan(&mut w, queue(burst), 11_000, 60, 10);
        let got: Vec<(Form, u64, Option<u64>)> = p
            .messages
            .iter()
            .map(|m| {
                (
                    m.body.form,
                    m.body.count,
                    m.window.as_ref().map(|w| w.end_ms),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(Form::Single, 1, None), (Form::Summary, 999, Some(70_000))]
        );
        assert_eq!((p.held, p.next_close), (999, Some(70_000)));
        let b = &p.messages[1].body;
        assert_eq!(b.details.len(), MAX_DETAILS);
        assert_eq!(
            b.details_omitted,
            999 - MAX_DETAILS as u64,
            "every request differs"
        );
        // Nothing more comes; at the close the window is forgotten.
        let p = plan(&mut w, Vec::new(), 70_000, 60, 10);
        assert!(p.messages.is_empty() && w.open.is_empty());
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
    fn parts_of_one_window_planned_in_two_runs_merge_into_one_summary() {
        let mut w = Windows::default();
        let all: Vec<Alert> = (0..7)
            .map(|i| deny(i * 100, "u", &format!("p{i}")))
            .collect();
        // Two kinds get their own message (max 2); the other three open the overflow window.
        let p1 = plan(&mut w, queue(all[..5].to_vec()), 1000, 60, 2);
        assert_eq!(p1.messages.len(), 3);
        assert_eq!(p1.held, 3);
        let first = p1.messages.into_iter().nth(2).unwrap();
        // The next run has two more of other kinds, inside the same overflow window.
        let p2 = plan(&mut w, queue(all[5..].to_vec()), 2000, 60, 2);
        assert_eq!(p2.messages.len(), 1);
        let second = p2.messages.into_iter().next().unwrap();
        assert_eq!(
            first.window, second.window,
            "the same window, so the deliverer merges them"
        );
        let mut merged = first.body;
        merged.merge(second.body);
        assert_eq!((merged.form, merged.count), (Form::Overflow, 5));
        assert_eq!(merged.tally.len(), 5);
        assert_eq!(merged.tally.iter().map(|t| t.1).sum::<u64>(), 5);
        assert_eq!((merged.first_ms, merged.last_ms), (200, 600));
        assert!(
            merged.sample.argv.as_ref().unwrap()[0] == "p6",
            "the latest"
        );
    }

    #[test]
    fn merged_summaries_count_distinct_requests_once() {
        let part = |ms: &[u64]| {
            let q = queue(ms.iter().map(|&m| deny(m, "u", "x")).collect());
            Body::group(Form::Summary, &q, 60)
        };
        // (first part, second part, distinct in all, why)
        let rows: &[(&[u64], &[u64], u64, &str)] = &[
            (&[1, 2, 3], &[4, 5], 5, "disjoint parts add up"),
            (
                &[1, 2, 3],
                &[2, 3, 4],
                4,
                "a request seen before is not counted again",
            ),
            (
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                &[11, 12, 13],
                13,
                "requests beyond the listed ten are recognised too",
            ),
        ];
        for (a, b, distinct, why) in rows {
            let mut m = part(a);
            m.merge(part(b));
            assert_eq!(m.count, (a.len() + b.len()) as u64, "{why}");
            assert_eq!(
                m.details.len() as u64 + m.details_omitted,
                *distinct,
                "{why}"
            );
            assert!(!m.details_capped, "{why}");
        }
    }

    #[test]
    fn a_tally_keeps_ten_kinds_and_adds_the_rest_up() {
        let mut t = Vec::new();
        for i in 0..15u64 {
            add_tally(&mut t, format!("k{i:02}"), i + 1);
        }
        add_tally(&mut t, "k14".into(), 100);
        assert_eq!(t.len(), MAX_TALLY + 1);
        assert_eq!(t[0], ("k14".to_string(), 115), "largest first");
        assert_eq!(
            t[MAX_TALLY - 1],
            ("k05".to_string(), 6),
            "the smallest kinds left"
        );
        assert_eq!(t.last().unwrap().0, OTHER);
        assert_eq!(
            t.iter().map(|x| x.1).sum::<u64>(),
            (1..=15).sum::<u64>() + 100
        );
    }

    #[test]
    fn many_kinds_at_once_stay_bounded_and_add_up() {
        let mut w = Windows::default();
        let burst: Vec<Alert> = (0..1000)
            .map(|i| deny(i, "u", &format!("p{}", i % 100)))
            .collect();
        let p = plan(&mut w, queue(burst), 500, 60, 10);
        assert!(
            p.messages.len() <= 21,
            "{} messages for 1000 alerts of 100 kinds",
            p.messages.len()
        );
        assert_eq!(total(&p), 1000);
    }
}
