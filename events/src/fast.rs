//! Fast paths for the hot scalar formats of the wire: the envelope's timestamps and UUIDs, hex
//! digests. Each accepts exactly the form this crate writes and answers `None` for anything
//! else, so that the caller falls back to the general parser (chrono, `uuid`) and old or
//! hand-written logs read exactly as before. Replay spent ~15% of its time in the general
//! parsers.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use uuid::Uuid;

/// ASCII byte -> its hex digit value, or 0xff. Upper and lower case, as `hex` and `uuid` read.
const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes `2 * out.len()` hex characters into `out`; false on any non-hex character (then
/// `out` holds garbage). The caller checks the length.
#[inline]
pub(crate) fn decode_hex(hex: &[u8], out: &mut [u8]) -> bool {
    debug_assert_eq!(hex.len(), 2 * out.len());
    if hex.len().is_multiple_of(8) {
        // Digests and UUIDs: eight characters at a time.
        let mut ok = true;
        for (o, chunk) in out.chunks_exact_mut(4).zip(hex.chunks_exact(8)) {
            match hex8(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) {
                Some(v) => o.copy_from_slice(&v.to_le_bytes()),
                None => ok = false,
            }
        }
        return ok;
    }
    decode_hex_table(hex, out)
}

/// Eight hex characters (little-endian in `x`: the first character in the low byte) as four
/// bytes in order, or `None` if any is not a hex digit. SWAR: one 64-bit word at a time.
#[inline]
fn hex8(x: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if x & HIGH != 0 {
        return None;
    }
    // Per byte, exact while every byte is below 0x80 (no carry or borrow crosses a byte):
    // the high bit is set where `lo < byte < hi`.
    let between =
        |x: u64, lo: u64, hi: u64| (ONES * (127 + hi) - x) & !x & (x + ONES * (127 - lo)) & HIGH;
    let digit = between(x, b'0' as u64 - 1, b'9' as u64 + 1);
    // `| 0x20` maps 'A'..='F' onto 'a'..='f', and nothing else there.
    let letter = between(x | (ONES * 0x20), b'a' as u64 - 1, b'f' as u64 + 1);
    if digit | letter != HIGH {
        return None;
    }
    // Nibble values: the low four bits, plus 9 for letters (bit 6 set, digits have it clear).
    let n = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
    // Pairs of nibbles into bytes (first character high), then the four bytes together.
    let b = ((n << 4) | (n >> 8)) & 0x00ff_00ff_00ff_00ff;
    let b = (b | (b >> 8)) & 0x0000_ffff_0000_ffff;
    Some((b | (b >> 16)) as u32)
}

/// The byte-at-a-time form, for lengths that are not a multiple of eight.
fn decode_hex_table(hex: &[u8], out: &mut [u8]) -> bool {
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        // 0xff marks a non-hex byte; OR them all and look once at the end.
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    bad & 0xf0 == 0
}

/// A hyphenated UUID (`8-4-4-4-12` hex digits, the form `Uuid` serializes to); `None` for any
/// other form (simple, braced, URN), which `Uuid::parse_str` then reads.
#[inline]
pub(crate) fn uuid(s: &str) -> Option<Uuid> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut hex = [0u8; 32];
    hex[..8].copy_from_slice(&b[..8]);
    hex[8..12].copy_from_slice(&b[9..13]);
    hex[12..16].copy_from_slice(&b[14..18]);
    hex[16..20].copy_from_slice(&b[19..23]);
    hex[20..].copy_from_slice(&b[24..]);
    let mut out = [0u8; 16];
    decode_hex(&hex, &mut out).then(|| Uuid::from_bytes(out))
}

/// The digits `b[at..at + N]` as a number, or `None` if any is not an ASCII digit.
#[inline]
fn digits<const N: usize>(b: &[u8], at: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in &b[at..at + N] {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u32::from(d);
    }
    Some(v)
}

/// An RFC 3339 UTC timestamp exactly as chrono's serde writes a `DateTime<Utc>`
/// (`SecondsFormat::AutoSi` with `Z`): `YYYY-MM-DDTHH:MM:SS` then no fraction or 3, 6 or 9
/// fraction digits, then `Z`. `None` for anything else (other offsets, other fraction widths,
/// a leap second, a year outside 0000..=9999, an invalid date), which chrono then parses;
/// where this answers, chrono gives the same instant.
#[inline]
pub(crate) fn rfc3339_utc(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let frac_len = match b.len() {
        20 => 0,
        24 => 3,
        27 => 6,
        30 => 9,
        _ => return None,
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let year = digits::<4>(b, 0)?;
    let month = digits::<2>(b, 5)?;
    let day = digits::<2>(b, 8)?;
    let hour = digits::<2>(b, 11)?;
    let minute = digits::<2>(b, 14)?;
    let second = digits::<2>(b, 17)?;
    let nano = match frac_len {
        0 => 0,
        _ => {
            if b[19] != b'.' {
                return None;
            }
            let mut v = 0u32;
            for &c in &b[20..20 + frac_len] {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    return None;
                }
                v = v * 10 + u32::from(d);
            }
            v * 10u32.pow(9 - frac_len as u32)
        }
    };
    // A leap second (60) is left to chrono, whose representation of it we do not reproduce.
    if second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nano)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// Writes `t` exactly as chrono's serde writes a `DateTime<Utc>` (the form [`rfc3339_utc`]
/// reads) into `buf`, returning its length; `None` for what this does not cover (a year
/// outside 0000..=9999, a leap second), which the caller leaves to chrono. Every event's
/// `recorded_at` is written this way: chrono's writer goes through `fmt` one char at a time,
/// which showed in the coordinator's profile.
pub(crate) fn format_rfc3339_utc(t: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    let nano = t.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return None;
    }
    fn put(buf: &mut [u8], at: usize, width: usize, mut v: u32) {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    put(buf, 0, 4, year as u32);
    buf[4] = b'-';
    put(buf, 5, 2, t.month());
    buf[7] = b'-';
    put(buf, 8, 2, t.day());
    buf[10] = b'T';
    put(buf, 11, 2, t.hour());
    buf[13] = b':';
    put(buf, 14, 2, t.minute());
    buf[16] = b':';
    put(buf, 17, 2, t.second());
    // chrono's AutoSi: no fraction, or the fewest of 3, 6, 9 digits that are exact.
    let (digits, value) = if nano == 0 {
        (0, 0)
    } else if nano.is_multiple_of(1_000_000) {
        (3, nano / 1_000_000)
    } else if nano.is_multiple_of(1_000) {
        (6, nano / 1_000)
    } else {
        (9, nano)
    };
    let mut len = 19;
    if digits > 0 {
        buf[19] = b'.';
        put(buf, 20, digits, value);
        len = 20 + digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

/// Serde adapter for `DateTime<Utc>` fields: the fast path above, else chrono's own parse
/// (the same as `DateTime<Utc>`'s `Deserialize`, errors included).
pub(crate) mod datetime {
    use std::fmt;

    use chrono::{DateTime, FixedOffset, Utc};
    use serde::de::{Deserializer, Error, Visitor};

    pub(crate) fn parse<E: Error>(s: &str) -> Result<DateTime<Utc>, E> {
        if let Some(t) = super::rfc3339_utc(s) {
            return Ok(t);
        }
        s.parse::<DateTime<FixedOffset>>()
            .map(|t| t.with_timezone(&Utc))
            .map_err(E::custom)
    }

    struct V;

    impl Visitor<'_> for V {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }
        fn visit_str<E: Error>(self, s: &str) -> Result<Self::Value, E> {
            parse(s)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone};

    #[test]
    fn timestamps_are_written_byte_for_byte_as_chrono_writes_them() {
        let base = Utc.with_ymd_and_hms(2026, 11, 25, 2, 26, 35).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut cases = vec![
            base,
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        ];
        for nanos in [1, 999, 1_000, 999_000, 1_000_000, 120_000_000, 999_999_999] {
            cases.push(base + chrono::Duration::nanoseconds(nanos));
        }
        for _ in 0..10_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let secs = (seed >> 20) as i64 % 253_402_300_000; // up to 9999-12-31
            let nanos = match seed % 4 {
                0 => 0,
                1 => (seed >> 8) as i64 % 1_000 * 1_000_000,
                2 => (seed >> 8) as i64 % 1_000_000 * 1_000,
                _ => (seed >> 8) as i64 % 1_000_000_000,
            };
            cases.push(Utc.timestamp_opt(secs, nanos as u32).unwrap());
        }
        for t in cases {
            let mut buf = [0u8; 30];
            let n = format_rfc3339_utc(&t, &mut buf).expect("in range");
            let chrono = serde_json::to_string(&t).unwrap();
            assert_eq!(
                format!("\"{}\"", std::str::from_utf8(&buf[..n]).unwrap()),
                chrono
            );
            assert_eq!(
                rfc3339_utc(std::str::from_utf8(&buf[..n]).unwrap()),
                Some(t)
            );
        }
        let far = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(format_rfc3339_utc(&far, &mut [0; 30]), None);
    }

    #[test]
    fn timestamps_agree_with_chrono_on_what_we_write() {
        let base = Utc.with_ymd_and_hms(2026, 11, 25, 2, 26, 35).unwrap();
        for nanos in [
            0,
            1,
            7,
            999,
            1_000,
            120_000,
            638_235_905,
            999_999_999,
            500_000_000,
        ] {
            for days in [0i64, 1, 40, 366, 400 * 365, -(2026 * 365)] {
                let t = base + chrono::Duration::days(days) + chrono::Duration::nanoseconds(nanos);
                let json = serde_json::to_string(&t).unwrap();
                let s = json.trim_matches('"');
                assert_eq!(rfc3339_utc(s), Some(t), "{s}");
                assert_eq!(s.parse::<DateTime<Utc>>().unwrap(), t);
            }
        }
        // The fixed widths chrono writes for AutoSi.
        let t = Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap();
        assert_eq!(
            rfc3339_utc(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Some(t)
        );
    }

    #[test]
    fn timestamps_we_do_not_write_fall_back() {
        for s in [
            "2026-11-25T02:26:35+00:00",
            "2026-11-25T02:26:35.1Z",
            "2026-11-25T02:26:35.12345Z",
            "2026-11-25 02:26:35Z",
            "2026-11-25t02:26:35Z",
            "2026-11-25T02:26:60Z",
            "2026-02-30T02:26:35Z",
            "2025-02-29T02:26:35Z",
            "2026-13-01T02:26:35Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T02:60:00Z",
            "+2026-11-25T02:26:35Z",
            "2026-11-2xT02:26:35Z",
            "2026-11-25T02:26:35.12a456Z",
            "2026-11-25T02:26:35,123Z",
        ] {
            assert_eq!(rfc3339_utc(s), None, "{s}");
        }
        // ... and the adapter then reads them as chrono does.
        for s in [
            "2026-11-25T02:26:35+01:00",
            "2026-11-25T02:26:35.1Z",
            "2026-11-25 02:26:35Z",
        ] {
            let ours: DateTime<Utc> = datetime::parse::<serde_json::Error>(s).unwrap();
            assert_eq!(ours, s.parse::<DateTime<Utc>>().unwrap(), "{s}");
        }
        assert!(datetime::parse::<serde_json::Error>("2026-02-30T02:26:35Z").is_err());
    }

    #[test]
    fn uuids_agree_with_the_uuid_crate() {
        for s in [
            "35b73b9d-dcdd-4c0b-ace2-5a3ead6d7b3c",
            "35B73B9D-DCDD-4C0B-ACE2-5A3EAD6D7B3C",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ] {
            assert_eq!(uuid(s), Some(Uuid::parse_str(s).unwrap()), "{s}");
        }
        for s in [
            "35b73b9ddcdd4c0bace25a3ead6d7b3c",
            "{35b73b9d-dcdd-4c0b-ace2-5a3ead6d7b3c}",
            "35b73b9d-dcdd-4c0b-ace2-5a3ead6d7b3g",
            "35b73b9d-dcdd-4c0b-ace2_5a3ead6d7b3c",
            "35b73b9d-dcdd-4c0b-ace2-5a3ead6d7b3",
        ] {
            assert_eq!(uuid(s), None, "{s}");
        }
    }

    #[test]
    fn the_word_at_a_time_hex_decoder_agrees_with_the_table_on_every_byte() {
        let base = *b"09afAF5c09afAF5c";
        for at in 0..16 {
            for byte in 0..=255u8 {
                let mut hex = base;
                hex[at] = byte;
                let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
                let (fast, table) = (decode_hex(&hex, &mut a), decode_hex_table(&hex, &mut b));
                assert_eq!(fast, table, "{hex:?}");
                assert_eq!(fast, byte.is_ascii_hexdigit(), "{hex:?}");
                if fast {
                    assert_eq!(a, b, "{hex:?}");
                }
            }
        }
        let mut out = [0u8; 4];
        assert!(decode_hex(b"deadBEEF", &mut out));
        assert_eq!(out, [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn hex_accepts_both_cases_and_rejects_the_rest() {
        let mut out = [0u8; 4];
        assert!(decode_hex(b"00fFa09B", &mut out));
        assert_eq!(out, [0x00, 0xff, 0xa0, 0x9b]);
        for bad in [
            b"00fFa09g",
            b"0 fFa09B",
            b"00fFa0\xff9",
            b"/0fFa09B",
            b":0fFa09B",
        ] {
            assert!(!decode_hex(bad, &mut out), "{bad:?}");
        }
    }
}
