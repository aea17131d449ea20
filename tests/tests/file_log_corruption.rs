//! Damage on disk: a torn tail is cut back to the last whole batch; a flipped bit in durable
//! data is reported with its offset and never read past silently.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use prlx_events::log::file::{FileLogOptions, FileLogReader, FileLogWriter};
use prlx_events::log::{LogError, LogReader, LogWriter, Offset};

fn options() -> FileLogOptions {
    FileLogOptions {
        segment_bytes: 4096,
        ..FileLogOptions::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn rec(b: usize, i: usize) -> Vec<u8> {
    format!("batch-{b:03}-record-{i}-{}", "x".repeat(40)).into_bytes()
}

/// Writes `batches` batches of 3 and returns the start offset of each.
async fn write_batches(dir: &Path, batches: usize) -> Vec<Offset> {
    let w = FileLogWriter::open(dir, options()).unwrap();
    let mut starts = Vec::new();
    for b in 0..batches {
        starts.push(
            w.append((0..3).map(|i| rec(b, i)).collect())
                .await
                .unwrap()
                .start,
        );
    }
    starts
}

async fn read_everything(dir: &Path) -> Result<Vec<Vec<u8>>, LogError> {
    let r = FileLogReader::open(dir, options()).unwrap();
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let recs = r.read(next, 64).await?;
        let Some(last) = recs.last() else {
            return Ok(out);
        };
        next = last.offset + 1;
        out.extend(recs.into_iter().map(|r| r.payload));
    }
}

fn flip(path: &Path, pos: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos).unwrap();
    b[0] ^= 0x04;
    f.write_all_at(&b, pos).unwrap();
}

#[tokio::test]
async fn a_torn_tail_is_cut_back_to_the_last_whole_batch() {
    // Cut the last segment at every length inside its last batch: whatever remains of that
    // batch goes, everything before it stays, and the log takes appends again.
    let probe = tempfile::tempdir().unwrap();
    write_batches(probe.path(), 5).await;
    let last = segments(probe.path()).pop().unwrap();
    let full = std::fs::metadata(&last).unwrap().len();
    let frame = 24 + rec(0, 0).len() as u64;
    // Cuts inside each of the batch's three frames: in the header, at its edge, in the payload.
    let cuts = (0..3).flat_map(|k| [1, 12, 23, 24, 25, frame - 1].map(|c| k * frame + c));
    for cut in cuts {
        let dir = tempfile::tempdir().unwrap();
        let starts = write_batches(dir.path(), 5).await;
        let seg = segments(dir.path()).pop().unwrap();
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), full);
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(full - cut)
            .unwrap();

        let w = FileLogWriter::open(dir.path(), options()).unwrap();
        let next = w.append(vec![b"after".to_vec()]).await.unwrap();
        assert_eq!(
            next.start, starts[4],
            "cut {cut}: the torn batch is gone, offsets reused from its start"
        );
        drop(w);
        let all = read_everything(dir.path()).await.unwrap();
        let mut want: Vec<_> = (0..4)
            .flat_map(|b| (0..3).map(move |i| rec(b, i)))
            .collect();
        want.push(b"after".to_vec());
        assert_eq!(all, want, "cut {cut}");
    }
}

#[tokio::test]
async fn a_flipped_bit_in_the_middle_is_reported_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_batches(dir.path(), 4).await;
    let seg = segments(dir.path()).pop().unwrap();
    // Record 4 (batch 1, record 1) starts after the 32-byte header and four frames.
    let frame = 24 + rec(0, 0).len() as u64;
    flip(&seg, 32 + 4 * frame + 24 + 5);

    let err = read_everything(dir.path()).await.unwrap_err();
    assert!(matches!(err, LogError::Corrupt { offset: 4, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("offset 4") && text.contains("checksum"),
        "{text}"
    );

    // The writer refuses to open over it rather than truncating durable data away.
    let err = FileLogWriter::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { offset: 4, .. }), "{err}");
}

#[tokio::test]
async fn damage_in_an_older_segment_is_reported_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    write_batches(dir.path(), 60).await;
    let segs = segments(dir.path());
    assert!(
        segs.len() >= 3,
        "expected several segments, got {}",
        segs.len()
    );
    // A damaged length field in the first segment's second record.
    let frame = 24 + rec(0, 0).len() as u64;
    flip(&segs[0], 32 + frame + 5);
    let err = read_everything(dir.path()).await.unwrap_err();
    assert!(matches!(err, LogError::Corrupt { offset: 1, .. }), "{err}");
    // Reading past the damage (from a later offset in a later segment) still works.
    let r = FileLogReader::open(dir.path(), options()).unwrap();
    let later = r.read(100, 3).await.unwrap();
    assert_eq!(later[0].offset, 100);
}

#[tokio::test]
async fn a_missing_segment_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_batches(dir.path(), 60).await;
    let segs = segments(dir.path());
    std::fs::remove_file(&segs[1]).unwrap();
    let err = read_everything(dir.path()).await.unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("no segment starts at"), "{err}");
}

#[tokio::test]
async fn a_reader_needs_an_existing_log() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileLogReader::open(dir.path().join("typo"), options()).unwrap_err();
    assert!(err.to_string().contains("no log here"), "{err}");
}
