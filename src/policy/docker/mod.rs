//! Docker rules: one docker command per rule (`ps`, `run`, `compose up`, ...), its allowed flags
//! with typed values, and its operands, read with docker's own flag tables and pflag's grammar.
//!
//! The argv that runs is re-spelled: the command words, each flag as `--long=value` (bools as
//! `--flag` or `--flag=false`), then `--` and the operands. For `run` the image follows `--`
//! and the container's command is passed through untouched, exactly as docker would have split
//! it. No global option ever reaches docker, and every docker rule pins `DOCKER_HOST` to the
//! engine the gateway asks about volumes.
#![forbid(unsafe_code)]

pub mod engine;
pub mod flags;
mod hints;
pub mod image;
pub mod values;

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::argv::pflag::{self, Kind, Repeat, Value};
use crate::trust;

use super::raw::{RawDocker, RawRule, Str};
use super::value::ValueSpec;
use super::{Builder, Refusal};
use flags::{Arity, Command};

/// Environment every docker rule adds: the CLI talks to the engine the gateway asked.
pub fn fixed_env() -> Vec<(String, String)> {
    vec![("DOCKER_HOST".into(), format!("unix://{}", engine::SOCKET))]
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DockerRule {
    #[serde(with = "command_by_name")]
    command: &'static Command,
    options: Vec<OptionRule>,
    args: Vec<ArgPat>,
    require_any: Vec<Vec<usize>>,
    /// `run`: the image type, and the `--pull` policy the gateway writes.
    image: Option<ValueSpec>,
    pull: Option<String>,
    /// `build`: the context directory's type.
    context: Option<ValueSpec>,
    /// `compose`: the `-f` file's type.
    file: Option<ValueSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OptionRule {
    /// Index into the command's flag table.
    flag: usize,
    value: Option<ValueSpec>,
    required: bool,
    repeat: bool,
    requires: Vec<usize>,
    conflicts: Vec<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ArgPat {
    spec: ValueSpec,
    optional: bool,
    /// `{type}...` (one or more) and `{type}*` (any number) repeat the last pattern.
    repeat: bool,
}

/// A command is stored by its words (the policy cache) and found again in the static table.
mod command_by_name {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::flags::{self, Command};

    pub fn serialize<S: Serializer>(c: &&'static Command, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.words)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static Command, D::Error> {
        let words = String::deserialize(d)?;
        flags::command(&words)
            .ok_or_else(|| D::Error::custom(format!("unknown docker command {words:?}")))
    }
}

const PULL_POLICIES: &[&str] = &["never", "missing", "always"];

pub(crate) fn build(
    b: &mut Builder,
    raw: &RawRule,
    docker: &toml::Spanned<RawDocker>,
) -> Option<DockerRule> {
    let d = docker.get_ref();
    let words = d
        .command
        .get_ref()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let Some(command) = flags::command(&words) else {
        let known: Vec<&str> = flags::COMMANDS.iter().map(|c| c.words).collect();
        b.error(
            d.command.span(),
            format!(
                "docker command {:?} is not one the gateway can judge; known: {}",
                d.command.get_ref(),
                known.join(", ")
            ),
        );
        return None;
    };
    // Every problem is reported; the rule exists only if none was.
    let errors_before = b.errors.len();
    if !raw.append.is_empty() {
        b.error(docker.span(), "a docker rule takes no append list".into());
    }
    let run = command.words == "run";
    let build_cmd = command.words == "build";
    let compose_with_file =
        command.is_compose() && !matches!(command.words, "compose ls" | "compose version");
    let key_for = |present: bool, wanted: bool, key: &str, span, b: &mut Builder| {
        if present != wanted {
            let msg = if wanted {
                format!("docker {} needs docker.{key}", command.words)
            } else {
                format!("docker.{key} does not apply to docker {}", command.words)
            };
            b.error(span, msg);
        }
    };
    key_for(d.image.is_some(), run, "image", docker.span(), b);
    key_for(d.context.is_some(), build_cmd, "context", docker.span(), b);
    key_for(
        d.file.is_some(),
        compose_with_file,
        "file",
        docker.span(),
        b,
    );
    if d.pull.is_some() && !run {
        b.error(
            docker.span(),
            "docker.pull applies to docker run only".into(),
        );
    }
    let pull = match &d.pull {
        Some(p) if !PULL_POLICIES.contains(&p.get_ref().as_str()) => {
            b.error(
                p.span(),
                format!("docker.pull must be one of {}", PULL_POLICIES.join(", ")),
            );
            None
        }
        Some(p) => Some(p.get_ref().clone()),
        None => None,
    };
    let typed = |b: &mut Builder, s: &Option<Str>| -> Option<ValueSpec> {
        let s = s.as_ref()?;
        b.named_value(s.get_ref(), s.span())
    };
    let image = typed(b, &d.image);
    let context = typed(b, &d.context);
    let file = typed(b, &d.file);

    let set = command.flag_set();
    let mut ordered: Vec<_> = raw.options.iter().collect();
    ordered.sort_by_key(|(k, _)| k.span().start);
    let mut options = Vec::new();
    for (key, opt) in &ordered {
        let name = key.get_ref();
        let Some(flag) = name
            .strip_prefix("--")
            .and_then(|n| set.flags.iter().position(|f| f.name == n))
        else {
            let hint = match name.strip_prefix("--").and_then(|n| set.long(n)) {
                Some(i) => format!("; write --{}", set.flags[i].name),
                None => String::new(),
            };
            b.error(
                key.span(),
                format!(
                    "docker {} has no flag {name}{hint} (write the long name, --flag)",
                    command.words
                ),
            );
            continue;
        };
        let f = set.flags[flag];
        if let Some(a) = opt.aliases.first() {
            b.error(
                a.span(),
                "docker flags take their short forms from docker's own table; remove aliases"
                    .into(),
            );
        }
        let value = match (&opt.value, f.kind) {
            (Some(v), Kind::Value) => b.value(v),
            (None, Kind::Bool) => None,
            (Some(v), Kind::Bool) => {
                b.error(
                    v.span(),
                    format!("{name} is a switch; it takes no value type"),
                );
                None
            }
            (None, Kind::Value) => {
                b.error(
                    key.span(),
                    format!("{name} takes a value; give it a value type"),
                );
                None
            }
        };
        if opt.repeat && f.repeat == Repeat::Last {
            b.error(
                key.span(),
                format!("docker keeps only the last {name}; it cannot repeat"),
            );
        }
        options.push(OptionRule {
            flag,
            value,
            required: opt.required,
            repeat: opt.repeat,
            requires: Vec::new(),
            conflicts: Vec::new(),
        });
    }
    let index_of = |b: &mut Builder, n: &Str| -> Option<usize> {
        let found = ordered.iter().position(|(k, _)| k.get_ref() == n.get_ref());
        if found.is_none() {
            b.error(
                n.span(),
                format!("{} is not one of this rule's options", n.get_ref()),
            );
        }
        found
    };
    if options.len() == ordered.len() {
        for (i, (_, opt)) in ordered.iter().enumerate() {
            for r in &opt.requires {
                if let Some(j) = index_of(b, r) {
                    options[i].requires.push(j);
                }
            }
            for c in &opt.conflicts {
                if let Some(j) = index_of(b, c) {
                    options[i].conflicts.push(j);
                }
            }
        }
    }
    let mut require_any = Vec::new();
    for group in &raw.require_any {
        let mut idx = Vec::new();
        for n in group {
            if let Some(j) = index_of(b, n) {
                idx.push(j);
            }
        }
        require_any.push(idx);
    }
    if pull.is_some() && options.iter().any(|o| set.flags[o.flag].name == "pull") {
        b.error(
            docker.span(),
            "docker.pull and an allowed --pull flag cannot be combined".into(),
        );
    }
    let args = match &raw.args {
        Some(_) if run || build_cmd => {
            b.error(
                docker.span(),
                format!(
                    "docker {} takes its operand from docker.{}, not args",
                    command.words,
                    if run { "image" } else { "context" }
                ),
            );
            Vec::new()
        }
        Some(words) => build_args(b, words, command).unwrap_or_default(),
        None => Vec::new(),
    };
    (b.errors.len() == errors_before).then_some(DockerRule {
        command,
        options,
        args,
        require_any,
        image,
        pull,
        context,
        file,
    })
}

fn build_args(b: &mut Builder, words: &[Str], command: &Command) -> Option<Vec<ArgPat>> {
    if command.arity == Arity::None && !words.is_empty() {
        b.error(
            words[0].span(),
            format!("docker {} takes no operands", command.words),
        );
        return None;
    }
    let mut out: Vec<ArgPat> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let text = w.get_ref();
        let parsed = text.strip_prefix('{').and_then(|t| {
            t.strip_suffix('}')
                .map(|n| (n, false, false))
                .or_else(|| t.strip_suffix("}?").map(|n| (n, true, false)))
                .or_else(|| t.strip_suffix("}...").map(|n| (n, false, true)))
                .or_else(|| t.strip_suffix("}*").map(|n| (n, true, true)))
        });
        let Some((name, optional, repeat)) = parsed else {
            b.error(
                w.span(),
                "docker operands are typed placeholders: {type}, {type}?, {type}... or {type}*"
                    .into(),
            );
            return None;
        };
        if out.last().is_some_and(|p| p.optional || p.repeat) && !optional {
            b.error(
                w.span(),
                "a required operand cannot follow an optional one".into(),
            );
            return None;
        }
        if repeat && i + 1 != words.len() {
            b.error(w.span(), "a repeated operand must be the last".into());
            return None;
        }
        let spec = b.named_value(name, w.span())?;
        out.push(ArgPat {
            spec,
            optional,
            repeat,
        });
    }
    Some(out)
}

/// A refusal that carries its own hint (it is about the command, not about this rule).
fn refusal_with_hint(index: usize, argument: &str, (message, hint): (String, String)) -> Refusal {
    let mut r = Refusal::at(index, argument, message);
    r.hint = Some(hint);
    r
}

/// Where the command's own words end and what its flags and operands look like.
struct Reading {
    /// Canonical words before the command's flags (`compose --file=F up`).
    head: Vec<String>,
    /// Offset of the command's flags within the request's arguments.
    offset: usize,
    parsed: pflag::Parsed,
}

impl DockerRule {
    /// Judges the arguments after `docker`; returns the canonical arguments.
    pub fn evaluate(&self, args: &[String]) -> Result<Vec<String>, Refusal> {
        let reading = self.read(args)?;
        let Reading {
            mut head,
            offset,
            parsed,
        } = reading;
        let words = self.command.words;
        let set = self.command.flag_set();
        let mut seen = vec![0usize; self.options.len()];
        let mut emitted: Vec<(usize, String)> = Vec::new();
        for u in &parsed.flags {
            let f = set.flags[u.flag];
            let Some(o) = self.options.iter().position(|o| o.flag == u.flag) else {
                return Err(Refusal::at(
                    offset + u.index,
                    &args[offset + u.index],
                    format!(
                        "flag {} (--{}) is not allowed for docker {words}",
                        u.spelled, f.name
                    ),
                ));
            };
            let rule = &self.options[o];
            seen[o] += 1;
            if seen[o] > 1 && !rule.repeat {
                return Err(Refusal::at(
                    offset + u.index,
                    &args[offset + u.index],
                    format!("flag --{} may be given only once", f.name),
                ));
            }
            let word = match (&u.value, &rule.value) {
                (Value::Bool(true), None) => format!("--{}", f.name),
                (Value::Bool(false), None) => format!("--{}=false", f.name),
                (Value::Text(v), Some(spec)) => {
                    spec.check(v).map_err(|why| {
                        Refusal::at(
                            offset + u.value_index,
                            v,
                            format!(
                                "value {v:?} of {} is refused: {why}; expected {}",
                                u.spelled,
                                spec.describe()
                            ),
                        )
                    })?;
                    format!("--{}={v}", f.name)
                }
                _ => {
                    return Err(Refusal::at(
                        offset + u.index,
                        &u.spelled,
                        format!("flag {} was read with the wrong arity", u.spelled),
                    ))
                }
            };
            emitted.push((o, word));
        }
        self.check_presence(&seen, args.len())?;
        let operands: Vec<&pflag::Arg> = parsed.args.iter().collect();
        let at = |a: &pflag::Arg| offset + a.index;
        let mut out = std::mem::take(&mut head);
        out.extend(emitted.into_iter().map(|(_, w)| w));
        match self.command.arity {
            Arity::ImageThenCommand => {
                let Some(img) = operands.first() else {
                    return Err(Refusal::missing(
                        args.len(),
                        "docker run needs an image".into(),
                    ));
                };
                let spec = self.image.as_ref().expect("run rules have an image type");
                spec.check(&img.value).map_err(|why| {
                    Refusal::at(
                        at(img),
                        &img.value,
                        format!("image {:?} is refused: {why}", img.value),
                    )
                })?;
                if let Some(p) = &self.pull {
                    out.push(format!("--pull={p}"));
                }
                out.push("--".into());
                out.extend(operands.iter().map(|a| a.value.clone()));
            }
            arity => {
                if let Some(spec) = &self.context {
                    let [dir] = operands.as_slice() else {
                        return Err(Refusal::missing(
                            args.len(),
                            format!(
                                "docker build takes exactly one directory: {}",
                                spec.describe()
                            ),
                        ));
                    };
                    let dir = &dir.value;
                    check_context(spec, dir).map_err(|why| {
                        Refusal::at(
                            at(operands[0]),
                            dir,
                            format!("build context {dir:?} is refused: {why}"),
                        )
                    })?;
                } else {
                    self.check_operands(&operands, arity, offset, args.len())?;
                }
                if !operands.is_empty() {
                    out.push("--".into());
                    out.extend(operands.iter().map(|a| a.value.clone()));
                }
            }
        }
        Ok(out)
    }

    /// The words a request must start with for this rule to concern it: the command's words,
    /// or just `compose` (compose's project options come before its subcommand).
    pub fn selector(&self) -> &'static str {
        if self.command.is_compose() {
            "compose"
        } else {
            self.command.words
        }
    }

    /// Matches the command words (and compose's project flags), then reads the command's flags.
    fn read(&self, args: &[String]) -> Result<Reading, Refusal> {
        let Some(first) = args.first() else {
            return Err(Refusal::missing(0, "docker needs a command".into()));
        };
        if first.starts_with('-') && first.len() > 1 {
            return Err(refusal_with_hint(
                0,
                first,
                hints::global_option_refused(first),
            ));
        }
        let words: Vec<&str> = self.command.words.split(' ').collect();
        let not_this = || refusal_with_hint(0, &args[0], hints::command_refused(args));
        let (head, offset) = if self.command.is_compose() {
            self.read_compose(args, words[1])?
        } else {
            let matches =
                args.len() >= words.len() && words.iter().zip(args).all(|(w, a)| *w == a.as_str());
            if !matches {
                return Err(not_this());
            }
            (words.iter().map(|w| w.to_string()).collect(), words.len())
        };
        let parsed = self
            .command
            .flag_set()
            .parse(&args[offset..])
            .map_err(|e| {
                let i = offset + e.index();
                let msg = match &e {
                    pflag::Error::Unknown { flag, .. } => format!(
                        "docker {} has no flag {flag} that the gateway knows, so it is not allowed",
                        self.command.words
                    ),
                    other => other.to_string(),
                };
                Refusal::at(i, &args[i], msg)
            })?;
        Ok(Reading {
            head,
            offset,
            parsed,
        })
    }

    /// `compose [--file F] SUB`: the project flags, the file check, then the subcommand.
    fn read_compose(&self, args: &[String], sub: &str) -> Result<(Vec<String>, usize), Refusal> {
        if args[0] != "compose" {
            return Err(refusal_with_hint(0, &args[0], hints::command_refused(args)));
        }
        let root = pflag::FlagSet {
            flags: flags::COMPOSE_ROOT,
            interspersed: false,
        };
        let parsed = root.parse(&args[1..]).map_err(|e| {
            let i = 1 + e.index();
            Refusal::at(i, &args[i], format!("docker compose: {e}"))
        })?;
        let Some(given) = parsed.args.first() else {
            return Err(Refusal::missing(
                args.len(),
                "docker compose needs a subcommand".into(),
            ));
        };
        if given.value != sub || parsed.dash.is_some() {
            return Err(refusal_with_hint(
                0,
                &given.value,
                hints::command_refused(args),
            ));
        }
        let mut head = vec!["compose".to_string()];
        let mut files = 0;
        for u in &parsed.flags {
            let f = flags::COMPOSE_ROOT[u.flag];
            let (Some(spec), "file", Value::Text(v)) = (&self.file, f.name, &u.value) else {
                return Err(Refusal::at(
                    1 + u.index,
                    &args[1 + u.index],
                    format!("docker compose option {} is not allowed", u.spelled),
                ));
            };
            files += 1;
            if files > 1 {
                return Err(Refusal::at(
                    1 + u.index,
                    &args[1 + u.index],
                    "docker compose takes one -f file here".into(),
                ));
            }
            check_compose_file(spec, v).map_err(|why| {
                Refusal::at(
                    1 + u.value_index,
                    v,
                    format!(
                        "compose file {v:?} is refused: {why}; expected {}",
                        spec.describe()
                    ),
                )
            })?;
            head.push(format!("--file={v}"));
        }
        if self.file.is_some() && files == 0 {
            return Err(Refusal::missing(
                1 + given.index,
                "docker compose needs -f /srv/compose/PROJECT/compose.yaml".into(),
            ));
        }
        head.push(sub.to_string());
        Ok((head, 1 + given.index + 1))
    }

    fn check_presence(&self, seen: &[usize], end: usize) -> Result<(), Refusal> {
        let name = |i: usize| format!("--{}", self.command.flags[self.options[i].flag].name);
        for (i, rule) in self.options.iter().enumerate() {
            if seen[i] == 0 {
                if rule.required {
                    return Err(Refusal::missing(
                        end,
                        format!("flag {} is required", name(i)),
                    ));
                }
                continue;
            }
            if let Some(&r) = rule.requires.iter().find(|&&r| seen[r] == 0) {
                return Err(Refusal::missing(
                    end,
                    format!("flag {} needs {} as well", name(i), name(r)),
                ));
            }
            if let Some(&c) = rule.conflicts.iter().find(|&&c| seen[c] > 0) {
                return Err(Refusal::missing(
                    end,
                    format!("flags {} and {} cannot be combined", name(i), name(c)),
                ));
            }
        }
        for group in &self.require_any {
            if group.iter().all(|&g| seen[g] == 0) {
                let names: Vec<String> = group.iter().map(|&g| name(g)).collect();
                return Err(Refusal::missing(
                    end,
                    format!("at least one of {} is required", names.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn check_operands(
        &self,
        operands: &[&pflag::Arg],
        arity: Arity,
        offset: usize,
        end: usize,
    ) -> Result<(), Refusal> {
        let n = operands.len();
        let arity_ok = match arity {
            Arity::None => n == 0,
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::AtMost(k) => n <= k,
            Arity::ImageThenCommand => n >= 1,
        };
        let mut pats = self.args.iter();
        let mut last: Option<&ArgPat> = None;
        for a in operands {
            let pat = match pats.next() {
                Some(p) => {
                    last = Some(p);
                    p
                }
                None => match last.filter(|p| p.repeat) {
                    Some(p) => p,
                    None => {
                        let msg = if a.value.starts_with('-') && a.value.len() > 1 {
                            format!("{:?} is not allowed here", a.value)
                        } else {
                            format!(
                                "unexpected argument {:?} for docker {}",
                                a.value, self.command.words
                            )
                        };
                        return Err(Refusal::at(offset + a.index, &a.value, msg));
                    }
                },
            };
            pat.spec.check(&a.value).map_err(|why| {
                Refusal::at(
                    offset + a.index,
                    &a.value,
                    format!(
                        "argument {:?} is refused: {why}; expected {}",
                        a.value,
                        pat.spec.describe()
                    ),
                )
            })?;
        }
        if let Some(p) = pats.next().filter(|p| !p.optional) {
            return Err(Refusal::missing(
                end,
                format!("an argument is missing: {}", p.spec.describe()),
            ));
        }
        if !arity_ok {
            return Err(Refusal::missing(
                end,
                format!(
                    "docker {} was given {n} arguments, which docker refuses",
                    self.command.words
                ),
            ));
        }
        Ok(())
    }

    /// `COMMAND [--flag VALUE]... OPERANDS`, as help texts and denials show it.
    pub fn synopsis(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.file {
            let _ = write!(
                s,
                "compose -f {} {}",
                f.placeholder(),
                &self.command.words[8..]
            );
        } else {
            s.push_str(self.command.words);
        }
        for o in &self.options {
            let name = self.command.flags[o.flag].name;
            let usage = match &o.value {
                Some(v) => format!("--{name} {}", v.placeholder()),
                None => format!("--{name}"),
            };
            let rep = if o.repeat { "..." } else { "" };
            if o.required {
                let _ = write!(s, " {usage}{rep}");
            } else {
                let _ = write!(s, " [{usage}]{rep}");
            }
        }
        if let Some(i) = &self.image {
            let _ = write!(s, " {} [COMMAND [ARG...]]", i.placeholder());
        }
        if let Some(c) = &self.context {
            let _ = write!(s, " {}", c.placeholder());
        }
        for p in &self.args {
            let ph = p.spec.placeholder();
            match (p.optional, p.repeat) {
                (false, false) => {
                    let _ = write!(s, " {ph}");
                }
                (true, false) => {
                    let _ = write!(s, " [{ph}]");
                }
                (false, true) => {
                    let _ = write!(s, " {ph}...");
                }
                (true, true) => {
                    let _ = write!(s, " [{ph}...]");
                }
            }
        }
        s
    }
}

/// Root's alone, when it exists. A missing path is left to docker, which fails on it: the type
/// check already found every existing directory above it root's alone, so nobody else can
/// create it meanwhile.
fn locked_if_present(path: &Path) -> Result<(), String> {
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    trust::locked_here(path).map_err(|e| e.to_string())
}

/// A build context: the policy's path type, and the directory itself root's alone (the
/// legacy builder reads `DIR/Dockerfile` from it, so that file too).
fn check_context(spec: &ValueSpec, dir: &str) -> Result<(), String> {
    spec.check(dir)?;
    locked_if_present(Path::new(dir))?;
    locked_if_present(&Path::new(dir).join("Dockerfile"))
}

/// A compose file: the policy's path type, the file and its directory root's alone, and the
/// project's `.env` (which compose loads into its own environment) too.
fn check_compose_file(spec: &ValueSpec, file: &str) -> Result<(), String> {
    spec.check(file)?;
    locked_if_present(Path::new(file))?;
    if let Some(dir) = Path::new(file).parent() {
        locked_if_present(dir)?;
        locked_if_present(&dir.join(".env"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
