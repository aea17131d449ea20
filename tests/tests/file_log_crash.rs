//! Crash test: a real writer process is SIGKILLed while appending, at many points. After each
//! kill, a reader (before any recovery) and then a recovering writer must find every
//! acknowledged batch, whole and intact, offsets dense from 0, no batch twice, no partial batch.
//!
//! SIGKILL loses no page cache, so this proves the protocol (acknowledge only after the write,
//! publish only whole batches, recover torn tails), not the disk; the corruption tests cut and
//! damage files directly for the rest.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use prlx_events::log::file::{FileLogOptions, FileLogReader, FileLogWriter};
use prlx_events::log::{LogReader, Offset};
use prlx_tests::torture;

/// Every record from 0, checked: `batch_id -> offsets` of whole batches.
async fn verify_log(reader: &FileLogReader) -> BTreeMap<u64, std::ops::Range<Offset>> {
    let mut batches = BTreeMap::new();
    let mut next = 0;
    let mut open: Option<(u64, u32, u32, Offset)> = None; // batch, next index, count, start
    loop {
        let recs = reader.read(next, 1000).await.expect("log reads cleanly");
        if recs.is_empty() {
            break;
        }
        for r in recs {
            assert_eq!(r.offset, next, "offsets are dense");
            next += 1;
            let (id, index, count) =
                torture::check(&r.payload).unwrap_or_else(|e| panic!("offset {}: {e}", r.offset));
            match open.take() {
                None => {
                    assert_eq!(index, 0, "offset {}: batch {id} starts mid-batch", r.offset);
                    open = Some((id, 1, count, r.offset));
                }
                Some((open_id, want, n, start)) => {
                    assert_eq!(
                        (id, index, count),
                        (open_id, want, n),
                        "offset {}: batches interleave",
                        r.offset
                    );
                    open = Some((id, want + 1, n, start));
                }
            }
            if let Some((id, got, n, start)) = open {
                if got == n {
                    assert!(
                        batches.insert(id, start..r.offset + 1).is_none(),
                        "batch {id} appears twice"
                    );
                    open = None;
                }
            }
        }
    }
    assert!(
        open.is_none(),
        "a partial batch is visible at the end: {open:?}"
    );
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_appending_loses_no_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_prlx-log-torture");
    let mut acked: BTreeMap<u64, std::ops::Range<Offset>> = BTreeMap::new();
    // A fixed LCG picks the kill points, so a failure reproduces.
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let runs = 16;
    for run in 0..runs {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let kill_after = 1 + (rng >> 33) % 300;
        let mut child = Command::new(exe)
            .args([
                dir.path().to_str().unwrap(),
                &run.to_string(),
                "4",
                "100000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("writer exited early").unwrap();
            record_ack(&mut acked, &line);
            seen += 1;
            if seen == kill_after / 2 {
                // A reader in this process while the other one appends: whole batches only,
                // and everything acknowledged so far is already visible.
                let follower = FileLogReader::open(dir.path(), FileLogOptions::default()).unwrap();
                let live = verify_log(&follower).await;
                for (id, range) in &acked {
                    assert_eq!(
                        live.get(id),
                        Some(range),
                        "run {run}: acked batch {id} not visible to a live reader"
                    );
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
                               // Acks printed before death still count: they were acknowledged.
        for line in lines {
            record_ack(&mut acked, &line.unwrap());
        }
        child.wait().unwrap();

        // A reader before recovery sees only whole, durable batches...
        let reader = FileLogReader::open(dir.path(), FileLogOptions::default()).unwrap();
        let before = verify_log(&reader).await;
        for (id, range) in &acked {
            assert_eq!(
                before.get(id),
                Some(range),
                "run {run}: acknowledged batch {id} missing before recovery"
            );
        }
        // ...and recovery keeps all of them.
        drop(
            FileLogWriter::open(
                dir.path(),
                FileLogOptions {
                    segment_bytes: 64 << 10,
                    ..FileLogOptions::default()
                },
            )
            .unwrap(),
        );
        let after = verify_log(&reader).await;
        for (id, range) in &acked {
            assert_eq!(
                after.get(id),
                Some(range),
                "run {run}: acknowledged batch {id} lost in recovery"
            );
        }
        assert!(after.len() >= before.len());
    }
    assert!(
        acked.len() as u64 >= runs,
        "the test killed writers that had acknowledged work"
    );
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(
        segments > 1,
        "the kills spanned segment rolls ({segments} segments)"
    );
}

fn record_ack(acked: &mut BTreeMap<u64, std::ops::Range<Offset>>, line: &str) {
    let mut parts = line.split(' ');
    assert_eq!(parts.next(), Some("ACK"), "unexpected line {line:?}");
    let id: u64 = parts.next().unwrap().parse().unwrap();
    let start: u64 = parts.next().unwrap().parse().unwrap();
    let end: u64 = parts.next().unwrap().parse().unwrap();
    assert!(
        acked.insert(id, start..end).is_none(),
        "batch {id} acknowledged twice"
    );
}
