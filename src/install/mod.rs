//! `gateway install` and `gateway uninstall`: put the gateway between the managed users and root
//! on this host, and take it away again, in one transaction each.
//!
//! Install renders the files in `contrib/` (embedded at build time), validates each one where it
//! lands (`visudo -cf`, `sshd -t`, the policy loader and its own tests) before an atomic rename,
//! takes the managed users out of every other sudo rule after a timestamped backup, and reports
//! what on the host would still defeat the gateway. Any failure rolls every step back.
#![forbid(unsafe_code)]

pub mod checks;
pub mod deploy;
pub mod diff;
pub mod features;
pub mod ssh;
pub mod state;
pub mod sudoers;
pub mod tx;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::User;

use crate::pipeline::{EXIT_CONFIG, EXIT_USAGE, GATEWAY_PATH};
use crate::policy::{Policy, POLICY_PATH};
use checks::{Finding, Managed, Severity};
use features::{AssetKind, Feature};
use state::{Previous, ShellChange, State, SudoersChange, BACKUP_ROOT};
use tx::{read_entry, run_checked, Entry, Tx};

pub const SHIM_DIR: &str = "/usr/local/lib/gateway/shims";
pub const SUDOERS: &str = "/etc/sudoers";
pub const SUDOERS_DROPIN: &str = "/etc/sudoers.d/gateway";
const LIB_DIR: &str = "/usr/local/lib/gateway";
const POLICY_DIR: &str = "/etc/gateway";
const LOCK_PATH: &str = "/run/gateway-install.lock";
const VISUDO: &str = "/usr/sbin/visudo";
const SSHD: &str = "/usr/sbin/sshd";
const SYSTEMCTL: &str = "/usr/bin/systemctl";
const USERMOD: &str = "/usr/sbin/usermod";
const SYSCTL: &str = "/usr/sbin/sysctl";
const SUDOERS_TEMPLATE: &str = include_str!("../../contrib/sudoers.d/gateway");
/// The shipped policy, used when no policy is given and none is installed.
const DEFAULT_POLICY: &str = include_str!("../../gateway.toml");

/// Install failed and was rolled back.
pub const EXIT_FAILED: u8 = 1;
/// Installed, but a check found something that defeats the gateway.
pub const EXIT_DEFEATED: u8 = 2;

#[derive(Debug, Default)]
pub struct InstallOptions {
    pub dry_run: bool,
    pub update: bool,
    pub features: Vec<Feature>,
    pub policy: Option<PathBuf>,
    pub binary: Option<PathBuf>,
    pub ssh_users: Vec<String>,
    /// `USER=FILE`: the user's public keys come from FILE.
    pub ssh_keys: Vec<(String, PathBuf)>,
    pub webhook: Option<String>,
    /// A file holding the webhook URL (how `deploy` passes it without a command line).
    pub webhook_file: Option<PathBuf>,
    pub set_login_shell: bool,
    /// Apply without the confirmation question of the interactive mode.
    pub yes: bool,
}

#[derive(Debug, Default)]
pub struct UninstallOptions {
    pub dry_run: bool,
    pub restore_permissive: bool,
    pub purge: bool,
}

/// The programs the given users' rules name: one shim each.
pub fn programs_for(policy: &Policy, users: &[String]) -> BTreeSet<String> {
    users
        .iter()
        .filter_map(|u| policy.users.get(u))
        .flat_map(|u| u.rules.iter())
        .filter_map(|r| policy.rules.get(r))
        .map(|r| r.program.clone())
        .collect()
}

/// The sudoers drop-in for these users: the template with the user list on its `User_Alias`
/// line (the NixOS module renders the same text, contrib/nixos/lib.nix).
pub fn render_sudoers(users: &[String]) -> String {
    SUDOERS_TEMPLATE.replace(
        "GATEWAY_USERS = @USERS@",
        &format!("GATEWAY_USERS = {}", users.join(", ")),
    )
}

/// Primary and supplementary groups of an account.
pub fn account_gids(u: &User) -> Vec<u32> {
    let mut gids = vec![u.gid.as_raw()];
    if let Ok(name) = CString::new(u.name.clone()) {
        if let Ok(list) = nix::unistd::getgrouplist(&name, u.gid) {
            for g in list {
                if !gids.contains(&g.as_raw()) {
                    gids.push(g.as_raw());
                }
            }
        }
    }
    gids
}

fn stamp() -> String {
    crate::clock::rfc3339(SystemTime::now())
        .replace([':', '.'], "")
        .replace('-', "")
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// A user name that sudoers and sshd read as a plain name (not an alias, not syntax).
fn plain_user_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(&c))
}

fn require_root() -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err("this must run as root (it reads and writes /etc/sudoers)".into())
    }
}

fn lock() -> Result<Flock<fs::File>, String> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .map_err(|e| format!("cannot open {LOCK_PATH}: {e}"))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((f, _)) => {
            println!("waiting for another gateway install or uninstall to finish");
            Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| format!("cannot lock {LOCK_PATH}: {e}"))
        }
    }
}

/// The entry to record as "what was there before gateway".
fn previous_of(tx: &mut Tx, path: &Path) -> Result<Previous, String> {
    Ok(match read_entry(path)? {
        Entry::Absent => Previous::Absent,
        Entry::File { mode, uid, gid, .. } => {
            let backup = tx
                .backup(path)?
                .ok_or_else(|| format!("cannot back up {}", path.display()))?;
            Previous::File {
                backup: backup.display().to_string(),
                mode,
                uid,
                gid,
            }
        }
        Entry::Link(t) => Previous::Link {
            target: t.display().to_string(),
        },
        Entry::Dir { mode, uid, gid } => Previous::Dir { mode, uid, gid },
    })
}

fn visudo_check_file(path: &Path) -> Result<(), String> {
    run_checked(&[
        VISUDO.to_string(),
        "-c".into(),
        "-f".into(),
        path.display().to_string(),
    ])
}

/// Checks a staged sudoers file alone, then the whole configuration as sudo will read it once
/// the staged file replaces `target`: a copy of /etc/sudoers whose include lines name each file
/// explicitly, the staged one in the target's place. So a clash between files (an alias defined
/// twice) is found before anything is renamed.
fn visudo_check_combined(target: &Path, staged: &Path) -> Result<(), String> {
    visudo_check_file(staged)?;
    let main_path = if target == Path::new(SUDOERS) {
        staged.to_path_buf()
    } else {
        PathBuf::from(SUDOERS)
    };
    let main = fs::read_to_string(&main_path)
        .map_err(|e| format!("cannot read {}: {e}", main_path.display()))?;
    let quote = |p: &Path| {
        format!(
            "@include \"{}\"\n",
            p.display().to_string().replace('"', "\\\"")
        )
    };
    let mut combined = String::new();
    for line in main.split_inclusive('\n') {
        let incs = sudoers::includes(line, Path::new("/etc"));
        match incs.first() {
            Some(sudoers::Include::Dir(d)) => {
                let mut names: Vec<String> = fs::read_dir(d)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| sudoers::included_name(n))
                            .collect()
                    })
                    .unwrap_or_default();
                if target.parent() == Some(d.as_path()) {
                    let t = target
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    if !names.contains(&t) {
                        names.push(t);
                    }
                }
                names.sort();
                for n in names {
                    let p = d.join(&n);
                    combined.push_str(&quote(if p == target { staged } else { &p }));
                }
            }
            Some(sudoers::Include::File(f)) if f == target => combined.push_str(&quote(staged)),
            // Made absolute: the copy is read from a private directory, not from /etc.
            Some(sudoers::Include::File(f)) => combined.push_str(&quote(f)),
            None => combined.push_str(line),
        }
    }
    let dir = std::env::temp_dir().join(format!("gateway-sudoers-check.{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let check = dir.join("sudoers");
    tx::write_atomic(&check, combined.as_bytes(), 0o440, None)?;
    let r = visudo_check_file(&check);
    let _ = fs::remove_dir_all(&dir);
    r.map_err(|e| format!("with this file in place, sudo would not parse its configuration: {e}"))
}

fn visudo_check_all() -> Result<(), String> {
    run_checked(&[VISUDO.to_string(), "-c".into()])
        .map_err(|e| format!("the whole sudoers configuration does not parse: {e}"))
}

/// `sshd -t` on a configuration that reads the staged drop-in first, then the real one.
fn sshd_check_staged(staged: &Path) -> Result<(), String> {
    let dir = staged.parent().unwrap_or(Path::new("/"));
    let main = dir.join(format!(".gateway-sshd-check.{}", std::process::id()));
    let text = format!(
        "Include {}\nInclude /etc/ssh/sshd_config\n",
        staged.display()
    );
    tx::write_atomic(&main, text.as_bytes(), 0o600, None)?;
    let r = run_checked(&[
        SSHD.to_string(),
        "-t".into(),
        "-f".into(),
        main.display().to_string(),
    ]);
    let _ = fs::remove_file(&main);
    r
}

struct Plan {
    features: BTreeSet<Feature>,
    policy_text: String,
    policy_name: String,
    policy: Policy,
    binary: Vec<u8>,
    users: Vec<Managed>,
    ssh_users: Vec<String>,
    webhook: Option<String>,
}

fn ask(question: &str, default: bool) -> Result<bool, String> {
    let hint = if default { "[Y/n]" } else { "[y/N]" };
    print!("{question}? {hint} ");
    io::stdout().flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(match line.trim().to_ascii_lowercase().as_str() {
        "" => default,
        "y" | "yes" => true,
        _ => false,
    })
}

fn ask_text(question: &str) -> Result<String, String> {
    print!("{question}: ");
    io::stdout().flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim().to_string())
}

/// The interactive questions, asked on a terminal when no feature flag was given.
fn interview(opts: &mut InstallOptions, managed: &[String]) -> Result<(), String> {
    println!("gateway install: nothing was chosen on the command line, so a few questions.");
    println!(
        "Managed users (from the policy, present on this host): {}",
        managed.join(", ")
    );
    for f in Feature::ALL {
        let default = matches!(f, Feature::SudoRestrictions | Feature::CoreLimits);
        if ask(&format!("{} ({})", f.question(), f.name()), default)? {
            opts.features.push(f);
        }
    }
    if opts.features.contains(&Feature::Alerts) && opts.webhook.is_none() {
        let url = ask_text("Webhook URL (Discord, Slack or JSON; empty for none)")?;
        if !url.is_empty() {
            opts.webhook = Some(url);
        }
    }
    if opts.features.contains(&Feature::SudoRestrictions) {
        for u in managed {
            let home = User::from_name(u).ok().flatten().map(|x| x.dir);
            let has_keys = home.is_some_and(|h| h.join(".ssh/authorized_keys").is_file());
            if has_keys
                && ask(
                    &format!("Put {u}'s SSH keys (~{u}/.ssh/authorized_keys) behind the gateway"),
                    true,
                )?
            {
                opts.ssh_users.push(u.clone());
            }
        }
    }
    Ok(())
}

fn validate_webhook(url: &str) -> Result<(), String> {
    let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
    // Written into a TOML string: no quote, no backslash, nothing invisible.
    let clean = url.len() <= 2048
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok_scheme && clean {
        Ok(())
    } else {
        Err("--webhook needs an http(s) URL of printable ASCII without spaces".into())
    }
}

/// Loads the policy to install and runs its own tests; nothing is written if either fails.
fn load_policy(opts: &InstallOptions) -> Result<(String, String, Policy), u8> {
    let (name, text) = match &opts.policy {
        Some(p) => match fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(e) => {
                eprintln!("gateway: cannot read {}: {e}", p.display());
                return Err(EXIT_CONFIG);
            }
        },
        None if Path::new(POLICY_PATH).exists() => match fs::read_to_string(POLICY_PATH) {
            Ok(t) => (POLICY_PATH.to_string(), t),
            Err(e) => {
                eprintln!("gateway: cannot read {POLICY_PATH}: {e}");
                return Err(EXIT_CONFIG);
            }
        },
        None => (
            "(built-in gateway.toml)".to_string(),
            DEFAULT_POLICY.to_string(),
        ),
    };
    let policy = match Policy::parse(&name, &text) {
        Ok(p) => p,
        Err(diags) => {
            for d in &diags {
                eprintln!("error: {d}");
            }
            eprintln!("gateway: the policy {name} does not load; nothing was changed");
            return Err(EXIT_CONFIG);
        }
    };
    if crate::check::self_test(&policy, Path::new(&name)) != 0 {
        eprintln!("gateway: the policy's own tests fail; nothing was changed");
        return Err(EXIT_CONFIG);
    }
    Ok((name, text, policy))
}

fn gather(opts: &mut InstallOptions, previous: Option<&State>) -> Result<Plan, (u8, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    let fail = |m: String| (EXIT_FAILED, m);
    let (policy_name, policy_text, policy) = load_policy(opts).map_err(|c| (c, String::new()))?;
    let mut users = Vec::new();
    let mut missing = Vec::new();
    for name in policy.users.keys() {
        if !plain_user_name(name) {
            return Err(fail(format!(
                "policy user {name:?} is not a plain lower-case account name; sudoers and sshd \
                 would read it as something else"
            )));
        }
        match checks::managed(name) {
            Some(m) => users.push(m),
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        println!(
            "note: policy users without an account here (skipped): {}",
            missing.join(", ")
        );
    }
    if users.is_empty() {
        return Err(fail(format!(
            "none of the policy's users ({}) has an account on this host",
            policy.users.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let names: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
    if opts.features.is_empty() {
        if let Some(s) = previous.filter(|_| opts.update) {
            opts.features = s.features.iter().copied().collect();
        } else if io::stdin().is_terminal() && io::stdout().is_terminal() && !opts.dry_run {
            interview(opts, &names).map_err(fail)?;
            if opts.features.is_empty() {
                return Err(usage("nothing chosen; nothing to do".into()));
            }
        } else {
            return Err(usage(
                "choose what to install: --all, or one or more of --sudo-restrictions, --alerts, \
                 --crontab-watch, --core-limits (without a terminal, install does not ask)"
                    .into(),
            ));
        }
    }
    if opts.update && previous.is_none() {
        return Err(fail(
            "--update needs an earlier install (no /var/lib/gateway/install.json)".into(),
        ));
    }
    let mut features: BTreeSet<Feature> = opts.features.iter().copied().collect();
    if let Some(s) = previous {
        features.extend(s.features.iter().copied());
    }
    let mut ssh_users: Vec<String> = previous.map(|s| s.ssh_users.clone()).unwrap_or_default();
    for u in opts
        .ssh_users
        .iter()
        .chain(opts.ssh_keys.iter().map(|(u, _)| u))
    {
        if !names.contains(u) {
            return Err(usage(format!(
                "{u} is not a managed user (managed here: {})",
                names.join(", ")
            )));
        }
        if !ssh_users.contains(u) {
            ssh_users.push(u.clone());
        }
    }
    if !ssh_users.is_empty() && !features.contains(&Feature::SudoRestrictions) {
        return Err(usage(
            "SSH users go through the gateway's sudoers entry: add --sudo-restrictions".into(),
        ));
    }
    if let Some(f) = &opts.webhook_file {
        let url = fs::read_to_string(f)
            .map_err(|e| usage(format!("cannot read {}: {e}", f.display())))?;
        opts.webhook = Some(url.trim().to_string());
    }
    if let Some(w) = &opts.webhook {
        validate_webhook(w).map_err(usage)?;
        if !features.contains(&Feature::Alerts) {
            return Err(usage("--webhook belongs to --alerts".into()));
        }
    }
    let binary_path = match &opts.binary {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| fail(format!("cannot find myself: {e}")))?,
    };
    let binary = fs::read(&binary_path)
        .map_err(|e| fail(format!("cannot read {}: {e}", binary_path.display())))?;
    Ok(Plan {
        features,
        policy_text,
        policy_name,
        policy,
        binary,
        users,
        ssh_users,
        webhook: opts.webhook.clone(),
    })
}

pub fn install(mut opts: InstallOptions) -> u8 {
    if let Err(e) = require_root() {
        eprintln!("gateway: {e}");
        return EXIT_FAILED;
    }
    if Path::new("/etc/NIXOS").exists() {
        eprintln!(
            "gateway: this is NixOS, where /etc is built from the system configuration: use the \
             module in contrib/nixos (services.gateway) instead"
        );
        return EXIT_FAILED;
    }
    let _lock = if opts.dry_run {
        None
    } else {
        match lock() {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("gateway: {e}");
                return EXIT_FAILED;
            }
        }
    };
    let previous = match State::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gateway: {e}");
            return EXIT_FAILED;
        }
    };
    let asked = opts.features.is_empty()
        && !opts.update
        && !opts.dry_run
        && io::stdin().is_terminal()
        && io::stdout().is_terminal();
    let plan = match gather(&mut opts, previous.as_ref()) {
        Ok(p) => p,
        Err((code, msg)) => {
            if !msg.is_empty() {
                eprintln!("gateway: {msg}");
            }
            if code == EXIT_USAGE {
                eprintln!(
                    "usage: gateway install [--dry-run] [--update] (--all | --sudo-restrictions \
                     --alerts --crontab-watch --core-limits) [--policy FILE] [--ssh-user USER] \
                     [--ssh-key USER=FILE] [--webhook URL] [--set-login-shell]"
                );
            }
            return code;
        }
    };
    if asked && !opts.yes {
        // Asked on a terminal: show what will change before changing it.
        println!("\n--- the changes (dry run) ---");
        let mut dry = Tx::new(true, PathBuf::from(BACKUP_ROOT).join(stamp()));
        let mut scratch = previous.clone().unwrap_or_default();
        if let Err(e) = apply_install(&mut dry, &plan, &opts, &mut scratch) {
            eprintln!("gateway: {e}");
            return EXIT_FAILED;
        }
        match ask("Apply these changes", false) {
            Ok(true) => {}
            _ => {
                println!("nothing was changed");
                return 0;
            }
        }
    }
    let mut tx = Tx::new(opts.dry_run, PathBuf::from(BACKUP_ROOT).join(stamp()));
    let mut st = previous.clone().unwrap_or_default();
    let result = apply_install(&mut tx, &plan, &opts, &mut st);
    let findings = match result {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gateway: install failed: {e}");
            if !opts.dry_run {
                tx.rollback();
                eprintln!("gateway: every change was rolled back; the host is as it was");
            }
            println!("gateway-result: install failed");
            return EXIT_FAILED;
        }
    };
    if !opts.dry_run {
        tx.commit();
        st.version = 1;
        st.features = plan.features.clone();
        st.users = plan.users.iter().map(|u| u.name.clone()).collect();
        st.ssh_users = plan.ssh_users.clone();
        st.history.push(format!(
            "{} {}",
            crate::clock::rfc3339(SystemTime::now()),
            if opts.update { "update" } else { "install" }
        ));
        if let Err(e) = st.save() {
            eprintln!("gateway: installed, but the record for uninstall was not saved: {e}");
            return EXIT_FAILED;
        }
    }
    report(
        &tx,
        &findings,
        if opts.dry_run { "dry-run" } else { "install" },
    )
}

fn report(tx: &Tx, findings: &[Finding], what: &str) -> u8 {
    for f in findings {
        f.print();
    }
    let defeats = findings
        .iter()
        .filter(|f| f.severity == Severity::Defeats)
        .count();
    let weakens = findings.len() - defeats;
    let verb = if tx.dry_run {
        "would change"
    } else {
        "changed"
    };
    println!(
        "gateway {what}: {verb} {} path(s); {defeats} finding(s) that defeat the gateway, \
         {weakens} that weaken it",
        tx.changed.len()
    );
    if !tx.dry_run && !tx.backups.is_empty() {
        println!("backups: {}", tx.backup_dir().display());
    }
    println!(
        "gateway-result: {what} ok changes={} defeats={defeats} weakens={weakens}",
        tx.changed.len()
    );
    if defeats > 0 {
        EXIT_DEFEATED
    } else {
        0
    }
}

/// Puts a file in place and records what was there before (first time only).
fn put(
    tx: &mut Tx,
    st: &mut State,
    path: &Path,
    bytes: &[u8],
    mode: u32,
    validate: Option<tx::Validator>,
) -> Result<bool, String> {
    if !st.owns(path) {
        let prev = previous_of(tx, path)?;
        st.record(path, prev);
    }
    tx.put_file(path, bytes, mode, validate)
}

fn put_dir(tx: &mut Tx, st: &mut State, path: &Path) -> Result<bool, String> {
    if !st.owns(path) {
        let prev = previous_of(tx, path)?;
        st.record(path, prev);
    }
    tx.put_dir(path, 0o755)
}

fn apply_install(
    tx: &mut Tx,
    plan: &Plan,
    opts: &InstallOptions,
    st: &mut State,
) -> Result<Vec<Finding>, String> {
    let names: Vec<String> = plan.users.iter().map(|u| u.name.clone()).collect();
    println!(
        "gateway {}: policy {} ({} users, {} programs, {} rules); managed here: {}; features: {}",
        if tx.dry_run {
            "install --dry-run"
        } else {
            "install"
        },
        plan.policy_name,
        plan.policy.users.len(),
        plan.policy.programs.len(),
        plan.policy.rules.len(),
        names.join(", "),
        plan.features
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The binary and the policy: every feature needs them.
    put_dir(tx, st, Path::new(POLICY_DIR))?;
    put_dir(tx, st, Path::new(LIB_DIR))?;
    put(tx, st, Path::new(GATEWAY_PATH), &plan.binary, 0o755, None)?;
    let policy_check = |staged: &Path| {
        Policy::load(staged)
            .map(|_| ())
            .map_err(|d| format!("the policy does not load: {}", d[0]))
    };
    put(
        tx,
        st,
        Path::new(POLICY_PATH),
        plan.policy_text.as_bytes(),
        0o644,
        Some(&policy_check),
    )?;
    // The audit log's directory (0700): sudo's own event log for these users goes there too.
    if let Some(dir) = plan.policy.settings.audit_log.parent() {
        if !dir.exists() {
            if let Some(parent) = dir.parent() {
                if !parent.exists() {
                    return Err(format!("{} does not exist", parent.display()));
                }
            }
            if !st.owns(dir) {
                let prev = previous_of(tx, dir)?;
                st.record(dir, prev);
            }
            tx.put_dir(dir, 0o700)?;
        }
    }
    let mut units_changed = false;
    if plan.features.contains(&Feature::SudoRestrictions) {
        install_shims(tx, st, plan, &names)?;
        install_sudoers(tx, st, &names, &plan.users)?;
        if !plan.ssh_users.is_empty() {
            install_ssh(tx, st, plan, opts)?;
        }
    }
    if plan.features.contains(&Feature::Alerts) {
        if let Some(url) = &plan.webhook {
            put(
                tx,
                st,
                Path::new(features::WEBHOOK_PATH),
                features::render_webhooks(url).as_bytes(),
                0o600,
                None,
            )?;
        }
    }
    for f in &plan.features {
        let mut any = false;
        for a in features::assets(*f) {
            any = true;
            if a.kind == AssetKind::WithoutSystemd && systemd_running() {
                continue;
            }
            if let Some(parent) = Path::new(a.dest).parent() {
                if !parent.exists() {
                    put_dir(tx, st, parent)?;
                }
            }
            let content = features::render(a, &names);
            let changed = put(tx, st, Path::new(a.dest), &content, a.mode, None)?;
            if let Some(unit) = features::unit_name(a) {
                units_changed |= changed;
                if !st.units.iter().any(|u| u == unit) && !tx.dry_run {
                    st.units.push(unit.to_string());
                }
            }
            if a.kind == AssetKind::Sysctl && changed {
                let argv = vec![SYSCTL.to_string(), "-p".into(), a.dest.to_string()];
                if let Err(e) = tx.command(&argv, None) {
                    println!("warning: {e} (the setting applies at the next boot)");
                }
            }
        }
        if !any && *f != Feature::SudoRestrictions {
            println!(
                "note: this build carries no files for {} yet (they come with the alerts work)",
                f.name()
            );
        }
    }
    services(tx, plan, units_changed || opts.update)?;
    let mut findings = Vec::new();
    for u in &plan.users {
        findings.extend(checks::groups(u));
        if !plan.ssh_users.contains(&u.name) {
            findings.extend(checks::home_keys(u));
        }
    }
    findings.extend(checks::program_paths(&plan.policy, &names));
    for u in plan
        .users
        .iter()
        .filter(|u| plan.ssh_users.contains(&u.name))
    {
        let current = checks::managed(&u.name).unwrap_or_else(|| u.clone());
        findings.extend(checks::login_shell(&current));
    }
    if !tx.dry_run {
        findings.extend(checks::own_files(
            Path::new(GATEWAY_PATH),
            Path::new(POLICY_PATH),
        ));
        if plan.features.contains(&Feature::SudoRestrictions) {
            let expected = expected_sudo_entry();
            for n in &names {
                findings.extend(checks::sudo_effective(n, &expected, SHIM_DIR));
            }
            if Path::new(SSHD).exists() {
                for n in &plan.ssh_users {
                    findings.extend(checks::sshd_effective(
                        n,
                        ssh::KEYS_DIR,
                        &format!("{GATEWAY_PATH} ssh"),
                    ));
                }
            }
        }
    }
    Ok(findings)
}

/// How `sudo -l` prints the gateway's entry.
fn expected_sudo_entry() -> String {
    format!("(root) NOPASSWD: {GATEWAY_PATH} run *, {GATEWAY_PATH} ssh, {SHIM_DIR}/")
}

fn install_shims(tx: &mut Tx, st: &mut State, plan: &Plan, names: &[String]) -> Result<(), String> {
    put_dir(tx, st, Path::new(SHIM_DIR))?;
    let programs = programs_for(&plan.policy, names);
    for p in &programs {
        let link = Path::new(SHIM_DIR).join(p);
        if !st.owns(&link) {
            let prev = previous_of(tx, &link)?;
            st.record(&link, prev);
        }
        tx.put_link(&link, Path::new(GATEWAY_PATH))?;
    }
    // The shim directory is first in the managed users' sudo PATH: nothing else may sit there.
    if let Ok(dir) = fs::read_dir(SHIM_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !programs.contains(&name) {
                tx.remove(&e.path())?;
            }
        }
    }
    Ok(())
}

/// Every sudoers file sudo reads, in order: /etc/sudoers and what it includes.
fn sudoers_files() -> Result<Vec<PathBuf>, String> {
    fn walk(path: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), String> {
        if depth > 8 || out.iter().any(|p| p == path) {
            return Ok(());
        }
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound && depth > 0 => return Ok(()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        out.push(path.to_path_buf());
        let base = path.parent().unwrap_or(Path::new("/"));
        for inc in sudoers::includes(&text, base) {
            match inc {
                sudoers::Include::File(f) => {
                    if f.to_string_lossy().contains("%h") {
                        println!(
                            "note: {} includes per-host files ({}); those are not edited",
                            path.display(),
                            f.display()
                        );
                        continue;
                    }
                    walk(&f, out, depth + 1)?
                }
                sudoers::Include::Dir(d) => {
                    let mut names: Vec<_> = match fs::read_dir(&d) {
                        Ok(rd) => rd
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| sudoers::included_name(n))
                            .collect(),
                        Err(_) => continue,
                    };
                    names.sort();
                    for n in names {
                        let p = d.join(n);
                        if p.is_file() {
                            walk(&p, out, depth + 1)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(Path::new(SUDOERS), &mut out, 0)?;
    Ok(out)
}

fn install_sudoers(
    tx: &mut Tx,
    st: &mut State,
    names: &[String],
    users: &[Managed],
) -> Result<(), String> {
    if !Path::new(VISUDO).exists() {
        return Err(format!("{VISUDO} is missing: is sudo installed?"));
    }
    let dropin = render_sudoers(names);
    let dropin_check = |p: &Path| visudo_check_combined(Path::new(SUDOERS_DROPIN), p);
    let files = sudoers_files()?;
    if !files.iter().any(|f| f == Path::new(SUDOERS_DROPIN)) && !tx.dry_run {
        // Checked before writing anything: a drop-in sudo never reads would lock the users out.
        let reads_dir = files
            .iter()
            .any(|f| f.parent() == Path::new(SUDOERS_DROPIN).parent());
        let includes_dir = fs::read_to_string(SUDOERS)
            .map(|t| {
                sudoers::includes(&t, Path::new("/etc"))
                    .contains(&sudoers::Include::Dir("/etc/sudoers.d".into()))
            })
            .unwrap_or(false);
        if !reads_dir && !includes_dir {
            return Err(format!(
                "{SUDOERS} does not include /etc/sudoers.d, so {SUDOERS_DROPIN} would never be \
                 read; add `@includedir /etc/sudoers.d` to it first"
            ));
        }
    }
    put(
        tx,
        st,
        Path::new(SUDOERS_DROPIN),
        dropin.as_bytes(),
        0o440,
        Some(&dropin_check),
    )?;
    // Take the managed users out of every other rule.
    let accounts: Vec<sudoers::Account> = users
        .iter()
        .map(|u| sudoers::Account {
            name: u.name.clone(),
            uid: u.uid,
            gids: u.gids.clone(),
        })
        .collect();
    let mut texts = Vec::new();
    for f in &files {
        if f == Path::new(SUDOERS_DROPIN) {
            continue;
        }
        let Entry::File {
            bytes,
            mode,
            uid,
            gid,
        } = read_entry(f)?
        else {
            continue;
        };
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", f.display()))?;
        texts.push((f.clone(), text, mode, uid, gid));
    }
    let mut aliases = sudoers::Aliases::default();
    for (_, t, ..) in &texts {
        aliases.add_file(t);
    }
    let gid_of = |g: &str| {
        nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    };
    for (path, text, mode, uid, gid) in &texts {
        let edits = sudoers::plan(text, &accounts, &aliases, &gid_of);
        if edits.is_empty() {
            continue;
        }
        for e in &edits {
            let what = match &e.after {
                None => "removed".to_string(),
                Some(a) => format!("now: {}", a.trim_end()),
            };
            println!(
                "sudoers: {}:{}: takes {} out of `{}` ({what})",
                path.display(),
                e.line,
                e.users.join(", "),
                e.before.trim_end()
            );
        }
        let new = sudoers::apply(text, &edits);
        let backup = tx
            .backup(path)?
            .ok_or_else(|| format!("cannot back up {}", path.display()))?;
        let written = PathBuf::from(format!("{}.installed", backup.display()));
        let check = |p: &Path| visudo_check_combined(path, p);
        tx.put_file(path, new.as_bytes(), *mode, Some(&check))?;
        if !tx.dry_run {
            tx::write_atomic(&written, new.as_bytes(), 0o600, None)?;
        }
        st.sudoers.push(SudoersChange {
            path: path.display().to_string(),
            backup: backup.display().to_string(),
            mode: *mode,
            uid: *uid,
            gid: *gid,
            written: written.display().to_string(),
            edits,
        });
    }
    if !tx.dry_run {
        visudo_check_all()?;
    }
    Ok(())
}

fn keys_for(user: &str, opts: &InstallOptions) -> Result<Option<Vec<ssh::Key>>, String> {
    let from_file = opts.ssh_keys.iter().filter(|(u, _)| u == user);
    let mut sources: Vec<PathBuf> = from_file.map(|(_, f)| f.clone()).collect();
    if sources.is_empty() && opts.ssh_users.iter().any(|u| u == user) {
        let home = User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.dir)
            .ok_or_else(|| format!("no account {user}"))?;
        for f in [".ssh/authorized_keys", ".ssh/authorized_keys2"] {
            if home.join(f).is_file() {
                sources.push(home.join(f));
            }
        }
        if sources.is_empty() {
            return Err(format!(
                "--ssh-user {user}: ~{user}/.ssh/authorized_keys does not exist; give the keys \
                 with --ssh-key {user}=FILE"
            ));
        }
    }
    if sources.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for s in sources {
        let text =
            fs::read_to_string(&s).map_err(|e| format!("cannot read {}: {e}", s.display()))?;
        let (k, notes) = ssh::parse_keys(&text);
        for n in notes {
            println!("ssh: {}: {n}", s.display());
        }
        for key in k {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return Err(format!("no usable public key for {user}"));
    }
    Ok(Some(keys))
}

fn install_ssh(
    tx: &mut Tx,
    st: &mut State,
    plan: &Plan,
    opts: &InstallOptions,
) -> Result<(), String> {
    if !Path::new(SSHD).exists() {
        return Err(format!("SSH users were chosen but {SSHD} is not installed"));
    }
    put_dir(tx, st, Path::new(ssh::KEYS_DIR))?;
    for u in &plan.ssh_users {
        let path = Path::new(ssh::KEYS_DIR).join(u);
        match keys_for(u, opts)? {
            Some(keys) => {
                put(
                    tx,
                    st,
                    &path,
                    ssh::render_keys(u, &keys).as_bytes(),
                    0o644,
                    None,
                )?;
            }
            None if path.exists() => {}
            None => return Err(format!("no keys for SSH user {u}")),
        }
    }
    let check = |p: &Path| sshd_check_staged(p);
    let dropin = Path::new(ssh::SSHD_DROPIN);
    if let Some(parent) = dropin.parent() {
        if !parent.exists() {
            put_dir(tx, st, parent)?;
        }
    }
    let changed = put(
        tx,
        st,
        dropin,
        ssh::render_dropin(&plan.ssh_users).as_bytes(),
        0o644,
        Some(&check),
    )?;
    if !tx.dry_run {
        run_checked(&[SSHD.to_string(), "-t".into()])
            .map_err(|e| format!("sshd rejects its configuration: {e}"))?;
    }
    if changed {
        reload_sshd(tx)?;
    }
    if opts.set_login_shell {
        set_login_shells(tx, st, plan)?;
    }
    Ok(())
}

/// Sets /bin/sh (dash) as the login shell of SSH users whose shell runs files they can write.
fn set_login_shells(tx: &mut Tx, st: &mut State, plan: &Plan) -> Result<(), String> {
    let sh = fs::canonicalize("/bin/sh").map_err(|e| format!("/bin/sh: {e}"))?;
    if sh.file_name().and_then(|n| n.to_str()) != Some("dash") {
        return Err(format!(
            "--set-login-shell: /bin/sh is {}, not dash; set a shell by hand",
            sh.display()
        ));
    }
    for u in plan
        .users
        .iter()
        .filter(|u| plan.ssh_users.contains(&u.name))
    {
        if checks::login_shell(u).is_empty() {
            continue;
        }
        let original = u.shell.display().to_string();
        tx.command(
            &[
                USERMOD.into(),
                "-s".into(),
                "/bin/sh".into(),
                u.name.clone(),
            ],
            Some(vec![
                USERMOD.into(),
                "-s".into(),
                original.clone(),
                u.name.clone(),
            ]),
        )?;
        if !tx.dry_run && !st.shells.iter().any(|s| s.user == u.name) {
            st.shells.push(ShellChange {
                user: u.name.clone(),
                original,
            });
        }
    }
    Ok(())
}

/// Tells the running sshd (if any) to read its configuration again.
fn reload_sshd(tx: &mut Tx) -> Result<(), String> {
    if systemd_running() {
        return tx
            .command(
                &[
                    SYSTEMCTL.into(),
                    "try-reload-or-restart".into(),
                    "ssh.service".into(),
                ],
                None,
            )
            .or_else(|e| {
                println!("warning: {e}");
                Ok(())
            });
    }
    let pid = fs::read_to_string("/run/sshd.pid")
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    let is_sshd = |pid: i32| {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sshd")
    };
    match pid {
        Some(pid) if is_sshd(pid) => {
            if tx.dry_run {
                println!("would send SIGHUP to sshd (pid {pid})");
            } else {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .map_err(|e| format!("cannot signal sshd {pid}: {e}"))?;
                println!("reloaded sshd (pid {pid}, SIGHUP)");
            }
        }
        _ => println!(
            "note: no running sshd found (/run/sshd.pid); it reads the change when it starts"
        ),
    }
    Ok(())
}

/// Reloads systemd and enables, starts or restarts the installed units.
fn services(tx: &mut Tx, plan: &Plan, restart: bool) -> Result<(), String> {
    let units: Vec<(&'static str, bool)> = plan
        .features
        .iter()
        .flat_map(|f| features::assets(*f))
        .filter_map(|a| match a.kind {
            AssetKind::Unit { enable } => features::unit_name(a).map(|u| (u, enable)),
            _ => None,
        })
        .collect();
    if units.is_empty() {
        return Ok(());
    }
    if !systemd_running() {
        println!(
            "note: systemd is not running here (PID 1 is {}): units written, not enabled; run \
             `systemctl daemon-reload` and `systemctl enable --now {}` once it runs",
            fs::read_to_string("/proc/1/comm")
                .unwrap_or_default()
                .trim(),
            units
                .iter()
                .filter(|u| u.1)
                .map(|u| u.0)
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Ok(());
    }
    if !restart {
        return Ok(());
    }
    tx.command(&[SYSTEMCTL.into(), "daemon-reload".into()], None)?;
    for (u, enable) in units {
        if enable {
            tx.command(
                &[SYSTEMCTL.into(), "enable".into(), "--now".into(), u.into()],
                Some(vec![
                    SYSTEMCTL.into(),
                    "disable".into(),
                    "--now".into(),
                    u.into(),
                ]),
            )?;
            tx.command(&[SYSTEMCTL.into(), "try-restart".into(), u.into()], None)?;
        }
    }
    Ok(())
}

pub fn uninstall(opts: UninstallOptions) -> u8 {
    if let Err(e) = require_root() {
        eprintln!("gateway: {e}");
        return EXIT_FAILED;
    }
    let _lock = if opts.dry_run {
        None
    } else {
        match lock() {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("gateway: {e}");
                return EXIT_FAILED;
            }
        }
    };
    let st = match State::load() {
        Ok(Some(s)) => s,
        Ok(None) => {
            println!(
                "gateway uninstall: nothing to do (no {})",
                state::STATE_FILE
            );
            println!("gateway-result: uninstall ok changes=0 defeats=0 weakens=0");
            return 0;
        }
        Err(e) => {
            eprintln!("gateway: {e}");
            return EXIT_FAILED;
        }
    };
    let mut tx = Tx::new(opts.dry_run, PathBuf::from(BACKUP_ROOT).join(stamp()));
    match apply_uninstall(&mut tx, &st, &opts) {
        Ok(findings) => {
            if !opts.dry_run {
                tx.commit();
                let done = tx.backup_dir().join("install.json");
                let _ = fs::create_dir_all(tx.backup_dir());
                let _ = fs::rename(state::STATE_FILE, &done);
                if opts.purge {
                    let _ = fs::remove_dir_all(state::STATE_DIR);
                    println!("purged {}", state::STATE_DIR);
                } else {
                    println!("kept: backups in {BACKUP_ROOT} (remove with --purge)");
                }
            }
            report(&tx, &findings, "uninstall")
        }
        Err(e) => {
            eprintln!("gateway: uninstall failed: {e}");
            if !opts.dry_run {
                tx.rollback();
                eprintln!("gateway: every change was rolled back");
            }
            println!("gateway-result: uninstall failed");
            EXIT_FAILED
        }
    }
}

fn apply_uninstall(
    tx: &mut Tx,
    st: &State,
    opts: &UninstallOptions,
) -> Result<Vec<Finding>, String> {
    println!(
        "gateway uninstall{}: users {}; {}",
        if tx.dry_run { " --dry-run" } else { "" },
        st.users.join(", "),
        if opts.restore_permissive {
            "restoring their original sudo rules"
        } else {
            "their old sudo rules stay removed (no sudo at all)"
        }
    );
    if opts.restore_permissive {
        for c in st.sudoers.iter().rev() {
            let path = Path::new(&c.path);
            let original = fs::read(&c.backup).map_err(|e| format!("backup {}: {e}", c.backup))?;
            let written = fs::read(&c.written).map_err(|e| format!("{}: {e}", c.written))?;
            let current = match read_entry(path)? {
                Entry::File { bytes, .. } => Some(bytes),
                _ => None,
            };
            let restored = if current.as_deref() == Some(&written[..]) || current.is_none() {
                original.clone()
            } else {
                // Changed since install: put the original lines back, keep the newer ones.
                let cur = String::from_utf8_lossy(current.as_deref().unwrap_or_default());
                let orig = String::from_utf8_lossy(&original);
                let (text, lost) = sudoers::revert(&cur, &orig, &c.edits);
                println!(
                    "warning: {} changed after install; its original lines were put back \
                     around the newer ones (the backup is {})",
                    c.path, c.backup
                );
                for l in lost {
                    println!(
                        "warning: could not place `{}` back into {}; add it by hand",
                        l.before.trim_end(),
                        c.path
                    );
                }
                text.into_bytes()
            };
            let check = |p: &Path| visudo_check_combined(path, p);
            tx.put_file(path, &restored, c.mode, Some(&check))?;
            if !tx.dry_run {
                nix::unistd::chown(
                    path,
                    Some(nix::unistd::Uid::from_raw(c.uid)),
                    Some(nix::unistd::Gid::from_raw(c.gid)),
                )
                .map_err(|e| format!("{}: {e}", c.path))?;
            }
        }
    }
    if systemd_running() {
        for u in &st.units {
            let argv = vec![
                SYSTEMCTL.into(),
                "disable".into(),
                "--now".into(),
                u.clone(),
            ];
            if let Err(e) = tx.command(&argv, None) {
                println!("warning: {e}");
            }
        }
    }
    let mut ssh_changed = false;
    for i in st.installed.iter().rev() {
        let path = Path::new(&i.path);
        let changed = match &i.previous {
            Previous::Absent => tx.remove(path)?,
            Previous::Dir { .. } => false,
            p => tx.restore(path, &p.entry()?)?,
        };
        ssh_changed |= changed && i.path == ssh::SSHD_DROPIN;
    }
    // The gateway's run-time cache of the validated policy goes with it.
    let cache = Path::new(crate::policy::cache::CACHE_PATH);
    tx.remove(cache)?;
    if let Some(dir) = cache.parent() {
        tx.remove(dir)?;
    }
    for s in &st.shells {
        tx.command(
            &[
                USERMOD.into(),
                "-s".into(),
                s.original.clone(),
                s.user.clone(),
            ],
            None,
        )?;
    }
    if !tx.dry_run {
        visudo_check_all()?;
        if Path::new(SSHD).exists() {
            run_checked(&[SSHD.to_string(), "-t".into()])
                .map_err(|e| format!("sshd rejects its configuration: {e}"))?;
        }
    }
    if ssh_changed {
        reload_sshd(tx)?;
    }
    if systemd_running() && !st.units.is_empty() {
        tx.command(&[SYSTEMCTL.into(), "daemon-reload".into()], None)?;
    }
    let mut findings = Vec::new();
    if !tx.dry_run {
        for u in &st.users {
            if User::from_name(u).ok().flatten().is_none() {
                continue;
            }
            let (_, commands) = checks::sudo_listing(u)?;
            if opts.restore_permissive {
                println!("{u} may run through sudo again: {}", commands.join("; "));
            } else if !commands.is_empty() {
                findings.push(Finding {
                    severity: Severity::Weakens,
                    message: format!(
                        "{u} still has sudo after uninstall: {}",
                        commands.join("; ")
                    ),
                    fix: "a rule was added after install; remove it by hand".into(),
                });
            } else {
                println!("{u} has no sudo rights now");
            }
        }
    }
    Ok(findings)
}
