//! The README's claim, shown on the real system: sudoers lines that look narrow let a user
//! escape them, and the gateway refuses the same requests. Each bypass must really work under
//! the naive sudoers line (or this test fails and the README is wrong).

mod common;

use std::fs;

use common::*;

const USER: &str = "gwtgaps";
const NAIVE: &str = "/etc/sudoers.d/gwtest-naive";

const NAIVE_SUDOERS: &str = "\
gwtgaps ALL=(root) NOPASSWD: /usr/bin/timeout * /usr/bin/nvidia-smi *
gwtgaps ALL=(root) NOPASSWD: /usr/bin/cat /var/log/*
gwtgaps ALL=(root) NOPASSWD: /usr/bin/ss *
";

/// The gateway's verdict on the same argv, for this user, with the shipped rules.
fn gateway_verdict(argv: &[&str]) -> (i32, String) {
    let shipped = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let policy = shipped.replace("[users.vastai_kaalia]", "[users.gwtgaps]");
    let dir = TempDir::new("gaps-policy");
    let file = dir.path().join("gateway.toml");
    fs::write(&file, policy).unwrap();
    let mut full = vec![
        env!("CARGO_BIN_EXE_gateway"),
        "check",
        "--config",
        file.to_str().unwrap(),
        "--user",
        USER,
        "--",
    ];
    full.extend_from_slice(argv);
    let out = cmd(&full);
    (out.status.code().unwrap_or(-1), text(&out).0)
}

#[test]
fn narrow_looking_sudoers_lines_are_escapes_and_the_gateway_refuses_them() {
    require_root();
    let _lock = system_lock();
    let user = TestUser::create(USER);
    let _restore = Restore::save(NAIVE);
    install_file(NAIVE, NAIVE_SUDOERS.as_bytes(), 0o440);
    assert!(
        cmd(&["visudo", "-c"]).status.success(),
        "naive sudoers lines are valid sudoers"
    );

    // timeout * nvidia-smi *: `*` swallows "5 sh -c id", and sh runs id as root.
    let timeout: &[&str] = &[
        "/usr/bin/timeout",
        "5",
        "sh",
        "-c",
        "id -u",
        "/usr/bin/nvidia-smi",
        "-L",
    ];
    let out = user.sudo(timeout);
    assert_eq!(
        text(&out).0.trim(),
        "0",
        "the naive line ran a root shell: {:?}",
        text(&out)
    );
    let (code, why) = gateway_verdict(&[
        "timeout",
        "5",
        "sh",
        "-c",
        "id -u",
        "/usr/bin/nvidia-smi",
        "-L",
    ]);
    assert_eq!(code, 77, "{why}");
    assert!(
        why.contains("\"sh\" cannot run under this wrapper"),
        "{why}"
    );

    // cat /var/log/*: the wildcard matches "..", and cat reads /etc/shadow.
    let out = user.sudo(&["/usr/bin/cat", "/var/log/../../etc/shadow"]);
    assert!(
        text(&out).0.starts_with("root:"),
        "the naive line read /etc/shadow: {:?}",
        text(&out)
    );
    let (code, why) = gateway_verdict(&["cat", "/var/log/../../etc/shadow"]);
    assert_eq!(code, 77, "{why}");

    // ss *: -F reads any file as a filter (its parse errors echo the contents).
    let out = user.sudo(&["/usr/bin/ss", "-F", "/etc/shadow"]);
    let (_, err) = text(&out);
    assert!(
        err.contains("root"),
        "the naive line leaked /etc/shadow through ss -F: {err}"
    );
    let (code, why) = gateway_verdict(&["ss", "-F", "/etc/shadow"]);
    assert_eq!(code, 77, "{why}");
    assert!(why.contains("option -F is not allowed"), "{why}");
}
