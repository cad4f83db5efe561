//! Shared by the install and deploy tests: the machine-wide test lock, a snapshot of every path
//! the tests change (restored byte for byte on drop, even after a failed assertion), throw-away
//! accounts and sshd instances on loopback.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gateway::install::tx::{read_entry, Entry};

#[path = "../common/mod.rs"]
mod common;
pub use common::{cmd, cmd_ok};
use common::{require_root, system_lock, SystemLock};

pub const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");
pub const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/install-policy.toml"
);

/// Everything these tests may change. Users' homes and mail spools are handled separately.
const GUARDED: &[&str] = &[
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh/sshd_config.d",
    "/etc/gateway",
    "/usr/local/bin/gateway",
    "/usr/local/lib/gateway",
    "/var/lib/gateway",
    "/var/cache/gateway",
    "/var/log/gateway-gwti",
];

/// Account databases are never written back wholesale: that would also undo whatever else
/// changed them meanwhile (a package adding a system group, another suite's user). The users
/// these tests create are removed with userdel, and then must be absent from these files.
const ACCOUNT_FILES: &[&str] = &["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];

/// A command's standard output; fails the test unless it succeeds.
pub fn ok(argv: &[&str]) -> String {
    String::from_utf8_lossy(&cmd_ok(argv).stdout).into_owned()
}

/// The gateway binary with arguments; prints its output for the test log.
pub fn gateway(args: &[&str]) -> Output {
    let o = Command::new(GATEWAY)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gateway");
    println!(
        "$ gateway {}\n{}{}(exit {:?})",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        o.status.code()
    );
    o
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every entry under `root` (the root included), by path.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let e = match read_entry(p) {
            Ok(e) => e,
            // Sockets and fifos: present, content not comparable.
            Err(_) => Entry::Link(PathBuf::from("<special>")),
        };
        let is_dir = matches!(e, Entry::Dir { .. });
        out.insert(p.to_path_buf(), e);
        if is_dir {
            let mut names: Vec<_> = fs::read_dir(p)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            names.sort();
            for n in names {
                walk(&n, out);
            }
        }
    }
    if fs::symlink_metadata(root).is_ok() {
        walk(root, &mut out);
    }
    out
}

fn remove_all(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

fn put_back(path: &Path, e: &Entry) {
    use std::os::unix::fs::chown;
    match e {
        Entry::Absent => {}
        Entry::Dir { mode, uid, gid } => {
            let _ = fs::create_dir(path);
            let _ = chown(path, Some(*uid), Some(*gid));
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(*mode));
        }
        Entry::File {
            bytes,
            mode,
            uid,
            gid,
        } => {
            let _ = fs::write(path, bytes);
            let _ = chown(path, Some(*uid), Some(*gid));
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(*mode));
        }
        Entry::Link(t) => {
            let _ = std::os::unix::fs::symlink(t, path);
        }
    }
}

/// Holds the machine-wide test lock and puts every guarded path back on drop.
pub struct Host {
    _lock: SystemLock,
    saved: Vec<(PathBuf, BTreeMap<PathBuf, Entry>)>,
    users: Vec<String>,
    children: Vec<Child>,
}

impl Host {
    pub fn new() -> Host {
        require_root();
        for tool in [
            "/usr/sbin/visudo",
            "/usr/sbin/sshd",
            "/usr/bin/ssh",
            "/usr/sbin/useradd",
        ] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: install sudo, openssh-server, openssh-client, passwd"
            );
        }
        let lock = system_lock();
        let _ = fs::create_dir_all("/run/sshd");
        let saved = GUARDED
            .iter()
            .map(|p| (PathBuf::from(p), tree(Path::new(p))))
            .collect();
        Host {
            _lock: lock,
            saved,
            users: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn user(&mut self, name: &str) {
        assert!(
            name.starts_with("gwti") || name == "vastai_kaalia" || name == "ai-worker",
            "test users are gwti*, or the two real names under the lock"
        );
        let _ = cmd(&["/usr/sbin/userdel", "-r", name]);
        ok(&["/usr/sbin/useradd", "-m", "-s", "/bin/bash", name]);
        self.users.push(name.to_string());
    }

    pub fn child(&mut self, c: Child) {
        self.children.push(c);
    }

    /// Appends a line to a sudoers file (created 0440 if missing).
    pub fn sudoers_line(&self, path: &str, line: &str) {
        let mut t = fs::read_to_string(path).unwrap_or_default();
        t.push_str(line);
        t.push('\n');
        fs::write(path, t).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o440)).unwrap();
        ok(&["/usr/sbin/visudo", "-c", "-q"]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // This process's scratch directories (keys, configs, policies).
        let suffix = format!("-{}", std::process::id());
        for e in fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("gwti-") && name.ends_with(&suffix) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        for u in &self.users {
            let _ = cmd(&["/usr/bin/pkill", "-KILL", "-u", u]);
            let _ = cmd(&["/usr/sbin/userdel", "-r", "-f", u]);
            let _ = fs::remove_dir_all(format!("/home/{u}"));
            let _ = fs::remove_file(format!("/var/mail/{u}"));
        }
        for file in ACCOUNT_FILES {
            let text = fs::read_to_string(file).unwrap_or_default();
            for u in &self.users {
                let named = text.lines().any(|l| {
                    let mut fields = l.split(':');
                    let first = fields.next() == Some(u.as_str());
                    let member = l
                        .rsplit(':')
                        .next()
                        .is_some_and(|m| m.split(',').any(|x| x == u));
                    first || (file.contains("group") && member)
                });
                if named && !std::thread::panicking() {
                    panic!("test user {u} is still in {file}");
                }
            }
        }
        for (root, entries) in &self.saved {
            remove_all(root);
            for (p, e) in entries {
                put_back(p, e);
            }
        }
        let after: Vec<_> = GUARDED.iter().map(|p| tree(Path::new(p))).collect();
        for ((root, before), after) in self.saved.iter().zip(after) {
            if *before != after && !std::thread::panicking() {
                panic!("{} was not restored", root.display());
            }
        }
    }
}

/// An ed25519 key pair in `dir`; returns the private key's path.
pub fn keypair(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(key.with_extension("pub"));
    ok(&[
        "/usr/bin/ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        name,
        "-f",
        key.to_str().unwrap(),
    ]);
    key
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gwti-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Starts sshd in the foreground (`-D`) with extra `-o` options; waits until it listens.
pub fn sshd(config: &str, port: u16, options: &[String]) -> Child {
    let mut c = Command::new("/usr/sbin/sshd");
    c.args(["-D", "-e", "-f", config]);
    c.args([
        "-o",
        &format!("Port={port}"),
        "-o",
        "ListenAddress=127.0.0.1",
    ]);
    for o in options {
        c.args(["-o", o]);
    }
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sshd on port {port} did not start");
}
