//! Shared by the docker engine tests: running the real CLI, reading the engine's record of a
//! container, and the HostConfig check every allowed `docker run` must pass.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DOCKER: &str = "/usr/bin/docker";
/// The second CLI on this machine (docker 28); canonical argv must read the same there.
pub const ALT_DOCKER: &str = "/usr/local/bin/docker";
/// Local tags of local/busybox, so allowlisted names resolve without a registry.
pub const ALIASES: &[&str] = &[
    "alpine:latest",
    "ollama/ollama:0.3.12",
    "nvidia/cuda:12.2.0-base",
];
pub const VICTIM: &str = "gwtd-victim";
pub const LABEL: &str = "gwtd.case";
pub fn docker(cli: &str, args: &[&str]) -> Output {
    Command::new(cli)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cli}: {e}"))
}

pub fn ok(cli: &str, args: &[&str]) -> String {
    let out = docker(cli, args);
    assert!(
        out.status.success(),
        "{cli} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes everything this test made, even when it fails.
pub struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = docker(
            DOCKER,
            &["ps", "-aq", "--filter", &format!("label={LABEL}")],
        );
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            docker(DOCKER, &["rm", "-f", "-v", id]);
        }
        docker(DOCKER, &["rm", "-f", VICTIM]);
        let vols = docker(DOCKER, &["volume", "ls", "-q", "--filter", "name=gwtd-"]);
        for v in String::from_utf8_lossy(&vols.stdout).split_whitespace() {
            docker(DOCKER, &["volume", "rm", "-f", v]);
        }
        for a in ALIASES {
            docker(DOCKER, &["rmi", a]);
        }
    }
}

pub fn engine_ready() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the docker differential test needs root"
    );
    let out = docker(DOCKER, &["version", "--format", "{{.Server.Version}}"]);
    assert!(
        out.status.success(),
        "the Docker engine does not answer on /var/run/docker.sock; run tests/support/start-dockerd \
         first ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let img = docker(DOCKER, &["image", "inspect", "local/busybox:latest"]);
    assert!(
        img.status.success(),
        "local/busybox:latest is missing; run tests/support/start-dockerd first"
    );
}

pub fn words(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// The engine's record of a run argv, or docker's refusal.
pub fn engine_record(cli: &str, args: &[String], case: &str) -> Result<Value, String> {
    let label = format!("--label={LABEL}={case}");
    let mut create: Vec<&str> = vec!["create", &label, "--pull=never"];
    create.extend(args.iter().map(String::as_str));
    let out = docker(cli, &create);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return inspect_and_remove(&id);
    }
    let run_only = ["'d'", "--detach", "--sig-proxy", "--detach-keys"]
        .iter()
        .any(|f| err.contains("unknown") && err.contains(f));
    if !run_only {
        return Err(err);
    }
    // `-d` exists only for run: start it for real, find it by label, record, remove.
    let mut run: Vec<&str> = vec!["run", &label, "--pull=never"];
    run.extend(args.iter().map(String::as_str));
    let mut child = Command::new(cli)
        .args(&run)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let ps = docker(
            DOCKER,
            &["ps", "-aq", "--filter", &format!("label={LABEL}={case}")],
        );
        let id = String::from_utf8_lossy(&ps.stdout).trim().to_string();
        if !id.is_empty() {
            break id;
        }
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        assert!(
            Instant::now() < deadline,
            "docker run never created case {case}"
        );
        sleep(Duration::from_millis(50));
    };
    let record = inspect_and_remove(&id);
    let _ = child.kill();
    let _ = child.wait();
    record
}

pub fn inspect_and_remove(id: &str) -> Result<Value, String> {
    let out = docker(DOCKER, &["inspect", id]);
    docker(DOCKER, &["rm", "-f", id]);
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("inspect: {e}"))?;
    Ok(v[0].clone())
}

pub fn volume_is_plain(name: &str) -> bool {
    let out = docker(DOCKER, &["volume", "inspect", name]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let opts = &v[0]["Options"];
    v[0]["Driver"] == "local" && (opts.is_null() || opts.as_object().is_some_and(|o| o.is_empty()))
}

pub fn nonempty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(_) => true,
    }
}

/// Everything in the record that reaches the host or adds privilege. `baseline` is a container
/// created with no flags: a namespace mode the engine uses by default (cgroupns=host on a
/// cgroup v1 host) is the engine's choice, not the caller's.
pub fn host_config_problems(rec: &Value, baseline: &Value) -> Vec<String> {
    let h = &rec["HostConfig"];
    let mut p = Vec::new();
    for b in h["Binds"].as_array().into_iter().flatten() {
        let src = b.as_str().unwrap_or("").split(':').next().unwrap_or("");
        if src.starts_with('/') || !volume_is_plain(src) {
            p.push(format!("bind {b}"));
        }
    }
    if nonempty(&h["Mounts"]) {
        p.push(format!("mounts {}", h["Mounts"]));
    }
    for m in rec["Mounts"].as_array().into_iter().flatten() {
        let plain = m["Type"] == "volume" && volume_is_plain(m["Name"].as_str().unwrap_or(""));
        if !plain {
            p.push(format!("mount {m}"));
        }
    }
    if h["Privileged"] == true {
        p.push("privileged".into());
    }
    for key in [
        "PidMode",
        "IpcMode",
        "UTSMode",
        "UsernsMode",
        "CgroupnsMode",
        "NetworkMode",
    ] {
        let mode = h[key].as_str().unwrap_or("");
        let default = baseline["HostConfig"][key].as_str().unwrap_or("");
        if (mode == "host" || mode.starts_with("container:")) && mode != default {
            p.push(format!("{key}={mode}"));
        }
    }
    if !matches!(h["NetworkMode"].as_str(), Some("default" | "bridge")) {
        p.push(format!("NetworkMode={}", h["NetworkMode"]));
    }
    for key in [
        "CapAdd",
        "Devices",
        "DeviceCgroupRules",
        "SecurityOpt",
        "VolumesFrom",
        "CgroupParent",
        "Sysctls",
    ] {
        if nonempty(&h[key]) {
            p.push(format!("{key}={}", h[key]));
        }
    }
    if h["Runtime"] != "runc" {
        p.push(format!("Runtime={}", h["Runtime"]));
    }
    if !nonempty(&h["MaskedPaths"]) {
        p.push("no masked paths".into());
    }
    if h["PublishAllPorts"] == true {
        p.push("publish all".into());
    }
    for (_, bindings) in h["PortBindings"].as_object().into_iter().flatten() {
        for b in bindings.as_array().into_iter().flatten() {
            if b["HostIp"] != "127.0.0.1" {
                p.push(format!("port binding {b}"));
            }
        }
    }
    if h["LogConfig"]["Type"] != "json-file" || nonempty(&h["LogConfig"]["Config"]) {
        p.push(format!("log config {}", h["LogConfig"]));
    }
    for e in rec["Config"]["Env"].as_array().into_iter().flatten() {
        if e.as_str().unwrap_or("").starts_with("LD_") {
            p.push(format!("env {e}"));
        }
    }
    p
}

/// Local image tags, a plain volume, a volume that binds `/`, and a container with a host bind.
pub fn fixtures() {
    for a in ALIASES {
        ok(DOCKER, &["tag", "local/busybox:latest", a]);
    }
    ok(DOCKER, &["volume", "create", "gwtd-plain"]);
    ok(
        DOCKER,
        &[
            "volume",
            "create",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            "device=/",
            "gwtd-rootbind",
        ],
    );
    ok(
        DOCKER,
        &[
            "create",
            "--name",
            VICTIM,
            &format!("--label={LABEL}=victim"),
            "-v",
            "/:/host",
            "local/busybox",
        ],
    );
}

/// A container created with no flags: what the engine does by default.
pub fn baseline() -> Value {
    let b = engine_record(DOCKER, &words("local/busybox true"), "baseline")
        .expect("a plain docker create works");
    let problems = host_config_problems(&b, &b);
    assert!(
        problems.is_empty(),
        "a container created with no flags already looks dangerous: {problems:?}"
    );
    b
}
