//! Strict JSON: an object that names a key twice is refused.
//!
//! JSON parsers disagree on a repeated key (serde keeps the last, others
//! the first), so a frame such as `{"type":"ping","type":"send",…}` could
//! mean one thing to a proxy or log reader and another to the server. Every
//! REST body is checked here before it is decoded. A socket frame is
//! checked by its one typed parse (serde refuses a repeated tag or field,
//! and `protocol::ClientFrame`'s one map a repeated key); a refused frame
//! comes here for the words of its error.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// `Err` with the repeated key (or the syntax error) when `text` is not
/// JSON or holds an object with a repeated key, at any depth.
pub fn refuse_duplicate_keys(text: &str) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(text);
    Strict.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Walks a JSON value like `serde::de::IgnoredAny`, but keeps the keys of
/// the object it is in to compare them.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Strict)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A set, so that a body of thousands of keys is checked in linear
        // time; its keys borrowed from the text where they can be. (Socket
        // frames, one a message, no longer come here unless refused.)
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            map.next_value_seed(Strict)?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// A key as its text spells it: borrowed from the input, or owned when it
/// holds an escape (then its text is not the key).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object's key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        assert!(refuse_duplicate_keys(r#"{"type":"ping","type":"send"}"#).unwrap_err().contains("\"type\""));
        assert!(refuse_duplicate_keys(r#"{"a":[{"b":1,"b":2}]}"#).is_err());
        assert!(refuse_duplicate_keys(r#"{"cursors":{"c1":1,"c1":2}}"#).is_err());
        // Escapes are compared as the keys they spell.
        assert!(refuse_duplicate_keys(r#"{"type":1,"typ\u0065":2}"#).is_err());
        // Among many keys, early and late.
        let many = |repeat: &str| {
            let keys: Vec<String> = (0..16).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{{},\"{repeat}\":0}}", keys.join(","))
        };
        assert!(refuse_duplicate_keys(&many("k1")).is_err());
        assert!(refuse_duplicate_keys(&many("k11")).is_err());
        assert!(refuse_duplicate_keys(&many("other")).is_ok());
    }

    #[test]
    fn ordinary_json_passes() {
        assert!(refuse_duplicate_keys(r#"{"type":"send","body":"{\"x\":1,\"x\":2}","n":[1,2,{"a":null}]}"#).is_ok());
        assert!(refuse_duplicate_keys(r#"{"a":{"b":1},"b":{"a":1}}"#).is_ok());
        assert!(refuse_duplicate_keys("[]").is_ok());
    }

    #[test]
    fn malformed_json_is_refused() {
        assert!(refuse_duplicate_keys("{").is_err());
        assert!(refuse_duplicate_keys(r#"{"a":1} trailing"#).is_err());
    }
}
