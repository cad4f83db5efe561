//! Value types whose grammar is docker's: container names, image references, `--gpus`,
//! `-p`, `-v`, sizes and `-e`. Each accepts a strict subset of what docker accepts, written so
//! that docker reads it one way only; the differential tests hold docker to that reading.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use super::engine::{self, Volume};
use super::image::{self, Allowlist};

/// The builtin type names a policy can use, and what they are.
pub const BUILTINS: &[(&str, DockerType)] = &[
    ("container_name", DockerType::ContainerName),
    ("docker_image", DockerType::AnyImage),
    ("docker_gpus", DockerType::Gpus),
    ("docker_publish", DockerType::PublishLoopback),
    ("docker_volume", DockerType::NamedVolume),
    ("docker_size", DockerType::Size),
    ("docker_env", DockerType::Env),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DockerType {
    /// `[a-zA-Z0-9][a-zA-Z0-9_.-]+` as docker's own name check, at most 128 characters.
    ContainerName,
    /// Any valid image reference (for `rmi`).
    AnyImage,
    /// An `image = [...]` allowlist from `[types]`.
    Images(Allowlist),
    /// `all`, `device=N` or `"device=N,M"` (the quotes are docker's CSV quoting).
    Gpus,
    /// `127.0.0.1:HOSTPORT:PORT[/tcp|/udp]`, HOSTPORT 1024-65535.
    PublishLoopback,
    /// `VOLUME:/container/path[:ro|:rw]` with VOLUME a named volume the engine says is plain.
    NamedVolume,
    /// `N`, `Nb`, `Nk`, `Nm`, `Ng`: binary units, at most 64 GiB.
    Size,
    /// `NAME=VALUE`, NAME not a dynamic-loader variable, the `=` required.
    Env,
}

pub fn builtin(name: &str) -> Option<DockerType> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.clone())
}

const MAX_SIZE: u64 = 64 << 30;

impl DockerType {
    pub fn check(&self, value: &str) -> Result<(), String> {
        match self {
            DockerType::ContainerName => container_name(value),
            DockerType::AnyImage => image::parse(value).map(|_| ()),
            DockerType::Images(list) => list.check(value).map(|_| ()),
            DockerType::Gpus => gpus(value).map(|_| ()),
            DockerType::PublishLoopback => publish(value),
            DockerType::NamedVolume => named_volume(value),
            DockerType::Size => size(value).map(|_| ()),
            DockerType::Env => env(value),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            DockerType::ContainerName => {
                "a container name [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at most 128 characters)".into()
            }
            DockerType::AnyImage => "an image reference [registry/]name[:tag][@digest]".into(),
            DockerType::Images(list) => format!("an image matching {}", list.written.join(", ")),
            DockerType::Gpus => "all, device=N or \"device=N,M\" (quoted for docker's CSV)".into(),
            DockerType::PublishLoopback => {
                "127.0.0.1:HOSTPORT:PORT[/tcp|/udp] with HOSTPORT 1024-65535".into()
            }
            DockerType::NamedVolume => {
                "VOLUME:/container/path[:ro] with VOLUME a named volume (never a host path)".into()
            }
            DockerType::Size => "a size N, Nb, Nk, Nm or Ng (binary units, at most 64g)".into(),
            DockerType::Env => "NAME=VALUE (not LD_*; the value is required)".into(),
        }
    }

    pub fn placeholder(&self) -> &'static str {
        match self {
            DockerType::ContainerName => "NAME",
            DockerType::AnyImage | DockerType::Images(_) => "IMAGE",
            DockerType::Gpus => "GPUS",
            DockerType::PublishLoopback => "127.0.0.1:HOSTPORT:PORT",
            DockerType::NamedVolume => "VOLUME:/PATH",
            DockerType::Size => "SIZE",
            DockerType::Env => "NAME=VALUE",
        }
    }
}

fn docker_name(value: &str, max: usize) -> bool {
    let b = value.as_bytes();
    b.len() >= 2
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn container_name(value: &str) -> Result<(), String> {
    if docker_name(value, 128) {
        Ok(())
    } else {
        Err("not a container name".into())
    }
}

/// Decimal without sign or leading zeros, within `min..=max`.
fn decimal(s: &str, min: u64, max: u64) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 12
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    let n: u64 = if ok { s.parse().ok()? } else { return None };
    (min..=max).contains(&n).then_some(n)
}

/// The device IDs (empty for `all`).
pub fn gpus(value: &str) -> Result<Vec<u32>, String> {
    if value == "all" {
        return Ok(Vec::new());
    }
    let inner = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(q) => q,
        None => value,
    };
    let quoted = inner.len() != value.len();
    let ids = inner
        .strip_prefix("device=")
        .ok_or_else(|| "not all, device=N or \"device=N,M\"".to_string())?;
    if ids.contains(',') && !quoted {
        return Err(
            "device=N,M must be quoted as \"device=N,M\": docker reads the comma as a new field"
                .into(),
        );
    }
    let mut out = Vec::new();
    for id in ids.split(',') {
        let n = decimal(id, 0, 63).ok_or_else(|| format!("{id:?} is not a GPU index 0-63"))?;
        let n = n as u32;
        if out.contains(&n) {
            return Err(format!("GPU {n} is listed twice"));
        }
        out.push(n);
    }
    Ok(out)
}

fn publish(value: &str) -> Result<(), String> {
    let (ports, proto) = match value.rsplit_once('/') {
        Some((p, proto)) if proto == "tcp" || proto == "udp" => (p, Some(proto)),
        Some(_) => return Err("the protocol must be tcp or udp".into()),
        None => (value, None),
    };
    let _ = proto;
    let rest = ports.strip_prefix("127.0.0.1:").ok_or_else(|| {
        "ports are published on 127.0.0.1 only (127.0.0.1:HOSTPORT:PORT)".to_string()
    })?;
    let (host, container) = rest
        .split_once(':')
        .ok_or_else(|| "write 127.0.0.1:HOSTPORT:PORT".to_string())?;
    decimal(host, 1024, 65535)
        .ok_or_else(|| format!("host port {host:?} is not a number from 1024 to 65535"))?;
    decimal(container, 1, 65535)
        .ok_or_else(|| format!("container port {container:?} is not a number from 1 to 65535"))?;
    Ok(())
}

/// Splits `NAME:/path[:mode]` and checks everything that needs no engine.
pub fn volume_parts(value: &str) -> Result<(&str, &str, Option<&str>), String> {
    let mut parts = value.split(':');
    let (name, target, mode) = (parts.next(), parts.next(), parts.next());
    if parts.next().is_some() {
        return Err("too many ':'-separated parts".into());
    }
    let (Some(name), Some(target)) = (name, target) else {
        return Err(
            "write VOLUME:/container/path; anonymous volumes and host paths are not offered".into(),
        );
    };
    if name.starts_with(['/', '.', '~', '\\']) || name.is_empty() {
        return Err(format!(
            "{name:?} is a host path; only named volumes are offered"
        ));
    }
    if !docker_name(name, 64) {
        return Err(format!(
            "{name:?} is not a volume name [a-zA-Z0-9][a-zA-Z0-9_.-]+"
        ));
    }
    let clean = target.len() > 1
        && target.len() <= 255
        && target.starts_with('/')
        && !target.ends_with('/')
        && target[1..].split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !clean {
        return Err(format!(
            "{target:?} is not an absolute, clean container path other than /"
        ));
    }
    match mode {
        None | Some("ro") | Some("rw") => Ok((name, target, mode)),
        Some(m) => Err(format!("mount option {m:?} is not offered (ro or rw only)")),
    }
}

fn named_volume(value: &str) -> Result<(), String> {
    let (name, _, _) = volume_parts(value)?;
    match engine::volume(name) {
        Ok(Volume::Missing) | Ok(Volume::Plain) => Ok(()),
        Ok(Volume::Other(what)) => Err(format!("volume {name} is not a plain volume: {what}")),
        Err(e) => Err(format!(
            "volume {name} cannot be checked ({e}); a named volume can hide a host bind mount, so it is refused"
        )),
    }
}

/// Bytes, as docker's `RAMInBytes` reads the same text.
pub fn size(value: &str) -> Result<u64, String> {
    let (digits, unit) = match value.as_bytes().last() {
        Some(b'b') => (&value[..value.len() - 1], 1u64),
        Some(b'k') => (&value[..value.len() - 1], 1 << 10),
        Some(b'm') => (&value[..value.len() - 1], 1 << 20),
        Some(b'g') => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    let n =
        decimal(digits, 1, MAX_SIZE).ok_or_else(|| "not a size such as 64m or 1g".to_string())?;
    let bytes = n.checked_mul(unit).filter(|b| *b <= MAX_SIZE);
    bytes.ok_or_else(|| "larger than 64g".to_string())
}

fn env(value: &str) -> Result<(), String> {
    let (name, _) = value.split_once('=').ok_or_else(|| {
        "NAME=VALUE is required; a bare NAME would copy the gateway's own variable".to_string()
    })?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric());
    if !valid {
        return Err(format!("{name:?} is not a variable name"));
    }
    if name.to_ascii_uppercase().starts_with("LD_") {
        return Err(format!("{name} is a dynamic-loader variable"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_requests_are_all_or_device_lists() {
        let rows: &[(&str, Option<&[u32]>, &str)] = &[
            ("all", Some(&[]), "every GPU"),
            ("device=0", Some(&[0]), "one GPU"),
            (
                "\"device=0,1\"",
                Some(&[0, 1]),
                "two GPUs, quoted as docker's CSV needs",
            ),
            ("\"device=3\"", Some(&[3]), "one GPU, quoted"),
            (
                "device=0,1",
                None,
                "unquoted: docker reads device=0 and a count of 1",
            ),
            ("device=01", None, "leading zero"),
            ("\"device=0,0\"", None, "a GPU twice"),
            ("2", None, "a bare count is not offered"),
            ("count=all", None, "count= is not offered"),
            (
                "all,capabilities=compute,utility",
                None,
                "capabilities are not offered",
            ),
            ("device=0,driver=nvidia", None, "other keys are not offered"),
            ("\"device=0", None, "unbalanced quote"),
            ("device=", None, "no ID"),
            ("device=GPU-abc", None, "UUIDs are not offered"),
        ];
        for (v, want, why) in rows {
            assert_eq!(gpus(v).ok().as_deref(), *want, "{why}: {v}");
        }
    }

    #[test]
    fn ports_are_published_on_loopback_only() {
        let rows = [
            ("127.0.0.1:8080:80", true, "loopback"),
            ("127.0.0.1:11434:11434/tcp", true, "with protocol"),
            ("127.0.0.1:5353:53/udp", true, "udp"),
            ("8080:80", false, "all interfaces"),
            ("0.0.0.0:8080:80", false, "all interfaces, explicitly"),
            (
                "127.0.0.2:8080:80",
                false,
                "another loopback address is not offered",
            ),
            ("[::1]:8080:80", false, "IPv6 is not offered"),
            ("127.0.0.1::80", false, "a random host port"),
            ("127.0.0.1:80:80", false, "a privileged host port"),
            ("127.0.0.1:8080-8090:80-90", false, "ranges"),
            ("127.0.0.1:08080:80", false, "leading zero"),
            ("127.0.0.1:8080:80/sctp", false, "sctp"),
            (
                "80",
                false,
                "container port only: random host port on every interface",
            ),
            ("127.0.0.1:8080:0", false, "port 0"),
        ];
        for (v, ok, why) in rows {
            assert_eq!(publish(v).is_ok(), ok, "{why}: {v}");
        }
    }

    #[test]
    fn volumes_are_named_and_target_clean_container_paths() {
        let rows = [
            ("models:/data", true, "named volume"),
            (
                "ollama_models:/root/.ollama",
                true,
                "dots inside a component",
            ),
            ("v1:/data:ro", true, "read-only"),
            ("/:/host", false, "host root"),
            ("/etc:/h", false, "host path"),
            (
                "./x:/h",
                false,
                "relative path: docker makes it absolute against its cwd",
            ),
            ("..:/h", false, "parent directory"),
            ("~/x:/h", false, "home directory"),
            ("/var/run/docker.sock:/s", false, "the engine socket"),
            ("/data", false, "anonymous volume"),
            (
                "v:/data",
                false,
                "one-letter names read like a Windows drive",
            ),
            ("models:/", false, "target /"),
            ("models:/a/../b", false, "dot-dot in the target"),
            ("models:data", false, "relative target"),
            ("models:/data:z", false, "SELinux relabel"),
            ("models:/data:rshared", false, "propagation"),
            ("models:/data:ro:x", false, "extra part"),
            ("mo dels:/data", false, "space"),
        ];
        for (v, ok, why) in rows {
            assert_eq!(volume_parts(v).is_ok(), ok, "{why}: {v}");
        }
    }

    #[test]
    fn sizes_use_binary_units() {
        let rows: &[(&str, Option<u64>)] = &[
            ("64m", Some(64 << 20)),
            ("1g", Some(1 << 30)),
            ("512k", Some(512 << 10)),
            ("100", Some(100)),
            ("100b", Some(100)),
            ("64g", Some(64 << 30)),
            ("65g", None),
            ("0", None),
            ("64M", None),
            ("1.5g", None),
            ("064m", None),
            ("0x40m", None),
            ("-1", None),
            ("", None),
            ("m", None),
        ];
        for (v, want) in rows {
            assert_eq!(size(v).ok(), *want, "{v:?}");
        }
    }

    #[test]
    fn environment_values_need_a_name_and_an_equals_sign() {
        let rows = [
            ("OLLAMA_HOST=0.0.0.0", true),
            ("A=", true),
            ("A=b=c", true),
            ("HOME", false),
            ("LD_PRELOAD=/x.so", false),
            ("ld_library_path=/x", false),
            ("1A=b", false),
            ("=b", false),
            ("A-B=c", false),
        ];
        for (v, ok) in rows {
            assert_eq!(env(v).is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn container_names_follow_docker() {
        for (v, ok) in [
            ("ollama", true),
            ("C.12345678", true),
            ("bench-run-1", true),
            ("a", false),
            ("-a", false),
            (".a", false),
            ("a/b", false),
            ("a b", false),
            ("/ollama", false),
        ] {
            assert_eq!(container_name(v).is_ok(), ok, "{v}");
        }
    }
}
