//! Serde adapter: bytes as standard base64 (with padding) in JSON.

use base64::Engine as _;
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    // A visitor rather than `Cow<str>`, whose `Deserialize` always allocates a `String`: one
    // allocation per blob (the decoded bytes) instead of two.
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(E::custom)
        }
    }
    d.deserialize_str(V)
}
