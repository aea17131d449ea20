//! Sampling epochs: a seed committed by its hash, then revealed (docs/validation.md).

use prlx_events::event::*;
use prlx_events::{Event, Hash32};
use prlx_projections::CoordinatorState;

use crate::decide::rejection::{internal, Rejection};

pub(super) fn commit_seed(
    state: &CoordinatorState,
    epoch: u64,
    seed_hash: Hash32,
    sealed_seed: Sealed,
) -> Result<Vec<Event>, Rejection> {
    if state.sampling.current.is_some() || epoch != state.sampling.last_epoch + 1 {
        return Err(internal(
            "epoch",
            format!(
                "epoch {epoch} cannot open: last {}, open {:?}",
                state.sampling.last_epoch,
                state.sampling.current.as_ref().map(|e| e.epoch)
            ),
        ));
    }
    Ok(vec![SamplingSeedCommitted {
        epoch,
        seed_hash,
        sealed_seed: Some(sealed_seed),
    }
    .into()])
}

pub(super) fn reveal_seed(
    state: &CoordinatorState,
    epoch: u64,
    seed: Hash32,
) -> Result<Vec<Event>, Rejection> {
    match &state.sampling.current {
        Some(open) if open.epoch == epoch && Hash32::of(&seed.0) == open.seed_hash => {
            Ok(vec![SamplingSeedRevealed { epoch, seed }.into()])
        }
        _ => Err(internal(
            "seed",
            format!("is not the committed seed of an open epoch {epoch}"),
        )),
    }
}
