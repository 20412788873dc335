//! One Podfile → one validated [`Layer`]. The YAML is read by serde_norway into a small tree
//! ([`Node`], which refuses duplicate keys at the repeated key's line); the tree is then checked
//! by hand. Errors found on the tree get their line and column from a second, cheap pass over the
//! text ([`locate`]) that stops at the offending key or value, so every message can point at it.

use crate::core::config::ValueError;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::recipes;
use super::{
    ErrorKind, Package, PodfileError, Service, Volume, VolumeSource, PLACEHOLDER_PROJECT,
    PLACEHOLDER_USER,
};
use crate::core::config::{parse_size, SessionMode};

mod tree;
pub(super) use tree::*;
mod locate;
pub(super) use locate::*;
mod values;
pub(super) use values::*;

// ---------------------------------------------------------------------------------------------
// One file, validated.

/// A section that may be merged into the parent's or replace it (`key!:`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Section<T> {
    pub items: Vec<T>,
    /// Written `key!:`.
    pub replace: bool,
    /// The key as written, for messages (`packages` or `packages!`).
    pub key: String,
}

impl<T> Default for Section<T> {
    fn default() -> Self {
        Section {
            items: Vec::new(),
            replace: false,
            key: String::new(),
        }
    }
}

/// Something from the file together with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct At<T> {
    pub value: T,
    pub at: Vec<Seg>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum PackageItem {
    Add(Package),
    /// `!name`: remove an inherited package.
    Remove(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum ServiceItem {
    Define(Service),
    /// `name: "!x"`: remove an inherited service.
    Remove(String),
}

/// One file, validated on its own (before merging).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Layer {
    /// Relative to the repository root.
    pub file: String,
    /// The text, kept to locate errors found while merging.
    pub text: String,
    pub extends: Option<At<String>>,
    pub base: Option<String>,
    pub shell: Option<String>,
    pub mode: Option<SessionMode>,
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
    pub packages: Section<At<PackageItem>>,
    /// A value of `None` (written `""` or null) removes an inherited variable.
    pub env: Section<(String, Option<String>)>,
    pub services: Section<At<ServiceItem>>,
    pub on_create: Section<String>,
    pub on_start: Section<String>,
    pub extra_commands: Section<String>,
}

impl Layer {
    /// An error at `at` in this file.
    pub fn error(&self, at: &[Seg], target: Target, message: String) -> PodfileError {
        error_in(&self.file, &self.text, at, target, message)
    }
}

pub(super) fn error_in(
    file: &str,
    text: &str,
    at: &[Seg],
    target: Target,
    message: String,
) -> PodfileError {
    let loc = if at.is_empty() {
        None
    } else {
        locate(text, at, target)
    };
    PodfileError {
        kind: ErrorKind::Invalid,
        file: file.to_string(),
        line: loc.map(|l| l.0),
        column: loc.map(|l| l.1),
        key: display_path(at),
        message,
    }
}

/// The keys a Podfile may hold.
pub(super) const KEYS: [&str; 11] = [
    "base",
    "extends",
    "packages",
    "env",
    "services",
    "on_create",
    "on_start",
    "extra_commands",
    "shell",
    "resources",
    "mode",
];

/// The keys that may be written `key!:` (replace instead of merge).
pub(super) const BANG_KEYS: [&str; 6] = [
    "packages",
    "env",
    "services",
    "extra_commands",
    "on_create",
    "on_start",
];

/// Keys of the reference's Podfile that only make sense in its local `dev` mode.
const LOCAL_ONLY_KEYS: [&str; 7] = [
    "name",
    "branch",
    "dotfiles",
    "repos",
    "ports",
    "mount",
    "workspace",
];

pub(in crate::core::podfile) struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, at: &[Seg], target: Target, message: impl std::fmt::Display) -> PodfileError {
        error_in(self.file, self.text, at, target, message.to_string())
    }
}

fn with(at: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut v = at.to_vec();
    v.push(seg);
    v
}

/// Parses and validates one file.
pub(super) fn parse_layer(file: &str, text: &str) -> Result<Layer, PodfileError> {
    let cx = Ctx { file, text };
    let root = match serde_norway::from_str::<Node>(text) {
        Ok(n) => n,
        Err(e) => return Err(syntax_error(&e, file)),
    };
    let entries = match root {
        Node::Null => Vec::new(),
        Node::Map(m) => m,
        other => {
            return Err(PodfileError {
                kind: ErrorKind::Invalid,
                file: file.to_string(),
                line: Some(1),
                column: Some(1),
                key: None,
                message: format!(
                    "a Podfile is a YAML mapping of keys such as \"base: ubuntu:24.04\" and \
                     \"packages: [git, curl]\", but this file holds {}",
                    other.kind()
                ),
            })
        }
    };

    let mut layer = Layer {
        file: file.to_string(),
        text: text.to_string(),
        ..Layer::default()
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &entries {
        let at = vec![Seg::Key(key.clone())];
        let (name, bang) = match key.strip_suffix('!') {
            Some(n) => (n, true),
            None => (key.as_str(), false),
        };
        if !KEYS.contains(&name) {
            return Err(cx.err(&at, Target::Key, unknown_key_message(key, name)));
        }
        if let Some(other) = seen.insert(name.to_string(), key.clone()) {
            return Err(cx.err(
                &at,
                Target::Key,
                format!(
                    "both {other:?} and {key:?} are set: write {name}: to add to the inherited \
                     value or {name}!: to replace it, not both"
                ),
            ));
        }
        if bang && !BANG_KEYS.contains(&name) {
            return Err(cx.err(
                &at,
                Target::Key,
                format!(
                    "{key:?}: only {} can be written with ! (replace instead of merge); a \
                     child's {name} always replaces its parent's, so write {name}:",
                    BANG_KEYS.map(|k| format!("{k}!")).join(", ")
                ),
            ));
        }
        match name {
            "base" => layer.base = Some(image(&cx, &at, value)?),
            "extends" => {
                layer.extends = Some(At {
                    value: extends_path(&cx, &at, value)?,
                    at: at.clone(),
                })
            }
            "shell" => layer.shell = Some(shell(&cx, &at, value)?),
            "mode" => layer.mode = Some(mode(&cx, &at, value)?),
            "resources" => resources(&cx, &at, value, &mut layer)?,
            "packages" => layer.packages = section(key, bang, packages(&cx, &at, value)?),
            "env" => layer.env = section(key, bang, env(&cx, &at, value, true)?),
            "services" => layer.services = section(key, bang, services(&cx, &at, value)?),
            "on_create" => layer.on_create = section(key, bang, commands(&cx, &at, value)?),
            "on_start" => layer.on_start = section(key, bang, commands(&cx, &at, value)?),
            "extra_commands" => {
                layer.extra_commands = section(key, bang, commands(&cx, &at, value)?)
            }
            _ => {}
        }
    }

    if layer.base.is_none() && layer.extends.is_none() {
        return Err(PodfileError {
            kind: ErrorKind::Invalid,
            file: file.to_string(),
            line: None,
            column: None,
            key: Some("base".to_string()),
            message: "neither base nor extends is set: add \"base: ubuntu:24.04\" (the image to \
                      build on) or \"extends: ./base.yaml\" (another Podfile in the repository)"
                .to_string(),
        });
    }
    if layer.extends.is_none() {
        // What only makes sense against a parent.
        for (key, bang) in [
            (&layer.packages.key, layer.packages.replace),
            (&layer.env.key, layer.env.replace),
            (&layer.services.key, layer.services.replace),
            (&layer.on_create.key, layer.on_create.replace),
            (&layer.on_start.key, layer.on_start.replace),
            (&layer.extra_commands.key, layer.extra_commands.replace),
        ] {
            if bang {
                let plain = key.trim_end_matches('!');
                return Err(cx.err(
                    &[Seg::Key(key.clone())],
                    Target::Key,
                    format!(
                        "{key} replaces an inherited value, but this file extends nothing: \
                         write {plain}:"
                    ),
                ));
            }
        }
        for item in &layer.packages.items {
            if let PackageItem::Remove(n) = &item.value {
                return Err(cx.err(
                    &item.at,
                    Target::Value,
                    format!(
                        "\"!{n}\" removes an inherited package, but this file extends nothing: \
                         remove the entry"
                    ),
                ));
            }
        }
        for item in &layer.services.items {
            if let ServiceItem::Remove(n) = &item.value {
                return Err(cx.err(
                    &item.at,
                    Target::Value,
                    format!(
                        "\"!{n}\" removes an inherited service, but this file extends nothing: \
                         remove the entry"
                    ),
                ));
            }
        }
        for (name, value) in &layer.env.items {
            if value.is_none() {
                return Err(cx.err(
                    &[Seg::Key(layer.env.key.clone()), Seg::Key(name.clone())],
                    Target::Value,
                    format!(
                        "{name} is empty: an empty value removes an inherited variable, but this \
                         file extends nothing; give a value or remove the entry"
                    ),
                ));
            }
        }
    }
    Ok(layer)
}

fn section<T>(key: &str, replace: bool, items: Vec<T>) -> Section<T> {
    Section {
        items,
        replace,
        key: key.to_string(),
    }
}

fn unknown_key_message(key: &str, name: &str) -> String {
    if LOCAL_ONLY_KEYS.contains(&name) {
        return format!(
            "{key:?} is a key of podspawn's local dev mode and has no meaning for a server \
             project: remove it (valid keys: {})",
            KEYS.join(", ")
        );
    }
    let mut m = format!("unknown key {key:?} — valid keys: {}", KEYS.join(", "));
    if let Some(s) = suggestion(name, &KEYS) {
        m.push_str(&format!(" (did you mean {s}?)"));
    }
    m
}

/// A valid key close to `unknown` (same up to case or `-`/`_`, or at most a third of its
/// letters changed).
pub(super) fn suggestion<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    let u = unknown.to_ascii_lowercase().replace('-', "_");
    valid
        .iter()
        .map(|v| (crate::core::config::edit_distance(&u, v), *v))
        .filter(|(d, _)| *d <= u.len().div_ceil(3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn syntax_error(e: &serde_norway::Error, file: &str) -> PodfileError {
    let loc = e.location();
    let mut raw = e.to_string();
    if let Some(l) = &loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if raw.ends_with(&suffix) {
            raw.truncate(raw.len() - suffix.len());
        }
    }
    // Our own messages (from the tree's visitors) are already complete.
    let ours = raw.starts_with("duplicate key")
        || raw.starts_with("a key must")
        || raw.contains("YAML tags");
    let message = if ours {
        raw
    } else if raw.contains("more than one document") {
        "the file contains more than one YAML document (a line \"---\" in the middle): keep a \
         single document"
            .to_string()
    } else {
        format!(
            "invalid YAML: {raw}; check the indentation (spaces, not tabs), the colons after \
             keys and the quoting near this line"
        )
    };
    PodfileError {
        kind: ErrorKind::Invalid,
        file: file.to_string(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        key: None,
        message,
    }
}
