//! The single writer of a file log: the lock, recovery at open, and one thread that group
//! commits whatever is queued (one `write`, one `fdatasync`) and then publishes the new end.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;

use tokio::sync::watch;

use super::format::{
    commit_bytes, encode_record, encode_segment_header, list_segments, segment_path, COMMIT_FILE,
    LOCK_FILE, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::options::FileLogOptions;
use super::reader::{EndSource, FileLogReader};
use super::recovery::{recover_segment, Recovered};
use crate::log::{enqueue_append, AppendRequest, LogError, LogWriter, Offset};

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

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
