//! `file://DIR[?segment_bytes=N&poll_ms=N]` and
//! `kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?txn_id=ID&fetch_wait_ms=N&timeout_ms=N&replication=N]`.

use std::path::PathBuf;
use std::time::Duration;

use super::file::FileLogOptions;
use super::LogError;

/// A parsed log location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogUrl {
    /// The embedded segment-file log in a directory (created if missing).
    File {
        dir: PathBuf,
        options: FileLogOptions,
    },
    /// An Apache Kafka topic with one partition (see `kafka.rs`, feature `kafka`).
    Kafka {
        bootstrap: String,
        topic: String,
        options: KafkaLogOptions,
    },
}

/// Tuning of the Kafka backend; parsed from the URL even where the backend is not compiled in,
/// so a bad URL is reported as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaLogOptions {
    /// The writer's `transactional.id`; a second writer with the same id fences the first.
    /// `None`: `prlx-log.<topic>`, so every writer of one log fences the others.
    pub transactional_id: Option<String>,
    /// How long the broker holds a reader's fetch on a quiet topic (`fetch.wait.max.ms`): the
    /// longest a follower may lag a commit when the broker does not answer it early.
    pub fetch_wait: Duration,
    /// The limit on each blocking broker operation: topic creation, metadata, offsets,
    /// `init_transactions`, commit and abort.
    pub timeout: Duration,
    /// Replication factor of a topic the writer creates (1 on a single broker).
    pub replication: i32,
    /// The largest record accepted; a larger one is refused at `append`, before the queue.
    pub max_record_bytes: usize,
    /// A group commit (one transaction) stops collecting queued appends past this many bytes.
    pub max_group_bytes: usize,
}

impl Default for KafkaLogOptions {
    fn default() -> Self {
        Self {
            transactional_id: None,
            fetch_wait: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
            replication: 1,
            max_record_bytes: 8 << 20,
            max_group_bytes: 8 << 20,
        }
    }
}

impl KafkaLogOptions {
    /// The transactional id the writer of `topic` uses.
    pub fn transactional_id_for(&self, topic: &str) -> String {
        self.transactional_id
            .clone()
            .unwrap_or_else(|| format!("prlx-log.{topic}"))
    }
}

impl LogUrl {
    pub fn parse(url: &str) -> Result<Self, LogError> {
        let bad = |reason: &str| LogError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = url.strip_prefix("file://") {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(bad(
                    "file:// needs a directory, e.g. file://./log or file:///var/lib/prlx/log",
                ));
            }
            let mut options = FileLogOptions::default();
            for pair in query.into_iter().flat_map(|q| q.split('&')) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(&format!("option {pair:?} is not key=value")))?;
                if !matches!(k, "segment_bytes" | "poll_ms") {
                    return Err(bad(&format!(
                        "unknown option {k:?} (known: segment_bytes, poll_ms)"
                    )));
                }
                let n: u64 = v.parse().map_err(|_| {
                    bad(&format!("option {k}: {v:?} is not a non-negative integer"))
                })?;
                match k {
                    "segment_bytes" => {
                        if n < 4096 {
                            return Err(bad("segment_bytes must be at least 4096"));
                        }
                        options.segment_bytes = n;
                    }
                    _ => options.poll_interval = Duration::from_millis(n.max(1)),
                }
            }
            Ok(LogUrl::File {
                dir: PathBuf::from(path),
                options,
            })
        } else if let Some(rest) = url.strip_prefix("kafka://") {
            let (rest, query) = match rest.split_once('?') {
                Some((r, q)) => (r, Some(q)),
                None => (rest, None),
            };
            let (bootstrap, topic) = rest
                .split_once('/')
                .ok_or_else(|| bad("kafka:// needs HOST:PORT/TOPIC"))?;
            if bootstrap.is_empty() || topic.is_empty() {
                return Err(bad("kafka:// needs HOST:PORT/TOPIC"));
            }
            // Kafka's own rule for topic names; anything else would fail later, less clearly.
            if topic.len() > 249
                || matches!(topic, "." | "..")
                || !topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(bad(
                    "a Kafka topic is 1 to 249 of [a-zA-Z0-9._-], and not \".\" or \"..\"",
                ));
            }
            let mut options = KafkaLogOptions::default();
            for pair in query.into_iter().flat_map(|q| q.split('&')) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(&format!("option {pair:?} is not key=value")))?;
                let number = || -> Result<u64, LogError> {
                    v.parse().map_err(|_| {
                        bad(&format!("option {k}: {v:?} is not a non-negative integer"))
                    })
                };
                match k {
                    "txn_id" => {
                        if v.is_empty() {
                            return Err(bad("txn_id must not be empty"));
                        }
                        options.transactional_id = Some(v.to_owned());
                    }
                    "fetch_wait_ms" => options.fetch_wait = Duration::from_millis(number()?.max(1)),
                    "timeout_ms" => {
                        let n = number()?;
                        if n < 1000 {
                            return Err(bad("timeout_ms must be at least 1000"));
                        }
                        options.timeout = Duration::from_millis(n);
                    }
                    "replication" => {
                        options.replication = match i32::try_from(number()?) {
                            Ok(n) if n >= 1 => n,
                            _ => return Err(bad("replication must be at least 1")),
                        }
                    }
                    _ => {
                        return Err(bad(&format!(
                            "unknown option {k:?} (known: txn_id, fetch_wait_ms, timeout_ms, replication)"
                        )))
                    }
                }
            }
            Ok(LogUrl::Kafka {
                bootstrap: bootstrap.to_owned(),
                topic: topic.to_owned(),
                options,
            })
        } else {
            Err(bad("expected file://DIR or kafka://HOST:PORT/TOPIC"))
        }
    }
}

impl std::str::FromStr for LogUrl {
    type Err = LogError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_urls_with_options() {
        let u = LogUrl::parse("file://./log?segment_bytes=65536&poll_ms=3").unwrap();
        let LogUrl::File { dir, options } = u else {
            panic!("not a file url")
        };
        assert_eq!(dir, PathBuf::from("./log"));
        assert_eq!(options.segment_bytes, 65536);
        assert_eq!(options.poll_interval, Duration::from_millis(3));
        assert!(matches!(
            LogUrl::parse("file:///abs/dir").unwrap(),
            LogUrl::File { dir, .. } if dir == std::path::Path::new("/abs/dir")
        ));
    }

    #[test]
    fn parses_kafka_urls_with_options() {
        let u = LogUrl::parse("kafka://127.0.0.1:19092/prlx.events").unwrap();
        let LogUrl::Kafka {
            bootstrap,
            topic,
            options,
        } = u
        else {
            panic!("not a kafka url")
        };
        assert_eq!(
            (bootstrap.as_str(), topic.as_str()),
            ("127.0.0.1:19092", "prlx.events")
        );
        assert_eq!(options, KafkaLogOptions::default());
        assert_eq!(options.transactional_id_for(&topic), "prlx-log.prlx.events");

        let u = LogUrl::parse(
            "kafka://a:1,b:2/t?txn_id=coord-1&fetch_wait_ms=10&timeout_ms=5000&replication=3",
        )
        .unwrap();
        let LogUrl::Kafka {
            bootstrap, options, ..
        } = u
        else {
            panic!("not a kafka url")
        };
        assert_eq!(bootstrap, "a:1,b:2");
        assert_eq!(options.transactional_id_for("t"), "coord-1");
        assert_eq!(options.fetch_wait, Duration::from_millis(10));
        assert_eq!(options.timeout, Duration::from_secs(5));
        assert_eq!(options.replication, 3);
    }

    #[test]
    fn rejects_bad_urls_with_reasons() {
        for (url, needle) in [
            ("s3://x", "expected file://"),
            ("file://", "needs a directory"),
            ("file://d?segment_bytes=1", "at least 4096"),
            ("file://d?colour=blue", "unknown option"),
            ("file://d?poll_ms=x", "not a non-negative integer"),
            ("kafka://host:9092", "HOST:PORT/TOPIC"),
            ("kafka://host:9092/", "HOST:PORT/TOPIC"),
            ("kafka://host:9092/a/b", "a Kafka topic is"),
            ("kafka://host:9092/t?colour=blue", "unknown option"),
            ("kafka://host:9092/t?txn_id=", "must not be empty"),
            ("kafka://host:9092/t?timeout_ms=10", "at least 1000"),
            ("kafka://host:9092/t?replication=0", "at least 1"),
        ] {
            let err = LogUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
