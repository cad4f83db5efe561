//! The generic rule: a table of allowed options with typed values, constraints between them, and
//! a pattern for the operands. Most programs need nothing more; the tokeniser is picked by the
//! program's dialect, and the argv the gateway runs is re-spelled from what was validated.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::argv::{self, exact, getopt, operands, OptDef, ParseError, Parsed};

use super::raw::{RawOption, RawRule, Str};
use super::value::ValueSpec;
use super::{Builder, Dialect, Refusal};

#[derive(Debug, Serialize, Deserialize)]
pub struct GenericRule {
    dialect: Dialect,
    defs: Vec<OptDef>,
    options: Vec<OptionRule>,
    args: Vec<ArgPat>,
    require_any: Vec<Vec<usize>>,
    append: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OptionRule {
    canonical: String,
    value: Option<ValueSpec>,
    required: bool,
    repeat: bool,
    requires: Vec<usize>,
    conflicts: Vec<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
enum ArgPat {
    Literal(String),
    Typed {
        spec: ValueSpec,
        optional: bool,
        repeat: bool,
    },
}

fn valid_name(dialect: Dialect, name: &str) -> bool {
    let word = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    match dialect {
        Dialect::Getopt(_) => match name.strip_prefix("--") {
            Some(long) => word(long, b"-_"),
            None => {
                name.len() == 2
                    && name.starts_with('-')
                    && name.as_bytes()[1].is_ascii_alphanumeric()
            }
        },
        Dialect::Exact => {
            let body = name.strip_prefix("--").or_else(|| name.strip_prefix('-'));
            body.is_some_and(|b| word(b, b"-_."))
        }
        Dialect::Operands => word(name, b"_") && name.bytes().all(|b| !b.is_ascii_uppercase()),
        Dialect::Pflag => false,
    }
}

fn name_rule(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Getopt(_) => "-x or --long-name",
        Dialect::Exact => "-word or --word",
        Dialect::Operands => "a lower-case operand name such as if",
        Dialect::Pflag => "nothing: pflag programs take docker rules",
    }
}

pub fn build(b: &mut Builder, raw: &RawRule, dialect: Dialect) -> Option<GenericRule> {
    let mut ok = true;
    let mut defs = Vec::new();
    let mut options = Vec::new();
    let mut spellings: Vec<&Str> = Vec::new();
    // In file order, so synopses read the way the policy author wrote the rule.
    let mut ordered: Vec<(&Str, &RawOption)> = raw.options.iter().collect();
    ordered.sort_by_key(|(k, _)| k.span().start);
    for &(key, opt) in &ordered {
        let mut names = vec![key.get_ref().clone()];
        names.extend(opt.aliases.iter().map(|a| a.get_ref().clone()));
        for n in std::iter::once(key).chain(opt.aliases.iter()) {
            if !valid_name(dialect, n.get_ref()) {
                b.error(
                    n.span(),
                    format!(
                        "{:?} is not an option name for this program's dialect; write {}",
                        n.get_ref(),
                        name_rule(dialect)
                    ),
                );
                ok = false;
            }
            if spellings.iter().any(|s| s.get_ref() == n.get_ref()) {
                b.error(n.span(), format!("option {} is listed twice", n.get_ref()));
                ok = false;
            }
            spellings.push(n);
        }
        let value = match &opt.value {
            Some(v) => match b.value(v) {
                Some(spec) => Some(spec),
                None => {
                    ok = false;
                    None
                }
            },
            None => {
                if dialect == Dialect::Operands {
                    b.error(
                        key.span(),
                        format!("operand {} needs a value type", key.get_ref()),
                    );
                    ok = false;
                }
                None
            }
        };
        defs.push(OptDef {
            names,
            takes_value: opt.value.is_some() || dialect == Dialect::Operands,
        });
        options.push(OptionRule {
            canonical: key.get_ref().clone(),
            value,
            required: opt.required,
            repeat: opt.repeat,
            requires: Vec::new(),
            conflicts: Vec::new(),
        });
    }
    let index_of = |b: &mut Builder, name: &Str| -> Option<usize> {
        let found = ordered
            .iter()
            .position(|(k, _)| k.get_ref() == name.get_ref());
        if found.is_none() {
            b.error(
                name.span(),
                format!(
                    "{} is not one of this rule's options (use the option's key, not an alias)",
                    name.get_ref()
                ),
            );
        }
        found
    };
    for (i, (_, opt)) in ordered.iter().enumerate() {
        for r in &opt.requires {
            match index_of(b, r) {
                Some(j) => options[i].requires.push(j),
                None => ok = false,
            }
        }
        for c in &opt.conflicts {
            match index_of(b, c) {
                Some(j) => options[i].conflicts.push(j),
                None => ok = false,
            }
        }
    }
    let mut require_any = Vec::new();
    for group in &raw.require_any {
        let mut idx = Vec::new();
        for name in group {
            match index_of(b, name) {
                Some(j) => idx.push(j),
                None => ok = false,
            }
        }
        require_any.push(idx);
    }
    let args = match &raw.args {
        Some(words) => match build_args(b, words) {
            Some(a) => a,
            None => {
                ok = false;
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let append = raw.append.iter().map(|a| a.get_ref().clone()).collect();
    ok.then_some(GenericRule {
        dialect,
        defs,
        options,
        args,
        require_any,
        append,
    })
}

/// Reads an argument pattern: literal words and `{type}`, `{type}?`, `{type}...` placeholders.
fn build_args(b: &mut Builder, words: &[Str]) -> Option<Vec<ArgPat>> {
    let mut out = Vec::new();
    let mut ok = true;
    let mut tail_started = false;
    for (i, w) in words.iter().enumerate() {
        let text = w.get_ref();
        let placeholder = text.strip_prefix('{').and_then(|t| {
            t.strip_suffix('}')
                .map(|n| (n, false, false))
                .or_else(|| t.strip_suffix("}?").map(|n| (n, true, false)))
                .or_else(|| t.strip_suffix("}...").map(|n| (n, false, true)))
        });
        let Some((name, optional, repeat)) = placeholder else {
            if tail_started {
                b.error(
                    w.span(),
                    "a literal word cannot follow an optional or repeated placeholder".into(),
                );
                ok = false;
            }
            out.push(ArgPat::Literal(text.clone()));
            continue;
        };
        if tail_started && !optional {
            b.error(
                w.span(),
                "only optional placeholders may follow an optional or repeated one".into(),
            );
            ok = false;
        }
        if repeat && i + 1 != words.len() {
            b.error(
                w.span(),
                "a repeated placeholder must be the last word".into(),
            );
            ok = false;
        }
        tail_started |= optional || repeat;
        match b.named_value(name, w.span()) {
            Some(spec) => out.push(ArgPat::Typed {
                spec,
                optional,
                repeat,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl GenericRule {
    pub fn evaluate(&self, args: &[String]) -> Result<Vec<String>, Refusal> {
        let parsed = match self.dialect {
            Dialect::Getopt(order) => getopt::parse(args, &self.defs, order),
            Dialect::Exact => exact::parse(args, &self.defs),
            Dialect::Operands => operands::parse(args, &self.defs),
            Dialect::Pflag => exact::parse(args, &[]),
        }
        .map_err(|e| parse_refusal(e, args))?;
        self.check_operands(&parsed, args.len())?;
        self.check_options(&parsed, args.len())?;
        Ok(self.emit(args, &parsed))
    }

    /// Repeats and values first (a refusal there names the word), then what is missing or
    /// conflicting: those read every word, so they rank after any refusal of a word.
    fn check_options(&self, parsed: &Parsed, argc: usize) -> Result<(), Refusal> {
        let mut seen = vec![0usize; self.options.len()];
        for used in &parsed.options {
            let rule = &self.options[used.def];
            seen[used.def] += 1;
            if seen[used.def] > 1 && !rule.repeat {
                return Err(Refusal::at(
                    used.index,
                    &used.spelled,
                    format!("option {} may be given only once", used.spelled),
                ));
            }
            match (&rule.value, &used.value) {
                (Some(spec), Some(v)) => spec.check(v).map_err(|why| {
                    Refusal::at(
                        used.index + 1,
                        v,
                        format!(
                            "value {v:?} of option {} is refused: {why}; expected {}",
                            used.spelled,
                            spec.describe()
                        ),
                    )
                })?,
                (None, None) => {}
                _ => {
                    return Err(Refusal::at(
                        used.index,
                        &used.spelled,
                        format!("option {} was read with the wrong arity", used.spelled),
                    ))
                }
            }
        }
        let end = argc;
        for (i, rule) in self.options.iter().enumerate() {
            if seen[i] == 0 {
                if rule.required {
                    return Err(Refusal::missing(
                        end,
                        format!("option {} is required", self.usage_of(i)),
                    ));
                }
                continue;
            }
            if let Some(&r) = rule.requires.iter().find(|&&r| seen[r] == 0) {
                return Err(Refusal::missing(
                    end,
                    format!(
                        "option {} needs option {} as well",
                        rule.canonical,
                        self.usage_of(r)
                    ),
                ));
            }
            if let Some(&c) = rule.conflicts.iter().find(|&&c| seen[c] > 0) {
                return Err(Refusal::missing(
                    end,
                    format!(
                        "options {} and {} cannot be combined",
                        rule.canonical, self.options[c].canonical
                    ),
                ));
            }
        }
        for group in &self.require_any {
            if group.iter().all(|&g| seen[g] == 0) {
                let names: Vec<String> = group.iter().map(|&g| self.usage_of(g)).collect();
                return Err(Refusal::missing(
                    end,
                    format!("at least one of {} is required", names.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn check_operands(&self, parsed: &Parsed, argc: usize) -> Result<(), Refusal> {
        let mut pats = self.args.iter().peekable();
        let mut last_repeat: Option<&ValueSpec> = None;
        for op in &parsed.operands {
            let refuse_unexpected = || {
                let msg = if op.value.starts_with('-') && op.value.len() > 1 {
                    format!("option {} is not allowed", op.value)
                } else {
                    format!("unexpected argument {:?}", op.value)
                };
                Refusal::unknown(op.index, &op.value, msg)
            };
            let spec = match pats.next() {
                Some(ArgPat::Literal(l)) => {
                    if &op.value != l {
                        let msg = if op.value.starts_with('-') && !l.starts_with('-') {
                            format!("option {} is not allowed here; expected {l:?}", op.value)
                        } else {
                            format!("argument {:?} is refused; expected {l:?}", op.value)
                        };
                        return Err(Refusal::unknown(op.index, &op.value, msg));
                    }
                    continue;
                }
                Some(ArgPat::Typed { spec, repeat, .. }) => {
                    if *repeat {
                        last_repeat = Some(spec);
                    }
                    spec
                }
                None => match last_repeat {
                    Some(spec) => spec,
                    None => return Err(refuse_unexpected()),
                },
            };
            if op.value.starts_with('-') {
                return Err(refuse_unexpected());
            }
            spec.check(&op.value).map_err(|why| {
                Refusal::at(
                    op.index,
                    &op.value,
                    format!(
                        "argument {:?} is refused: {why}; expected {}",
                        op.value,
                        spec.describe()
                    ),
                )
            })?;
        }
        for pat in pats {
            match pat {
                ArgPat::Literal(l) => {
                    return Err(Refusal::missing(argc, format!("argument {l:?} is missing")))
                }
                ArgPat::Typed {
                    spec,
                    optional: false,
                    ..
                } => {
                    return Err(Refusal::missing(
                        argc,
                        format!("an argument is missing: {}", spec.describe()),
                    ))
                }
                ArgPat::Typed { .. } => {}
            }
        }
        Ok(())
    }

    /// The argv the program will see: canonical spellings in the rule's option order (repeats
    /// keep their order: `-e` fields are columns), then appended words, then `--` and operands.
    /// The exact dialect is passed on as written: it has no other spelling.
    fn emit(&self, args: &[String], parsed: &Parsed) -> Vec<String> {
        let mut out = Vec::with_capacity(args.len() + self.append.len() + 1);
        let mut options: Vec<&argv::OptUse> = parsed.options.iter().collect();
        options.sort_by_key(|o| o.def);
        match self.dialect {
            Dialect::Exact | Dialect::Pflag => out.extend(args.iter().cloned()),
            Dialect::Operands => {
                for used in options {
                    let name = &self.options[used.def].canonical;
                    out.push(format!("{name}={}", used.value.as_deref().unwrap_or("")));
                }
            }
            Dialect::Getopt(_) => {
                for used in options {
                    let name = &self.options[used.def].canonical;
                    match &used.value {
                        None => out.push(name.clone()),
                        Some(v) if name.starts_with("--") => out.push(format!("{name}={v}")),
                        Some(v) => {
                            out.push(name.clone());
                            out.push(v.clone());
                        }
                    }
                }
            }
        }
        for word in &self.append {
            if !out.contains(word) {
                out.push(word.clone());
            }
        }
        if let Dialect::Getopt(_) = self.dialect {
            if !parsed.operands.is_empty() {
                out.push("--".into());
                out.extend(parsed.operands.iter().map(|o| o.value.clone()));
            }
        }
        out
    }

    fn usage_of(&self, i: usize) -> String {
        let rule = &self.options[i];
        match &rule.value {
            None => rule.canonical.clone(),
            Some(spec) => {
                let p = spec.placeholder();
                match self.dialect {
                    Dialect::Operands => format!("{}={p}", rule.canonical),
                    Dialect::Exact if rule.canonical.starts_with("--") => {
                        format!("{}={p}", rule.canonical)
                    }
                    _ => format!("{} {p}", rule.canonical),
                }
            }
        }
    }

    /// One line saying what this rule accepts, for help texts and denials.
    pub fn synopsis(&self) -> String {
        let mut s = String::new();
        for (i, rule) in self.options.iter().enumerate() {
            let u = self.usage_of(i);
            let rep = if rule.repeat { "..." } else { "" };
            if rule.required {
                let _ = write!(s, " {u}{rep}");
            } else {
                let _ = write!(s, " [{u}]{rep}");
            }
        }
        for pat in &self.args {
            match pat {
                ArgPat::Literal(l) => {
                    let _ = write!(s, " {l}");
                }
                ArgPat::Typed {
                    spec,
                    optional,
                    repeat,
                } => {
                    let p = spec.placeholder();
                    let rep = if *repeat { "..." } else { "" };
                    if *optional {
                        let _ = write!(s, " [{p}]{rep}");
                    } else {
                        let _ = write!(s, " {p}{rep}");
                    }
                }
            }
        }
        s.trim_start().to_string()
    }
}

fn parse_refusal(e: ParseError, args: &[String]) -> Refusal {
    let index = e.index();
    let specific = !matches!(
        e,
        ParseError::UnknownOption { .. } | ParseError::BadWord { .. }
    );
    Refusal {
        index,
        argument: args.get(index).cloned(),
        message: e.to_string(),
        specific,
        hint: None,
    }
}
