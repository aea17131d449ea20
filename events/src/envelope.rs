//! The envelope: one header shape around every payload, and its JSON codec.
//!
//! On the wire an event is one JSON object:
//! `{"event_id", "type", "version", "recorded_at", "producer", "sequence", "correlation_id",
//! "causation_id", "data"}`. The header sits beside the payload rather than inside it, so a reader
//! can route, deduplicate and upcast without knowing the payload's shape. A record written by a
//! chaining coordinator also has `prev` (before `data`): its link in the log's hash chain
//! ([`crate::chain`]).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

pub use crate::decode_error::DecodeError;
use crate::event::Event;
use crate::ids::Hash32;
use crate::upcast::{Upcaster, UPCASTERS};

/// Who wrote an event and when; everything a reader needs apart from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub event_id: Uuid,
    /// The time the producer recorded it: the only clock a fold ever sees.
    pub recorded_at: DateTime<Utc>,
    /// A stable name of the writing process (e.g. `coordinator/1`).
    pub producer: String,
    /// Per-producer sequence number, dense from 0; a reader drops a repeated `(producer,
    /// sequence)` as a duplicate delivery.
    pub sequence: u64,
    /// The request or flow this event belongs to.
    pub correlation_id: Option<Uuid>,
    /// The event (or command) that caused this one.
    pub causation_id: Option<Uuid>,
    /// The record's link in the log's hash chain: SHA-256 of the record before it on the log
    /// ([`crate::chain::GENESIS`] for the first). Set by the coordinator's encoder, which
    /// alone sees the bytes in log order; `None` on records written before the chain.
    pub prev: Option<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub header: Header,
    pub event: Event,
}

impl Envelope {
    pub fn new(header: Header, event: impl Into<Event>) -> Self {
        Self {
            header,
            event: event.into(),
        }
    }

    /// Serializes to the wire form (compact JSON). Infallible: every payload is plain data.
    pub fn encode(&self) -> Vec<u8> {
        // Most events are a few hundred bytes: start there rather than grow from 128.
        let mut out = Vec::with_capacity(512);
        serde_json::to_writer(&mut out, self)
            .expect("event payloads are plain data and always serialize");
        out
    }

    /// Decodes the wire form, upcasting older payload versions first.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, UPCASTERS)
    }

    /// As [`Envelope::decode`], with an explicit upcaster chain (tests exercise the mechanism
    /// with chains of their own).
    pub fn decode_with(bytes: &[u8], upcasters: &[Upcaster]) -> Result<Self, DecodeError> {
        // The common case in one pass; anything it does not take (an older version, `data`
        // before `type`, any error) goes the general way below, which also words the errors.
        if let Some(env) = fast::decode(bytes) {
            return Ok(env);
        }
        Self::decode_general(bytes, upcasters)
    }

    /// The general decoder: the envelope with `data` as raw JSON first, then the payload
    /// (upcast first when older). Parses `data` twice, but handles every case and names
    /// errors precisely.
    fn decode_general(bytes: &[u8], upcasters: &[Upcaster]) -> Result<Self, DecodeError> {
        let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        let event_type = raw.event_type.as_ref();
        let current = Event::current_version(event_type)
            .ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
        let event = if raw.version == current {
            // The common path decodes straight from the borrowed bytes, with no JSON tree.
            Event::decode_current(event_type, raw.data.get())?
        } else if raw.version > current {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_owned(),
                version: raw.version,
                current,
            });
        } else {
            let value: serde_json::Value =
                serde_json::from_str(raw.data.get()).map_err(DecodeError::Envelope)?;
            let value = crate::upcast::upcast(upcasters, event_type, raw.version, current, value)?;
            Event::decode_value(event_type, value)?
        };
        Ok(Envelope {
            header: Header {
                event_id: raw.event_id,
                recorded_at: raw.recorded_at,
                producer: raw.producer.into_owned(),
                sequence: raw.sequence,
                correlation_id: raw.correlation_id,
                causation_id: raw.causation_id,
                prev: raw.prev,
            },
            event,
        })
    }
}

struct Data<'a>(&'a Event);

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_data(s)
    }
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = &self.header;
        let type_name = self.event.type_name();
        let version = Event::current_version(type_name).expect("declared by the events! list");
        let mut st = s.serialize_struct("Envelope", 9 + usize::from(h.prev.is_some()))?;
        st.serialize_field("event_id", &h.event_id)?;
        st.serialize_field("type", type_name)?;
        st.serialize_field("version", &version)?;
        st.serialize_field("recorded_at", &FastTime(&h.recorded_at))?;
        st.serialize_field("producer", &h.producer)?;
        st.serialize_field("sequence", &h.sequence)?;
        st.serialize_field("correlation_id", &h.correlation_id)?;
        st.serialize_field("causation_id", &h.causation_id)?;
        // Only when linked, so records without a link encode as they always did.
        if let Some(prev) = &h.prev {
            st.serialize_field("prev", prev)?;
        }
        st.serialize_field("data", &Data(&self.event))?;
        st.end()
    }
}

/// `recorded_at` as chrono writes it, without chrono's per-char formatting.
struct FastTime<'a>(&'a DateTime<Utc>);

impl Serialize for FastTime<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match crate::fast::format_rfc3339_utc(self.0, &mut buf) {
            Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).expect("ASCII")),
            None => self.0.serialize(s),
        }
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    event_id: Uuid,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    version: u32,
    recorded_at: DateTime<Utc>,
    #[serde(borrow)]
    producer: Cow<'a, str>,
    sequence: u64,
    #[serde(default)]
    correlation_id: Option<Uuid>,
    #[serde(default)]
    causation_id: Option<Uuid>,
    #[serde(default)]
    prev: Option<Hash32>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The envelope's shape for schema export; `data` is described per type in its own file.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct EnvelopeShape {
    event_id: Uuid,
    /// One of the payload type names; `data` follows `<type>.v<version>.json`.
    #[serde(rename = "type")]
    event_type: String,
    version: u32,
    recorded_at: DateTime<Utc>,
    producer: String,
    sequence: u64,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    /// SHA-256 (hex) of the record before this one on the log; absent on records written
    /// before the hash chain (`docs/adr/08-hash-chain.md`).
    prev: Option<Hash32>,
    data: serde_json::Value,
}

/// The one-pass decoder of [`Envelope::decode_with`]'s common case: a payload at its current
/// version, with `type` and `version` before `data` (as [`Envelope::encode`] writes them), is
/// decoded straight into its type by the envelope's own deserializer, instead of being scanned
/// once as a `RawValue` and parsed again from it. Together with the fast timestamp and UUID
/// paths this was ~40% of the auditor's time.
///
/// It answers `Some` only where the general decoder gives the same envelope: the fields are read
/// with the same rules (required ones, `null`/missing optional ids, duplicates refused, unknown
/// fields ignored, nothing after the object), and `data` is decoded by the same payload type from
/// the same text. Everything else, errors included, is `None`.
mod fast {
    use std::borrow::Cow;
    use std::fmt;

    use chrono::{DateTime, Utc};
    use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde::Deserialize;
    use uuid::Uuid;

    use super::{Envelope, Header};
    use crate::event::Event;
    use crate::ids::Hash32;

    pub(super) fn decode(bytes: &[u8]) -> Option<Envelope> {
        // UTF-8 checked once for the whole record, up front. This is also what keeps the fast
        // path from accepting more than the general one: that one reads `data` as a `RawValue`,
        // which must be valid UTF-8 even inside strings that the payload type then skips.
        let text = std::str::from_utf8(bytes).ok()?;
        let mut de = serde_json::Deserializer::from_str(text);
        let env = de
            .deserialize_struct("Envelope", FIELDS, EnvelopeVisitor)
            .ok()?;
        de.end().ok()?;
        Some(env)
    }

    const FIELDS: &[&str] = &[
        "event_id",
        "type",
        "version",
        "recorded_at",
        "producer",
        "sequence",
        "correlation_id",
        "causation_id",
        "prev",
        "data",
    ];

    enum Field {
        EventId,
        Type,
        Version,
        RecordedAt,
        Producer,
        Sequence,
        CorrelationId,
        CausationId,
        Prev,
        Data,
        Other,
    }

    impl<'de> Deserialize<'de> for Field {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Field;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("field identifier")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
                    Ok(match s {
                        "event_id" => Field::EventId,
                        "type" => Field::Type,
                        "version" => Field::Version,
                        "recorded_at" => Field::RecordedAt,
                        "producer" => Field::Producer,
                        "sequence" => Field::Sequence,
                        "correlation_id" => Field::CorrelationId,
                        "causation_id" => Field::CausationId,
                        "prev" => Field::Prev,
                        "data" => Field::Data,
                        _ => Field::Other,
                    })
                }
            }
            d.deserialize_identifier(V)
        }
    }

    /// A string borrowed from the input where it has no escapes.
    struct Str<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Str<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Str<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                    Ok(Str(Cow::Borrowed(s)))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                    Ok(Str(Cow::Owned(s.to_owned())))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// A UUID: the hyphenated fast path, else `Uuid::parse_str` (as `Uuid`'s `Deserialize`).
    struct FastUuid(Uuid);

    impl<'de> Deserialize<'de> for FastUuid {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = FastUuid;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a UUID string")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<FastUuid, E> {
                    match crate::fast::uuid(s) {
                        Some(u) => Ok(FastUuid(u)),
                        None => Uuid::parse_str(s).map(FastUuid).map_err(E::custom),
                    }
                }
            }
            d.deserialize_str(V)
        }
    }

    /// `Option<Uuid>` through the fast path: `null` is `None`.
    fn optional_uuid<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Uuid>, A::Error> {
        Ok(map.next_value::<Option<FastUuid>>()?.map(|u| u.0))
    }

    /// Decodes `data` as the payload of `type_name` at its current version.
    struct Payload<'a>(&'a str);

    impl<'de> DeserializeSeed<'de> for Payload<'_> {
        type Value = Event;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
            Event::deserialize_current(self.0, d)
                .unwrap_or_else(|| Err(de::Error::custom("unknown event type")))
        }
    }

    struct EnvelopeVisitor;

    /// Declines the fast path (the general decoder takes over); never shown.
    fn decline<E: de::Error>() -> E {
        E::custom("not the fast path")
    }

    impl<'de> Visitor<'de> for EnvelopeVisitor {
        type Value = Envelope;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an event envelope")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
            let mut event_id: Option<Uuid> = None;
            let mut event_type: Option<Str<'de>> = None;
            let mut version: Option<u32> = None;
            let mut recorded_at: Option<DateTime<Utc>> = None;
            let mut producer: Option<String> = None;
            let mut sequence: Option<u64> = None;
            let mut correlation_id: Option<Option<Uuid>> = None;
            let mut causation_id: Option<Option<Uuid>> = None;
            let mut prev: Option<Option<Hash32>> = None;
            let mut event: Option<Event> = None;
            fn once<T, E: de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
                match slot {
                    Some(_) => Err(E::duplicate_field(name)),
                    None => Ok(()),
                }
            }
            while let Some(key) = map.next_key::<Field>()? {
                match key {
                    Field::EventId => {
                        once(&event_id, "event_id")?;
                        event_id = Some(map.next_value::<FastUuid>()?.0);
                    }
                    Field::Type => {
                        once(&event_type, "type")?;
                        event_type = Some(map.next_value()?);
                    }
                    Field::Version => {
                        once(&version, "version")?;
                        version = Some(map.next_value()?);
                    }
                    Field::RecordedAt => {
                        once(&recorded_at, "recorded_at")?;
                        let s = map.next_value::<Str<'de>>()?;
                        recorded_at = Some(crate::fast::datetime::parse(&s.0)?);
                    }
                    Field::Producer => {
                        once(&producer, "producer")?;
                        producer = Some(map.next_value()?);
                    }
                    Field::Sequence => {
                        once(&sequence, "sequence")?;
                        sequence = Some(map.next_value()?);
                    }
                    Field::CorrelationId => {
                        once(&correlation_id, "correlation_id")?;
                        correlation_id = Some(optional_uuid(&mut map)?);
                    }
                    Field::CausationId => {
                        once(&causation_id, "causation_id")?;
                        causation_id = Some(optional_uuid(&mut map)?);
                    }
                    Field::Prev => {
                        once(&prev, "prev")?;
                        prev = Some(map.next_value()?);
                    }
                    Field::Data => {
                        once(&event, "data")?;
                        let (Some(t), Some(v)) = (&event_type, version) else {
                            return Err(decline());
                        };
                        if Event::current_version(&t.0) != Some(v) {
                            return Err(decline());
                        }
                        event = Some(map.next_value_seed(Payload(&t.0))?);
                    }
                    Field::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let (
                Some(event_id),
                Some(_),
                Some(_),
                Some(recorded_at),
                Some(producer),
                Some(sequence),
                Some(event),
            ) = (
                event_id,
                event_type,
                version,
                recorded_at,
                producer,
                sequence,
                event,
            )
            else {
                return Err(decline());
            };
            Ok(Envelope {
                header: Header {
                    event_id,
                    recorded_at,
                    producer,
                    sequence,
                    correlation_id: correlation_id.flatten(),
                    causation_id: causation_id.flatten(),
                    prev: prev.flatten(),
                },
                event,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NodeHeartbeat;
    use crate::{Hash32, NodeId};

    fn wire() -> String {
        let header = Header {
            event_id: Uuid::from_u128(0x35b7_3b9d_dcdd_4c0b_ace2_5a3e_ad6d_7b3c),
            recorded_at: "2026-11-25T02:26:35.638235905Z".parse().unwrap(),
            producer: "coordinator/1".into(),
            sequence: 44,
            correlation_id: Some(Uuid::from_u128(7)),
            causation_id: None,
            prev: None,
        };
        let env = Envelope::new(
            header,
            NodeHeartbeat {
                node_id: NodeId(Hash32([0xab; 32])),
                at: None,
                signature: None,
            },
        );
        String::from_utf8(env.encode()).unwrap()
    }

    /// The one-pass decoder either declines or agrees with the general one, and the public
    /// decoder always agrees with the general one, on shapes the writer never produces.
    #[test]
    fn the_fast_path_agrees_with_the_general_decoder_or_declines() {
        let good = wire();
        let id = "35b73b9d-dcdd-4c0b-ace2-5a3ead6d7b3c";
        let data = format!(r#""data":{{"node_id":"{}"}}"#, "ab".repeat(32));
        let cases: Vec<(String, bool)> = vec![
            // (bytes, the fast path takes it)
            (good.clone(), true),
            (good.replace("\"type\"", "\"ty\\u0070e\""), true),
            (
                good.replace("\"NodeHeartbeat\"", "\"Node\\u0048eartbeat\""),
                true,
            ),
            (good.replace(",\"causation_id\":null", ""), true),
            (
                good.replace(
                    ",\"correlation_id\":\"00000000-0000-0000-0000-000000000007\"",
                    "",
                ),
                true,
            ),
            (
                good.replace("{\"event_id\"", "{\"extra\":[1,{\"x\":\"y\"}],\"event_id\""),
                true,
            ),
            (
                good.replace("\"node_id\"", "\"future_field\":\"z\",\"node_id\""),
                true,
            ),
            (good.replace(id, &id.to_uppercase()), true),
            // Forms the writer does not use: the scalar fast paths fall back to `uuid`, chrono.
            (good.replace(id, &id.replace('-', "")), true),
            (good.replace("35.638235905Z", "35.638235905+00:00"), true),
            (good.replace("35.638235905Z", "35.6382Z"), true),
            (
                good.replace("02:26:35.638235905Z", "03:26:35.638235905+01:00"),
                true,
            ),
            // Declined (`data` before `type`), decoded the general way.
            (
                format!("{{{data},{}", good[1..].replace(&format!(",{data}"), "")),
                false,
            ),
            // Refused both ways.
            (
                good.replace("\"sequence\":44", "\"sequence\":44,\"sequence\":45"),
                false,
            ),
            (good.replace("\"sequence\":44,", ""), false),
            (good.replace("\"version\":1", "\"version\":2"), false),
            (good.replace("\"NodeHeartbeat\"", "\"NodeExploded\""), false),
            (format!("{good} x"), false),
            (good.replace("\"node_id\":\"ab", "\"node_id\":\"zz"), false),
        ];
        for (text, fast_takes_it) in cases {
            let general = Envelope::decode_general(text.as_bytes(), UPCASTERS);
            let fast = fast::decode(text.as_bytes());
            assert_eq!(fast.is_some(), fast_takes_it, "{text}");
            if let Some(f) = &fast {
                assert_eq!(Some(f), general.as_ref().ok(), "{text}");
            }
            match (Envelope::decode(text.as_bytes()), general) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
        }
        // Invalid UTF-8 in a string the payload type skips: the general decoder refuses it
        // (`data` is read as a `RawValue`), so the fast path must too.
        let mut bytes = good
            .replace("\"node_id\"", "\"future_field\":\"\u{e9}\",\"node_id\"")
            .into_bytes();
        let at = bytes
            .windows(2)
            .position(|w| w == "\u{e9}".as_bytes())
            .unwrap();
        bytes[at + 1] = b'!';
        assert!(Envelope::decode_general(&bytes, UPCASTERS).is_err());
        assert!(fast::decode(&bytes).is_none());
        assert!(Envelope::decode(&bytes).is_err());
    }
}
