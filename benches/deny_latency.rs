//! Deny latency with a blackholed webhook versus no webhook, measured side by side.
//!
//! Each sample is one real `gateway run` process as sudo starts it: load the trusted policy,
//! decide, write the audit record, queue the alert, start the detached deliverer, explain, exit.
//! The configurations are interleaved in small blocks within one run, so drift in the machine's
//! load hits them alike. Two webhook states, each with both ways of starting delivery:
//!
//! - blackholed: the webhook is a local listener that accepts connections and never answers
//!   (the deliverer hangs on it; the request must not notice);
//! - no webhook: the webhooks file lists none;
//!
//! with `trigger = "spawn"` (a detached deliverer, what runs where systemd does not) and
//! `trigger = "systemd"` (the path unit's job: the request only writes its file), plus alerts
//! off (`[alerts] enabled = false`) for reference, and a spool whose `new/` is at its cap
//! (`spool_max_files`, no deliverer running): the request only counts its alert in the intake
//! ledger, the path a flood takes once the cap is reached.
//!
//! Needs root: it installs a scratch policy at /etc/gateway/gateway.toml (under the shared test
//! lock) and puts the previous one back. Run with `cargo bench`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");
const POLICY: &str = "/etc/gateway/gateway.toml";
const ROUNDS: usize = 150;
const PER_BLOCK: usize = 2;
const SETTLE: Duration = Duration::from_millis(15);

/// One configuration: how delivery is started, and what the webhook is.
#[derive(Clone, Copy)]
struct Config {
    label: &'static str,
    /// `None`: alerts off.
    trigger: Option<&'static str>,
    blackholed: bool,
    /// `spool_max_files`, and `new/` filled up to it before measuring.
    full_at: Option<u64>,
}

const CONFIGS: [Config; 6] = [
    Config {
        label: "detached deliverer, webhook blackholed",
        trigger: Some("spawn"),
        blackholed: true,
        full_at: None,
    },
    Config {
        label: "detached deliverer, no webhook",
        trigger: Some("spawn"),
        blackholed: false,
        full_at: None,
    },
    Config {
        label: "systemd path unit, webhook blackholed",
        trigger: Some("systemd"),
        blackholed: true,
        full_at: None,
    },
    Config {
        label: "systemd path unit, no webhook",
        trigger: Some("systemd"),
        blackholed: false,
        full_at: None,
    },
    Config {
        label: "alerts off (reference)",
        trigger: None,
        blackholed: false,
        full_at: None,
    },
    Config {
        label: "systemd path unit, new/ at its cap (counted)",
        trigger: Some("systemd"),
        blackholed: false,
        full_at: Some(100),
    },
];

struct Restore {
    before: Option<Vec<u8>>,
    made_dir: bool,
    scratch: PathBuf,
}

impl Drop for Restore {
    fn drop(&mut self) {
        match &self.before {
            Some(b) => {
                let _ = fs::write(POLICY, b);
            }
            None => {
                let _ = fs::remove_file(POLICY);
            }
        }
        if self.made_dir {
            let _ = fs::remove_dir("/etc/gateway");
        }
        for i in 0..CONFIGS.len() {
            stop_deliverer(&self.scratch.join(format!("spool-{i}")));
        }
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// The pid of the deliverer holding the spool's lock, if one does.
fn deliverer(spool: &Path) -> Option<i32> {
    let file = OpenOptions::new()
        .read(true)
        .open(spool.join("notify.lock"))
        .ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => None,
        Err(_) => fs::read_to_string(spool.join("notify.lock"))
            .ok()?
            .trim()
            .parse()
            .ok(),
    }
}

/// Ends the deliverer this run's requests started.
fn stop_deliverer(spool: &Path) {
    if let Some(pid) = deliverer(spool) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Each configuration has its own spool and webhooks file, so a deliverer stuck on the
/// blackhole never stands in for the no-webhook configuration's own deliverers.
fn policy_text(scratch: &Path, i: usize, c: &Config) -> String {
    format!(
        r#"[settings]
audit_log = "{dir}/audit.jsonl"
syslog = false

[alerts]
enabled = {enabled}
spool_dir = "{dir}/spool-{i}"
snapshot_dir = "{dir}/snapshots"
webhooks_file = "{dir}/webhooks-{i}.toml"
sudo_log = ""
trigger = "{trigger}"
spool_max_files = {cap}

[users.root]
rules = ["true-bare"]

[programs.true]
paths = ["/usr/bin/true", "/bin/true"]
dialect = "exact"

[rules.true-bare]
program = "true"
"#,
        dir = scratch.display(),
        enabled = c.trigger.is_some(),
        trigger = c.trigger.unwrap_or("spawn"),
        cap = c.full_at.unwrap_or(10_000),
    )
}

fn write_root_only(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn install(text: &str) {
    let tmp = Path::new("/etc/gateway/.gateway.toml.bench");
    fs::write(tmp, text).unwrap();
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(tmp, POLICY).unwrap();
}

/// One denied request, start to exit.
fn deny_once() -> Duration {
    let start = Instant::now();
    let status = Command::new(BIN)
        .args(["run", "whoami", "--bench"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(
        status.code(),
        Some(77),
        "the benchmark request must be denied"
    );
    took
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    let n = v.len();
    let mid = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    mid.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it too: only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("deny_latency: run with `cargo bench` to measure");
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the benchmark installs a policy: run it as root"
    );
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/gateway-tests.lock")
        .unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();

    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-deny-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).unwrap();
    fs::set_permissions(&scratch, fs::Permissions::from_mode(0o755)).unwrap();
    let made_dir = !Path::new("/etc/gateway").exists();
    fs::create_dir_all("/etc/gateway").unwrap();
    let _restore = Restore {
        before: fs::read(POLICY).ok(),
        made_dir,
        scratch: scratch.clone(),
    };

    // Accepts connections (the kernel completes the handshake) and never reads or answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blackhole.local_addr().unwrap().port();
    let blackholed = format!(
        "[[webhook]]\nname = \"blackhole\"\nkind = \"discord\"\nurl = \"http://127.0.0.1:{port}/api/webhooks/1/bench\"\n"
    );

    for (i, c) in CONFIGS.iter().enumerate() {
        let text = if c.blackholed {
            blackholed.as_str()
        } else {
            ""
        };
        write_root_only(&scratch.join(format!("webhooks-{i}.toml")), text);
    }
    // The capped spool's new/ is filled to its cap (no deliverer runs under the systemd
    // trigger), so every measured request of that configuration only counts its alert.
    for (i, c) in CONFIGS.iter().enumerate() {
        if let Some(n) = c.full_at {
            install(&policy_text(&scratch, i, c));
            for _ in 0..n {
                deny_once();
            }
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); CONFIGS.len()];
    let mut stuck = false;
    install(&policy_text(&scratch, 0, &CONFIGS[0]));
    for _ in 0..3 {
        deny_once(); // warm the page cache before measuring
    }
    let mut order: Vec<usize> = (0..CONFIGS.len()).collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..ROUNDS {
        // A new order each round (xorshift + Fisher-Yates): no configuration always follows the
        // same one and inherits its background work.
        for k in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(k, (seed % (k as u64 + 1)) as usize);
        }
        for &i in &order {
            let c = &CONFIGS[i];
            install(&policy_text(&scratch, i, c));
            for _ in 0..PER_BLOCK {
                samples[i].push(deny_once());
                // Denials one at a time, as a host sees them: what one request started has
                // finished before the next (in a burst, requests start no deliverer at all).
                sleep(SETTLE);
            }
            // The deliverer really is stuck on the blackhole while the blackholed blocks run.
            stuck |= c.blackholed
                && c.trigger == Some("spawn")
                && deliverer(&scratch.join(format!("spool-{i}"))).is_some();
        }
    }
    let m: Vec<f64> = samples.iter_mut().map(|v| median(v)).collect();
    let n = samples[0].len();
    println!(
        "deny latency of `gateway run` (decide -> audit -> queue alert -> trigger), {n} requests \
         per configuration, interleaved in blocks of {PER_BLOCK} in shuffled order, {} ms apart:",
        SETTLE.as_millis()
    );
    for (c, ms) in CONFIGS.iter().zip(&m) {
        println!("  {:<42} median {ms:7.3} ms", c.label);
    }
    println!(
        "  ratio blackholed / no webhook, detached deliverer: {:.3}",
        m[0] / m[1]
    );
    println!(
        "  ratio blackholed / no webhook, systemd path unit:  {:.3}",
        m[2] / m[3]
    );
    println!(
        "  ratio counted at the cap / written, systemd path unit: {:.3}",
        m[5] / m[3]
    );
    let capped = scratch.join("spool-5");
    let in_new = fs::read_dir(capped.join("new")).map_or(0, |d| d.count());
    let ledger = fs::read_to_string(capped.join("intake.json")).unwrap_or_default();
    let counted = serde_json::from_str::<serde_json::Value>(&ledger)
        .ok()
        .and_then(|l| l["unspooled"]["count"].as_u64())
        .unwrap_or(0);
    println!("  the capped spool: {in_new} files in new/, {counted} alerts counted in its ledger");
    assert_eq!(
        counted as usize,
        samples[5].len(),
        "every measured request of the capped spool was counted, not written"
    );
    println!(
        "  a deliverer was {}seen waiting on the blackhole",
        if stuck { "" } else { "NOT " }
    );
    sleep(Duration::from_millis(100));
    drop(blackhole);
}
