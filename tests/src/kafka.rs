//! What the Kafka suites share: the broker to use, and topic names no other case uses.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The broker's address from `PRLX_KAFKA_BOOTSTRAP`, or `None` after saying (past the test
/// harness's capture) that the case is skipped. `scripts/test.sh` starts a broker and sets it.
pub fn bootstrap() -> Option<String> {
    match std::env::var("PRLX_KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Some(b.trim().to_owned()),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: PRLX_KAFKA_BOOTSTRAP not set (scripts/test.sh starts a broker)"
            );
            None
        }
    }
}

/// A topic name no other case, run or process uses: `prlx-{prefix}-{tag}-{pid}-{nanos}-{n}`.
pub fn fresh_topic(prefix: &str, tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "prlx-{prefix}-{tag}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
