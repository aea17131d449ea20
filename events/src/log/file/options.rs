//! The file backend's tuning. A leaf: the writer and the readers both read it.

use std::time::Duration;

/// Tuning of the file backend; the defaults suit the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLogOptions {
    /// A new segment starts once the current one would grow past this.
    pub segment_bytes: u64,
    /// The largest record accepted; a larger one is refused at `append`, before the queue.
    pub max_record_bytes: usize,
    /// A group commit stops collecting queued appends past this many bytes.
    pub max_group_bytes: usize,
    /// How often a reader in another process looks for new commits.
    pub poll_interval: Duration,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_record_bytes: 8 << 20,
            max_group_bytes: 8 << 20,
            poll_interval: Duration::from_millis(5),
        }
    }
}
