//! coreutils `timeout SECONDS COMMAND...` as a typed wrapper: the duration is a plain positive
//! integer, no `timeout` options are offered, and COMMAND must be a request this same user could
//! make directly, validated again in full by the decision.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use super::raw::RawTimeout;
use super::value::ValueSpec;
use super::{Builder, Refusal};

#[derive(Debug, Serialize, Deserialize)]
pub struct TimeoutRule {
    seconds: ValueSpec,
    /// Programs the wrapped command may name.
    pub programs: Vec<String>,
}

/// A wrapper's own words, and the inner request it carries.
#[derive(Debug)]
pub struct Wrapped {
    /// Arguments of the wrapper before the inner program's path.
    pub before: Vec<String>,
    /// The inner request, its argv[0] still as the caller wrote it.
    pub inner: Vec<String>,
    /// Index of `inner[0]` within the wrapper's arguments.
    pub offset: usize,
}

pub fn build(b: &mut Builder, raw: &RawTimeout) -> Option<TimeoutRule> {
    if raw.max_seconds == 0 || raw.max_seconds > 86_400 {
        b.error(
            None,
            "timeout.max_seconds must be between 1 and 86400".into(),
        );
        return None;
    }
    let mut programs = Vec::new();
    for p in &raw.programs {
        if !b.has_program(p.get_ref()) {
            b.error(
                p.span(),
                format!("{} is not a program under [programs]", p.get_ref()),
            );
            return None;
        }
        programs.push(p.get_ref().clone());
    }
    Some(TimeoutRule {
        seconds: ValueSpec::Int {
            min: 1,
            max: i64::try_from(raw.max_seconds).unwrap_or(86_400),
        },
        programs,
    })
}

impl TimeoutRule {
    pub fn evaluate(&self, args: &[String]) -> Result<Wrapped, Refusal> {
        let Some(secs) = args.first() else {
            return Err(Refusal::missing(
                0,
                "timeout needs SECONDS and a command".into(),
            ));
        };
        if secs.starts_with('-') {
            return Err(Refusal::at(
                0,
                secs,
                format!("timeout options such as {secs} are not allowed; write timeout SECONDS COMMAND..."),
            ));
        }
        self.seconds.check(secs).map_err(|why| {
            Refusal::at(
                0,
                secs,
                format!(
                    "duration {secs:?} is refused: {why}; expected {}",
                    self.seconds.describe()
                ),
            )
        })?;
        if args.len() < 2 {
            return Err(Refusal::missing(
                1,
                "timeout needs a command after SECONDS".into(),
            ));
        }
        Ok(Wrapped {
            before: vec!["--".into(), secs.clone()],
            inner: args[1..].to_vec(),
            offset: 1,
        })
    }

    pub fn synopsis(&self) -> String {
        format!("SECONDS {{{}}} ...", self.programs.join("|"))
    }
}
