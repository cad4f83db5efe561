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
  install, uninstall:
             0 done; 1 failed (every change rolled back); 2 done, but a check found
             something that defeats the gateway; 78 the policy does not load or its tests fail
  deploy:    0 every host ok; 1 a host failed; 2 a host reported a defeating finding
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
    /// Install (or update) the gateway on this host: binary, policy, shims, sudoers, SSH keys.
    Install(InstallArgs),
    /// Remove what install put on this host.
    Uninstall(UninstallArgs),
    /// Install, update or uninstall on several hosts over ssh, in parallel.
    Deploy(DeployArgs),
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

/// Feature selection shared by install and deploy.
#[derive(Debug, Args)]
pub struct FeatureArgs {
    /// Every feature below.
    #[arg(long)]
    pub all: bool,
    /// Binary, policy, shims, the sudoers entry; the managed users' other sudo rules removed.
    #[arg(long)]
    pub sudo_restrictions: bool,
    /// Alert delivery (webhook) units.
    #[arg(long)]
    pub alerts: bool,
    /// Watch crontabs, sudoers, keys and the policy for changes.
    #[arg(long)]
    pub crontab_watch: bool,
    /// Core dumps off for the managed users and everything the gateway runs.
    #[arg(long)]
    pub core_limits: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub features: FeatureArgs,
    /// Print every change as a diff; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-install this binary and the policy with the features chosen before; restart services.
    #[arg(long)]
    pub update: bool,
    /// Policy to install (default: the installed one, else the built-in gateway.toml).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Binary to install (default: the running gateway).
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Put this user's existing SSH keys behind the forced command (repeatable).
    #[arg(long, value_name = "USER")]
    pub ssh_user: Vec<String>,
    /// Take USER's public keys from FILE (repeatable).
    #[arg(long, value_name = "USER=FILE")]
    pub ssh_key: Vec<String>,
    /// Webhook URL for alerts (written root-only to /etc/gateway/webhook).
    #[arg(long, value_name = "URL", conflicts_with = "webhook_file")]
    pub webhook: Option<String>,
    /// Read the webhook URL from FILE.
    #[arg(long, value_name = "FILE")]
    pub webhook_file: Option<PathBuf>,
    /// Give SSH users whose login shell runs their own rc files /bin/sh (dash) instead.
    #[arg(long)]
    pub set_login_shell: bool,
    /// Do not ask before applying.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Print every change as a diff; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Put the managed users' original sudo rules back, byte for byte, from the backup.
    #[arg(long)]
    pub restore_permissive: bool,
    /// Also delete the backups and the install record in /var/lib/gateway.
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Comma-separated [user@]host names (ports and keys go in the ssh config).
    #[arg(long, value_delimiter = ',', required = true, value_name = "HOSTS")]
    pub servers: Vec<String>,
    #[command(flatten)]
    pub features: FeatureArgs,
    /// Show the changes each host would make; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Update the hosts (binary, policy, restart) with the features chosen before.
    #[arg(long, conflicts_with = "uninstall")]
    pub update: bool,
    /// Uninstall from the hosts.
    #[arg(long)]
    pub uninstall: bool,
    /// With --uninstall: restore the original sudo rules.
    #[arg(long, requires = "uninstall")]
    pub restore_permissive: bool,
    /// Policy file to upload and install.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Gateway binary to upload (default: this one; must run on the hosts).
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// File with the webhook URL to upload.
    #[arg(long, value_name = "FILE")]
    pub webhook_file: Option<PathBuf>,
    /// Put this user's existing SSH keys behind the forced command on every host.
    #[arg(long, value_name = "USER")]
    pub ssh_user: Vec<String>,
    /// Give SSH users whose login shell runs their own rc files /bin/sh instead.
    #[arg(long)]
    pub set_login_shell: bool,
    /// ssh_config file for ssh and scp (-F).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// The login user is not root: run the remote gateway with `sudo -n`.
    #[arg(long)]
    pub sudo: bool,
    /// Hosts worked on at the same time.
    #[arg(long, default_value_t = 10)]
    pub parallel: usize,
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
