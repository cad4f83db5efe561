//! End to end, as root, on the real system: the shipped policy installed from contrib/, real
//! users, real sudo, a real sshd on 127.0.0.1. Allowed requests run (the child reports the argv
//! and environment it really got); denied ones never start a process; every decision is in the
//! audit log and in syslog; broken configuration fails closed.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const PROBE: &str = "/usr/local/libexec/gateway-test/gwprobe";
const PROBE_OUT: &str = "/run/gateway-test-probe/out.jsonl";
const SSH_PORT: u16 = 2201;

/// A program that reports what it was started with: argv, environment, cwd, umask, core limit,
/// open descriptors, session, controlling terminal. Written by root, 0755, so the gateway
/// trusts it.
const PROBE_SOURCE: &str = r#"#!/usr/bin/python3
import json, os, resource, sys, time
if len(sys.argv) > 2 and sys.argv[-2] == "sleep":
    time.sleep(int(sys.argv[-1]))
mask = os.umask(0)
os.umask(mask)
try:
    os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
    ctty = True
except OSError:
    ctty = False
out = {
    "argv": sys.argv,
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "uid": os.getuid(),
    "euid": os.geteuid(),
    "umask": mask,
    "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
    "fds": sorted(int(x) for x in os.listdir("/proc/self/fd")),
    "sid_is_pid": os.getsid(0) == os.getpid(),
    "ctty": ctty,
}
with open("/run/gateway-test-probe/out.jsonl", "a") as f:
    f.write(json.dumps(out) + "\n")
"#;

const PROBE_POLICY: &str = r#"
[programs.gwprobe]
paths = ["/usr/local/libexec/gateway-test/gwprobe"]
dialect = "getopt"

[types.probe_word]
regex = "[a-z0-9]{1,16}"

[rules.probe]
program = "gwprobe"
description = "test probe"
hint = "the probe takes --mode fast|slow, -v and words"
options."--mode" = { aliases = ["-m"], value = { enum = ["fast", "slow"] } }
options."-v" = {}
args = ["{probe_word}..."]

[rules.probe-slow]
program = "gwprobe"
time_limit = 2
args = ["sleep", "{probe_word}"]
"#;

fn policy_text() -> String {
    let shipped = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let mut text = String::new();
    for line in shipped.lines() {
        text.push_str(line);
        text.push('\n');
        if line == "rules = [" {
            // The slow shape first: the first rule that accepts a request decides.
            text.push_str("    \"probe-slow\",\n    \"probe\",\n");
        }
    }
    assert_eq!(
        text.matches("\"probe-slow\"").count(),
        2,
        "both users get the probe"
    );
    text.push_str(PROBE_POLICY);
    // A log of its own, so records of suites run before or after cannot mix into the replay.
    text.replacen(
        "audit_log = \"/var/log/gateway/audit.jsonl\"",
        "audit_log = \"/var/log/gateway-e2e-core/audit.jsonl\"",
        1,
    )
}

fn probe_runs() -> Vec<serde_json::Value> {
    fs::read_to_string(PROBE_OUT)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn env_keys(run: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = run["env"].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

const CLEAN_ENV: [&str; 7] = [
    "HOME",
    "LANG",
    "LESSSECURE",
    "PAGER",
    "PATH",
    "SYSTEMD_PAGER",
    "SYSTEMD_PAGERSECURE",
];

struct Fixture {
    install: Installation,
    host_a: TestUser,
    _host_b: TestUser,
    sshd: Sshd,
    key: ClientKey,
    _keys: TempDir,
}

fn fixture() -> Fixture {
    ensure_syslog();
    fs::create_dir_all(Path::new(PROBE).parent().unwrap()).unwrap();
    install_file(PROBE, PROBE_SOURCE.as_bytes(), 0o755);
    let _ = fs::remove_dir_all("/run/gateway-test-probe");
    fs::create_dir_all("/run/gateway-test-probe").unwrap();
    fs::create_dir_all("/var/lib/docker").unwrap();
    let host_a = TestUser::create("vastai_kaalia");
    let host_b = TestUser::create("ai-worker");
    let install = Installation::new(&policy_text(), &["vastai_kaalia", "ai-worker"]);
    let keys = TempDir::new("e2e-keys");
    let key = ClientKey::generate(keys.path());
    host_b.authorize(&format!(
        "restrict,command=\"/usr/local/bin/gateway ssh\" {}",
        key.public
    ));
    let sshd = Sshd::start(SSH_PORT);
    Fixture {
        install,
        host_a,
        _host_b: host_b,
        sshd,
        key,
        _keys: keys,
    }
}

#[test]
fn requests_through_real_sudo_and_sshd() {
    require_root();
    let _lock = system_lock();
    let f = fixture();
    let audit_start = f.install.audit_all().len();

    sudo_door_runs_exactly_what_was_validated(&f);
    the_caller_terminal_stays_behind(&f);
    sudo_door_denies_without_starting_anything(&f);
    real_programs_of_the_shipped_policy(&f);
    ssh_door(&f);
    time_limit_stops_the_program(&f);
    every_decision_is_recorded(&f, audit_start);
    broken_configuration_fails_closed(&f);

    let _ = fs::remove_dir_all("/run/gateway-test-probe");
    let _ = fs::remove_file(PROBE);
    let _ = fs::remove_dir_all("/var/log/gateway-e2e-core");
}

fn sudo_door_runs_exactly_what_was_validated(f: &Fixture) {
    let before = probe_runs().len();
    // Through the shim, the way an unchanged caller types it.
    let out = f.host_a.sudo(&["gwprobe", "-vm", "fast", "alpha", "beta"]);
    assert!(
        out.status.success(),
        "shim request failed: {:?}",
        text(&out)
    );
    // Through the gateway's own entry point.
    let out = f
        .host_a
        .sudo(&[GATEWAY, "run", "--", "gwprobe", "--mode=slow", "gamma"]);
    assert!(out.status.success(), "run request failed: {:?}", text(&out));
    // Through the shim's absolute path, which the sudoers directory entry also allows.
    let out = f
        .host_a
        .sudo(&["/usr/local/lib/gateway/shims/gwprobe", "delta"]);
    assert!(
        out.status.success(),
        "absolute shim failed: {:?}",
        text(&out)
    );

    let runs = probe_runs();
    assert_eq!(runs.len(), before + 3);
    let expected: [&[&str]; 3] = [
        &[PROBE, "--mode=fast", "-v", "--", "alpha", "beta"],
        &[PROBE, "--mode=slow", "--", "gamma"],
        &[PROBE, "--", "delta"],
    ];
    for (run, want) in runs[before..].iter().zip(expected) {
        let argv: Vec<&str> = run["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(argv, want, "the child saw the canonical argv");
        assert_eq!(
            env_keys(run),
            CLEAN_ENV,
            "the child saw only the fixed environment"
        );
        assert_eq!(run["env"]["HOME"], "/root");
        assert_eq!(run["env"]["PAGER"], "cat");
        assert_eq!(run["cwd"], "/", "working directory is /");
        assert_eq!(run["euid"], 0, "runs as root");
        assert_eq!(run["umask"], 0o022);
        assert_eq!(run["core"], serde_json::json!([0, 0]), "core dumps off");
        assert_eq!(run["ctty"], false, "no controlling terminal");
    }
}

/// A caller on a terminal: sudo without its own pty (`!use_pty`) hands the gateway the
/// caller's terminal as controlling terminal; the program must not get it (THREATS 10).
/// With sudo's pty (Debian's default) the terminal is sudo's own and the gateway leads its
/// process group; without any terminal there is nothing to leave (the runs above).
fn the_caller_terminal_stays_behind(f: &Fixture) {
    let drop_in = "/etc/sudoers.d/gwt-e2e-no-pty";
    let _restore = Restore::save(drop_in);
    let line = format!("Defaults:{} !use_pty\n", f.host_a.name);
    install_file(drop_in, line.as_bytes(), 0o440);
    let before = probe_runs().len();
    // script(1) gives the caller a terminal of its own (a pty) as controlling terminal.
    let out = f.host_a.run(&[
        "script",
        "-q",
        "-e",
        "-c",
        "sudo -n gwprobe tty",
        "/dev/null",
    ]);
    assert!(
        out.status.success(),
        "request on a terminal failed: {:?}",
        text(&out)
    );
    let runs = probe_runs();
    assert_eq!(runs.len(), before + 1);
    let run = &runs[before];
    assert_eq!(run["argv"], serde_json::json!([PROBE, "--", "tty"]));
    assert_eq!(
        run["ctty"], false,
        "the caller's terminal reached the program"
    );
    assert_eq!(run["sid_is_pid"], true, "the program leads a new session");
}

fn sudo_door_denies_without_starting_anything(f: &Fixture) {
    let before = probe_runs().len();
    let cases: &[(&[&str], &str)] = &[
        (&["gwprobe", "--evil", "x"], "option --evil is not allowed"),
        (
            &["gwprobe", "--mod=fast", "x"],
            "--mod is an abbreviation of --mode",
        ),
        (
            &["gwprobe", "-m", "fast", "-m", "slow", "x"],
            "may be given only once",
        ),
        (&["gwprobe", "UPPER"], "argument \"UPPER\" is refused"),
        (&["gwprobe", "x", "-vX"], "option -X is not allowed"),
        (
            &[GATEWAY, "run", "gwprobe", "a;b"],
            "argument \"a;b\" is refused",
        ),
        (
            &[GATEWAY, "run", "/tmp/gwprobe", "x"],
            "not one of the program paths",
        ),
        (
            &[GATEWAY, "run", "LD_PRELOAD=/tmp/x.so", "gwprobe", "x"],
            "sets an environment variable",
        ),
        (
            &[GATEWAY, "run", "--config", "/tmp/evil.toml", "gwprobe", "x"],
            "unknown program \"--config\"",
        ),
    ];
    for (argv, reason) in cases {
        let out = f.host_a.sudo(argv);
        let (_, err) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(77),
            "{argv:?} must be denied: {err}"
        );
        assert!(
            err.contains(reason),
            "{argv:?}: expected {reason:?} in: {err}"
        );
        assert!(
            err.contains("may run:"),
            "a denial lists what is allowed instead: {err}"
        );
    }
    assert_eq!(
        probe_runs().len(),
        before,
        "no denied request started the probe"
    );

    // sudo itself refuses everything but the gateway.
    let out = f.host_a.sudo(&["/usr/bin/id"]);
    assert_ne!(out.status.code(), Some(0), "sudo must not run id directly");
    // Without sudo, the gateway grants nothing.
    let out = f.host_a.run(&[GATEWAY, "run", "gwprobe", "x"]);
    assert_eq!(out.status.code(), Some(77));
    assert!(text(&out).1.contains("only through sudo"));
    assert_eq!(probe_runs().len(), before);
}

fn real_programs_of_the_shipped_policy(f: &Fixture) {
    let bench = "/var/lib/docker/tmpfilegwtest";
    let _ = fs::remove_file(bench);
    let out = f.host_a.sudo(&[
        "dd",
        "if=/dev/zero",
        &format!("of={bench}"),
        "bs=1K",
        "count=4",
    ]);
    assert!(out.status.success(), "dd bench: {:?}", text(&out));
    assert_eq!(fs::metadata(bench).unwrap().len(), 4096);
    let out = f.host_a.sudo(&["rm", "-rf", bench]);
    assert_eq!(out.status.code(), Some(77), "rm with options is denied");
    assert!(Path::new(bench).exists());
    let out = f.host_a.sudo(&["rm", bench]);
    assert!(out.status.success(), "rm bench: {:?}", text(&out));
    assert!(!Path::new(bench).exists());

    let evil = "/tmp/gwtest-evil-dd";
    let _ = fs::remove_file(evil);
    let out = f
        .host_a
        .sudo(&["dd", "if=/dev/zero", &format!("of={evil}"), "count=1"]);
    assert_eq!(out.status.code(), Some(77));
    assert!(!Path::new(evil).exists(), "denied dd wrote nothing");

    // A symlink planted as a benchmark file is refused (only root could plant it here, but
    // the gateway does not rely on that).
    let link = "/var/lib/docker/tmpfilegwlink";
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink("/etc/shadow", link).unwrap();
    let out = f.host_a.sudo(&[
        "dd",
        &format!("if={link}"),
        "of=/var/lib/docker/tmpfilegwout",
    ]);
    let _ = fs::remove_file(link);
    assert_eq!(out.status.code(), Some(77));
    assert!(text(&out).1.contains("symbolic link"), "{:?}", text(&out));

    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let pid = sleeper.id().to_string();
    let out = f.host_a.sudo(&["kill", "-9", "1"]);
    assert_eq!(out.status.code(), Some(77));
    let out = f.host_a.sudo(&["kill", "-s", "TERM", &pid]);
    assert!(out.status.success(), "kill: {:?}", text(&out));
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "the sleeper was signalled");

    let out = f.host_a.sudo(&["timeout", "5", "sh", "-c", "id"]);
    assert_eq!(
        out.status.code(),
        Some(77),
        "GTFOBins timeout shell is denied"
    );
}

fn ssh_door(f: &Fixture) {
    let before = probe_runs().len();
    let out = f.sshd.ssh(&f.key, "ai-worker", Some("sudo ss -tlnp"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "ssh ss: {stdout} {stderr}");
    assert!(
        stdout.contains("127.0.0.1:2201"),
        "ss output lists our sshd: {stdout}"
    );

    let out = f.sshd.ssh(&f.key, "ai-worker", Some("sshd -T"));
    assert!(out.status.success(), "ssh sshd -T: {:?}", text(&out));
    assert!(text(&out).0.contains("permitrootlogin"));

    let out = f
        .sshd
        .ssh(&f.key, "ai-worker", Some("gwprobe -v 'one' two"));
    assert!(out.status.success(), "ssh probe: {:?}", text(&out));
    let runs = probe_runs();
    assert_eq!(runs.len(), before + 1);
    let argv: Vec<&str> = runs[before]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(argv, [PROBE, "-v", "--", "one", "two"]);
    assert_eq!(
        env_keys(&runs[before]),
        CLEAN_ENV,
        "SSH variables do not reach the child"
    );

    let denied: &[(&str, &str)] = &[
        ("gwprobe one; id", "shell syntax"),
        ("gwprobe one && id", "shell syntax"),
        ("gwprobe $(id)", "shell syntax"),
        ("gwprobe one\nid", "control character"),
        ("gwprobe 'one", "never closed"),
        ("gwprobe *", "wildcard"),
        ("sudo -u root gwprobe one", "sudo option -u"),
        ("bash -i", "unknown program \"bash\""),
        ("gwprobe\u{a0}one", "invisible"),
        ("nvidia-smi -L", "ai-worker may not run nvidia-smi"),
    ];
    for (command, reason) in denied {
        let out = f.sshd.ssh(&f.key, "ai-worker", Some(command));
        let (_, err) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(77),
            "{command:?} must be denied: {err}"
        );
        assert!(
            err.contains(reason),
            "{command:?}: expected {reason:?} in {err}"
        );
    }
    assert_eq!(
        probe_runs().len(),
        before + 1,
        "no denied SSH request started a process"
    );

    // No command: a short help text, no shell.
    let out = f.sshd.ssh(&f.key, "ai-worker", None);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(77));
    assert!(stdout.contains("there is no shell"), "{stdout}");
    assert!(
        stdout.contains("iptables -L -n -v"),
        "lists what the user may run: {stdout}"
    );
}

fn time_limit_stops_the_program(f: &Fixture) {
    let before = probe_runs().len();
    let start = Instant::now();
    let out = f.host_a.sudo(&["gwprobe", "sleep", "30"]);
    let took = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(124),
        "stopped by the rule's time limit: {:?}",
        text(&out)
    );
    assert!(
        took < Duration::from_secs(20),
        "stopped after the 2 s limit, took {took:?}"
    );
    assert!(text(&out).1.contains("time limit"));
    assert_eq!(
        probe_runs().len(),
        before,
        "the probe never reached its report"
    );
}

fn every_decision_is_recorded(f: &Fixture, start: usize) {
    let records = f.install.audit_since(start);
    assert!(
        records.len() >= 30,
        "one record per decision, got {}",
        records.len()
    );
    let find =
        |pred: &dyn Fn(&serde_json::Value) -> bool| records.iter().find(|r| pred(r)).cloned();

    let allowed =
        find(&|r| r["verdict"] == "allow" && r["argv"][0] == "gwprobe" && r["channel"] == "sudo")
            .expect("an allowed sudo record");
    assert_eq!(allowed["user"], "vastai_kaalia");
    assert_eq!(allowed["exec"]["path"], PROBE);
    assert!(allowed["time"].as_str().unwrap().ends_with('Z'));

    let denied = find(&|r| r["reason"].as_str().is_some_and(|s| s.contains("--evil")))
        .expect("a denied record");
    assert_eq!(denied["verdict"], "deny");
    assert_eq!(denied["argument"], "--evil");
    assert!(denied["exec"].is_null());

    let ssh = find(&|r| r["channel"] == "ssh" && r["command"] == "gwprobe one; id")
        .expect("an ssh record");
    assert_eq!(ssh["user"], "ai-worker");
    assert!(
        ssh["ssh_client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1 "),
        "{ssh}"
    );

    let newline =
        find(&|r| r["command"] == "gwprobe one\nid").expect("the newline attempt, kept verbatim");
    assert_eq!(newline["verdict"], "deny");

    // The audit log is valid input for check --batch: replay it against the same policy.
    let replay_in = TempDir::new("replay");
    let input = replay_in.path().join("audit.jsonl");
    let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = cmd_ok(&[
        GATEWAY,
        "check",
        "--config",
        POLICY,
        "--batch",
        input.to_str().unwrap(),
    ]);
    let replayed: Vec<serde_json::Value> = text(&out)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replayed.len(), records.len());
    for (r, p) in records.iter().zip(&replayed) {
        let reason = r["reason"].as_str().unwrap_or_default();
        // The planted link is gone, so that path is acceptable today: replay judges the
        // filesystem as it is now.
        if reason.contains("symbolic link") {
            continue;
        }
        assert_eq!(r["verdict"], p["verdict"], "replay agrees: {r} vs {p}");
    }

    assert!(
        wait_for_text(
            "/var/log/auth.log",
            "verdict=deny user=\"vastai_kaalia\"",
            Duration::from_secs(10)
        ),
        "denials reach syslog (authpriv -> /var/log/auth.log)"
    );
}

fn broken_configuration_fails_closed(f: &Fixture) {
    let before = probe_runs().len();
    let good = fs::read_to_string(POLICY).unwrap();

    // A policy others can write is refused outright.
    fs::set_permissions(POLICY, std::os::unix::fs::PermissionsExt::from_mode(0o664)).unwrap();
    let out = f.host_a.sudo(&["gwprobe", "x"]);
    assert_eq!(out.status.code(), Some(78), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("writable by its group"),
        "{:?}",
        text(&out)
    );
    fs::set_permissions(POLICY, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    // A policy with an unknown key is refused with its position.
    let line = good.lines().position(|l| l == "[settings]").unwrap() + 2;
    install_file(
        POLICY,
        good.replacen("[settings]\n", "[settings]\nbogus = 1\n", 1)
            .as_bytes(),
        0o644,
    );
    let out = f.host_a.sudo(&["gwprobe", "x"]);
    assert_eq!(out.status.code(), Some(78));
    let want = format!("gateway.toml:{line}:1: unknown field `bogus`");
    assert!(text(&out).1.contains(&want), "{want} in {:?}", text(&out));
    install_file(POLICY, good.as_bytes(), 0o644);

    // An audit log that cannot be written means nothing runs.
    let log = f.install.audit_log.clone();
    let saved = fs::read(&log).unwrap_or_default();
    fs::remove_file(&log).unwrap();
    fs::create_dir(&log).unwrap();
    let out = f.host_a.sudo(&["gwprobe", "x"]);
    fs::remove_dir(&log).unwrap();
    install_file(log.to_str().unwrap(), &saved, 0o600);
    assert_eq!(out.status.code(), Some(77));
    assert!(
        text(&out).1.contains("audit log could not be written"),
        "{:?}",
        text(&out)
    );

    // A program whose directory others can write is refused, and the message says which.
    let dir = Path::new(PROBE).parent().unwrap();
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = f.host_a.sudo(&["gwprobe", "x"]);
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(77));
    assert!(
        text(&out)
            .1
            .contains("gateway-test is writable by everyone"),
        "{:?}",
        text(&out)
    );

    assert_eq!(
        probe_runs().len(),
        before,
        "nothing ran while the configuration was broken"
    );
    let out = f.host_a.sudo(&["gwprobe", "x"]);
    assert!(
        out.status.success(),
        "the restored configuration works again: {:?}",
        text(&out)
    );
}
