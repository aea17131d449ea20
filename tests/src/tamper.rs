//! Consistent rewrites of a log, as someone with write access to its files would make them to
//! hide a change: records removed, inserted or swapped, and everything the file format and the
//! fold check renumbered to match (offsets, checksums, batch framing and `COMMIT` by writing
//! through the real writer; each producer's `sequence` in the records' bytes). Optionally the
//! hash chain too (`prev`), which needs no secret: only the coordinator's seals then stand in
//! the way.
//!
//! Records are edited as bytes, never decoded and encoded again, so the rest of every record
//! stays exactly as it was written (an older event version stays older).

use std::path::Path;

use prlx_events::chain::{link_to, GENESIS};
use prlx_events::log::file::{FileLogOptions, FileLogWriter};
use prlx_events::log::{LogReader, LogUrl, LogWriter};
use prlx_events::Hash32;

/// Every record of the file log at `dir`, in order.
pub async fn read_payloads(dir: &Path) -> Vec<Vec<u8>> {
    let reader = LogUrl::parse(&format!("file://{}", dir.display()))
        .unwrap()
        .open_reader()
        .unwrap();
    let mut out = Vec::new();
    loop {
        let got = reader.read(out.len() as u64, 4096).await.unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got.into_iter().map(|r| r.payload));
    }
}

/// Writes `records` as a fresh file log at `dir` through the real writer, so framing, CRCs and
/// the commit marker are valid whatever was edited.
pub async fn write_log(dir: &Path, records: &[Vec<u8>]) {
    let _ = std::fs::remove_dir_all(dir);
    let w = FileLogWriter::open(dir, FileLogOptions::default()).unwrap();
    for chunk in records.chunks(64) {
        w.append(chunk.to_vec()).await.unwrap();
    }
    drop(w);
    // The writer's lock file is empty and means nothing to a reader.
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

/// The byte range of a top-level header field's value: `"name":` up to the next `,`. Header
/// fields come before `data` in every record the coordinator writes, so the first match is the
/// header's.
fn field_value(record: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    let key = format!("\"{name}\":");
    let data = find(record, b"\"data\":")?;
    let start = find(&record[..data], key.as_bytes())? + key.len();
    let end = start + record[start..].iter().position(|&b| b == b',')?;
    Some(start..end)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The record's `prev`, if it carries one.
pub fn prev_of(record: &[u8]) -> Option<Hash32> {
    let r = field_value(record, "prev")?;
    std::str::from_utf8(&record[r])
        .ok()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// The record with its `prev` set to `prev` (added before `data` where it had none).
pub fn with_prev(record: &[u8], prev: Hash32) -> Vec<u8> {
    let value = format!("\"{prev}\"");
    match field_value(record, "prev") {
        Some(r) => [&record[..r.start], value.as_bytes(), &record[r.end..]].concat(),
        None => {
            let at = find(record, b"\"data\":").expect("an envelope has data");
            let field = format!("\"prev\":{value},");
            [&record[..at], field.as_bytes(), &record[at..]].concat()
        }
    }
}

/// The record without its `prev`, as records were written before the chain.
pub fn unlinked(record: &[u8]) -> Vec<u8> {
    match field_value(record, "prev") {
        // `"prev":` and the value, and the comma after it.
        Some(r) => [&record[..r.start - "\"prev\":".len()], &record[r.end + 1..]].concat(),
        None => record.to_vec(),
    }
}

/// The record's producer and sequence.
pub fn producer_and_sequence(record: &[u8]) -> (Vec<u8>, u64) {
    let p = field_value(record, "producer").expect("a producer");
    let s = field_value(record, "sequence").expect("a sequence");
    let seq = std::str::from_utf8(&record[s]).unwrap().parse().unwrap();
    (record[p].to_vec(), seq)
}

fn with_sequence(record: &[u8], sequence: u64) -> Vec<u8> {
    let r = field_value(record, "sequence").expect("a sequence");
    [
        &record[..r.start],
        sequence.to_string().as_bytes(),
        &record[r.end..],
    ]
    .concat()
}

/// Links every record from the first on to the record before it, as a chaining coordinator
/// writes them.
pub fn relink(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    relink_from(records.to_vec(), 0)
}

/// Recomputes the links of `records[from..]` (what a forger does after a change at `from`).
fn relink_from(mut records: Vec<Vec<u8>>, from: usize) -> Vec<Vec<u8>> {
    for i in from..records.len() {
        let prev = match i {
            0 => GENESIS,
            _ => link_to(&records[i - 1]),
        };
        records[i] = with_prev(&records[i], prev);
    }
    records
}

/// How far a forger goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forger {
    /// Renumbers offsets, checksums, `COMMIT` and sequences, as for a log without a chain.
    Renumbers,
    /// Also recomputes every link after the change (SHA-256 needs no key).
    Relinks,
}

/// `records` without record `i`: the later records of its producer move down one sequence.
pub fn remove(records: &[Vec<u8>], i: usize, forger: Forger) -> Vec<Vec<u8>> {
    let (producer, _) = producer_and_sequence(&records[i]);
    let mut out: Vec<Vec<u8>> = records[..i].to_vec();
    for r in &records[i + 1..] {
        let (p, s) = producer_and_sequence(r);
        out.push(if p == producer {
            with_sequence(r, s - 1)
        } else {
            r.clone()
        });
    }
    finish(out, i, forger)
}

/// `records` with `record` inserted at `i` (numbered as the next of its producer there).
pub fn insert(records: &[Vec<u8>], i: usize, record: &[u8], forger: Forger) -> Vec<Vec<u8>> {
    let (producer, _) = producer_and_sequence(record);
    let next = records[..i]
        .iter()
        .rev()
        .map(|r| producer_and_sequence(r))
        .find(|(p, _)| *p == producer)
        .map_or(0, |(_, s)| s + 1);
    let mut out: Vec<Vec<u8>> = records[..i].to_vec();
    out.push(with_sequence(record, next));
    for r in &records[i..] {
        let (p, s) = producer_and_sequence(r);
        out.push(if p == producer {
            with_sequence(r, s + 1)
        } else {
            r.clone()
        });
    }
    finish(out, i, forger)
}

/// `records` with records `i` and `i + 1` swapped (their sequences swapped back, so each
/// producer's numbering still rises).
pub fn swap(records: &[Vec<u8>], i: usize, forger: Forger) -> Vec<Vec<u8>> {
    let mut out = records.to_vec();
    let (_, a) = producer_and_sequence(&out[i]);
    let (_, b) = producer_and_sequence(&out[i + 1]);
    out.swap(i, i + 1);
    out[i] = with_sequence(&out[i], a);
    out[i + 1] = with_sequence(&out[i + 1], b);
    finish(out, i, forger)
}

fn finish(records: Vec<Vec<u8>>, changed_at: usize, forger: Forger) -> Vec<Vec<u8>> {
    match forger {
        Forger::Renumbers => records,
        // Only a linked log is relinked: a forger does not add a chain that was not there.
        Forger::Relinks if records.iter().any(|r| prev_of(r).is_some()) => {
            relink_from(records, changed_at)
        }
        Forger::Relinks => records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, prev: Option<Hash32>, data: &str) -> Vec<u8> {
        let prev = prev.map_or(String::new(), |p| format!("\"prev\":\"{p}\","));
        format!(
            "{{\"event_id\":\"x\",\"type\":\"T\",\"version\":1,\"producer\":\"c/1\",\
             \"sequence\":{seq},\"causation_id\":null,{prev}\"data\":{{\"sequence\":7,\"v\":\"{data}\"}}}}"
        )
        .into_bytes()
    }

    #[test]
    fn edits_touch_only_the_header_fields() {
        let r = record(3, None, "a");
        assert_eq!(prev_of(&r), None);
        let linked = with_prev(&r, Hash32([1; 32]));
        assert_eq!(prev_of(&linked), Some(Hash32([1; 32])));
        let relinked = with_prev(&linked, Hash32([2; 32]));
        assert_eq!(prev_of(&relinked), Some(Hash32([2; 32])));
        assert_eq!(relinked.len(), linked.len());
        assert_eq!(unlinked(&relinked), r);
        let log = vec![
            record(0, None, "a"),
            record(1, None, "b"),
            record(2, None, "c"),
        ];
        let cut = remove(&log, 0, Forger::Renumbers);
        assert_eq!(producer_and_sequence(&cut[0]).1, 0);
        assert_eq!(producer_and_sequence(&cut[1]).1, 1);
        // The payload's own `sequence` is not the header's.
        assert!(String::from_utf8(cut[1].clone())
            .unwrap()
            .contains("{\"sequence\":7"));
        let swapped = swap(&log, 0, Forger::Renumbers);
        assert_eq!(producer_and_sequence(&swapped[0]), (b"\"c/1\"".to_vec(), 0));
        assert!(String::from_utf8(swapped[0].clone())
            .unwrap()
            .contains("\"b\""));
    }
}
