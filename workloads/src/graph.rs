//! The segmenter's output: a task's sub-tasks as a dependency graph in topological order.
//!
//! Sub-task `i` may only depend on sub-tasks with a smaller index, so the plan's order is a
//! topological order and the graph is acyclic by construction ([`Plan::check`] proves it for
//! a plan from elsewhere, e.g. one read back from the log).

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::class::{Class, SubtaskKind};

/// One unit of work: what a node runs, what it waits for, what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskSpec {
    /// Its position in the plan; equal to its index in [`Plan::subtasks`].
    pub index: u32,
    pub kind: SubtaskKind,
    /// Sub-tasks whose validated outputs this one's input is built from, ascending. Empty: it
    /// may run at once, in parallel with every other such sub-task.
    pub deps: Vec<u32>,
    /// The canonical input bytes for a sub-task without deps. For a dependent sub-task this is
    /// empty: its input exists only once its deps are validated ([`crate::input_for`]).
    pub input: Vec<u8>,
    /// Work units (see [`Class::cost_unit`]), an upper bound fixed at planning time so the
    /// whole task can be quoted before anything runs.
    pub cost: u64,
}

impl SubtaskSpec {
    /// SHA-256 of the static input (the `payload_hash` a dispatch records); `None` for a
    /// dependent sub-task, whose input is hashed once built.
    pub fn input_sha256(&self) -> Option<[u8; 32]> {
        self.deps
            .is_empty()
            .then(|| Sha256::digest(&self.input).into())
    }
}

/// A flat graph: one independent sub-task per (input, cost), indexed in order. What every
/// class without a reduce step plans.
pub(crate) fn independent(
    kind: SubtaskKind,
    parts: impl IntoIterator<Item = (Vec<u8>, u64)>,
) -> Vec<SubtaskSpec> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (input, cost))| SubtaskSpec {
            index: i as u32,
            kind,
            deps: Vec::new(),
            input,
            cost,
        })
        .collect()
}

/// A task's sub-tasks, in topological order; the last one's output (or, for flat graphs, all
/// outputs in index order) makes the task's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub class: Class,
    pub subtasks: Vec<SubtaskSpec>,
}

/// Why a plan is not a well-formed graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("a plan needs at least one sub-task")]
    Empty,
    #[error("sub-task at position {position} has index {index}")]
    IndexMismatch { position: usize, index: u32 },
    #[error("sub-task {index} depends on {dep}, which does not come before it")]
    ForwardDep { index: u32, dep: u32 },
    #[error("sub-task {index} lists its deps out of order or twice")]
    UnsortedDeps { index: u32 },
}

impl Plan {
    /// Sub-tasks that may be dispatched now: every dep validated, itself not yet validated.
    /// In index order, so two coordinators replaying the same log dispatch in the same order.
    /// The caller still skips those already in flight.
    pub fn ready(&self, validated: &BTreeSet<u32>) -> Vec<u32> {
        self.subtasks
            .iter()
            .filter(|s| !validated.contains(&s.index))
            .filter(|s| s.deps.iter().all(|d| validated.contains(d)))
            .map(|s| s.index)
            .collect()
    }

    pub fn get(&self, index: u32) -> Option<&SubtaskSpec> {
        self.subtasks.get(usize::try_from(index).ok()?)
    }

    /// The quote's basis: the sum of every sub-task's cost (saturating: the bounds in `parse`
    /// keep it far below `u64::MAX`, and a saturated quote still refuses rather than wraps).
    pub fn total_cost(&self) -> u64 {
        self.subtasks
            .iter()
            .fold(0u64, |acc, s| acc.saturating_add(s.cost))
    }

    /// Longest chain of dependencies, in sub-tasks (1 for a flat graph).
    pub fn depth(&self) -> u32 {
        // By position, and a dep that is not earlier counts as nothing: no panic on a plan
        // that `check` would refuse.
        let mut depth = vec![0u32; self.subtasks.len()];
        for (position, s) in self.subtasks.iter().enumerate() {
            let below = s.deps.iter().filter_map(|&d| depth.get(d as usize)).max();
            depth[position] = below.copied().unwrap_or(0) + 1;
        }
        depth.into_iter().max().unwrap_or(0)
    }

    /// Proves the plan's order is topological: indices are positions and every dep points to
    /// an earlier sub-task, which also rules out cycles.
    pub fn check(&self) -> Result<(), GraphError> {
        if self.subtasks.is_empty() {
            return Err(GraphError::Empty);
        }
        for (position, s) in self.subtasks.iter().enumerate() {
            if s.index as usize != position {
                return Err(GraphError::IndexMismatch {
                    position,
                    index: s.index,
                });
            }
            if s.deps.windows(2).any(|w| w[0] >= w[1]) {
                return Err(GraphError::UnsortedDeps { index: s.index });
            }
            if let Some(&dep) = s.deps.iter().find(|&&d| d >= s.index) {
                return Err(GraphError::ForwardDep {
                    index: s.index,
                    dep,
                });
            }
        }
        Ok(())
    }

    /// SHA-256 over a length-prefixed encoding of the whole plan: two coordinators (or the
    /// auditor) that derive the same plan from the same spec get the same digest.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        put(&mut h, self.class.name().as_bytes());
        h.update((self.subtasks.len() as u64).to_be_bytes());
        for s in &self.subtasks {
            h.update(s.index.to_be_bytes());
            put(&mut h, s.kind.name().as_bytes());
            h.update((s.deps.len() as u64).to_be_bytes());
            for d in &s.deps {
                h.update(d.to_be_bytes());
            }
            put(&mut h, &s.input);
            h.update(s.cost.to_be_bytes());
        }
        h.finalize().into()
    }
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(index: u32, deps: &[u32]) -> SubtaskSpec {
        SubtaskSpec {
            index,
            kind: SubtaskKind::WordMap,
            deps: deps.to_vec(),
            input: Vec::new(),
            cost: 1,
        }
    }

    #[test]
    fn ready_waits_for_every_dep() {
        let plan = Plan {
            class: Class::WordCount,
            subtasks: vec![sub(0, &[]), sub(1, &[]), sub(2, &[0, 1]), sub(3, &[2])],
        };
        plan.check().unwrap();
        assert_eq!(plan.depth(), 3);
        assert_eq!(plan.ready(&BTreeSet::new()), vec![0, 1]);
        assert_eq!(plan.ready(&BTreeSet::from([0])), vec![1]);
        assert_eq!(plan.ready(&BTreeSet::from([0, 1])), vec![2]);
        assert_eq!(plan.ready(&BTreeSet::from([0, 1, 2])), vec![3]);
        assert!(plan.ready(&BTreeSet::from([0, 1, 2, 3])).is_empty());
    }

    #[test]
    fn check_refuses_forward_and_self_deps() {
        let bad = |subtasks| Plan {
            class: Class::WordCount,
            subtasks,
        };
        assert_eq!(
            bad(vec![sub(0, &[1]), sub(1, &[])]).check(),
            Err(GraphError::ForwardDep { index: 0, dep: 1 })
        );
        assert_eq!(
            bad(vec![sub(0, &[0])]).check(),
            Err(GraphError::ForwardDep { index: 0, dep: 0 })
        );
        assert_eq!(
            bad(vec![sub(1, &[])]).check(),
            Err(GraphError::IndexMismatch {
                position: 0,
                index: 1
            })
        );
        assert_eq!(bad(vec![]).check(), Err(GraphError::Empty));
    }
}
