//! Property tests over generated docker argv, judged by the same `decide` as a real request:
//! the gateway never panics on any argv (docker words, flags, clusters, `=` forms, junk and
//! non-ASCII), and every generated `docker run` it allows, handed to the real docker CLI, gives
//! a container with no host path, no host namespace and no added privilege. The engine part is
//! bounded (the first ENGINE_BUDGET allowed runs); the decision part runs every case.
//!
//! Needs root and a running engine with `local/busybox:latest`: `tests/support/start-dockerd`.

#[path = "support/docker.rs"]
mod support;

use std::cell::{Cell, RefCell};

use gateway::decision::{decide, Channel, Input, Request, Verdict};
use gateway::policy::Policy;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::*;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");
const CASES: u32 = 3000;
const ENGINE_BUDGET: usize = 60;

/// Words that matter to docker's parser and to the rules, allowed and not.
const WORDS: &[&str] = &[
    "--rm",
    "--rm=false",
    "--rm=t",
    "--rm=yes",
    "-d",
    "-d=1",
    "--detach",
    "--name",
    "gwtd-p1",
    "--name=gwtd-p2",
    "-p",
    "127.0.0.1:18100:80",
    "-p127.0.0.1:18101:81",
    "8080:80",
    "0.0.0.0:18102:80",
    "-v",
    "gwtd-plain:/data",
    "gwtd-rootbind:/h",
    "/:/host",
    "-v/:/h",
    "-v=/:/h",
    "-vgwtd-plain:/x",
    "-itv",
    "-dv",
    "-dp",
    "-de",
    "-e",
    "A=b",
    "LD_PRELOAD=/x",
    "HOME",
    "--privileged",
    "--privileged=t",
    "--pid=host",
    "--pid",
    "host",
    "--net=host",
    "--network",
    "--cap-add=ALL",
    "--device",
    "/dev/null",
    "--gpus",
    "all",
    "device=0",
    "\"device=0,1\"",
    "--shm-size",
    "64m",
    "1g",
    "--mount",
    "type=bind,src=/,dst=/h",
    "--volumes-from",
    "gwtd-victim",
    "--security-opt",
    "seccomp=unconfined",
    "--",
    "-",
    "",
    "-test.v",
    "-h",
    "--help",
    "-i",
    "-t",
    "-it=false",
    "--env",
    "--publish",
    "--volume",
    "local/busybox",
    "alpine",
    "true",
    "sleep",
    "30",
];

const COMMANDS: &[&str] = &[
    "run",
    "ps",
    "logs",
    "inspect",
    "images",
    "stats",
    "start",
    "stop",
    "rm",
    "rmi",
    "pull",
    "build",
    "compose",
    "system",
    "network",
    "volume",
    "exec",
    "cp",
    "container",
    "image",
    "--config",
    "-H",
    "-D",
    "--context",
    "buildx",
    "plugin",
    "__complete",
    "help",
    "df",
    "ls",
    "up",
    "-f",
    "/srv/compose/x/compose.yaml",
    "/srv/ai-worker/builds/x",
    "-t",
    "local/x:1",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => proptest::sample::select(WORDS).prop_map(String::from),
        3 => proptest::sample::select(COMMANDS).prop_map(String::from),
        1 => "[ -~]{0,12}",
        1 => any::<String>(),
    ]
}

/// `docker run FLAGS... IMAGE [CMD...]`, shaped so that many are allowed.
fn run_argv() -> impl Strategy<Value = Vec<String>> {
    (
        proptest::collection::vec(word(), 0..7),
        proptest::sample::select(&["local/busybox", "alpine", "local/busybox:latest"][..]),
        proptest::collection::vec(word(), 0..3),
    )
        .prop_map(|(flags, image, tail)| {
            let mut v = vec!["docker".to_string(), "run".to_string()];
            v.extend(flags);
            v.push(image.to_string());
            v.extend(tail);
            v
        })
}

/// Anything after `docker`.
fn any_argv() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(word(), 0..9).prop_map(|w| {
        let mut v = vec!["docker".to_string()];
        v.extend(w);
        v
    })
}

#[test]
fn generated_docker_argv_never_panic_and_allowed_runs_are_isolated() {
    engine_ready();
    let _cleanup = Cleanup;
    fixtures();
    let baseline = baseline();
    let policy = Policy::load(std::path::Path::new(POLICY)).expect("the shipped policy loads");
    let engine_runs = Cell::new(0usize);
    let allowed = Cell::new(0usize);
    let failures = RefCell::new(Vec::new());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop_oneof![3 => run_argv(), 1 => any_argv()];
    let result = runner.run(&strategy, |argv| {
        let req = Request {
            user: "ai-worker".into(),
            channel: Channel::Sudo,
            input: Input::Argv(argv.clone()),
        };
        let d = decide(&policy, &req);
        if d.verdict != Verdict::Allow {
            return Ok(());
        }
        allowed.set(allowed.get() + 1);
        let plan = d.plan.expect("an allow has a plan");
        if plan.argv.get(1).map(String::as_str) != Some("run") || engine_runs.get() >= ENGINE_BUDGET
        {
            return Ok(());
        }
        engine_runs.set(engine_runs.get() + 1);
        let case = format!("p{}", engine_runs.get());
        match engine_record(DOCKER, &argv[2..], &case) {
            Ok(rec) => {
                let problems = host_config_problems(&rec, &baseline);
                prop_assert!(
                    problems.is_empty(),
                    "ALLOWED AN ESCAPE: {argv:?}: {problems:?}"
                );
            }
            // Docker itself may refuse an allowed argv (a name in use, a GPU this host lacks):
            // nothing was created, so nothing escaped; it is listed for a human to read.
            Err(e) => failures
                .borrow_mut()
                .push(format!("{argv:?}: docker refused: {}", e.trim())),
        }
        Ok(())
    });
    eprintln!(
        "{CASES} generated docker argv: {} allowed, {} allowed runs checked against the engine",
        allowed.get(),
        engine_runs.get()
    );
    for f in failures.borrow().iter() {
        eprintln!("note: {f}");
    }
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        engine_runs.get() >= 20,
        "too few allowed runs reached the engine ({}); the generator no longer produces allowed argv",
        engine_runs.get()
    );
}
