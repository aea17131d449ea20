//! The coordinator's shell in this process, on a file log: for tests that drive `execute`
//! and `housekeeping` themselves instead of a `prlx-coordinator` process.

use prlx_commands::shell::{Coordinator, ShellError};
use prlx_events::log::{LogError, LogUrl};
use prlx_events::seal::StorageKey;

/// Opens the coordinator on `url` as producer `coordinator/1` with a fixed storage key. A
/// coordinator dropped just before still holds the log's lock for a moment (its encoder
/// thread lets go of the writer after the drop), so a locked log is tried again for up to
/// five seconds.
pub async fn open_coordinator(url: &LogUrl) -> Coordinator {
    let mut tries = 0;
    loop {
        match Coordinator::open(url, "coordinator/1", StorageKey::from_bytes([7; 32])).await {
            Err(ShellError::Log(LogError::Locked { .. })) if tries < 500 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            opened => return opened.unwrap(),
        }
    }
}
