//! The YAML tree as read, with every node's position, so errors can name the line.
use super::*;

// ---------------------------------------------------------------------------------------------
// The tree.

#[derive(Debug, Clone, PartialEq)]
pub(in crate::core::podfile) enum Node {
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
    pub(in crate::core::podfile) fn kind(&self) -> &'static str {
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

pub(in crate::core::podfile) struct NodeVisitor;

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
pub(in crate::core::podfile) struct KeySeed<'a> {
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
    pub(in crate::core::podfile) fn check<E: de::Error>(&self, key: String) -> Result<String, E> {
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
