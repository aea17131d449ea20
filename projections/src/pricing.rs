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

/// The price of one general-path sub-task of `kind` costing `cost` work units: the kind's
/// units are priced as tokens of the task's model ([`prlx_workloads::SubtaskKind::
/// units_per_priced_token`], rounded up), at least one, so each sub-task also pays the model's
/// `base_price`: splitting finer costs more. `None` for an unknown kind or an overflow.
pub fn subtask_price(
    model: &CatalogModel,
    priority: Priority,
    kind: &str,
    cost: u64,
) -> Option<u64> {
    let kind = prlx_workloads::SubtaskKind::from_name(kind)?;
    let tokens = cost.div_ceil(kind.units_per_priced_token()).max(1);
    task_price(model, priority, u32::try_from(tokens).ok()?)
}
