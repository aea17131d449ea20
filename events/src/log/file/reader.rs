//! Readers of a file log, in the writer's process (woken on each commit) or another (polling
//! the `COMMIT` file): they read only below the published durable end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use tokio::sync::watch;

use super::format::{
    check_segment_header, decode_commit, list_segments, parse_frame, segment_path, FrameError,
    COMMIT_FILE, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::options::FileLogOptions;
use crate::log::{LogError, LogReader, Offset, Record};

#[derive(Debug)]
pub(super) enum EndSource {
    /// In the writer's process: woken on each commit.
    Watch(watch::Receiver<Offset>),
    /// Elsewhere: the `COMMIT` file, polled.
    File(CommitFile),
}

/// The `COMMIT` file as a reader in another process polls it: opened once and read in place.
///
/// Why keep it open: a follower polls the end every few milliseconds, and opening, reading and
/// closing the file each time cost ~100 µs of system calls per poll (an idle node spent 11–30
/// ms of CPU a second on it). The writer only ever overwrites the file in place, also when it
/// reopens the log, so a handle opened once keeps seeing every end it publishes.
#[derive(Debug)]
pub(super) struct CommitFile {
    path: PathBuf,
    /// `None` until the first successful open (and again after a read error).
    file: Mutex<Option<File>>,
}

impl CommitFile {
    /// The published end; `None` while the file is absent, short or mid-overwrite.
    fn read(&self) -> Result<Option<Offset>, LogError> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            match File::open(&self.path) {
                Ok(f) => *slot = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(LogError::io("open", &self.path, e)),
            }
        }
        let file = slot.as_ref().expect("opened above");
        let mut bytes = [0u8; 12];
        match file.read_at(&mut bytes, 0) {
            Ok(12) => Ok(decode_commit(&bytes)),
            Ok(_) => Ok(None),
            Err(e) => {
                *slot = None;
                Err(LogError::io("read", &self.path, e))
            }
        }
    }
}

/// A reader of a file log, in the writer's process or another.
#[derive(Debug)]
pub struct FileLogReader {
    dir: PathBuf,
    options: FileLogOptions,
    end_source: EndSource,
    cursor: Mutex<Option<Cursor>>,
}

/// Where the last read stopped, so a follower continues without rescanning its segment.
#[derive(Debug)]
struct Cursor {
    base: Offset,
    file: File,
    path: PathBuf,
    /// Byte position of the frame of `next`.
    pos: u64,
    next: Offset,
    /// Read-ahead: `buf[..filled]` holds the file's bytes from `buf_pos` on.
    buf: Vec<u8>,
    filled: usize,
    buf_pos: u64,
}

impl FileLogReader {
    /// Opens a reader of the log in `dir`; it needs no running writer, but it does need a log
    /// that some writer has opened once (a missing `COMMIT` is an error, not an empty log,
    /// since a mistyped path must not read as "nothing happened").
    pub fn open(dir: impl AsRef<Path>, options: FileLogOptions) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_owned();
        let commit = dir.join(COMMIT_FILE);
        if !commit.exists() {
            return Err(LogError::io(
                "open log",
                &dir,
                io::Error::new(io::ErrorKind::NotFound, "no log here (no COMMIT file)"),
            ));
        }
        let commit = CommitFile {
            path: commit,
            file: Mutex::new(None),
        };
        Ok(Self::new(dir, options, EndSource::File(commit)))
    }

    pub(super) fn new(dir: PathBuf, options: FileLogOptions, end_source: EndSource) -> Self {
        Self {
            dir,
            options,
            end_source,
            cursor: Mutex::new(None),
        }
    }

    fn durable_end(&self) -> Result<Offset, LogError> {
        match &self.end_source {
            EndSource::Watch(rx) => Ok(*rx.borrow()),
            EndSource::File(commit) => {
                for _ in 0..100 {
                    if let Some(end) = commit.read()? {
                        return Ok(end);
                    }
                    thread::yield_now();
                }
                Err(LogError::Corrupt {
                    offset: 0,
                    file: commit.path.clone(),
                    position: 0,
                    reason: "COMMIT file unreadable (bad checksum)".into(),
                })
            }
        }
    }

    fn open_cursor(&self, from: Offset) -> Result<Cursor, LogError> {
        let bases = list_segments(&self.dir)?;
        let idx = bases.partition_point(|&b| b <= from);
        let base = if idx == 0 {
            return Err(LogError::Corrupt {
                offset: from,
                file: self.dir.clone(),
                position: 0,
                reason: "no segment holds this offset".into(),
            });
        } else {
            bases[idx - 1]
        };
        let path = segment_path(&self.dir, base);
        let file = File::open(&path).map_err(|e| LogError::io("open", &path, e))?;
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| LogError::io("read header", &path, e))?;
        check_segment_header(&path, &header, base)?;
        Ok(Cursor {
            base,
            file,
            path,
            pos: SEGMENT_HEADER_LEN,
            next: base,
            buf: Vec::new(),
            filled: 0,
            buf_pos: SEGMENT_HEADER_LEN,
        })
    }

    /// The blocking core of `read`: page-cache reads, no waiting.
    fn read_blocking(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        let end = self.durable_end()?;
        if from >= end || max == 0 {
            return Ok(Vec::new());
        }
        let mut guard = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let reuse = matches!(&*guard, Some(c) if c.next <= from && c.base <= from);
        if !reuse {
            *guard = Some(self.open_cursor(from)?);
        }
        let cursor = guard.as_mut().unwrap();
        cursor.forget_read_ahead();
        let mut out = Vec::with_capacity(max.min((end - from) as usize));
        while cursor.next < end && out.len() < max {
            // Records before `from` (a cursor opened at its segment's base) are checked and
            // stepped over, not copied out: a restart from a snapshot starts mid-segment.
            let keep = cursor.next >= from;
            match cursor.next_frame(self.options.max_record_bytes, keep)? {
                Some((offset, payload)) => {
                    if let Some(payload) = payload {
                        out.push(Record { offset, payload });
                    }
                }
                None => {
                    // This segment is exhausted below the durable end: the next one must start
                    // exactly where it stopped.
                    let next = cursor.next;
                    let fresh = self.open_cursor(next)?;
                    if fresh.base != next {
                        return Err(LogError::Corrupt {
                            offset: next,
                            file: cursor.path.clone(),
                            position: cursor.pos,
                            reason: format!(
                                "segment ends before the durable end {end} and no segment starts at {next}"
                            ),
                        });
                    }
                    *cursor = fresh;
                }
            }
        }
        Ok(out)
    }
}

/// A record read by a [`Cursor`]: its offset, and its payload when it was kept.
type Frame = (Offset, Option<Vec<u8>>);

impl Cursor {
    /// Forgets read-ahead bytes. Bytes past the durable end may still change (a crashed
    /// writer's torn tail is cut and rewritten by the next one), so read-ahead is only trusted
    /// within one call, after the durable end was read.
    fn forget_read_ahead(&mut self) {
        self.filled = 0;
        self.buf_pos = self.pos;
    }

    /// The next record of this segment, `None` at its end; its payload only if `keep`.
    fn next_frame(&mut self, max_record: usize, keep: bool) -> Result<Option<Frame>, LogError> {
        loop {
            let start = (self.pos - self.buf_pos) as usize;
            match parse_frame(&self.buf[start..self.filled], max_record) {
                Ok(f) => {
                    if f.offset != self.next {
                        return Err(self.corrupt(format!(
                            "record says offset {}, expected {}",
                            f.offset, self.next
                        )));
                    }
                    let payload = keep
                        .then(|| self.buf[start + RECORD_HEADER_LEN..start + f.frame_len].to_vec());
                    self.pos += f.frame_len as u64;
                    self.next += 1;
                    return Ok(Some((f.offset, payload)));
                }
                Err(FrameError::Invalid(reason)) => return Err(self.corrupt(reason)),
                Err(FrameError::Incomplete) => {
                    if !self.refill(max_record)? {
                        if self.filled > (self.pos - self.buf_pos) as usize {
                            return Err(
                                self.corrupt("record cut short below the durable end".into())
                            );
                        }
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Moves the unparsed bytes to the front and reads more after them; false when the file
    /// has nothing more.
    fn refill(&mut self, max_record: usize) -> Result<bool, LogError> {
        const CHUNK: usize = 1 << 20;
        let start = (self.pos - self.buf_pos) as usize;
        self.buf.copy_within(start..self.filled, 0);
        self.filled -= start;
        self.buf_pos = self.pos;
        // Room for the frame being read, however large (parse_frame bounds it by max_record).
        let frame_len = if self.filled >= RECORD_HEADER_LEN {
            let len = u32::from_le_bytes(self.buf[4..8].try_into().unwrap()) as usize;
            RECORD_HEADER_LEN + len.min(max_record)
        } else {
            0
        };
        let want = CHUNK.max(frame_len);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let have = self.filled;
        while self.filled < self.buf.len() {
            match self.file.read_at(
                &mut self.buf[self.filled..],
                self.buf_pos + self.filled as u64,
            ) {
                Ok(0) => break,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LogError::io("read", &self.path, e)),
            }
        }
        Ok(self.filled > have)
    }

    fn corrupt(&self, reason: String) -> LogError {
        LogError::Corrupt {
            offset: self.next,
            file: self.path.clone(),
            position: self.pos,
            reason,
        }
    }
}

impl LogReader for FileLogReader {
    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        // Reads hit the page cache in the common case; they are short enough to run inline.
        self.read_blocking(from, max)
    }

    async fn end(&self) -> Result<Offset, LogError> {
        self.durable_end()
    }

    async fn wait_for(&self, from: Offset, timeout: Duration) -> Result<bool, LogError> {
        match &self.end_source {
            EndSource::Watch(rx) => {
                let mut rx = rx.clone();
                let woke = tokio::time::timeout(timeout, rx.wait_for(|&end| end > from))
                    .await
                    .is_ok_and(|r| r.is_ok());
                Ok(woke || *rx.borrow() > from)
            }
            EndSource::File(_) => {
                let deadline = crate::log::deadline::after(timeout);
                loop {
                    if self.durable_end()? > from {
                        return Ok(true);
                    }
                    if crate::log::deadline::passed(deadline) {
                        return Ok(false);
                    }
                    tokio::time::sleep(self.options.poll_interval).await;
                }
            }
        }
    }
}
