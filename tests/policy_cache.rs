//! The policy cache is the policy: a round trip through it decides every shipped test case
//! the same way; it is used when current, refreshed when the policy changes, and ignored
//! when anyone but root could have written it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn load(policy: &Path, cache: &Path) -> Policy {
    let exe = std::env::current_exe().unwrap();
    cache::load_for(policy, cache, &exe, "ai-worker").unwrap()
}

use gateway::decision::{decide, Input, Request};
use gateway::policy::{cache, Policy, TestInput};

fn shipped() -> String {
    fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap()
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cache is trusted only when root owns it; run this test as root (CI does)"
    );
}

/// A private directory with the shipped policy in it, and where its cache goes.
fn setup(name: &str) -> (Dir, PathBuf, PathBuf) {
    require_root();
    let dir = Dir(std::env::temp_dir().join(format!("gwtest-{name}-{}", std::process::id())));
    fs::create_dir_all(&dir.0).unwrap();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o700)).unwrap();
    let policy = dir.0.join("gateway.toml");
    let cache_file = dir.0.join("cache").join("policy.json");
    fs::write(&policy, shipped()).unwrap();
    (dir, policy, cache_file)
}

/// What a request by `user` reads from a current cache.
fn cached_for(policy: &Path, cache_file: &Path, user: &str) -> Option<Policy> {
    cache::read_current(policy, cache_file, &std::env::current_exe().unwrap(), user)
}

fn cached(policy: &Path, cache_file: &Path) -> Option<Policy> {
    cached_for(policy, cache_file, "ai-worker")
}

#[test]
fn a_round_trip_through_the_cache_file_decides_identically() {
    let (_dir, policy, cache_file) = setup("roundtrip");
    let original = Policy::parse_strict("gateway.toml", &shipped()).unwrap();
    assert!(cached(&policy, &cache_file).is_none(), "no cache yet");
    load(&policy, &cache_file);
    assert!(
        cached(&policy, &cache_file).is_some(),
        "the first load writes a current cache"
    );
    assert!(!original.tests.is_empty());
    for t in &original.tests {
        // A request reads its caller's part of the cache only.
        let copy = cached_for(&policy, &cache_file, &t.user).unwrap();
        assert!(copy.users.len() <= 1);
        let (channel, input) = match &t.input {
            TestInput::Argv(a) => (gateway::decision::Channel::Sudo, Input::Argv(a.clone())),
            TestInput::Ssh(c) => (gateway::decision::Channel::Ssh, Input::Ssh(c.clone())),
        };
        let req = Request {
            user: t.user.clone(),
            channel,
            input,
        };
        let (a, b) = (decide(&original, &req), decide(&copy, &req));
        assert_eq!(a.verdict, b.verdict, "{}", t.location);
        assert_eq!(a.reason, b.reason, "{}", t.location);
        assert_eq!(a.rule, b.rule, "{}", t.location);
        assert_eq!(a.plan, b.plan, "{}", t.location);
        assert_eq!(
            gateway::decision::alternatives(&original, &t.user, &a.allowed),
            gateway::decision::alternatives(&copy, &t.user, &b.allowed),
            "{}",
            t.location
        );
    }
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Edits the cache's header line (the JSON before the first newline), keeping the bodies.
fn edit_header(cache: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = fs::read(cache).unwrap();
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&bytes[..nl]).unwrap();
    edit(&mut v);
    let mut out = serde_json::to_vec(&v).unwrap();
    out.extend_from_slice(&bytes[nl..]);
    fs::write(cache, out).unwrap();
}

fn set_lang_in_cache(cache: &Path, lang: &str) {
    edit_header(cache, |v| v["policy"]["settings"]["lang"] = lang.into());
}

#[test]
fn the_cache_is_used_refreshed_and_distrusted_as_it_should_be() {
    let (dir, policy, cache_file) = setup("cache");
    let cache_dir = cache_file.parent().unwrap().to_path_buf();

    let first = load(&policy, &cache_file);
    assert_eq!(first.settings.lang, "C.UTF-8");
    let md = fs::metadata(&cache_file).expect("the first load writes the cache");
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // A current cache is what the next request reads.
    set_lang_in_cache(&cache_file, "cache.marker");
    assert_eq!(load(&policy, &cache_file).settings.lang, "cache.marker");

    // A cache others could have written is ignored.
    fs::set_permissions(&cache_file, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(load(&policy, &cache_file).settings.lang, "C.UTF-8");

    // Any change to the policy file makes the cache stale, even with the same size and mtime.
    set_lang_in_cache(&cache_file, "cache.marker");
    fs::set_permissions(&cache_file, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(load(&policy, &cache_file).settings.lang, "cache.marker");
    let mtime = fs::metadata(&policy).unwrap().modified().unwrap();
    let edited = shipped().replace("lang = \"C.UTF-8\"", "lang = \"C.UTF-9\"");
    fs::write(&policy, edited).unwrap();
    fs::File::options()
        .write(true)
        .open(&policy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(load(&policy, &cache_file).settings.lang, "C.UTF-9");

    // A symbolic link in place of the cache is never followed.
    fs::remove_file(&cache_file).unwrap();
    let decoy = dir.0.join("decoy.json");
    fs::write(&decoy, "{}").unwrap();
    fs::set_permissions(&decoy, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&decoy, &cache_file).unwrap();
    assert_eq!(load(&policy, &cache_file).settings.lang, "C.UTF-9");

    // An unreadable or corrupt cache is the same as none.
    fs::remove_file(&cache_file).unwrap();
    fs::write(&cache_file, "not json").unwrap();
    fs::set_permissions(&cache_file, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(load(&policy, &cache_file).settings.lang, "C.UTF-9");
}

fn sudo_request(user: &str, argv: &[&str]) -> Request {
    Request {
        user: user.to_string(),
        channel: gateway::decision::Channel::Sudo,
        input: Input::Argv(argv.iter().map(|s| s.to_string()).collect()),
    }
}

/// A rule body that cannot be read back is no rule: what it allowed is denied, nothing else
/// changes, and nothing panics.
#[test]
fn a_damaged_rule_body_denies_what_that_rule_allowed() {
    let (_dir, policy, cache_file) = setup("damaged");
    load(&policy, &cache_file);
    let ps = sudo_request("ai-worker", &["docker", "ps"]);
    let smi = sudo_request("vastai_kaalia", &["nvidia-smi", "-pm", "1"]);
    let both = |policy: &Path, cache_file: &Path| {
        let a = cached_for(policy, cache_file, "ai-worker").expect("the header is current");
        let v = cached_for(policy, cache_file, "vastai_kaalia").expect("the header is current");
        (decide(&a, &ps).verdict, decide(&v, &smi).verdict)
    };
    use gateway::decision::Verdict::{Allow, Deny};
    assert_eq!(both(&policy, &cache_file), (Allow, Allow));
    let good = cached(&policy, &cache_file).unwrap();
    let rule = decide(&good, &ps).rule.expect("an allow names its rule");

    // Overwrite that rule's body with bytes of the same length that are not a rule.
    let bytes = fs::read(&cache_file).unwrap();
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes[..nl]).unwrap();
    let span = |v: &serde_json::Value| {
        let at = nl + 1 + v["at"].as_u64().unwrap() as usize;
        (at, at + v["len"].as_u64().unwrap() as usize)
    };
    let (from, to) = span(&header["users"]["ai-worker"]);
    let section: serde_json::Value = serde_json::from_slice(&bytes[from..to]).unwrap();
    let (at, end) = span(&section["rules"][&rule]);
    let mut damaged = bytes.clone();
    damaged[at..end].fill(b'x');
    fs::write(&cache_file, &damaged).unwrap();
    assert_eq!(both(&policy, &cache_file), (Deny, Allow));

    // A damaged user section is no cache for that user: the TOML is read instead.
    let mut damaged = bytes.clone();
    damaged[from..to].fill(b'x');
    fs::write(&cache_file, &damaged).unwrap();
    assert!(cached_for(&policy, &cache_file, "ai-worker").is_none());
    assert!(cached_for(&policy, &cache_file, "vastai_kaalia").is_some());

    // A cache cut short after its first line: no user section can be read.
    fs::write(&cache_file, &bytes[..nl + 1]).unwrap();
    assert!(cached_for(&policy, &cache_file, "ai-worker").is_none());

    // A rule slot pointing past the end, or absurdly long, is the same as a damaged body.
    let with_slot = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut s = section.clone();
        edit(&mut s["rules"][&rule]);
        let text = serde_json::to_vec(&s).unwrap();
        // The edited section goes at the end, and the header points there.
        let mut out = bytes.clone();
        let at = out.len() - (nl + 1);
        out.extend_from_slice(&text);
        fs::write(&cache_file, &out).unwrap();
        edit_header(&cache_file, |h| {
            h["users"]["ai-worker"] = serde_json::json!({"at": at, "len": text.len()});
        });
    };
    with_slot(&|slot| slot["at"] = u64::MAX.into());
    assert_eq!(both(&policy, &cache_file), (Deny, Allow));
    with_slot(&|slot| slot["len"] = u64::MAX.into());
    assert_eq!(both(&policy, &cache_file), (Deny, Allow));
    with_slot(&|_| {});
    assert_eq!(
        both(&policy, &cache_file),
        (Allow, Allow),
        "the edit itself is sound"
    );
}

/// A request by a user the policy does not name reads no user, and is refused as with the
/// whole policy; a section that names another user is not used.
#[test]
fn a_user_reads_only_its_own_section() {
    let (_dir, policy, cache_file) = setup("sections");
    load(&policy, &cache_file);
    let stranger = cached_for(&policy, &cache_file, "mallory").expect("current");
    assert!(stranger.users.is_empty());
    let d = decide(&stranger, &sudo_request("mallory", &["docker", "ps"]));
    assert_eq!(d.verdict, gateway::decision::Verdict::Deny);
    assert_eq!(d.reason, "user mallory has no rules in the gateway policy");

    let ai = cached_for(&policy, &cache_file, "ai-worker").unwrap();
    assert_eq!(ai.users.keys().collect::<Vec<_>>(), ["ai-worker"]);
    assert!(ai
        .rules
        .names()
        .all(|r| ai.users["ai-worker"].rules.contains(r)));

    // Point vastai_kaalia's entry at ai-worker's section.
    edit_header(&cache_file, |h| {
        h["users"]["vastai_kaalia"] = h["users"]["ai-worker"].clone();
    });
    assert!(cached_for(&policy, &cache_file, "vastai_kaalia").is_none());
}

/// A cache written by an earlier format is never read as this one.
#[test]
fn a_cache_in_the_old_single_document_format_is_replaced() {
    let (_dir, policy, cache_file) = setup("oldformat");
    load(&policy, &cache_file);
    let bytes = fs::read(&cache_file).unwrap();
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    // The old format: one JSON document, no newline, format 1.
    let mut v: serde_json::Value = serde_json::from_slice(&bytes[..nl]).unwrap();
    v["key"]["format"] = 1.into();
    fs::write(&cache_file, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(cached(&policy, &cache_file).is_none());
    load(&policy, &cache_file);
    assert!(
        cached(&policy, &cache_file).is_some(),
        "the load rewrote it"
    );
}
