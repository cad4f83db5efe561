//! Sudoers surgery: find every rule that grants a managed user anything and take the user out of
//! it, leaving every other line and every other user's grant as it was.
//!
//! What "replace the permissive grant" means here, precisely (docs/rollout.md repeats it):
//! - A user specification whose user list names a managed user directly (by name or `#uid`)
//!   loses that list item. If no positive item is left (`vastai_kaalia ALL=(ALL) NOPASSWD:ALL`),
//!   the whole logical line goes.
//! - If the list still reaches the managed user another way (`ALL`, `%group`, `%#gid`, a
//!   `User_Alias`, a netgroup), `!user` is appended to the list: sudo reads a user list left to
//!   right and the last match wins, so the rule keeps granting everyone else.
//! - `User_Alias` definitions, `Defaults` lines, comments and every other rule stay byte for byte:
//!   an alias can be used in several places, so editing its definition would change more than the
//!   managed user's grant.
//! - The gateway's own drop-in is never edited (the caller skips it).
//!
//! Any rule counts, not only `NOPASSWD: ALL`: a narrow list like `docker run *` is exactly the hole
//! the gateway exists to close, so the managed users keep no sudo rule but the gateway's.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A managed account as sudo would match it.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Primary and supplementary groups.
    pub gids: Vec<u32>,
}

/// One change to a sudoers file: a logical line replaced or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// First physical line (1-based), for messages.
    pub line: usize,
    /// Byte range of the logical line in the file, trailing newline included.
    pub range: Range<usize>,
    pub before: String,
    /// `None`: the line is removed.
    pub after: Option<String>,
    /// Managed users the line no longer grants.
    pub users: Vec<String>,
}

/// A line sudo reads, continuation lines joined (the raw bytes keep the backslash-newlines).
#[derive(Debug, Clone)]
struct Logical<'a> {
    line: usize,
    range: Range<usize>,
    raw: &'a str,
}

fn logical_lines(text: &str) -> Vec<Logical<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut line_no = 0;
    let mut pos = 0;
    for phys in text.split_inclusive('\n') {
        line_no += 1;
        pos += phys.len();
        let body = phys.strip_suffix('\n').unwrap_or(phys);
        let at_start = start == pos - phys.len();
        let t = body.trim_start();
        let comment = at_start && t.starts_with('#') && !is_directive_or_uid(t);
        let trailing = body.bytes().rev().take_while(|&b| b == b'\\').count();
        if !comment && trailing % 2 == 1 {
            continue;
        }
        out.push(Logical {
            line: first_line,
            range: start..pos,
            raw: &text[start..pos],
        });
        start = pos;
        first_line = line_no + 1;
    }
    if start < text.len() {
        out.push(Logical {
            line: first_line,
            range: start..text.len(),
            raw: &text[start..],
        });
    }
    out
}

/// `#include`, `#includedir` and `#123` (a uid) are not comments.
fn is_directive_or_uid(t: &str) -> bool {
    t.starts_with("#include") || t[1..].starts_with(|c: char| c.is_ascii_digit())
}

/// An include directive, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Include {
    File(PathBuf),
    Dir(PathBuf),
}

/// The files and directories `text` includes; relative paths are taken from `base_dir`, as
/// sudo 1.9 does. Paths with `%h` (per-host files) are reported as unsupported by the caller.
pub fn includes(text: &str, base_dir: &Path) -> Vec<Include> {
    let mut out = Vec::new();
    for l in logical_lines(text) {
        let t = l.raw.trim();
        let (dir, rest) = if let Some(r) = t
            .strip_prefix("@includedir")
            .or_else(|| t.strip_prefix("#includedir"))
        {
            (true, r)
        } else if let Some(r) = t
            .strip_prefix("@include")
            .or_else(|| t.strip_prefix("#include"))
        {
            (false, r)
        } else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let mut path = rest.trim().to_string();
        if path.len() >= 2 && path.starts_with('"') && path.ends_with('"') {
            path = path[1..path.len() - 1].replace("\\\"", "\"");
        }
        let path = base_dir.join(path);
        out.push(if dir {
            Include::Dir(path)
        } else {
            Include::File(path)
        });
    }
    out
}

/// Whether sudo reads a file found in an `@includedir` directory: not ending in `~`, no `.`.
pub fn included_name(name: &str) -> bool {
    !name.is_empty() && !name.ends_with('~') && !name.contains('.')
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    All,
    Name(String),
    Uid(u32),
    Group(String),
    Gid(u32),
    /// `%:group` (non-Unix) or `+netgroup`: cannot be decided here.
    Unknown,
    Alias(String),
}

#[derive(Debug, Clone)]
struct Item {
    span: Range<usize>,
    negated: bool,
    member: Member,
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

/// Skips blanks and backslash-newline continuations.
fn skip_ws(s: &[u8], mut i: usize) -> usize {
    loop {
        if i < s.len() && is_ws(s[i]) {
            i += 1;
        } else if i + 1 < s.len() && s[i] == b'\\' && s[i + 1] == b'\n' {
            i += 2;
        } else {
            return i;
        }
    }
}

/// Reads one word of a list: quoted, or up to a blank, comma, colon or `=`.
fn word(s: &[u8], mut i: usize) -> (usize, String) {
    let mut out = Vec::new();
    if i < s.len() && s[i] == b'"' {
        i += 1;
        while i < s.len() && s[i] != b'"' {
            if s[i] == b'\\' && i + 1 < s.len() {
                i += 1;
            }
            out.push(s[i]);
            i += 1;
        }
        return (
            (i + 1).min(s.len()),
            String::from_utf8_lossy(&out).into_owned(),
        );
    }
    while i < s.len() {
        let b = s[i];
        if is_ws(b) || b == b'\n' || b == b',' || b == b':' || b == b'=' {
            break;
        }
        if b == b'\\' && i + 1 < s.len() {
            if s[i + 1] == b'\n' {
                break;
            }
            i += 1;
        }
        out.push(s[i]);
        i += 1;
    }
    (i, String::from_utf8_lossy(&out).into_owned())
}

fn member(word: &str) -> Member {
    if word == "ALL" {
        return Member::All;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(g) = word.strip_prefix('%') {
        if g.starts_with(':') {
            return Member::Unknown;
        }
        if let Some(n) = g.strip_prefix('#') {
            return n.parse().map(Member::Gid).unwrap_or(Member::Unknown);
        }
        return Member::Group(g.to_string());
    }
    if word.starts_with('+') {
        return Member::Unknown;
    }
    if let Some(n) = word.strip_prefix('#') {
        if digits(n) {
            return n.parse().map(Member::Uid).unwrap_or(Member::Unknown);
        }
    }
    let b = word.as_bytes();
    let alias = !b.is_empty()
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    if alias {
        return Member::Alias(word.to_string());
    }
    Member::Name(word.to_string())
}

/// Parses a comma-separated list starting at `i`; returns the items and where the list ended.
fn list(s: &[u8], mut i: usize) -> (Vec<Item>, usize) {
    let mut items = Vec::new();
    loop {
        i = skip_ws(s, i);
        let start = i;
        let mut negated = false;
        while i < s.len() && s[i] == b'!' {
            negated = !negated;
            i = skip_ws(s, i + 1);
        }
        let (end, w) = word(s, i);
        if w.is_empty() {
            return (items, start);
        }
        items.push(Item {
            span: start..end,
            negated,
            member: member(&w),
        });
        i = skip_ws(s, end);
        if i < s.len() && s[i] == b',' {
            i += 1;
            continue;
        }
        return (items, end);
    }
}

/// The `User_Alias` definitions of all files, by name.
#[derive(Debug, Default, Clone)]
pub struct Aliases(BTreeMap<String, Vec<Item>>);

impl Aliases {
    pub fn add_file(&mut self, text: &str) {
        for l in logical_lines(text) {
            let s = l.raw.as_bytes();
            let i = skip_ws(s, 0);
            let Some(rest) = l.raw[i..].strip_prefix("User_Alias") else {
                continue;
            };
            let mut j = i + "User_Alias".len();
            if !rest.starts_with([' ', '\t']) {
                continue;
            }
            // NAME = list [: NAME = list]...
            loop {
                j = skip_ws(s, j);
                let (end, name) = word(s, j);
                j = skip_ws(s, end);
                if name.is_empty() || j >= s.len() || s[j] != b'=' {
                    break;
                }
                let (items, end) = list(s, j + 1);
                let items = items
                    .into_iter()
                    .map(|mut it| {
                        it.span = 0..0;
                        it
                    })
                    .collect();
                self.0.insert(name, items);
                j = skip_ws(s, end);
                if j < s.len() && s[j] == b':' {
                    j += 1;
                    continue;
                }
                break;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

struct Matcher<'a> {
    aliases: &'a Aliases,
    gid_of: &'a dyn Fn(&str) -> Option<u32>,
}

impl Matcher<'_> {
    fn member(&self, m: &Member, a: &Account, depth: usize) -> Tri {
        let yes = |b: bool| if b { Tri::Yes } else { Tri::No };
        match m {
            Member::All => Tri::Yes,
            Member::Name(n) => yes(*n == a.name),
            Member::Uid(u) => yes(*u == a.uid),
            Member::Group(g) => yes((self.gid_of)(g).is_some_and(|gid| a.gids.contains(&gid))),
            Member::Gid(g) => yes(a.gids.contains(g)),
            Member::Unknown => Tri::Maybe,
            Member::Alias(n) => match self.aliases.0.get(n) {
                // A loop of aliases is an error sudo reports; assume the worst here.
                Some(_) if depth > 16 => Tri::Maybe,
                Some(items) => self.list(items, a, depth + 1),
                None => Tri::No,
            },
        }
    }

    /// Whether a user list matches `a`: left to right, the last matching item decides.
    fn list(&self, items: &[Item], a: &Account, depth: usize) -> Tri {
        let mut result = Tri::No;
        for it in items {
            match (self.member(&it.member, a, depth), it.negated) {
                (Tri::No, _) => {}
                (Tri::Yes, false) => result = Tri::Yes,
                (Tri::Yes, true) => result = Tri::No,
                (Tri::Maybe, false) if result == Tri::No => result = Tri::Maybe,
                (Tri::Maybe, true) if result == Tri::Yes => result = Tri::Maybe,
                (Tri::Maybe, _) => {}
            }
        }
        result
    }
}

/// Keywords that start a line which is not a user specification.
const NOT_SPECS: &[&str] = &[
    "Defaults",
    "User_Alias",
    "Runas_Alias",
    "Host_Alias",
    "Cmnd_Alias",
    "Cmd_Alias",
    "@include",
    "#include",
];

/// The edits that leave `text` granting no managed user anything.
pub fn plan(
    text: &str,
    accounts: &[Account],
    aliases: &Aliases,
    gid_of: &dyn Fn(&str) -> Option<u32>,
) -> Vec<Edit> {
    let m = Matcher { aliases, gid_of };
    let mut edits = Vec::new();
    for l in logical_lines(text) {
        let t = l.raw.trim_start();
        if t.is_empty()
            || (t.starts_with('#') && !is_directive_or_uid(t))
            || NOT_SPECS.iter().any(|k| t.starts_with(k))
        {
            continue;
        }
        let s = l.raw.as_bytes();
        let (items, list_end) = list(s, 0);
        // A user specification has a host list and `=` after the user list.
        if items.is_empty() || !l.raw[list_end..].contains('=') {
            continue;
        }
        let targets: Vec<&Account> = accounts
            .iter()
            .filter(|a| m.list(&items, a, 0) != Tri::No)
            .collect();
        if targets.is_empty() {
            continue;
        }
        let direct = |it: &Item| {
            !it.negated
                && targets.iter().any(|a| match &it.member {
                    Member::Name(n) => *n == a.name,
                    Member::Uid(u) => *u == a.uid,
                    _ => false,
                })
        };
        let kept: Vec<&Item> = items.iter().filter(|it| !direct(it)).collect();
        let users = targets.iter().map(|a| a.name.clone()).collect();
        let base = Edit {
            line: l.line,
            range: l.range.clone(),
            before: l.raw.to_string(),
            after: None,
            users,
        };
        if kept.iter().all(|it| it.negated) {
            edits.push(base);
            continue;
        }
        let kept_owned: Vec<Item> = kept.iter().map(|&it| it.clone()).collect();
        let mut words: Vec<&str> = kept.iter().map(|it| &l.raw[it.span.clone()]).collect();
        let negations: Vec<String> = targets
            .iter()
            .filter(|a| m.list(&kept_owned, a, 0) != Tri::No)
            .map(|a| format!("!{}", a.name))
            .collect();
        words.extend(negations.iter().map(String::as_str));
        let first = items[0].span.start;
        let last = items[items.len() - 1].span.end;
        let after = format!("{}{}{}", &l.raw[..first], words.join(", "), &l.raw[last..]);
        edits.push(Edit {
            after: Some(after),
            ..base
        });
    }
    edits
}

/// `text` with the edits applied (edits come from `plan` on the same text).
pub fn apply(text: &str, edits: &[Edit]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for e in edits {
        out.push_str(&text[pos..e.range.start]);
        if let Some(a) = &e.after {
            out.push_str(a);
        }
        pos = e.range.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Puts the original lines back into a file that changed after the edits were made: each
/// replaced line is found by its new text, each removed line goes back after the line that
/// preceded it. Returns the text and the edits that could not be placed.
pub fn revert(text: &str, original: &str, edits: &[Edit]) -> (String, Vec<Edit>) {
    let mut out = text.to_string();
    let mut lost = Vec::new();
    for e in edits.iter().rev() {
        match &e.after {
            Some(after) => match out.find(after.as_str()) {
                Some(at) if out.matches(after.as_str()).count() == 1 => {
                    out.replace_range(at..at + after.len(), &e.before);
                }
                _ => lost.push(e.clone()),
            },
            None => {
                let prev = original[..e.range.start]
                    .split_inclusive('\n')
                    .next_back()
                    .unwrap_or("");
                if prev.is_empty() {
                    out.insert_str(0, &e.before);
                } else if out.matches(prev).count() == 1 {
                    let at = out.find(prev).unwrap_or(0) + prev.len();
                    out.insert_str(at, &e.before);
                } else {
                    lost.push(e.clone());
                }
            }
        }
    }
    (out, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<Account> {
        vec![
            Account {
                name: "vastai_kaalia".into(),
                uid: 1100,
                gids: vec![1100, 27],
            },
            Account {
                name: "ai-worker".into(),
                uid: 1101,
                gids: vec![1101],
            },
        ]
    }

    fn gid_of(name: &str) -> Option<u32> {
        match name {
            "sudo" => Some(27),
            "wheel" => Some(10),
            _ => None,
        }
    }

    fn run(text: &str) -> String {
        let mut aliases = Aliases::default();
        aliases.add_file(text);
        let edits = plan(text, &accounts(), &aliases, &gid_of);
        apply(text, &edits)
    }

    #[test]
    fn grants_are_taken_from_managed_users_only() {
        // (input, expected output, why)
        let table: &[(&str, &str, &str)] = &[
            (
                "root ALL=(ALL:ALL) ALL\nvastai_kaalia ALL=(ALL) NOPASSWD:ALL\n",
                "root ALL=(ALL:ALL) ALL\n",
                "the stock Vast.ai line goes whole; root's line stays",
            ),
            (
                "vastai_kaalia, bob ALL=(ALL) NOPASSWD: ALL\n",
                "bob ALL=(ALL) NOPASSWD: ALL\n",
                "a line granting several users keeps the others",
            ),
            (
                "bob,vastai_kaalia,carol\tALL=(ALL) ALL\n",
                "bob, carol\tALL=(ALL) ALL\n",
                "a managed user in the middle of a list; the rest of the line is kept verbatim",
            ),
            (
                "%sudo\tALL=(ALL:ALL) ALL\n",
                "%sudo, !vastai_kaalia\tALL=(ALL:ALL) ALL\n",
                "a group the user is in: the user is excluded, the group keeps its rule",
            ),
            (
                "%wheel ALL=(ALL) ALL\n",
                "%wheel ALL=(ALL) ALL\n",
                "a group the managed users are not in is left alone",
            ),
            (
                "User_Alias AGENTS = ai-worker, bob\nAGENTS ALL=(root) NOPASSWD: /usr/bin/docker run *\n",
                "User_Alias AGENTS = ai-worker, bob\nAGENTS, !ai-worker ALL=(root) NOPASSWD: /usr/bin/docker run *\n",
                "an alias keeps its definition; the rule excludes the managed member",
            ),
            (
                "ALL ALL=(ALL) NOPASSWD: /usr/bin/id\n",
                "ALL, !vastai_kaalia, !ai-worker ALL=(ALL) NOPASSWD: /usr/bin/id\n",
                "ALL reaches every managed user",
            ),
            (
                "#1101 ALL=(ALL) ALL\n",
                "",
                "a uid is a direct grant",
            ),
            (
                "ai-worker ALL=(root) NOPASSWD: /run/current-system/sw/bin/docker ps *, \\\n    /run/current-system/sw/bin/docker run *\nroot ALL=(ALL) ALL\n",
                "root ALL=(ALL) ALL\n",
                "a narrow NixOS-style list is a grant too, continuation lines included",
            ),
            (
                "ALL, !vastai_kaalia, !ai-worker ALL=(ALL) ALL\n",
                "ALL, !vastai_kaalia, !ai-worker ALL=(ALL) ALL\n",
                "a list that already excludes the users needs nothing (install is idempotent)",
            ),
            (
                "Defaults:vastai_kaalia !requiretty\n# vastai_kaalia ALL=(ALL) ALL\n",
                "Defaults:vastai_kaalia !requiretty\n# vastai_kaalia ALL=(ALL) ALL\n",
                "Defaults and comments are not grants",
            ),
            (
                "+admins ALL=(ALL) ALL\n",
                "+admins, !vastai_kaalia, !ai-worker ALL=(ALL) ALL\n",
                "a netgroup cannot be resolved here, so every managed user is excluded",
            ),
            (
                "vastai_kaalia, !bob ALL=(ALL) ALL\n",
                "",
                "a list left with only negations grants nobody and goes",
            ),
            (
                "vastai_kaalia ALL=(ALL) NOPASSWD:ALL",
                "",
                "a last line without a newline",
            ),
        ];
        for (input, want, why) in table {
            assert_eq!(run(input), *want, "{why}");
        }
    }

    #[test]
    fn revert_puts_back_the_original_bytes() {
        let original =
            "root ALL=(ALL) ALL\nvastai_kaalia ALL=(ALL) NOPASSWD:ALL\n%sudo ALL=(ALL) ALL\n";
        let mut aliases = Aliases::default();
        aliases.add_file(original);
        let edits = plan(original, &accounts(), &aliases, &gid_of);
        let installed = apply(original, &edits);
        let (back, lost) = revert(&installed, original, &edits);
        assert!(lost.is_empty());
        assert_eq!(back, original);
        // Someone appended a line after install: the grant goes back, the new line stays.
        let changed = format!("{installed}carol ALL=(ALL) ALL\n");
        let (back, lost) = revert(&changed, original, &edits);
        assert!(lost.is_empty());
        assert_eq!(back, format!("{original}carol ALL=(ALL) ALL\n"));
    }

    #[test]
    fn includes_are_found_relative_to_the_file() {
        let text =
            "@includedir /etc/sudoers.d\n#include extra\n#includedirx nothing\n#1000 ALL=ALL\n";
        assert_eq!(
            includes(text, Path::new("/etc")),
            vec![
                Include::Dir("/etc/sudoers.d".into()),
                Include::File("/etc/extra".into())
            ]
        );
        for (name, read) in [
            ("gateway", true),
            ("README", true),
            ("x.bak", false),
            ("x~", false),
        ] {
            assert_eq!(included_name(name), read, "{name}");
        }
    }
}
