//! Leader election among would-be writers of one Kafka log, through Kafka itself.
//!
//! Every candidate joins one consumer group, `prlx-lease.<topic>`, subscribed to a lease topic
//! `<topic>.lease` with exactly one partition and no records. The group assigns that partition
//! to one member at a time: that member holds the lease. The assignor is `cooperative-sticky`,
//! so a member that joins later does not take the partition from a live holder (no
//! stop-the-world revocation either); a holder loses it when it leaves the group (clean
//! shutdown: at once), when the broker stops hearing its heartbeats for `session.timeout.ms`
//! (a crash, a pause, a partition), or when librdkafka itself has had no answer to its
//! heartbeats for that long (it then drops the assignment as lost).
//!
//! The lease decides who *starts* writing, not who may write: detection is not instant, and a
//! paused holder may still believe it holds the lease. Safety comes from the writer's
//! transactional id: the new holder's `init_transactions` fences the old writer, whose appends
//! then fail (`LogError::Fenced`). The lease only keeps a second instance from fencing a
//! healthy one merely by starting.
//!
//! One thread per lease polls the consumer (which serves heartbeats and rebalances) every
//! `POLL` and publishes whether partition 0 is in the assignment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;

use super::config::{base_config, kafka_error, Target, PARTITION};
use crate::log::{KafkaLogOptions, LogError};

/// How often the lease thread polls its consumer, and so how late it may notice a change.
const POLL: Duration = Duration::from_millis(100);

/// The lease topic of the log in `topic`.
pub fn lease_topic(topic: &str) -> String {
    format!("{topic}.lease")
}

/// The consumer group whose members compete for the lease of the log in `topic`.
pub fn lease_group(topic: &str) -> String {
    format!("prlx-lease.{topic}")
}

/// A membership in the election for one Kafka log. Dropping it leaves the group, which hands
/// the lease to another member at once (no session timeout to wait for).
#[derive(Debug)]
pub struct KafkaLease {
    topic: String,
    held: watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl KafkaLease {
    /// Creates the lease topic if missing and joins the group as `member` (a name for the
    /// broker's logs). Returns once the consumer is subscribed; the lease itself comes (or
    /// not) a rebalance later: see [`KafkaLease::held`].
    pub fn join(
        bootstrap: &str,
        topic: &str,
        options: KafkaLogOptions,
        member: &str,
        session: Duration,
    ) -> Result<Self, LogError> {
        let lease_topic = lease_topic(topic);
        if lease_topic.len() > 249 {
            return Err(kafka_error(
                "join lease",
                format!("topic {topic:?} is too long to have a lease topic ({lease_topic:?})"),
            ));
        }
        let target = Target::new(bootstrap, &lease_topic, options);
        let mut config = base_config(bootstrap);
        let client_id: String = format!("prlx-lease-{member}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        config
            .set("client.id", &client_id)
            .set("group.id", lease_group(topic))
            // Sticky: a live holder keeps the partition when others join; cooperative: a
            // rebalance revokes only what moves, never everything at once.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (session.as_millis() / 6).max(100).to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest");

        let (held_tx, held) = watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let (opened_tx, opened_rx) = std_mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("prlx-kafka-lease".into())
            .spawn(move || {
                let consumer = match subscribe(&target, &config) {
                    Ok(c) => {
                        let _ = opened_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    // No records ever come: a poll only serves heartbeats and rebalances.
                    let _ = consumer.poll(POLL);
                    let holds = consumer
                        .assignment()
                        .is_ok_and(|tpl| tpl.find_partition(&target.topic, PARTITION).is_some());
                    held_tx.send_if_modified(|h| std::mem::replace(h, holds) != holds);
                }
                held_tx.send_replace(false);
                // Dropping the consumer closes it: it leaves the group, so the lease moves on
                // without waiting out the session timeout.
                drop(consumer);
            })
            .map_err(|e| kafka_error("spawn lease thread", e))?;
        match opened_rx.recv().unwrap_or(Err(LogError::Closed)) {
            Ok(()) => Ok(Self {
                topic: topic.to_owned(),
                held,
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// Whether this member holds the lease now, as a value that changes.
    pub fn held(&self) -> watch::Receiver<bool> {
        self.held.clone()
    }

    /// The log's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

fn subscribe(target: &Target, config: &ClientConfig) -> Result<BaseConsumer, LogError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| kafka_error("start lease runtime", e))?;
    runtime.block_on(target.ensure_topic())?;
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| kafka_error("create lease consumer", e))?;
    consumer
        .subscribe(&[target.topic.as_str()])
        .map_err(|e| kafka_error("subscribe to lease topic", e))?;
    Ok(consumer)
}

impl Drop for KafkaLease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
