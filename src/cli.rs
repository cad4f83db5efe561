//! The gateway's own command line. The requested argv of `run` never passes through here: it is
//! split off in `main` before any option parsing, so no caller word can become a gateway option.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use gateway::policy::POLICY_PATH;

pub const EXIT_CODES: &str = "\
Exit status:
  run, ssh:  the program's own status when allowed; 77 denied; 78 the policy or the
             gateway binary cannot be used (denied too); 124 a rule's time limit stopped
             the program; 126 the program could not be started
  check:     0 allowed / policy and tests OK; 77 denied; 78 policy invalid or a test failed
  notify, watch: 0 done (undelivered alerts stay queued); 77 not root; 78 unusable config
  alert test: 0 every webhook took the message; 69 one did not (or none is configured)
  all:       64 usage error";

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Typed, audited root access for one semi-trusted account, through sudo or SSH",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run PROGRAM ARGS if the policy allows it (the sudo entry point; also reached through
    /// links named after programs). Everything after `run` is the request, never an option.
    Run {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM ARGS"
        )]
        request: Vec<String>,
    },
    /// The SSH forced command: reads SSH_ORIGINAL_COMMAND, re-enters through sudo, decides.
    Ssh,
    /// Validate a policy and run its tests, or judge a request without running it.
    Check(CheckArgs),
    /// Deliver queued alerts to the webhooks (run by gateway-notify.path/.timer, or started
    /// detached by a denied request).
    Notify(NotifyArgs),
    /// Compare crontabs, sudoers, authorized_keys and the policy with root-only snapshots and
    /// queue an alert with a diff for each change (run by gateway-watch.path/.timer).
    Watch(ConfigArg),
    /// Alert tools.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test message through every configured webhook and report what each answered.
    Test(ConfigArg),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Policy file to read.
    #[arg(long, default_value = POLICY_PATH)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Policy file to read.
    #[arg(long, default_value = POLICY_PATH)]
    pub config: PathBuf,
    /// One pass: send what is due now and exit, without waiting for windows or retries.
    #[arg(long)]
    pub once: bool,
    /// Internal: the intermediate of the detached start (start a deliverer, exit).
    #[arg(long, hide = true)]
    pub detach: bool,
    /// Internal: the detached deliverer; leave the caller's session first.
    #[arg(long, hide = true)]
    pub new_session: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file to read.
    #[arg(long, default_value = POLICY_PATH)]
    pub config: PathBuf,
    /// Judge a request made by this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Judge this SSH command string (as SSH_ORIGINAL_COMMAND) instead of an argv.
    #[arg(long, requires = "user")]
    pub ssh: Option<String>,
    /// Judge JSON lines from FILE (or - for stdin); one JSON line out per line in.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["user", "ssh"])]
    pub batch: Option<String>,
    /// Print the decision as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The request, after --.
    #[arg(last = true, value_name = "ARGV")]
    pub argv: Vec<String>,
}
