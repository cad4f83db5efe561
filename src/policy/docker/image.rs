//! Image references as docker reads them (distribution/reference: `[domain/]path[:tag][@digest]`,
//! normalised the way `ParseNormalizedNamed` does), and the allowlist patterns a policy matches
//! them against.
//!
//! A pattern is normalised like a reference, so `alpine`, `library/alpine`, `docker.io/alpine`
//! and `index.docker.io/library/alpine:latest` all name one image. Pattern forms:
//!
//! * `NAME`        that repository at tag `latest` only (what docker runs for a bare name);
//! * `NAME:TAG`    that repository at that tag only;
//! * `NAME:*`      that repository at any tag or digest;
//! * `PREFIX/*`    any repository below PREFIX (`local/*` is `docker.io/local/...`), any tag or
//!   digest.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const MAX_NAME: usize = 255;

/// A reference split into its normalised parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// `docker.io/library/alpine:latest` style, with the implicit `latest` made explicit.
    pub fn normalized(&self) -> String {
        let mut s = format!("{}/{}", self.domain, self.path);
        match (&self.tag, &self.digest) {
            (None, None) => s.push_str(":latest"),
            (Some(t), _) => {
                s.push(':');
                s.push_str(t);
            }
            _ => {}
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

fn grammar() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let component = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
        let domain_part = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!(r"{domain_part}(?:\.{domain_part})*(?::[0-9]+)?");
        let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        let re = format!(
            r"^(?P<name>(?:{domain}/)?{component}(?:/{component})*)(?::(?P<tag>{tag}))?(?:@(?P<digest>{digest}))?$"
        );
        // ASCII classes only, as docker's own grammar.
        RegexBuilder::new(&re)
            .unicode(false)
            .build()
            .expect("the reference grammar is a valid regex")
    })
}

/// Parses and normalises a reference, or says why docker would refuse it.
pub fn parse(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("an empty image name".into());
    }
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("an image ID, not a name".into());
    }
    let caps = grammar().captures(s).ok_or_else(|| {
        if s.bytes().any(|b| b.is_ascii_uppercase()) && !s.contains('/') {
            "repository names must be lower case".to_string()
        } else {
            "not a valid image reference ([registry/]name[:tag][@digest])".to_string()
        }
    })?;
    let name = &caps["name"];
    if name.len() > MAX_NAME {
        return Err(format!(
            "the repository name is longer than {MAX_NAME} characters"
        ));
    }
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names must be lower case".into());
    }
    if domain == LEGACY_DOMAIN {
        domain = DEFAULT_DOMAIN.into();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("library/{path}");
    }
    Ok(Reference {
        domain,
        path,
        tag: caps.name("tag").map(|m| m.as_str().to_string()),
        digest: caps.name("digest").map(|m| m.as_str().to_string()),
    })
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Pattern {
    Exact { repository: String, tag: String },
    AnyTag { repository: String },
    Below { prefix: String },
}

/// The images a rule accepts, as written in the policy and normalised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Allowlist {
    pub written: Vec<String>,
    patterns: Vec<Pattern>,
}

impl Allowlist {
    /// Reads the policy's patterns; an error names the pattern and what is wrong with it.
    pub fn new(written: &[String]) -> Result<Allowlist, String> {
        if written.is_empty() {
            return Err("an image list needs at least one pattern".into());
        }
        let mut patterns = Vec::new();
        for w in written {
            patterns.push(pattern(w).map_err(|e| format!("image pattern {w:?}: {e}"))?);
        }
        Ok(Allowlist {
            written: written.to_vec(),
            patterns,
        })
    }

    pub fn check(&self, image: &str) -> Result<Reference, String> {
        let r = parse(image)?;
        let repository = r.repository();
        let tag = match (&r.tag, &r.digest) {
            (None, None) => Some("latest"),
            (t, None) => t.as_deref(),
            (_, Some(_)) => None,
        };
        let ok = self.patterns.iter().any(|p| match p {
            Pattern::Exact {
                repository: rep,
                tag: want,
            } => *rep == repository && tag == Some(want.as_str()),
            Pattern::AnyTag { repository: rep } => *rep == repository,
            Pattern::Below { prefix } => repository
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
        });
        if ok {
            Ok(r)
        } else {
            Err(format!(
                "{} is not in the image allowlist ({})",
                r.normalized(),
                self.written.join(", ")
            ))
        }
    }
}

fn pattern(w: &str) -> Result<Pattern, String> {
    if let Some(prefix) = w.strip_suffix("/*") {
        let bare_registry =
            !prefix.contains('/') && (prefix.contains(['.', ':']) || prefix == "localhost");
        if bare_registry {
            return Err("every image of a registry would match; name a namespace".into());
        }
        // Normalise the prefix as the namespace of a repository below it.
        let r = parse(&format!("{prefix}/x")).map_err(|e| format!("bad prefix: {e}"))?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err("a prefix pattern has no tag".into());
        }
        let repository = r.repository();
        let prefix = repository
            .strip_suffix("/x")
            .unwrap_or(&repository)
            .to_string();
        return Ok(Pattern::Below { prefix });
    }
    if let Some(name) = w.strip_suffix(":*") {
        let r = parse(name)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err("write NAME:* without another tag".into());
        }
        return Ok(Pattern::AnyTag {
            repository: r.repository(),
        });
    }
    if w.contains('*') {
        return Err("* is only allowed as NAME:* or PREFIX/*".into());
    }
    let r = parse(w)?;
    if r.digest.is_some() {
        return Err("digests are not supported in patterns; use NAME:*".into());
    }
    Ok(Pattern::Exact {
        repository: r.repository(),
        tag: r.tag.unwrap_or_else(|| "latest".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_as_docker_does() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let rows: Vec<(String, &str, &str)> = vec![
            ("alpine".into(), "docker.io/library/alpine:latest", "bare name: library, latest"),
            ("alpine:3.20".into(), "docker.io/library/alpine:3.20", "tag kept"),
            ("library/alpine".into(), "docker.io/library/alpine:latest", "explicit library"),
            ("docker.io/alpine".into(), "docker.io/library/alpine:latest", "explicit hub"),
            ("index.docker.io/library/alpine".into(), "docker.io/library/alpine:latest", "legacy hub"),
            ("local/busybox".into(), "docker.io/local/busybox:latest", "a hub namespace"),
            ("localhost/x:1".into(), "localhost/x:1", "localhost is a registry"),
            ("reg.example:5000/a/b:c".into(), "reg.example:5000/a/b:c", "registry with port"),
            ("nvidia/cuda:12.2.0-base-ubuntu22.04".into(), "docker.io/nvidia/cuda:12.2.0-base-ubuntu22.04", "dots and dashes in tags"),
            (format!("alpine@{digest}"), "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "digest"),
            ("Reg.Example/x".into(), "Reg.Example/x:latest", "an upper-case first part is a domain"),
        ];
        for (input, want, why) in rows {
            assert_eq!(
                parse(&input).map(|r| r.normalized()).as_deref(),
                Ok(want),
                "{why}: {input}"
            );
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        for (input, why) in [
            ("", "empty"),
            ("Alpine", "upper case repository"),
            ("a/B", "upper case path"),
            ("alpine:", "empty tag"),
            ("alpine::1", "two colons"),
            ("-alpine", "leading dash"),
            ("alpine/", "trailing slash"),
            ("a//b", "empty component"),
            ("alpine:.x", "a tag cannot start with a dot"),
            ("alpine@sha256:abc", "short digest"),
            ("/alpine", "absolute path"),
            ("a b", "space"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "an image ID",
            ),
        ] {
            assert!(parse(input).is_err(), "{why}: {input:?}");
        }
    }

    #[test]
    fn the_default_allowlist_reads_as_documented() {
        let list = Allowlist::new(
            &[
                "alpine",
                "alpine:*",
                "nvidia/cuda:*",
                "ollama/ollama:*",
                "local/*",
            ]
            .map(String::from),
        )
        .unwrap();
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let rows: Vec<(String, bool, &str)> = vec![
            ("alpine".into(), true, "bare alpine"),
            (
                "docker.io/library/alpine:latest".into(),
                true,
                "the same image spelt in full",
            ),
            ("alpine:3.20".into(), true, "alpine:* allows any tag"),
            (format!("alpine@{digest}"), true, "and any digest"),
            ("ollama/ollama:0.3.12".into(), true, "ollama by tag"),
            ("ollama/ollama".into(), true, "ollama at latest"),
            (
                "nvidia/cuda:12.2.0-base-ubuntu22.04".into(),
                true,
                "cuda by tag",
            ),
            ("local/busybox".into(), true, "local/* any repository"),
            ("local/a/b:1".into(), true, "nested below local"),
            (
                "docker.io/local/x".into(),
                true,
                "local is a Docker Hub namespace",
            ),
            ("alpinex".into(), false, "a different repository"),
            (
                "evil/alpine".into(),
                false,
                "same last component, other namespace",
            ),
            (
                "reg.example/library/alpine".into(),
                false,
                "same path, other registry",
            ),
            (
                "localhost/busybox".into(),
                false,
                "localhost is a registry, not local/",
            ),
            (
                "local".into(),
                false,
                "the namespace itself is library/local",
            ),
            (
                "ollama/ollama-evil:1".into(),
                false,
                "a prefix of the name is not the name",
            ),
            ("nvidia/cuda-evil".into(), false, "likewise"),
        ];
        for (input, ok, why) in rows {
            assert_eq!(list.check(&input).is_ok(), ok, "{why}: {input}");
        }
    }

    #[test]
    fn an_exact_pattern_pins_its_tag() {
        let list = Allowlist::new(&["alpine".to_string(), "busybox:1.36".to_string()]).unwrap();
        assert!(list.check("alpine:latest").is_ok());
        assert!(
            list.check("alpine:3.20").is_err(),
            "bare pattern means latest only"
        );
        assert!(list.check("busybox:1.36").is_ok());
        assert!(list.check("busybox").is_err());
    }

    #[test]
    fn patterns_that_would_allow_too_much_are_refused() {
        for p in [
            "*",
            "docker.io/*",
            "alp*",
            "alpine:3*",
            "Alpine",
            "alpine@sha256:x",
        ] {
            assert!(Allowlist::new(&[p.to_string()]).is_err(), "{p}");
        }
    }
}
