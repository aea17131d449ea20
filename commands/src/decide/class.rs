//! A registering node's execution class, normalised, and the model hashes it reports,
//! checked against the catalog (docs/validation.md, "Execution classes").

use prlx_events::event::*;
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
    for (model, hash) in &n.model_hashes {
        if !n.models.contains(model) {
            // Not named in the field: a key from outside, of any length.
            return Err(Rejection::new(
                RejectionCode::MalformedRequest,
                Some("model_hashes"),
                "names a model the node does not serve",
            ));
        }
        let field = format!("model_hashes.{model}");
        if let Some(m) = state.catalog_model(model).filter(|m| m.sha256 != *hash) {
            return Err(Rejection::new(
                RejectionCode::MalformedRequest,
                Some(&field),
                format!(
                    "{hash} is not the catalog's model file {} for {model}",
                    m.sha256
                ),
            ));
        }
    }
    Ok(NodeRegistered {
        execution_class,
        ..n
    })
}
