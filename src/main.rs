#![forbid(unsafe_code)]

mod cli;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use gateway::alert::{notify, trigger};
use gateway::{check, pipeline, watch};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("gateway");
    // A shim link named after a program: the whole argv is the request.
    if invoked != "gateway" {
        let mut request = args.clone();
        request[0] = OsString::from(invoked);
        return ExitCode::from(pipeline::run(request));
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some("run") => {
            let mut rest = args[2..].to_vec();
            if rest.first().is_some_and(|a| a == "--") {
                rest.remove(0);
            }
            if rest.is_empty() {
                eprintln!("gateway: usage: gateway run [--] PROGRAM ARGS...");
                return ExitCode::from(pipeline::EXIT_USAGE);
            }
            return ExitCode::from(pipeline::run(rest));
        }
        Some("ssh") => {
            if args.len() > 2 {
                eprintln!(
                    "gateway: usage: gateway ssh (the command comes from SSH_ORIGINAL_COMMAND)"
                );
                return ExitCode::from(pipeline::EXIT_USAGE);
            }
            return ExitCode::from(pipeline::ssh());
        }
        _ => {}
    }
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                pipeline::EXIT_USAGE
            } else {
                0
            });
        }
    };
    let code = match cli.command {
        cli::Command::Run { .. } | cli::Command::Ssh => pipeline::EXIT_USAGE,
        cli::Command::Check(c) => check::run(check::Options {
            config: c.config,
            user: c.user,
            ssh: c.ssh,
            argv: c.argv,
            batch: c.batch,
            json: c.json,
        }),
        cli::Command::Notify(n) if n.detach => trigger::detach(&n.config),
        cli::Command::Notify(n) => notify::run(&notify::Options {
            config: n.config,
            once: n.once,
            new_session: n.new_session,
        }),
        cli::Command::Watch(w) => watch::run(&watch::Options { config: w.config }),
        cli::Command::Alert {
            command: cli::AlertCommand::Test(t),
        } => notify::test(&t.config),
    };
    ExitCode::from(code)
}
