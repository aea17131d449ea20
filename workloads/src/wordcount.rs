//! `mapreduce.wordcount`: word counts over text, mapped over shards and reduced in a tree.
//!
//! A word is a maximal run of Unicode alphanumeric characters (`char::is_alphanumeric`), each
//! character lowercased on its own (`char::to_lowercase`, no context rules such as the Greek
//! final sigma), so a word never depends on the text around it. Shards are cut only where no
//! word is split, hence counting shards and merging equals counting the whole.
//!
//! Graph: `m` map sub-tasks (0..m), then reduce levels that merge up to `fan_in` tables each,
//! until one table remains; a group of one is carried up a level instead of being copied by a
//! reduce. With one map shard the map is the whole task.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::class::SubtaskKind;
use crate::codec::{decode, encode};
use crate::error::{AggError, ExecError, InputError, ParamError};
use crate::graph::SubtaskSpec;
use crate::params::Fields;

/// The whole text, documents and their separators together.
pub const MAX_TEXT_BYTES: usize = 4 << 20;
pub const MAX_DOCUMENTS: usize = 100_000;
pub const MAX_MAP_SHARDS: u64 = 64;
pub const MAX_FAN_IN: u64 = 16;

/// A word-count table: (word, count) pairs, words strictly ascending, counts at least 1. The
/// JSON of this is the map, reduce and final output: `[["a",2],["b",1]]`.
pub type Table = Vec<(String, u64)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordCountSpec {
    /// Documents joined by `\n`, which is no part of any word.
    text: String,
    map_shards: u32,
    fan_in: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapInput {
    text: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReduceInput {
    parts: Vec<Table>,
}

impl WordCountSpec {
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// `text` (one string) or `documents` (a list), `map_shards` (1..=64, default 4), `fan_in`
/// (2..=16, default 4).
pub(crate) fn parse(f: &mut Fields) -> Result<WordCountSpec, ParamError> {
    let has_text = f.get("text").is_some();
    let has_docs = f.get("documents").is_some();
    let text = match (has_text, has_docs) {
        (true, false) => f.string("text", MAX_TEXT_BYTES, None)?.to_string(),
        (false, true) => {
            let docs = f.strings(
                "documents",
                1..=MAX_DOCUMENTS,
                MAX_TEXT_BYTES,
                MAX_TEXT_BYTES,
            )?;
            let text = docs.join("\n");
            if text.len() > MAX_TEXT_BYTES {
                return Err(f.err(
                    "documents",
                    format!("more than {MAX_TEXT_BYTES} bytes with separators"),
                ));
            }
            text
        }
        (true, true) => return Err(f.err("documents", "give `text` or `documents`, not both")),
        (false, false) => return Err(f.err("text", "missing (or give `documents`)")),
    };
    let map_shards = f.int("map_shards", 1, MAX_MAP_SHARDS, Some(4))? as u32;
    let fan_in = f.int("fan_in", 2, MAX_FAN_IN, Some(4))? as u32;
    Ok(WordCountSpec {
        text,
        map_shards,
        fan_in,
    })
}

pub(crate) fn plan(spec: &WordCountSpec) -> Vec<SubtaskSpec> {
    let mut subtasks = Vec::new();
    // Each entry: a sub-task whose table is not merged yet, with the text bytes under it (its
    // cost bound: a table never holds more words than its text has bytes).
    let mut level: Vec<(u32, u64)> = Vec::new();
    for range in shard_ranges(&spec.text, spec.map_shards as usize) {
        let index = subtasks.len() as u32;
        let bytes = range.len() as u64;
        subtasks.push(SubtaskSpec {
            index,
            kind: SubtaskKind::WordMap,
            deps: Vec::new(),
            input: encode(&MapInput {
                text: spec.text[range].to_string(),
            }),
            cost: bytes.max(1),
        });
        level.push((index, bytes));
    }
    while level.len() > 1 {
        let mut next = Vec::new();
        for group in level.chunks(spec.fan_in as usize) {
            if let [single] = group {
                next.push(*single);
                continue;
            }
            let index = subtasks.len() as u32;
            let mut deps: Vec<u32> = group.iter().map(|&(i, _)| i).collect();
            deps.sort_unstable();
            let bytes = group.iter().map(|&(_, b)| b).sum::<u64>();
            subtasks.push(SubtaskSpec {
                index,
                kind: SubtaskKind::WordReduce,
                deps,
                input: Vec::new(),
                cost: bytes.max(1),
            });
            next.push((index, bytes));
        }
        level = next;
    }
    subtasks
}

/// Up to `shards` non-empty byte ranges covering `text`, each cut moved forward to the first
/// place that splits no word (and no UTF-8 character). Fewer ranges when the text has fewer
/// places to cut; one empty range for an empty text.
fn shard_ranges(text: &str, shards: usize) -> Vec<Range<usize>> {
    let len = text.len();
    let mut cuts = vec![0];
    for i in 1..shards {
        // Starting from the last cut keeps the whole scan linear in the text, even for one
        // giant word that pushes every cut to the end.
        let mut p = (len * i / shards).max(*cuts.last().unwrap_or(&0));
        while p < len && (!text.is_char_boundary(p) || splits_word(text, p)) {
            p += 1;
        }
        if p > *cuts.last().unwrap_or(&0) && p < len {
            cuts.push(p);
        }
    }
    // An empty text leaves cuts [0, 0]: one empty shard, so the task still has a sub-task.
    cuts.push(len);
    cuts.windows(2).map(|w| w[0]..w[1]).collect()
}

fn splits_word(text: &str, p: usize) -> bool {
    let before = text[..p].chars().next_back();
    let after = text[p..].chars().next();
    matches!((before, after), (Some(a), Some(b)) if a.is_alphanumeric() && b.is_alphanumeric())
}

/// Adds the words of `text` to `table`.
pub(crate) fn count_words(text: &str, table: &mut BTreeMap<String, u64>) {
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            *table.entry(std::mem::take(&mut word)).or_insert(0) += 1;
        }
    }
    if !word.is_empty() {
        *table.entry(word).or_insert(0) += 1;
    }
}

/// Refuses a table that no honest map or reduce produces.
fn check_table(table: &Table) -> Result<(), String> {
    if let Some((w, _)) = table.iter().find(|(w, c)| w.is_empty() || *c == 0) {
        return Err(format!("entry {w:?} is empty or has a zero count"));
    }
    if table.windows(2).any(|p| p[0].0 >= p[1].0) {
        return Err("words are not strictly ascending".to_string());
    }
    Ok(())
}

fn decode_table(bytes: &[u8]) -> Result<Table, String> {
    let table: Table = decode(bytes).map_err(|e| e.to_string())?;
    check_table(&table)?;
    Ok(table)
}

pub(crate) fn execute_map(input: &[u8]) -> Result<Vec<u8>, ExecError> {
    let MapInput { text } = decode(input)?;
    let mut table = BTreeMap::new();
    count_words(&text, &mut table);
    Ok(encode(&table.into_iter().collect::<Table>()))
}

pub(crate) fn execute_reduce(input: &[u8]) -> Result<Vec<u8>, ExecError> {
    let ReduceInput { parts } = decode(input)?;
    if parts.is_empty() || parts.len() as u64 > MAX_FAN_IN {
        return Err(ExecError::OutOfBounds {
            field: "parts",
            reason: format!("{} parts; expected 1..={MAX_FAN_IN}", parts.len()),
        });
    }
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for part in parts {
        check_table(&part).map_err(ExecError::Malformed)?;
        for (word, count) in part {
            let slot = merged.entry(word).or_insert(0);
            // Honest counts are bounded by the text's bytes; a huge one is a hostile input.
            *slot = slot
                .checked_add(count)
                .ok_or_else(|| ExecError::Malformed("counts overflow".to_string()))?;
        }
    }
    Ok(encode(&merged.into_iter().collect::<Table>()))
}

/// A reduce's input: its deps' tables, validated, in dep order.
pub(crate) fn reduce_input(
    index: u32,
    deps: &[u32],
    outputs: &BTreeMap<u32, Vec<u8>>,
) -> Result<Vec<u8>, InputError> {
    let mut parts = Vec::with_capacity(deps.len());
    for &dep in deps {
        let bytes = outputs
            .get(&dep)
            .ok_or(InputError::MissingDep { index, dep })?;
        let table =
            decode_table(bytes).map_err(|reason| InputError::MalformedDepOutput { dep, reason })?;
        parts.push(table);
    }
    Ok(encode(&ReduceInput { parts }))
}

/// The root's table (the last sub-task), re-encoded canonically.
pub(crate) fn aggregate(
    subtasks: &[SubtaskSpec],
    outputs: &BTreeMap<u32, Vec<u8>>,
) -> Result<Vec<u8>, AggError> {
    let root = subtasks.len() as u32 - 1;
    let bytes = outputs.get(&root).ok_or(AggError::Missing(root))?;
    let table = decode_table(bytes).map_err(|reason| AggError::Malformed {
        index: root,
        reason,
    })?;
    Ok(encode(&table))
}

pub(crate) fn run_in_one_process(spec: &WordCountSpec) -> Vec<u8> {
    let mut table = BTreeMap::new();
    count_words(&spec.text, &mut table);
    encode(&table.into_iter().collect::<Table>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_never_split_a_word() {
        let text = "alpha beta, gamma\ndelta épée 42x";
        for shards in 1..=12 {
            let ranges = shard_ranges(text, shards);
            assert!(ranges.len() <= shards);
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, text.len());
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(!splits_word(text, w[0].end));
            }
        }
        assert_eq!(
            shard_ranges("", 5),
            std::iter::once(0..0).collect::<Vec<_>>()
        );
        assert_eq!(
            shard_ranges("oneword", 5),
            std::iter::once(0..7).collect::<Vec<_>>()
        );
    }

    #[test]
    fn words_are_lowercased_runs_of_alphanumerics() {
        let mut t = BTreeMap::new();
        count_words("Hello, HELLO hello-world ΣΑΣ 3rd", &mut t);
        let t: Table = t.into_iter().collect();
        let expect = [("3rd", 1), ("hello", 3), ("world", 1), ("σασ", 1)];
        let expect: Table = expect.iter().map(|&(w, c)| (w.to_string(), c)).collect();
        assert_eq!(t, expect);
    }

    #[test]
    fn the_tree_carries_a_lone_table_up() {
        // 5 maps, fan-in 2: (0,1)->5, (2,3)->6, then (5,6)->7, then (4,7)->8.
        let spec = WordCountSpec {
            text: "a b c d e f g h i j".to_string(),
            map_shards: 5,
            fan_in: 2,
        };
        let deps: Vec<Vec<u32>> = plan(&spec).into_iter().map(|s| s.deps).collect();
        let none: Vec<u32> = Vec::new();
        let expect = [none.clone(), none.clone(), none.clone(), none.clone(), none];
        assert_eq!(&deps[..5], &expect);
        assert_eq!(
            &deps[5..],
            &[vec![0, 1], vec![2, 3], vec![5, 6], vec![4, 7]]
        );
    }
}
