//! The Podfile (`podfile.yaml` or `.podspawn/podfile.yaml` in a project's repository): what a
//! project's image and session are made of. Pure: the only way in is the [`RepoFiles`] trait, so
//! `extends` is resolved against a repository checkout in production and an in-memory map in
//! tests.
//!
//! The pieces:
//! - [`resolve`] / [`load`]: parse every file of the `extends` chain (each one validated, errors
//!   name the file, line and key) and merge them into one [`Podfile`];
//! - [`Podfile::image_tag`]: the tag of the project's image, a hash of the *resolved* Podfile and
//!   the base image's ID, so `update-project` and a login always compute the same tag;
//! - [`Podfile::dockerfile`]: the Dockerfile text to build it;
//! - [`Podfile::env_for`] / [`Service::env_for`]: the environment with `${PODSPAWN_USER}` and
//!   `${PODSPAWN_PROJECT}` expanded.
//!
//! # Keys
//!
//! `base` (image; required unless `extends` is set), `extends` (a path to another Podfile inside
//! the repository, relative to the file that names it, ending in `.yaml` or `.yml`), `packages`
//! (Debian/Ubuntu package names, or `name@version` for the versions in [`recipes::RECIPES`]),
//! `env` (name → value), `services` (companion containers), `on_create` / `on_start` (a command or
//! a list of commands), `extra_commands` (build-time `RUN` lines), `shell` (absolute path),
//! `resources` (`cpus`, `memory`, with the rules of the server configuration) and `mode` (a
//! session mode: grace-period, destroy-on-disconnect, named/persistent, ttl).
//!
//! `services` is a list of `{name, image, env, ports, volumes}` (the reference's form) or a
//! mapping `name: {image, env, ports, volumes}`. Volumes are `name:/path` (an engine volume) or
//! `/host/path:/path` (a host bind, reported by [`Podfile::host_binds`] so the caller can refuse
//! it), optionally `:ro`. `env` values are literal apart from the two placeholders: `$HOME` stays
//! `$HOME` (Docker does not expand a container's environment either), and any other `${…}` is
//! refused so a typo does not pass silently. A value YAML reads as a number keeps the text
//! written (`3.10`, `007`). Keys the reference has only for its local `dev` mode (`name`,
//! `branch`, `dotfiles`, `repos`, `ports`, `mount`, `workspace`) are refused with that
//! explanation.
//!
//! # Merge rules of `extends` (the reference's §6.2, with the choices noted)
//!
//! The parent is resolved first (recursively), then the child is laid over it:
//! - scalars (`base`, `shell`, `mode`) and each field of `resources`: the child's value wins when
//!   it sets one;
//! - `packages`: the parent's list, then the child's additions not already present (duplicates
//!   are dropped). A child item `"!name"` removes the inherited package (`!node` also removes
//!   `node@20`; removing something not inherited is an error, so typos are caught). *Choice:* a
//!   child `node@22` replaces an inherited `node@20` in place rather than installing both;
//! - `env`: map merge, the child's keys win; a child value of `""` (or null) removes the key
//!   (*choice:* in a file that extends nothing an empty value is an error, since it could only
//!   mean one of two things);
//! - `services`: a child service with the name of an inherited one replaces it whole, in place;
//!   new ones are appended; `name: "!x"` (or the map key `"!x"`) removes `x`;
//! - `extra_commands`, `on_create`, `on_start`: the parent's commands, then the child's. *Choice:*
//!   commands are not de-duplicated (running a command twice can be intended; the reference
//!   concatenates these too);
//! - `key!:` (only `packages!`, `env!`, `services!`, `extra_commands!`, `on_create!`,
//!   `on_start!`) replaces the parent's value instead of merging. `x` and `x!` in one file is an
//!   error, and so is `x!` in a file that extends nothing;
//! - `extends` itself is not inherited. The chain holds at most [`MAX_EXTENDS`] `extends` links
//!   (so at most 11 files); cycles and paths leaving the repository are refused.

mod dockerfile;
mod hash;
mod merge;
mod parse;
pub mod recipes;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use crate::core::config::SessionMode;

pub use hash::sha256_hex;

/// Where a project's Podfile is looked for, in this order (paths inside the repository).
pub const PODFILE_CANDIDATES: [&str; 2] = [".podspawn/podfile.yaml", "podfile.yaml"];

/// How many `extends` links a chain may have (the root file plus at most this many parents).
pub const MAX_EXTENDS: usize = 10;

/// The two placeholders expanded in `env` values.
pub const PLACEHOLDER_USER: &str = "${PODSPAWN_USER}";
pub const PLACEHOLDER_PROJECT: &str = "${PODSPAWN_PROJECT}";

// ---------------------------------------------------------------------------------------------
// Reading files.

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// There is no such file (for [`load`]: try the next candidate).
    NotFound,
    /// Anything else (permissions, not UTF-8, a symlink leaving the repository, …), for people.
    Other(String),
}

/// Read access to one repository. `path` is always relative to the repository root, normalized
/// (`/`-separated, no `.` or `..` components, no leading `/`): this module never asks for a path
/// outside the repository.
///
/// A production implementation must still make sure a symlink inside the checkout cannot lead
/// out of it (e.g. open each component with `O_NOFOLLOW`, or canonicalize and check the prefix),
/// and report such a file as [`ReadError::Other`].
pub trait RepoFiles {
    fn read(&self, path: &str) -> Result<String, ReadError>;
}

/// An in-memory repository: path → content (tests, and callers that already hold the files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemFiles(pub BTreeMap<String, String>);

impl MemFiles {
    pub fn new<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> MemFiles {
        MemFiles(
            files
                .into_iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        )
    }
}

impl RepoFiles for MemFiles {
    fn read(&self, path: &str) -> Result<String, ReadError> {
        self.0.get(path).cloned().ok_or(ReadError::NotFound)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// What kind of failure, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read (I/O; may be transient).
    Read,
    /// The content is wrong: syntax, a bad value, a bad `extends` chain. Fixing the file fixes it.
    Invalid,
}

/// An error that names the file (relative to the repository), the line and the key path, and
/// says how to fix it. Displayed like the configuration's errors:
/// `podfile.yaml: line 4: packages[1]: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodfileError {
    pub kind: ErrorKind,
    pub file: String,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based.
    pub column: Option<usize>,
    /// e.g. `services[0].volumes[1]`, `env.MY_VAR`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for PodfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ": line {l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PodfileError {}

// ---------------------------------------------------------------------------------------------
// The resolved model.

/// One entry of `packages`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Package {
    /// A Debian/Ubuntu package installed with apt-get.
    Apt(String),
    /// `name@version`, installed by the recipe of [`recipes::RECIPES`].
    Recipe { name: String, version: String },
}

impl Package {
    /// The name without a version.
    pub fn name(&self) -> &str {
        match self {
            Package::Apt(n) | Package::Recipe { name: n, .. } => n,
        }
    }
}

impl fmt::Display for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Package::Apt(n) => f.write_str(n),
            Package::Recipe { name, version } => write!(f, "{name}@{version}"),
        }
    }
}

/// A companion container (postgres, redis, …), reachable from the session by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`: a DNS label, used as the network alias.
    pub name: String,
    pub image: String,
    /// Values may hold the placeholders; see [`Service::env_for`].
    pub env: BTreeMap<String, String>,
    /// Informational (the service is reached over the session's network, nothing is published).
    pub ports: Vec<u16>,
    pub volumes: Vec<Volume>,
}

impl Service {
    /// The service's environment with the placeholders expanded.
    pub fn env_for(&self, user: &str, project: &str) -> BTreeMap<String, String> {
        expand_map(&self.env, user, project)
    }

    /// The volumes that are host bind mounts (refuse them unless the admin allows binds).
    pub fn host_binds(&self) -> impl Iterator<Item = &Volume> {
        self.volumes
            .iter()
            .filter(|v| matches!(v.source, VolumeSource::HostBind(_)))
    }
}

/// One `volumes:` entry of a service: `source:target[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: VolumeSource,
    /// Absolute path inside the service container.
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An engine volume (`^[A-Za-z0-9][A-Za-z0-9_.-]*$`), kept across sessions. The caller
    /// should namespace it per user and project before it reaches the engine.
    Named(String),
    /// An absolute host path: refused unless the admin's configuration allows binds.
    HostBind(String),
}

/// `resources:` — `None` means "not set by the Podfile" (the server's defaults apply).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// Number of CPUs; 0 means unlimited.
    pub cpus: Option<f64>,
    /// Bytes; 0 means unlimited.
    pub memory: Option<u64>,
}

/// A resolved Podfile: every file of the `extends` chain validated and merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Podfile {
    pub base: String,
    /// In merge order, de-duplicated.
    pub packages: Vec<Package>,
    /// Values may hold the placeholders; see [`Podfile::env_for`].
    pub env: BTreeMap<String, String>,
    pub services: Vec<Service>,
    pub on_create: Vec<String>,
    pub on_start: Vec<String>,
    pub extra_commands: Vec<String>,
    pub shell: Option<String>,
    pub resources: Resources,
    pub mode: Option<SessionMode>,
    /// The files that made it, the root file first (for messages; not part of the image tag).
    pub files: Vec<String>,
}

impl Podfile {
    /// The session's environment with `${PODSPAWN_USER}` and `${PODSPAWN_PROJECT}` expanded
    /// (both names must already be validated).
    pub fn env_for(&self, user: &str, project: &str) -> BTreeMap<String, String> {
        expand_map(&self.env, user, project)
    }

    /// Every host bind mount of every service, as (service name, host path).
    pub fn host_binds(&self) -> Vec<(&str, &str)> {
        self.services
            .iter()
            .flat_map(|s| {
                s.host_binds().filter_map(move |v| match &v.source {
                    VolumeSource::HostBind(p) => Some((s.name.as_str(), p.as_str())),
                    VolumeSource::Named(_) => None,
                })
            })
            .collect()
    }

    /// The Dockerfile that builds the project's image (see the `dockerfile` module).
    pub fn dockerfile(&self) -> String {
        dockerfile::generate(self)
    }

    /// The full hex SHA-256 of the canonical form of this Podfile, the project name and the
    /// base image's ID (see [`Podfile::image_tag`]).
    pub fn content_hash(&self, project: &str, base_image_id: &str) -> String {
        hash::content_hash(self, project, base_image_id)
    }

    /// `podspawn-project-<project>:<12 hex>` — the same resolved content (whatever the key
    /// order, comments or split into files) on the same base image ID gives the same tag; any
    /// change to either gives a new one. `project` must pass `core::names::validate_project`.
    pub fn image_tag(&self, project: &str, base_image_id: &str) -> String {
        hash::image_tag(self, project, base_image_id)
    }
}

/// The image repository of a project's images (`podspawn-project-<name>`, with what Docker's
/// reference grammar refuses mapped away: `_` becomes `-`, trailing `-` dropped).
pub fn image_repository(project: &str) -> String {
    hash::image_repository(project)
}

/// Replaces the two placeholders in `value`.
pub fn expand(value: &str, user: &str, project: &str) -> String {
    value
        .replace(PLACEHOLDER_USER, user)
        .replace(PLACEHOLDER_PROJECT, project)
}

fn expand_map(
    env: &BTreeMap<String, String>,
    user: &str,
    project: &str,
) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| (k.clone(), expand(v, user, project)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/// Parses `path` (relative to the repository root) and everything it extends, validates every
/// file and merges them.
pub fn resolve(files: &dyn RepoFiles, path: &str) -> Result<Podfile, PodfileError> {
    merge::resolve(files, path)
}

/// Finds the project's Podfile ([`PODFILE_CANDIDATES`], in order) and resolves it; `Ok(None)`
/// when the repository has none (the project then uses the default image).
pub fn load(files: &dyn RepoFiles) -> Result<Option<Podfile>, PodfileError> {
    for candidate in PODFILE_CANDIDATES {
        match files.read(candidate) {
            Err(ReadError::NotFound) => continue,
            Err(ReadError::Other(e)) => {
                return Err(PodfileError {
                    kind: ErrorKind::Read,
                    file: candidate.to_string(),
                    line: None,
                    column: None,
                    key: None,
                    message: format!("cannot read: {e}"),
                })
            }
            Ok(text) => return merge::resolve_text(files, candidate, text).map(Some),
        }
    }
    Ok(None)
}
