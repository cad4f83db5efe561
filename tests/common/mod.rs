//! Shared end-to-end harness: real users, the real installed binary, real sudo, a real sshd on
//! loopback. Everything it changes is restored on drop, and everything that touches shared
//! system state runs under one lock file, so suites from different files never interleave.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const GATEWAY: &str = "/usr/local/bin/gateway";
pub const POLICY: &str = "/etc/gateway/gateway.toml";
pub const SUDOERS: &str = "/etc/sudoers.d/gateway";
pub const SHIMS: &str = "/usr/local/lib/gateway/shims";
pub const CACHE: &str = "/var/cache/gateway/policy.json";
pub const LOCK: &str = "/run/gateway-tests.lock";

/// Fails the test, loudly, unless it runs as root: these tests exist to use the real system.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this end-to-end test needs root (CI runs it as root through .ci/run)"
    );
}

/// Holds the exclusive lock shared by every suite that changes system state.
pub struct SystemLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

pub fn system_lock() -> SystemLock {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(LOCK)
        .expect("open the shared test lock");
    let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("take the shared test lock");
    SystemLock(lock)
}

/// Runs a command from an argv (never a shell string) and returns its output.
pub fn cmd(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Like `cmd`, and fails the test unless the command succeeds.
pub fn cmd_ok(argv: &[&str]) -> Output {
    let out = cmd(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("gwtest-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A file's bytes, mode and owner (or its absence), put back on drop.
pub struct Restore {
    path: PathBuf,
    saved: Option<(Vec<u8>, u32, u32, u32)>,
}

impl Restore {
    pub fn save(path: &str) -> Restore {
        let p = PathBuf::from(path);
        let saved = fs::symlink_metadata(&p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (fs::read(&p).unwrap(), m.mode(), m.uid(), m.gid()));
        Restore { path: p, saved }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        match &self.saved {
            Some((bytes, mode, uid, gid)) => {
                let _ = fs::write(&self.path, bytes);
                let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(*mode));
                let _ = std::os::unix::fs::chown(&self.path, Some(*uid), Some(*gid));
            }
            None => {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Writes a root-owned file atomically with the given mode.
pub fn install_file(path: &str, bytes: &[u8], mode: u32) {
    let p = Path::new(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let tmp = p.with_extension("gwtest-tmp");
    fs::write(&tmp, bytes).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(&tmp, Some(0), Some(0)).unwrap();
    fs::rename(&tmp, p).unwrap();
}

/// The gateway installed by hand from contrib/, exactly as the README tells an administrator:
/// binary, policy, sudoers drop-in, shim links. Undone on drop.
pub struct Installation {
    _restores: Vec<Restore>,
    shims: Vec<PathBuf>,
    pub audit_log: PathBuf,
}

/// The sudoers drop-in from contrib/, for these users.
pub fn render_sudoers(users: &[&str]) -> String {
    let template = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/sudoers.d/gateway"
    ))
    .unwrap();
    template.replace("@USERS@", &users.join(", "))
}

impl Installation {
    /// Installs the binary this test build produced.
    pub fn new(policy_text: &str, users: &[&str]) -> Installation {
        Installation::with_binary(policy_text, users, Path::new(env!("CARGO_BIN_EXE_gateway")))
    }

    /// Installs the given gateway binary.
    pub fn with_binary(policy_text: &str, users: &[&str], binary: &Path) -> Installation {
        let restores = vec![
            Restore::save(GATEWAY),
            Restore::save(POLICY),
            Restore::save(SUDOERS),
            Restore::save(CACHE),
        ];
        let binary = fs::read(binary).unwrap();
        install_file(GATEWAY, &binary, 0o755);
        install_file(POLICY, policy_text.as_bytes(), 0o644);
        let _ = fs::remove_file(CACHE);

        let sudoers = render_sudoers(users);
        let tmp = "/etc/gwtest-sudoers.check";
        fs::write(tmp, &sudoers).unwrap();
        let checked = cmd(&["visudo", "-cf", tmp]);
        let _ = fs::remove_file(tmp);
        assert!(
            checked.status.success(),
            "contrib sudoers drop-in fails visudo: {checked:?}"
        );
        install_file(SUDOERS, sudoers.as_bytes(), 0o440);

        let policy = gateway::policy::Policy::parse("test policy", policy_text)
            .unwrap_or_else(|e| panic!("test policy invalid: {}", e[0]));
        fs::create_dir_all(SHIMS).unwrap();
        let mut shims = Vec::new();
        for name in policy.programs.keys() {
            let link = Path::new(SHIMS).join(name);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(GATEWAY, &link).unwrap();
            shims.push(link);
        }
        Installation {
            _restores: restores,
            shims,
            audit_log: policy.settings.audit_log.clone(),
        }
    }

    /// Audit records appended since `from` records were present.
    pub fn audit_since(&self, from: usize) -> Vec<serde_json::Value> {
        self.audit_all().into_iter().skip(from).collect()
    }

    pub fn audit_all(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
            .collect()
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        for s in &self.shims {
            let _ = fs::remove_file(s);
        }
        let _ = fs::remove_dir(SHIMS);
    }
}

/// A local account, removed (with its home) on drop.
pub struct TestUser {
    pub name: String,
}

impl TestUser {
    pub fn create(name: &str) -> TestUser {
        let _ = cmd(&["pkill", "-KILL", "-u", name]);
        let _ = cmd(&["userdel", "-r", "-f", name]);
        cmd_ok(&["useradd", "-m", "-s", "/bin/bash", name]);
        // '*' rather than the locked '!': sshd refuses key logins to locked accounts.
        cmd_ok(&["usermod", "-p", "*", name]);
        TestUser {
            name: name.to_string(),
        }
    }

    pub fn home(&self) -> PathBuf {
        PathBuf::from("/home").join(&self.name)
    }

    /// Runs `sudo -n ARGV...` as this user, the way the managed account calls it.
    pub fn sudo(&self, argv: &[&str]) -> Output {
        let mut full = vec!["runuser", "-u", &self.name, "--", "sudo", "-n"];
        full.extend_from_slice(argv);
        cmd(&full)
    }

    /// Runs ARGV as this user without sudo.
    pub fn run(&self, argv: &[&str]) -> Output {
        let mut full = vec!["runuser", "-u", &self.name, "--"];
        full.extend_from_slice(argv);
        cmd(&full)
    }

    /// Installs `line` as the user's only authorized key (root-owned, as install does).
    pub fn authorize(&self, line: &str) {
        let ssh = self.home().join(".ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&ssh, Some(0), Some(0)).unwrap();
        let keys = ssh.join("authorized_keys");
        fs::write(&keys, format!("{line}\n")).unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&keys, Some(0), Some(0)).unwrap();
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = cmd(&["pkill", "-KILL", "-u", &self.name]);
        let _ = cmd(&["userdel", "-r", "-f", &self.name]);
    }
}

/// An ed25519 key pair for the SSH client.
pub struct ClientKey {
    pub private: PathBuf,
    pub public: String,
}

impl ClientKey {
    pub fn generate(dir: &Path) -> ClientKey {
        let private = dir.join("id_ed25519");
        let p = private.to_str().unwrap();
        cmd_ok(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "gwtest",
            "-f",
            p,
        ]);
        let public = fs::read_to_string(format!("{p}.pub"))
            .unwrap()
            .trim()
            .to_string();
        ClientKey { private, public }
    }
}

/// A real sshd listening on 127.0.0.1:port, stopped on drop.
pub struct Sshd {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Sshd {
    pub fn start(port: u16) -> Sshd {
        let dir = TempDir::new(&format!("sshd{port}"));
        let key = dir.path().join("host_ed25519");
        let k = key.to_str().unwrap();
        cmd_ok(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k]);
        fs::create_dir_all("/run/sshd").unwrap();
        let config = dir.path().join("sshd_config");
        let mut f = File::create(&config).unwrap();
        write!(
            f,
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {k}\nPidFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             UsePAM yes\nStrictModes yes\nLogLevel VERBOSE\n",
            dir.path().join("sshd.pid").display()
        )
        .unwrap();
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd (is openssh-server installed?)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on port {port}"
            );
            sleep(Duration::from_millis(50));
        }
        Sshd {
            port,
            child: sshd,
            _dir: dir,
        }
    }

    /// `ssh user@127.0.0.1 COMMAND` with the given key; `None` sends no command.
    pub fn ssh(&self, key: &ClientKey, user: &str, command: Option<&str>) -> Output {
        let port = self.port.to_string();
        let mut argv = vec![
            "ssh",
            "-T",
            "-p",
            &port,
            "-i",
            key.private.to_str().unwrap(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-l",
            user,
            "127.0.0.1",
        ];
        if let Some(c) = command {
            argv.push("--");
            argv.push(c);
        }
        cmd(&argv)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes sure a syslog daemon listens on /dev/log (starts Debian's rsyslogd if none does).
///
/// A socket file is not proof of a listener: one left by a syslog daemon that has since died
/// refuses every connection, and datagrams sent to it are lost. So this connects, and if
/// nobody answers it removes the dead socket and starts rsyslogd.
pub fn ensure_syslog() {
    if syslog_listens() {
        return;
    }
    let _ = fs::remove_file("/dev/log");
    let started = cmd(&["rsyslogd"]);
    assert!(
        started.status.success(),
        "no syslog on /dev/log and rsyslogd cannot start (apt-get install rsyslog): {started:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !syslog_listens() {
        assert!(
            Instant::now() < deadline,
            "rsyslogd started but nothing accepts datagrams on /dev/log"
        );
        sleep(Duration::from_millis(50));
    }
}

fn syslog_listens() -> bool {
    std::os::unix::net::UnixDatagram::unbound().is_ok_and(|s| s.connect("/dev/log").is_ok())
}

/// Waits until `path` contains `needle` (syslog writes asynchronously).
pub fn wait_for_text(path: &str, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_millis(100));
    }
}

/// The benchmarks' policy: the shipped one, with its own audit log, plus a rule that lets root
/// and `gwtafter` run /usr/bin/true.
pub fn bench_policy() -> String {
    const BENCH_RULES: &str = r#"
[users.root]
rules = ["bench-true"]

[users.gwtafter]
rules = ["bench-true"]

[programs.true]
paths = ["/usr/bin/true"]
dialect = "exact"

[rules.bench-true]
program = "true"
"#;
    let shipped = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    shipped.replacen(
        "audit_log = \"/var/log/gateway/audit.jsonl\"",
        "audit_log = \"/var/log/gateway-bench/audit.jsonl\"",
        1,
    ) + BENCH_RULES
}

/// Builds the static release binary the README installs (in its own target directory: the
/// one `cargo bench` uses stays locked while a benchmark runs).
pub fn static_release_binary() -> PathBuf {
    let target = "x86_64-unknown-linux-musl";
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-static"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", target, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(&dir)
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cannot build the static release binary (rustup target add {target})"
    );
    dir.join(target).join("release/gateway")
}
