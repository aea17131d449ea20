//! ParalleliX AI's second door: submissions consumed from a Kafka topic, answers produced to a
//! reply topic (feature `kafka`).
//!
//! A submission is a record on the submissions topic whose value is the same JSON body as
//! `POST /v1/requests` and whose key is the submitter's reference. The answer goes to the
//! replies topic under the same key: `{"reference", "status": "accepted", "request_id",
//! "price"}` or `{"reference", "status": "rejected", "error": {code, field, message}}`, the
//! error exactly as HTTP would give it. Any Kafka client can take part (`kcat` does, in the
//! tests).
//!
//! Nothing accepted is lost or applied twice, without tying the consumer's offsets into the
//! log writer's transactions: the reference is the submission's idempotency key (per credit
//! account), so a record redelivered after a crash, or published twice, is answered with the
//! request its first delivery created and appends nothing. The offset is committed only after
//! the outcome is durable on the log and its answer acknowledged by the broker. Answers are
//! therefore at least once, and a repeated answer is identical to the first. Records are
//! handled one at a time in partition order.
//!
//! A record without a usable key (absent, over 128 bytes, not visible ASCII) is referenced as
//! `kafka:TOPIC:PARTITION:OFFSET`, which is stable across redeliveries too.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use prlx_events::event::IntakeSource;

use crate::actor::CoordinatorHandle;
use crate::http::{
    decode_json, submission_from_body, submit, AppError, ErrorDetail, SubmitRequestBody,
};

/// Where the intake reads and answers.
#[derive(Debug, Clone)]
pub struct KafkaIntakeConfig {
    /// `HOST:PORT[,HOST:PORT...]`.
    pub bootstrap: String,
    pub submissions_topic: String,
    pub replies_topic: String,
    /// The consumer group: coordinators of one deployment share it.
    pub group_id: String,
}

/// The longest reference a key may be; longer keys fall back to the record's position.
pub const MAX_REFERENCE_LEN: usize = 128;

/// The answer to one submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub reference: String,
    /// `accepted` or `rejected`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("kafka intake: {0}")]
    Kafka(String),
}

fn kafka(what: &str, e: impl std::fmt::Display) -> IntakeError {
    IntakeError::Kafka(format!("{what}: {e}"))
}

/// The reference of a record: its key when usable, else its position.
pub fn reference(key: Option<&[u8]>, topic: &str, partition: i32, offset: i64) -> String {
    match key.and_then(|k| std::str::from_utf8(k).ok()) {
        Some(k)
            if !k.is_empty()
                && k.len() <= MAX_REFERENCE_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.to_owned()
        }
        _ => format!("kafka:{topic}:{partition}:{offset}"),
    }
}

/// Decides one submission record and returns its answer. `Err` only when the coordinator
/// could not decide it (stopped, or not the active one): the record must be retried.
pub async fn answer(
    coordinator: &CoordinatorHandle,
    reference: String,
    value: &[u8],
) -> Result<Reply, AppError> {
    let outcome = async {
        let body: SubmitRequestBody = decode_json(value)?;
        let (submission, payload) = submission_from_body(
            body,
            Some(reference.clone()),
            IntakeSource::Kafka {
                reference: reference.clone(),
            },
        )?;
        submit(coordinator, submission, payload).await
    }
    .await;
    match outcome {
        Ok(accepted) => Ok(Reply {
            reference,
            status: "accepted".into(),
            request_id: Some(accepted.request_id),
            price: Some(accepted.price),
            error: None,
        }),
        // Our failures are retried; the submitter's mistakes are answered.
        Err(e) if e.status.is_server_error() => Err(e),
        Err(e) => Ok(Reply {
            reference,
            status: "rejected".into(),
            request_id: None,
            price: None,
            error: Some(ErrorDetail {
                code: e.code.into_owned(),
                field: e.field,
                message: e.message,
            }),
        }),
    }
}

/// Creates the two topics if they do not exist (one partition each is enough for one active
/// coordinator; more partitions keep per-reference order, since the key picks the partition).
pub async fn ensure_topics(config: &KafkaIntakeConfig) -> Result<(), IntakeError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .create()
        .map_err(|e| kafka("admin client", e))?;
    let topics = [
        NewTopic::new(&config.submissions_topic, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&config.replies_topic, 1, TopicReplication::Fixed(1)),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics(topics.iter(), &opts)
        .await
        .map_err(|e| kafka("create topics", e))?
    {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(kafka("create topic", format!("{name}: {code}"))),
        }
    }
    Ok(())
}

/// Consumes submissions until `stop` turns true, answering each. Returns an error only
/// when Kafka itself fails in a way retrying cannot fix (bad configuration).
pub async fn run(
    coordinator: CoordinatorHandle,
    config: KafkaIntakeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), IntakeError> {
    ensure_topics(&config).await?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Submissions published inside a producer's transaction count once it commits.
        .set("isolation.level", "read_committed")
        // The default 500 ms would add to every quiet-topic submission's latency.
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(|e| kafka("consumer", e))?;
    consumer
        .subscribe(&[&config.submissions_topic])
        .map_err(|e| kafka("subscribe", e))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .map_err(|e| kafka("producer", e))?;
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.changed() => return Ok(()),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                eprintln!("kafka intake: receive failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let reference = reference(
            message.key(),
            message.topic(),
            message.partition(),
            message.offset(),
        );
        let value = message.payload().unwrap_or_default();
        // Until this record is answered and committed, nothing after it is: a failure to
        // decide or to answer retries the same record.
        let mut backoff = Duration::from_millis(100);
        loop {
            let reply = match answer(&coordinator, reference.clone(), value).await {
                Ok(reply) => reply,
                Err(e) => {
                    eprintln!(
                        "kafka intake: {reference} not decided ({}); retrying",
                        e.message
                    );
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let json = serde_json::to_vec(&reply).expect("plain data");
            let record = FutureRecord::to(&config.replies_topic)
                .key(&reference)
                .payload(&json);
            if let Err((e, _)) = producer.send(record, Duration::from_secs(30)).await {
                eprintln!("kafka intake: answer to {reference} not delivered ({e}); retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            break;
        }
        if let Err(e) = consumer.commit_message(&message, CommitMode::Sync) {
            // The record will be redelivered after a restart and answered the same way.
            eprintln!("kafka intake: committing {reference} failed ({e})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_key_is_the_reference_else_the_position() {
        assert_eq!(reference(Some(b"order-17"), "subs", 0, 5), "order-17");
        for bad in [&b""[..], b"has space", &[0xff, 0xfe], &[b'a'; 129]] {
            assert_eq!(reference(Some(bad), "subs", 2, 9), "kafka:subs:2:9");
        }
        assert_eq!(reference(None, "subs", 0, 1), "kafka:subs:0:1");
    }
}
