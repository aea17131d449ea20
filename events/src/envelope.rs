//! The envelope: one header shape around every payload, and its JSON codec.
//!
//! On the wire an event is one JSON object:
//! `{"event_id", "type", "version", "recorded_at", "producer", "sequence", "correlation_id",
//! "causation_id", "data"}`. The header sits beside the payload rather than inside it, so a reader
//! can route, deduplicate and upcast without knowing the payload's shape.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::event::Event;
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub header: Header,
    pub event: Event,
}

/// Why bytes on the log did not decode into an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error(
        "{event_type} version {version} is newer than this build understands (current {current})"
    )]
    FutureVersion {
        event_type: String,
        version: u32,
        current: u32,
    },
    #[error("no upcaster for {event_type} from version {from}")]
    MissingUpcaster { event_type: String, from: u32 },
    #[error("upcasting {event_type} from version {from} failed: {message}")]
    Upcast {
        event_type: String,
        from: u32,
        message: String,
    },
    #[error("malformed {event_type} payload: {source}")]
    Payload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
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
        let mut st = s.serialize_struct("Envelope", 9)?;
        st.serialize_field("event_id", &h.event_id)?;
        st.serialize_field("type", type_name)?;
        st.serialize_field("version", &version)?;
        st.serialize_field("recorded_at", &h.recorded_at)?;
        st.serialize_field("producer", &h.producer)?;
        st.serialize_field("sequence", &h.sequence)?;
        st.serialize_field("correlation_id", &h.correlation_id)?;
        st.serialize_field("causation_id", &h.causation_id)?;
        st.serialize_field("data", &Data(&self.event))?;
        st.end()
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
    data: serde_json::Value,
}
