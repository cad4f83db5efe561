//! gateway: one audited door through which a semi-trusted account makes its root requests.
//!
//! Data flows one way: `request + policy -> decision -> audit -> exec | deny`. The tokenisers in
//! `argv` and the path checks in `trust` import nothing from the crate; `policy` builds on them;
//! `decision` is the single judgement used by `run`, `ssh` and `check`.
#![deny(unsafe_code)]

pub mod alert;
pub mod argv;
pub mod audit;
pub mod check;
pub mod clock;
pub mod decision;
pub mod exec;
pub mod install;
pub mod pipeline;
pub mod policy;
pub mod request;
mod system;
pub mod trust;
pub mod watch;
