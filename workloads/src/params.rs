//! Reading a submitter's JSON parameters field by field, each bounded, with the field named in
//! every refusal. Hand-rolled rather than `serde(deny_unknown_fields)` so the error is a
//! [`ParamError`] with the exact (dotted) field, not a message to parse.

use serde_json::{Map, Value};

use crate::error::ParamError;

/// One JSON object of parameters; [`Fields::finish`] refuses any key that was not read.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    read: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// `prefix` is the dotted path of this object ("" at the top, "scene." inside `scene`).
    pub(crate) fn new(value: &'a Value, prefix: &str) -> Result<Self, ParamError> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                prefix: prefix.to_string(),
                read: Vec::new(),
            }),
            _ => {
                let name = match prefix.trim_end_matches('.') {
                    "" => "params",
                    name => name,
                };
                Err(ParamError::field(name, "expected a JSON object"))
            }
        }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub(crate) fn err(&self, name: &str, reason: impl Into<String>) -> ParamError {
        ParamError::field(self.path(name), reason)
    }

    /// The raw value, if present (JSON `null` counts as absent).
    pub(crate) fn get(&mut self, name: &'static str) -> Option<&'a Value> {
        self.read.push(name);
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn required(&mut self, name: &'static str) -> Result<&'a Value, ParamError> {
        self.get(name).ok_or_else(|| self.err(name, "missing"))
    }

    /// An integer in `min..=max`; `default` when absent, or "missing" when there is none.
    pub(crate) fn int(
        &mut self,
        name: &'static str,
        min: u64,
        max: u64,
        default: Option<u64>,
    ) -> Result<u64, ParamError> {
        let Some(v) = self.get(name) else {
            return default.ok_or_else(|| self.err(name, "missing"));
        };
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(name, format!("expected an integer in {min}..={max}"))),
        }
    }

    /// A string of at most `max_bytes` bytes.
    pub(crate) fn string(
        &mut self,
        name: &'static str,
        max_bytes: usize,
        default: Option<&'static str>,
    ) -> Result<&'a str, ParamError> {
        let Some(v) = self.get(name) else {
            return default.ok_or_else(|| self.err(name, "missing"));
        };
        match v.as_str() {
            Some(s) if s.len() <= max_bytes => Ok(s),
            Some(s) => Err(self.err(
                name,
                format!("{} bytes, more than the limit of {max_bytes}", s.len()),
            )),
            None => Err(self.err(name, "expected a string")),
        }
    }

    /// One of a closed set of names.
    pub(crate) fn choice(
        &mut self,
        name: &'static str,
        allowed: &[&'static str],
        default: Option<&'static str>,
    ) -> Result<&'static str, ParamError> {
        let s = self.string(name, 64, default)?;
        allowed
            .iter()
            .copied()
            .find(|a| *a == s)
            .ok_or_else(|| self.err(name, format!("expected one of: {}", allowed.join(", "))))
    }

    /// A list of strings, bounded in count, in bytes each and in bytes together.
    pub(crate) fn strings(
        &mut self,
        name: &'static str,
        items: std::ops::RangeInclusive<usize>,
        max_each: usize,
        max_total: usize,
    ) -> Result<Vec<String>, ParamError> {
        let list = match self.required(name)? {
            Value::Array(list) => list,
            _ => return Err(self.err(name, "expected a list of strings")),
        };
        if !items.contains(&list.len()) {
            return Err(self.err(
                name,
                format!(
                    "{} items; expected {}..={}",
                    list.len(),
                    items.start(),
                    items.end()
                ),
            ));
        }
        let mut total = 0usize;
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let item = format!("{name}[{i}]");
            let s = v
                .as_str()
                .ok_or_else(|| self.err(&item, "expected a string"))?;
            if s.len() > max_each {
                return Err(self.err(
                    &item,
                    format!("{} bytes, more than the limit of {max_each}", s.len()),
                ));
            }
            total += s.len();
            if total > max_total {
                return Err(self.err(name, format!("more than {max_total} bytes in all")));
            }
            out.push(s.to_string());
        }
        Ok(out)
    }

    /// Refuses the first (in byte order, so the answer does not depend on the map's order)
    /// key that no reader asked for: a misspelt optional field must not be silently dropped.
    pub(crate) fn finish(&self) -> Result<(), ParamError> {
        let unknown = self
            .map
            .keys()
            .filter(|k| !self.read.contains(&k.as_str()))
            .min();
        match unknown {
            Some(k) => Err(ParamError::field(self.path(k), "unknown field")),
            None => Ok(()),
        }
    }
}

/// A whole decimal number (an integer, or a string like `"-0.743643"`) as a signed fixed-point
/// value with `frac_bits` fractional bits, truncated toward zero. JSON floats are refused:
/// their binary rounding would differ from the submitter's decimal.
pub(crate) fn fixed_point(v: &Value, frac_bits: u32) -> Result<i64, String> {
    let text = match v {
        Value::String(s) => s.as_str(),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let whole = n.as_i64().ok_or("out of range")?;
            return whole
                .checked_mul(1i64 << frac_bits)
                .ok_or_else(|| "out of range".to_string());
        }
        Value::Number(_) => {
            return Err(
                "expected a decimal string such as \"-0.75\" (a JSON float is \
                        not exact)"
                    .to_string(),
            )
        }
        _ => return Err("expected a decimal string such as \"-0.75\"".to_string()),
    };
    parse_decimal(text, frac_bits).ok_or_else(|| {
        format!("{text:?} is not a decimal of at most 4 integer and 18 fractional digits")
    })
}

fn parse_decimal(text: &str, frac_bits: u32) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 4 || frac.len() > 18 || !all_digits(whole) {
        return None;
    }
    if !all_digits(frac) || (digits.contains('.') && frac.is_empty()) {
        return None;
    }
    // value = (whole * 10^d + frac) / 10^d, scaled by 2^frac_bits before the division so the
    // only rounding is the final truncation. < 10^22 * 2^48 < 2^122: fits i128.
    let scale = 10i128.pow(frac.len() as u32);
    let mut numerator: i128 = whole.parse::<i128>().ok()? * scale;
    if !frac.is_empty() {
        numerator += frac.parse::<i128>().ok()?;
    }
    let fixed = (numerator << frac_bits) / scale;
    i64::try_from(if negative { -fixed } else { fixed }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_are_exact_fixed_point() {
        assert_eq!(fixed_point(&json!("1"), 8), Ok(256));
        assert_eq!(fixed_point(&json!("-0.5"), 8), Ok(-128));
        assert_eq!(fixed_point(&json!(2), 8), Ok(512));
        assert_eq!(fixed_point(&json!("0.001"), 8), Ok(0));
        assert_eq!(fixed_point(&json!("0.75"), 48), Ok(3 << 46));
        for bad in [
            "", "-", ".5", "1.", "1e3", "+1", "12345", "0x1", "1.2.3", " 1",
        ] {
            assert!(fixed_point(&json!(bad), 8).is_err(), "{bad:?}");
        }
        assert!(fixed_point(&json!(0.5), 8).is_err());
    }

    #[test]
    fn unknown_fields_are_named() {
        let v = json!({"a": 1, "zz": 2, "b": 3});
        let mut f = Fields::new(&v, "scene.").unwrap();
        assert_eq!(f.int("a", 0, 5, None), Ok(1));
        let err = f.finish().unwrap_err();
        assert_eq!(err.field_name(), Some("scene.b"));
    }
}
