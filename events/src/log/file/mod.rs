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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use tokio::sync::watch;

use super::{enqueue_append, AppendRequest, LogError, LogReader, LogWriter, Offset, Record};

const MAGIC: &[u8; 8] = b"PRLXLOG\0";
const FORMAT_VERSION: u32 = 1;
const SEGMENT_HEADER_LEN: u64 = 32;
const RECORD_HEADER_LEN: usize = 24;
const COMMIT_FILE: &str = "COMMIT";
const LOCK_FILE: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".seg";

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

fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

/// Segment base offsets in ascending order.
fn list_segments(dir: &Path) -> Result<Vec<Offset>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))? {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
            if stem.len() == 20 {
                if let Ok(base) = stem.parse() {
                    bases.push(base);
                }
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn encode_segment_header(base: Offset) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_segment_header(path: &Path, h: &[u8], base: Offset) -> Result<(), LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        offset: base,
        file: path.to_owned(),
        position: 0,
        reason,
    };
    if &h[..8] != MAGIC {
        return Err(corrupt("not a log segment (bad magic)".into()));
    }
    let crc = u32::from_le_bytes(h[24..28].try_into().unwrap());
    if crc != crc32c::crc32c(&h[..24]) {
        return Err(corrupt("segment header checksum mismatch".into()));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "segment format version {version}; this build reads {FORMAT_VERSION}"
        )));
    }
    let recorded = u64::from_le_bytes(h[16..24].try_into().unwrap());
    if recorded != base {
        return Err(corrupt(format!(
            "header says base offset {recorded}, file name says {base}"
        )));
    }
    Ok(())
}

fn encode_record(
    buf: &mut Vec<u8>,
    offset: Offset,
    batch_pos: u32,
    batch_len: u32,
    payload: &[u8],
) {
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&offset.to_le_bytes());
    header[16..20].copy_from_slice(&batch_pos.to_le_bytes());
    header[20..24].copy_from_slice(&batch_len.to_le_bytes());
    let start = buf.len();
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    // One pass over one contiguous range, while the bytes are hot from the copy.
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record frame parsed from a byte slice that starts at a frame boundary.
#[derive(Debug)]
struct Frame {
    offset: Offset,
    batch_pos: u32,
    batch_len: u32,
    /// Bytes of the whole frame, header included.
    frame_len: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum FrameError {
    /// The slice ends before the frame does.
    Incomplete,
    Invalid(String),
}

fn parse_frame(bytes: &[u8], max_record: usize) -> Result<Frame, FrameError> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    if len > max_record {
        return Err(FrameError::Invalid(format!(
            "record length {len} exceeds the limit {max_record}"
        )));
    }
    let frame_len = RECORD_HEADER_LEN + len;
    if bytes.len() < frame_len {
        return Err(FrameError::Incomplete);
    }
    let crc = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    if crc != crc32c::crc32c(&bytes[4..frame_len]) {
        return Err(FrameError::Invalid("record checksum mismatch".into()));
    }
    let batch_pos = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
    let batch_len = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
    if batch_pos >= batch_len {
        return Err(FrameError::Invalid(format!(
            "batch position {batch_pos} outside a batch of {batch_len}"
        )));
    }
    Ok(Frame {
        offset: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        batch_pos,
        batch_len,
        frame_len,
    })
}

/// The end a `COMMIT` file's bytes publish; `None` when short or the CRC does not match.
fn decode_commit(bytes: &[u8]) -> Option<Offset> {
    if bytes.len() < 12 {
        return None;
    }
    let end = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    // A reader racing the writer's overwrite could see a mix of old and new bytes; the CRC
    // catches that and the caller simply reads again.
    (crc == crc32c::crc32c(&bytes[..8])).then_some(end)
}

fn commit_bytes(end: Offset) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&end.to_le_bytes());
    let crc = crc32c::crc32c(&b[..8]);
    b[8..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

// ---------------------------------------------------------------------------------------------
// Recovery

/// What scanning the last segment found.
#[derive(Debug)]
struct Recovered {
    /// Length of the valid prefix: whole batches only.
    valid_len: u64,
    /// One past the last offset in the valid prefix.
    end: Offset,
}

/// Scans the tail segment. A bad or partial record that nothing valid follows is a torn tail
/// (the crash cut the last write short) and is cut off along with the rest of its batch. A bad
/// record followed by a valid record with the next offset is damage in the middle of durable
/// data: that is reported, never truncated away.
fn recover_segment(path: &Path, base: Offset, max_record: usize) -> Result<Recovered, LogError> {
    let bytes = fs::read(path).map_err(|e| LogError::io("read", path, e))?;
    if (bytes.len() as u64) < SEGMENT_HEADER_LEN {
        // Created, header not yet durable: the segment held nothing acknowledged.
        return Ok(Recovered {
            valid_len: 0,
            end: base,
        });
    }
    check_segment_header(path, &bytes[..SEGMENT_HEADER_LEN as usize], base)?;
    let mut pos = SEGMENT_HEADER_LEN as usize;
    let mut expected = base;
    let mut last_whole_batch = (pos, expected);
    while pos < bytes.len() {
        match parse_frame(&bytes[pos..], max_record) {
            Ok(f) if f.offset == expected => {
                pos += f.frame_len;
                expected += 1;
                if f.batch_pos + 1 == f.batch_len {
                    last_whole_batch = (pos, expected);
                }
            }
            Ok(f) => {
                return Err(LogError::Corrupt {
                    offset: expected,
                    file: path.to_owned(),
                    position: pos as u64,
                    reason: format!("record says offset {}, expected {expected}", f.offset),
                })
            }
            Err(FrameError::Incomplete) => break,
            Err(FrameError::Invalid(reason)) => {
                if valid_record_follows(&bytes, pos, expected, max_record) {
                    return Err(LogError::Corrupt {
                        offset: expected,
                        file: path.to_owned(),
                        position: pos as u64,
                        reason,
                    });
                }
                break;
            }
        }
    }
    Ok(Recovered {
        valid_len: last_whole_batch.0 as u64,
        end: last_whole_batch.1,
    })
}

/// Whether the frame after a bad one at `pos` (skipping by its declared length) is a valid
/// record numbered `expected + 1`: proof that the bad one is not the torn end of the log.
fn valid_record_follows(bytes: &[u8], pos: usize, expected: Offset, max_record: usize) -> bool {
    if bytes.len() < pos + RECORD_HEADER_LEN {
        return false;
    }
    let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
    let next = pos + RECORD_HEADER_LEN + len;
    len <= max_record
        && next < bytes.len()
        && matches!(parse_frame(&bytes[next..], max_record), Ok(f) if f.offset == expected + 1)
}

// ---------------------------------------------------------------------------------------------
// The writer

/// The single writer of a file log. Dropping it stops the writer thread after the queued
/// appends are done.
#[derive(Debug)]
pub struct FileLogWriter {
    dir: PathBuf,
    options: FileLogOptions,
    queue: Option<std_mpsc::Sender<AppendRequest>>,
    committed: watch::Receiver<Offset>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FileLogWriter {
    /// Locks `dir` (creating it), recovers the tail segment (truncating a torn tail, refusing
    /// on damage in the middle), publishes the recovered end and starts the writer thread.
    pub fn open(dir: impl AsRef<Path>, options: FileLogOptions) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|e| LogError::io("create", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(LogError::Locked { dir }),
            Err(fs::TryLockError::Error(e)) => return Err(LogError::io("lock", &lock_path, e)),
        }

        let mut bases = list_segments(&dir)?;
        if bases.is_empty() {
            bases.push(0);
        }
        let base = *bases.last().unwrap();
        let path = segment_path(&dir, base);
        let recovered = if path.exists() {
            recover_segment(&path, base, options.max_record_bytes)?
        } else {
            Recovered {
                valid_len: 0,
                end: base,
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io("open", &path, e))?;
        let mut seg_len = recovered.valid_len;
        if seg_len < SEGMENT_HEADER_LEN {
            file.set_len(0)
                .and_then(|_| file.write_all_at(&encode_segment_header(base), 0))
                .map_err(|e| LogError::io("write header", &path, e))?;
            seg_len = SEGMENT_HEADER_LEN;
        }
        let on_disk = file
            .metadata()
            .map_err(|e| LogError::io("stat", &path, e))?
            .len();
        if on_disk != seg_len {
            file.set_len(seg_len)
                .map_err(|e| LogError::io("truncate torn tail", &path, e))?;
        }
        file.sync_all()
            .map_err(|e| LogError::io("fsync", &path, e))?;
        sync_dir(&dir)?;

        let commit_path = dir.join(COMMIT_FILE);
        let commit = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&commit_path)
            .map_err(|e| LogError::io("open", &commit_path, e))?;
        commit
            .write_all_at(&commit_bytes(recovered.end), 0)
            .and_then(|_| commit.sync_all())
            .map_err(|e| LogError::io("write", &commit_path, e))?;
        sync_dir(&dir)?;

        let (committed_tx, committed_rx) = watch::channel(recovered.end);
        let (queue_tx, queue_rx) = std_mpsc::channel();
        let mut state = WriterThread {
            dir: dir.clone(),
            options: options.clone(),
            segment: file,
            segment_path: path,
            segment_len: seg_len,
            next: recovered.end,
            commit,
            committed: committed_tx,
            poisoned: None,
            buf: Vec::with_capacity(1 << 20),
            _lock: lock,
        };
        let thread = thread::Builder::new()
            .name("prlx-log-writer".into())
            .spawn(move || state.run(queue_rx))
            .map_err(|e| LogError::io("spawn writer thread", &dir, e))?;
        Ok(Self {
            dir,
            options,
            queue: Some(queue_tx),
            committed: committed_rx,
            thread: Some(thread),
        })
    }

    /// A reader in this process, woken by the writer on each commit.
    pub fn reader(&self) -> FileLogReader {
        FileLogReader::new(
            self.dir.clone(),
            self.options.clone(),
            EndSource::Watch(self.committed.clone()),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FileLogWriter {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LogWriter for FileLogWriter {
    fn append(
        &self,
        batch: Vec<Vec<u8>>,
    ) -> impl std::future::Future<Output = Result<Range<Offset>, LogError>> + Send + 'static {
        let end = *self.committed.borrow();
        enqueue_append(
            batch,
            Default::default(),
            end,
            self.options.max_record_bytes,
            |req| self.queue.as_ref().is_some_and(|q| q.send(req).is_ok()),
        )
        .answer()
    }
}

struct WriterThread {
    dir: PathBuf,
    options: FileLogOptions,
    segment: File,
    segment_path: PathBuf,
    segment_len: u64,
    /// The offset the next record gets.
    next: Offset,
    commit: File,
    committed: watch::Sender<Offset>,
    /// Set by the first failed write or sync. After a failed fsync the page cache may say
    /// anything, so nothing more is written until the log is reopened and recovered.
    poisoned: Option<String>,
    buf: Vec<u8>,
    _lock: File,
}

impl WriterThread {
    fn run(&mut self, queue: std_mpsc::Receiver<AppendRequest>) {
        let mut group = Vec::new();
        while let Ok(first) = queue.recv() {
            let mut bytes: usize = first.batch.iter().map(Vec::len).sum();
            group.push(first);
            while bytes < self.options.max_group_bytes {
                match queue.try_recv() {
                    Ok(req) => {
                        bytes += req.batch.iter().map(Vec::len).sum::<usize>();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            if let Some(why) = &self.poisoned {
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(LogError::Poisoned(why.clone())));
                }
                continue;
            }
            match self.write_group(&group) {
                Ok(ranges) => {
                    for (req, range) in group.drain(..).zip(ranges) {
                        let _ = req.reply.send(Ok(range));
                    }
                }
                Err(e) => {
                    self.poisoned = Some(e.to_string());
                    for req in group.drain(..) {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn write_group(&mut self, group: &[AppendRequest]) -> Result<Vec<Range<Offset>>, LogError> {
        let mut ranges = Vec::with_capacity(group.len());
        let mut next = self.next;
        self.buf.clear();
        for req in group {
            let batch_bytes: u64 = req
                .batch
                .iter()
                .map(|r| (RECORD_HEADER_LEN + r.len()) as u64)
                .sum();
            let used = self.segment_len + self.buf.len() as u64;
            // A batch never spans two segments, so recovery only ever looks at one file.
            if used > SEGMENT_HEADER_LEN && used + batch_bytes > self.options.segment_bytes {
                self.flush_buf()?;
                self.roll(next)?;
            }
            let n = req.batch.len() as u32;
            for (i, payload) in req.batch.iter().enumerate() {
                encode_record(&mut self.buf, next + i as u64, i as u32, n, payload);
            }
            ranges.push(next..next + n as u64);
            next += n as u64;
        }
        self.flush_buf()?;
        self.next = next;
        self.commit
            .write_all_at(&commit_bytes(next), 0)
            .map_err(|e| LogError::io("write", self.dir.join(COMMIT_FILE), e))?;
        self.committed.send_replace(next);
        Ok(ranges)
    }

    /// Writes the buffered records at the end of the segment and makes them durable.
    fn flush_buf(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.segment
            .write_all_at(&self.buf, self.segment_len)
            .map_err(|e| LogError::io("write", &self.segment_path, e))?;
        self.segment
            .sync_data()
            .map_err(|e| LogError::io("fdatasync", &self.segment_path, e))?;
        self.segment_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn roll(&mut self, base: Offset) -> Result<(), LogError> {
        let path = segment_path(&self.dir, base);
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io("create segment", &path, e))?;
        file.write_all(&encode_segment_header(base))
            .and_then(|_| file.sync_all())
            .map_err(|e| LogError::io("write header", &path, e))?;
        sync_dir(&self.dir)?;
        self.segment = file;
        self.segment_path = path;
        self.segment_len = SEGMENT_HEADER_LEN;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Readers

#[derive(Debug)]
enum EndSource {
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
struct CommitFile {
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

    fn new(dir: PathBuf, options: FileLogOptions, end_source: EndSource) -> Self {
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
            match cursor.next_frame(self.options.max_record_bytes)? {
                Some((offset, payload)) => {
                    if offset >= from {
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

impl Cursor {
    /// Forgets read-ahead bytes. Bytes past the durable end may still change (a crashed
    /// writer's torn tail is cut and rewritten by the next one), so read-ahead is only trusted
    /// within one call, after the durable end was read.
    fn forget_read_ahead(&mut self) {
        self.filled = 0;
        self.buf_pos = self.pos;
    }

    /// The next record of this segment, `None` at its end.
    fn next_frame(&mut self, max_record: usize) -> Result<Option<(Offset, Vec<u8>)>, LogError> {
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
                    let payload = self.buf[start + RECORD_HEADER_LEN..start + f.frame_len].to_vec();
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
                let deadline = super::deadline::after(timeout);
                loop {
                    if self.durable_end()? > from {
                        return Ok(true);
                    }
                    if super::deadline::passed(deadline) {
                        return Ok(false);
                    }
                    tokio::time::sleep(self.options.poll_interval).await;
                }
            }
        }
    }
}

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

    #[test]
    fn frame_round_trips_and_detects_damage() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, 1, 3, b"hello");
        let f = parse_frame(&buf, 1024).unwrap();
        assert_eq!(
            (f.offset, f.batch_pos, f.batch_len, f.frame_len),
            (42, 1, 3, 29)
        );
        assert_eq!(
            parse_frame(&buf[..28], 1024).unwrap_err(),
            FrameError::Incomplete
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                parse_frame(&bad, 1024).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn segment_header_checks_magic_crc_and_base() {
        let h = encode_segment_header(7);
        let p = Path::new("x.seg");
        check_segment_header(p, &h, 7).unwrap();
        assert!(check_segment_header(p, &h, 8).is_err());
        let mut bad = h;
        bad[0] = b'X';
        assert!(check_segment_header(p, &bad, 7).is_err());
    }
}
