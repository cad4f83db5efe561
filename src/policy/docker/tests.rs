//! Docker rules as the policy loader builds them: configuration mistakes are reported with
//! their position, and a built rule reads requests as docker would.

use crate::policy::{Outcome, Policy};

const HEAD: &str = r#"
[programs.docker]
paths = ["/usr/bin/docker"]
dialect = "pflag"
[programs.ls]
paths = ["/usr/bin/ls"]
dialect = "getopt"
[types.img]
image = ["alpine:*", "local/*"]
[users.u]
rules = ["r"]
"#;

fn load(rule: &str) -> Result<Policy, String> {
    let text = format!("{HEAD}\n[rules.r]\n{rule}\n");
    Policy::parse("test.toml", &text).map_err(|d| {
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn rule_mistakes_are_reported_with_a_reason() {
    let rows = [
        (
            r#"program = "docker"
options."--all" = {}"#,
            "rules for a pflag program are docker rules",
            "no docker table",
        ),
        (
            r#"program = "ls"
docker = { command = "ps" }"#,
            "belongs to a rule whose program has dialect",
            "docker table on a getopt program",
        ),
        (
            r#"program = "docker"
docker = { command = "container ls" }"#,
            "not one the gateway can judge",
            "management alias as a command",
        ),
        (
            r#"program = "docker"
docker = { command = "ps" }
options."--bogus" = {}"#,
            "docker ps has no flag --bogus",
            "unknown flag",
        ),
        (
            r#"program = "docker"
docker = { command = "ps" }
options."-a" = {}"#,
            "write the long name",
            "short spelling as key",
        ),
        (
            r#"program = "docker"
docker = { command = "run", image = "img" }
options."--net" = { value = { enum = ["bridge"] } }"#,
            "write --network",
            "an alias as key",
        ),
        (
            r#"program = "docker"
docker = { command = "ps" }
options."--all" = { value = { enum = ["x"] } }"#,
            "is a switch",
            "value type on a bool",
        ),
        (
            r#"program = "docker"
docker = { command = "ps" }
options."--format" = {}"#,
            "takes a value",
            "no value type on a value flag",
        ),
        (
            r#"program = "docker"
docker = { command = "run", image = "img" }
options."--name" = { value = "container_name", repeat = true }"#,
            "keeps only the last --name",
            "repeat on a scalar",
        ),
        (
            r#"program = "docker"
docker = { command = "ps" }
options."--all" = { aliases = ["-a"] }"#,
            "remove aliases",
            "aliases on docker flags",
        ),
        (
            r#"program = "docker"
docker = { command = "run" }"#,
            "needs docker.image",
            "run without an image type",
        ),
        (
            r#"program = "docker"
docker = { command = "ps", image = "img" }"#,
            "does not apply",
            "image on ps",
        ),
        (
            r#"program = "docker"
docker = { command = "run", image = "img", pull = "sometimes" }"#,
            "docker.pull must be one of",
            "bad pull",
        ),
        (
            r#"program = "docker"
docker = { command = "compose up" }"#,
            "needs docker.file",
            "compose without a file type",
        ),
        (
            r#"program = "docker"
docker = { command = "ps" }
args = ["{container_name}"]"#,
            "takes no operands",
            "operands on ps",
        ),
        (
            r#"program = "docker"
docker = { command = "logs" }
args = ["literal"]"#,
            "typed placeholders",
            "a literal operand",
        ),
        (
            r#"program = "docker"
docker = { command = "run", image = "img" }
args = ["{container_name}"]"#,
            "not args",
            "args on run",
        ),
        (
            r#"program = "docker"
docker = { command = "run", image = "nosuchtype" }"#,
            "unknown type",
            "unknown image type",
        ),
        (
            r#"program = "docker"
docker = { command = "ps" }
append = ["--all"]"#,
            "no append",
            "append on docker",
        ),
    ];
    for (rule, want, why) in rows {
        match load(rule) {
            Ok(_) => panic!("{why}: loaded"),
            Err(e) => assert!(e.contains(want), "{why}: {e}"),
        }
    }
}

#[test]
fn image_types_with_bad_patterns_are_refused() {
    let text = HEAD.replace(r#"image = ["alpine:*", "local/*"]"#, r#"image = ["*"]"#);
    let err = Policy::parse(
        "t.toml",
        &format!("{text}\n[rules.r]\nprogram = \"docker\"\ndocker = {{ command = \"ps\" }}\n"),
    )
    .expect_err("a * pattern allows everything");
    assert!(err[0].to_string().contains("image pattern"), "{}", err[0]);
}

fn args(rule: &str, argv: &str) -> Result<Vec<String>, String> {
    let policy = load(rule).expect("rule loads");
    let words: Vec<String> = argv.split(' ').map(String::from).collect();
    match policy.rules["r"].evaluate(&words) {
        Ok(Outcome::Args(a)) => Ok(a),
        Ok(Outcome::Wrap(..)) => panic!("a docker rule never wraps"),
        Err(r) => Err(r.message),
    }
}

#[test]
fn requests_are_re_spelled_canonically() {
    let run = r#"program = "docker"
docker = { command = "run", image = "img" }
options."--rm" = {}
options."--detach" = {}
options."--name" = { value = "container_name" }
options."--publish" = { value = "docker_publish", repeat = true }"#;
    let rows = [
        (
            "run --rm alpine:3 echo ok",
            "run --rm -- alpine:3 echo ok",
            "flags, --, image, command",
        ),
        (
            "run -d --name=web local/x",
            "run --detach --name=web -- local/x",
            "short to long, = form",
        ),
        (
            "run --rm=false -d=0 alpine:3",
            "run --rm=false --detach=false -- alpine:3",
            "false bools stay explicit",
        ),
        (
            "run -dp127.0.0.1:8080:80 alpine:3",
            "run --detach --publish=127.0.0.1:8080:80 -- alpine:3",
            "a cluster with a value",
        ),
        (
            "run -p 127.0.0.1:8080:80 -p 127.0.0.1:8081:81 alpine:3 -p 1",
            "run --publish=127.0.0.1:8080:80 --publish=127.0.0.1:8081:81 -- alpine:3 -p 1",
            "repeats kept in order; words after the image untouched",
        ),
        (
            "run -- local/x --rm",
            "run -- local/x --rm",
            "an explicit -- is kept as the boundary",
        ),
    ];
    for (argv, want, why) in rows {
        assert_eq!(
            args(run, argv).map(|a| a.join(" ")).as_deref(),
            Ok(want),
            "{why}"
        );
    }
    let logs = r#"program = "docker"
docker = { command = "logs" }
options."--tail" = { value = { int = [1, 100] } }
options."--timestamps" = {}
args = ["{container_name}"]"#;
    assert_eq!(
        args(logs, "logs ollama -tn5")
            .map(|a| a.join(" "))
            .as_deref(),
        Ok("logs --timestamps --tail=5 -- ollama"),
        "logs is interspersed: flags after the name are still flags"
    );
}

#[test]
fn refusals_name_what_was_refused() {
    let run = r#"program = "docker"
docker = { command = "run", image = "img" }
options."--rm" = {}"#;
    let rows = [
        (
            "run --privileged alpine:3",
            "flag --privileged (--privileged) is not allowed for docker run",
        ),
        ("run --rm --rm alpine:3", "may be given only once"),
        ("run --rm", "needs an image"),
        ("run --rm busybox", "not in the image allowlist"),
        ("run --rm=on alpine:3", "not true/false"),
        (
            "run --bogus alpine:3",
            "has no flag --bogus that the gateway knows",
        ),
        ("--config /x run alpine:3", "global option --config"),
        ("exec x sh", "docker exec is not allowed"),
        ("", "docker needs a command"),
    ];
    for (argv, want) in rows {
        let got = if argv.is_empty() {
            let p = load(run).unwrap();
            match p.rules["r"].evaluate(&[]) {
                Err(r) => r.message,
                Ok(_) => panic!("empty allowed"),
            }
        } else {
            args(run, argv).expect_err(argv)
        };
        assert!(got.contains(want), "{argv}: {got}");
    }
}
