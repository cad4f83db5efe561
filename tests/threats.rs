//! One table per class of ../shared/THREATS.md, judged by the shipped policy through the same
//! `decide` that `run`, `ssh` and `check` use. docs/THREATS.md maps each class to these tables
//! (and to the end-to-end suites that show the same on the real system).

use std::sync::OnceLock;

use gateway::decision::{decide, Decision, Input, Request, Verdict};
use gateway::policy::Policy;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
            .expect("read the shipped policy");
        Policy::parse_strict("gateway.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]))
    })
}

const A: &str = "vastai_kaalia";
const B: &str = "ai-worker";

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

fn sudo(user: &str, argv: Vec<String>) -> Decision {
    decide(
        policy(),
        &Request {
            user: user.into(),
            channel: gateway::decision::Channel::Sudo,
            input: Input::Argv(argv),
        },
    )
}

fn ssh(user: &str, command: &str) -> Decision {
    decide(
        policy(),
        &Request {
            user: user.into(),
            channel: gateway::decision::Channel::Ssh,
            input: Input::Ssh(Some(command.into())),
        },
    )
}

/// One row: who, what, the expected verdict, a fragment the denial must contain, and why.
type Row<'a> = (&'a str, &'a str, Verdict, &'a str, &'a str);

fn judge_sudo(rows: &[Row]) {
    for (user, line, want, reason, why) in rows {
        let d = sudo(user, words(line));
        check(&d, *want, reason, why, line);
    }
}

fn judge_ssh(rows: &[Row]) {
    for (user, line, want, reason, why) in rows {
        let d = ssh(user, line);
        check(&d, *want, reason, why, line);
    }
}

fn check(d: &Decision, want: Verdict, reason: &str, why: &str, line: &str) {
    assert_eq!(d.verdict, want, "{why}: {line:?}: {}", d.reason);
    assert!(
        d.reason.contains(reason),
        "{why}: {line:?}: expected {reason:?} in {:?}",
        d.reason
    );
}

fn exec_of(d: &Decision) -> Vec<String> {
    d.plan
        .as_ref()
        .expect("an allowed request has a plan")
        .argv
        .clone()
}

use Verdict::{Allow, Deny};

#[test]
fn class_01_parser_differential() {
    judge_ssh(&[
        (
            B,
            "iptables -S\nid",
            Deny,
            "control character U+000A",
            "newline smuggles a second command",
        ),
        (
            B,
            "iptables -S\rid",
            Deny,
            "control character U+000D",
            "carriage return",
        ),
        (B, "ss -tlnp'", Deny, "never closed", "unbalanced quote"),
        (
            B,
            "ss -tlnp\"",
            Deny,
            "never closed",
            "unbalanced double quote",
        ),
        (
            B,
            "ss -tlnp;id",
            Deny,
            "shell syntax",
            "a shell would chain",
        ),
        (B, "ss -tlnp|id", Deny, "shell syntax", "a shell would pipe"),
        (
            B,
            "ss -tlnp `id`",
            Deny,
            "shell syntax",
            "a shell would substitute",
        ),
        (
            B,
            "journalctl -u \"$(id)\" -n 1",
            Deny,
            "shell syntax",
            "expansion inside double quotes",
        ),
        (
            B,
            "journalctl -u 'docker' -n 10",
            Allow,
            "",
            "quoting is data, read once",
        ),
    ]);
    // Every spelling the program accepts reaches it in one canonical form.
    let spellings = [
        "journalctl -u docker -n 10",
        "journalctl -udocker -n10",
        "journalctl --unit docker --lines 10",
        "journalctl --unit=docker --lines=10",
        "journalctl -n 10 -u docker",
    ];
    let canonical = exec_of(&sudo(A, words(spellings[0])));
    assert_eq!(
        canonical,
        [
            "/usr/bin/journalctl",
            "--unit=docker",
            "--lines=10",
            "--no-pager"
        ]
    );
    for s in spellings {
        assert_eq!(exec_of(&sudo(A, words(s))), canonical, "{s}");
    }
}

#[test]
fn class_02_wildcards_are_per_argument() {
    judge_sudo(&[
        (
            A,
            "rm /var/lib/docker/tmpfile1 /etc/shadow",
            Deny,
            "unexpected argument",
            "one operand, not a joined string",
        ),
        (
            A,
            "dd if=/dev/zero of=/var/lib/docker/tmpfile1 of=/etc/passwd",
            Deny,
            "only once",
            "a second of= would win in dd",
        ),
        (
            A,
            "dd if=/dev/zero of=/var/lib/docker/tmpfile1/../../../../etc/passwd",
            Deny,
            "'..' component",
            "prefix match on a string would pass",
        ),
        (
            A,
            "journalctl -u docker* -n 10",
            Deny,
            "does not match",
            "regexes are anchored, no wildcards in values",
        ),
        (
            A,
            "nvidia-smi -q -d MEMORY,MEMORY2",
            Deny,
            "MEMORY2",
            "list items are checked one by one",
        ),
    ]);
    judge_ssh(&[
        (
            B,
            "journalctl -u * -n 10",
            Deny,
            "wildcard",
            "an unquoted glob never reaches a rule",
        ),
        (
            B,
            "journalctl -u 'ssh*' -n 10",
            Deny,
            "does not match",
            "a quoted glob is refused by the unit type",
        ),
    ]);
}

#[test]
fn class_03_option_injection_through_an_allowed_program() {
    judge_sudo(&[
        (
            A,
            "nvidia-smi -q -f /etc/passwd",
            Deny,
            "-f",
            "nvidia-smi writes its output to -f FILE",
        ),
        (
            A,
            "nvidia-smi -L --filename=/etc/passwd",
            Deny,
            "--filename",
            "long spelling of the same",
        ),
        (
            A,
            "tshark -i lo -c 1 -w /etc/passwd",
            Deny,
            "-w",
            "capture written to any file",
        ),
        (
            A,
            "journalctl -u x -n 1 --file=/etc/shadow",
            Deny,
            "--file",
            "journal read from any file",
        ),
        (
            A,
            "ss -tlnp -F /etc/shadow",
            Deny,
            "-F",
            "filter read from any file",
        ),
        (
            A,
            "ss -tlnp -D /tmp/x",
            Deny,
            "-D",
            "raw dump written to any file",
        ),
        (
            A,
            "fio --name=x --filename=/var/lib/docker/tmpfile --output=/etc/passwd",
            Deny,
            "--output",
            "report written to any file",
        ),
        (
            A,
            "dmidecode -t 1 --dump-bin /etc/x",
            Deny,
            "--dump-bin",
            "binary dump to a new file",
        ),
        (A, "lshw -dump /tmp/x.db", Deny, "-dump", "sqlite dump"),
        (
            A,
            "hdparm -t --Iraw /etc/passwd /dev/sda",
            Deny,
            "--Iraw",
            "identify data written to a file",
        ),
    ]);
}

#[test]
fn class_04_option_grammar_quirks() {
    judge_sudo(&[
        (
            A,
            "journalctl -u docker --lin 10",
            Deny,
            "abbreviation of --lines",
            "GNU would expand --lin",
        ),
        (
            A,
            "journalctl --unit=docker --lines=10 --no-p",
            Deny,
            "abbreviation of --no-pager",
            "abbreviated flag",
        ),
        (A, "ss -tlnp", Allow, "", "bundled flags"),
        (
            A,
            "ss -tlnpK",
            Deny,
            "-K",
            "a forbidden letter hidden in a bundle",
        ),
        (
            A,
            "rm /var/lib/docker/tmpfile1 -rf",
            Deny,
            "-r",
            "options after operands still count (permute)",
        ),
        (
            A,
            "rm -- /var/lib/docker/tmpfile1",
            Allow,
            "",
            "-- before the operand",
        ),
        (
            A,
            "journalctl -u docker -n 10 -- /bin/sh",
            Deny,
            "unexpected argument",
            "an operand after -- is still checked",
        ),
        (A, "kill 010", Deny, "plain decimal", "leading zero"),
        (A, "kill 0x10", Deny, "plain decimal", "hexadecimal"),
        (A, "kill 1_000", Deny, "plain decimal", "digit separators"),
        (A, "kill +1000", Deny, "plain decimal", "explicit sign"),
        (
            A,
            "timeout 010 nvidia-smi -L",
            Deny,
            "plain decimal",
            "octal to some parsers",
        ),
        (
            A,
            "nvidia-smi -pm1",
            Deny,
            "-pm1",
            "no attached values in the exact dialect",
        ),
        (
            A,
            "nvidia-smi -p -m 1",
            Deny,
            "-p",
            "-pm is one option, not -p -m",
        ),
        (
            A,
            "tshark -i lo -c 5 port 22",
            Deny,
            "unexpected argument",
            "getopt+ joins trailing words into a filter",
        ),
    ]);
}

#[test]
fn class_05_wrappers_and_interpreters() {
    judge_sudo(&[
        (
            A,
            "timeout 5 sh -c id",
            Deny,
            "cannot run under this wrapper",
            "GTFOBins timeout",
        ),
        (
            A,
            "timeout --foreground 7d /bin/sh",
            Deny,
            "timeout options",
            "GTFOBins timeout, verbatim",
        ),
        (
            A,
            "timeout 5 timeout 5 nvidia-smi -L",
            Deny,
            "cannot run under this wrapper",
            "no nesting",
        ),
        (
            A,
            "timeout 5 nvidia-smi -r",
            Deny,
            "nvidia-smi: option -r is not allowed",
            "the wrapped request is judged in full",
        ),
        (
            A,
            "timeout 5 nvidia-smi -L",
            Allow,
            "",
            "a wrapped allowed request",
        ),
        (A, "env -S sh", Deny, "env is not allowed", "env"),
        (
            A,
            "systemd-run --pty /bin/sh",
            Deny,
            "unknown program",
            "systemd-run",
        ),
        (A, "busybox sh", Deny, "unknown program", "busybox"),
        (A, "xargs sh", Deny, "unknown program", "xargs"),
        (
            A,
            "python3 -c import\u{20}os",
            Deny,
            "unknown program",
            "interpreters",
        ),
    ]);
    let d = sudo(A, words("timeout 5 journalctl -u docker -n 5"));
    assert_eq!(
        exec_of(&d),
        [
            "/usr/bin/timeout",
            "--",
            "5",
            "/usr/bin/journalctl",
            "--unit=docker",
            "--lines=5",
            "--no-pager"
        ],
        "the inner program runs at its policy path with its canonical argv"
    );
}

#[test]
fn class_06_environment_injection() {
    judge_sudo(&[
        (
            A,
            "LD_PRELOAD=/tmp/x.so nvidia-smi -L",
            Deny,
            "sets an environment variable",
            "loader injection",
        ),
        (
            A,
            "PATH=/tmp nvidia-smi -L",
            Deny,
            "sets an environment variable",
            "PATH",
        ),
        (
            A,
            "env PAGER=sh journalctl -u x -n 1",
            Deny,
            "env is not allowed",
            "env wrapper",
        ),
    ]);
    judge_ssh(&[(
        B,
        "DOCKER_HOST=tcp://x ss -tlnp",
        Deny,
        "sets an environment variable",
        "SSH env word",
    )]);
    let plan = sudo(A, words("nvidia-smi -L")).plan.unwrap();
    let keys: Vec<&str> = plan.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "PATH",
            "HOME",
            "LANG",
            "PAGER",
            "LESSSECURE",
            "SYSTEMD_PAGER",
            "SYSTEMD_PAGERSECURE"
        ],
        "the environment is fixed by the policy, nothing comes from the caller"
    );
}

#[test]
fn class_07_config_file_indirection() {
    judge_sudo(&[
        (A, "fio job.fio", Deny, "", "fio job files"),
        (
            A,
            "virsh -c qemu:///system list --all",
            Deny,
            "-c",
            "connection URI",
        ),
        (
            A,
            "virsh list;destroy",
            Deny,
            "",
            "a single virsh argument is a command string",
        ),
        (
            A,
            "timeout 5 journalctl -u x -n 1 --root=/tmp",
            Deny,
            "--root",
            "alternative root",
        ),
    ]);
    judge_ssh(&[
        (
            B,
            "sshd -T -f /etc/shadow",
            Deny,
            "-f",
            "sshd reads any file as config",
        ),
        (
            B,
            "sshd -E /etc/passwd -T",
            Deny,
            "-E",
            "sshd appends logs to any file",
        ),
        (
            B,
            "fail2ban-client -c /tmp status",
            Deny,
            "-c",
            "fail2ban config directory",
        ),
        (
            B,
            "iptables -S -M /tmp/x",
            Deny,
            "-M",
            "iptables runs a modprobe command",
        ),
    ]);
}

#[test]
fn class_08_paths() {
    judge_sudo(&[
        (
            A,
            "rm /var/lib/docker/../../etc/shadow",
            Deny,
            "'..' component",
            "dot-dot",
        ),
        (
            A,
            "rm /var/lib/docker/./tmpfile1",
            Deny,
            "'.' or '..'",
            "dot",
        ),
        (
            A,
            "rm var/lib/docker/tmpfile1",
            Deny,
            "not an absolute path",
            "relative, resolved against a cwd",
        ),
        (
            A,
            "rm /var/lib/docker//tmpfile1",
            Deny,
            "'//'",
            "double slash",
        ),
        (
            A,
            "rm /var/lib/docker/tmpfile1/",
            Deny,
            "ends with '/'",
            "trailing slash",
        ),
        (
            A,
            "rm /var/lib/docker/containers/tmpfile1",
            Deny,
            "does not match",
            "only the top level",
        ),
        (
            A,
            "hdparm -t /dev/../etc/passwd",
            Deny,
            "'..' component",
            "device path with dot-dot",
        ),
    ]);
}

#[test]
fn class_08_symlinks_are_never_followed() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test plants a root-owned link and needs root (CI runs as root)");
    }
    std::fs::create_dir_all("/var/lib/docker").unwrap();
    let link = "/var/lib/docker/tmpfilethreatlink";
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink("/etc/shadow", link).unwrap();
    let d = sudo(
        A,
        words(&format!("dd if={link} of=/var/lib/docker/tmpfile2")),
    );
    let d2 = sudo(A, words(&format!("rm {link}")));
    std::fs::remove_file(link).unwrap();
    check(
        &d,
        Deny,
        "is a symbolic link",
        "a link in place of a benchmark file",
        "dd",
    );
    check(
        &d2,
        Deny,
        "is a symbolic link",
        "removing through a link",
        "rm",
    );
}

#[test]
fn class_09_binary_identity() {
    judge_sudo(&[
        (
            A,
            "/tmp/nvidia-smi -L",
            Deny,
            "not one of the program paths",
            "a planted binary",
        ),
        (
            A,
            "./nvidia-smi -L",
            Deny,
            "not one of the program paths",
            "relative",
        ),
        (
            A,
            "/usr/bin/../../tmp/nvidia-smi -L",
            Deny,
            "not one of the program paths",
            "dot-dot",
        ),
        (
            A,
            "nvidia-smi.sh -L",
            Deny,
            "unknown program",
            "lookalike name",
        ),
        (
            A,
            "nvidia\u{2011}smi -L",
            Deny,
            "unknown program",
            "non-breaking hyphen lookalike",
        ),
        (
            A,
            "/usr/bin/nvidia-smi -L",
            Allow,
            "",
            "a configured absolute path",
        ),
    ]);
}

#[test]
fn class_10_pagers_never_open() {
    let plan = sudo(A, words("journalctl -u docker -n 10")).plan.unwrap();
    assert!(plan.argv.contains(&"--no-pager".to_string()));
    for (k, v) in [
        ("PAGER", "cat"),
        ("SYSTEMD_PAGER", "cat"),
        ("LESSSECURE", "1"),
    ] {
        assert!(plan.env.contains(&(k.into(), v.into())), "{k}={v}");
    }
    judge_sudo(&[
        (
            A,
            "journalctl -u docker -n 10 -e",
            Deny,
            "-e",
            "--pager-end opens the pager",
        ),
        (
            A,
            "journalctl -u docker -n 10 --pager-end",
            Deny,
            "--pager-end",
            "long form",
        ),
    ]);
}

#[test]
fn class_11_forced_command_is_restricted() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/ssh/authorized_keys.example"
    ))
    .unwrap();
    let line = example.lines().find(|l| !l.starts_with('#')).unwrap();
    assert!(
        line.starts_with("restrict,command=\"/usr/local/bin/gateway ssh\" "),
        "keys are installed with restrict (no pty, no forwarding, no ~/.ssh/rc): {line}"
    );
}

#[test]
fn class_12_allowlist_not_denylist() {
    judge_sudo(&[
        (
            A,
            "nvidia-smi topo -m",
            Deny,
            "",
            "read-only, but not listed",
        ),
        (
            A,
            "lshw -sanitize",
            Deny,
            "-sanitize",
            "harmless, but not listed",
        ),
    ]);
    judge_ssh(&[
        (
            B,
            "fail2ban-client ping",
            Deny,
            "",
            "harmless, but not listed",
        ),
        (
            B,
            "fail2ban-client version",
            Deny,
            "",
            "harmless, but not listed",
        ),
    ]);
}

#[test]
fn class_13_fail_closed() {
    let empty = Policy::parse("empty.toml", "").unwrap();
    let d = decide(
        &empty,
        &Request {
            user: A.into(),
            channel: gateway::decision::Channel::Sudo,
            input: Input::Argv(words("nvidia-smi -L")),
        },
    );
    check(
        &d,
        Deny,
        "has no rules",
        "an empty policy allows nothing",
        "",
    );
    judge_sudo(&[(
        "mallory",
        "nvidia-smi -L",
        Deny,
        "has no rules",
        "a user the policy does not name",
    )]);
    assert!(Policy::parse("bad.toml", "[users.x]\nrules = 1\n").is_err());
}

#[test]
fn class_14_allowed_but_harmful() {
    judge_sudo(&[
        (A, "kill -9 1", Deny, "outside 2..=4194304", "init"),
        (A, "kill -9 -1", Deny, "-1", "every process"),
        (A, "kill 0", Deny, "outside", "the caller's process group"),
        (A, "nvidia-smi -r", Deny, "-r", "GPU reset kills workloads"),
        (
            A,
            "dd if=/dev/zero of=/var/lib/docker/tmpfile1 bs=100G",
            Deny,
            "bs",
            "memory exhaustion",
        ),
        (
            A,
            "fio --name=x --filename=/var/lib/docker/tmpfile --numjobs=65",
            Deny,
            "numjobs",
            "fork storm",
        ),
    ]);
    judge_ssh(&[(
        B,
        "journalctl -u docker -n 1001",
        Deny,
        "outside 1..=1000",
        "bounded reads",
    )]);
}

#[test]
fn class_15_identity_is_the_policys() {
    judge_ssh(&[
        (
            B,
            "sudo -u root ss -tlnp",
            Deny,
            "sudo option -u",
            "run-as from the caller",
        ),
        (
            B,
            "sudo -u#-1 ss -tlnp",
            Deny,
            "sudo option -u#-1",
            "CVE-2019-14287",
        ),
        (
            B,
            "sudo -h otherhost ss -tlnp",
            Deny,
            "sudo option -h",
            "host from the caller",
        ),
        (
            B,
            "sudo -R /tmp ss -tlnp",
            Deny,
            "sudo option -R",
            "chroot from the caller",
        ),
        (
            B,
            "sudo -E ss -tlnp",
            Deny,
            "sudo option -E",
            "environment from the caller",
        ),
        (
            B,
            "sudo ss -tlnp",
            Allow,
            "",
            "a bare sudo is how callers write it",
        ),
    ]);
}

#[test]
fn class_16_log_injection() {
    let d = ssh(B, "ss -tlnp\nFAKE verdict=allow");
    assert_eq!(d.verdict, Deny);
    let req = Request {
        user: B.into(),
        channel: gateway::decision::Channel::Ssh,
        input: Input::Ssh(Some("ss -tlnp\nFAKE verdict=allow".into())),
    };
    let ctx = gateway::audit::Context {
        time: std::time::SystemTime::now(),
        host: "h".into(),
        uid: None,
        ssh_client: None,
    };
    let record = gateway::audit::Record::new(&req, &d, &ctx);
    let json = serde_json::to_string(&record).unwrap();
    assert!(!json.contains('\n'), "one record, one line");
    let line = gateway::audit::syslog_line(&record);
    assert!(
        !line.contains('\n') && line.contains(r"\nFAKE"),
        "escaped in syslog: {line}"
    );
}

#[test]
fn class_17_resource_abuse() {
    let long = format!("journalctl -u {} -n 10", "a".repeat(5000));
    check(
        &sudo(A, words(&long)),
        Deny,
        "longer than 4096 bytes",
        "giant argument",
        "",
    );
    let mut many = words("kill");
    many.extend((0..300).map(|i| (i + 2).to_string()));
    check(
        &sudo(A, many),
        Deny,
        "too many arguments",
        "argument flood",
        "",
    );
    let nul = vec!["kill".to_string(), "12\u{0}34".to_string()];
    check(
        &sudo(A, nul),
        Deny,
        "control or invisible character",
        "NUL inside an argument",
        "",
    );
    judge_sudo(&[
        (A, "journalctl -u docker -f", Deny, "-f", "follows forever"),
        (
            A,
            "tshark -i lo",
            Deny,
            "at least one of -c N, -a VALUE",
            "captures forever",
        ),
        (A, "nvidia-smi -q -l 1", Deny, "-l", "loops forever"),
    ]);
    for line in [
        "dd if=/dev/zero of=/var/lib/docker/tmpfile1",
        "tshark -i lo -c 10",
        "fio --name=x --filename=/var/lib/docker/tmpfile",
        "hdparm -t /dev/sda",
    ] {
        let plan = sudo(A, words(line)).plan.unwrap();
        assert!(plan.time_limit.is_some(), "{line} runs under a time limit");
    }
}
