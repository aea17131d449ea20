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
//! Two ways of committing, by where the log is:
//! - **Log on the same Kafka cluster: exactly once** (consume-transform-produce). Each
//!   record's answer and the consumer's position after it ride with the events it was decided
//!   into ([`Rider`]): one transaction of the log's writer holds the events, the answer and the
//!   offset, or none of them. A crash or failover redelivers exactly the records whose
//!   transaction did not commit; the answer stream has one answer per record.
//! - **Otherwise (a file log, another cluster): at least once, idempotent.** The reference is
//!   the submission's idempotency key (per credit account), so a record redelivered after a
//!   crash, or published twice, is answered with the request its first delivery created and
//!   appends nothing. The offset is committed only after the outcome is durable on the log and
//!   its answer acknowledged by the broker. A repeated answer is identical to the first.
//!
//! Either way the reference is the idempotency key, so a submission *published* twice is one
//! request (and two answers, one per record).
//!
//! Up to [`MAX_IN_FLIGHT`] records are decided at once (the coordinator groups them into one
//! append), but they leave in record order: answers are produced in that order, and the
//! committed offset only ever passes records that are answered, as do all before them.
//!
//! A record without a usable key (absent, over 128 bytes, not visible ASCII) is referenced as
//! `kafka:TOPIC:PARTITION:OFFSET`, which is stable across redeliveries too.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tokio::task::JoinHandle;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prlx_events::backoff::Backoff;
use prlx_events::event::IntakeSource;
use prlx_events::log::{Consumed, ConsumerGroupHandle, Side, SideRecord};

use crate::actor::{CoordinatorHandle, Intake, Rider};
use crate::error::{decode_json, AppError, ErrorDetail};
use crate::submission::{
    submission_from_body, submit_enqueued, SubmissionAccepted, SubmissionAnswer, SubmitRequestBody,
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
    /// Answers and offsets commit in the log writer's transactions (the log is on this
    /// cluster, see the module docs); otherwise they are committed after the fact.
    pub transactional: bool,
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
    match enqueue(coordinator, &reference, value).await {
        Ok(decided) => to_reply(reference, decided.await),
        Err(e) => to_reply(reference, Err(e)),
    }
}

/// Checks a record and hands it to the coordinator; returns once it is in the coordinator's
/// queue, with the future of its outcome.
async fn enqueue(
    coordinator: &CoordinatorHandle,
    reference: &str,
    value: &[u8],
) -> Result<
    impl std::future::Future<Output = Result<SubmissionAccepted, AppError>> + Send + 'static,
    AppError,
> {
    let body: SubmitRequestBody = decode_json(value)?;
    let (submission, payload) = submission_from_body(
        body,
        Some(reference.to_owned()),
        IntakeSource::Kafka {
            reference: reference.to_owned(),
        },
        &coordinator.consent_domain(),
    )?;
    submit_enqueued(coordinator, submission, payload).await
}

/// The answer to a record from its outcome; `Err` for our failures, which are retried.
fn to_reply(
    reference: String,
    outcome: Result<SubmissionAccepted, AppError>,
) -> Result<Reply, AppError> {
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
        Err(e) => Ok(rejected(reference, e)),
    }
}

/// The answer naming what was wrong, as HTTP would.
fn rejected(reference: String, e: AppError) -> Reply {
    Reply {
        reference,
        status: "rejected".into(),
        request_id: None,
        price: None,
        error: Some(ErrorDetail {
            code: e.code.into_owned(),
            field: e.field,
            message: e.message,
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
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), IntakeError> {
    ensure_topics(&config).await?;
    if config.transactional {
        return run_transactional(coordinator, config, stop).await;
    }
    run_idempotent(coordinator, config, stop).await
}

/// The intake's consumer: it counts the group's rebalances, after which its group metadata
/// (generation, member id) is new, and offsets sent with the old one would be refused.
#[derive(Default)]
struct Rebalances(AtomicU64);

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type IntakeConsumer = StreamConsumer<Rebalances>;

/// The consumer of submissions, subscribed: it commits nothing by itself.
fn subscribe(config: &KafkaIntakeConfig) -> Result<IntakeConsumer, IntakeError> {
    let consumer: IntakeConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Submissions published inside a producer's transaction count once it commits.
        .set("isolation.level", "read_committed")
        // The default 500 ms would add to every quiet-topic submission's latency.
        .set("fetch.wait.max.ms", "20")
        .create_with_context(Rebalances::default())
        .map_err(|e| kafka("consumer", e))?;
    consumer
        .subscribe(&[&config.submissions_topic])
        .map_err(|e| kafka("subscribe", e))?;
    Ok(consumer)
}

/// The exactly-once intake (see the module docs): each record is handed to the coordinator in
/// record order with a [`Rider`] that carries its answer and the offset after it into the log
/// writer's transaction. Nothing is produced or committed here; what was not committed when
/// the intake or the coordinator stops is read again by the next consumer of the group.
async fn run_transactional(
    coordinator: CoordinatorHandle,
    config: KafkaIntakeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), IntakeError> {
    let consumer = subscribe(&config)?;
    // The group's metadata names this consumer's membership; sent with the offsets, it lets
    // the group refuse a commit from a consumer that is no longer a member. Taken anew after
    // each rebalance (the generation changes), shared by the records in between.
    let mut group: Option<(u64, ConsumerGroupHandle)> = None;
    // Each record's append, in record order; `None` when it did not become durable.
    let mut deciding: VecDeque<((), JoinHandle<Option<()>>)> = VecDeque::new();
    let (mut stopping, mut failed) = (false, false);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed(), if !stopping => stopping = true,
            decided = front(&mut deciding), if !deciding.is_empty() => {
                deciding.pop_front();
                failed |= decided.is_none();
            }
            message = consumer.recv(),
                if !stopping && !failed && deciding.len() < MAX_IN_FLIGHT =>
            {
                let Some(message) = received(message).await else { continue };
                let rebalances = consumer.context().0.load(Ordering::SeqCst);
                let group = match &group {
                    Some((seen, g)) if *seen == rebalances => Arc::clone(g),
                    _ => {
                        let metadata = consumer
                            .group_metadata()
                            .ok_or_else(|| kafka("group metadata", "the consumer has none"))?;
                        let g: ConsumerGroupHandle = Arc::new(metadata);
                        group = Some((rebalances, Arc::clone(&g)));
                        g
                    }
                };
                let reference = reference(
                    message.key(),
                    message.topic(),
                    message.partition(),
                    message.offset(),
                );
                let consumed = Consumed {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    next: message.offset() + 1,
                    group,
                };
                let value = message.payload().unwrap_or_default();
                let domain = coordinator.consent_domain();
                let (intake, rider) = riding_intake(&config, &domain, reference, value, consumed);
                // Handed over here, in record order: decided, appended and committed in it.
                match coordinator.enqueue_riding(intake, |_, _| (), Some(rider)).await {
                    Ok(answered) => deciding
                        .push_back(((), tokio::spawn(async move { answered.await.ok().map(drop) }))),
                    Err(_) => failed = true,
                }
            }
        }
        if (stopping || failed) && deciding.is_empty() {
            return match failed {
                false => Ok(()),
                true => Err(IntakeError::Kafka(
                    "the coordinator could not decide a submission; the intake stopped (what \
                     was not committed is read again)"
                        .into(),
                )),
            };
        }
    }
}

/// What the coordinator is handed for one record, and the rider that answers it: a
/// submission, or, for a record that is not one, nothing to decide and the rejection.
fn riding_intake(
    config: &KafkaIntakeConfig,
    domain: &crate::consent::ConsentDomain,
    reference: String,
    value: &[u8],
    consumed: Consumed,
) -> (Intake, Rider) {
    let topic = config.replies_topic.clone();
    let parsed = decode_json::<SubmitRequestBody>(value).and_then(|body| {
        submission_from_body(
            body,
            Some(reference.clone()),
            IntakeSource::Kafka {
                reference: reference.clone(),
            },
            domain,
        )
    });
    match parsed {
        Ok((submission, payload)) => {
            let answer = SubmissionAnswer::of(&submission);
            let rider = Rider(Box::new(move |outcome, state| {
                answer_side(topic, reference, answer.answer(outcome, state), consumed)
            }));
            let intake = Intake::Submission {
                submission: Box::new(submission),
                payload,
            };
            (intake, rider)
        }
        Err(malformed) => {
            let rider = Rider(Box::new(move |_, _| {
                answer_side(topic, reference, Err(malformed), consumed)
            }));
            (Intake::Pass, rider)
        }
    }
}

/// The answer record for `reference` and the offset after its record. Our own failures are
/// answered too (code `internal`): the record is committed either way, and the submitter may
/// publish it again under the same reference.
fn answer_side(
    topic: String,
    reference: String,
    outcome: Result<SubmissionAccepted, AppError>,
    consumed: Consumed,
) -> Side {
    let reply =
        to_reply(reference.clone(), outcome).unwrap_or_else(|e| rejected(reference.clone(), e));
    Side {
        records: vec![SideRecord {
            topic,
            key: Some(reference.into_bytes()),
            payload: serde_json::to_vec(&reply).expect("plain data"),
        }],
        consumed: vec![consumed],
    }
}

/// The message, or `None` after saying why there is none and pausing a moment (the consumer
/// reconnects by itself; the caller tries again).
async fn received<M>(message: Result<M, KafkaError>) -> Option<M> {
    match message {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!("kafka intake: receive failed ({e}); retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            None
        }
    }
}

/// The at-least-once intake (see the module docs).
async fn run_idempotent(
    coordinator: CoordinatorHandle,
    config: KafkaIntakeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), IntakeError> {
    let consumer = subscribe(&config)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .map_err(|e| kafka("producer", e))?;
    let mut pipeline = Pipeline::default();
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed(), if !stopping => stopping = true,
            // Answers leave in record order, each as soon as it and every earlier one is
            // decided; the producer keeps them in that order on the reply topic.
            decided = front(&mut pipeline.deciding), if !pipeline.deciding.is_empty() => {
                let (position, reference) = pipeline.deciding.pop_front().expect("front").0;
                match decided {
                    Some(reply) => {
                        let sent = send_reply(
                            &producer,
                            &config.replies_topic,
                            reference,
                            reply,
                            stop.clone(),
                        );
                        pipeline.answering.push_back((position, tokio::spawn(sent)));
                    }
                    // Stopped before it was decided: neither it nor anything after it is
                    // committed, so the next active coordinator reads them again. What is
                    // before it is still answered.
                    None => pipeline.abandon_undecided(),
                }
            }
            delivered = front(&mut pipeline.answering), if !pipeline.answering.is_empty() => {
                let (position, _) = pipeline.answering.pop_front().expect("front");
                if delivered.is_some() {
                    pipeline.answered = Some(position);
                    pipeline.uncommitted += 1;
                } else {
                    pipeline.abandon_answering();
                    pipeline.abandon_undecided();
                }
                if pipeline.uncommitted >= COMMIT_EVERY {
                    commit(&consumer, &mut pipeline, CommitMode::Async);
                }
            }
            message = consumer.recv(),
                if !stopping && !pipeline.abandoned && pipeline.len() < MAX_IN_FLIGHT =>
            {
                let Some(message) = received(message).await else { continue };
                let position = Position {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                };
                let reference = reference(
                    message.key(),
                    message.topic(),
                    message.partition(),
                    message.offset(),
                );
                let value = message.payload().unwrap_or_default().to_vec();
                // Handed to the coordinator here, in record order, so records are decided in
                // the order they were published (which of two submissions gets the last
                // credit is then not a race); only the waiting runs beside the loop.
                let first = enqueue(&coordinator, &reference, &value).await;
                let deciding = tokio::spawn(decide_with_retries(
                    coordinator.clone(),
                    reference.clone(),
                    value,
                    first,
                    stop.clone(),
                ));
                pipeline.deciding.push_back(((position, reference), deciding));
            }
        }
        if (stopping || pipeline.abandoned) && pipeline.len() == 0 {
            // What was answered is committed before the intake stops, so a restarted one
            // neither skips nor repeats it.
            commit(&consumer, &mut pipeline, CommitMode::Sync);
            return match stopping {
                true => Ok(()),
                false => Err(IntakeError::Kafka(
                    "a submission could not be decided or answered; the intake stopped \
                     before it (it is read again on restart)"
                        .into(),
                )),
            };
        }
        if pipeline.len() == 0 && pipeline.uncommitted > 0 {
            // Quiet: commit now rather than wait for COMMIT_EVERY answers.
            commit(&consumer, &mut pipeline, CommitMode::Async);
        }
    }
}

/// How many submissions may be in the pipeline (deciding or being answered) at once. The
/// coordinator groups concurrent submissions into one append, which is where the throughput
/// comes from; one at a time, each paid a full append and a reply round trip.
pub const MAX_IN_FLIGHT: usize = 256;

/// Offsets are committed after this many answers, and whenever the pipeline runs empty.
const COMMIT_EVERY: usize = 64;

/// Where a record sits on the submissions topic.
#[derive(Debug, Clone)]
struct Position {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A record being decided: where it is and its reference.
type Deciding = (Position, String);

/// Submissions between the consumer and the committed offset, in record order.
#[derive(Default)]
struct Pipeline {
    /// Being decided by the coordinator; `None` when stopped first.
    deciding: VecDeque<(Deciding, JoinHandle<Option<Reply>>)>,
    /// Answer produced, waiting for the broker's acknowledgement; `None` when stopped first.
    answering: VecDeque<(Position, JoinHandle<Option<()>>)>,
    /// The last record answered with every record before it.
    answered: Option<Position>,
    /// How many answers since the last commit.
    uncommitted: usize,
    /// Set once something could not be answered: nothing after it may be committed.
    abandoned: bool,
}

impl Pipeline {
    fn len(&self) -> usize {
        self.deciding.len() + self.answering.len()
    }

    /// Drops every record not yet decided: they come after one that will not be answered,
    /// so none of them may be committed (they are read again later). Nothing new is taken.
    fn abandon_undecided(&mut self) {
        self.abandoned = true;
        for (_, task) in self.deciding.drain(..) {
            task.abort();
        }
    }

    /// Drops every answer still waiting for its acknowledgement (as above).
    fn abandon_answering(&mut self) {
        self.abandoned = true;
        for (_, task) in self.answering.drain(..) {
            task.abort();
        }
    }
}

/// Awaits the task at the front of `queue` (which is not empty); `None` if it failed.
async fn front<K, T>(queue: &mut VecDeque<(K, JoinHandle<Option<T>>)>) -> Option<T> {
    let (_, task) = queue.front_mut().expect("a non-empty queue");
    task.await.ok().flatten()
}

/// Commits the offset after the last answered record, if it moved.
fn commit(consumer: &IntakeConsumer, pipeline: &mut Pipeline, mode: CommitMode) {
    let Some(position) = pipeline.answered.take() else {
        return;
    };
    pipeline.uncommitted = 0;
    let mut offsets = TopicPartitionList::new();
    let next = Offset::Offset(position.offset + 1);
    if let Err(e) = offsets
        .add_partition_offset(&position.topic, position.partition, next)
        .and_then(|()| consumer.commit(&offsets, mode))
    {
        // The records will be redelivered after a restart and answered the same way.
        tracing::warn!(
            "kafka intake: committing {}:{} offset {} failed ({e})",
            position.topic,
            position.partition,
            position.offset
        );
    }
}

/// Decides one record, retrying while the coordinator cannot (stopped, or not the active
/// one); `None` once the intake is told to stop.
async fn decide_with_retries(
    coordinator: CoordinatorHandle,
    reference: String,
    value: Vec<u8>,
    first: Result<
        impl std::future::Future<Output = Result<SubmissionAccepted, AppError>>,
        AppError,
    >,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Reply> {
    let first = match first {
        Ok(decided) => decided.await,
        Err(e) => Err(e),
    };
    let mut outcome = to_reply(reference.clone(), first);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match outcome {
            Ok(reply) => return Some(reply),
            Err(e) => tracing::warn!(
                "kafka intake: {reference} not decided ({}); retrying",
                e.message
            ),
        }
        tokio::select! {
            () = backoff.pause() => {}
            _ = stop.wait_for(|stop| *stop) => return None,
        }
        outcome = answer(&coordinator, reference.clone(), &value).await;
    }
}

/// Hands the answer to the producer now (so answers keep record order) and returns what
/// waits for its acknowledgement, producing it again until the broker takes it; `None` if
/// the intake is told to stop first.
fn send_reply(
    producer: &FutureProducer,
    topic: &str,
    reference: String,
    reply: Reply,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = Option<()>> + Send + 'static {
    let json = serde_json::to_vec(&reply).expect("plain data");
    let first = producer
        .send_result(FutureRecord::to(topic).key(&reference).payload(&json))
        .ok();
    let producer = producer.clone();
    let topic = topic.to_owned();
    async move {
        if let Some(delivery) = first {
            if matches!(delivery.await, Ok(Ok(_))) {
                return Some(());
            }
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let record = FutureRecord::to(&topic).key(&reference).payload(&json);
            match producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => return Some(()),
                Err((e, _)) => {
                    tracing::warn!(
                        "kafka intake: answer to {reference} not delivered ({e}); retrying"
                    );
                    tokio::select! {
                        () = backoff.pause() => {}
                        _ = stop.wait_for(|stop| *stop) => return None,
                    }
                }
            }
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
