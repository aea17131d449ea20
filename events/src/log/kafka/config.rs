//! What every Kafka client of a log shares: the settings, the log a client works on
//! ([`Target`]) and the clients made from it: the writer's transactional producer, the
//! reader's consumer and the offsets client.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::AsyncRuntime;

use super::failure::{classify, Failure};
use crate::log::{KafkaLogOptions, LogError};

/// The one partition of a log's topic.
pub(super) const PARTITION: i32 = 0;
/// Room for Kafka's record and batch headers above the largest payload.
const MESSAGE_OVERHEAD: usize = 64 << 10;

pub(super) fn kafka_error(op: &'static str, reason: impl fmt::Display) -> LogError {
    LogError::Kafka {
        op,
        reason: reason.to_string(),
    }
}

/// Settings every client of ours shares.
pub(super) fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // A metadata lookup must never create a topic with the broker's defaults (its retention
        // would expire the log); the writer creates topics itself.
        .set("allow.auto.create.topics", "false");
    // librdkafka's own debug contexts (e.g. `eos,protocol`), for diagnosing a cluster; off
    // unless asked for.
    if let Ok(contexts) = std::env::var("PRLX_KAFKA_DEBUG") {
        config.set("debug", &contexts);
    }
    config
}

/// The log a writer or reader works on.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) bootstrap: String,
    pub(super) topic: String,
    pub(super) transactional_id: String,
    pub(super) options: KafkaLogOptions,
}

impl Target {
    pub(super) fn new(bootstrap: &str, topic: &str, options: KafkaLogOptions) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
            transactional_id: options.transactional_id_for(topic),
            options,
        }
    }

    pub(super) fn max_message_bytes(&self) -> String {
        (self.options.max_record_bytes + MESSAGE_OVERHEAD).to_string()
    }

    /// A transactional producer, after `init_transactions` (which fences any older writer with
    /// the same id and settles its open transaction).
    pub(super) fn producer(&self) -> Result<FutureProducer, LogError> {
        let timeout_ms = self.options.timeout.as_millis().to_string();
        let transaction_ms = (2 * self.options.timeout.as_millis()).to_string();
        let producer: FutureProducer = base_config(&self.bootstrap)
            .set("client.id", "prlx-log-writer")
            .set("transactional.id", &self.transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A group is produced all at once and then awaited: waiting to fill batches would
            // only add latency.
            .set("linger.ms", "0")
            .set("retry.backoff.ms", "5")
            .set("message.max.bytes", self.max_message_bytes())
            .set("message.timeout.ms", &timeout_ms)
            // How long the broker keeps a crashed writer's transaction open (blocking readers)
            // when no new writer comes to abort it.
            .set("transaction.timeout.ms", &transaction_ms)
            .create()
            .map_err(|e| kafka_error("create producer", e))?;
        producer
            .init_transactions(self.options.timeout)
            .map_err(|e| match classify(&producer, &e) {
                Failure::Fenced(reason) => self.fenced(reason),
                _ => kafka_error("init transactions", e),
            })?;
        Ok(producer)
    }

    pub(super) fn fenced(&self, reason: String) -> LogError {
        LogError::Fenced {
            topic: self.topic.clone(),
            transactional_id: self.transactional_id.clone(),
            reason,
        }
    }

    pub(super) fn consumer(&self) -> Result<Arc<KafkaConsumer>, LogError> {
        let consumer: KafkaConsumer = base_config(&self.bootstrap)
            .set("client.id", "prlx-log-reader")
            // `assign` needs a group id; the reader never joins the group or commits to it.
            .set("group.id", "prlx-log-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // An offset outside the log is an error, never a silent jump.
            .set("auto.offset.reset", "error")
            .set(
                "fetch.wait.max.ms",
                self.options.fetch_wait.as_millis().to_string(),
            )
            .create()
            .map_err(|e| kafka_error("create consumer", e))?;
        Ok(Arc::new(consumer))
    }

    /// A client for offset queries only. Not the reader's consumer: a broker answers one
    /// connection's requests in order, so a query there would wait behind the consumer's
    /// long-polling fetch.
    pub(super) fn offsets_client(&self) -> Result<Arc<BaseConsumer>, LogError> {
        let client: BaseConsumer = base_config(&self.bootstrap)
            .set("client.id", "prlx-log-offsets")
            // Under read_committed the "latest" offset is the last stable offset.
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| kafka_error("create consumer", e))?;
        Ok(Arc::new(client))
    }
}

/// Where a consumer's housekeeping task runs: on the tokio runtime of whoever opened the
/// reader, if there is one. That task only wakes the consumer now and then for the sake of
/// consumer groups' `max.poll.interval.ms`; an assigned reader needs none, so outside a
/// runtime it is simply not started (`StreamConsumer` would panic there by default).
#[derive(Debug)]
pub(super) struct CallerRuntime;

impl AsyncRuntime for CallerRuntime {
    type Delay = tokio::time::Sleep;

    fn spawn<T>(task: T)
    where
        T: Future<Output = ()> + Send + 'static,
    {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(task);
        }
    }

    fn delay_for(duration: Duration) -> Self::Delay {
        tokio::time::sleep(duration)
    }
}

pub(super) type KafkaConsumer = StreamConsumer<DefaultConsumerContext, CallerRuntime>;
