#![forbid(unsafe_code)]

mod cli;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use gateway::alert::{notify, trigger};
use gateway::install::{self, deploy, features::Feature};
/// musl's allocator maps memory per size class (40 mmap calls for one request); dlmalloc
/// grows in large segments, which halves a request's own cost in the static build.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

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
        cli::Command::Install(a) => install_command(a),
        cli::Command::Uninstall(a) => install::uninstall(install::UninstallOptions {
            dry_run: a.dry_run,
            restore_permissive: a.restore_permissive,
            purge: a.purge,
        }),
        cli::Command::Deploy(a) => deploy_command(a),
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

fn chosen(f: &cli::FeatureArgs) -> Vec<Feature> {
    if f.all {
        return Feature::ALL.to_vec();
    }
    let flags = [
        (f.sudo_restrictions, Feature::SudoRestrictions),
        (f.alerts, Feature::Alerts),
        (f.crontab_watch, Feature::CrontabWatch),
        (f.core_limits, Feature::CoreLimits),
    ];
    flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| *f)
        .collect()
}

fn install_command(a: cli::InstallArgs) -> u8 {
    let mut ssh_keys = Vec::new();
    for k in &a.ssh_key {
        let Some((user, file)) = k.split_once('=') else {
            eprintln!("gateway: --ssh-key takes USER=FILE, got {k:?}");
            return pipeline::EXIT_USAGE;
        };
        ssh_keys.push((user.to_string(), file.into()));
    }
    install::install(install::InstallOptions {
        dry_run: a.dry_run,
        update: a.update,
        features: chosen(&a.features),
        policy: a.policy,
        binary: a.binary,
        ssh_users: a.ssh_user,
        ssh_keys,
        webhook: a.webhook,
        webhook_file: a.webhook_file,
        set_login_shell: a.set_login_shell,
        yes: a.yes,
    })
}

fn deploy_command(a: cli::DeployArgs) -> u8 {
    let features = chosen(&a.features);
    let action = match (a.update, a.uninstall) {
        (true, _) => deploy::Action::Update,
        (_, true) => deploy::Action::Uninstall,
        _ => deploy::Action::Install,
    };
    if action == deploy::Action::Install && features.is_empty() {
        eprintln!("gateway: deploy needs --all or feature flags (hosts are not asked questions)");
        return pipeline::EXIT_USAGE;
    }
    let opts = deploy::DeployOptions {
        servers: a.servers,
        action,
        dry_run: a.dry_run,
        restore_permissive: a.restore_permissive,
        features,
        policy: a.policy,
        binary: a.binary,
        webhook_file: a.webhook_file,
        ssh_users: a.ssh_user,
        set_login_shell: a.set_login_shell,
        ssh_config: a.ssh_config,
        sudo: a.sudo,
        parallel: a.parallel,
    };
    match deploy::deploy(&opts) {
        Err(e) => {
            eprintln!("gateway: {e}");
            pipeline::EXIT_USAGE
        }
        Ok(outcomes) => {
            for o in &outcomes {
                for line in o.output.lines() {
                    println!("[{}] {line}", o.host);
                }
            }
            print!("{}", deploy::table(&outcomes));
            if outcomes
                .iter()
                .any(|o| matches!(o.status, deploy::Status::Failed(_)))
            {
                1
            } else if outcomes
                .iter()
                .any(|o| o.status == deploy::Status::Defeated)
            {
                2
            } else {
                0
            }
        }
    }
}
