//! End to end, as root, on the real system: the shipped policy installed as an administrator
//! would, the real `ai-worker` account, real sudo, a real sshd on 127.0.0.1, the real Docker
//! engine. The agent's everyday docker requests work through both doors; every escape is denied
//! with exit 77, recorded, and starts no container.
//!
//! Needs root, sshd and a running engine with `local/busybox:latest`
//! (`tests/support/start-dockerd`).

mod common;

#[path = "support/docker.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const SSH_PORT: u16 = 2301;
const BUILDS: &str = "/srv/ai-worker/builds";
const CONTAINER: &str = "gwtd-e2e";

/// The busybox containers on the engine, to show that a denial started none.
fn containers() -> Vec<String> {
    let out = support::docker(
        support::DOCKER,
        &[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            "ancestor=local/busybox",
        ],
    );
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

/// Removes what the test made on the engine and under /srv, even when it fails.
struct EngineCleanup {
    made_srv: bool,
}

impl Drop for EngineCleanup {
    fn drop(&mut self) {
        for c in [CONTAINER, "gwtd-e2e-run"] {
            support::docker(support::DOCKER, &["rm", "-f", c]);
        }
        for v in ["gwtd-e2e-vol", "gwtd-e2e-bind"] {
            support::docker(support::DOCKER, &["volume", "rm", "-f", v]);
        }
        support::docker(support::DOCKER, &["rmi", "-f", "local/gwtd-bench:v1"]);
        let _ = fs::remove_dir_all(format!("{BUILDS}/gwtd-bench"));
        let _ = fs::remove_dir_all(format!("{BUILDS}/gwtd-evil"));
        if self.made_srv {
            let _ = fs::remove_dir_all("/srv/ai-worker");
        }
    }
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_agent_runs_its_containers_and_cannot_escape() {
    require_root();
    support::engine_ready();
    let _lock = system_lock();
    let made_srv = !Path::new("/srv/ai-worker").exists();
    let _engine = EngineCleanup { made_srv };

    // A build directory as the administrator makes it: root's, with a Dockerfile.
    let bench = format!("{BUILDS}/gwtd-bench");
    fs::create_dir_all(&bench).unwrap();
    for d in ["/srv/ai-worker", BUILDS, bench.as_str()] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(
        format!("{bench}/Dockerfile"),
        "FROM local/busybox:latest\nRUN echo built > /built\n",
    )
    .unwrap();
    // One the agent owns: its path chain is not root's alone.
    let evil = format!("{BUILDS}/gwtd-evil");
    fs::create_dir_all(&evil).unwrap();

    let policy = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let agent = TestUser::create("ai-worker");
    cmd_ok(&["chown", "ai-worker", &evil]);
    let install = Installation::new(&policy, &["ai-worker"]);
    let keys = TempDir::new("docker-e2e-keys");
    let key = ClientKey::generate(keys.path());
    agent.authorize(&format!(
        "restrict,command=\"/usr/local/bin/gateway ssh\" {}",
        key.public
    ));
    let sshd = Sshd::start(SSH_PORT);
    let ssh = |command: &str| sshd.ssh(&key, "ai-worker", Some(command));
    let audit_start = install.audit_all().len();

    // Allowed, through SSH (with and without a leading sudo) and through sudo.
    let o = ssh("docker ps");
    assert!(o.status.success(), "docker ps over ssh: {}", out_text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("CONTAINER ID"));
    let o = agent.sudo(&["docker", "ps", "-a"]);
    assert!(o.status.success(), "sudo docker ps -a: {}", out_text(&o));
    let o = ssh("sudo docker run --rm local/busybox echo ok");
    assert!(o.status.success(), "docker run --rm: {}", out_text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");
    let o = agent.sudo(&["docker", "run", "--rm", "local/busybox", "echo", "ok"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "ok",
        "{}",
        out_text(&o)
    );
    let o = ssh(&format!(
        "docker run -d --name {CONTAINER} -p 127.0.0.1:18300:80 -v gwtd-e2e-vol:/data local/busybox sh -c 'echo started; sleep 300'"
    ));
    assert!(o.status.success(), "docker run -d: {}", out_text(&o));
    let o = ssh(&format!("docker logs {CONTAINER}"));
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("started"),
        "docker logs: {}",
        out_text(&o)
    );
    let o = ssh(&format!("docker restart {CONTAINER}"));
    assert!(o.status.success(), "docker restart: {}", out_text(&o));
    let o = ssh(&format!(
        "docker inspect -f {{{{.State.Running}}}} {CONTAINER}"
    ));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "true",
        "{}",
        out_text(&o)
    );
    let o = ssh(&format!("docker stats --no-stream {CONTAINER}"));
    assert!(o.status.success(), "docker stats: {}", out_text(&o));

    // The build rule: a root-owned directory builds; the agent's own directory does not.
    let o = ssh(&format!("docker build -t local/gwtd-bench:v1 {bench}"));
    assert!(o.status.success(), "docker build: {}", out_text(&o));
    let o = ssh("docker run --rm local/gwtd-bench:v1 cat /built");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "built",
        "{}",
        out_text(&o)
    );
    let o = ssh(&format!("docker build -t local/gwtd-evil:v1 {evil}"));
    assert_eq!(o.status.code(), Some(77), "{}", out_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not by root"),
        "{}",
        out_text(&o)
    );

    // A named volume that is a bind of / in disguise is refused, after asking the engine.
    support::ok(
        support::DOCKER,
        &[
            "volume",
            "create",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            "device=/",
            "gwtd-e2e-bind",
        ],
    );

    // Denied: exit 77, a reason, and no container started.
    let before = containers();
    let denied: &[(&str, &str)] = &[
        (
            "sudo docker run -v /:/host local/busybox cat /host/etc/shadow",
            "only named volumes",
        ),
        (
            "docker run -v=/:/h local/busybox cat /h/etc/shadow",
            "only named volumes",
        ),
        ("docker run -itv /:/h local/busybox", "--interactive"),
        (
            "docker run --rm -v gwtd-e2e-bind:/h local/busybox cat /h/etc/shadow",
            "not a plain volume",
        ),
        ("docker run --privileged local/busybox", "--privileged"),
        ("docker run --privileged=t local/busybox", "--privileged"),
        ("docker run --pid=host local/busybox", "--pid"),
        (
            "docker run --mount type=bind,src=/,dst=/h local/busybox",
            "--mount",
        ),
        (
            &format!("docker exec {CONTAINER} sh"),
            "docker exec is not allowed",
        ),
        (
            &format!("docker cp {CONTAINER}:/etc/passwd /tmp/x"),
            "docker cp is not allowed",
        ),
        ("docker --config /tmp ps", "global option --config"),
        ("docker -H tcp://127.0.0.1:2375 ps", "global option -H"),
        (
            "docker container run --privileged local/busybox",
            "management-command alias",
        ),
        (
            "docker system dial-stdio",
            "docker system dial-stdio is not allowed",
        ),
    ];
    for (command, reason) in denied {
        let o = ssh(command);
        assert_eq!(o.status.code(), Some(77), "{command}: {}", out_text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(reason),
            "{command}: expected {reason:?} in\n{err}"
        );
        assert!(
            err.contains("gateway: hint:"),
            "{command}: a hint is given\n{err}"
        );
    }
    let o = agent.sudo(&[
        "docker",
        "run",
        "-v",
        "/:/host",
        "local/busybox",
        "cat",
        "/host/etc/shadow",
    ]);
    assert_eq!(o.status.code(), Some(77), "sudo door: {}", out_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).is_empty(),
        "nothing from the container"
    );
    let o = agent.sudo(&["docker", "--config", "/tmp", "ps"]);
    assert_eq!(o.status.code(), Some(77), "sudo door: {}", out_text(&o));
    assert_eq!(containers(), before, "a denied request started a container");

    // Stop and remove through the gateway as well.
    let o = ssh(&format!("docker stop {CONTAINER}"));
    assert!(o.status.success(), "docker stop: {}", out_text(&o));
    let o = ssh(&format!("docker rm {CONTAINER}"));
    assert!(o.status.success(), "docker rm: {}", out_text(&o));
    let o = ssh("docker rmi local/gwtd-bench:v1");
    assert!(o.status.success(), "docker rmi: {}", out_text(&o));

    // Every request is in the audit log, the denials with their reason and the canonical argv.
    let records = install.audit_since(audit_start);
    let denials: Vec<_> = records.iter().filter(|r| r["verdict"] == "deny").collect();
    assert_eq!(
        denials.len(),
        denied.len() + 3,
        "one record per denial: {denials:#?}"
    );
    let run = records
        .iter()
        .find(|r| r["verdict"] == "allow" && r.to_string().contains("--pull=never"))
        .expect("an allowed docker run is recorded");
    assert!(
        run.to_string().contains("\"--\""),
        "the canonical argv is recorded: {run}"
    );
}
