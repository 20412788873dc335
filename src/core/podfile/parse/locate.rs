//! Key paths and their locations in the text (file, line, column) for error messages.
use super::*;

// ---------------------------------------------------------------------------------------------
// Key paths and locations.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::core::podfile) enum Seg {
    Key(String),
    Index(usize),
}

/// Does an error point at a key or at its value?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::core::podfile) enum Target {
    Key,
    Value,
}

/// Path for people: `services[0].volumes[1]`, `env["odd key"]`.
pub(in crate::core::podfile) fn display_path(segs: &[Seg]) -> Option<String> {
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

pub(in crate::core::podfile) const HERE: &str = "\u{1}podspawn-locate";

/// The (line, column) of the key or value at `at` in `text`, both 1-based; `None` when it cannot
/// be found (then the error names the key but no line).
pub(in crate::core::podfile) fn locate(
    text: &str,
    at: &[Seg],
    target: Target,
) -> Option<(usize, usize)> {
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
pub(in crate::core::podfile) fn raw_scalar(text: &str, at: &[Seg]) -> Option<String> {
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
pub(in crate::core::podfile) struct Locator<'a> {
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
pub(in crate::core::podfile) struct KeyProbe<'a> {
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
pub(in crate::core::podfile) struct Here;

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
