//! `gateway deploy` over real ssh/scp to sshd instances on loopback. All "hosts" are this
//! machine, so two of them installing at once also exercises install's lock (the second run
//! waits and then has nothing to change).

mod install_host;

use std::fs;
use std::path::Path;

use install_host::*;

/// One sshd per host name; returns the ssh_config text for them.
fn hosts(host: &mut Host, dir: &Path, key: &Path) -> String {
    let hostkey = keypair(dir, "hostkey");
    let authorized = dir.join("authorized_keys");
    fs::copy(key.with_extension("pub"), &authorized).unwrap();
    let empty = dir.join("no_keys");
    fs::write(&empty, "").unwrap();
    let mut cfg = String::new();
    // (name, port, login, keys file)
    let rows = [
        ("gwti-a", 2420, "root", &authorized),
        ("gwti-b", 2421, "root", &authorized),
        ("gwti-c", 2422, "root", &empty),
        ("gwti-d", 2423, "gwti-other", &authorized),
    ];
    for (name, port, login, keys) in rows {
        let conf = dir.join(format!("sshd-{name}"));
        fs::write(
            &conf,
            format!(
                "HostKey {}\nPidFile none\nAuthorizedKeysFile {}\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nUsePAM yes\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\n",
                hostkey.display(),
                keys.display()
            ),
        )
        .unwrap();
        host.child(sshd(conf.to_str().unwrap(), port, &[]));
        cfg.push_str(&format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {login}\n  IdentityFile {}\n  \
             IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            key.display()
        ));
    }
    cfg
}

fn row<'a>(table: &'a str, host: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no row for {host} in:\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
fn deploy_reports_each_host_and_one_failure_does_not_stop_the_others() {
    let mut host = Host::new();
    let dir = scratch("deploy");
    host.user("gwti-sudo");
    host.user("gwti-other");
    host.sudoers_line(
        "/etc/sudoers.d/gwti-stock",
        "gwti-sudo ALL=(ALL) NOPASSWD:ALL",
    );
    let before = fs::read("/etc/sudoers.d/gwti-stock").unwrap();
    let binary_before = tree(Path::new("/usr/local/bin/gateway"));
    let key = keypair(&dir, "operator");
    let cfg = dir.join("ssh_config");
    fs::write(&cfg, hosts(&mut host, &dir, &key)).unwrap();
    let cfg = cfg.to_str().unwrap();
    let servers = "gwti-a,gwti-b,gwti-c,gwti-d";

    let o = gateway(&[
        "deploy",
        "--servers",
        servers,
        "--ssh-config",
        cfg,
        "--dry-run",
        "--sudo-restrictions",
        "--policy",
        POLICY,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert_eq!(row(&t, "gwti-a")[1], "ok", "{t}");
    assert!(
        t.contains("[gwti-a] -gwti-sudo ALL=(ALL) NOPASSWD:ALL"),
        "the dry run's diff is shown per host:\n{t}"
    );
    assert_eq!(
        fs::read("/etc/sudoers.d/gwti-stock").unwrap(),
        before,
        "a dry run changes nothing"
    );
    assert!(tree(Path::new("/usr/local/bin/gateway")) == binary_before);

    let o = gateway(&[
        "deploy",
        "--servers",
        servers,
        "--ssh-config",
        cfg,
        "--sudo-restrictions",
        "--policy",
        POLICY,
        "--parallel",
        "4",
    ]);
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed host makes deploy fail:\n{t}"
    );
    let (a, b, c, d) = (
        row(&t, "gwti-a"),
        row(&t, "gwti-b"),
        row(&t, "gwti-c"),
        row(&t, "gwti-d"),
    );
    assert_eq!(
        (a[1], b[1]),
        ("ok", "ok"),
        "both reachable root hosts install:\n{t}"
    );
    let changes: u32 = a[2].parse::<u32>().unwrap() + b[2].parse::<u32>().unwrap();
    assert!(changes > 0, "one of them made the changes:\n{t}");
    assert!(
        a[2] == "0" || b[2] == "0",
        "the other found nothing left to do:\n{t}"
    );
    assert_eq!(c[1], "FAILED", "{t}");
    assert!(
        c.join(" ").contains("Permission denied"),
        "the refused key is the reason:\n{t}"
    );
    assert_eq!(d[1], "FAILED", "{t}");
    assert!(
        d.join(" ").contains("root"),
        "a non-root login fails on the remote side, and says why:\n{t}"
    );
    let o = cmd(&[
        "/usr/sbin/runuser",
        "-u",
        "gwti-sudo",
        "--",
        "/usr/bin/sudo",
        "-n",
        "id",
        "-u",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "0",
        "the deployed gateway works"
    );
    assert!(
        fs::read_dir("/tmp").unwrap().flatten().all(|e| !e
            .file_name()
            .to_string_lossy()
            .starts_with("gateway-deploy.")),
        "the remote temporary directories are removed"
    );

    let o = gateway(&[
        "deploy",
        "--servers",
        "gwti-a",
        "--ssh-config",
        cfg,
        "--uninstall",
        "--restore-permissive",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        fs::read("/etc/sudoers.d/gwti-stock").unwrap(),
        before,
        "restored byte for byte"
    );
    assert!(
        tree(Path::new("/usr/local/bin/gateway")) == binary_before,
        "the binary is as before"
    );
}

#[test]
fn deploy_refuses_server_names_that_are_not_plain() {
    let o = gateway(&["deploy", "--servers", "ok-host,-oProxyCommand=id", "--all"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("not a server name"));
}
