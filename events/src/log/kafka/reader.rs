//! Readers of a Kafka log: a `read_committed` consumer assigned to partition 0, kept where the
//! last call stopped, and the log's end found below the last stable offset.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::{kafka_error, KafkaConsumer, Target, PARTITION};
use super::topics::{not_one_partition, topic_partitions};
use crate::log::{deadline, KafkaLogOptions, LogError, LogReader, Offset, Record};

/// A reader asked for an offset this little ahead of its consumer keeps streaming (dropping
/// what it skips) instead of re-assigning, which costs a fetch round trip.
const SKIP_AHEAD: u64 = 1024;
/// `end()` first looks for the last committed record this far below the last stable offset.
const END_WINDOW: u64 = 64;

/// A reader of a Kafka log: a `read_committed` consumer assigned to partition 0, kept
/// positioned where the last call stopped so that a follower streams without seeking.
pub struct KafkaLogReader {
    target: Target,
    consumer: Result<Arc<KafkaConsumer>, LogError>,
    offsets: Result<Arc<BaseConsumer>, LogError>,
    cursor: Mutex<Cursor>,
}

impl fmt::Debug for KafkaLogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaLogReader")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What the consumer has delivered and where it stands.
#[derive(Debug, Default)]
struct Cursor {
    assigned: bool,
    /// The next call's records start here: every committed record in `from..next` is in
    /// `buffer`, and the consumer delivers the ones from `next` on.
    from: Offset,
    next: Offset,
    buffer: VecDeque<Record>,
    /// Something (a record, the end of the partition) came since the last assign, so the
    /// consumer's own position is about this assignment, not an earlier one.
    seen: bool,
}

impl Cursor {
    /// Whether the stream can serve `from` without re-assigning.
    fn covers(&self, from: Offset) -> bool {
        self.assigned && self.from <= from && from <= self.next.max(self.from) + SKIP_AHEAD
    }

    fn skip_to(&mut self, from: Offset) {
        while self.buffer.front().is_some_and(|r| r.offset < from) {
            self.buffer.pop_front();
        }
        self.from = self.from.max(from);
    }

    fn accept(
        &mut self,
        got: Result<BorrowedMessage<'_>, KafkaError>,
        consumer: &KafkaConsumer,
        topic: &str,
    ) -> Result<(), LogError> {
        match got {
            Ok(m) => {
                let offset = Offset::try_from(m.offset())
                    .map_err(|_| kafka_error("read", format!("bad offset {}", m.offset())))?;
                if offset < self.next {
                    // Fetched before the last assign: not ours any more.
                    return Ok(());
                }
                self.next = offset + 1;
                self.seen = true;
                if offset >= self.from {
                    self.buffer.push_back(Record {
                        offset,
                        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                }
            }
            Err(KafkaError::PartitionEOF(_)) => {
                self.seen = true;
                self.next = self.position(consumer, topic);
            }
            Err(e) => return Err(kafka_error("read", e)),
        }
        Ok(())
    }

    /// Where the consumer stands: past the last record it delivered, and past the commit
    /// markers after it, which it consumes without delivering (its own position counts them).
    fn position(&self, consumer: &KafkaConsumer, topic: &str) -> Offset {
        let own = self
            .seen
            .then(|| consumer.position().ok())
            .flatten()
            .and_then(|tpl| match tpl.find_partition(topic, PARTITION)?.offset() {
                KafkaOffset::Offset(o) => Offset::try_from(o).ok(),
                _ => None,
            });
        self.next.max(own.unwrap_or(0))
    }

    /// Up to `max` buffered records, which the next call then starts after.
    fn take(&mut self, max: usize) -> Vec<Record> {
        let n = max.min(self.buffer.len());
        let out: Vec<Record> = self.buffer.drain(..n).collect();
        if let Some(last) = out.last() {
            self.from = last.offset + 1;
        }
        out
    }
}

impl KafkaLogReader {
    /// Opens a reader of `topic`; it does not need a running writer, but the topic must exist
    /// with one partition (a mistyped name must not read as an empty log).
    pub fn open(bootstrap: &str, topic: &str, options: KafkaLogOptions) -> Result<Self, LogError> {
        let reader = Self::new(Target::new(bootstrap, topic, options));
        let consumer = reader.consumer()?;
        match topic_partitions(consumer.client(), topic, reader.target.options.timeout)? {
            Some(1) => Ok(reader),
            Some(n) => Err(not_one_partition(topic, n)),
            None => Err(LogError::NoSuchTopic {
                topic: topic.to_owned(),
                bootstrap: bootstrap.to_owned(),
            }),
        }
    }

    pub(super) fn new(target: Target) -> Self {
        let consumer = target.consumer();
        let offsets = target.offsets_client();
        Self {
            target,
            consumer,
            offsets,
            cursor: Mutex::new(Cursor::default()),
        }
    }

    fn consumer(&self) -> Result<&Arc<KafkaConsumer>, LogError> {
        self.consumer.as_ref().map_err(Clone::clone)
    }

    /// The first offset still in the log and the last stable offset (under read_committed,
    /// the end of what is decided: commit markers included, open transactions excluded).
    async fn watermarks(&self) -> Result<(Offset, Offset), LogError> {
        let client = Arc::clone(self.offsets.as_ref().map_err(Clone::clone)?);
        let topic = self.target.topic.clone();
        let timeout = self.target.options.timeout;
        let (low, high) = tokio::task::spawn_blocking(move || {
            client.fetch_watermarks(&topic, PARTITION, timeout)
        })
        .await
        .map_err(|e| kafka_error("query offsets", e))?
        .map_err(|e| kafka_error("query offsets", e))?;
        Ok((low.max(0) as Offset, high.max(0) as Offset))
    }

    fn check_retained(&self, from: Offset, low: Offset) -> Result<(), LogError> {
        if from < low {
            return Err(kafka_error(
                "read",
                format!(
                    "offset {from} is no longer in topic {:?}, which starts at {low} \
                     (deleted by retention: the topic's retention must be infinite)",
                    self.target.topic
                ),
            ));
        }
        Ok(())
    }

    /// Points the consumer at `at`; what it had fetched is dropped.
    fn assign(&self, cursor: &mut Cursor, at: Offset) -> Result<(), LogError> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.target.topic,
            PARTITION,
            KafkaOffset::Offset(at as i64),
        )
        .map_err(|e| kafka_error("assign", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("assign", e))?;
        *cursor = Cursor {
            assigned: true,
            from: at,
            next: at,
            buffer: VecDeque::new(),
            seen: false,
        };
        Ok(())
    }

    /// Takes the consumer's next message or end-of-partition into the cursor; false when
    /// `deadline` passed first (at once when it already has).
    async fn pull(&self, cursor: &mut Cursor, deadline: Instant) -> Result<bool, LogError> {
        let consumer = self.consumer()?;
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(got) => {
                cursor.accept(got, consumer, &self.target.topic)?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn stands_at(&self, c: &Cursor) -> Offset {
        match self.consumer() {
            Ok(consumer) => c.position(consumer, &self.target.topic).max(c.from),
            Err(_) => c.next.max(c.from),
        }
    }

    fn no_answer(&self, op: &'static str) -> LogError {
        kafka_error(
            op,
            format!(
                "no answer from {} within {:?}",
                self.target.bootstrap, self.target.options.timeout
            ),
        )
    }
}

impl LogReader for KafkaLogReader {
    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.cursor.lock().await;
        if c.covers(from) {
            c.skip_to(from);
        } else {
            let (low, stable) = self.watermarks().await?;
            if from >= stable {
                return Ok(Vec::new());
            }
            self.check_retained(from, low)?;
            self.assign(&mut c, from)?;
        }
        let deadline = deadline::after(self.target.options.timeout);
        while c.buffer.len() < max {
            // Whatever the consumer has ready, without waiting.
            if self.pull(&mut c, deadline::immediate()).await? {
                continue;
            }
            if !c.buffer.is_empty() {
                break;
            }
            // Nothing ready: is anything committed at or past where the consumer stands? (An
            // end-of-partition event would say so too, but only a fetch wait later.)
            let (_, stable) = self.watermarks().await?;
            if self.stands_at(&c) >= stable {
                break;
            }
            if !self.pull(&mut c, deadline).await? {
                return Err(self.no_answer("read"));
            }
        }
        Ok(c.take(max))
    }

    async fn end(&self) -> Result<Offset, LogError> {
        let (low, stable) = self.watermarks().await?;
        if stable <= low {
            return Ok(stable);
        }
        // The last stable offset counts commit markers (and aborted records): find the last
        // committed record below it, looking further back only when the tail holds none.
        let mut c = self.cursor.lock().await;
        let deadline = deadline::after(self.target.options.timeout);
        let mut window = END_WINDOW;
        loop {
            let start = stable.saturating_sub(window).max(low);
            self.assign(&mut c, start)?;
            let mut last = None;
            loop {
                if !self.pull(&mut c, deadline::immediate()).await? {
                    if self.stands_at(&c) >= stable {
                        break;
                    }
                    if !self.pull(&mut c, deadline).await? {
                        return Err(self.no_answer("end"));
                    }
                }
                // Only the offset matters here; the payloads are not kept.
                if let Some(r) = c.buffer.pop_back() {
                    last = Some(r.offset);
                }
                c.buffer.clear();
            }
            c.from = c.next;
            if let Some(last) = last {
                return Ok(last + 1);
            }
            if start == low {
                return Ok(low);
            }
            window = window.saturating_mul(16);
        }
    }

    async fn wait_for(&self, from: Offset, timeout: Duration) -> Result<bool, LogError> {
        let deadline = deadline::after(timeout);
        let mut c = self.cursor.lock().await;
        if c.covers(from) {
            c.skip_to(from);
        } else {
            let (low, stable) = self.watermarks().await?;
            self.check_retained(from, low)?;
            // Never past the stable end: beyond the high watermark is out of range.
            self.assign(&mut c, from.min(stable))?;
            c.skip_to(from);
        }
        loop {
            if !c.buffer.is_empty() {
                return Ok(true);
            }
            if !self.pull(&mut c, deadline).await? {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_serves_forward_reads_and_refuses_going_back() {
        let mut c = Cursor {
            assigned: true,
            from: 5,
            next: 8,
            buffer: (5..8)
                .map(|offset| Record {
                    offset,
                    payload: Vec::new(),
                })
                .collect(),
            seen: true,
        };
        assert!(c.covers(5) && c.covers(8) && c.covers(8 + SKIP_AHEAD));
        assert!(!c.covers(4) && !c.covers(9 + SKIP_AHEAD));
        c.skip_to(6);
        assert_eq!(c.take(1)[0].offset, 6);
        assert_eq!(c.from, 7);
        assert!(!c.covers(6));
        assert!(!Cursor::default().covers(0), "nothing assigned yet");
    }
}
