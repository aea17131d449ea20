//! `file://DIR[?segment_bytes=N&poll_ms=N]` and `kafka://HOST:PORT/TOPIC`.

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
    /// An Apache Kafka topic.
    Kafka { bootstrap: String, topic: String },
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
            let (bootstrap, topic) = rest
                .split_once('/')
                .ok_or_else(|| bad("kafka:// needs HOST:PORT/TOPIC"))?;
            if bootstrap.is_empty() || topic.is_empty() {
                return Err(bad("kafka:// needs HOST:PORT/TOPIC"));
            }
            Ok(LogUrl::Kafka {
                bootstrap: bootstrap.to_owned(),
                topic: topic.to_owned(),
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
    fn rejects_bad_urls_with_reasons() {
        for (url, needle) in [
            ("s3://x", "expected file://"),
            ("file://", "needs a directory"),
            ("file://d?segment_bytes=1", "at least 4096"),
            ("file://d?colour=blue", "unknown option"),
            ("file://d?poll_ms=x", "not a non-negative integer"),
            ("kafka://host:9092", "HOST:PORT/TOPIC"),
        ] {
            let err = LogUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
