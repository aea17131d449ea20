//! Recovery of the tail segment when the writer opens the log: a torn tail is cut back to the
//! last whole batch, damage in the middle of durable data is an error naming the offset.

use std::fs;
use std::path::Path;

use super::format::{
    check_segment_header, parse_frame, FrameError, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::log::{LogError, Offset};

/// What scanning the last segment found.
#[derive(Debug)]
pub(super) struct Recovered {
    /// Length of the valid prefix: whole batches only.
    pub(super) valid_len: u64,
    /// One past the last offset in the valid prefix.
    pub(super) end: Offset,
}

/// Scans the tail segment. A bad or partial record that nothing valid follows is a torn tail
/// (the crash cut the last write short) and is cut off along with the rest of its batch. A bad
/// record followed by a valid record with the next offset is damage in the middle of durable
/// data: that is reported, never truncated away.
pub(super) fn recover_segment(
    path: &Path,
    base: Offset,
    max_record: usize,
) -> Result<Recovered, LogError> {
    let bytes = fs::read(path).map_err(|e| LogError::io("read", path, e))?;
    if (bytes.len() as u64) < SEGMENT_HEADER_LEN {
        // Created, header not yet durable: the segment held nothing acknowledged.
        return Ok(Recovered {
            valid_len: 0,
            end: base,
        });
    }
    check_segment_header(path, &bytes[..SEGMENT_HEADER_LEN as usize], base)?;
    let mut pos = SEGMENT_HEADER_LEN as usize;
    let mut expected = base;
    let mut last_whole_batch = (pos, expected);
    while pos < bytes.len() {
        match parse_frame(&bytes[pos..], max_record) {
            Ok(f) if f.offset == expected => {
                pos += f.frame_len;
                expected += 1;
                if f.batch_pos + 1 == f.batch_len {
                    last_whole_batch = (pos, expected);
                }
            }
            Ok(f) => {
                return Err(LogError::Corrupt {
                    offset: expected,
                    file: path.to_owned(),
                    position: pos as u64,
                    reason: format!("record says offset {}, expected {expected}", f.offset),
                })
            }
            Err(FrameError::Incomplete) => break,
            Err(FrameError::Invalid(reason)) => {
                if valid_record_follows(&bytes, pos, expected, max_record) {
                    return Err(LogError::Corrupt {
                        offset: expected,
                        file: path.to_owned(),
                        position: pos as u64,
                        reason,
                    });
                }
                break;
            }
        }
    }
    Ok(Recovered {
        valid_len: last_whole_batch.0 as u64,
        end: last_whole_batch.1,
    })
}

/// Whether the frame after a bad one at `pos` (skipping by its declared length) is a valid
/// record numbered `expected + 1`: proof that the bad one is not the torn end of the log.
fn valid_record_follows(bytes: &[u8], pos: usize, expected: Offset, max_record: usize) -> bool {
    if bytes.len() < pos + RECORD_HEADER_LEN {
        return false;
    }
    let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
    let next = pos + RECORD_HEADER_LEN + len;
    len <= max_record
        && next < bytes.len()
        && matches!(parse_frame(&bytes[next..], max_record), Ok(f) if f.offset == expected + 1)
}
