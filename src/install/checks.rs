//! What would defeat the gateway on this host, found and reported by install (and `--dry-run`):
//! a managed user in a group that is root by another door, a program path someone else could
//! change, a login shell that runs the user's own rc files before the forced command, a sudo
//! grant install could not take away, sshd not applying the forced command.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Group, User};

use super::tx::system_command;
use crate::policy::Policy;
use crate::trust;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The user can reach root without the gateway.
    Defeats,
    /// The gateway holds, but something it promises (no shell, no secrets) does not.
    Weakens,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
    pub fix: String,
}

impl Finding {
    fn defeats(message: String, fix: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Defeats,
            message,
            fix: fix.into(),
        }
    }

    fn weakens(message: String, fix: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Weakens,
            message,
            fix: fix.into(),
        }
    }

    pub fn print(&self) {
        let tag = match self.severity {
            Severity::Defeats => "DEFEATS",
            Severity::Weakens => "WEAKENS",
        };
        println!("check: {tag}: {}", self.message);
        if !self.fix.is_empty() {
            println!("       fix: {}", self.fix);
        }
    }
}

/// A managed account with what the checks need.
#[derive(Debug, Clone)]
pub struct Managed {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Groups whose members reach root without sudo (or through a `%group` rule and polkit).
const ROOT_GROUPS: &[(&str, &str)] = &[
    ("root", "group root owns many files only root should write"),
    (
        "sudo",
        "Debian's admin group: sudo rules and polkit treat it as root",
    ),
    (
        "wheel",
        "the admin group of many distributions: sudo rules and polkit",
    ),
    ("admin", "Ubuntu's old admin group"),
    (
        "docker",
        "the docker socket is root: `docker run -v /:/host` reads and writes any file",
    ),
    ("lxd", "lxd containers can mount the host's root filesystem"),
    (
        "incus",
        "incus containers can mount the host's root filesystem",
    ),
    (
        "libvirt",
        "libvirt can start a VM with the host's disks attached",
    ),
    (
        "disk",
        "raw block devices: read /etc/shadow from the disk, or write anything",
    ),
    ("shadow", "reads /etc/shadow (root's password hash)"),
];

/// Groups that do not give root but read what the gateway would keep from the user.
const READ_GROUPS: &[(&str, &str)] = &[
    (
        "adm",
        "reads /var/log, including other users' sudo lines and the gateway's syslog",
    ),
    (
        "systemd-journal",
        "reads the whole journal, including other services' secrets",
    ),
];

pub fn groups(u: &Managed) -> Vec<Finding> {
    let mut out = Vec::new();
    for &gid in &u.gids {
        let Ok(Some(g)) = Group::from_gid(nix::unistd::Gid::from_raw(gid)) else {
            continue;
        };
        if let Some((_, why)) = ROOT_GROUPS.iter().find(|(n, _)| *n == g.name) {
            out.push(Finding::defeats(
                format!("{} is in group {}: {why}", u.name, g.name),
                format!("gpasswd -d {} {}", u.name, g.name),
            ));
        } else if let Some((_, why)) = READ_GROUPS.iter().find(|(n, _)| *n == g.name) {
            out.push(Finding::weakens(
                format!("{} is in group {}: {why}", u.name, g.name),
                format!("gpasswd -d {} {}", u.name, g.name),
            ));
        }
    }
    out
}

/// Every candidate path of every program the managed users may run, checked as the gateway will
/// check it at run time (whole chain root-owned, not group/world-writable, interpreters too).
pub fn program_paths(policy: &Policy, users: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    for name in super::programs_for(policy, users) {
        let Some(p) = policy.programs.get(&name) else {
            continue;
        };
        for path in &p.paths {
            match trust::resolve_program(path) {
                Ok(_) | Err(trust::Distrust::Missing(_)) => {}
                Err(e) => out.push(Finding::defeats(
                    format!("program {name}: {e}; the gateway will refuse to run it"),
                    format!(
                        "make every directory above {} and the file root-owned and not \
                         group/world-writable (chown root:root, chmod go-w)",
                        path.display()
                    ),
                )),
            }
        }
    }
    out
}

/// The gateway's own binary and policy, as `gateway run` checks them.
pub fn own_files(binary: &Path, policy: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    for (what, p) in [("gateway binary", binary), ("policy", policy)] {
        if let Err(e) = trust::resolve_locked(p) {
            out.push(Finding::defeats(
                format!("{what}: {e}; every request will be denied"),
                "chown root:root and chmod go-w along the path",
            ));
        }
    }
    out
}

fn writable_by(path: &Path, u: &Managed) -> bool {
    let Ok(md) = fs::symlink_metadata(path) else {
        return false;
    };
    let mode = md.mode();
    (md.uid() == u.uid && mode & 0o200 != 0)
        || (u.gids.contains(&md.gid()) && mode & 0o020 != 0)
        || mode & 0o002 != 0
}

/// Whether `u` could create or replace the file at `path`: the file itself, or any directory
/// above it that the user may write (and so rename entries in), not protected by a sticky bit.
pub fn user_can_replace(path: &Path, u: &Managed) -> bool {
    if writable_by(path, u) {
        return true;
    }
    let mut dir = PathBuf::from("/");
    let comps: Vec<_> = path.components().skip(1).collect();
    for c in comps.iter() {
        let sticky = fs::symlink_metadata(&dir)
            .map(|m| m.mode() & 0o1000 != 0)
            .unwrap_or(false);
        let child = dir.join(c);
        let child_owner = fs::symlink_metadata(&child).map(|m| m.uid()).ok();
        if writable_by(&dir, u) && (!sticky || child_owner.is_none() || child_owner == Some(u.uid))
        {
            return true;
        }
        if child_owner.is_none() {
            return false;
        }
        dir = child;
    }
    false
}

/// The files a login shell reads before running `-c COMMAND` for sshd. For bash this is
/// `~/.bashrc`: Debian builds bash with SSH_SOURCE_BASHRC, and a test on Debian 12 (OpenSSH 9.2,
/// bash 5.2, forced command, no pty) showed ~/.bashrc running before the command.
fn rc_files(shell: &Path, home: &Path) -> Option<Vec<PathBuf>> {
    let resolved = fs::canonicalize(shell).unwrap_or_else(|_| shell.to_path_buf());
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files: &[&str] = match name.as_str() {
        "bash" => &[".bashrc"],
        "zsh" => &[".zshenv"],
        "fish" => &[".config/fish/config.fish", ".config/fish/conf.d"],
        "csh" | "tcsh" => &[".cshrc", ".tcshrc"],
        "dash" => &[],
        _ => return None,
    };
    Some(files.iter().map(|f| home.join(f)).collect())
}

pub fn login_shell(u: &Managed) -> Vec<Finding> {
    let shell = u.shell.display().to_string();
    let name = u
        .shell
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if matches!(name.as_str(), "nologin" | "false") {
        return vec![Finding::weakens(
            format!(
                "{}'s login shell is {shell}: sshd runs the forced command through the login \
                 shell, so every SSH request fails",
                u.name
            ),
            format!("usermod -s /bin/sh {}", u.name),
        )];
    }
    match rc_files(&u.shell, &u.home) {
        None => vec![Finding::weakens(
            format!(
                "{}'s login shell {shell} is not one gateway knows; it may read files the user \
                 controls before the forced command",
                u.name
            ),
            format!(
                "usermod -s /bin/sh {} (dash reads no rc file for sh -c)",
                u.name
            ),
        )],
        Some(files) => files
            .into_iter()
            .filter(|f| user_can_replace(f, u))
            .map(|f| {
                Finding::weakens(
                    format!(
                        "{}'s login shell {shell} runs {} before the forced command, and {} can \
                         write it: whatever it holds runs (as {}) on every SSH request",
                        u.name,
                        f.display(),
                        u.name,
                        u.name
                    ),
                    format!(
                        "gateway install --set-login-shell (sets /bin/sh, which is dash), or \
                         usermod -s /bin/sh {}",
                        u.name
                    ),
                )
            })
            .collect(),
    }
}

/// Keys in the user's own authorized_keys that sshd would honour without the gateway.
pub fn home_keys(u: &Managed) -> Vec<Finding> {
    let mut out = Vec::new();
    for f in [".ssh/authorized_keys", ".ssh/authorized_keys2"] {
        let p = u.home.join(f);
        let Ok(text) = fs::read_to_string(&p) else {
            continue;
        };
        let (keys, _) = super::ssh::parse_keys(&text);
        if !keys.is_empty() {
            out.push(Finding::weakens(
                format!(
                    "{} has {} key(s) in {} that log in with a shell, not through the gateway",
                    u.name,
                    keys.len(),
                    p.display()
                ),
                format!(
                    "gateway install --ssh-user {} (moves them under the forced command)",
                    u.name
                ),
            ));
        }
    }
    out
}

/// What `sudo -l -U user` says the user may run, one entry per line.
pub fn sudo_listing(user: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let argv: Vec<String> = ["/usr/bin/sudo", "-l", "-U", user]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = system_command(&argv)
        .output()
        .map_err(|e| format!("cannot run sudo -l: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(parse_listing(&text))
}

/// Reads `sudo -l -U` output, which sudo wraps at 80 columns: Defaults entries are joined and
/// split on ", "; a command entry starts at a 4-space indent and continues at a deeper one.
fn parse_listing(text: &str) -> (Vec<String>, Vec<String>) {
    let mut defaults_text = String::new();
    let mut commands: Vec<String> = Vec::new();
    let mut section = 0;
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = if line.starts_with("Matching Defaults entries") {
                1
            } else if line.contains("may run the following commands") {
                2
            } else {
                0
            };
            continue;
        }
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        match section {
            1 => {
                defaults_text.push(' ');
                defaults_text.push_str(l);
            }
            2 if line.starts_with("     ") => {
                if let Some(last) = commands.last_mut() {
                    last.push(' ');
                    last.push_str(l);
                }
            }
            2 => commands.push(l.to_string()),
            _ => {}
        }
    }
    let defaults = defaults_text
        .split(", ")
        .map(|d| d.trim().trim_end_matches(',').replace("\\:", ":"))
        .filter(|d| !d.is_empty())
        .collect();
    (defaults, commands)
}

/// After install: the user may run the gateway entry and nothing else, with the shims first in
/// secure_path.
pub fn sudo_effective(user: &str, expected: &str, shim_dir: &str) -> Vec<Finding> {
    let (defaults, commands) = match sudo_listing(user) {
        Ok(x) => x,
        Err(e) => {
            return vec![Finding::defeats(
                format!("cannot verify {user}'s sudo rights: {e}"),
                "",
            )]
        }
    };
    let mut out = Vec::new();
    for c in &commands {
        if c != expected {
            out.push(Finding::defeats(
                format!("{user} may still run through sudo: {c}"),
                "find the rule with `sudo -l -U USER` and remove it (install edits only /etc/sudoers and the files it includes)",
            ));
        }
    }
    if commands.is_empty() {
        out.push(Finding::defeats(
            format!("{user} has no sudo entry for the gateway; sudo requests will fail"),
            "check that /etc/sudoers has @includedir /etc/sudoers.d",
        ));
    }
    let secure = defaults
        .iter()
        .rev()
        .find_map(|d| d.strip_prefix("secure_path="));
    let first_dir = secure.map(|s| s.trim_matches('"').split(':').next().unwrap_or(""));
    if first_dir != Some(shim_dir) {
        out.push(Finding::weakens(
            format!(
                "{user}'s effective sudo secure_path is {}: `sudo PROGRAM` will not reach the \
                 gateway's shims",
                secure.unwrap_or("(unset)")
            ),
            "remove the later Defaults secure_path entry that overrides the gateway's",
        ));
    }
    out
}

/// What sshd will apply to the user's sessions (`sshd -T -C`).
pub fn sshd_effective(user: &str, keys_dir: &str, force: &str) -> Vec<Finding> {
    let argv: Vec<String> = [
        "/usr/sbin/sshd",
        "-T",
        "-C",
        &format!("user={user},host=localhost,addr=127.0.0.1"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = match system_command(&argv).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            return vec![Finding::defeats(
                format!(
                    "sshd -T fails: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                "",
            )]
        }
        Err(e) => return vec![Finding::defeats(format!("cannot run sshd -T: {e}"), "")],
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or("")
            .to_string()
    };
    let mut f = Vec::new();
    if value("forcecommand") != force {
        f.push(Finding::defeats(
            format!(
                "sshd does not force `{force}` for {user} (it has {:?})",
                value("forcecommand")
            ),
            "make /etc/ssh/sshd_config start with Include /etc/ssh/sshd_config.d/*.conf, \
             before any Match block",
        ));
    }
    if value("authorizedkeysfile") != format!("{keys_dir}/%u") {
        f.push(Finding::defeats(
            format!(
                "sshd reads {user}'s keys from {:?}, not the gateway's root-owned file",
                value("authorizedkeysfile")
            ),
            "an earlier AuthorizedKeysFile for this user wins; remove it",
        ));
    }
    f
}

/// Looks up an account for the checks.
pub fn managed(name: &str) -> Option<Managed> {
    let u = User::from_name(name).ok()??;
    let gids = super::account_gids(&u);
    Some(Managed {
        name: u.name,
        uid: u.uid.as_raw(),
        gids,
        home: u.dir,
        shell: u.shell,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_map_to_the_rc_files_they_read_for_a_forced_command() {
        let home = Path::new("/home/u");
        // (shell, expected, why)
        let table: &[(&str, Option<&[&str]>, &str)] = &[
            ("/usr/bin/dash", Some(&[]), "dash reads nothing for sh -c"),
            (
                "/bin/zsh-nonexistent/zsh",
                Some(&[".zshenv"]),
                "zsh always reads ~/.zshenv",
            ),
            (
                "/opt/ksh",
                None,
                "an unknown shell is reported, not guessed",
            ),
        ];
        for (shell, want, why) in table {
            let got = rc_files(Path::new(shell), home);
            let want: Option<Vec<PathBuf>> = want.map(|w| w.iter().map(|f| home.join(f)).collect());
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn wrapped_sudo_listings_are_read_whole() {
        let text = "Matching Defaults entries for u on vm:\n    env_reset, mail_badpass,\n    \
            secure_path=/usr/local/sbin\\:/bin,\n    use_pty,\n    secure_path=/shims\\:/bin\n\n\
            Runas and Command-specific defaults for u:\n    Defaults!/x env_keep+=\"A\n    B\"\n\n\
            User u may run the following commands on vm:\n    (root) NOPASSWD: /a run *, /a ssh,\n        \
            /shims/\n    (ALL) ALL\n";
        let (defaults, commands) = parse_listing(text);
        assert_eq!(
            defaults,
            [
                "env_reset",
                "mail_badpass",
                "secure_path=/usr/local/sbin:/bin",
                "use_pty",
                "secure_path=/shims:/bin"
            ]
        );
        assert_eq!(
            commands,
            ["(root) NOPASSWD: /a run *, /a ssh, /shims/", "(ALL) ALL"]
        );
    }

    #[test]
    fn root_owned_system_files_are_not_user_replaceable() {
        let u = Managed {
            name: "nobody".into(),
            uid: 65534,
            gids: vec![65534],
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
        };
        assert!(!user_can_replace(Path::new("/etc/passwd"), &u));
        assert!(!user_can_replace(
            Path::new("/etc/no-such-file-gateway"),
            &u
        ));
        // /tmp is world-writable and sticky: a new name there is the user's to create.
        assert!(user_can_replace(Path::new("/tmp/no-such-file-gateway"), &u));
    }
}
