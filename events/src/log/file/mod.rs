//! The embedded log: segment files in one directory, group commit, crash recovery.
//!
//! # On disk
//! ```text
//! DIR/LOCK                      flock'ed by the one writer for its lifetime
//! DIR/COMMIT                    durable end: u64 LE end offset, u32 LE CRC32C of those 8 bytes
//! DIR/<base offset, 20 digits>.seg
//!   header (32 bytes): magic "PRLXLOG\0", format version u32 LE (1), flags u32 (0),
//!                      base offset u64 LE, CRC32C u32 LE of the 24 bytes before, 4 zero bytes
//!   records:           crc u32 LE | len u32 LE | offset u64 LE | batch_pos u32 LE |
//!                      batch_len u32 LE | payload (len bytes)
//!                      crc = CRC32C of everything after it (bytes 4 .. 24 + len)
//! ```
//! Each record carries its own offset and its place in its batch, so recovery can tell a torn
//! tail (cut off mid-batch by a crash: truncated back to the last whole batch) from corruption
//! in the middle (a bad record followed by a good one: an error naming the offset).
//!
//! # Durability and visibility
//! One writer thread drains every append waiting in its queue, writes them with one `write`,
//! makes them durable with one `fdatasync` (group commit: ~4 ms per sync here, so batching is
//! what buys throughput), then publishes the new end in `COMMIT` and acknowledges. Readers,
//! in any process, read only below the end published in `COMMIT`, so they never act on bytes a
//! power cut could take back. `COMMIT` itself is not synced: it only ever trails durable data,
//! and the writer rewrites it from the recovered segments on open.
//!
//! # Layout
//! - `format`: the bytes on disk: file names, the segment header, the record frame, `COMMIT`.
//! - `options`: [`FileLogOptions`], the backend's tuning.
//! - `recovery`: the scan of the tail segment at open (torn tail or damage).
//! - `writer`: [`FileLogWriter`], the lock and the group-committing writer thread.
//! - `reader`: [`FileLogReader`], in the writer's process or another.

mod format;
mod options;
mod reader;
mod recovery;
mod writer;

pub use self::options::FileLogOptions;
pub use self::reader::FileLogReader;
pub use self::writer::FileLogWriter;

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of another process keeps its `COMMIT` handle open: it must still see what a
    /// writer publishes after that writer closed the log and another one reopened it.
    #[tokio::test]
    async fn an_open_reader_sees_the_end_across_writer_restarts() {
        use crate::log::{LogReader, LogWriter};
        let dir = tempfile::tempdir().unwrap();
        let writer = FileLogWriter::open(dir.path(), FileLogOptions::default()).unwrap();
        writer.append(vec![b"one".to_vec()]).await.unwrap();
        let reader = FileLogReader::open(dir.path(), FileLogOptions::default()).unwrap();
        assert_eq!(reader.end().await.unwrap(), 1);
        drop(writer);
        let writer = FileLogWriter::open(dir.path(), FileLogOptions::default()).unwrap();
        writer
            .append(vec![b"two".to_vec(), b"three".to_vec()])
            .await
            .unwrap();
        assert_eq!(reader.end().await.unwrap(), 3);
        let read: Vec<Vec<u8>> = reader
            .read(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect();
        assert_eq!(read, [&b"one"[..], b"two", b"three"]);
    }
}
