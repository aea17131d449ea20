//! Prices: the quote intake checks a submission against; `task_price` itself lives with the
//! folds (`prlx_projections::pricing`), which re-derive it.

use prlx_events::event::*;
use prlx_projections::CoordinatorState;

use crate::decide::rejection::Rejection;

pub use prlx_projections::pricing::task_price;

/// The price of a request for `model` at `tier` and `priority` with `max_tokens`, with the
/// same checks intake applies (`GET /v1/quote` and submission share it).
pub fn quote(
    state: &CoordinatorState,
    model: &str,
    tier: u8,
    priority: Priority,
    max_tokens: u32,
) -> Result<u64, Rejection> {
    use RejectionCode::*;
    let catalog = state.catalog.as_ref().ok_or_else(|| {
        Rejection::new(
            UnknownModel,
            Some("model"),
            "no model catalog has been published",
        )
    })?;
    let m = state.catalog_model(model).ok_or_else(|| {
        Rejection::new(
            UnknownModel,
            Some("model"),
            format!("{model:?} is not in the catalog"),
        )
    })?;
    if tier < m.min_tier || tier > catalog.max_tier {
        return Err(Rejection::new(
            TierOutOfRange,
            Some("hardware_tier"),
            format!(
                "{model} needs a tier in {}..={}",
                m.min_tier, catalog.max_tier
            ),
        ));
    }
    if max_tokens == 0 || max_tokens > m.max_tokens_limit {
        return Err(Rejection::new(
            MalformedRequest,
            Some("max_tokens"),
            format!("must be 1..={}", m.max_tokens_limit),
        ));
    }
    // The context holds the prompt and the output together, and a prompt is at least one
    // token (the coordinator cannot count a sealed prompt's tokens, and any count from its
    // bytes would be an upper bound, refusing requests that fit): `max_tokens` that leaves no
    // room for one token of prompt can never run on any node.
    if m.context_length > 0 && max_tokens >= m.context_length {
        return Err(Rejection::new(
            MalformedRequest,
            Some("max_tokens"),
            format!(
                "{model} has a context of {} tokens, prompt and output together: max_tokens must leave room for the prompt (at most {})",
                m.context_length,
                m.context_length - 1
            ),
        ));
    }
    task_price(m, priority, max_tokens)
        .ok_or_else(|| Rejection::new(MalformedRequest, Some("max_tokens"), "price overflows"))
}
