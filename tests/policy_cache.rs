//! The policy cache is the policy: a round trip through it decides every shipped test case
//! the same way; it is used when current, refreshed when the policy changes, and ignored
//! when anyone but root could have written it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn load(policy: &Path, cache: &Path) -> Policy {
    let exe = std::env::current_exe().unwrap();
    cache::load(policy, cache, &exe).unwrap()
}

use gateway::decision::{decide, Input, Request};
use gateway::policy::{cache, Policy, TestInput};

fn shipped() -> String {
    fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap()
}

#[test]
fn a_round_trip_through_the_cache_format_decides_identically() {
    let original = Policy::parse_strict("gateway.toml", &shipped()).unwrap();
    let json = serde_json::to_string(&original).unwrap();
    let copy: Policy = serde_json::from_str(&json).unwrap();
    assert!(!original.tests.is_empty());
    for t in &original.tests {
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

fn set_lang_in_cache(cache: &Path, lang: &str) {
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(cache).unwrap()).unwrap();
    v["policy"]["settings"]["lang"] = lang.into();
    fs::write(cache, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn the_cache_is_used_refreshed_and_distrusted_as_it_should_be() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cache is trusted only when root owns it; run this test as root (CI does)"
    );
    let dir = Dir(std::env::temp_dir().join(format!("gwtest-cache-{}", std::process::id())));
    fs::create_dir_all(&dir.0).unwrap();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o700)).unwrap();
    let policy = dir.0.join("gateway.toml");
    let cache_dir = dir.0.join("cache");
    let cache_file = cache_dir.join("policy.json");
    fs::write(&policy, shipped()).unwrap();

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
