//! The bytes on disk: file names, the segment header, the record frame and the `COMMIT` file
//! (see the layout in the [module docs](super)). Pure encoding and checking; what reads or
//! writes the files is elsewhere.

use std::fs;
use std::path::{Path, PathBuf};

use crate::log::{LogError, Offset};

const MAGIC: &[u8; 8] = b"PRLXLOG\0";
const FORMAT_VERSION: u32 = 1;
pub(super) const SEGMENT_HEADER_LEN: u64 = 32;
pub(super) const RECORD_HEADER_LEN: usize = 24;
pub(super) const COMMIT_FILE: &str = "COMMIT";
pub(super) const LOCK_FILE: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".seg";

pub(super) fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

/// Segment base offsets in ascending order.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<Offset>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))? {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
            if stem.len() == 20 {
                if let Ok(base) = stem.parse() {
                    bases.push(base);
                }
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

pub(super) fn encode_segment_header(base: Offset) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

pub(super) fn check_segment_header(path: &Path, h: &[u8], base: Offset) -> Result<(), LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        offset: base,
        file: path.to_owned(),
        position: 0,
        reason,
    };
    if &h[..8] != MAGIC {
        return Err(corrupt("not a log segment (bad magic)".into()));
    }
    let crc = u32::from_le_bytes(h[24..28].try_into().unwrap());
    if crc != crc32c::crc32c(&h[..24]) {
        return Err(corrupt("segment header checksum mismatch".into()));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "segment format version {version}; this build reads {FORMAT_VERSION}"
        )));
    }
    let recorded = u64::from_le_bytes(h[16..24].try_into().unwrap());
    if recorded != base {
        return Err(corrupt(format!(
            "header says base offset {recorded}, file name says {base}"
        )));
    }
    Ok(())
}

pub(super) fn encode_record(
    buf: &mut Vec<u8>,
    offset: Offset,
    batch_pos: u32,
    batch_len: u32,
    payload: &[u8],
) {
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&offset.to_le_bytes());
    header[16..20].copy_from_slice(&batch_pos.to_le_bytes());
    header[20..24].copy_from_slice(&batch_len.to_le_bytes());
    let start = buf.len();
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    // One pass over one contiguous range, while the bytes are hot from the copy.
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record frame parsed from a byte slice that starts at a frame boundary.
#[derive(Debug)]
pub(super) struct Frame {
    pub(super) offset: Offset,
    pub(super) batch_pos: u32,
    pub(super) batch_len: u32,
    /// Bytes of the whole frame, header included.
    pub(super) frame_len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum FrameError {
    /// The slice ends before the frame does.
    Incomplete,
    Invalid(String),
}

pub(super) fn parse_frame(bytes: &[u8], max_record: usize) -> Result<Frame, FrameError> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    if len > max_record {
        return Err(FrameError::Invalid(format!(
            "record length {len} exceeds the limit {max_record}"
        )));
    }
    let frame_len = RECORD_HEADER_LEN + len;
    if bytes.len() < frame_len {
        return Err(FrameError::Incomplete);
    }
    let crc = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    if crc != crc32c::crc32c(&bytes[4..frame_len]) {
        return Err(FrameError::Invalid("record checksum mismatch".into()));
    }
    let batch_pos = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
    let batch_len = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
    if batch_pos >= batch_len {
        return Err(FrameError::Invalid(format!(
            "batch position {batch_pos} outside a batch of {batch_len}"
        )));
    }
    Ok(Frame {
        offset: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        batch_pos,
        batch_len,
        frame_len,
    })
}

/// The end a `COMMIT` file's bytes publish; `None` when short or the CRC does not match.
pub(super) fn decode_commit(bytes: &[u8]) -> Option<Offset> {
    if bytes.len() < 12 {
        return None;
    }
    let end = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    // A reader racing the writer's overwrite could see a mix of old and new bytes; the CRC
    // catches that and the caller simply reads again.
    (crc == crc32c::crc32c(&bytes[..8])).then_some(end)
}

pub(super) fn commit_bytes(end: Offset) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&end.to_le_bytes());
    let crc = crc32c::crc32c(&b[..8]);
    b[8..].copy_from_slice(&crc.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_and_detects_damage() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, 1, 3, b"hello");
        let f = parse_frame(&buf, 1024).unwrap();
        assert_eq!(
            (f.offset, f.batch_pos, f.batch_len, f.frame_len),
            (42, 1, 3, 29)
        );
        assert_eq!(
            parse_frame(&buf[..28], 1024).unwrap_err(),
            FrameError::Incomplete
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                parse_frame(&bad, 1024).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn segment_header_checks_magic_crc_and_base() {
        let h = encode_segment_header(7);
        let p = Path::new("x.seg");
        check_segment_header(p, &h, 7).unwrap();
        assert!(check_segment_header(p, &h, 8).is_err());
        let mut bad = h;
        bad[0] = b'X';
        assert!(check_segment_header(p, &bad, 7).is_err());
    }
}
