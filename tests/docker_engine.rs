//! Differential tests against the real Docker engine: several hundred `docker run` argv (the
//! allowed shapes, every escape family of THREATS classes 1-8, and generated variants of both:
//! clusters, `=` forms, attached values, bool spellings, flag order, repeats, `--`) are judged by
//! the gateway and then handed to the real docker CLI as `docker create` (`docker run` when the
//! argv uses a run-only flag such as `-d`), and the engine's record is inspected.
//!
//! For every argv the gateway allows: the HostConfig has no host path, no host namespace and no
//! added privilege; the gateway's reading (image, command, flags and values, taken from its
//! canonical argv) equals what the engine recorded; and the canonical argv, run through the same
//! CLI (and through the second CLI on this machine, when there is one), gives the same record.
//! For every escape the engine accepts, the same HostConfig check must flag it, so the check is
//! shown to catch what it is meant to catch.
//!
//! Needs root and a running engine with `local/busybox:latest`: `tests/support/start-dockerd`.
//! Nothing here contacts a registry: every create carries `--pull=never`.

#[path = "support/docker.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct Row {
    /// Arguments after `docker run`.
    args: Vec<String>,
    family: &'static str,
    expect: Expect,
}

/// The allowed shapes of POLICY-SPEC host B, each with a long-running command.
const ALLOWED: &[&str] = &[
    "--rm local/busybox sleep 30",
    "--rm --name {name} local/busybox sleep 30",
    "-d --name {name} local/busybox sleep 30",
    "-d --rm local/busybox sleep 30",
    "--gpus all local/busybox sleep 30",
    "--gpus device=0 local/busybox sleep 30",
    "--gpus \"device=0,1\" local/busybox sleep 30",
    "--shm-size 64m local/busybox sleep 30",
    "--shm-size 1g local/busybox sleep 30",
    "-p 127.0.0.1:18080:80 local/busybox sleep 30",
    "-p 127.0.0.1:18081:81/udp -p 127.0.0.1:18082:82 local/busybox sleep 30",
    "-v gwtd-plain:/data local/busybox sleep 30",
    "-v gwtd-plain:/data:ro local/busybox sleep 30",
    "-v gwtd-fresh:/data local/busybox sleep 30",
    "-v gwtd-plain:/a -v gwtd-fresh:/b local/busybox sleep 30",
    "-e GWTD=1 -e A=b=c local/busybox sleep 30",
    "--rm alpine sleep 30",
    "--rm docker.io/library/alpine:latest sleep 30",
    "--rm ollama/ollama:0.3.12 sleep 30",
    "--rm nvidia/cuda:12.2.0-base sleep 30",
    "--rm local/busybox --privileged -v /:/host --pid=host",
    "--rm -- local/busybox sleep 30",
    "--rm --name {name} --gpus all --shm-size 256m -p 127.0.0.1:18083:83 -v gwtd-plain:/models -e X=1 local/busybox sleep 30",
    // Started for real (-d), so no --gpus here: this engine has no GPU to start it with.
    "-d --rm --name {name} --shm-size 256m -p 127.0.0.1:18084:84 -v gwtd-plain:/models -e X=1 local/busybox sleep 30",
];

/// Escape families (THREATS 1-8): each must be denied, and most are accepted by docker.
const ESCAPES: &[(&str, &str)] = &[
    ("host bind", "-v /:/host local/busybox sleep 30"),
    ("host bind, = form", "-v=/:/host local/busybox sleep 30"),
    ("host bind, attached", "-v/:/host local/busybox sleep 30"),
    ("host bind in a cluster", "-itv /:/host local/busybox sleep 30"),
    ("host bind in a cluster, attached", "-tv/:/host local/busybox sleep 30"),
    ("host bind, long", "--volume /etc:/h local/busybox sleep 30"),
    ("host bind, long =", "--volume=/etc:/h local/busybox sleep 30"),
    ("relative bind", "-v ./gwtd-rel:/h local/busybox sleep 30"),
    ("parent bind", "-v ..:/h local/busybox sleep 30"),
    ("engine socket", "-v /var/run/docker.sock:/s local/busybox sleep 30"),
    ("bind hidden in a named volume", "-v gwtd-rootbind:/h local/busybox sleep 30"),
    ("second volume is a host bind", "-v gwtd-plain:/d -v /:/h local/busybox sleep 30"),
    ("mount bind", "--mount type=bind,src=/,dst=/h local/busybox sleep 30"),
    ("mount bind, upper-case key", "--mount TYPE=bind,source=/,target=/h local/busybox sleep 30"),
    ("mount volume with bind options", "--mount type=volume,src=gwtd-mvol,dst=/h,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/ local/busybox sleep 30"),
    ("volumes-from", "--volumes-from gwtd-victim local/busybox sleep 30"),
    ("privileged", "--privileged local/busybox sleep 30"),
    ("privileged=true", "--privileged=true local/busybox sleep 30"),
    ("privileged=1", "--privileged=1 local/busybox sleep 30"),
    ("privileged=t", "--privileged=t local/busybox sleep 30"),
    ("privileged=T", "--privileged=T local/busybox sleep 30"),
    ("privileged=TRUE", "--privileged=TRUE local/busybox sleep 30"),
    ("privileged=True", "--privileged=True local/busybox sleep 30"),
    ("host pid", "--pid=host local/busybox sleep 30"),
    ("host pid, next word", "--pid host local/busybox sleep 30"),
    ("host ipc", "--ipc=host local/busybox sleep 30"),
    ("host uts", "--uts=host local/busybox sleep 30"),
    ("host userns", "--userns=host local/busybox sleep 30"),
    ("host cgroupns", "--cgroupns=host local/busybox sleep 30"),
    ("host network", "--network host local/busybox sleep 30"),
    ("host network, hidden alias", "--net=host local/busybox sleep 30"),
    ("another container's network", "--network container:gwtd-victim local/busybox sleep 30"),
    ("another container's pid", "--pid container:gwtd-victim local/busybox sleep 30"),
    ("cap-add", "--cap-add SYS_ADMIN local/busybox sleep 30"),
    ("cap-add ALL", "--cap-add=ALL local/busybox sleep 30"),
    ("cap-add lower case", "--cap-add sys_ptrace local/busybox sleep 30"),
    ("device", "--device /dev/null local/busybox sleep 30"),
    ("seccomp off", "--security-opt seccomp=unconfined local/busybox sleep 30"),
    ("apparmor off", "--security-opt apparmor=unconfined local/busybox sleep 30"),
    ("labels off", "--security-opt label=disable local/busybox sleep 30"),
    ("system paths unmasked", "--security-opt systempaths=unconfined local/busybox sleep 30"),
    ("cgroup parent", "--cgroup-parent gwtd local/busybox sleep 30"),
    ("loader variable", "-e LD_PRELOAD=/x.so local/busybox sleep 30"),
    ("all interfaces", "-p 18090:80 local/busybox sleep 30"),
    ("all interfaces, explicit", "-p 0.0.0.0:18091:80 local/busybox sleep 30"),
    ("all exposed ports", "-P --expose 80 local/busybox sleep 30"),
    ("log driver to a host socket", "--log-driver syslog --log-opt syslog-address=unix:///dev/log local/busybox sleep 30"),
    ("sysctl", "--sysctl net.ipv4.ip_forward=1 local/busybox sleep 30"),
    ("bool takes no value word", "--rm true local/busybox sleep 30"),
    ("value flag eats a flag", "--name --privileged local/busybox sleep 30"),
    ("privileged hidden behind a cluster", "-d --privileged local/busybox sleep 30"),
    ("detached host bind", "-dv /:/host local/busybox sleep 30"),
    ("-test. skipped by pflag", "-test.v --privileged local/busybox sleep 30"),
];

/// Variants that keep the meaning of a row: other spellings docker reads the same way.
fn variants(base: &[String]) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    let image_at = image_index(base);
    let (flags, rest) = base.split_at(image_at);
    let long = |s: &str| match s {
        "-d" => Some("--detach"),
        "-p" => Some("--publish"),
        "-v" => Some("--volume"),
        "-e" => Some("--env"),
        _ => None,
    };
    let takes_value = |s: &str| {
        matches!(
            s,
            "-p" | "-v"
                | "-e"
                | "--name"
                | "--gpus"
                | "--shm-size"
                | "--publish"
                | "--volume"
                | "--env"
                | "--pid"
                | "--network"
                | "--cap-add"
                | "--device"
                | "--security-opt"
                | "--cgroup-parent"
                | "--mount"
                | "--volumes-from"
                | "--expose"
                | "--log-driver"
                | "--log-opt"
                | "--sysctl"
        )
    };
    let join =
        |f: Vec<String>| -> Vec<String> { f.into_iter().chain(rest.iter().cloned()).collect() };
    // Long names for short flags.
    let mapped: Vec<String> = flags
        .iter()
        .map(|f| long(f).map(String::from).unwrap_or_else(|| f.clone()))
        .collect();
    if mapped != flags {
        out.push(("long names", join(mapped)));
    }
    // `=` forms and attached short values.
    let mut eq = Vec::new();
    let mut attached = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        let f = &flags[i];
        if takes_value(f) && i + 1 < flags.len() {
            eq.push(format!("{f}={}", flags[i + 1]));
            if f.len() == 2 {
                attached.push(format!("{f}{}", flags[i + 1]));
            } else {
                attached.push(f.clone());
                attached.push(flags[i + 1].clone());
            }
            i += 2;
        } else {
            eq.push(f.clone());
            attached.push(f.clone());
            i += 1;
        }
    }
    if eq != flags {
        out.push(("= forms", join(eq)));
    }
    if attached != flags {
        out.push(("attached values", join(attached)));
    }
    // Cluster -d with the next short value flag.
    if let Some(d) = flags.iter().position(|f| f == "-d") {
        if let Some(s) = flags
            .iter()
            .enumerate()
            .skip(d + 1)
            .position(|(_, f)| matches!(f.as_str(), "-p" | "-v" | "-e"))
        {
            let s = s + d + 1;
            let mut c: Vec<String> = flags.to_vec();
            c[s] = format!("-d{}", &c[s][1..]);
            c.remove(d);
            out.push(("cluster", join(c)));
        }
    }
    // Bool spellings.
    for spelling in ["true", "1", "t", "T", "TRUE", "True"] {
        let b: Vec<String> = flags
            .iter()
            .map(|f| match f.as_str() {
                "--rm" | "-d" | "--privileged" => format!("{f}={spelling}"),
                _ => f.clone(),
            })
            .collect();
        if b != flags {
            out.push(("bool spelling", join(b)));
        }
    }
    // Flag groups in reverse order.
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        let n = if takes_value(&flags[i]) && i + 1 < flags.len() {
            2
        } else {
            1
        };
        groups.push(flags[i..i + n].to_vec());
        i += n;
    }
    if groups.len() > 1 && !flags.iter().any(|f| f == "--") {
        groups.reverse();
        out.push(("reordered", join(groups.concat())));
    }
    // An explicit end of options before the image.
    if !flags.iter().any(|f| f == "--") {
        let mut f = flags.to_vec();
        f.push("--".into());
        out.push(("explicit --", join(f)));
    }
    out
}

/// Where the image is, reading the row as docker would (only for the table's own rows).
fn image_index(args: &[String]) -> usize {
    args.iter()
        .position(|a| {
            a.contains("busybox")
                || ALIASES.iter().any(|x| a.starts_with(&x[..5]))
                || a.starts_with("docker.io/")
        })
        .unwrap_or(args.len())
}

fn table() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |rows: &mut Vec<Row>, args: Vec<String>, family: &'static str, expect| {
        if seen.insert(args.clone()) {
            rows.push(Row {
                args,
                family,
                expect,
            });
        }
    };
    for shape in ALLOWED {
        let base = words(shape);
        push(&mut rows, base.clone(), "allowed shape", Expect::Allow);
        for (family, v) in variants(&base) {
            push(&mut rows, v, family, Expect::Allow);
        }
        // A repeated scalar flag is refused even though docker would keep the last one.
        if base.iter().any(|w| w == "--rm") {
            let mut r = base.clone();
            r.insert(0, "--rm".into());
            push(&mut rows, r, "repeat of a scalar", Expect::Deny);
        }
    }
    for (family, shape) in ESCAPES {
        let base = words(shape);
        push(&mut rows, base.clone(), family, Expect::Deny);
        for (_, v) in variants(&base) {
            push(&mut rows, v, family, Expect::Deny);
        }
        // The escape after an allowed flag, and before one.
        let mut after = vec!["--rm".to_string()];
        after.extend(base.iter().cloned());
        push(&mut rows, after, family, Expect::Deny);
    }
    rows
}

/// What the engine must have recorded, read from the gateway's canonical argv.
fn expected_from_canonical(canon: &[String]) -> (Value, Vec<String>) {
    let dash = canon
        .iter()
        .position(|w| w == "--")
        .expect("canonical run has --");
    let (flags, operands) = (&canon[2..dash], &canon[dash + 1..]);
    let mut rm = false;
    let mut detach = false;
    let mut name = None;
    let mut shm = 64u64 << 20;
    let mut binds = Vec::new();
    let mut ports = serde_json::Map::new();
    let mut gpus = Value::Null;
    let mut env = Vec::new();
    for f in flags {
        let (k, v) = f.split_once('=').unwrap_or((f, ""));
        match k {
            "--rm" => rm = v != "false",
            "--detach" => detach = v != "false",
            "--name" => name = Some(format!("/{v}")),
            "--shm-size" => shm = shm_bytes(v),
            "--volume" => binds.push(json!(v)),
            "--publish" => {
                let (spec, proto) = v.split_once('/').unwrap_or((v, "tcp"));
                let parts: Vec<&str> = spec.split(':').collect();
                let key = format!("{}/{proto}", parts[2]);
                let entry = ports.entry(key).or_insert_with(|| json!([]));
                entry
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"HostIp": parts[0], "HostPort": parts[1]}));
            }
            "--gpus" => {
                let inner = v.trim_matches('"');
                gpus = if inner == "all" {
                    json!([{"Driver": "", "Count": -1, "DeviceIDs": null, "Capabilities": [["gpu"]], "Options": {}}])
                } else {
                    let ids: Vec<&str> = inner.trim_start_matches("device=").split(',').collect();
                    json!([{"Driver": "", "Count": 0, "DeviceIDs": ids, "Capabilities": [["gpu"]], "Options": {}}])
                };
            }
            "--env" => env.push(v.to_string()),
            "--pull" => {}
            other => panic!("the canonical argv has a flag the test does not know: {other}"),
        }
    }
    let cmd: Vec<String> = operands[1..].to_vec();
    let expected = json!({
        "image": operands[0],
        "cmd": if cmd.is_empty() { Value::Null } else { json!(cmd) },
        "name": name,
        "rm": rm,
        "attached": !detach,
        "shm": shm,
        "binds": if binds.is_empty() { Value::Null } else { binds.sort_by_key(|v| v.to_string()); Value::Array(binds) },
        "ports": Value::Object(ports),
        "gpus": gpus,
    });
    (expected, env)
}

fn shm_bytes(v: &str) -> u64 {
    let (n, unit) = match v.as_bytes().last() {
        Some(b'k') => (&v[..v.len() - 1], 1 << 10),
        Some(b'm') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g') => (&v[..v.len() - 1], 1 << 30),
        Some(b'b') => (&v[..v.len() - 1], 1),
        _ => (v, 1),
    };
    n.parse::<u64>().unwrap() * unit
}

/// The same fields, as the engine recorded them.
fn recorded(rec: &Value) -> (Value, Vec<String>) {
    let h = &rec["HostConfig"];
    let ports = match &h["PortBindings"] {
        Value::Object(o) => Value::Object(o.clone()),
        _ => json!({}),
    };
    let gpus = match &h["DeviceRequests"] {
        Value::Array(a) if !a.is_empty() => Value::Array(a.clone()),
        _ => Value::Null,
    };
    let default_cmd = json!(["/bin/sh"]);
    let cmd = if rec["Config"]["Cmd"] == default_cmd {
        Value::Null
    } else {
        rec["Config"]["Cmd"].clone()
    };
    let name = rec["Name"].as_str().unwrap_or("");
    let v = json!({
        "image": rec["Config"]["Image"],
        "cmd": cmd,
        // docker names unnamed containers itself.
        "name": if name.starts_with("/gwtd-c") { json!(name) } else { Value::Null },
        "rm": h["AutoRemove"],
        "attached": rec["Config"]["AttachStdout"],
        "shm": h["ShmSize"],
        "binds": match &h["Binds"] {
            Value::Array(b) => {
                let mut b = b.clone();
                b.sort_by_key(|v| v.to_string());
                Value::Array(b)
            }
            other => other.clone(),
        },
        "ports": ports,
        "gpus": gpus,
    });
    let env = rec["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(String::from))
        .collect();
    (v, env)
}

/// Empty lists and maps as null: CLIs differ in which of the three they send.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalized(v))).collect())
        }
        other => other.clone(),
    }
}

/// The record without what differs between two creations of the same argv.
fn comparable(rec: &Value) -> Value {
    let mut h = rec["HostConfig"].clone();
    if let Some(o) = h.as_object_mut() {
        o.remove("ContainerIDFile");
        // The CLI collects -v values in a map, so their order is not kept.
        if let Some(Value::Array(b)) = o.get_mut("Binds") {
            b.sort_by_key(|v| v.to_string());
        }
    }
    let mut env: Vec<Value> = rec["Config"]["Env"].as_array().cloned().unwrap_or_default();
    env.sort_by_key(|v| v.to_string());
    let mut labels = rec["Config"]["Labels"].clone();
    if let Some(o) = labels.as_object_mut() {
        o.remove(LABEL);
    }
    normalized(&json!({
        "HostConfig": h,
        "Image": rec["Config"]["Image"],
        "Cmd": rec["Config"]["Cmd"],
        // Newer CLIs collect -e values in a map, so their order is not kept.
        "Env": env,
        "Entrypoint": rec["Config"]["Entrypoint"],
        "Labels": labels,
        "Attach": [rec["Config"]["AttachStdin"], rec["Config"]["AttachStdout"], rec["Config"]["AttachStderr"]],
        // Unnamed containers get a random name from docker.
        "Name": if rec["Name"].as_str().is_some_and(|n| n.starts_with("/gwtd-c")) { rec["Name"].clone() } else { Value::Null },
    }))
}

/// Decisions for every row from one `gateway check --batch` run.
fn decide_all(rows: &[Vec<String>]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config", POLICY, "--batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gateway check");
    let mut input = String::new();
    for r in rows {
        let mut argv = vec!["docker".to_string(), "run".to_string()];
        argv.extend(r.iter().cloned());
        input.push_str(&json!({"user": "ai-worker", "argv": argv}).to_string());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let decisions: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decisions.len(), rows.len(), "one decision per request");
    decisions
}

#[test]
fn allowed_docker_runs_are_isolated_and_read_as_docker_reads_them() {
    engine_ready();
    let _cleanup = Cleanup;
    fixtures();
    let alt = Path::new(ALT_DOCKER).exists();
    eprintln!(
        "docker CLIs: {DOCKER} (policy){}",
        if alt {
            format!(" and {ALT_DOCKER} (canonical argv only)")
        } else {
            format!("; {ALT_DOCKER} absent, not compared")
        }
    );

    let baseline = baseline();
    let rows = table();
    let mut named: Vec<Vec<String>> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        named.push(
            r.args
                .iter()
                .map(|w| w.replace("{name}", &format!("gwtd-c{i}")))
                .collect(),
        );
    }
    let decisions = decide_all(&named);
    let mut failures = Vec::new();
    let (mut allowed, mut escapes_shown, mut engine_refused) = (0, 0, 0);
    for (i, (row, args)) in rows.iter().zip(&named).enumerate() {
        let d = &decisions[i];
        let allow = d["verdict"] == "allow";
        let what = format!("#{i} [{}] docker run {}", row.family, args.join(" "));
        if allow != (row.expect == Expect::Allow) {
            failures.push(format!(
                "{what}: expected {:?}, gateway said {} ({})",
                row.expect, d["verdict"], d["reason"]
            ));
            continue;
        }
        let case = format!("o{i}");
        let record = engine_record(DOCKER, args, &case);
        if !allow {
            match record {
                Ok(rec) => {
                    let engine_default = row.family == "host cgroupns"
                        && baseline["HostConfig"]["CgroupnsMode"] == "host";
                    if host_config_problems(&rec, &baseline).is_empty()
                        && row.family != "repeat of a scalar"
                        && !engine_default
                    {
                        failures.push(format!("{what}: denied, but the engine record looks harmless, so the check may be blind"));
                    } else {
                        escapes_shown += 1;
                    }
                }
                Err(_) => engine_refused += 1,
            }
            continue;
        }
        allowed += 1;
        let rec = match record {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{what}: allowed, but docker refused it: {e}"));
                continue;
            }
        };
        let problems = host_config_problems(&rec, &baseline);
        if !problems.is_empty() {
            failures.push(format!("{what}: ALLOWED AN ESCAPE: {problems:?}"));
        }
        let canon: Vec<String> = d["exec"]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect();
        let (want, want_env) = expected_from_canonical(&canon);
        let (got, got_env) = recorded(&rec);
        if want != got {
            failures.push(format!(
                "{what}: the gateway read {want}, the engine recorded {got}"
            ));
        }
        if let Some(e) = want_env.iter().find(|e| !got_env.contains(e)) {
            failures.push(format!("{what}: -e {e} missing from the engine's Env"));
        }
        // The canonical argv must be read the same way by the CLI that runs it (and the other).
        let canon_args: Vec<String> = canon[2..]
            .iter()
            .filter(|w| *w != "--pull=never")
            .cloned()
            .collect();
        let mut clis = vec![DOCKER];
        if alt {
            clis.push(ALT_DOCKER);
        }
        for (n, cli) in clis.into_iter().enumerate() {
            match engine_record(cli, &canon_args, &format!("c{n}x{i}")) {
                Ok(c) if comparable(&c) == comparable(&rec) => {}
                Ok(c) => failures.push(format!(
                    "{what}: {cli} reads the canonical {canon:?} differently:\n  original  {}\n  canonical {}",
                    comparable(&rec),
                    comparable(&c)
                )),
                Err(e) => failures.push(format!("{what}: {cli} refused the canonical {canon:?}: {e}")),
            }
        }
    }
    eprintln!(
        "{} docker run argv: {allowed} allowed (each isolated, read as docker reads it, canonical form equal); \
         {} denied: {escapes_shown} of them accepted by docker with a dangerous HostConfig, {engine_refused} refused by docker itself",
        rows.len(),
        rows.len() - allowed,
    );
    assert!(
        rows.len() >= 300,
        "the table should hold several hundred argv, has {}",
        rows.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
