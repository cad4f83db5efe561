//! The rules by name. Built from TOML, every rule is built at once. Read from the cache, only
//! each rule's program and selector are known up front; its body stays on disk, in the cache
//! file this process opened and checked, until a request needs it. A request reads a handful of
//! rules, and reading and decoding all of them was most of a cached request's cost.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::Rule;

#[derive(Debug, Default)]
pub struct Rules {
    map: BTreeMap<String, Entry>,
    /// The open cache file the bodies are read from, and where its body section starts.
    bodies: Option<(File, u64)>,
}

#[derive(Debug)]
struct Entry {
    /// Known without decoding the rule: which program it is for ...
    program: String,
    /// ... and the leading words a request must have for it to matter (docker commands).
    selector: Option<String>,
    rule: OnceLock<Option<Rule>>,
    /// Where the body is in the cache file's body section, for a rule not yet decoded.
    at: Option<(u64, usize)>,
}

/// A rule as the cache's header lists it: what it is for, and where its JSON body is, relative
/// to the start of the body section.
#[derive(Debug, Serialize, Deserialize)]
pub struct Slot {
    pub program: String,
    pub selector: Option<String>,
    pub at: u64,
    pub len: usize,
}

/// A rule with what the cache's index says of it.
pub struct Listed<'a> {
    pub name: &'a str,
    pub program: &'a str,
    pub selector: Option<&'a str>,
    pub rule: &'a Rule,
}

/// The largest rule body the cache may hold; a bigger slot is a corrupt cache.
const MAX_BODY: usize = 1 << 20;

impl Rules {
    pub fn insert(&mut self, name: String, rule: Rule) {
        let entry = Entry {
            program: rule.program.clone(),
            selector: rule.selector(),
            rule: OnceLock::from(Some(rule)),
            at: None,
        };
        self.map.insert(name, entry);
    }

    /// Rules read from a cache file: `file`'s body section starts at `base`.
    pub fn from_slots(slots: BTreeMap<String, Slot>, file: File, base: u64) -> Rules {
        let map = slots
            .into_iter()
            .map(|(name, s)| {
                let entry = Entry {
                    program: s.program,
                    selector: s.selector,
                    rule: OnceLock::new(),
                    at: Some((s.at, s.len)),
                };
                (name, entry)
            })
            .collect();
        Rules {
            map,
            bodies: Some((file, base)),
        }
    }

    /// The rule, decoded on first use. A cached rule that cannot be read or decoded is absent,
    /// so the requests it would have allowed are denied.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        let e = self.map.get(name)?;
        e.rule.get_or_init(|| self.read_body(e.at?)).as_ref()
    }

    fn read_body(&self, (at, len): (u64, usize)) -> Option<Rule> {
        let (file, base) = self.bodies.as_ref()?;
        let buf = read_piece(file, *base, at, len, MAX_BODY)?;
        serde_json::from_slice(&buf).ok()
    }

    /// Every rule with its program and selector, for writing the cache: `None` if one of
    /// them cannot be had (then no cache is written).
    pub fn all(&self) -> Option<Vec<Listed<'_>>> {
        self.map
            .iter()
            .map(|(name, e)| {
                Some(Listed {
                    name,
                    program: &e.program,
                    selector: e.selector.as_deref(),
                    rule: self.get(name)?,
                })
            })
            .collect()
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The program a rule is for, without decoding it.
    pub fn program_of(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|e| e.program.as_str())
    }

    /// The leading words a request must have for the rule to concern it, without decoding it.
    pub fn selector_of(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(|e| e.selector.as_deref())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }
}

impl std::ops::Index<&str> for Rules {
    type Output = Rule;
    fn index(&self, name: &str) -> &Rule {
        self.get(name).expect("no rule of that name")
    }
}

/// `len` bytes at `at` past `base` in the cache file: `None` for a piece over `max` bytes, past
/// the end, or unreadable (a corrupt cache).
pub(super) fn read_piece(
    file: &File,
    base: u64,
    at: u64,
    len: usize,
    max: usize,
) -> Option<Vec<u8>> {
    if len > max {
        return None;
    }
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, base.checked_add(at)?).ok()?;
    Some(buf)
}
