//! Durable append throughput of the file log against a raw `write` + `fdatasync` loop that
//! writes the same number of bytes in the same batches, measured side by side in one run.
//!
//! `cargo bench -p prlx-tests --bench log_append` (set `PRLX_BENCH_QUICK=1` for a short run).
//! Each configuration runs raw and log alternately, five rounds, and reports the median.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prlx_events::log::file::{FileLogOptions, FileLogReader, FileLogWriter};
use prlx_events::log::{LogReader, LogWriter};

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

const PAYLOAD: usize = 256;

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("{{\"event\":{i},\"pad\":\"").into_bytes();
    p.resize(PAYLOAD - 2, b'x');
    p.extend_from_slice(b"\"}");
    p
}

/// The log writes a 24-byte frame header before each payload.
const FRAME_HEADER: usize = 24;

/// Raw: per batch, one `write` of as many bytes as the log puts on disk for it (payloads plus
/// frame headers), then one `fdatasync`. No framing, no checksums, no commit marker, no thread
/// hand-off: the floor the log is measured against. Each batch is built just before it is
/// written, outside the timed region, as an event batch is encoded just before its append.
fn raw(dir: &Path, batch: usize, batches: usize) -> Duration {
    let path = dir.join("raw.bin");
    let _ = std::fs::remove_file(&path);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let mut timed = Duration::ZERO;
    for _ in 0..batches {
        let buf: Vec<u8> = (0..batch)
            .flat_map(|i| std::iter::repeat_n(0u8, FRAME_HEADER).chain(payload(i)))
            .collect();
        let t = Instant::now();
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        timed += t.elapsed();
    }
    timed
}

/// The log: one awaited `append` of the batch at a time (no help from group commit). The
/// timed region is the `append` call: framing, checksums, hand-off, write, sync, commit.
fn log_sequential(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    batch: usize,
    batches: usize,
) -> Duration {
    let _ = std::fs::remove_dir_all(dir.join("log"));
    let w = FileLogWriter::open(dir.join("log"), FileLogOptions::default()).unwrap();
    rt.block_on(async {
        let mut timed = Duration::ZERO;
        for _ in 0..batches {
            let records: Vec<Vec<u8>> = (0..batch).map(payload).collect();
            let t = Instant::now();
            w.append(records).await.unwrap();
            timed += t.elapsed();
        }
        timed
    })
}

/// The log with `writers` concurrent single-record appenders: group commit at work.
fn log_concurrent(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    writers: usize,
    per_writer: usize,
) -> Duration {
    let _ = std::fs::remove_dir_all(dir.join("log"));
    let w = Arc::new(FileLogWriter::open(dir.join("log"), FileLogOptions::default()).unwrap());
    rt.block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|k| {
                let w = Arc::clone(&w);
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        w.append(vec![payload(k * per_writer + i)]).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        t.elapsed()
    })
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let quick = std::env::var_os("PRLX_BENCH_QUICK").is_some();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("log_append_bench");
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = if quick { 1 } else { 5 };

    println!("payload {PAYLOAD} B per event; median of {rounds} round(s), raw and log alternating");
    println!("| batch (events) | raw write+fdatasync (events/s) | file log append (events/s) | log / raw |");
    println!("|---:|---:|---:|---:|");
    for batch in [1usize, 16, 256, 1024] {
        let batches = if quick { 20 } else { 250 };
        let (mut r, mut l) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            r.push(raw(&dir, batch, batches));
            l.push(log_sequential(&rt, &dir, batch, batches));
        }
        let events = (batch * batches) as f64;
        let raw_rate = events / median(r).as_secs_f64();
        let log_rate = events / median(l).as_secs_f64();
        println!(
            "| {batch} | {raw_rate:.0} | {log_rate:.0} | {:.2} |",
            log_rate / raw_rate
        );
    }

    println!();
    println!("| concurrent single-event appenders | raw, 1 event per fdatasync (events/s) | file log, group commit (events/s) | log / raw |");
    println!("|---:|---:|---:|---:|");
    for writers in [64usize, 1024] {
        let per_writer = if quick { 10 } else { 100 };
        let (mut r, mut l) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            r.push(raw(&dir, 1, if quick { 20 } else { 250 }));
            l.push(log_concurrent(&rt, &dir, writers, per_writer));
        }
        let raw_rate = if quick { 20.0 } else { 250.0 } / median(r).as_secs_f64();
        let log_rate = (writers * per_writer) as f64 / median(l).as_secs_f64();
        println!(
            "| {writers} | {raw_rate:.0} | {log_rate:.0} | {:.1} |",
            log_rate / raw_rate
        );
    }

    // What a follower in another process (a node) pays per poll of the durable end.
    let polls = if quick { 20_000 } else { 200_000 };
    let _ = std::fs::remove_dir_all(dir.join("log"));
    let w = FileLogWriter::open(dir.join("log"), FileLogOptions::default()).unwrap();
    rt.block_on(w.append(vec![payload(0)])).unwrap();
    let reader = FileLogReader::open(dir.join("log"), FileLogOptions::default()).unwrap();
    let mut per_poll = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..polls {
            assert_eq!(rt.block_on(reader.end()).unwrap(), 1);
        }
        per_poll.push(t.elapsed() / polls);
    }
    println!();
    println!(
        "durable end polled by a reader in another process: {:?} per poll (median of {rounds})",
        median(per_poll)
    );
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}
