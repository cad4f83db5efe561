//! The NixOS module in contrib/nixos, checked as far as this machine allows without nixpkgs:
//! every file parses; the pure helpers (lib.nix) evaluate, and what they render equals what
//! `gateway install` renders from the same policy and template; the rendered sudoers entry
//! passes the real `visudo -cf`, and the rendered sshd block the real `sshd -t` / `sshd -T`.
//! (The module's use of NixOS options needs nixpkgs and is not checked here.)

use std::fs;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn nix_files() -> Vec<String> {
    let mut v = Vec::new();
    for dir in ["contrib/nixos", "contrib/nixos/tests"] {
        for e in fs::read_dir(Path::new(ROOT).join(dir)).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "nix") {
                v.push(p.display().to_string());
            }
        }
    }
    v.sort();
    v
}

fn render(policy: &str, key: &str) -> serde_json::Value {
    let o = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(format!("{ROOT}/contrib/nixos/tests/render.nix"))
        .args(["--arg", "policyFile", policy, "--argstr", "key", key])
        .output()
        .expect("nix-instantiate is installed (apt-get install nix-bin)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_nix_file_parses() {
    let files = nix_files();
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let o = Command::new("nix-instantiate")
            .args(["--parse", &f])
            .output()
            .expect("nix-instantiate is installed (apt-get install nix-bin)");
        assert!(
            o.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn the_module_renders_what_gateway_install_renders() {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample agent@box";
    for policy in [
        format!("{ROOT}/gateway.toml"),
        format!("{ROOT}/tests/fixtures/install-policy.toml"),
    ] {
        let nix = render(&policy, key);
        let p = gateway::policy::Policy::load(Path::new(&policy)).unwrap();
        let users: Vec<String> = p.users.keys().cloned().collect();
        assert_eq!(strings(&nix["users"]), users, "{policy}: users");
        let programs: Vec<String> = gateway::install::programs_for(&p, &users)
            .into_iter()
            .collect();
        assert_eq!(
            strings(&nix["programs"]),
            programs,
            "{policy}: one shim per program"
        );
        assert_eq!(
            nix["sudoers"].as_str().unwrap(),
            gateway::install::render_sudoers(&users),
            "{policy}: the same sudoers entry"
        );
        let (keys, _) = gateway::install::ssh::parse_keys(key);
        assert_eq!(
            nix["keyLine"].as_str().unwrap(),
            keys[0].line(),
            "the same key line"
        );
        let tmpfiles = strings(&nix["tmpfiles"]);
        for prog in &programs {
            let line =
                format!("L+ /usr/local/lib/gateway/shims/{prog} - - - - /usr/local/bin/gateway");
            assert!(tmpfiles.contains(&line), "{line}");
        }
    }
    let nix = render(&format!("{ROOT}/gateway.toml"), key);
    assert_eq!(
        strings(&nix["grants"]),
        ["ai-worker"],
        "an extraRules entry naming a managed user is found; wheel and other users are not"
    );
}

#[test]
fn the_rendered_sudoers_and_sshd_files_pass_the_real_checkers() {
    let nix = render(
        &format!("{ROOT}/gateway.toml"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample agent@box",
    );
    let dir = std::env::temp_dir().join(format!("gwti-nixos-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let sudoers = dir.join("sudoers");
    fs::write(&sudoers, nix["sudoers"].as_str().unwrap()).unwrap();
    let o = Command::new("/usr/sbin/visudo")
        .arg("-cf")
        .arg(&sudoers)
        .output()
        .expect("visudo (apt-get install sudo)");
    assert!(
        o.status.success(),
        "visudo: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let hostkey = dir.join("hostkey");
    let o = Command::new("/usr/bin/ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&hostkey)
        .output()
        .unwrap();
    assert!(o.status.success());
    let conf = dir.join("sshd_config");
    fs::write(
        &conf,
        format!(
            "HostKey {}\nPasswordAuthentication no\n{}X11Forwarding yes\n",
            hostkey.display(),
            nix["sshd"].as_str().unwrap()
        ),
    )
    .unwrap();
    let t = |user: &str| {
        let o = Command::new("/usr/sbin/sshd")
            .args(["-T", "-f"])
            .arg(&conf)
            .args(["-C", &format!("user={user},host=localhost,addr=127.0.0.1")])
            .output()
            .expect("sshd (apt-get install openssh-server)");
        assert!(
            o.status.success(),
            "sshd -T: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let agent = t("ai-worker");
    assert!(
        agent.contains("forcecommand /usr/local/bin/gateway ssh"),
        "{agent}"
    );
    assert!(agent.contains("authorizedkeysfile /etc/ssh/authorized_keys.d/%u"));
    assert!(agent.contains("permittty no"));
    let other = t("root");
    assert!(
        other.contains("forcecommand none"),
        "the Match block stays with its users"
    );
    assert!(
        other.contains("x11forwarding yes"),
        "a line after `Match all` is global again"
    );
    let _ = fs::remove_dir_all(&dir);
}
