//! Identifiers that cross process boundaries.
//!
//! Ids that enter the proof-of-execution byte layout are fixed width (`TaskId` is 16 bytes,
//! `NodeId` 32), so that a plain concatenation of them is unambiguous.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A request id allocated by the coordinator at intake: a dense counter, so allocation is a
/// pure function of the state (the next id is one past the highest accepted).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

/// The unit of dispatched work: a whole inference request (subtask 0) or one sub-task of the
/// general path. Its byte form is 16 bytes: request id (u64 BE), subtask index (u32 BE),
/// 4 zero bytes reserved.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct TaskId {
    pub request: RequestId,
    pub subtask: u32,
}

impl TaskId {
    pub fn whole(request: RequestId) -> Self {
        Self {
            request,
            subtask: 0,
        }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.request.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.subtask.to_be_bytes());
        out
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.request, self.subtask)
    }
}

/// A 32-byte digest (SHA-256), written as 64 lowercase hex characters in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        self.hex_bytes().iter().map(|&b| char::from(b)).collect()
    }

    /// The 64 hex characters on the stack: every event carries a few digests, and encoding
    /// them through an allocating char iterator showed in the coordinator's profile.
    fn hex_bytes(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex_bytes();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

/// Why a hex digest did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex characters (a SHA-256 digest), got {got:?}")]
pub struct HexDigestError {
    got: String,
}

impl FromStr for Hash32 {
    type Err = HexDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        // Table lookup rather than `hex::decode_to_slice` (5% of replay); same acceptance:
        // exactly 64 hex digits, either case.
        if s.len() != 64 || !crate::fast::decode_hex(s.as_bytes(), &mut out) {
            return Err(HexDigestError { got: s.to_owned() });
        }
        Ok(Self(out))
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex_bytes();
        s.serialize_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than `Cow<str>`, whose `Deserialize` always allocates a `String`.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Hash32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Hash32, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl JsonSchema for Hash32 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hash32".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "SHA-256 digest, 64 lowercase hex characters"
        })
    }
}

/// A node is named by the SHA-256 fingerprint of its RSA public key (DER, SPKI), so the id is
/// fixed width and cannot be claimed without the key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct NodeId(pub Hash32);

impl NodeId {
    pub fn from_public_key_der(der: &[u8]) -> Self {
        Self(Hash32::of(der))
    }
    pub fn to_bytes(self) -> [u8; 32] {
        self.0 .0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Twelve hex characters are plenty for humans; the log always carries all 64.
        write!(f, "node-{}", &self.0.to_hex()[..12])
    }
}

impl FromStr for NodeId {
    type Err = HexDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(NodeId)
    }
}

/// A credit account of a submitter (ParalleliX AI, or a general-path client).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct AccountId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_bytes_are_fixed_width_and_big_endian() {
        let t = TaskId {
            request: RequestId(0x0102_0304_0506_0708),
            subtask: 0x0a0b_0c0d,
        };
        assert_eq!(
            t.to_bytes(),
            [1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 0]
        );
    }

    #[test]
    fn hash32_round_trips_through_json_and_rejects_bad_hex() {
        let h = Hash32::of(b"abc");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(
            json,
            "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""
        );
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hash32>("\"abc\"").is_err());
        assert!("zz".repeat(32).parse::<Hash32>().is_err());
    }
}
