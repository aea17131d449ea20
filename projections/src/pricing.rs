//! The price of a request, a pure function of the catalog: `decide` charges it at intake and
//! the fold re-derives it from the `RequestAccepted` it records, so a log cannot bill a
//! client more (or less) than the catalog in force said.

use prlx_events::event::{CatalogModel, Priority};

/// `task_price`: `(base_price + per_token_price * max_tokens) * priority%`, rounded up.
/// `None` when it does not fit in u64.
pub fn task_price(model: &CatalogModel, priority: Priority, max_tokens: u32) -> Option<u64> {
    let percent: u64 = match priority {
        Priority::Low => 80,
        Priority::Standard => 100,
        Priority::High => 150,
    };
    let base = model
        .per_token_price
        .checked_mul(u64::from(max_tokens))?
        .checked_add(model.base_price)?;
    Some(base.checked_mul(percent)?.div_ceil(100))
}
