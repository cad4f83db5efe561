//! The rules by name. Built from TOML, every rule is built at once; read from the cache, each
//! rule stays JSON text until a request needs it, since a request reads a handful of rules and
//! decoding all of them was most of a cached request's cost.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Rule;

#[derive(Debug, Default)]
pub struct Rules {
    map: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// Known without decoding the rule: which program it is for ...
    program: String,
    /// ... and the leading words a request must have for it to matter (docker commands).
    selector: Option<String>,
    rule: OnceLock<Option<Rule>>,
    json: Option<Box<RawValue>>,
}

impl Rules {
    pub fn insert(&mut self, name: String, rule: Rule) {
        let entry = Entry {
            program: rule.program.clone(),
            selector: rule.selector(),
            rule: OnceLock::from(Some(rule)),
            json: None,
        };
        self.map.insert(name, entry);
    }

    /// The rule, decoded on first use. A cached rule that does not decode is absent, so the
    /// requests it would have allowed are denied.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        let e = self.map.get(name)?;
        e.rule
            .get_or_init(|| {
                e.json
                    .as_ref()
                    .and_then(|j| serde_json::from_str(j.get()).ok())
            })
            .as_ref()
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

#[derive(Serialize)]
struct EntryOut<'a> {
    program: &'a str,
    selector: Option<&'a str>,
    rule: &'a Rule,
}

#[derive(Deserialize)]
struct EntryIn {
    program: String,
    selector: Option<String>,
    rule: Box<RawValue>,
}

impl Serialize for Rules {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.map.len()))?;
        for (name, e) in &self.map {
            let Some(rule) = self.get(name) else { continue };
            m.serialize_entry(
                name,
                &EntryOut {
                    program: &e.program,
                    selector: e.selector.as_deref(),
                    rule,
                },
            )?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Rules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rules, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of rules")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Rules, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((name, e)) = access.next_entry::<String, EntryIn>()? {
                    map.insert(
                        name,
                        Entry {
                            program: e.program,
                            selector: e.selector,
                            rule: OnceLock::new(),
                            json: Some(e.rule),
                        },
                    );
                }
                Ok(Rules { map })
            }
        }
        d.deserialize_map(V)
    }
}
