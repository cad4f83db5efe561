//! Shared by the alert test binaries: a real HTTP/1.1 server on 127.0.0.1 that plays Discord
//! (and Slack, and a JSON endpoint), scratch policies, and the guards that restore system state.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_gateway");
/// Part of every test webhook URL; it must never appear in any output or spool file.
pub const SECRET: &str = "gwtaSECRETtoken9f3c";
/// The test receivers' ports (other engineers' tests use other ranges).
pub const PORTS: std::ops::Range<u16> = 18000..19000;

/// One request the receiver took.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub at: Instant,
    /// When the receiver finished answering it.
    pub answered: Instant,
    pub path: String,
    pub status: u16,
    pub body: Value,
}

/// How the receiver answers the next request (then 204 once the script is used up).
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// 429 with an optional Retry-After header and an optional JSON body.
    TooMany {
        header: Option<String>,
        body: Option<String>,
    },
}

pub struct Receiver {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A port in the test range that nothing listens on right now, and that no other test of this
/// process was given (tests run in parallel; one may keep a port closed on purpose).
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORTS.end - PORTS.start);
    let base = std::process::id() % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = PORTS.start + ((base + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in {PORTS:?}");
}

impl Receiver {
    /// Listens on 127.0.0.1 (port 0: any free port), plain HTTP.
    pub fn start(port: u16) -> Receiver {
        Receiver::listen(port, None)
    }

    /// Listens on 127.0.0.1, HTTPS with the given server configuration.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::listen(0, Some(tls))
    }

    fn listen(port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test receiver");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, st) = (hits.clone(), script.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        match &tls {
                            None => serve(stream, &h, &s),
                            Some(config) => {
                                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                                serve(rustls::StreamOwned::new(conn, stream), &h, &s)
                            }
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Receiver {
            port,
            hits,
            script,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn script(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the requests received so far (or panics after `secs`).
    pub fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            if Instant::now() > end {
                panic!("after {secs} s, still waiting for {what}; received: {hits:#?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve<S: Read + Write>(mut stream: S, hits: &Mutex<Vec<Hit>>, script: &Mutex<VecDeque<Reply>>) {
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").to_string(),
    );
    let mut length = 0usize;
    let mut json_type = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("content-type:") && lower.contains("application/json") {
            json_type = true;
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    let at = Instant::now();
    assert_eq!(method, "POST", "webhooks are POSTed");
    assert!(json_type, "webhook bodies are sent as application/json");
    let reply = script.lock().unwrap().pop_front();
    let (status, response) = match reply {
        None => (
            204,
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string(),
        ),
        Some(Reply::Status(s)) => (
            s,
            format!("HTTP/1.1 {s} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        ),
        Some(Reply::TooMany { header, body }) => {
            let b = body.unwrap_or_default();
            let h = header
                .map(|v| format!("Retry-After: {v}\r\n"))
                .unwrap_or_default();
            (
                429,
                format!(
                    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n{h}Content-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
            )
        }
    };
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    let answered = Instant::now();
    hits.lock().unwrap().push(Hit {
        at,
        answered,
        path,
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
}

/// A test CA and a server certificate for 127.0.0.1 signed by it (made with the openssl CLI).
/// Returns the server configuration and the CA certificate's PEM file.
pub fn tls_server(dir: &Path) -> (Arc<rustls::ServerConfig>, PathBuf) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    ca.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-subj",
        "/CN=gwta test CA",
        "-days",
        "1",
    ]);
    must("openssl", &ca);
    let (key, csr, ext, pem) = (p("leaf.key"), p("leaf.csr"), p("leaf.ext"), p("leaf.pem"));
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    must("openssl", &req);
    fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    must(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pem)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    (Arc::new(config), PathBuf::from(ca_pem))
}

/// A fresh directory under the target dir (root-owned chain, mode 0755).
pub fn scratch(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("alerts-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A scratch policy with its own spool, snapshots and webhooks file.
pub struct Setup {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub spool: PathBuf,
    pub webhooks: PathBuf,
}

/// Users and rules every scratch policy has: `root` (enforce) and `nobody` (audit).
pub const POLICY_BODY: &str = r#"
[users.root]
rules = ["cat-limits", "head-limits", "true-bare"]

[users.nobody]
mode = "audit"
rules = ["true-bare"]

[programs.cat]
paths = ["/usr/bin/cat", "/bin/cat"]
dialect = "getopt"

[programs.head]
paths = ["/usr/bin/head", "/bin/head"]
dialect = "getopt"

[programs.true]
paths = ["/usr/bin/true", "/bin/true"]
dialect = "exact"

[rules.cat-limits]
program = "cat"
args = ["/proc/self/limits"]

[rules.head-limits]
program = "head"
time_limit = 10
args = ["/proc/self/limits"]

[rules.true-bare]
program = "true"
"#;

impl Setup {
    /// `alerts`: extra `key = value` lines for `[alerts]` (they replace the defaults below);
    /// `users`: extra TOML appended; `sinks`: (name, kind, url).
    pub fn new(
        tag: &str,
        alerts: &[(&str, &str)],
        extra: &str,
        sinks: &[(&str, &str, String)],
    ) -> Setup {
        let dir = scratch(tag);
        let spool = dir.join("spool");
        let webhooks = dir.join("webhooks.toml");
        let mut keys: Vec<(String, String)> = vec![
            (
                "spool_dir".into(),
                format!("{:?}", spool.display().to_string()),
            ),
            (
                "snapshot_dir".into(),
                format!("{:?}", dir.join("snapshots").display().to_string()),
            ),
            (
                "webhooks_file".into(),
                format!("{:?}", webhooks.display().to_string()),
            ),
            ("sudo_log".into(), "\"\"".into()),
            ("trigger".into(), "\"spawn\"".into()),
            ("coalesce_seconds".into(), "2".into()),
            ("retry_max_seconds".into(), "2".into()),
        ];
        for (k, v) in alerts {
            keys.retain(|(x, _)| x != k);
            keys.push((k.to_string(), v.to_string()));
        }
        let mut policy = format!(
            "[settings]\naudit_log = {:?}\nsyslog = false\n\n[alerts]\n",
            dir.join("audit.jsonl").display().to_string()
        );
        for (k, v) in keys {
            policy.push_str(&format!("{k} = {v}\n"));
        }
        policy.push_str(POLICY_BODY);
        policy.push_str(extra);
        let config = dir.join("gateway.toml");
        fs::write(&config, policy).unwrap();
        let s = Setup {
            dir,
            config,
            spool,
            webhooks,
        };
        s.set_sinks(sinks);
        s
    }

    /// Rewrites the webhooks file (root-only, as the gateway requires).
    pub fn set_sinks(&self, sinks: &[(&str, &str, String)]) {
        let mut text = String::new();
        for (name, kind, url) in sinks {
            text.push_str(&format!(
                "[[webhook]]\nname = {name:?}\nkind = {kind:?}\nurl = {url:?}\n\n"
            ));
        }
        let _ = fs::remove_file(&self.webhooks);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.webhooks)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    pub fn gateway(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap()]);
        gateway(&all)
    }

    /// Starts `gateway notify` in the background (a deliverer that lingers).
    pub fn notify_child(&self) -> std::process::Child {
        Command::new(BIN)
            .args(["notify", "--config", self.config.to_str().unwrap()])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Every file in the spool, by path relative to it.
    pub fn spool_files(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.spool.join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits until no deliverer holds the spool lock (they exit once idle).
    pub fn wait_idle(&self, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        let spool = gateway::alert::spool::Spool::new(&self.spool);
        loop {
            if let Ok(gateway::alert::spool::Lock::Held(_)) = spool.lock() {
                return;
            }
            assert!(
                Instant::now() < end,
                "a deliverer still runs after {secs} s"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !thread::panicking() {
            // A deliverer a test started may still be finishing; it would write into the
            // directory while it is being removed.
            let spool = gateway::alert::spool::Spool::new(&self.spool);
            let end = Instant::now() + Duration::from_secs(30);
            while self.spool.exists() && spool.deliverer_running() && Instant::now() < end {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn gateway(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every byte under `dir`, as text (to look for the secret).
pub fn all_bytes(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push_str(&all_bytes(&p));
        } else if p.file_name().is_some_and(|n| n != "webhooks.toml") {
            out.push_str(&String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()));
        }
    }
    out
}

/// The Discord embed of a received message.
pub fn embed(h: &Hit) -> &Value {
    &h.body["embeds"][0]
}

pub fn title(h: &Hit) -> String {
    embed(h)["title"].as_str().unwrap_or("").to_string()
}

pub fn field(h: &Hit, name: &str) -> Option<String> {
    embed(h)["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["value"].as_str())
        .map(str::to_string)
}

/// How many alerts a Discord message accounts for: 1, or the N of "N more ...".
pub fn accounts_for(h: &Hit) -> u64 {
    let t = title(h);
    match t.split_once(" more ") {
        Some((n, _)) => n
            .parse()
            .unwrap_or_else(|_| panic!("bad summary title {t:?}")),
        None => 1,
    }
}

/// Serialises the tests that change system state, with each other and with the other
/// engineers' tests on this machine (flock on /run/gateway-tests.lock).
pub struct SystemLock {
    _flock: nix::fcntl::Flock<File>,
    _guard: MutexGuard<'static, ()>,
}

pub fn system_lock() -> SystemLock {
    static M: Mutex<()> = Mutex::new(());
    let guard = M.lock().unwrap_or_else(|e| e.into_inner());
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/gateway-tests.lock")
        .unwrap();
    let flock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock /run/gateway-tests.lock");
    SystemLock {
        _flock: flock,
        _guard: guard,
    }
}

/// Puts a file in place for the test and puts back what was there (or nothing) on drop.
pub struct Replaced {
    path: PathBuf,
    before: Option<(Vec<u8>, u32)>,
    created_dir: Option<PathBuf>,
}

impl Replaced {
    pub fn install(path: &Path, contents: &[u8], mode: u32) -> Replaced {
        let before = fs::read(path)
            .ok()
            .map(|b| (b, fs::metadata(path).unwrap().permissions().mode()));
        let dir = path.parent().unwrap();
        let created_dir = (!dir.exists()).then(|| dir.to_path_buf());
        fs::create_dir_all(dir).unwrap();
        let r = Replaced {
            path: path.to_path_buf(),
            before,
            created_dir,
        };
        r.write(contents, mode);
        r
    }

    /// Replaces the contents (temporary file + rename, as editors and installers do).
    pub fn write(&self, contents: &[u8], mode: u32) {
        let tmp = self.path.with_extension("gwta-tmp");
        fs::write(&tmp, contents).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).unwrap();
        fs::rename(&tmp, &self.path).unwrap();
    }
}

impl Drop for Replaced {
    fn drop(&mut self) {
        match &self.before {
            Some((bytes, mode)) => self.write(bytes, *mode & 0o7777),
            None => {
                let _ = fs::remove_file(&self.path);
            }
        }
        if let Some(d) = &self.created_dir {
            let _ = fs::remove_dir(d);
        }
    }
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (is it installed?): {e}"))
}

pub fn must(cmd: &str, args: &[&str]) -> Output {
    let o = run(cmd, args);
    assert!(o.status.success(), "{cmd} {args:?} failed: {}", text(&o));
    o
}

/// Root, or a loud failure: these tests need real root-only files.
pub fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the alert tests run as root (the spool and webhooks file must be root's)"
    );
}

/// Alerts a JSON webhook's messages account for (`count`), by argv[0] ("note" for notes of
/// alerts dropped or not kept).
pub fn json_account(hits: &[Hit]) -> (u64, std::collections::BTreeMap<String, u64>) {
    let mut by = std::collections::BTreeMap::new();
    let mut total = 0;
    for h in hits.iter().filter(|h| h.status == 204) {
        let n = h.body["count"].as_u64().expect("a count");
        total += n;
        let who = match h.body["form"].as_str() {
            Some("dropped") => "note".to_string(),
            _ => h.body["alert"]["argv"][0]
                .as_str()
                .unwrap_or("-")
                .to_string(),
        };
        *by.entry(who).or_default() += n;
    }
    (total, by)
}
