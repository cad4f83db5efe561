//! What install did, kept root-only in `/var/lib/gateway/install.json`, so that uninstall can undo
//! exactly that and `--update` knows which features were chosen.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::features::Feature;
use super::sudoers::Edit;
use super::tx::{self, Entry};

pub const STATE_DIR: &str = "/var/lib/gateway";
pub const STATE_FILE: &str = "/var/lib/gateway/install.json";
pub const BACKUP_ROOT: &str = "/var/lib/gateway/backups";

/// What was at a path before install put its own file there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Previous {
    Absent,
    File {
        backup: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Link {
        target: String,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl Previous {
    /// The entry to put back; a file's bytes come from its backup copy.
    pub fn entry(&self) -> Result<Entry, String> {
        Ok(match self {
            Previous::Absent => Entry::Absent,
            Previous::File {
                backup,
                mode,
                uid,
                gid,
            } => Entry::File {
                bytes: fs::read(backup).map_err(|e| format!("backup {backup}: {e}"))?,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            Previous::Link { target } => Entry::Link(target.into()),
            Previous::Dir { mode, uid, gid } => Entry::Dir {
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Installed {
    pub path: String,
    pub previous: Previous,
}

/// One install run's edits to one sudoers file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SudoersChange {
    pub path: String,
    /// The file as it was before this run (byte for byte).
    pub backup: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// A copy of what this run wrote, to tell whether someone changed the file since.
    pub written: String,
    pub edits: Vec<Edit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellChange {
    pub user: String,
    pub original: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub features: BTreeSet<Feature>,
    pub users: Vec<String>,
    pub ssh_users: Vec<String>,
    pub installed: Vec<Installed>,
    pub sudoers: Vec<SudoersChange>,
    pub shells: Vec<ShellChange>,
    pub units: Vec<String>,
    /// `TIMESTAMP install|update` lines.
    pub history: Vec<String>,
}

impl State {
    pub fn load() -> Result<Option<State>, String> {
        let text = match fs::read_to_string(STATE_FILE) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {STATE_FILE}: {e}")),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{STATE_FILE} is damaged ({e}); restore it from {BACKUP_ROOT}"))
    }

    pub fn save(&self) -> Result<(), String> {
        fs::create_dir_all(STATE_DIR).map_err(|e| format!("cannot create {STATE_DIR}: {e}"))?;
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        tx::write_atomic(Path::new(STATE_FILE), text.as_bytes(), 0o600, None)
    }

    /// Records that install put something at `path`, unless an earlier run already did (the
    /// first run's record holds what was there before gateway).
    pub fn record(&mut self, path: &Path, previous: Previous) {
        let p = path.display().to_string();
        if !self.installed.iter().any(|i| i.path == p) {
            self.installed.push(Installed { path: p, previous });
        }
    }

    pub fn owns(&self, path: &Path) -> bool {
        let p = path.display().to_string();
        self.installed.iter().any(|i| i.path == p)
    }
}
