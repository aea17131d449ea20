//! The built-in workload classes and the sub-task kinds they split into. Both are closed
//! vocabularies: a node runs only what is named here, never code from a submitter.

use std::fmt;

/// A built-in workload class, as a submitter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    BatchInference,
    WordCount,
    RenderTiles,
    SweepEpidemic,
}

/// Every class's name, in the order error messages list them.
pub const KNOWN_CLASSES: &[&str] = &[
    "batch.inference",
    "mapreduce.wordcount",
    "render.tiles",
    "sweep.epidemic",
];

impl Class {
    pub const ALL: [Class; 4] = [
        Class::BatchInference,
        Class::WordCount,
        Class::RenderTiles,
        Class::SweepEpidemic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::BatchInference => KNOWN_CLASSES[0],
            Class::WordCount => KNOWN_CLASSES[1],
            Class::RenderTiles => KNOWN_CLASSES[2],
            Class::SweepEpidemic => KNOWN_CLASSES[3],
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What one unit of [`crate::SubtaskSpec::cost`] measures for this class. Units differ
    /// between classes, so the coordinator prices each class with its own rate.
    pub fn cost_unit(self) -> &'static str {
        match self {
            Class::BatchInference => "prompt x max_tokens",
            Class::WordCount => "byte of text",
            Class::RenderTiles => "pixel x max_iter",
            Class::SweepEpidemic => "parameter point x day",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node is asked to run for one sub-task. The name is stable: it is what a dispatch
/// and the log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubtaskKind {
    /// A shard of prompts through the node's inference engine.
    BatchShard,
    /// Word counts of one shard of text.
    WordMap,
    /// The merge of up to `fan_in` word-count tables.
    WordReduce,
    /// One rectangle of the fractal image, as raw RGB.
    RenderTile,
    /// A chunk of the epidemic model's parameter grid.
    SweepChunk,
}

impl SubtaskKind {
    pub const ALL: [SubtaskKind; 5] = [
        SubtaskKind::BatchShard,
        SubtaskKind::WordMap,
        SubtaskKind::WordReduce,
        SubtaskKind::RenderTile,
        SubtaskKind::SweepChunk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SubtaskKind::BatchShard => "batch.shard",
            SubtaskKind::WordMap => "wordcount.map",
            SubtaskKind::WordReduce => "wordcount.reduce",
            SubtaskKind::RenderTile => "render.tile",
            SubtaskKind::SweepChunk => "sweep.chunk",
        }
    }

    pub fn from_name(name: &str) -> Option<SubtaskKind> {
        SubtaskKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// How many of its cost units are priced as one token of the catalog's
    /// `per_token_price`: a batch shard's units are tokens; the pure kinds' units are much
    /// cheaper than a token of a model (the coordinator's pricing, `prlx-projections`).
    pub fn units_per_priced_token(self) -> u64 {
        match self {
            SubtaskKind::BatchShard => 1,
            SubtaskKind::WordMap | SubtaskKind::WordReduce => 64,
            SubtaskKind::RenderTile => 4096,
            SubtaskKind::SweepChunk => 64,
        }
    }

    /// Whether a node can run it with this crate alone (no inference engine).
    pub fn is_pure(self) -> bool {
        self != SubtaskKind::BatchShard
    }
}

impl fmt::Display for SubtaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::from_name(c.name()), Some(c));
        }
        for k in SubtaskKind::ALL {
            assert_eq!(SubtaskKind::from_name(k.name()), Some(k));
        }
        assert_eq!(Class::from_name("ai.inference"), None);
    }
}
