//! `/v1/accounts` and `/v1/quote`: balances and prices. Credits come from the chain only.

use axum::extract::State;
use axum::Json;
use prlx_events::event::Priority;
use prlx_events::AccountId;
use prlx_projections::CoordinatorState;

use crate::actor::CoordinatorHandle;
use crate::decide;

use super::body::*;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::reader::{may_read, reads_account, Reader};
use crate::error::{AppError, ErrorBody};
use crate::submission::PriorityParam;

pub(super) fn account_body(state: &CoordinatorState, account: &AccountId) -> Option<AccountBody> {
    state.accounts.get(account).map(|a| AccountBody {
        account: account.0.clone(),
        balance: a.balance,
        reserved: a.reserved,
        available: a.available(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{account}",
    tag = "accounts",
    description = "An account's credits. Only for the account itself or a delegate of it: a \
        read-access token for this account (docs/security.md, \"Reads\").",
    params(("account" = String, Path, description = "The credit account (its 0x address)")),
    security(("read_access" = [])),
    responses(
        (status = 200, body = AccountBody),
        (status = 401, description = "`unauthenticated` (`Authorization`): no read-access token, or one that is malformed, expired, lives over an hour or does not recover", body = ErrorBody),
        (status = 403, description = "`unauthorized` (`Authorization`): the token is for another account, or its signer may not read this one", body = ErrorBody),
        (status = 404, description = "`unknown_account`: never credited", body = ErrorBody),
    ),
)]
pub(super) async fn get_account(
    State(coordinator): State<CoordinatorHandle>,
    reader: Reader,
    ApiPath(account): ApiPath,
) -> Result<Json<AccountBody>, AppError> {
    read_account(&coordinator, reader, &account, account_body)
        .await?
        .map(Json)
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_account",
                "account",
                format!("no account {}", account.to_ascii_lowercase()),
            )
        })
}

/// `f` of `account` in the state, for a reader whose token is for `account` and who may read
/// it (the account, or a live delegate), checked in the same turn as `f` runs.
async fn read_account<T: Send + 'static>(
    coordinator: &CoordinatorHandle,
    reader: Reader,
    account: &str,
    f: impl FnOnce(&CoordinatorState, &AccountId) -> T + Send + 'static,
) -> Result<T, AppError> {
    let id = reads_account(&reader, account)?;
    coordinator
        .read_state(move |state| {
            may_read(state, &reader)?;
            Ok::<_, AppError>(f(state, &id))
        })
        .await?
}

#[utoipa::path(
    get,
    path = "/v1/quote",
    tag = "requests",
    params(QuoteQuery),
    responses(
        (status = 200, description = "The price a submission with these parameters is charged", body = QuoteBody),
        (status = 400, description = "`malformed_request` (naming the parameter), `unknown_model`, `tier_out_of_range`", body = ErrorBody),
    ),
)]
pub(super) async fn quote(
    State(coordinator): State<CoordinatorHandle>,
    ApiQuery(q): ApiQuery<QuoteQuery>,
) -> Result<Json<QuoteBody>, AppError> {
    coordinator
        .read_state(move |state| {
            let price = quote_price(
                state,
                &q.model,
                q.hardware_tier,
                q.priority.unwrap_or(PriorityParam::Standard).into(),
                q.max_tokens,
            )?;
            Ok(Json(QuoteBody {
                model: q.model,
                price,
            }))
        })
        .await?
}

#[utoipa::path(
    post,
    path = "/v1/quote/task",
    tag = "requests",
    request_body = TaskQuoteRequest,
    responses(
        (status = 200, description = "The price a general-path task with these parameters is charged, and its graph's size", body = TaskQuoteBody),
        (status = 400, description = "`malformed_request` (naming the parameter, e.g. `params.width`), `unknown_workload_class`, `unknown_model`, `tier_out_of_range`", body = ErrorBody),
    ),
)]
pub(super) async fn quote_task(
    State(coordinator): State<CoordinatorHandle>,
    ApiJson(q): ApiJson<TaskQuoteRequest>,
) -> Result<Json<TaskQuoteBody>, AppError> {
    if !prlx_projections::coordinator::apply_subtasks::is_general(&q.workload_class) {
        return Err(AppError::new(
            axum::http::StatusCode::BAD_REQUEST,
            crate::error::code_name(prlx_events::event::RejectionCode::UnknownWorkloadClass),
            Some("workload_class"),
            format!(
                "{:?} is not a general-path class (known: {})",
                q.workload_class,
                prlx_workloads::KNOWN_CLASSES.join(", ")
            ),
        ));
    }
    // Planned here, outside the actor: parsing and planning are pure and may take a while.
    let (_, plan) = decide::plan_params(&q.workload_class, &q.model, q.max_tokens, &q.params)
        .map_err(|p| AppError::malformed(&p.field, p.reason))?;
    let priority: Priority = q.priority.unwrap_or(PriorityParam::Standard).into();
    coordinator
        .read_state(move |state| {
            // The same checks of model, tier and max_tokens as a submission's.
            quote_price(state, &q.model, q.hardware_tier, priority, q.max_tokens)?;
            let subtasks = plan
                .subtasks
                .iter()
                .map(|s| (s.kind.name().to_owned(), s.cost));
            let (price, _) = decide::plan_price(state, &q.model, priority, subtasks)?;
            Ok(Json(TaskQuoteBody {
                workload_class: q.workload_class,
                model: q.model,
                price,
                subtasks: plan.subtasks.len() as u32,
                depth: plan.depth(),
                cost: plan.total_cost(),
                cost_unit: plan.class.cost_unit().to_owned(),
            }))
        })
        .await?
}

/// The price `decide` would charge, with the checks it makes on these parameters, in its order.
pub(super) fn quote_price(
    state: &CoordinatorState,
    model: &str,
    tier: u8,
    priority: Priority,
    max_tokens: u32,
) -> Result<u64, AppError> {
    Ok(decide::quote(state, model, tier, priority, max_tokens)?)
}

#[utoipa::path(
    get,
    path = "/v1/consent",
    tag = "accounts",
    responses(
        (status = 200, description = "The EIP-712 domain and type a submission's `signature` is made under", body = crate::consent::ConsentDomainBody),
    ),
)]
/// What a submission is signed under.
///
/// Every submission carries its account's signature over EIP-712 typed data: this domain
/// (the chain id and the CreditEscrow the account deposits into) and the `Submission` type.
pub(super) async fn consent_domain(
    State(coordinator): State<CoordinatorHandle>,
) -> Json<crate::consent::ConsentDomainBody> {
    Json(coordinator.consent_domain().body())
}

#[utoipa::path(
    post,
    path = "/v1/delegations/revocations",
    tag = "accounts",
    description = "An account withdraws one of its delegations before it expires: no submission \
        signed under it is accepted after, and its delegate no longer reads the account \
        (docs/security.md, \"Delegated spending\"). Revoking one already revoked answers the same.",
    request_body = crate::revocation::RevocationBody,
    responses(
        (status = 200, description = "Revoked (now or before)", body = crate::revocation::RevocationAnswer),
        (status = 400, description = "`malformed_request` (`account`, `delegate`, `signature`: an address that is not one, a signature that does not recover; `account`: no deposit ever credited it; `delegation`: the account holds 64 unexpired revocations)", body = ErrorBody),
        (status = 403, description = "`unauthorized` (`signature`): not signed by the account; `delegation_expired` (`expires_at`): nothing left to revoke", body = ErrorBody),
    ),
)]
pub(super) async fn revoke_delegation(
    State(coordinator): State<CoordinatorHandle>,
    ApiJson(body): ApiJson<crate::revocation::RevocationBody>,
) -> Result<Json<crate::revocation::RevocationAnswer>, AppError> {
    let revocation = crate::revocation::revocation_of(&body, &coordinator.consent_domain())
        .map_err(|(field, why)| AppError::malformed(field, why))?;
    let delegation = revocation.delegation;
    let outcome = coordinator
        .execute_command(decide::Command::RevokeDelegation {
            revocation: Box::new(revocation),
            // Set by the shell to the time it records the decision at.
            now: chrono::DateTime::UNIX_EPOCH,
        })
        .await?;
    match outcome {
        crate::shell::Outcome::Rejected { rejection, .. } => Err(rejection.into()),
        _ => Ok(Json(crate::revocation::RevocationAnswer {
            delegation: delegation.to_string(),
            status: "revoked".into(),
        })),
    }
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/delegations",
    tag = "accounts",
    description = "An account's delegations as the log holds them: each one a request was \
        accepted under (its delegate, limit, what it has spent, its expiry), and each the account \
        revoked. Only for the account itself or a live delegate of it: a read-access token for this \
        account (docs/security.md, \"Reads\").",
    params(("account" = String, Path, description = "The credit account (its 0x address)")),
    security(("read_access" = [])),
    responses(
        (status = 200, body = Vec<DelegationEntry>),
        (status = 401, description = "`unauthenticated` (`Authorization`)", body = ErrorBody),
        (status = 403, description = "`unauthorized` (`Authorization`)", body = ErrorBody),
    ),
)]
pub(super) async fn list_delegations(
    State(coordinator): State<CoordinatorHandle>,
    reader: Reader,
    ApiPath(account): ApiPath,
) -> Result<Json<Vec<DelegationEntry>>, AppError> {
    read_account(&coordinator, reader, &account, delegations_of)
        .await
        .map(Json)
}

/// `account`'s delegations, by hash: used ones with their terms, revoked ones marked.
fn delegations_of(state: &CoordinatorState, account: &AccountId) -> Vec<DelegationEntry> {
    let mut all: std::collections::BTreeMap<prlx_events::Hash32, DelegationEntry> = state
        .delegations
        .get(account)
        .into_iter()
        .flatten()
        .map(|(hash, u)| {
            let entry = DelegationEntry {
                delegation: hash.to_string(),
                delegate: Some(u.delegate.clone()),
                spending_limit: Some(u.spending_limit),
                spent: Some(u.spent),
                expires_at: u.expires_at,
                revoked: state.is_revoked(account, hash),
            };
            (*hash, entry)
        })
        .collect();
    for (hash, expires_at) in state.revoked.get(account).into_iter().flatten() {
        all.entry(*hash).or_insert_with(|| DelegationEntry {
            delegation: hash.to_string(),
            delegate: None,
            spending_limit: None,
            spent: None,
            expires_at: *expires_at,
            revoked: true,
        });
    }
    all.into_values().collect()
}
