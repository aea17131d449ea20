//! Self-checking payloads for the crash test: each record says which batch it belongs to, its
//! place in it, and carries filler derived from both, so a checker can prove that every record
//! read back is whole, in a whole batch, and not mixed up with another.

/// Payload of record `index` of `count` in batch `batch_id`.
pub fn payload(batch_id: u64, index: u32, count: u32) -> Vec<u8> {
    let filler_len = ((batch_id.wrapping_mul(31) + u64::from(index) * 7) % 300) as usize;
    let mut out = Vec::with_capacity(16 + filler_len);
    out.extend_from_slice(&batch_id.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend((0..filler_len).map(|k| (batch_id as u8) ^ (index as u8) ^ (k as u8)));
    out
}

/// `(batch_id, index, count)` of a payload made by [`payload`], or why it is not one.
pub fn check(bytes: &[u8]) -> Result<(u64, u32, u32), String> {
    if bytes.len() < 16 {
        return Err(format!("{} bytes is too short", bytes.len()));
    }
    let batch_id = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let index = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    if payload(batch_id, index, count) != bytes {
        return Err(format!(
            "record {index}/{count} of batch {batch_id} is damaged"
        ));
    }
    Ok((batch_id, index, count))
}
