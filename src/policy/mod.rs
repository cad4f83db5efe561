//! The policy: `gateway.toml` read and validated once into an immutable value.
//!
//! Loading never half-succeeds: every problem is collected as a `file:line:col` diagnostic and
//! the caller gets either a whole `Policy` or the list of what is wrong with it.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod cache;
pub mod diag;
pub mod docker;
mod generic;
mod raw;
mod rules;
mod timeout;
pub mod value;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::argv::getopt::Order;
use crate::argv::split;
use crate::trust;

pub use alerts::AlertSettings;
pub use diag::Diagnostic;
pub use rules::Rules;
pub use timeout::Wrapped;

use generic::GenericRule;
use raw::{RawPolicy, RawRule, RawValue, RawValueTable, Str};
use timeout::TimeoutRule;
use value::{NamedType, PathRule, Pattern, ValueSpec};

/// Where `run` and `ssh` read the policy. Fixed at build time: nothing a caller sends moves it.
pub const POLICY_PATH: &str = "/etc/gateway/gateway.toml";
const MAX_POLICY_BYTES: u64 = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct Policy {
    pub file: String,
    pub settings: Settings,
    pub alerts: AlertSettings,
    /// The cache keeps each user apart (see cache.rs): a request reads only its caller.
    #[serde(skip)]
    pub users: BTreeMap<String, User>,
    pub programs: BTreeMap<String, Program>,
    /// The cache keeps the rules apart from the rest (see cache.rs), so they can be read one by one.
    #[serde(skip)]
    pub rules: Rules,
    /// Only `check` runs them; the cache does not keep them.
    #[serde(skip)]
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub audit_log: PathBuf,
    pub syslog: bool,
    pub exec_path: String,
    pub lang: String,
    pub max_args: usize,
    pub max_arg_bytes: usize,
    pub max_total_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            audit_log: PathBuf::from("/var/log/gateway/audit.jsonl"),
            syslog: true,
            exec_path: "/usr/sbin:/usr/bin:/sbin:/bin:/run/current-system/sw/bin".into(),
            lang: "C.UTF-8".into(),
            max_args: 256,
            max_arg_bytes: 4096,
            max_total_bytes: 65536,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Deny what the rules do not allow.
    Enforce,
    /// Run what the rules would deny (for a program the policy knows), and record it.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub mode: Mode,
    pub rules: Vec<String>,
    /// program -> this user's rules for it, in the user's order; built on first use, for this
    /// user only (a request concerns one user).
    #[serde(skip)]
    index: OnceLock<BTreeMap<String, Vec<Indexed>>>,
}

/// How a program reads its argv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dialect {
    /// GNU getopt_long; `getopt+` stops at the first operand.
    Getopt(Order),
    /// Exact documented spellings only (hand-written parsers).
    Exact,
    /// `NAME=VALUE` operands (dd).
    Operands,
    /// spf13/pflag as the docker CLI reads it; such programs take docker rules.
    Pflag,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    pub paths: Vec<PathBuf>,
    pub dialect: Dialect,
    #[serde(skip)]
    resolution: OnceLock<Resolution>,
}

/// Which configured path runs, decided once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The first candidate that exists and that only root can change.
    Trusted(PathBuf),
    /// Candidates exist, but none is locked to root; says why for each.
    Untrusted(String),
    /// No candidate exists on this host.
    Missing,
}

impl Program {
    pub fn resolve(&self) -> &Resolution {
        self.resolution.get_or_init(|| {
            let mut problems = Vec::new();
            for p in &self.paths {
                match trust::resolve_program(p) {
                    Ok(_) => return Resolution::Trusted(p.clone()),
                    Err(trust::Distrust::Missing(_)) => {}
                    Err(e) => problems.push(format!("{}: {e}", p.display())),
                }
            }
            if problems.is_empty() {
                Resolution::Missing
            } else {
                Resolution::Untrusted(problems.join("; "))
            }
        })
    }

    /// Whether `argv0` names this program: its bare name or one of its configured paths.
    pub fn answers_to(&self, argv0: &str) -> bool {
        argv0 == self.name || self.paths.iter().any(|p| p.as_os_str() == argv0)
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub program: String,
    pub description: Option<String>,
    pub hint: Option<String>,
    pub env: Vec<(String, String)>,
    pub time_limit: Option<u64>,
    body: RuleBody,
}

#[derive(Debug, Serialize, Deserialize)]
enum RuleBody {
    Generic(GenericRule),
    Timeout(TimeoutRule),
    Docker(Box<docker::DockerRule>),
}

/// What a rule makes of the arguments it accepted.
#[derive(Debug)]
pub enum Outcome {
    /// The program's arguments, re-spelled.
    Args(Vec<String>),
    /// A wrapper around another request, which the decision validates again.
    Wrap(Wrapped, Vec<String>),
}

/// Why a rule refused, and how far it read before refusing: when several rules refuse, the
/// one that got furthest, and among those one that recognised the word it refuses, explains
/// the denial best.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub argument: Option<String>,
    pub message: String,
    /// The rule knew the refused word (its own option with a bad value, an abbreviation of one
    /// of its options), rather than not knowing it at all.
    pub specific: bool,
    /// Replaces the rule's hint when the refusal is not about this rule's own shape.
    pub hint: Option<String>,
}

impl Refusal {
    /// A word the rule recognised but refuses.
    pub fn at(index: usize, argument: &str, message: String) -> Refusal {
        Refusal {
            index,
            argument: Some(argument.to_string()),
            message,
            specific: true,
            hint: None,
        }
    }

    /// A word the rule does not know at all.
    pub fn unknown(index: usize, argument: &str, message: String) -> Refusal {
        Refusal {
            specific: false,
            ..Refusal::at(index, argument, message)
        }
    }

    /// Something missing or conflicting, found after reading every word.
    pub fn missing(index: usize, message: String) -> Refusal {
        Refusal {
            index,
            argument: None,
            message,
            specific: true,
            hint: None,
        }
    }

    /// Whether this refusal explains a denial better than `other`.
    pub fn outranks(&self, other: &Refusal) -> bool {
        (self.index, self.specific) > (other.index, other.specific)
    }
}

impl Rule {
    /// Judges the arguments after argv[0].
    pub fn evaluate(&self, args: &[String]) -> Result<Outcome, Refusal> {
        match &self.body {
            RuleBody::Generic(g) => g.evaluate(args).map(Outcome::Args),
            RuleBody::Timeout(t) => t
                .evaluate(args)
                .map(|w| Outcome::Wrap(w, t.programs.clone())),
            RuleBody::Docker(d) => d.evaluate(args).map(Outcome::Args),
        }
    }

    /// `program ARGS` as this rule accepts them.
    pub fn synopsis(&self) -> String {
        let rest = match &self.body {
            RuleBody::Generic(g) => g.synopsis(),
            RuleBody::Timeout(t) => t.synopsis(),
            RuleBody::Docker(d) => d.synopsis(),
        };
        if rest.is_empty() {
            self.program.clone()
        } else {
            format!("{} {rest}", self.program)
        }
    }

    /// The leading words a request must have for this rule to concern it (a docker rule's
    /// command); a request without them gets the same refusal from every such rule.
    pub fn selector(&self) -> Option<String> {
        match &self.body {
            RuleBody::Docker(d) => Some(d.selector().to_string()),
            RuleBody::Generic(_) | RuleBody::Timeout(_) => None,
        }
    }

    pub fn is_wrapper(&self) -> bool {
        matches!(self.body, RuleBody::Timeout(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestInput {
    Argv(Vec<String>),
    Ssh(Option<String>),
}

#[derive(Debug)]
pub struct TestCase {
    /// `file:line` of the `[[test]]` entry or list item.
    pub location: String,
    pub user: String,
    pub input: TestInput,
    pub expect: Expect,
    pub exec: Option<Vec<String>>,
    pub reason: Option<String>,
    pub why: Option<String>,
}

impl Policy {
    /// Reads and validates the policy at `path`.
    pub fn load(path: &Path) -> Result<Policy, Vec<Diagnostic>> {
        let name = path.display().to_string();
        let text = read_bounded(path).map_err(|e| vec![Diagnostic::whole(&name, e)])?;
        Policy::parse(&name, &text)
    }

    /// Validates policy text; `file` names it in diagnostics. Regexes are syntax-checked here
    /// and built on first use.
    pub fn parse(file: &str, text: &str) -> Result<Policy, Vec<Diagnostic>> {
        Policy::parse_with(file, text, false)
    }

    /// Like `parse`, and also builds every regex, so a pattern too large to build is reported
    /// with its position (`gateway check`).
    pub fn parse_strict(file: &str, text: &str) -> Result<Policy, Vec<Diagnostic>> {
        Policy::parse_with(file, text, true)
    }

    /// `load`, with every regex built (`gateway check`).
    pub fn load_strict(path: &Path) -> Result<Policy, Vec<Diagnostic>> {
        let name = path.display().to_string();
        let text = read_bounded(path).map_err(|e| vec![Diagnostic::whole(&name, e)])?;
        Policy::parse_strict(&name, &text)
    }

    fn parse_with(file: &str, text: &str, eager: bool) -> Result<Policy, Vec<Diagnostic>> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            vec![Diagnostic::at(
                file,
                text,
                e.span(),
                e.message().trim().to_string(),
            )]
        })?;
        let mut b = Builder::new(file, text, &raw);
        b.eager = eager;
        let policy = b.policy(&raw);
        match policy {
            Some(p) if b.errors.is_empty() => Ok(p),
            _ => Err(b.errors),
        }
    }

    /// The program `argv0` names, if the policy knows it.
    pub fn program_for(&self, argv0: &str) -> Option<&Program> {
        if !argv0.starts_with('/') {
            return self.programs.get(argv0);
        }
        self.programs.values().find(|p| p.answers_to(argv0))
    }

    /// The user's rules for one program, in the order the user lists them.
    pub fn rules_for<'a>(
        &'a self,
        user: &'a User,
        program: &'a str,
    ) -> impl Iterator<Item = &'a Rule> {
        self.indexed_for(user, program)
            .filter_map(|e| self.rules.get(&e.name))
    }

    /// program -> the user's rule names and selectors, from the rule table without decoding any
    /// rule.
    fn index<'a>(&self, user: &'a User) -> &'a BTreeMap<String, Vec<Indexed>> {
        user.index.get_or_init(|| {
            let mut index: BTreeMap<String, Vec<Indexed>> = BTreeMap::new();
            for name in &user.rules {
                if let Some(program) = self.rules.program_of(name) {
                    index.entry(program.to_string()).or_default().push(Indexed {
                        name: name.clone(),
                        selector: self
                            .rules
                            .selector_of(name)
                            .map(|s| s.split(' ').map(String::from).collect()),
                    });
                }
            }
            index
        })
    }

    /// The user's rules for one program that a request with these arguments can concern (a
    /// docker rule for another command cannot), in the user's order.
    pub fn candidate_rules<'a>(
        &'a self,
        user: &'a User,
        program: &'a str,
        args: &'a [String],
    ) -> impl Iterator<Item = &'a Rule> {
        self.indexed_for(user, program)
            .filter(move |e| e.may_accept(args))
            .filter_map(|e| self.rules.get(&e.name))
    }

    fn indexed_for<'a>(
        &'a self,
        user: &'a User,
        program: &'a str,
    ) -> impl Iterator<Item = &'a Indexed> {
        self.index(user).get(program).into_iter().flatten()
    }
}

/// A rule name in the per-user index, with the words a request must start with for it to
/// matter (a docker rule's command), so choosing candidates looks nothing up.
#[derive(Debug)]
struct Indexed {
    name: String,
    selector: Option<Vec<String>>,
}

impl Indexed {
    fn may_accept(&self, args: &[String]) -> bool {
        self.selector
            .as_deref()
            .is_none_or(|words| args.starts_with(words))
    }
}

/// Checks that the policy file could only have been written by root; gives what `stat` of it
/// gives.
pub fn check_policy_file(path: &Path) -> Result<std::fs::Metadata, Diagnostic> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    trust::resolve_locked_metadata(&absolute)
        .map(|(_, md)| md)
        .map_err(|e| {
            Diagnostic::whole(
                &path.display().to_string(),
                format!("refusing a policy that root alone does not control: {e}"),
            )
        })
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!("larger than {MAX_POLICY_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

/// Turns the raw file into the validated model, collecting every error on the way.
pub(crate) struct Builder<'a> {
    file: &'a str,
    source: &'a str,
    errors: Vec<Diagnostic>,
    raw_types: &'a BTreeMap<Str, Spanned<RawValueTable>>,
    types: BTreeMap<String, Arc<NamedType>>,
    resolving: BTreeSet<String>,
    programs: BTreeSet<String>,
    /// Byte offset of each line start, for cheap line numbers.
    line_starts: Vec<usize>,
    /// Build every regex now (check) rather than on first use (run).
    eager: bool,
}

const BUILTIN_TYPES: &[&str] = &[
    "iface",
    "container_name",
    "docker_image",
    "docker_gpus",
    "docker_publish",
    "docker_volume",
    "docker_size",
    "docker_env",
];

impl<'a> Builder<'a> {
    fn new(file: &'a str, source: &'a str, raw: &'a RawPolicy) -> Self {
        Builder {
            file,
            source,
            errors: Vec::new(),
            raw_types: &raw.types,
            types: BTreeMap::new(),
            resolving: BTreeSet::new(),
            programs: raw.programs.keys().map(|k| k.get_ref().clone()).collect(),
            eager: false,
            line_starts: std::iter::once(0)
                .chain(source.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        }
    }

    pub(crate) fn error(&mut self, span: impl Into<Option<Range<usize>>>, message: String) {
        self.errors
            .push(Diagnostic::at(self.file, self.source, span.into(), message));
    }

    pub(crate) fn has_program(&self, name: &str) -> bool {
        self.programs.contains(name)
    }

    /// A value type written inline or by name.
    pub(crate) fn value(&mut self, v: &Spanned<RawValue>) -> Option<ValueSpec> {
        match v.get_ref() {
            RawValue::Ref(name) => self.named_value(name, v.span()),
            RawValue::Table(t) => self.table(t, v.span()),
        }
    }

    /// A type by name: a builtin or an entry of `[types]`.
    pub(crate) fn named_value(&mut self, name: &str, span: Range<usize>) -> Option<ValueSpec> {
        if name == "iface" {
            return Some(ValueSpec::Iface);
        }
        if let Some(t) = docker::values::builtin(name) {
            return Some(ValueSpec::Docker(t));
        }
        if let Some(t) = self.types.get(name) {
            return Some(ValueSpec::Named(t.clone()));
        }
        let Some((_, raw)) = self.raw_types.iter().find(|(k, _)| k.get_ref() == name) else {
            let mut known: Vec<&str> = self
                .raw_types
                .keys()
                .map(|k| k.get_ref().as_str())
                .collect();
            known.extend(BUILTIN_TYPES);
            self.error(
                Some(span),
                format!("unknown type {name:?}; known types: {}", known.join(", ")),
            );
            return None;
        };
        if !self.resolving.insert(name.to_string()) {
            self.error(Some(span), format!("type {name:?} refers to itself"));
            return None;
        }
        let spec = self.table(raw.get_ref(), raw.span());
        self.resolving.remove(name);
        let named = Arc::new(NamedType {
            name: name.to_string(),
            description: raw.get_ref().description.clone(),
            spec: spec?,
        });
        self.types.insert(name.to_string(), named.clone());
        Some(ValueSpec::Named(named))
    }

    fn pattern(&mut self, s: &Str) -> Option<Pattern> {
        let built = Pattern::new(s.get_ref()).and_then(|p| {
            if self.eager {
                p.build()?;
            }
            Ok(p)
        });
        match built {
            Ok(p) => Some(p),
            Err(detail) => {
                let last = detail.lines().last().unwrap_or("").trim().to_string();
                self.error(
                    Some(s.span()),
                    format!("invalid regular expression: {last}"),
                );
                None
            }
        }
    }

    fn table(&mut self, t: &RawValueTable, span: Range<usize>) -> Option<ValueSpec> {
        let kinds = [
            t.enum_.is_some(),
            t.regex.is_some(),
            t.int.is_some(),
            t.list.is_some(),
            t.path.is_some(),
            t.any_of.is_some(),
            t.image.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            self.error(
                Some(span),
                "a value type needs exactly one of: enum, regex, int, list, path, any_of, image"
                    .into(),
            );
            return None;
        }
        if let Some(patterns) = &t.image {
            return match docker::image::Allowlist::new(patterns) {
                Ok(list) => Some(ValueSpec::Docker(docker::values::DockerType::Images(list))),
                Err(e) => {
                    self.error(Some(span), e);
                    None
                }
            };
        }
        if (t.sep.is_some() || t.max_items.is_some()) && t.list.is_none() {
            self.error(Some(span), "sep and max_items belong to a list type".into());
            return None;
        }
        if let Some(values) = &t.enum_ {
            if values.is_empty() {
                self.error(Some(span), "an enum needs at least one value".into());
                return None;
            }
            return Some(ValueSpec::Enum(values.clone()));
        }
        if let Some(r) = &t.regex {
            return self.pattern(r).map(ValueSpec::Regex);
        }
        if let Some([min, max]) = t.int {
            if min > max {
                self.error(Some(span), format!("int range [{min}, {max}] is empty"));
                return None;
            }
            return Some(ValueSpec::Int { min, max });
        }
        if let Some(item) = &t.list {
            let item = self.value(item)?;
            return Some(ValueSpec::List {
                item: Box::new(item),
                sep: t.sep.unwrap_or(','),
                max_items: t.max_items.unwrap_or(64),
            });
        }
        if let Some(p) = &t.path {
            let prefix = p.prefix.get_ref();
            if let Err(why) = value::lexically_clean(prefix) {
                self.error(
                    Some(p.prefix.span()),
                    format!("path prefix {prefix:?}: {why}"),
                );
                return None;
            }
            if prefix == "/" {
                self.error(
                    Some(p.prefix.span()),
                    "a path prefix of / allows everything".into(),
                );
                return None;
            }
            let kind = match p.kind.as_ref().map(|k| k.get_ref().as_str()) {
                None | Some("any") => trust::Kind::Any,
                Some("file") => trust::Kind::File,
                Some("dir") => trust::Kind::Dir,
                Some("block") => trust::Kind::Block,
                Some("char") => trust::Kind::Char,
                Some(other) => {
                    let s = p.kind.as_ref().map(|k| k.span());
                    self.error(
                        s,
                        format!("unknown path kind {other:?}; use file, dir, block, char or any"),
                    );
                    return None;
                }
            };
            let name = self.pattern(&p.name)?;
            return Some(ValueSpec::Path(PathRule {
                prefix: prefix.clone(),
                name,
                kind,
                must_exist: p.must_exist,
            }));
        }
        let alternatives = t.any_of.as_ref()?;
        let mut specs = Vec::new();
        for a in alternatives {
            specs.push(self.value(a)?);
        }
        Some(ValueSpec::AnyOf(specs))
    }

    fn policy(&mut self, raw: &RawPolicy) -> Option<Policy> {
        let settings = self.settings(raw);
        let alerts = alerts::build(self, &raw.alerts);
        let programs = self.programs(raw);
        let rules = self.rules(raw, &programs);
        let users = self.users(raw, &rules);
        let tests = self.tests(raw);
        // Types nobody references are still checked, so a typo cannot hide.
        for (name, _) in raw.types.iter() {
            self.named_value(name.get_ref(), name.span());
        }
        Some(Policy {
            file: self.file.to_string(),
            settings,
            alerts,
            users,
            programs,
            rules,
            tests,
        })
    }

    fn settings(&mut self, raw: &RawPolicy) -> Settings {
        let s = &raw.settings;
        let mut out = Settings::default();
        if let Some(p) = &s.audit_log {
            if let Err(why) = value::lexically_clean(p.get_ref()) {
                self.error(Some(p.span()), format!("audit_log: {why}"));
            }
            out.audit_log = PathBuf::from(p.get_ref());
        }
        if let Some(v) = s.syslog {
            out.syslog = v;
        }
        if let Some(p) = &s.exec_path {
            if p.get_ref()
                .split(':')
                .any(|d| value::lexically_clean(d).is_err())
            {
                self.error(
                    Some(p.span()),
                    "exec_path must be a ':'-separated list of absolute directories".into(),
                );
            }
            out.exec_path = p.get_ref().clone();
        }
        if let Some(l) = &s.lang {
            if !l
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
            {
                self.error(Some(l.span()), "lang must look like C.UTF-8".into());
            }
            out.lang = l.get_ref().clone();
        }
        out.max_args = s.max_args.unwrap_or(out.max_args);
        out.max_arg_bytes = s.max_arg_bytes.unwrap_or(out.max_arg_bytes);
        out.max_total_bytes = s.max_total_bytes.unwrap_or(out.max_total_bytes);
        out
    }

    fn programs(&mut self, raw: &RawPolicy) -> BTreeMap<String, Program> {
        let mut out = BTreeMap::new();
        for (name, p) in &raw.programs {
            let n = name.get_ref();
            let valid = !n.is_empty()
                && n.as_bytes()[0].is_ascii_alphanumeric()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
            if !valid || n == "gateway" {
                self.error(Some(name.span()), format!("{n:?} cannot be a program name"));
                continue;
            }
            let dialect = match p.dialect.get_ref().as_str() {
                "getopt" => Dialect::Getopt(Order::Permute),
                "getopt+" => Dialect::Getopt(Order::RequireOrder),
                "exact" => Dialect::Exact,
                "operands" => Dialect::Operands,
                "pflag" => Dialect::Pflag,
                other => {
                    self.error(
                        Some(p.dialect.span()),
                        format!(
                            "unknown dialect {other:?}; use getopt, getopt+, exact, operands or pflag"
                        ),
                    );
                    continue;
                }
            };
            if p.paths.is_empty() {
                self.error(
                    Some(name.span()),
                    format!("program {n} needs at least one path"),
                );
            }
            let mut paths = Vec::new();
            for path in &p.paths {
                if let Err(why) = value::lexically_clean(path.get_ref()) {
                    self.error(Some(path.span()), format!("program path: {why}"));
                }
                paths.push(PathBuf::from(path.get_ref()));
            }
            out.insert(
                n.clone(),
                Program {
                    name: n.clone(),
                    paths,
                    dialect,
                    resolution: OnceLock::new(),
                },
            );
        }
        out
    }

    fn rules(&mut self, raw: &RawPolicy, programs: &BTreeMap<String, Program>) -> Rules {
        let mut out = Rules::default();
        for (name, r) in &raw.rules {
            let Some(program) = programs.get(r.program.get_ref()) else {
                self.error(
                    Some(r.program.span()),
                    format!(
                        "rule {} names program {:?}, which is not under [programs]",
                        name.get_ref(),
                        r.program.get_ref()
                    ),
                );
                continue;
            };
            if let Some(rule) = self.rule(name, r, program.dialect) {
                out.insert(name.get_ref().clone(), rule);
            }
        }
        out
    }

    fn rule(&mut self, name: &Str, r: &RawRule, dialect: Dialect) -> Option<Rule> {
        let mut env = Vec::new();
        for (k, v) in &r.env {
            let key = k.get_ref();
            let valid = key
                .bytes()
                .enumerate()
                .all(|(i, b)| b == b'_' || b.is_ascii_uppercase() || (i > 0 && b.is_ascii_digit()));
            if !valid || key.is_empty() || key.starts_with("LD_") || key == "PATH" {
                self.error(
                    Some(k.span()),
                    format!("{key:?} cannot be set for a program (PATH comes from settings.exec_path; LD_* never)"),
                );
                return None;
            }
            env.push((key.clone(), v.clone()));
        }
        if let Some(t) = &r.time_limit {
            if *t.get_ref() == 0 || *t.get_ref() > 86_400 {
                self.error(
                    Some(t.span()),
                    "time_limit must be between 1 and 86400 seconds".into(),
                );
                return None;
            }
        }
        if (dialect == Dialect::Pflag) != r.docker.is_some() {
            let msg = if r.docker.is_some() {
                "a docker table belongs to a rule whose program has dialect = \"pflag\""
            } else {
                "rules for a pflag program are docker rules: add docker = { command = \"...\" }"
            };
            self.error(Some(r.program.span()), msg.into());
            return None;
        }
        if let Some(d) = &r.docker {
            if r.timeout.is_some() {
                self.error(
                    Some(d.span()),
                    "a rule is either a docker or a timeout rule".into(),
                );
                return None;
            }
            env.extend(docker::fixed_env());
        }
        let body = match &r.timeout {
            Some(_) if r.docker.is_some() => return None,
            None if r.docker.is_some() => {
                let d = r.docker.as_ref()?;
                RuleBody::Docker(Box::new(docker::build(self, r, d)?))
            }
            Some(t) => {
                let generic_keys = !r.options.is_empty()
                    || r.args.is_some()
                    || !r.require_any.is_empty()
                    || !r.append.is_empty();
                if generic_keys {
                    self.error(
                        Some(t.span()),
                        "a timeout rule takes no options, args, require_any or append".into(),
                    );
                    return None;
                }
                RuleBody::Timeout(timeout::build(self, t.get_ref())?)
            }
            None => RuleBody::Generic(generic::build(self, r, dialect)?),
        };
        Some(Rule {
            name: name.get_ref().clone(),
            program: r.program.get_ref().clone(),
            description: r.description.clone(),
            hint: r.hint.clone(),
            env,
            time_limit: r.time_limit.as_ref().map(|t| *t.get_ref()),
            body,
        })
    }

    fn users(&mut self, raw: &RawPolicy, rules: &Rules) -> BTreeMap<String, User> {
        let mut out = BTreeMap::new();
        for (name, u) in &raw.users {
            let mode = match u.mode.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("enforce") => Mode::Enforce,
                Some("audit") => Mode::Audit,
                Some(other) => {
                    let span = u.mode.as_ref().map(|m| m.span());
                    self.error(
                        span,
                        format!("unknown mode {other:?}; use enforce or audit"),
                    );
                    continue;
                }
            };
            for r in &u.rules {
                if !rules.contains_key(r.get_ref())
                    && !raw.rules.keys().any(|k| k.get_ref() == r.get_ref())
                {
                    self.error(Some(r.span()), format!("unknown rule {:?}", r.get_ref()));
                }
            }
            out.insert(
                name.get_ref().clone(),
                User {
                    name: name.get_ref().clone(),
                    mode,
                    rules: u.rules.iter().map(|r| r.get_ref().clone()).collect(),
                    index: OnceLock::new(),
                },
            );
        }
        out
    }

    fn location(&self, span: Range<usize>) -> String {
        let line = self
            .line_starts
            .partition_point(|&start| start <= span.start);
        format!("{}:{line}", self.file)
    }

    fn tests(&mut self, raw: &RawPolicy) -> Vec<TestCase> {
        let mut out = Vec::new();
        for t in &raw.tests {
            let span = t.span();
            let t = t.get_ref();
            let ssh = match t.channel.as_ref().map(|c| c.get_ref().as_str()) {
                None | Some("sudo") => false,
                Some("ssh") => true,
                Some(other) => {
                    let s = t.channel.as_ref().map(|c| c.span());
                    self.error(s, format!("unknown channel {other:?}; use sudo or ssh"));
                    continue;
                }
            };
            let single = t.argv.is_some() || t.command.is_some() || t.expect.is_some();
            let many = !t.allow.is_empty() || !t.deny.is_empty();
            if single == many {
                self.error(
                    Some(span),
                    "a [[test]] has either argv/command with expect, or allow/deny lists".into(),
                );
                continue;
            }
            if single {
                let expect = match t.expect.as_ref().map(|e| e.get_ref().as_str()) {
                    Some("allow") => Expect::Allow,
                    Some("deny") => Expect::Deny,
                    _ => {
                        self.error(Some(span), "expect must be \"allow\" or \"deny\"".into());
                        continue;
                    }
                };
                let input = match (&t.argv, ssh) {
                    (Some(argv), false) => TestInput::Argv(argv.clone()),
                    (None, true) => TestInput::Ssh(t.command.clone()),
                    _ => {
                        self.error(
                            Some(span),
                            "a sudo test gives argv = [...]; an ssh test gives command = \"...\" (or none)".into(),
                        );
                        continue;
                    }
                };
                out.push(TestCase {
                    location: self.location(span),
                    user: t.user.get_ref().clone(),
                    input,
                    expect,
                    exec: t.exec.clone(),
                    reason: t.reason.clone(),
                    why: t.why.clone(),
                });
                continue;
            }
            if t.exec.is_some() || t.reason.is_some() {
                self.error(
                    Some(span),
                    "exec and reason belong to single-case tests".into(),
                );
                continue;
            }
            for (lines, expect) in [(&t.allow, Expect::Allow), (&t.deny, Expect::Deny)] {
                for line in lines {
                    let input = if ssh {
                        TestInput::Ssh(Some(line.get_ref().clone()))
                    } else {
                        match split::split(line.get_ref()) {
                            Ok(words) => TestInput::Argv(words),
                            Err(e) => {
                                self.error(
                                    Some(line.span()),
                                    format!("cannot split test line: {e}"),
                                );
                                continue;
                            }
                        }
                    };
                    out.push(TestCase {
                        location: self.location(line.span()),
                        user: t.user.get_ref().clone(),
                        input,
                        expect,
                        exec: None,
                        reason: None,
                        why: t.why.clone(),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
