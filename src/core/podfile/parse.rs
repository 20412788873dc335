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

// ---------------------------------------------------------------------------------------------
// The tree.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    /// Strings and booleans, as written.
    Scalar(String),
    /// A plain number, as serde_norway reads it (`3.10` reads as `3.1`: see [`raw_scalar`]).
    Number(String),
    Seq(Vec<Node>),
    /// In file order; keys are unique.
    Map(Vec<(String, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Scalar(_) | Node::Number(_) => "a single value",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed { seen: &out })? {
            let value = map.next_value::<Node>()?;
            out.push((key, value));
        }
        Ok(Node::Map(out))
    }
    /// An unquoted value starting with `!` is a YAML tag: `- !curl` is read as the text `!curl`
    /// (what the writer meant); a tag in front of a value (`!x foo`) as `!x foo`.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        let (tag, variant) = data.variant::<String>()?;
        match de::VariantAccess::newtype_variant::<Node>(variant)? {
            Node::Null => Ok(Node::Scalar(format!("!{tag}"))),
            Node::Scalar(s) if s.is_empty() => Ok(Node::Scalar(format!("!{tag}"))),
            Node::Scalar(s) | Node::Number(s) => Ok(Node::Scalar(format!("!{tag} {s}"))),
            _ => Err(de::Error::custom(format!(
                "YAML tags (!{tag}) are not supported here: put quotes around a value that \
                 starts with !"
            ))),
        }
    }
}

/// A mapping key: a scalar, not seen before in this mapping (so a duplicate is reported at the
/// repeated key's line).
struct KeySeed<'a> {
    seen: &'a [(String, Node)],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        // The checks run inside the visitor, so the error carries the key's position.
        d.deserialize_any(self)
    }
}

impl KeySeed<'_> {
    fn check<E: de::Error>(&self, key: String) -> Result<String, E> {
        if self.seen.iter().any(|(k, _)| *k == key) {
            return Err(E::custom(format!(
                "duplicate key {key:?}: each key may appear only once here; remove or merge the \
                 repeated entry"
            )));
        }
        Ok(key)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.check(String::new())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.check(v.to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom("a key must be a plain name, not a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom(
            "a key must be a plain name, not a mapping",
        ))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<String, A::Error> {
        match NodeVisitor.visit_enum(data)? {
            Node::Scalar(s) | Node::Number(s) => self.check(s),
            other => Err(de::Error::custom(format!(
                "a key must be a plain name, not {}",
                other.kind()
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Key paths and locations.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Does an error point at a key or at its value?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Key,
    Value,
}

/// Path for people: `services[0].volumes[1]`, `env["odd key"]`.
pub(super) fn display_path(segs: &[Seg]) -> Option<String> {
    if segs.is_empty() {
        return None;
    }
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                let simple = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '!'));
                if simple {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                } else {
                    out.push_str(&format!("[{k:?}]"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    Some(out)
}

const HERE: &str = "\u{1}podspawn-locate";

/// The (line, column) of the key or value at `at` in `text`, both 1-based; `None` when it cannot
/// be found (then the error names the key but no line).
pub(super) fn locate(text: &str, at: &[Seg], target: Target) -> Option<(usize, usize)> {
    let de = serde_norway::Deserializer::from_str(text);
    let locator = Locator {
        at,
        target,
        raw: false,
    };
    match locator.deserialize(de) {
        // serde_norway may put the path in front of the message.
        Err(e) if e.to_string().contains(HERE) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// The scalar at `at` exactly as written (`3.10`, `007`), for values read as numbers.
pub(super) fn raw_scalar(text: &str, at: &[Seg]) -> Option<String> {
    let de = serde_norway::Deserializer::from_str(text);
    let locator = Locator {
        at,
        target: Target::Value,
        raw: true,
    };
    locator.deserialize(de).ok().flatten()
}

/// Walks to `at`; there, fails with [`HERE`] (so the error carries the position) or, with
/// `raw`, reads the scalar's text.
struct Locator<'a> {
    at: &'a [Seg],
    target: Target,
    raw: bool,
}

impl<'de> DeserializeSeed<'de> for Locator<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        match (self.at.is_empty(), self.raw) {
            (true, false) => d.deserialize_any(Here).map(|()| None),
            (true, true) => String::deserialize(d).map(Some),
            (false, _) => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Locator<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let Some(Seg::Key(want)) = self.at.first() else {
            return Ok(None);
        };
        let stop_at_key = self.at.len() == 1 && self.target == Target::Key;
        while let Some(key) = map.next_key_seed(KeyProbe {
            stop_at: stop_at_key.then_some(want.as_str()),
        })? {
            if key == *want {
                let found = map.next_value_seed(Locator {
                    at: &self.at[1..],
                    target: self.target,
                    raw: self.raw,
                })?;
                // serde_norway wants a mapping read to its end.
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                return Ok(found);
            }
            map.next_value::<de::IgnoredAny>()?;
        }
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        let Some(Seg::Index(want)) = self.at.first() else {
            return Ok(None);
        };
        let mut i = 0;
        loop {
            if i == *want {
                let found = seq
                    .next_element_seed(Locator {
                        at: &self.at[1..],
                        target: self.target,
                        raw: self.raw,
                    })?
                    .flatten();
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                return Ok(found);
            }
            if seq.next_element::<de::IgnoredAny>()?.is_none() {
                return Ok(None);
            }
            i += 1;
        }
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Option<String>, A::Error> {
        let (_, variant) = data.variant::<de::IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
    // A scalar where a mapping or list was expected: the path is not there.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }
}

/// Reads a key as text; fails (with the key's position) when it is `stop_at`.
struct KeyProbe<'a> {
    stop_at: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if self.stop_at == Some(v) {
            return Err(E::custom(HERE));
        }
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.visit_str("")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<String, A::Error> {
        let (tag, variant) = data.variant::<String>()?;
        de::VariantAccess::newtype_variant::<de::IgnoredAny>(variant)?;
        self.visit_str(&format!("!{tag}"))
    }
}

/// Fails at whatever node it is asked to read, so the error carries that node's position.
struct Here;

macro_rules! here {
    ($($name:ident($($t:ty)?)),*) => {
        $(fn $name<E: de::Error>(self $(, _: $t)?) -> Result<(), E> { Err(E::custom(HERE)) })*
    };
}

impl<'de> Visitor<'de> for Here {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("anything")
    }
    here!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
        visit_unit(),
        visit_none()
    );
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

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

struct Ctx<'a> {
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
        .map(|v| (edit_distance(&u, v), *v))
        .filter(|(d, _)| *d <= u.len().div_ceil(3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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

// ---------------------------------------------------------------------------------------------
// Values.

/// A single value as text; `what` describes it for the message.
fn scalar<'n>(cx: &Ctx, at: &[Seg], node: &'n Node, what: &str) -> Result<&'n str, PodfileError> {
    match node {
        Node::Scalar(s) | Node::Number(s) => Ok(s),
        other => Err(cx.err(
            at,
            Target::Value,
            format!("expected {what}, found {}", other.kind()),
        )),
    }
}

/// A list (null is an empty one).
fn list<'n>(cx: &Ctx, at: &[Seg], node: &'n Node, what: &str) -> Result<&'n [Node], PodfileError> {
    match node {
        Node::Seq(items) => Ok(items),
        Node::Null => Ok(&[]),
        other => Err(cx.err(
            at,
            Target::Value,
            format!("expected a list of {what}, found {}", other.kind()),
        )),
    }
}

fn no_control(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// An image reference: letters, digits and `. _ - / : @`, not starting with `-`.
pub(super) fn check_image(s: &str) -> Result<String, ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '.', '/', ':', '@'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'));
    if ok {
        Ok(s.to_string())
    } else if s.is_empty() {
        Err(ValueError::from(
            "empty image: give an image reference, e.g. ubuntu:24.04".to_string(),
        ))
    } else {
        Err(ValueError::from(format!(
            "invalid image {s:?}: give an image reference such as ubuntu:24.04 or \
             registry.example.com/team/dev:1 (letters, digits and . _ - / : @ only)"
        )))
    }
}

fn image(cx: &Ctx, at: &[Seg], node: &Node) -> Result<String, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "an image reference such as ubuntu:24.04")?,
    };
    check_image(s).map_err(|m| cx.err(at, Target::Value, m))
}

fn extends_path(cx: &Ctx, at: &[Seg], node: &Node) -> Result<String, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "a path such as ./base.yaml")?,
    };
    let fail = |m: String| Err(cx.err(at, Target::Value, m));
    if s.is_empty() {
        return fail(
            "empty extends: give the path of another Podfile in the repository, e.g. \
             ./base.yaml, or remove the key"
                .to_string(),
        );
    }
    if s.contains("://") || s.starts_with("github.com/") {
        return fail(format!(
            "extends {s:?}: only a Podfile inside the repository can be extended (nothing is \
             fetched from the network); copy it into the repository and write e.g. \
             extends: ./base.yaml"
        ));
    }
    if s.starts_with('/') {
        return fail(format!(
            "extends {s:?} is absolute: write a path relative to this file, inside the \
             repository, e.g. ./base.yaml"
        ));
    }
    if !no_control(s) || s.contains('\\') {
        return fail(format!(
            "extends {s:?} contains a control character or a backslash: write a plain relative \
             path such as ./base.yaml"
        ));
    }
    if !(s.ends_with(".yaml") || s.ends_with(".yml")) {
        return fail(format!(
            "extends {s:?} is not a path to a .yaml file: named bases and templates are not \
             supported; write the path of a Podfile in the repository, e.g. ./base.yaml"
        ));
    }
    Ok(s.to_string())
}

fn shell(cx: &Ctx, at: &[Seg], node: &Node) -> Result<String, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "an absolute path such as /bin/bash")?,
    };
    if s.is_empty() {
        return Err(cx.err(
            at,
            Target::Value,
            "empty path: give an absolute path, e.g. /bin/bash".to_string(),
        ));
    }
    if !s.starts_with('/') {
        return Err(cx.err(
            at,
            Target::Value,
            format!("path {s:?} is not absolute: give a full path starting with /, e.g. /bin/bash"),
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.err(
            at,
            Target::Value,
            format!(
                "shell {s:?} contains a space or a control character: give the shell's path \
                 only, e.g. /bin/bash"
            ),
        ));
    }
    Ok(s.to_string())
}

fn mode(cx: &Ctx, at: &[Seg], node: &Node) -> Result<SessionMode, PodfileError> {
    let s = match node {
        Node::Null => "",
        n => scalar(cx, at, n, "a session mode such as grace-period")?,
    };
    SessionMode::parse(s.trim()).ok_or_else(|| {
        cx.err(
            at,
            Target::Value,
            format!(
                "invalid session mode {s:?}: use one of grace-period, destroy-on-disconnect, \
                 named (alias persistent), ttl"
            ),
        )
    })
}

/// The rules and messages of the configuration's `cpus` (its parser is private there).
pub(super) fn parse_cpus(text: &str) -> Result<f64, ValueError> {
    const HINT: &str = "give a number of CPUs, e.g. 2 or 0.5 (0 = unlimited)";
    let t = text.trim();
    if t.is_empty() {
        return Err(ValueError::from(format!("empty value: {HINT}")));
    }
    let n: f64 = t
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| format!("invalid number of CPUs {text:?}: {HINT}"))?;
    if n < 0.0 {
        return Err(ValueError::from(format!(
            "invalid number of CPUs {text:?}: cannot be negative; {HINT}"
        )));
    }
    if n > 1024.0 {
        return Err(ValueError::from(format!(
            "invalid number of CPUs {text:?}: at most 1024 are allowed; {HINT}"
        )));
    }
    Ok(if n == 0.0 { 0.0 } else { n })
}

fn resources(cx: &Ctx, at: &[Seg], node: &Node, layer: &mut Layer) -> Result<(), PodfileError> {
    let entries = match node {
        Node::Map(m) => m.as_slice(),
        Node::Null => &[],
        other => {
            return Err(cx.err(
                at,
                Target::Value,
                format!(
                    "expected a mapping such as {{cpus: 2, memory: 4g}}, found {}",
                    other.kind()
                ),
            ))
        }
    };
    for (k, v) in entries {
        let kat = with(at, Seg::Key(k.clone()));
        match k.as_str() {
            "cpus" => {
                let s = match v {
                    Node::Null => "",
                    n => scalar(cx, &kat, n, "a number of CPUs such as 2 or 0.5")?,
                };
                layer.cpus = Some(parse_cpus(s).map_err(|m| cx.err(&kat, Target::Value, m))?);
            }
            "memory" => {
                let s = match v {
                    Node::Null => "",
                    n => scalar(cx, &kat, n, "a size such as 512m or 2g")?,
                };
                layer.memory =
                    Some(parse_size(s).map_err(|m| cx.err(&kat, Target::Value, m.to_string()))?);
            }
            _ => {
                let mut m = format!("unknown key {k:?} — valid keys here: cpus, memory");
                if let Some(s) = suggestion(k, &["cpus", "memory"]) {
                    m.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(cx.err(&kat, Target::Key, m));
            }
        }
    }
    Ok(())
}

/// A Debian package name (Debian policy §5.6.1): lowercase letters, digits, `+ - .`, at least
/// two characters, starting with a letter or digit.
pub(super) fn is_apt_name(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

fn packages(cx: &Ctx, at: &[Seg], node: &Node) -> Result<Vec<At<PackageItem>>, PodfileError> {
    let mut out: Vec<At<PackageItem>> = Vec::new();
    for (i, item) in list(cx, at, node, "package names such as git or node@20")?
        .iter()
        .enumerate()
    {
        let iat = with(at, Seg::Index(i));
        let s = scalar(cx, &iat, item, "a package name such as git or node@20")?.trim();
        let fail = |m: String| Err(cx.err(&iat, Target::Value, m));
        let value = if let Some(name) = s.strip_prefix('!') {
            // `!node` or `!node@20`.
            let bare = name.split_once('@').map_or(name, |(n, _)| n);
            if !is_apt_name(bare) && recipes::find(bare).is_none() {
                return fail(format!(
                    "{s:?}: after ! give the name of an inherited package, e.g. \"!vim\""
                ));
            }
            PackageItem::Remove(name.to_string())
        } else if let Some((name, version)) = s.split_once('@') {
            match recipes::check(name, version) {
                Ok(name) => PackageItem::Add(Package::Recipe {
                    name: name.to_string(),
                    version: version.to_string(),
                }),
                Err(m) => return fail(m.to_string()),
            }
        } else if is_apt_name(s) {
            PackageItem::Add(Package::Apt(s.to_string()))
        } else {
            return fail(format!(
                "invalid package name {s:?}: give a Debian/Ubuntu package name (lowercase \
                 letters, digits, + - ., at least two characters, e.g. build-essential), or \
                 name@version for {}",
                recipes::known_list()
            ));
        };
        // Within one file: no repeats, and one version per recipe.
        for prev in &out {
            let same = match (&prev.value, &value) {
                (PackageItem::Add(a), PackageItem::Add(b)) => {
                    a == b || (a.name() == b.name() && matches!(b, Package::Recipe { .. }))
                }
                (PackageItem::Remove(a), PackageItem::Remove(b)) => a == b,
                (PackageItem::Add(a), PackageItem::Remove(b))
                | (PackageItem::Remove(b), PackageItem::Add(a)) => a.name() == b,
            };
            if same {
                return fail(format!(
                    "{s:?} conflicts with an earlier entry of this list (the same package, or \
                     another version of it): keep one"
                ));
            }
        }
        out.push(At { value, at: iat });
    }
    Ok(out)
}

pub(super) fn check_env_name(s: &str) -> Result<(), ValueError> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && s.len() <= 256 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(ValueError::from(format!(
            "invalid environment variable name {s:?}: use letters, digits and _, not starting \
             with a digit, e.g. MY_VAR"
        )))
    }
}

/// Every `${…}` in `value` must be one of the two placeholders.
pub(super) fn check_placeholders(value: &str) -> Result<(), ValueError> {
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        let after = &rest[i..];
        let Some(end) = after.find('}') else {
            return Err(ValueError::from(format!(
                "unclosed \"${{\" in {value:?}: write {PLACEHOLDER_USER} or {PLACEHOLDER_PROJECT}"
            )));
        };
        let placeholder = &after[..=end];
        if placeholder != PLACEHOLDER_USER && placeholder != PLACEHOLDER_PROJECT {
            return Err(ValueError::from(format!(
                "unknown placeholder {placeholder}: only {PLACEHOLDER_USER} and \
                 {PLACEHOLDER_PROJECT} are expanded (other variables are not; the value is \
                 passed as written)"
            )));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// `allow_remove`: an empty value means "remove the inherited variable" (top-level env) rather
/// than an empty string (a service's env).
fn env(
    cx: &Ctx,
    at: &[Seg],
    node: &Node,
    allow_remove: bool,
) -> Result<Vec<(String, Option<String>)>, PodfileError> {
    let entries = match node {
        Node::Map(m) => m.as_slice(),
        Node::Null => &[],
        other => {
            return Err(cx.err(
                at,
                Target::Value,
                format!(
                    "expected a mapping of variable name to value, e.g. {{EDITOR: vim}}, found {}",
                    other.kind()
                ),
            ))
        }
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let kat = with(at, Seg::Key(k.clone()));
        check_env_name(k).map_err(|m| cx.err(&kat, Target::Key, m))?;
        let value = match v {
            Node::Null => String::new(),
            // As written: `3.10` stays 3.10, `007` stays 007.
            Node::Number(n) => raw_scalar(cx.text, &kat).unwrap_or_else(|| n.clone()),
            n => scalar(cx, &kat, n, "a value (a string, number or true/false)")?.to_string(),
        };
        if value.contains('\0') {
            return Err(cx.err(
                &kat,
                Target::Value,
                format!("the value of {k} contains a NUL character, which no environment holds"),
            ));
        }
        check_placeholders(&value).map_err(|m| cx.err(&kat, Target::Value, m))?;
        let value = if value.is_empty() && allow_remove {
            None
        } else {
            Some(value)
        };
        out.push((k.clone(), value));
    }
    Ok(out)
}

fn commands(cx: &Ctx, at: &[Seg], node: &Node) -> Result<Vec<String>, PodfileError> {
    let items: Vec<(Vec<Seg>, &Node)> = match node {
        Node::Scalar(_) | Node::Number(_) => vec![(at.to_vec(), node)],
        n => list(cx, at, n, "commands")?
            .iter()
            .enumerate()
            .map(|(i, c)| (with(at, Seg::Index(i)), c))
            .collect(),
    };
    let mut out = Vec::new();
    for (cat, item) in items {
        let c = scalar(cx, &cat, item, "a shell command")?;
        if c.trim().is_empty() {
            return Err(cx.err(
                &cat,
                Target::Value,
                "empty command: write a shell command or remove the entry".to_string(),
            ));
        }
        if c.contains('\0') {
            return Err(cx.err(
                &cat,
                Target::Value,
                "the command contains a NUL character".to_string(),
            ));
        }
        out.push(c.to_string());
    }
    Ok(out)
}

/// A service name: a DNS label (it becomes the service's network alias and part of a container
/// name).
pub(super) fn check_service_name(s: &str) -> Result<(), ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ValueError::from(format!(
            "invalid service name {s:?}: use 1-32 lowercase letters, digits or '-', starting and \
             ending with a letter or digit, e.g. postgres (it becomes the service's host name)"
        )))
    }
}

const SERVICE_KEYS: [&str; 5] = ["name", "image", "env", "ports", "volumes"];

/// `services:` as a list of `{name, image, …}` (the reference's form) or as a mapping
/// `name: {image, …}`.
fn services(cx: &Ctx, at: &[Seg], node: &Node) -> Result<Vec<At<ServiceItem>>, PodfileError> {
    let mut out: Vec<At<ServiceItem>> = Vec::new();
    let mut push = |item: At<ServiceItem>, name_at: &[Seg]| -> Result<(), PodfileError> {
        let name = match &item.value {
            ServiceItem::Define(s) => &s.name,
            ServiceItem::Remove(n) => n,
        };
        let dup = out.iter().any(|o| match &o.value {
            ServiceItem::Define(s) => s.name == *name,
            ServiceItem::Remove(n) => n == name,
        });
        if dup {
            return Err(cx.err(
                name_at,
                Target::Value,
                format!("service {name:?} appears twice: service names must be unique"),
            ));
        }
        out.push(item);
        Ok(())
    };
    match node {
        Node::Null => {}
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let iat = with(at, Seg::Index(i));
                let Node::Map(fields) = item else {
                    return Err(cx.err(
                        &iat,
                        Target::Value,
                        format!(
                            "expected a service such as {{name: postgres, image: postgres:16}}, \
                             found {}",
                            item.kind()
                        ),
                    ));
                };
                let name_at = with(&iat, Seg::Key("name".into()));
                let name =
                    match fields.iter().find(|(k, _)| k == "name") {
                        Some((_, n)) => scalar(cx, &name_at, n, "a service name such as postgres")?,
                        None => return Err(cx.err(
                            &iat,
                            Target::Value,
                            "the service has no name: add \"name: postgres\" (its host name on \
                             the session's network)"
                                .to_string(),
                        )),
                    };
                let item = service(cx, &iat, name, &name_at, fields, true)?;
                push(item, &name_at)?;
            }
        }
        Node::Map(entries) => {
            for (name, body) in entries {
                let sat = with(at, Seg::Key(name.clone()));
                let fields: &[(String, Node)] = match body {
                    Node::Map(f) => f,
                    Node::Null => &[],
                    other => {
                        return Err(cx.err(
                            &sat,
                            Target::Value,
                            format!(
                                "expected the service's settings such as {{image: postgres:16}}, \
                                 found {}",
                                other.kind()
                            ),
                        ))
                    }
                };
                let item = service(cx, &sat, name, &sat, fields, false)?;
                push(item, &sat)?;
            }
        }
        other => {
            return Err(cx.err(
                at,
                Target::Value,
                format!(
                    "expected a list of services such as [{{name: postgres, image: postgres:16}}], \
                     found {}",
                    other.kind()
                ),
            ))
        }
    }
    Ok(out)
}

fn service(
    cx: &Ctx,
    at: &[Seg],
    name: &str,
    name_at: &[Seg],
    fields: &[(String, Node)],
    name_field: bool,
) -> Result<At<ServiceItem>, PodfileError> {
    let name_target = if name_field {
        Target::Value
    } else {
        Target::Key
    };
    if let Some(removed) = name.strip_prefix('!') {
        check_service_name(removed).map_err(|m| cx.err(name_at, name_target, m))?;
        if let Some((k, _)) = fields.iter().find(|(k, _)| k != "name") {
            return Err(cx.err(
                &with(at, Seg::Key(k.clone())),
                Target::Key,
                format!(
                    "\"!{removed}\" removes an inherited service and takes no other settings: \
                     remove {k}"
                ),
            ));
        }
        return Ok(At {
            value: ServiceItem::Remove(removed.to_string()),
            at: name_at.to_vec(),
        });
    }
    check_service_name(name).map_err(|m| cx.err(name_at, name_target, m))?;
    let mut svc = Service {
        name: name.to_string(),
        image: String::new(),
        env: BTreeMap::new(),
        ports: Vec::new(),
        volumes: Vec::new(),
    };
    let mut has_image = false;
    for (k, v) in fields {
        let kat = with(at, Seg::Key(k.clone()));
        match k.as_str() {
            "name" if name_field => {}
            "image" => {
                svc.image = image(cx, &kat, v)?;
                has_image = true;
            }
            "env" => {
                svc.env = env(cx, &kat, v, false)?
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect();
            }
            "ports" => {
                for (i, p) in list(cx, &kat, v, "port numbers such as 5432")?
                    .iter()
                    .enumerate()
                {
                    let pat = with(&kat, Seg::Index(i));
                    let s = scalar(cx, &pat, p, "a port number such as 5432")?;
                    match s.trim().parse::<u16>() {
                        Ok(n) if n > 0 => svc.ports.push(n),
                        _ => {
                            return Err(cx.err(
                                &pat,
                                Target::Value,
                                format!("invalid port {s:?}: give a number from 1 to 65535"),
                            ))
                        }
                    }
                }
            }
            "volumes" => {
                for (i, p) in list(
                    cx,
                    &kat,
                    v,
                    "volumes such as pgdata:/var/lib/postgresql/data",
                )?
                .iter()
                .enumerate()
                {
                    let vat = with(&kat, Seg::Index(i));
                    let s = scalar(
                        cx,
                        &vat,
                        p,
                        "a volume such as pgdata:/var/lib/postgresql/data",
                    )?;
                    let vol = parse_volume(s).map_err(|m| cx.err(&vat, Target::Value, m))?;
                    if svc.volumes.iter().any(|o| o.target == vol.target) {
                        return Err(cx.err(
                            &vat,
                            Target::Value,
                            format!("two volumes are mounted at {}: keep one", vol.target),
                        ));
                    }
                    svc.volumes.push(vol);
                }
            }
            _ => {
                let valid: Vec<&str> = SERVICE_KEYS
                    .iter()
                    .copied()
                    .filter(|k| name_field || *k != "name")
                    .collect();
                let mut m = format!("unknown key {k:?} — valid keys here: {}", valid.join(", "));
                if let Some(s) = suggestion(k, &valid) {
                    m.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(cx.err(&kat, Target::Key, m));
            }
        }
    }
    if !has_image {
        return Err(cx.err(
            name_at,
            name_target,
            format!("service {name:?} has no image: add e.g. \"image: postgres:16\""),
        ));
    }
    Ok(At {
        value: ServiceItem::Define(svc),
        at: name_at.to_vec(),
    })
}

fn clean_abs_path(p: &str) -> bool {
    p.starts_with('/') && no_control(p) && !p.contains(':') && !p.split('/').any(|c| c == "..")
}

/// `source:target[:ro|:rw]`: a named volume (`pgdata:/var/lib/postgresql/data`) or a host bind
/// (`/srv/data:/data`).
pub(super) fn parse_volume(s: &str) -> Result<Volume, ValueError> {
    const HINT: &str = "write name:/path for a named volume (kept across sessions), e.g. \
                        pgdata:/var/lib/postgresql/data, or /host/path:/path for a host bind \
                        mount (only if the admin allows binds), optionally followed by :ro";
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, opt] => {
            return Err(ValueError::from(format!(
                "invalid volume {s:?}: unknown option {opt:?} (use ro or rw); {HINT}"
            )))
        }
        _ => return Err(ValueError::from(format!("invalid volume {s:?}: {HINT}"))),
    };
    if !clean_abs_path(target) || target == "/" {
        return Err(ValueError::from(format!(
            "invalid volume {s:?}: the mount point {target:?} must be an absolute path other \
             than / without \"..\"; {HINT}"
        )));
    }
    let source = if source.starts_with('/') {
        if !clean_abs_path(source) {
            return Err(ValueError::from(format!(
                "invalid volume {s:?}: the host path {source:?} must be absolute without \"..\" \
                 or control characters; {HINT}"
            )));
        }
        VolumeSource::HostBind(source.to_string())
    } else {
        let ok = source.len() <= 64
            && source.starts_with(|c: char| c.is_ascii_alphanumeric())
            && source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(ValueError::from(format!(
                "invalid volume {s:?}: {source:?} is neither a volume name (letters, digits, \
                 _ . -, starting with a letter or digit) nor an absolute host path (relative \
                 host paths are not supported); {HINT}"
            )));
        }
        VolumeSource::Named(source.to_string())
    };
    Ok(Volume {
        source,
        target: target.to_string(),
        read_only,
    })
}
