//! The flag tables of the docker commands the gateway can judge, as docker/cli (`cli/command/...`)
//! and the compose plugin (`cmd/compose/...`) define them: long name, shorthand, bool or value,
//! and whether a repeat appends or replaces. Hidden and deprecated flags are listed too, because
//! they still work. A flag the table lacks is refused, so an older CLI's missing flag only ever
//! turns into a denial, never into a different reading.
#![forbid(unsafe_code)]

use crate::argv::pflag::{Flag, FlagSet, Kind, Repeat};

const fn b(name: &'static str, short: Option<u8>) -> Flag {
    Flag {
        name,
        aliases: &[],
        short,
        kind: Kind::Bool,
        repeat: Repeat::Last,
    }
}

const fn v(name: &'static str, short: Option<u8>) -> Flag {
    Flag {
        name,
        aliases: &[],
        short,
        kind: Kind::Value,
        repeat: Repeat::Last,
    }
}

const fn list(name: &'static str, short: Option<u8>) -> Flag {
    Flag {
        name,
        aliases: &[],
        short,
        kind: Kind::Value,
        repeat: Repeat::Append,
    }
}

const fn alias(f: Flag, aliases: &'static [&'static str]) -> Flag {
    Flag { aliases, ..f }
}

/// The root's persistent `--help`, inherited by every docker command except run/create.
const HELP: Flag = b("help", Some(b'h'));

/// `docker run` (`container/run.go` + `container/opts.go addFlags`). Not interspersed.
pub const RUN: &[Flag] = &[
    // run.go
    b("detach", Some(b'd')),
    b("sig-proxy", None),
    v("name", None),
    v("detach-keys", None),
    v("pull", None),
    b("quiet", Some(b'q')),
    b("use-api-socket", None),
    b("help", None),
    v("platform", None),
    b("disable-content-trust", None),
    // opts.go addFlags
    list("attach", Some(b'a')),
    list("device-cgroup-rule", None),
    list("device", None),
    list("gpus", None),
    list("env", Some(b'e')),
    list("env-file", None),
    v("entrypoint", None),
    list("group-add", None),
    v("hostname", Some(b'h')),
    v("domainname", None),
    b("interactive", Some(b'i')),
    list("label", Some(b'l')),
    list("label-file", None),
    b("read-only", None),
    v("restart", None),
    v("stop-signal", None),
    v("stop-timeout", None),
    list("sysctl", None),
    b("tty", Some(b't')),
    list("ulimit", None),
    v("user", Some(b'u')),
    v("workdir", Some(b'w')),
    b("rm", None),
    list("cap-add", None),
    list("cap-drop", None),
    b("privileged", None),
    list("security-opt", None),
    v("userns", None),
    v("cgroupns", None),
    list("add-host", None),
    list("dns", None),
    alias(list("dns-option", None), &["dns-opt"]),
    list("dns-search", None),
    list("expose", None),
    v("ip", None),
    v("ip6", None),
    list("link", None),
    list("link-local-ip", None),
    v("mac-address", None),
    list("publish", Some(b'p')),
    b("publish-all", Some(b'P')),
    alias(list("network", None), &["net"]),
    alias(list("network-alias", None), &["net-alias"]),
    v("log-driver", None),
    v("volume-driver", None),
    list("log-opt", None),
    list("storage-opt", None),
    list("tmpfs", None),
    list("volumes-from", None),
    list("volume", Some(b'v')),
    list("mount", None),
    v("health-cmd", None),
    v("health-interval", None),
    v("health-retries", None),
    v("health-timeout", None),
    v("health-start-period", None),
    v("health-start-interval", None),
    b("no-healthcheck", None),
    v("blkio-weight", None),
    list("blkio-weight-device", None),
    v("cidfile", None),
    v("cpuset-cpus", None),
    v("cpuset-mems", None),
    v("cpu-count", None),
    v("cpu-percent", None),
    v("cpu-period", None),
    v("cpu-quota", None),
    v("cpu-rt-period", None),
    v("cpu-rt-runtime", None),
    v("cpu-shares", Some(b'c')),
    v("cpus", None),
    list("device-read-bps", None),
    list("device-read-iops", None),
    list("device-write-bps", None),
    list("device-write-iops", None),
    v("io-maxbandwidth", None),
    v("io-maxiops", None),
    v("memory", Some(b'm')),
    v("memory-reservation", None),
    v("memory-swap", None),
    v("memory-swappiness", None),
    b("oom-kill-disable", None),
    v("oom-score-adj", None),
    v("pids-limit", None),
    v("cgroup-parent", None),
    v("ipc", None),
    v("isolation", None),
    v("pid", None),
    v("shm-size", None),
    v("uts", None),
    v("runtime", None),
    b("init", None),
    list("annotation", None),
    v("kernel-memory", None),
];

/// `docker ps` (`container/list.go`).
pub const PS: &[Flag] = &[
    b("quiet", Some(b'q')),
    b("size", Some(b's')),
    b("all", Some(b'a')),
    b("no-trunc", None),
    b("latest", Some(b'l')),
    v("last", Some(b'n')),
    v("format", None),
    list("filter", Some(b'f')),
    HELP,
];

/// `docker logs` (`container/logs.go`).
pub const LOGS: &[Flag] = &[
    b("follow", Some(b'f')),
    v("since", None),
    v("until", None),
    b("timestamps", Some(b't')),
    b("details", None),
    v("tail", Some(b'n')),
    HELP,
];

/// `docker inspect` (`system/inspect.go`).
pub const INSPECT: &[Flag] = &[
    v("format", Some(b'f')),
    v("type", None),
    b("size", Some(b's')),
    HELP,
];

/// `docker images` (`image/list.go`).
pub const IMAGES: &[Flag] = &[
    b("quiet", Some(b'q')),
    b("all", Some(b'a')),
    b("no-trunc", None),
    b("digests", None),
    v("format", None),
    list("filter", Some(b'f')),
    b("tree", None),
    HELP,
];

/// `docker stats` (`container/stats.go`).
pub const STATS: &[Flag] = &[
    b("all", Some(b'a')),
    b("no-stream", None),
    b("no-trunc", None),
    v("format", None),
    HELP,
];

/// `docker start` (`container/start.go`).
pub const START: &[Flag] = &[
    b("attach", Some(b'a')),
    b("interactive", Some(b'i')),
    v("detach-keys", None),
    v("checkpoint", None),
    v("checkpoint-dir", None),
    HELP,
];

/// `docker stop` and `docker restart` (`container/{stop,restart}.go`).
pub const STOP: &[Flag] = &[
    v("signal", Some(b's')),
    v("timeout", Some(b't')),
    v("time", None),
    HELP,
];

/// `docker rm` (`container/rm.go`).
pub const RM: &[Flag] = &[
    b("volumes", Some(b'v')),
    b("link", Some(b'l')),
    b("force", Some(b'f')),
    HELP,
];

/// `docker rmi` (`image/remove.go`).
pub const RMI: &[Flag] = &[
    b("force", Some(b'f')),
    b("no-prune", None),
    list("platform", None),
    HELP,
];

/// `docker wait` (`container/wait.go`).
pub const WAIT: &[Flag] = &[HELP];

/// `docker pull` (`image/pull.go`).
pub const PULL: &[Flag] = &[
    b("all-tags", Some(b'a')),
    b("quiet", Some(b'q')),
    b("disable-content-trust", None),
    v("platform", None),
    HELP,
];

/// `docker info`, `docker system info`, `docker version` (`system/{info,version}.go`).
pub const FORMAT_ONLY: &[Flag] = &[v("format", Some(b'f')), HELP];

/// `docker system df` (`system/df.go`).
pub const SYSTEM_DF: &[Flag] = &[b("verbose", Some(b'v')), v("format", None), HELP];

/// `docker network ls` (`network/list.go`).
pub const NETWORK_LS: &[Flag] = &[
    b("quiet", Some(b'q')),
    b("no-trunc", None),
    v("format", None),
    list("filter", Some(b'f')),
    HELP,
];

/// `docker volume ls` (`volume/list.go`).
pub const VOLUME_LS: &[Flag] = &[
    b("quiet", Some(b'q')),
    v("format", None),
    list("filter", Some(b'f')),
    b("cluster", None),
    HELP,
];

/// `docker build` with the legacy builder (`image/build.go`), BuildKit-only flags included.
pub const BUILD: &[Flag] = &[
    list("tag", Some(b't')),
    list("build-arg", None),
    list("ulimit", None),
    v("file", Some(b'f')),
    v("memory", Some(b'm')),
    v("memory-swap", None),
    v("shm-size", None),
    v("cpu-shares", Some(b'c')),
    v("cpu-period", None),
    v("cpu-quota", None),
    v("cpuset-cpus", None),
    v("cpuset-mems", None),
    v("cgroup-parent", None),
    v("isolation", None),
    list("label", None),
    b("no-cache", None),
    b("rm", None),
    b("force-rm", None),
    b("quiet", Some(b'q')),
    b("pull", None),
    list("cache-from", None),
    b("compress", None),
    list("security-opt", None),
    v("network", None),
    list("add-host", None),
    v("target", None),
    v("iidfile", None),
    b("disable-content-trust", None),
    v("platform", None),
    b("squash", None),
    list("output", Some(b'o')),
    v("progress", None),
    list("secret", None),
    list("ssh", None),
    HELP,
];

/// The compose plugin's root (`cmd/compose/compose.go`): project flags, then the subcommand.
pub const COMPOSE_ROOT: &[Flag] = &[
    list("profile", None),
    v("project-name", Some(b'p')),
    list("file", Some(b'f')),
    list("insecure-registry", None),
    list("env-file", None),
    v("project-directory", None),
    v("workdir", None),
    b("compatibility", None),
    v("progress", None),
    b("all-resources", None),
    v("ansi", None),
    v("parallel", None),
    b("version", Some(b'v')),
    b("dry-run", None),
    b("no-ansi", None),
    b("verbose", None),
    HELP,
];

/// Inherited by every compose subcommand: the root's persistent `--dry-run` and cobra's help.
const DRY_RUN: Flag = b("dry-run", None);

pub const COMPOSE_PS: &[Flag] = &[
    v("format", None),
    v("filter", None),
    list("status", None),
    b("quiet", Some(b'q')),
    b("services", None),
    b("orphans", None),
    b("all", Some(b'a')),
    b("no-trunc", None),
    DRY_RUN,
    HELP,
];

pub const COMPOSE_UP: &[Flag] = &[
    b("detach", Some(b'd')),
    b("build", None),
    b("no-build", None),
    v("pull", None),
    b("remove-orphans", None),
    list("scale", None),
    b("no-color", None),
    b("no-log-prefix", None),
    b("force-recreate", None),
    b("no-recreate", None),
    b("no-start", None),
    b("abort-on-container-exit", None),
    b("abort-on-container-failure", None),
    v("exit-code-from", None),
    v("timeout", Some(b't')),
    b("timestamps", None),
    b("no-deps", None),
    b("always-recreate-deps", None),
    b("renew-anon-volumes", Some(b'V')),
    b("quiet-pull", None),
    b("quiet-build", None),
    list("attach", None),
    list("no-attach", None),
    b("attach-dependencies", None),
    b("wait", None),
    v("wait-timeout", None),
    b("watch", Some(b'w')),
    b("menu", None),
    // compose normalises the mistaken `--y` to `--yes`.
    alias(b("yes", Some(b'y')), &["y"]),
    DRY_RUN,
    HELP,
];

pub const COMPOSE_DOWN: &[Flag] = &[
    b("remove-orphans", None),
    v("timeout", Some(b't')),
    // compose normalises `--volume` to `--volumes`.
    alias(b("volumes", Some(b'v')), &["volume"]),
    v("rmi", None),
    DRY_RUN,
    HELP,
];

pub const COMPOSE_RESTART: &[Flag] = &[v("timeout", Some(b't')), b("no-deps", None), DRY_RUN, HELP];

pub const COMPOSE_LOGS: &[Flag] = &[
    b("follow", Some(b'f')),
    v("index", None),
    v("since", None),
    v("until", None),
    b("no-color", None),
    b("no-log-prefix", None),
    b("timestamps", Some(b't')),
    v("tail", Some(b'n')),
    DRY_RUN,
    HELP,
];

pub const COMPOSE_PULL: &[Flag] = &[
    b("quiet", Some(b'q')),
    b("include-deps", None),
    b("parallel", None),
    b("no-parallel", None),
    b("ignore-pull-failures", None),
    b("ignore-buildable", None),
    v("policy", None),
    DRY_RUN,
    HELP,
];

pub const COMPOSE_LS: &[Flag] = &[
    v("format", None),
    b("quiet", Some(b'q')),
    list("filter", None),
    b("all", Some(b'a')),
    DRY_RUN,
    HELP,
];

pub const COMPOSE_VERSION: &[Flag] = &[v("format", Some(b'f')), b("short", None), DRY_RUN, HELP];

/// How many operands a command takes (cobra's `Args` validator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    None,
    Exactly(usize),
    AtLeast(usize),
    AtMost(usize),
    /// `run`: an image, then the container's command, which docker does not parse.
    ImageThenCommand,
}

/// A docker command a rule can name.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// The words that select it: `ps`, `system df`, `compose up`.
    pub words: &'static str,
    pub flags: &'static [Flag],
    pub interspersed: bool,
    pub arity: Arity,
}

impl Command {
    pub fn flag_set(&self) -> FlagSet<'static> {
        FlagSet {
            flags: self.flags,
            interspersed: self.interspersed,
        }
    }

    pub fn is_compose(&self) -> bool {
        self.words.starts_with("compose ")
    }
}

const fn cmd(words: &'static str, flags: &'static [Flag], arity: Arity) -> Command {
    Command {
        words,
        flags,
        interspersed: true,
        arity,
    }
}

/// Every command a docker rule may name. Anything else is refused before any rule is read.
pub const COMMANDS: &[Command] = &[
    Command {
        words: "run",
        flags: RUN,
        interspersed: false,
        arity: Arity::ImageThenCommand,
    },
    cmd("ps", PS, Arity::None),
    cmd("inspect", INSPECT, Arity::AtLeast(1)),
    cmd("logs", LOGS, Arity::Exactly(1)),
    cmd("images", IMAGES, Arity::AtMost(1)),
    cmd("info", FORMAT_ONLY, Arity::None),
    cmd("version", FORMAT_ONLY, Arity::None),
    cmd("stats", STATS, Arity::AtLeast(0)),
    cmd("start", START, Arity::AtLeast(1)),
    cmd("stop", STOP, Arity::AtLeast(1)),
    cmd("restart", STOP, Arity::AtLeast(1)),
    cmd("wait", WAIT, Arity::AtLeast(1)),
    cmd("rm", RM, Arity::AtLeast(1)),
    cmd("rmi", RMI, Arity::AtLeast(1)),
    cmd("pull", PULL, Arity::Exactly(1)),
    cmd("build", BUILD, Arity::Exactly(1)),
    cmd("system df", SYSTEM_DF, Arity::None),
    cmd("system info", FORMAT_ONLY, Arity::None),
    cmd("network ls", NETWORK_LS, Arity::None),
    cmd("volume ls", VOLUME_LS, Arity::None),
    cmd("compose ps", COMPOSE_PS, Arity::AtLeast(0)),
    cmd("compose up", COMPOSE_UP, Arity::AtLeast(0)),
    cmd("compose down", COMPOSE_DOWN, Arity::AtLeast(0)),
    cmd("compose restart", COMPOSE_RESTART, Arity::AtLeast(0)),
    cmd("compose logs", COMPOSE_LOGS, Arity::AtLeast(0)),
    cmd("compose pull", COMPOSE_PULL, Arity::AtLeast(0)),
    cmd("compose ls", COMPOSE_LS, Arity::None),
    cmd("compose version", COMPOSE_VERSION, Arity::None),
];

pub fn command(words: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.words == words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_table_defines_a_name_or_shorthand_twice() {
        let mut tables: Vec<(&str, &[Flag])> =
            COMMANDS.iter().map(|c| (c.words, c.flags)).collect();
        tables.push(("compose", COMPOSE_ROOT));
        for (name, flags) in tables {
            let mut longs = Vec::new();
            let mut shorts = Vec::new();
            for f in flags {
                for n in std::iter::once(&f.name).chain(f.aliases) {
                    assert!(!longs.contains(n), "{name}: --{n} twice");
                    longs.push(*n);
                }
                if let Some(s) = f.short {
                    assert!(!shorts.contains(&s), "{name}: -{} twice", s as char);
                    shorts.push(s);
                }
            }
        }
    }

    #[test]
    fn run_takes_h_as_hostname_and_the_others_as_help() {
        let run = command("run").unwrap().flag_set();
        assert_eq!(run.flags[run.short(b'h').unwrap()].name, "hostname");
        let ps = command("ps").unwrap().flag_set();
        assert_eq!(ps.flags[ps.short(b'h').unwrap()].name, "help");
    }
}
