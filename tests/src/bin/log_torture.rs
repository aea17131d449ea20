//! A writer process for the crash test: appends self-checking batches from several tasks at
//! once (so appends share group commits) and prints `ACK <batch_id> <start> <end>` after each
//! acknowledged append, until it is killed or has written `--batches` per task.

use std::sync::Arc;

use anyhow::{bail, Context};
use prlx_events::log::file::{FileLogOptions, FileLogWriter};
use prlx_events::log::LogWriter;
use prlx_tests::torture::payload;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        bail!("usage: prlx-log-torture DIR RUN TASKS BATCHES_PER_TASK");
    }
    let dir = &args[1];
    let run: u64 = args[2].parse().context("RUN")?;
    let tasks: u64 = args[3].parse().context("TASKS")?;
    let batches: u64 = args[4].parse().context("BATCHES_PER_TASK")?;
    let options = FileLogOptions {
        // Small segments, so kills also land around segment rolls.
        segment_bytes: 64 << 10,
        ..FileLogOptions::default()
    };
    let log = Arc::new(FileLogWriter::open(dir, options)?);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let log = Arc::clone(&log);
        handles.push(tokio::spawn(async move {
            for k in 0..batches {
                let batch_id = run * 1_000_000_000_000 + t * 1_000_000_000 + k;
                let count = (batch_id % 7 + 1) as u32;
                let batch = (0..count).map(|i| payload(batch_id, i, count)).collect();
                let range = log.append(batch).await?;
                println!("ACK {batch_id} {} {}", range.start, range.end);
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}
