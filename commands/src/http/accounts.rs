//! `/v1/accounts` and `/v1/quote`: balances and prices. Credits come from the chain only.

use axum::extract::State;
use axum::Json;
use prlx_events::event::Priority;
use prlx_events::AccountId;
use prlx_projections::CoordinatorState;

use crate::actor::CoordinatorHandle;
use crate::decide;

use super::body::*;
use super::extract::{ApiPath, ApiQuery};
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
    let id = reads_account(&reader, &account)?;
    let lookup = id.clone();
    coordinator
        .read_state(move |state| {
            may_read(state, &reader)?;
            Ok::<_, AppError>(account_body(state, &lookup))
        })
        .await??
        .map(Json)
        .ok_or_else(|| {
            AppError::not_found("unknown_account", "account", format!("no account {id}"))
        })
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
