//! What to tell a caller whose docker command no rule offers: which command it was, why such
//! commands are not offered, and what to use instead. These messages are explanations only; what
//! is allowed is decided by the rules alone.
#![forbid(unsafe_code)]

/// The management commands whose second word is part of the command's name.
const MANAGEMENT: &[&str] = &[
    "builder",
    "buildx",
    "checkpoint",
    "compose",
    "config",
    "container",
    "context",
    "image",
    "manifest",
    "network",
    "node",
    "plugin",
    "secret",
    "service",
    "stack",
    "swarm",
    "system",
    "trust",
    "volume",
];

/// `docker container X` and `docker image X` spellings of the short commands.
const SHORT_FORMS: &[(&str, &str)] = &[
    ("container ls", "ps"),
    ("container list", "ps"),
    ("container ps", "ps"),
    ("container logs", "logs"),
    ("container inspect", "inspect"),
    ("container stats", "stats"),
    ("container start", "start"),
    ("container stop", "stop"),
    ("container restart", "restart"),
    ("container wait", "wait"),
    ("container rm", "rm"),
    ("container remove", "rm"),
    ("container run", "run"),
    ("image ls", "images"),
    ("image list", "images"),
    ("image rm", "rmi"),
    ("image remove", "rmi"),
    ("image pull", "pull"),
    ("image build", "build"),
    ("image inspect", "inspect"),
    ("network list", "network ls"),
    ("volume list", "volume ls"),
];

/// Why a family of commands is not offered, and what to do instead.
fn advice(command: &str) -> &'static str {
    let first = command.split(' ').next().unwrap_or("");
    match (command, first) {
        (_, "exec") | (_, "attach") => {
            "it runs a process inside a running container, which the gateway cannot judge; talk to \
             the service through its published 127.0.0.1 port instead (for ollama: the HTTP API at \
             http://127.0.0.1:11434/api), or start a new container with docker run"
        }
        (_, "cp") => {
            "it copies files between the host and a container as root; share data through a named \
             volume (docker run -v VOLUME:/path)"
        }
        (_, "commit" | "diff" | "export" | "import" | "load" | "save" | "push" | "tag") => {
            "images change only through docker build -t local/NAME:TAG DIR and docker pull"
        }
        (_, "create") => "use docker run -d: the same flags are checked",
        (_, "kill" | "pause" | "unpause" | "update" | "rename" | "top" | "port" | "events") => {
            "it is not part of this host's policy; docker stop / restart manage containers"
        }
        ("system dial-stdio", _) => {
            "it hands over the raw engine API, which is root on the host; never offered"
        }
        ("system prune", _) | ("container prune", _) | ("image prune", _) | ("volume prune", _)
        | ("network prune", _) => "it deletes data in bulk; remove one container or image by name",
        (_, "network" | "volume") => {
            "networks and volumes are not created or removed through the gateway; docker run -v \
             VOLUME:/path creates a named volume when it is first used"
        }
        (_, "plugin" | "buildx" | "builder" | "context" | "swarm" | "service" | "node" | "secret"
        | "config" | "stack" | "trust" | "manifest" | "checkpoint") => {
            "it changes the engine, where docker connects, or which code docker runs; never offered"
        }
        (_, "help" | "completion" | "__complete" | "__completeNoDesc") => {
            "docker's help and completion commands are not offered; the list below is what you may run"
        }
        _ => "",
    }
}

/// The docker command a refused argv names, in words (`exec`, `system prune`, `compose exec`).
pub fn command_words(args: &[String]) -> String {
    let mut words = vec![args[0].as_str()];
    if MANAGEMENT.contains(&args[0].as_str()) {
        if args[0] == "compose" {
            // compose's project flags come before its subcommand.
            if let Some(sub) = compose_subcommand(&args[1..]) {
                words.push(sub);
            }
        } else if let Some(sub) = args.get(1).filter(|s| !s.starts_with('-')) {
            words.push(sub);
        }
    }
    words.join(" ")
}

fn compose_subcommand(args: &[String]) -> Option<&str> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if !a.starts_with('-') || a == "-" {
            return Some(a);
        }
        // Value flags of the compose root written with a separate value.
        let takes_next = matches!(
            a,
            "-f" | "--file"
                | "-p"
                | "--project-name"
                | "--profile"
                | "--env-file"
                | "--project-directory"
                | "--workdir"
                | "--progress"
                | "--ansi"
                | "--parallel"
        );
        i += if takes_next { 2 } else { 1 };
    }
    None
}

/// The message and hint for a docker command no rule of this user offers.
pub fn command_refused(args: &[String]) -> (String, String) {
    let words = command_words(args);
    if let Some((_, short)) = SHORT_FORMS.iter().find(|(long, _)| *long == words) {
        return (
            format!("docker {words} is a management-command alias, which is not accepted"),
            format!("write docker {short} ... instead"),
        );
    }
    let why = advice(&words);
    let message = format!("docker {words} is not allowed");
    let hint = if why.is_empty() {
        "only the docker commands listed below are offered; unknown commands would run CLI plugins"
            .to_string()
    } else {
        format!("docker {words}: {why}")
    };
    (message, hint)
}

/// The message and hint for an option before the docker command.
pub fn global_option_refused(word: &str) -> (String, String) {
    (
        format!("docker global option {word} is not allowed"),
        "options before the command (-H, --host, --config, --context, -c, --tls*, -D, -l) choose \
         the engine, the config directory (whose plugins run as root) or the logging; the \
         gateway fixes them. Write docker COMMAND ..."
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn refused_commands_are_named_with_their_management_word() {
        let rows = [
            ("exec ollama sh", "exec", "HTTP API"),
            ("cp a:/etc/shadow /tmp", "cp", "named volume"),
            ("system dial-stdio", "system dial-stdio", "raw engine API"),
            ("system prune -af", "system prune", "in bulk"),
            ("container ls -a", "container ls", "docker ps"),
            ("image rm x", "image rm", "docker rmi"),
            (
                "compose -f /x/compose.yaml exec web sh",
                "compose exec",
                "only the docker commands",
            ),
            (
                "buildx build -o type=local,dest=/ .",
                "buildx build",
                "never offered",
            ),
            ("plugin install x", "plugin install", "never offered"),
            ("__complete run", "__complete", "help and completion"),
            ("frobnicate", "frobnicate", "CLI plugins"),
        ];
        for (argv, words, hint_part) in rows {
            let args = w(argv);
            assert_eq!(command_words(&args), words, "{argv}");
            let (msg, hint) = command_refused(&args);
            assert!(msg.contains(words), "{argv}: {msg}");
            assert!(
                hint.contains(hint_part) || msg.contains(hint_part),
                "{argv}: {hint}"
            );
        }
    }
}
