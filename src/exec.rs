//! The only module that starts a program: the plan's path and argv, a cleared environment, `/` as
//! working directory, umask 022, core dumps off, no inherited descriptors above 2, no controlling
//! terminal.
//!
//! The plan's binary was checked (every directory, link and file root's alone) by the decision
//! in this same process a moment before; a check repeated here would close no window, since
//! only root can change a path that passed it.
//!
//! Without a time limit the gateway replaces itself with the program (`execve`), as sudo and doas
//! do. With one, it stays as a small supervisor that forwards signals and stops the program when
//! the time is up.
#![forbid(unsafe_code)]

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus};

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{alarm, setsid, Pid};

use crate::decision::ExecPlan;
use crate::system;

/// Exit status when the time limit stopped the program (as coreutils `timeout`).
pub const EXIT_TIMED_OUT: u8 = 124;
/// Exit status when the program could not be started.
pub const EXIT_CANNOT_EXEC: u8 = 126;
const GRACE_SECONDS: u32 = 5;

fn command(plan: &ExecPlan) -> Command {
    let mut cmd = Command::new(&plan.path);
    cmd.arg0(&plan.argv[0])
        .args(&plan.argv[1..])
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/");
    cmd
}

/// Process-wide settings every child inherits.
fn harden() -> io::Result<()> {
    umask(Mode::from_bits_truncate(0o022));
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(io::Error::from)?;
    // Nothing sudo or sshd left open reaches the program.
    system::cloexec_from(3)?;
    // The program gets no controlling terminal: if the gateway has one, a new session leaves
    // it (under sudo without a pty the gateway is not a group leader; under sudo's pty it is,
    // and the terminal is sudo's own). Without one there is nothing to leave, and setsid is
    // skipped: with autogroup scheduling it builds a scheduler group, tens of µs per request.
    if system::has_controlling_terminal() {
        let _ = setsid();
    }
    Ok(())
}

/// Starts the plan. Returns the exit status to report; without a time limit it returns only if
/// the program could not be started.
pub fn run(plan: &ExecPlan) -> u8 {
    if let Err(e) = harden() {
        eprintln!("gateway: cannot prepare the process: {e}");
        return EXIT_CANNOT_EXEC;
    }
    match plan.time_limit {
        None => {
            let err = command(plan).exec();
            eprintln!("gateway: cannot run {}: {err}", plan.path.display());
            EXIT_CANNOT_EXEC
        }
        Some(limit) => match supervise(plan, limit) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gateway: cannot run {}: {e}", plan.path.display());
                EXIT_CANNOT_EXEC
            }
        },
    }
}

fn status_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + (s & 0x7f)).unwrap_or(255),
        _ => 1,
    }
}

/// Runs the program as a child, forwarding termination signals, and stops it (TERM, then KILL
/// after a grace period) when `limit` seconds have passed.
fn supervise(plan: &ExecPlan, limit: u64) -> io::Result<u8> {
    let mut waited_for = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGALRM,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        waited_for.add(s);
    }
    waited_for.thread_block().map_err(io::Error::from)?;
    // std resets the signal mask in the child before exec.
    let mut child = command(plan).spawn()?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    alarm::set(u32::try_from(limit).unwrap_or(u32::MAX));
    let mut stopping = false;
    loop {
        if let Some(status) = child.try_wait()? {
            alarm::cancel();
            return Ok(if stopping {
                EXIT_TIMED_OUT
            } else {
                status_code(status)
            });
        }
        match waited_for.wait().map_err(io::Error::from)? {
            Signal::SIGCHLD => {}
            Signal::SIGALRM if !stopping => {
                eprintln!(
                    "gateway: {} reached its time limit of {limit} s; stopping it",
                    Path::new(&plan.argv[0]).display()
                );
                stopping = true;
                let _ = kill(pid, Signal::SIGTERM);
                alarm::set(GRACE_SECONDS);
            }
            Signal::SIGALRM => {
                let _ = kill(pid, Signal::SIGKILL);
            }
            other => {
                let _ = kill(pid, other);
            }
        }
    }
}
