//! Starting delivery without waiting for it.
//!
//! Under systemd, the `gateway-notify.path` unit watches the spool's `new/` directory, so a
//! request only writes its file. While a deliverer holds the spool's lock, nothing is started
//! either: it takes the new alert itself. Otherwise a double fork: the request starts a
//! short-lived intermediate (`gateway notify --detach`) in a process group of its own, so a
//! hang-up of sudo's terminal cannot reach it, and does not wait for it (it exits right after,
//! and init reaps the intermediate), unless it is about to run the program (audit mode), which
//! must not inherit a child: then it reaps it. The intermediate starts the deliverer
//! (`gateway notify --new-session`, stdio on /dev/null, clean environment, no inherited
//! descriptors), which calls `setsid` first, and exits.
#![forbid(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::spool::Spool;
use crate::policy::alerts::Trigger;
use crate::policy::AlertSettings;
use crate::system;

/// Present when systemd runs this host (sd_booted).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";
/// Present when the path unit is enabled (`systemctl enable gateway-notify.path`).
const PATH_UNIT_ENABLED: &str = "/etc/systemd/system/paths.target.wants/gateway-notify.path";
/// The deliverer's PATH; it runs no program, but a clean environment needs one.
const SAFE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The argv[0] under which main() dispatches the gateway's own subcommands.
const GATEWAY_NAME: &str = "gateway";

/// Whether the systemd path unit will notice the spool without help.
pub fn systemd_delivers(settings: &AlertSettings) -> bool {
    match settings.trigger {
        Trigger::Systemd => true,
        Trigger::Spawn => false,
        Trigger::Auto => {
            Path::new(SYSTEMD_RUNNING).is_dir() && Path::new(PATH_UNIT_ENABLED).exists()
        }
    }
}

/// Makes sure a deliverer will look at the spool soon. `reap`: wait for the intermediate (the
/// caller goes on to run a program rather than exit). A failure goes to syslog; the alert is
/// on disk already, and the next trigger or the timer delivers it.
pub fn start(settings: &AlertSettings, config: &Path, reap: bool) {
    if systemd_delivers(settings) {
        return;
    }
    // A running deliverer looks at new/ again after it lets go of its lock, so it takes this
    // alert; during a burst, requests start nothing.
    if Spool::new(&settings.spool_dir).deliverer_running() {
        return;
    }
    if let Err(e) = spawn_detached(config, reap) {
        let _ = crate::audit::syslog(
            super::SYSLOG_WARNING,
            std::time::SystemTime::now(),
            &format!("cannot start gateway notify: {e}"),
        );
    }
}

/// `gateway notify EXTRA --config CONFIG`, as this very binary. argv[0] is "gateway" whatever
/// the file is called: under any other name (a shim installed as a hard link, a renamed copy)
/// main() would take the whole argv as a request, deny it, queue an alert and trigger again,
/// a chain of self-denials that never ends while no deliverer holds the lock.
fn notify_command(extra: &[&str], config: &Path) -> io::Result<Command> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg0(GATEWAY_NAME)
        .arg("notify")
        .args(extra)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .env("PATH", SAFE_PATH)
        .current_dir("/");
    Ok(cmd)
}

/// The first fork: the intermediate, in a process group of its own.
fn spawn_detached(config: &Path, reap: bool) -> io::Result<()> {
    // Descriptors sudo or sshd left open must not stay open in a long-lived deliverer.
    system::cloexec_from(3)?;
    let mut child = notify_command(&["--detach"], config)?
        .process_group(0)
        .spawn()?;
    if reap {
        let status = child.wait()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "the intermediate exited with {status}"
            )));
        }
    }
    Ok(())
}

/// The intermediate (`gateway notify --detach`): starts the deliverer and exits without
/// waiting, so the deliverer is re-parented to init.
pub fn detach(config: &Path) -> u8 {
    if system::cloexec_from(3).is_err() {
        return 1;
    }
    match notify_command(&["--new-session"], config).and_then(|mut c| c.spawn()) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}
