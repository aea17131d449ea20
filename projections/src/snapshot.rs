//! Snapshots: a fold saved with the versions it was made under, so a restart folds only the
//! tail. A snapshot of another format or fold version is ignored and the fold rebuilt.

use std::fs;
use std::path::Path;

use prlx_events::log::{LogError, LogReader, Offset};
use prlx_events::{DecodeError, Envelope};
use serde::{Deserialize, Serialize};

use crate::fold::{Fold, FoldAtError, Projection};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot<S> {
    pub format_version: u32,
    pub fold_version: u32,
    pub last_offset: Option<Offset>,
    pub fold: Fold<S>,
    /// Which log it was taken of, for a reader that must not trust one of another log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Which log a snapshot was taken of, and of which record last: a log replaced or rewritten
/// under the snapshot's path is told apart by its records' event ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The event id of the log's first record.
    pub log_id: String,
    /// The event id of the record at `last_offset`.
    pub last_event_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {path} is malformed: {source}")]
    Malformed {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("record at offset {offset} does not decode: {source}")]
    Decode {
        offset: Offset,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Fold(#[from] FoldAtError),
}

impl<S: Projection> Snapshot<S> {
    pub fn of(fold: &Fold<S>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            fold_version: S::FOLD_VERSION,
            last_offset: fold.last_offset,
            fold: fold.clone(),
            origin: None,
        }
    }

    /// Writes atomically: a temporary file, fsynced, renamed over the old one.
    pub fn save(&self, path: &Path) -> Result<(), SnapshotError> {
        let io = |op, e| SnapshotError::Io {
            op,
            path: path.display().to_string(),
            source: e,
        };
        let tmp = path.with_extension("tmp");
        let f = fs::File::create(&tmp).map_err(|e| io("create", e))?;
        // Streamed: a body of megabytes in one buffer, allocated on whichever thread saves,
        // stays in that thread's allocator arena and shows as resident memory that never
        // comes back (the coordinator saves on a blocking-pool thread every minute).
        let mut out = std::io::BufWriter::with_capacity(1 << 16, f);
        serde_json::to_writer(&mut out, self).map_err(|e| io("write", e.into()))?;
        let f = out.into_inner().map_err(|e| io("write", e.into_error()))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("fsync directory", e))?;
        }
        Ok(())
    }

    /// The fold in the snapshot at `path`, or `None` when there is none or it was made by
    /// another format or fold version (then the caller rebuilds from the log).
    pub fn load(path: &Path) -> Result<Option<Fold<S>>, SnapshotError> {
        Ok(Self::load_whole(path)?.map(|s| s.fold))
    }

    /// As [`Snapshot::load`], the whole snapshot (its origin too).
    pub fn load_whole(path: &Path) -> Result<Option<Self>, SnapshotError> {
        match read_body(path)? {
            Some(body) => Self::decode(path, &body),
            None => Ok(None),
        }
    }

    /// The snapshot in `body`, the bytes of the file at `path` (named in errors); `None` when
    /// it was made by another format or fold version.
    pub fn decode(path: &Path, body: &[u8]) -> Result<Option<Self>, SnapshotError> {
        // An old state may not decode at all: its versions say it is old, not damaged.
        #[derive(Deserialize)]
        struct Versions {
            format_version: u32,
            fold_version: u32,
        }
        let malformed = |source| SnapshotError::Malformed {
            path: path.display().to_string(),
            source,
        };
        // One parse when the snapshot is of this build (the common case: parsing the versions
        // first would read the whole body twice); only a body that does not decode is asked
        // for its versions, to tell a snapshot of another build from a damaged one.
        match serde_json::from_slice::<Snapshot<S>>(body) {
            Ok(snap)
                if snap.format_version == FORMAT_VERSION
                    && snap.fold_version == S::FOLD_VERSION =>
            {
                Ok(Some(snap))
            }
            Ok(_) => Ok(None),
            Err(e) => match serde_json::from_slice::<Versions>(body) {
                Ok(v)
                    if v.format_version != FORMAT_VERSION || v.fold_version != S::FOLD_VERSION =>
                {
                    Ok(None)
                }
                _ => Err(malformed(e)),
            },
        }
    }
}

/// The bytes of the snapshot file at `path`; `None` when there is none.
pub fn read_body(path: &Path) -> Result<Option<Vec<u8>>, SnapshotError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SnapshotError::Io {
            op: "read",
            path: path.display().to_string(),
            source: e,
        }),
    }
}

/// Feeds every record from `fold.next_offset()` to the end of the log into `fold`.
pub async fn catch_up<S: Projection, R: LogReader>(
    fold: &mut Fold<S>,
    reader: &R,
) -> Result<(), SnapshotError> {
    catch_up_observed(fold, reader, |_, _| {}).await
}

/// As [`catch_up`], calling `seen` after each record is folded, with the fold and the record.
pub async fn catch_up_observed<S: Projection, R: LogReader>(
    fold: &mut Fold<S>,
    reader: &R,
    mut seen: impl FnMut(&Fold<S>, &Envelope),
) -> Result<(), SnapshotError> {
    loop {
        let records = reader.read(fold.next_offset(), 4096).await?;
        if records.is_empty() {
            return Ok(());
        }
        for r in records {
            let env = Envelope::decode(&r.payload).map_err(|source| SnapshotError::Decode {
                offset: r.offset,
                source,
            })?;
            fold.feed(r.offset, &env)?;
            seen(fold, &env);
        }
    }
}
