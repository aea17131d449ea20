//! Why bytes on the log did not decode: the one error of the envelope's codec, the payload
//! tables of [`crate::event`] and the upcasters of [`crate::upcast`].
//!
//! A leaf: it uses nothing else of this crate, so those three can all return it while their
//! dependencies still run one way (envelope -> event, envelope -> upcast).

/// Why bytes on the log did not decode into an [`Envelope`](crate::Envelope).
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
