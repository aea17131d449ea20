//! [`RequestIndex`]: the store of settled requests' summaries (see the module above).

use std::path::{Path, PathBuf};

use prlx_events::{AccountId, RequestId};
use prlx_projections::coordinator::RequestSummary;
use redb::{Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// request id -> its summary, JSON.
const REQUESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("requests");
/// (account, Idempotency-Key), spelled by [`key_of`] -> request id.
const KEYS: TableDefinition<&[u8], u64> = TableDefinition::new("keys");
/// `settled_through` (u64, little-endian), `log_id` (the event id of the log's first record).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The store's page cache. redb's default would let the pages of an index that grows with
/// history pile up in the coordinator's memory; reads of old requests are rare enough to go
/// to disk.
const CACHE_BYTES: usize = 4 << 20;

fn create(path: &Path) -> Result<Database, DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
}

/// The store's file inside the index directory.
const FILE: &str = "requests.redb";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("request index {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("request index {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("request index {path}: the summary of request {id} does not decode: {reason}")]
    Damaged {
        path: String,
        id: u64,
        reason: String,
    },
}

/// What the index says of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexMeta {
    /// It holds every request settled up to this sequence (see
    /// `RequestSummary::settled_seq`) that has been synced.
    pub settled_through: u64,
    /// The log it was built from: the event id of its first record.
    pub log_id: Option<String>,
}

/// The on-disk index; cheap to share (`Arc`), readers run beside the writer.
#[derive(Debug)]
pub struct RequestIndex {
    db: Database,
    path: PathBuf,
}

impl RequestIndex {
    /// Opens the index in `dir`, creating it. A store that does not open (damaged, or of
    /// another format) is deleted and made anew, empty: the coordinator's start-up fold fills
    /// it again from the log.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let io = |op, e| IndexError::Io {
            op,
            path: dir.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory", e))?;
        let path = dir.join(FILE);
        // Another instance of this process's coordinator (the one before a failover) may
        // still be closing it: wait for it a little, never take it over.
        let opened = std::time::Instant::now();
        let db = loop {
            // redb asserts on some damage (a file cut short) instead of returning an error;
            // the index is derived, so a store that panics on open is damaged like any other.
            let created = std::panic::catch_unwind(|| create(&path)).unwrap_or_else(|_| {
                Err(DatabaseError::Storage(redb::StorageError::Corrupted(
                    "the store panicked on open".into(),
                )))
            });
            match created {
                Ok(db) => break db,
                Err(DatabaseError::DatabaseAlreadyOpen)
                    if opened.elapsed() < std::time::Duration::from_secs(10) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e @ DatabaseError::DatabaseAlreadyOpen) => return Err(store(&path, e)),
                // Not a store of ours at all reads as invalid data; any other I/O error is
                // the disk's or the permissions', which a rebuild would not cure.
                Err(DatabaseError::Storage(redb::StorageError::Io(e)))
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Err(io("open the store", e))
                }
                // Damaged, or of a format this build does not read: it is derived, so it is
                // made anew and filled from the log.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "request index does not open; rebuilding it from the log");
                    std::fs::remove_file(&path).map_err(|e| io("remove the damaged store", e))?;
                    break create(&path).map_err(|e| store(&path, e))?;
                }
            }
        };
        let index = Self { db, path };
        // Tables exist from the start, so readers never meet a missing one.
        index.commit(Durability::Immediate, |_, _, _| Ok(()))?;
        Ok(index)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> Result<IndexMeta, IndexError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = read.open_table(META).map_err(|e| self.err(e))?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, IndexError> {
            Ok(meta
                .get(k)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec()))
        };
        let settled_through = get("settled_through")?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        let log_id = get("log_id")?.and_then(|b| String::from_utf8(b).ok());
        Ok(IndexMeta {
            settled_through,
            log_id,
        })
    }

    /// Empties it, for a log other than the one it was built from.
    pub fn clear(&self, log_id: Option<&str>) -> Result<(), IndexError> {
        self.commit(Durability::Immediate, |requests, keys, meta| {
            requests.retain(|_, _| false)?;
            keys.retain(|_, _| false)?;
            meta.retain(|_, _| false)?;
            if let Some(id) = log_id {
                meta.insert("log_id", id.as_bytes())?;
            }
            Ok(())
        })
    }

    /// Records the log's identity (the event id of its first record).
    pub fn set_log_id(&self, log_id: &str) -> Result<(), IndexError> {
        self.commit(Durability::Immediate, |_, _, meta| {
            meta.insert("log_id", log_id.as_bytes())?;
            Ok(())
        })
    }

    /// Says it holds settlements up to `seq` and no further, synced (after a crash lost a
    /// tail of the log that summaries had been written for).
    pub fn set_settled_through(&self, seq: u64) -> Result<(), IndexError> {
        self.commit(Durability::Immediate, |_, _, meta| {
            meta.insert("settled_through", seq.to_le_bytes().as_slice())?;
            Ok(())
        })
    }

    /// Writes `summaries` (settled requests, in settlement order), synced to disk when
    /// `sync`. The index then holds every settlement up to the last one's sequence.
    pub fn write(&self, summaries: &[RequestSummary], sync: bool) -> Result<(), IndexError> {
        let durability = if sync {
            Durability::Immediate
        } else {
            Durability::None
        };
        let through = summaries.iter().filter_map(|s| s.settled_seq).max();
        self.commit(durability, |requests, keys, meta| {
            for s in summaries {
                let body = serde_json::to_vec(s).expect("a summary serializes");
                requests.insert(s.request_id.0, body.as_slice())?;
                if let Some(key) = &s.idempotency_key {
                    keys.insert(key_of(&s.account, key).as_slice(), s.request_id.0)?;
                }
            }
            if let Some(through) = through {
                let was = meta
                    .get("settled_through")?
                    .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                    .map_or(0, u64::from_le_bytes);
                if through > was {
                    meta.insert("settled_through", through.to_le_bytes().as_slice())?;
                }
            }
            Ok(())
        })
    }

    /// The summary of request `id`, if the index holds it.
    pub fn get(&self, id: RequestId) -> Result<Option<RequestSummary>, IndexError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = read.open_table(REQUESTS).map_err(|e| self.err(e))?;
        let Some(body) = table.get(id.0).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(body.value())
            .map(Some)
            .map_err(|e| IndexError::Damaged {
                path: self.path.display().to_string(),
                id: id.0,
                reason: e.to_string(),
            })
    }

    /// The settled request `account` made under Idempotency-Key `key`, if any.
    pub fn by_key(
        &self,
        account: &AccountId,
        key: &str,
    ) -> Result<Option<RequestSummary>, IndexError> {
        let id = {
            let read = self.db.begin_read().map_err(|e| self.err(e))?;
            let table = read.open_table(KEYS).map_err(|e| self.err(e))?;
            let found = table
                .get(key_of(account, key).as_slice())
                .map_err(|e| self.err(e))?;
            match found {
                Some(id) => id.value(),
                None => return Ok(None),
            }
        };
        self.get(RequestId(id))
    }

    fn commit(
        &self,
        durability: Durability,
        f: impl FnOnce(
            &mut redb::Table<u64, &[u8]>,
            &mut redb::Table<&[u8], u64>,
            &mut redb::Table<&str, &[u8]>,
        ) -> Result<(), redb::StorageError>,
    ) -> Result<(), IndexError> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(durability).map_err(|e| self.err(e))?;
        {
            let mut requests = tx.open_table(REQUESTS).map_err(|e| self.err(e))?;
            let mut keys = tx.open_table(KEYS).map_err(|e| self.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            f(&mut requests, &mut keys, &mut meta).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl Into<redb::Error>) -> IndexError {
        store(&self.path, e)
    }
}

fn store(path: &Path, e: impl Into<redb::Error>) -> IndexError {
    IndexError::Store {
        path: path.display().to_string(),
        source: Box::new(e.into()),
    }
}

/// The key of (account, Idempotency-Key): the account's length first, so no two pairs
/// spell the same bytes.
fn key_of(account: &AccountId, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + account.0.len() + key.len());
    k.extend_from_slice(&(account.0.len() as u64).to_le_bytes());
    k.extend_from_slice(account.0.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}
