//! A registering node's execution class, normalised, and the model hashes it reports,
//! checked against the catalog (docs/validation.md, "Execution classes").

use prlx_events::event::*;
use prlx_projections::validation::model_hash_problem;
use prlx_projections::CoordinatorState;

use crate::decide::rejection::Rejection;

/// `n` with its execution class in normal form (trimmed, lowercased, of the vocabulary), or
/// a rejection naming the part at fault; each reported model hash must be of a model it
/// serves and, for a model of the catalog, the catalog's file. The fold checks the same.
pub(super) fn normalise_registration(
    state: &CoordinatorState,
    n: NodeRegistered,
) -> Result<NodeRegistered, Rejection> {
    let execution_class = n.execution_class.normalised().map_err(|e| {
        Rejection::new(
            RejectionCode::MalformedRequest,
            Some(&format!("execution_class.{}", e.part)),
            e.reason,
        )
    })?;
    if let Some((field, reason)) = model_hash_problem(state, &n) {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some(&field),
            reason,
        ));
    }
    Ok(NodeRegistered {
        execution_class,
        ..n
    })
}
