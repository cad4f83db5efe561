//! `gateway install` / `uninstall` as root against this machine's real sudo and sshd.
//! Every test holds /run/gateway-tests.lock and puts every path it touches back on drop.

mod install_host;

use std::fs;
use std::path::Path;

use install_host::*;

const STOCK_LINE: &str = "gwti-sudo ALL=(ALL) NOPASSWD:ALL";
const SHARED_LINE: &str = "gwti-agent, gwti-other ALL=(ALL) NOPASSWD:ALL";
const STOCK_FILE: &str = "/etc/sudoers.d/gwti-stock";

/// The stock state: a Vast.ai-style grant in /etc/sudoers, a line shared with another user in a
/// drop-in, the agent's key in its own authorized_keys.
fn stock(host: &mut Host, dir: &Path) -> std::path::PathBuf {
    for u in ["gwti-sudo", "gwti-agent", "gwti-other"] {
        host.user(u);
    }
    host.sudoers_line("/etc/sudoers", STOCK_LINE);
    host.sudoers_line(STOCK_FILE, "# a comment that must survive");
    host.sudoers_line(STOCK_FILE, SHARED_LINE);
    let key = keypair(dir, "agent");
    let ssh = Path::new("/home/gwti-agent/.ssh");
    fs::create_dir_all(ssh).unwrap();
    fs::copy(key.with_extension("pub"), ssh.join("authorized_keys")).unwrap();
    ok(&[
        "/usr/bin/chown",
        "-R",
        "gwti-agent:gwti-agent",
        ssh.to_str().unwrap(),
    ]);
    key
}

fn sudo_as(user: &str, args: &[&str]) -> std::process::Output {
    let mut argv = vec!["/usr/sbin/runuser", "-u", user, "--", "/usr/bin/sudo", "-n"];
    argv.extend_from_slice(args);
    cmd(&argv)
}

fn ssh_as(key: &Path, port: u16, command: &str) -> std::process::Output {
    let port = port.to_string();
    cmd(&[
        "/usr/bin/ssh",
        "-i",
        key.to_str().unwrap(),
        "-p",
        &port,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "gwti-agent@127.0.0.1",
        command,
    ])
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn sudoers_files() -> Vec<(std::path::PathBuf, gateway::install::tx::Entry)> {
    let mut v: Vec<_> = tree(Path::new("/etc/sudoers.d")).into_iter().collect();
    v.extend(tree(Path::new("/etc/sudoers")));
    v
}

#[test]
fn stock_grant_to_enforced_gateway_and_back_byte_for_byte() {
    let mut host = Host::new();
    let dir = scratch("e2e");
    let key = stock(&mut host, &dir);
    let before = sudoers_files();
    let installed_paths = [
        "/usr/local/bin/gateway",
        "/etc/gateway",
        "/usr/local/lib/gateway",
        "/etc/ssh/sshd_config.d/00-gateway.conf",
    ];
    let before_paths: Vec<_> = installed_paths.iter().map(|p| tree(Path::new(p))).collect();

    let o = gateway(&[
        "install",
        "--all",
        "--policy",
        POLICY,
        "--ssh-user",
        "gwti-agent",
    ]);
    assert_eq!(o.status.code(), Some(0), "install failed:\n{}", text(&o));
    let again = gateway(&[
        "install",
        "--all",
        "--policy",
        POLICY,
        "--ssh-user",
        "gwti-agent",
    ]);
    assert!(
        text(&again).contains("gateway-result: install ok changes=0"),
        "a second install must change nothing:\n{}",
        text(&again)
    );

    // sudo: through the shim, the allowed request runs as root; the rest never runs.
    let rows: &[(&str, &[&str], Option<&str>, &str)] = &[
        (
            "gwti-sudo",
            &["id", "-u"],
            Some("0"),
            "the policy's one shape runs as root",
        ),
        (
            "gwti-sudo",
            &["id", "-un"],
            None,
            "a neighbouring shape is denied by the gateway",
        ),
        (
            "gwti-sudo",
            &["/bin/sh", "-c", "id"],
            None,
            "the old NOPASSWD:ALL is gone",
        ),
        (
            "gwti-agent",
            &["id", "-u"],
            Some("0"),
            "the shared line's managed user goes through the gateway",
        ),
        (
            "gwti-agent",
            &["/usr/bin/id"],
            None,
            "absolute paths are not in the gateway's entry",
        ),
        (
            "gwti-other",
            &["/usr/bin/id", "-un"],
            Some("root"),
            "the other user on the shared line keeps its grant",
        ),
    ];
    for (user, args, want, why) in rows {
        let o = sudo_as(user, args);
        match want {
            Some(w) => assert_eq!(out(&o), *w, "{user} {args:?}: {why}: {}", text(&o)),
            None => {
                assert!(!o.status.success(), "{user} {args:?} ran: {why}");
                assert!(!out(&o).contains("root") && out(&o) != "0", "{why}");
            }
        }
    }
    let denied = sudo_as("gwti-sudo", &["id", "-un"]);
    assert_eq!(denied.status.code(), Some(77), "the gateway's deny status");
    // The rollout guide's loop: the audit log records the deny, and `check --batch` replays it.
    let log = "/var/log/gateway-gwti/audit.jsonl";
    let records = fs::read_to_string(log).unwrap();
    assert!(
        records
            .lines()
            .any(|l| l.contains("\"verdict\":\"deny\"") && l.contains("[\"id\",\"-un\"]")),
        "{records}"
    );
    let replay = gateway(&["check", "--config", POLICY, "--batch", log]);
    let verdicts: Vec<String> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["verdict"].to_string())
        .collect();
    assert_eq!(
        verdicts.len(),
        records.lines().count(),
        "one decision per record"
    );
    assert!(
        verdicts.contains(&"\"deny\"".to_string()) && verdicts.contains(&"\"allow\"".to_string())
    );

    // ssh: the agent's key now reaches only the gateway.
    let c = sshd("/etc/ssh/sshd_config", 2410, &["PidFile=none".into()]);
    host.child(c);
    let rows: &[(&str, Option<&str>, &str)] = &[
        ("id -u", Some("0"), "allowed over SSH, run as root"),
        (
            "sudo id -u",
            Some("0"),
            "the leading sudo word the agent is used to",
        ),
        ("id -un", None, "denied shape"),
        ("id -u; sh", None, "shell syntax never reaches a shell"),
        ("sh -c id", None, "no shell"),
    ];
    for (cmd, want, why) in rows {
        let o = ssh_as(&key, 2410, cmd);
        match want {
            Some(w) => assert_eq!(out(&o), *w, "ssh {cmd:?}: {why}: {}", text(&o)),
            None => assert_eq!(
                o.status.code(),
                Some(77),
                "ssh {cmd:?}: {why}: {}",
                text(&o)
            ),
        }
    }
    // A key added to the user's own file after install is not read.
    let late = keypair(&dir, "late");
    let mut keys = fs::read_to_string("/home/gwti-agent/.ssh/authorized_keys").unwrap();
    keys.push_str(&fs::read_to_string(late.with_extension("pub")).unwrap());
    fs::write("/home/gwti-agent/.ssh/authorized_keys", keys).unwrap();
    let o = ssh_as(&late, 2410, "id -u");
    assert_eq!(
        o.status.code(),
        Some(255),
        "the home directory's keys are not read: {}",
        text(&o)
    );

    let o = gateway(&["uninstall", "--restore-permissive"]);
    assert_eq!(o.status.code(), Some(0), "uninstall failed:\n{}", text(&o));
    assert_eq!(
        sudoers_files(),
        before,
        "with --restore-permissive every sudoers file is byte-identical to before"
    );
    for (p, b) in installed_paths.iter().zip(&before_paths) {
        assert!(
            tree(Path::new(p)) == *b,
            "{p} is not as it was before install"
        );
    }
    let o = sudo_as("gwti-sudo", &["/usr/bin/id", "-un"]);
    assert_eq!(out(&o), "root", "the permissive grant works again");
}

#[test]
fn uninstall_without_restore_leaves_no_sudo_and_every_other_line() {
    let mut host = Host::new();
    let dir = scratch("norestore");
    stock(&mut host, &dir);
    let main_before = fs::read_to_string("/etc/sudoers").unwrap();
    let stock_before = fs::read_to_string(STOCK_FILE).unwrap();
    let o = gateway(&["install", "--sudo-restrictions", "--policy", POLICY]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = gateway(&["uninstall"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let want_main = main_before.replace(&format!("{STOCK_LINE}\n"), "");
    assert_ne!(want_main, main_before);
    assert_eq!(
        fs::read_to_string("/etc/sudoers").unwrap(),
        want_main,
        "only the grant line is gone"
    );
    let want_stock = stock_before.replace(SHARED_LINE, "gwti-other ALL=(ALL) NOPASSWD:ALL");
    assert_eq!(
        fs::read_to_string(STOCK_FILE).unwrap(),
        want_stock,
        "the shared line keeps the other user; the comment stays"
    );
    for u in ["gwti-sudo", "gwti-agent"] {
        let (_, commands) = gateway::install::checks::sudo_listing(u).unwrap();
        assert!(
            commands.is_empty(),
            "{u} keeps no sudo at all: {commands:?}"
        );
        assert!(!sudo_as(u, &["/usr/bin/id"]).status.success());
    }
}

#[test]
fn dry_run_changes_nothing_in_etc() {
    let mut host = Host::new();
    let dir = scratch("dry");
    stock(&mut host, &dir);
    let roots = ["/etc", "/usr/local", "/var/lib/gateway"];
    let before: Vec<_> = roots.iter().map(|r| tree(Path::new(r))).collect();
    let o = gateway(&[
        "install",
        "--dry-run",
        "--all",
        "--policy",
        POLICY,
        "--ssh-user",
        "gwti-agent",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    for want in [
        format!("-{STOCK_LINE}"),
        "+++ /etc/sudoers.d/gateway".into(),
        "+\tForceCommand /usr/local/bin/gateway ssh".into(),
        "+restrict,command=\"/usr/local/bin/gateway ssh\" ssh-ed25519".into(),
    ] {
        assert!(t.contains(&want), "the dry run shows {want:?}:\n{t}");
    }
    let after: Vec<_> = roots.iter().map(|r| tree(Path::new(r))).collect();
    for ((root, b), a) in roots.iter().zip(&before).zip(&after) {
        let changed: Vec<_> = b
            .iter()
            .filter(|(p, e)| a.get(*p) != Some(e))
            .map(|(p, _)| p)
            .chain(a.keys().filter(|p| !b.contains_key(*p)))
            .collect();
        assert!(changed.is_empty(), "--dry-run changed {root}: {changed:?}");
    }

    // The same for uninstall's dry run over a real install.
    assert_eq!(
        gateway(&["install", "--sudo-restrictions", "--policy", POLICY])
            .status
            .code(),
        Some(0)
    );
    let before: Vec<_> = roots.iter().map(|r| tree(Path::new(r))).collect();
    let o = gateway(&["uninstall", "--dry-run", "--restore-permissive"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(&format!("+{STOCK_LINE}")), "{}", text(&o));
    let after: Vec<_> = roots.iter().map(|r| tree(Path::new(r))).collect();
    assert!(before == after, "uninstall --dry-run changed a file");
    assert_eq!(
        gateway(&["uninstall", "--restore-permissive"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_broken_policy_or_sudoers_never_lands() {
    let mut host = Host::new();
    let dir = scratch("broken");
    stock(&mut host, &dir);
    assert_eq!(
        gateway(&["install", "--sudo-restrictions", "--policy", POLICY])
            .status
            .code(),
        Some(0)
    );
    let roots = ["/etc", "/usr/local/lib/gateway", "/usr/local/bin"];
    let snapshot = || -> Vec<_> { roots.iter().map(|r| tree(Path::new(r))).collect() };
    let good = fs::read_to_string(POLICY).unwrap();
    let broken_syntax = dir.join("syntax.toml");
    fs::write(
        &broken_syntax,
        good.replace("[rules.id-uid]", "[rules.id-uid"),
    )
    .unwrap();
    let failing_test = dir.join("failing-test.toml");
    let extra =
        "\n[[test]]\nuser = \"gwti-sudo\"\nwhy = \"wrong on purpose\"\nallow = [\"id -un\"]\n";
    fs::write(&failing_test, format!("{good}{extra}")).unwrap();
    let unknown_key = dir.join("unknown.toml");
    fs::write(
        &unknown_key,
        good.replace("syslog = false", "syslog = false\nsyslogg = true"),
    )
    .unwrap();
    // (policy, why)
    let rows: &[(&Path, &str)] = &[
        (&broken_syntax, "a TOML syntax error"),
        (&failing_test, "a policy whose own [[test]] fails"),
        (&unknown_key, "an unknown key (deny_unknown_fields)"),
    ];
    for (policy, why) in rows {
        let before = snapshot();
        let o = gateway(&[
            "install",
            "--sudo-restrictions",
            "--update",
            "--policy",
            policy.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(78), "{why}: {}", text(&o));
        assert!(before == snapshot(), "{why}: something changed");
        assert_eq!(
            out(&sudo_as("gwti-sudo", &["id", "-u"])),
            "0",
            "{why}: the old policy still works"
        );
    }

    // A sudoers configuration that fails visudo with the drop-in: an alias of the same name
    // defined elsewhere. Install is refused and everything is put back.
    assert_eq!(
        gateway(&["uninstall", "--restore-permissive"])
            .status
            .code(),
        Some(0)
    );
    host.sudoers_line(
        "/etc/sudoers.d/gwti-alias",
        "User_Alias GATEWAY_USERS = gwti-other",
    );
    let before = snapshot();
    let o = gateway(&["install", "--sudo-restrictions", "--policy", POLICY]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("already defined"),
        "visudo's reason is shown: {}",
        text(&o)
    );
    assert!(text(&o).contains("rolled back"), "{}", text(&o));
    assert!(
        before == snapshot(),
        "the failed install left a change behind"
    );
    assert_eq!(
        out(&sudo_as("gwti-sudo", &["/usr/bin/id", "-un"])),
        "root",
        "the old grant still works"
    );
    ok(&["/usr/sbin/visudo", "-c", "-q"]);
}

#[test]
fn without_flags_and_without_a_terminal_install_refuses() {
    let mut host = Host::new();
    host.user("gwti-sudo");
    let before = tree(Path::new("/etc"));
    let o = gateway(&["install", "--policy", POLICY]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        text(&o).contains("--all"),
        "the usage names the flags: {}",
        text(&o)
    );
    assert!(tree(Path::new("/etc")) == before, "nothing changed");
}

#[test]
fn the_real_accounts_with_the_built_in_policy_in_one_command() {
    let mut host = Host::new();
    let dir = scratch("real");
    for u in ["vastai_kaalia", "ai-worker"] {
        host.user(u);
    }
    host.sudoers_line("/etc/sudoers", "vastai_kaalia ALL=(ALL) NOPASSWD:ALL");
    host.sudoers_line(
        "/etc/sudoers.d/gwti-nixos-style",
        "ai-worker ALL=(root) NOPASSWD: /usr/bin/docker ps *, /usr/bin/docker run *",
    );
    let key = keypair(&dir, "agent");
    let ssh = Path::new("/home/ai-worker/.ssh");
    fs::create_dir_all(ssh).unwrap();
    fs::copy(key.with_extension("pub"), ssh.join("authorized_keys")).unwrap();
    let before = sudoers_files();
    // No --policy and none installed: the policy compiled into the binary.
    let _ = fs::remove_file("/etc/gateway/gateway.toml");
    let o = gateway(&["install", "--all", "--ssh-user", "ai-worker"]);
    assert!(
        matches!(o.status.code(), Some(0) | Some(2)),
        "install failed:\n{}",
        text(&o)
    );
    assert!(text(&o).contains("(built-in gateway.toml)"), "{}", text(&o));
    let rows: &[(&str, &[&str], Option<i32>, &str)] = &[
        (
            "vastai_kaalia",
            &["ss", "-tln"],
            Some(0),
            "a read-only ss through its shim",
        ),
        (
            "vastai_kaalia",
            &["ss", "-K", "dst", "127.0.0.1"],
            Some(77),
            "ss -K kills sockets",
        ),
        (
            "vastai_kaalia",
            &["nvidia-smi", "-r"],
            Some(77),
            "a GPU reset is denied",
        ),
        (
            "vastai_kaalia",
            &["/bin/bash"],
            Some(1),
            "sudo itself refuses what the entry does not list",
        ),
        (
            "ai-worker",
            &["/usr/bin/docker", "run", "-v", "/:/host", "alpine"],
            Some(1),
            "the old docker run * rule is gone",
        ),
    ];
    for (user, args, code, why) in rows {
        let o = sudo_as(user, args);
        assert_eq!(
            o.status.code(),
            *code,
            "{user} {args:?}: {why}: {}",
            text(&o)
        );
    }
    host.child(sshd("/etc/ssh/sshd_config", 2411, &["PidFile=none".into()]));
    let port = "2411";
    let ssh_ai = |request: &str| {
        cmd(&[
            "/usr/bin/ssh",
            "-i",
            key.to_str().unwrap(),
            "-p",
            port,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "ai-worker@127.0.0.1",
            request,
        ])
    };
    let rows: &[(&str, i32, &str)] = &[
        ("sudo ss -tlnp", 0, "the agent's documented call"),
        ("iptables -S", 0, "iptables -S is allowed for the agent"),
        (
            "docker run -v /:/host alpine cat /host/etc/shadow",
            77,
            "the motivating escape",
        ),
        ("bash -i", 77, "no shell"),
    ];
    for (cmd, code, why) in rows {
        let o = ssh_ai(cmd);
        assert_eq!(
            o.status.code(),
            Some(*code),
            "ssh {cmd:?}: {why}: {}",
            text(&o)
        );
    }
    let o = gateway(&["uninstall", "--restore-permissive"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        sudoers_files(),
        before,
        "byte-identical sudoers after --restore-permissive"
    );
}

#[test]
fn update_findings_and_login_shell() {
    let mut host = Host::new();
    let dir = scratch("update");
    stock(&mut host, &dir);
    ok(&["/usr/sbin/usermod", "-aG", "disk", "gwti-sudo"]);
    let o = gateway(&[
        "install",
        "--sudo-restrictions",
        "--policy",
        POLICY,
        "--ssh-user",
        "gwti-agent",
        "--set-login-shell",
    ]);
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a defeating finding is exit 2:\n{t}"
    );
    assert!(t.contains("DEFEATS: gwti-sudo is in group disk"), "{t}");
    assert!(
        !t.contains("runs /home/gwti-agent/.bashrc"),
        "the shell was fixed:\n{t}"
    );
    let shell = |u: &str| {
        ok(&["/usr/bin/getent", "passwd", u])
            .trim()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        shell("gwti-agent"),
        "/bin/sh",
        "--set-login-shell gives dash"
    );

    // An update with a policy that adds a program: a new shim, the old policy kept as a backup.
    let newer = dir.join("newer.toml");
    let good = fs::read_to_string(POLICY).unwrap();
    fs::write(
        &newer,
        good.replace("rules = [\"id-uid\"]\n\n[users.gwti-agent]", "rules = [\"id-uid\", \"whoami\"]\n\n[users.gwti-agent]")
            + "\n[programs.whoami]\npaths = [\"/usr/bin/whoami\"]\ndialect = \"exact\"\n\n[rules.whoami]\nprogram = \"whoami\"\nargs = []\n",
    )
    .unwrap();
    let o = gateway(&["install", "--update", "--policy", newer.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        fs::read_link("/usr/local/lib/gateway/shims/whoami").unwrap(),
        Path::new("/usr/local/bin/gateway")
    );
    assert_eq!(
        out(&sudo_as("gwti-sudo", &["whoami"])),
        "root",
        "the new rule works at once"
    );
    let kept = tree(Path::new("/var/lib/gateway/backups"))
        .into_iter()
        .any(|(p, e)| p.ends_with("etc/gateway/gateway.toml")
            && matches!(e, gateway::install::tx::Entry::File { ref bytes, .. } if bytes == good.as_bytes()));
    assert!(kept, "the replaced policy is in the backups");

    let o = gateway(&["uninstall"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        shell("gwti-agent"),
        "/bin/bash",
        "uninstall puts the login shell back"
    );
    assert!(!Path::new("/usr/local/lib/gateway/shims/whoami").exists());
}

/// `gateway install` on a terminal: answers typed into a pseudo-terminal.
fn on_tty(args: &[&str], answers: &str) -> std::process::Output {
    use std::io::Write;
    let tty = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/on_tty.py");
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(tty)
        .arg(GATEWAY)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    println!("{}", text(&o));
    o
}

#[test]
fn on_a_terminal_without_flags_install_asks_shows_the_diff_and_applies_on_yes() {
    let mut host = Host::new();
    let dir = scratch("tty");
    stock(&mut host, &dir);
    let before = tree(Path::new("/etc"));
    // sudo-restrictions yes, alerts no, crontab-watch no, core-limits no, the agent's keys no,
    // then "Apply these changes?" no: nothing may change.
    let o = on_tty(&["install", "--policy", POLICY], "y\nn\nn\nn\nn\nn\n");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("(sudo-restrictions)? [Y/n]"), "{t}");
    assert!(
        t.contains("-gwti-sudo ALL=(ALL) NOPASSWD:ALL"),
        "the diff is shown before asking: {t}"
    );
    assert!(t.contains("nothing was changed"), "{t}");
    assert!(
        tree(Path::new("/etc")) == before,
        "answering no changes nothing"
    );

    let o = on_tty(&["install", "--policy", POLICY], "y\nn\nn\nn\nn\ny\n");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("gateway-result: install ok"),
        "{}",
        text(&o)
    );
    assert_eq!(out(&sudo_as("gwti-sudo", &["id", "-u"])), "0");
    assert!(
        !Path::new("/etc/ssh/sshd_config.d/00-gateway.conf").exists(),
        "keys were declined"
    );
    assert_eq!(
        gateway(&["uninstall", "--restore-permissive"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_program_path_the_user_can_change_is_reported_by_the_dry_run() {
    let mut host = Host::new();
    let dir = scratch("paths");
    stock(&mut host, &dir);
    // A program of the policy that lives in the managed user's own home.
    let tool = Path::new("/home/gwti-sudo/bin/tool");
    fs::create_dir_all(tool.parent().unwrap()).unwrap();
    fs::copy("/usr/bin/id", tool).unwrap();
    ok(&[
        "/usr/bin/chown",
        "-R",
        "gwti-sudo:gwti-sudo",
        "/home/gwti-sudo/bin",
    ]);
    let policy = dir.join("paths.toml");
    let good = fs::read_to_string(POLICY).unwrap();
    fs::write(
        &policy,
        good.replace("rules = [\"id-uid\"]\n\n[users.gwti-agent]", "rules = [\"id-uid\", \"tool\"]\n\n[users.gwti-agent]")
            + "\n[programs.tool]\npaths = [\"/home/gwti-sudo/bin/tool\"]\ndialect = \"exact\"\n\n[rules.tool]\nprogram = \"tool\"\nargs = []\n",
    )
    .unwrap();
    let o = gateway(&[
        "install",
        "--dry-run",
        "--sudo-restrictions",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("DEFEATS: program tool: /home/gwti-sudo is owned by uid"),
        "the walk names the first directory root does not own: {t}"
    );
}

#[test]
fn the_webhook_url_is_written_root_only_and_never_printed() {
    let mut host = Host::new();
    host.user("gwti-sudo");
    let url = "https://discord.com/api/webhooks/123/gwti-secret-token";
    let args = [
        "install",
        "--sudo-restrictions",
        "--alerts",
        "--webhook",
        url,
        "--policy",
        POLICY,
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    for run in [&dry[..], &args[..]] {
        let o = gateway(run);
        assert!(matches!(o.status.code(), Some(0) | Some(2)), "{}", text(&o));
        assert!(
            !text(&o).contains("gwti-secret-token"),
            "the URL is not printed: {}",
            text(&o)
        );
    }
    let md = fs::metadata("/etc/gateway/webhooks.toml").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.mode() & 0o777, md.uid()), (0o600, 0), "root's alone");
    let parsed: toml::Table =
        toml::from_str(&fs::read_to_string("/etc/gateway/webhooks.toml").unwrap()).unwrap();
    assert_eq!(parsed["webhook"][0]["kind"].as_str(), Some("discord"));
    assert_eq!(parsed["webhook"][0]["url"].as_str(), Some(url));
    let o = gateway(&[
        "install",
        "--alerts",
        "--webhook",
        "https://x/\"oops",
        "--policy",
        POLICY,
    ]);
    assert_eq!(
        o.status.code(),
        Some(64),
        "a quote cannot reach the TOML file"
    );
    assert_eq!(gateway(&["uninstall"]).status.code(), Some(0));
    assert!(!Path::new("/etc/gateway/webhooks.toml").exists());
}
