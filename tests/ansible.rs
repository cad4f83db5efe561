//! The Ansible role in contrib/ansible: syntax, and real runs against this machine
//! (ansible_connection=local) checked through real sudo.

mod install_host;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use install_host::*;

const ANSIBLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/ansible");

fn playbook(args: &[&str], vars: &serde_json::Value, dir: &Path) -> Output {
    let vars_file = dir.join("vars.json");
    fs::write(&vars_file, vars.to_string()).unwrap();
    let o = Command::new("ansible-playbook")
        .args(["-i", "localhost,", "-c", "local"])
        .arg("-e")
        .arg(format!("@{}", vars_file.display()))
        .args(args)
        .arg(format!("{ANSIBLE_DIR}/tests/localhost.yml"))
        .env("ANSIBLE_ROLES_PATH", format!("{ANSIBLE_DIR}/roles"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCALHOST_WARNING", "0")
        .stdin(Stdio::null())
        .output()
        .expect("ansible-playbook is installed (apt-get install ansible)");
    println!("{}", text(&o));
    o
}

/// `changed=N` of the localhost line of the play recap.
fn changed(o: &Output) -> u32 {
    let t = text(o);
    let recap = t
        .lines()
        .rev()
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_else(|| panic!("no recap:\n{t}"));
    assert!(recap.contains("failed=0"), "{recap}");
    recap
        .split_whitespace()
        .find_map(|w| w.strip_prefix("changed="))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn sudoers() -> Vec<(std::path::PathBuf, gateway::install::tx::Entry)> {
    let mut v: Vec<_> = tree(Path::new("/etc/sudoers.d")).into_iter().collect();
    v.extend(tree(Path::new("/etc/sudoers")));
    v
}

#[test]
fn the_role_passes_syntax_check() {
    for play in ["tests/localhost.yml", "site.yml"] {
        let o = Command::new("ansible-playbook")
            .args(["--syntax-check", "-i", "localhost,"])
            .arg(format!("{ANSIBLE_DIR}/{play}"))
            .env("ANSIBLE_ROLES_PATH", format!("{ANSIBLE_DIR}/roles"))
            .output()
            .expect("ansible-playbook is installed");
        assert!(o.status.success(), "{play}: {}", text(&o));
    }
}

#[test]
fn the_role_installs_is_idempotent_and_uninstalls_on_localhost() {
    let mut host = Host::new();
    let dir = scratch("ansible");
    host.user("gwti-sudo");
    host.user("gwti-agent");
    host.sudoers_line(
        "/etc/sudoers.d/gwti-stock",
        "gwti-sudo ALL=(ALL) NOPASSWD:ALL",
    );
    let key = keypair(&dir, "agent");
    fs::create_dir_all("/home/gwti-agent/.ssh").unwrap();
    fs::copy(
        key.with_extension("pub"),
        "/home/gwti-agent/.ssh/authorized_keys",
    )
    .unwrap();
    let before = sudoers();
    let present = serde_json::json!({
        "gateway_binary_src": GATEWAY,
        "gateway_policy_src": POLICY,
        "gateway_features": ["sudo-restrictions"],
        "gateway_ssh_users": ["gwti-agent"],
    });

    let o = playbook(&["--check"], &present, &dir);
    assert!(o.status.success());
    assert!(changed(&o) > 0, "check mode reports what it would change");
    assert!(
        text(&o).contains("-gwti-sudo ALL=(ALL) NOPASSWD:ALL"),
        "check mode shows gateway install's dry-run diff"
    );
    assert_eq!(sudoers(), before, "check mode changes no sudoers file");

    let o = playbook(&[], &present, &dir);
    assert!(o.status.success());
    assert!(changed(&o) > 0);
    let sudo = |args: &[&str]| {
        let mut argv = vec![
            "/usr/sbin/runuser",
            "-u",
            "gwti-sudo",
            "--",
            "/usr/bin/sudo",
            "-n",
        ];
        argv.extend_from_slice(args);
        cmd(&argv)
    };
    assert_eq!(
        String::from_utf8_lossy(&sudo(&["id", "-u"]).stdout).trim(),
        "0"
    );
    assert_eq!(sudo(&["id", "-un"]).status.code(), Some(77));
    assert!(!sudo(&["/bin/sh", "-c", "id"]).status.success());
    assert!(Path::new("/etc/gateway/authorized_keys/gwti-agent").exists());

    let o = playbook(&[], &present, &dir);
    assert_eq!(changed(&o), 0, "a second run changes nothing");
    let o = playbook(&["--check"], &present, &dir);
    assert_eq!(changed(&o), 0, "nor does its dry run");

    let absent = serde_json::json!({"gateway_state": "absent", "gateway_restore_permissive": true});
    let o = playbook(&[], &absent, &dir);
    assert!(o.status.success());
    assert!(changed(&o) > 0);
    assert_eq!(
        sudoers(),
        before,
        "the original grant is back, byte for byte"
    );
    assert!(!Path::new("/var/lib/gateway/stage").exists());
}
