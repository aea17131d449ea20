//! The log conformance suite: what every backend of `LogWriter`/`LogReader` must do.
//!
//! Each case is a plain async function over a [`LogFixture`]; a backend's test file expands them
//! all with [`conformance_suite!`](crate::conformance_suite), so a new backend runs exactly the
//! same checks, unchanged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use prlx_events::log::{LogError, LogReader, LogWriter, Offset, Record};

/// A fresh, empty log of one backend.
pub trait LogFixture: Send + Sync + 'static {
    type Writer: LogWriter + 'static;
    type Reader: LogReader + 'static;
    fn writer(&self) -> Arc<Self::Writer>;
    /// An independent reader, as another process would open it.
    fn open_reader(&self) -> Self::Reader;
    /// Stops the writer and opens a new one on the same log, as a restart would.
    fn reopen_writer(&mut self);
    /// Opens a second writer while the first is live: the backend must refuse it (`Err`), or
    /// open it and fence the first, whose appends must then fail.
    fn open_second_writer(&self) -> Result<(), LogError>;
}

fn payload(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}-{i:06}").into_bytes()
}

async fn read_all<R: LogReader>(r: &R, from: Offset) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut next = from;
    loop {
        let batch = r.read(next, 97).await.expect("read");
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    out
}

pub async fn empty_log_reads_nothing<F: LogFixture>(f: F) {
    let r = f.open_reader();
    let end = r.end().await.unwrap();
    assert!(r.read(end, 10).await.unwrap().is_empty());
    assert!(!r.wait_for(end, Duration::from_millis(20)).await.unwrap());
}

pub async fn batches_get_consecutive_offsets_and_read_back_in_order<F: LogFixture>(f: F) {
    let w = f.writer();
    let mut expected = Vec::new();
    let mut prev_end: Option<Offset> = None;
    for b in 0..20 {
        let batch: Vec<_> = (0..=b % 5).map(|i| payload(&format!("b{b}"), i)).collect();
        let range = w.append(batch.clone()).await.unwrap();
        assert_eq!(
            range.end - range.start,
            batch.len() as u64,
            "offsets within a batch are consecutive"
        );
        if let Some(p) = prev_end {
            assert!(range.start >= p, "offsets increase across batches");
        }
        prev_end = Some(range.end);
        expected.extend(range.zip(batch));
    }
    let r = f.open_reader();
    let got: Vec<_> = read_all(&r, expected[0].0)
        .await
        .into_iter()
        .map(|r| (r.offset, r.payload))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(r.end().await.unwrap(), prev_end.unwrap());
}

pub async fn read_from_the_middle_and_with_a_limit<F: LogFixture>(f: F) {
    let w = f.writer();
    let range = w
        .append((0..50).map(|i| payload("m", i)).collect())
        .await
        .unwrap();
    let r = f.open_reader();
    let mid = range.start + 17;
    let got = r.read(mid, 5).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].offset, mid);
    assert_eq!(got[0].payload, payload("m", 17));
    assert_eq!(got[4].payload, payload("m", 21));
    // Going back is allowed: a reader may re-read from anywhere.
    let again = r.read(range.start, 1).await.unwrap();
    assert_eq!(again[0].payload, payload("m", 0));
    assert!(r.read(range.end, 10).await.unwrap().is_empty());
}

pub async fn empty_batch_appends_nothing<F: LogFixture>(f: F) {
    let w = f.writer();
    let a = w.append(vec![payload("e", 0)]).await.unwrap();
    let e = w.append(Vec::new()).await.unwrap();
    assert!(e.is_empty());
    let b = w.append(vec![payload("e", 1)]).await.unwrap();
    let r = f.open_reader();
    let got = read_all(&r, a.start).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].offset, b.start);
}

pub async fn odd_sizes_round_trip<F: LogFixture>(f: F) {
    let w = f.writer();
    let big: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let batch = vec![Vec::new(), big.clone(), b"\0\xff\n".to_vec()];
    let range = w.append(batch.clone()).await.unwrap();
    let got: Vec<_> = read_all(&f.open_reader(), range.start)
        .await
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(got, batch);
}

pub async fn concurrent_appends_are_each_acknowledged_once<F: LogFixture>(f: F) {
    let w = f.writer();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let batch: Vec<_> = (0..(i % 3 + 1))
                    .map(|j| payload(&format!("t{t}-{i}"), j))
                    .collect();
                let range = w.append(batch.clone()).await.unwrap();
                acked.extend(range.zip(batch));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let offsets: BTreeSet<_> = acked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets.len(), acked.len(), "no offset is handed out twice");
    acked.sort();
    let first = acked[0].0;
    let got: Vec<_> = read_all(&f.open_reader(), first)
        .await
        .into_iter()
        .map(|r| (r.offset, r.payload))
        .collect();
    assert_eq!(
        got, acked,
        "every acknowledged record reads back, in offset order"
    );
}

pub async fn appends_are_ordered_when_called_not_when_awaited<F: LogFixture>(f: F) {
    let w = f.writer();
    let pending: Vec<_> = (0..5).map(|i| w.append(vec![payload("o", i)])).collect();
    // Await in reverse: the order of the calls still decides the offsets.
    let mut ranges: Vec<_> = Vec::new();
    for fut in pending.into_iter().rev() {
        ranges.push(fut.await.unwrap());
    }
    ranges.reverse();
    assert!(
        ranges.windows(2).all(|p| p[0].end <= p[1].start),
        "{ranges:?}"
    );
    let got: Vec<_> = read_all(&f.open_reader(), ranges[0].start)
        .await
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(got, (0..5).map(|i| payload("o", i)).collect::<Vec<_>>());
}

pub async fn a_follower_is_woken_by_new_appends<F: LogFixture>(f: F) {
    let w = f.writer();
    let first = w.append(vec![payload("f", 0)]).await.unwrap();
    let r = Arc::new(f.open_reader());
    let follower = {
        let r = Arc::clone(&r);
        tokio::spawn(async move {
            let mut next = first.end;
            let mut seen = Vec::new();
            while seen.len() < 3 {
                assert!(
                    r.wait_for(next, Duration::from_secs(20)).await.unwrap(),
                    "follower timed out"
                );
                for rec in r.read(next, 10).await.unwrap() {
                    next = rec.offset + 1;
                    seen.push(rec.payload);
                }
            }
            seen
        })
    };
    for i in 1..4 {
        w.append(vec![payload("f", i)]).await.unwrap();
    }
    let seen = follower.await.unwrap();
    assert_eq!(seen, (1..4).map(|i| payload("f", i)).collect::<Vec<_>>());
}

pub async fn acknowledged_appends_survive_a_writer_restart<F: LogFixture>(mut f: F) {
    let a = f
        .writer()
        .append((0..10).map(|i| payload("r", i)).collect())
        .await
        .unwrap();
    f.reopen_writer();
    let b = f.writer().append(vec![payload("r", 10)]).await.unwrap();
    assert!(
        b.start >= a.end,
        "a restarted writer continues after the last record"
    );
    let got: Vec<_> = read_all(&f.open_reader(), a.start)
        .await
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(got, (0..11).map(|i| payload("r", i)).collect::<Vec<_>>());
}

pub async fn a_second_writer_is_refused_or_fences_the_first<F: LogFixture>(f: F) {
    f.writer().append(vec![payload("w", 0)]).await.unwrap();
    // Two writers must never both append to one log: a backend either refuses the second
    // (the file log's lock) or lets it fence the first (Kafka's transactional id).
    if f.open_second_writer().is_ok() {
        let late = f.writer().append(vec![payload("w", 1)]).await;
        assert!(late.is_err(), "a fenced writer appended: {late:?}");
    } else {
        f.writer().append(vec![payload("w", 1)]).await.unwrap();
    }
}

/// Expands every conformance case into a `#[tokio::test]` for one backend. `$make` is an
/// expression giving a fresh fixture.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            empty_log_reads_nothing,
            batches_get_consecutive_offsets_and_read_back_in_order,
            read_from_the_middle_and_with_a_limit,
            empty_batch_appends_nothing,
            odd_sizes_round_trip,
            concurrent_appends_are_each_acknowledged_once,
            appends_are_ordered_when_called_not_when_awaited,
            a_follower_is_woken_by_new_appends,
            acknowledged_appends_survive_a_writer_restart,
            a_second_writer_is_refused_or_fences_the_first,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$case($make).await;
            }
        )*
    };
}
