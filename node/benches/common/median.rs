//! The median of a bench's rounds, shared by every bench (node, tests, workloads) through
//! `#[path]`: benches are separate crates, and this is too small for a crate of its own.

/// The middle value (the upper middle of an even count). Panics when `v` is empty or holds
/// values that do not compare (a NaN).
pub fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable values (no NaN)"));
    v[v.len() / 2]
}
