//! The I/O shell around `decide`: recovers state from the log, stamps events with the time,
//! ids and sequence numbers, appends them, and only then applies them to its state.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chrono::Utc;
use prlx_events::event::{IntakeSource, Sealed};
use prlx_events::log::{AnyWriter, LogError, LogUrl, LogWriter, Offset};
use prlx_events::seal::StorageKey;
use prlx_events::{Envelope, Event, Hash32, Header};
use prlx_projections::fold::FoldAtError;
use prlx_projections::snapshot::{catch_up, SnapshotError};
use prlx_projections::{CoordinatorState, Fold};
use rand::RngCore;
use uuid::Uuid;

use crate::decide::{decide, Command, Rejection, Submission};

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("recovering state from the log: {0}")]
    Recover(#[from] SnapshotError),
    #[error("the coordinator's own events do not fold (a bug): {0}")]
    Fold(#[from] FoldAtError),
    #[error("storage key {path}: {reason}")]
    Key { path: String, reason: String },
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Events appended at these offsets.
    Appended(std::ops::Range<Offset>),
    /// Nothing to do (a retry of something already recorded).
    Unchanged,
    /// Refused; the rejection was recorded at `offset`.
    Rejected {
        rejection: Rejection,
        offset: Offset,
    },
}

/// The coordinator's single writer.
#[derive(Debug)]
pub struct Coordinator {
    writer: AnyWriter,
    fold: Fold<CoordinatorState>,
    producer: String,
    next_sequence: u64,
    key: StorageKey,
}

impl Coordinator {
    /// Opens the log as its only writer and folds it from the start.
    pub async fn open(
        url: &LogUrl,
        producer: impl Into<String>,
        key: StorageKey,
    ) -> Result<Self, ShellError> {
        let writer = url.open_writer()?;
        let mut fold = Fold::default();
        catch_up(&mut fold, &writer.reader()).await?;
        let producer = producer.into();
        let next_sequence = fold.producers.get(&producer).map_or(0, |s| s + 1);
        Ok(Self {
            writer,
            fold,
            producer,
            next_sequence,
            key,
        })
    }

    pub fn state(&self) -> &CoordinatorState {
        &self.state_fold().state
    }

    pub fn state_fold(&self) -> &Fold<CoordinatorState> {
        &self.fold
    }

    pub fn writer(&self) -> &AnyWriter {
        &self.writer
    }

    /// Decides, appends, applies. A rejection is recorded too (without a request id).
    pub async fn execute(&mut self, command: Command) -> Result<Outcome, ShellError> {
        let audit = match &command {
            Command::SubmitRequest(s) => Some((s.idempotency_key.clone(), s.source.clone())),
            _ => None,
        };
        match decide(&self.fold.state, command) {
            Ok(events) if events.is_empty() => Ok(Outcome::Unchanged),
            Ok(events) => Ok(Outcome::Appended(self.append(events).await?)),
            Err(rejection) => {
                let (key, source) = audit.unwrap_or((None, IntakeSource::Local));
                let range = self.append(vec![rejection.to_event(key, source)]).await?;
                Ok(Outcome::Rejected {
                    rejection,
                    offset: range.start,
                })
            }
        }
    }

    async fn append(&mut self, events: Vec<Event>) -> Result<std::ops::Range<Offset>, ShellError> {
        let now = Utc::now();
        let correlation = Uuid::new_v4();
        let envelopes: Vec<Envelope> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                Envelope::new(
                    Header {
                        event_id: Uuid::new_v4(),
                        recorded_at: now,
                        producer: self.producer.clone(),
                        sequence: self.next_sequence + i as u64,
                        correlation_id: Some(correlation),
                        causation_id: None,
                    },
                    event,
                )
            })
            .collect();
        let range = self
            .writer
            .append(envelopes.iter().map(Envelope::encode).collect())
            .await?;
        self.next_sequence += envelopes.len() as u64;
        for (offset, env) in range.clone().zip(&envelopes) {
            self.fold.feed(offset, env)?;
        }
        Ok(range)
    }

    /// Hashes and seals a payload for a [`Submission`]: the plaintext goes no further.
    pub fn seal_payload(&self, payload: &[u8]) -> (Hash32, Sealed) {
        let hash = Hash32::of(payload);
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        (hash, self.key.seal(nonce, &payload_aad(&hash), payload))
    }

    /// Opens a payload sealed by [`Coordinator::seal_payload`] (for re-dispatch).
    pub fn open_payload(
        &self,
        hash: &Hash32,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, prlx_events::seal::SealError> {
        self.key.open(&payload_aad(hash), sealed)
    }

    /// Builds the command for a submission whose payload arrived as bytes.
    pub fn submission(&self, mut s: Submission, payload: &[u8]) -> Command {
        let (computed, sealed) = self.seal_payload(payload);
        s.computed_payload_hash = computed;
        s.sealed_payload = sealed;
        Command::SubmitRequest(Box::new(s))
    }
}

/// The AAD binds a sealed payload to its hash, so a blob cannot be swapped into another record.
fn payload_aad(hash: &Hash32) -> Vec<u8> {
    let mut aad = b"prlx/payload/v1/".to_vec();
    aad.extend_from_slice(&hash.0);
    aad
}

/// Loads the 32-byte storage key at `path`, creating it (mode 0600) on first start. A key file
/// readable by others is refused: it opens every payload on the log.
pub fn load_or_create_key(path: &Path) -> Result<StorageKey, ShellError> {
    let err = |reason: String| ShellError::Key {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "permissions {:o} let others read it; chmod 600",
                    mode & 0o777
                )));
            }
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| err(format!("{} bytes, expected 32", b.len())))?;
            Ok(StorageKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            f.write_all(&bytes)
                .and_then(|_| f.sync_all())
                .map_err(|e| err(e.to_string()))?;
            Ok(StorageKey::from_bytes(bytes))
        }
        Err(e) => Err(err(e.to_string())),
    }
}
