//! Tokenisers for the option dialects of the programs the gateway guards.
//!
//! Each dialect reads an argv the way the real program does and returns the options and operands
//! it found, or the first token it cannot explain. Nothing here knows about policy: a caller hands
//! in the table of options it is willing to recognise. This module imports nothing from the crate.
#![forbid(unsafe_code)]

pub mod exact;
pub mod getopt;
pub mod operands;
pub mod pflag;
pub mod split;

use std::fmt;

use serde::{Deserialize, Serialize};

/// One option a tokeniser may recognise, with every spelling the program accepts for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptDef {
    /// Spellings as typed on the command line: `-u`, `--unit`, `-pm`, `--query-gpu`, `if`.
    pub names: Vec<String>,
    /// Whether the option carries a value.
    pub takes_value: bool,
}

impl OptDef {
    pub fn new(names: &[&str], takes_value: bool) -> OptDef {
        OptDef {
            names: names.iter().map(|n| n.to_string()).collect(),
            takes_value,
        }
    }

    fn has_name(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// One occurrence of an option in the argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptUse {
    /// Index into the table the tokeniser was given.
    pub def: usize,
    /// The spelling the caller used (`-u`, `--unit`).
    pub spelled: String,
    pub value: Option<String>,
    /// Index of the argv element where the option starts.
    pub index: usize,
}

/// An argument that is not an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    pub value: String,
    pub index: usize,
}

/// The tokenised argv: options and operands in the order they appeared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub options: Vec<OptUse>,
    pub operands: Vec<Operand>,
}

/// Why a tokeniser could not read an argv. Every variant names the argv index it stopped at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// An option that is not in the table.
    UnknownOption { index: usize, option: String },
    /// An unknown letter after known ones in a short cluster (`-vX`).
    UnknownInCluster { index: usize, option: String },
    /// A long option written as a prefix of a known one (GNU getopt would accept it).
    Abbreviation {
        index: usize,
        given: String,
        full: String,
    },
    /// A value-taking option at the end of argv.
    MissingValue { index: usize, option: String },
    /// `--flag=value` for a flag that takes no value.
    UnexpectedValue { index: usize, option: String },
    /// A value-taking option written in a form the program does not accept.
    ValueForm {
        index: usize,
        option: String,
        expected: String,
    },
    /// A word that is neither an option nor a valid operand (`dd` words without `=`).
    BadWord {
        index: usize,
        word: String,
        expected: String,
    },
}

impl ParseError {
    /// The argv index the error refers to.
    pub fn index(&self) -> usize {
        match self {
            ParseError::UnknownOption { index, .. }
            | ParseError::UnknownInCluster { index, .. }
            | ParseError::Abbreviation { index, .. }
            | ParseError::MissingValue { index, .. }
            | ParseError::UnexpectedValue { index, .. }
            | ParseError::ValueForm { index, .. }
            | ParseError::BadWord { index, .. } => *index,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownOption { option, .. }
            | ParseError::UnknownInCluster { option, .. } => {
                write!(f, "option {option} is not allowed")
            }
            ParseError::Abbreviation { given, full, .. } => write!(
                f,
                "{given} is an abbreviation of {full}; options must be written in full"
            ),
            ParseError::MissingValue { option, .. } => {
                write!(f, "option {option} needs a value")
            }
            ParseError::UnexpectedValue { option, .. } => {
                write!(f, "option {option} takes no value")
            }
            ParseError::ValueForm {
                option, expected, ..
            } => write!(f, "option {option} must be written as {expected}"),
            ParseError::BadWord { word, expected, .. } => {
                write!(f, "argument {word:?} is not {expected}")
            }
        }
    }
}
