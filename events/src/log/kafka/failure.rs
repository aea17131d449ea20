//! Errors of the producer: what a librdkafka error means for a transactional writer (fenced,
//! fatal, abortable or of unknown outcome). A leaf: it uses nothing else of this crate.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};

/// What a producer error means for the writer.
#[derive(Debug)]
pub(super) enum Failure {
    /// A newer writer took over: stop for good.
    Fenced(String),
    /// The producer is unusable for another reason: stop for good.
    Fatal(String),
    /// The open transaction must be aborted; the producer stays usable.
    Abortable(String),
    /// No answer: whether the operation took effect is not known.
    Indefinite(String),
}

fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

pub(super) fn classify(producer: &FutureProducer, e: &KafkaError) -> Failure {
    // librdkafka raises a fatal error on the whole client when it is fenced, whichever call
    // noticed it first.
    if let Some((code, reason)) = producer.client().fatal_error() {
        return if is_fencing(code) {
            Failure::Fenced(reason)
        } else {
            Failure::Fatal(reason)
        };
    }
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => {
            if is_fencing(t.code()) {
                Failure::Fenced(t.to_string())
            } else {
                Failure::Fatal(t.to_string())
            }
        }
        KafkaError::Transaction(t) if t.txn_requires_abort() => Failure::Abortable(t.to_string()),
        KafkaError::Transaction(t) => Failure::Indefinite(t.to_string()),
        KafkaError::MessageProduction(code) if is_fencing(*code) => Failure::Fenced(e.to_string()),
        // A record that could not be produced leaves the transaction to be aborted.
        _ => Failure::Abortable(e.to_string()),
    }
}
