//! The policy file as written: serde structs that mirror `gateway.toml` key for key.
//!
//! Every table refuses unknown keys, and names that later checks may complain about keep their
//! position (`Spanned`), so an error can point at file:line:col.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

pub type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub settings: RawSettings,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub users: BTreeMap<Str, RawUser>,
    #[serde(default)]
    pub programs: BTreeMap<Str, RawProgram>,
    #[serde(default)]
    pub types: BTreeMap<Str, Spanned<RawValueTable>>,
    #[serde(default)]
    pub rules: BTreeMap<Str, RawRule>,
    #[serde(default, rename = "test")]
    pub tests: Vec<Spanned<RawTest>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub audit_log: Option<Str>,
    pub syslog: Option<bool>,
    pub exec_path: Option<Str>,
    pub lang: Option<Str>,
    pub max_args: Option<usize>,
    pub max_arg_bytes: Option<usize>,
    pub max_total_bytes: Option<usize>,
}

/// `[alerts]`: where alerts queue and how they are delivered (see `policy::alerts`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub enabled: Option<bool>,
    pub webhooks_file: Option<Str>,
    pub spool_dir: Option<Str>,
    pub snapshot_dir: Option<Str>,
    pub sudo_log: Option<Str>,
    pub coalesce_seconds: Option<Spanned<u64>>,
    pub max_messages_per_window: Option<Spanned<u64>>,
    pub expire_hours: Option<Spanned<u64>>,
    pub retry_max_seconds: Option<Spanned<u64>>,
    pub trigger: Option<Str>,
    pub spool_max_files: Option<Spanned<u64>>,
    pub spool_max_mb: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub mode: Option<Str>,
    pub rules: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub paths: Vec<Str>,
    pub dialect: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub program: Str,
    pub description: Option<String>,
    pub hint: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<Str, String>,
    pub time_limit: Option<Spanned<u64>>,
    #[serde(default)]
    pub options: BTreeMap<Str, RawOption>,
    pub args: Option<Vec<Str>>,
    #[serde(default)]
    pub require_any: Vec<Vec<Str>>,
    #[serde(default)]
    pub append: Vec<Str>,
    pub timeout: Option<Spanned<RawTimeout>>,
    /// A docker rule: which docker command, and the types of its special operands.
    pub docker: Option<Spanned<RawDocker>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    /// `ps`, `system df`, `run`, `build`, `compose up`, ...
    pub command: Str,
    /// run: the type the image must match.
    pub image: Option<Str>,
    /// run: the `--pull` policy the gateway writes (never, missing, always).
    pub pull: Option<Str>,
    /// build: the type of the context directory.
    pub context: Option<Str>,
    /// compose: the type of the `-f` file.
    pub file: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOption {
    #[serde(default)]
    pub aliases: Vec<Str>,
    pub value: Option<Spanned<RawValue>>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub repeat: bool,
    #[serde(default)]
    pub requires: Vec<Str>,
    #[serde(default)]
    pub conflicts: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeout {
    pub max_seconds: u64,
    pub programs: Vec<Str>,
}

/// A value type: the name of a `[types]` entry or builtin, or an inline table.
#[derive(Debug)]
pub enum RawValue {
    Ref(String),
    Table(Box<RawValueTable>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValueTable {
    pub description: Option<String>,
    #[serde(rename = "enum")]
    pub enum_: Option<Vec<String>>,
    pub regex: Option<Str>,
    pub int: Option<[i64; 2]>,
    pub list: Option<Spanned<RawValue>>,
    pub sep: Option<char>,
    pub max_items: Option<usize>,
    pub path: Option<RawPath>,
    pub any_of: Option<Vec<Spanned<RawValue>>>,
    /// Docker image patterns (`alpine`, `alpine:*`, `local/*`).
    pub image: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPath {
    pub prefix: Str,
    pub name: Str,
    pub kind: Option<Str>,
    #[serde(default)]
    pub must_exist: bool,
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a type name or a table such as { regex = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Ref(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValue, A::Error> {
                let t = RawValueTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawValue::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub user: Str,
    /// `sudo` (default) or `ssh`.
    pub channel: Option<Str>,
    /// One case: the argv (sudo) ...
    pub argv: Option<Vec<String>>,
    /// ... or the SSH command string.
    pub command: Option<String>,
    /// One case: `allow` or `deny`.
    pub expect: Option<Str>,
    /// One case: the exact argv the gateway must run.
    pub exec: Option<Vec<String>>,
    /// One case: text the denial reason must contain.
    pub reason: Option<String>,
    /// Many cases: command lines that must be allowed (split like an SSH command).
    #[serde(default)]
    pub allow: Vec<Str>,
    /// Many cases: command lines that must be denied.
    #[serde(default)]
    pub deny: Vec<Str>,
    /// Why these cases exist; shown when one fails.
    pub why: Option<String>,
}
