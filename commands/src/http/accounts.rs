//! `/v1/accounts` and `/v1/quote`: deposits, balances, prices.

use axum::extract::State;
use axum::Json;
use prlx_events::event::Priority;
use prlx_events::AccountId;
use prlx_projections::CoordinatorState;

use crate::actor::{CoordinatorHandle, Intake};
use crate::decide::{self, Command};
use crate::shell::Outcome;

use super::body::*;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::error::{AppError, ErrorBody};
use crate::submission::PriorityParam;

#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/deposits",
    tag = "accounts",
    params(("account" = String, Path, description = "The credit account to credit")),
    request_body = DepositBody,
    responses(
        (status = 200, description = "Credited, or already credited (`credited: false`)", body = DepositResult),
        (status = 400, description = "`malformed_request` (empty `tx_ref`), `invalid_amount`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn deposit_credits(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(account): ApiPath,
    ApiJson(body): ApiJson<DepositBody>,
) -> Result<Json<DepositResult>, AppError> {
    let account = AccountId(account);
    let name = account.0.clone();
    let command = Command::DepositCredits {
        account: account.clone(),
        tx_ref: body.tx_ref,
        amount: body.amount,
    };
    let (outcome, view) = coordinator
        .execute(Intake::Command(command), move |_, state| {
            account_body(state, &account)
        })
        .await?;
    let credited = match outcome {
        Outcome::Appended(_) => true,
        Outcome::Unchanged => false,
        Outcome::Rejected { rejection, .. } => return Err(rejection.into()),
        Outcome::Refused(m) => return Err(AppError::internal(m)),
    };
    let view = match view {
        Some(view) => view,
        // A reference already credited to another account: nothing was credited here, and
        // this account may never have been.
        None if !credited => AccountBody {
            account: name,
            balance: 0,
            reserved: 0,
            available: 0,
        },
        None => return Err(AppError::internal("the account is not recorded")),
    };
    Ok(Json(DepositResult {
        account: view.account,
        balance: view.balance,
        reserved: view.reserved,
        available: view.available,
        credited,
    }))
}

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
    params(("account" = String, Path, description = "The credit account")),
    responses(
        (status = 200, body = AccountBody),
        (status = 404, description = "`unknown_account`: never credited", body = ErrorBody),
    ),
)]
pub(super) async fn get_account(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(account): ApiPath,
) -> Result<Json<AccountBody>, AppError> {
    let id = AccountId(account);
    let lookup = id.clone();
    coordinator
        .read_state(move |state| account_body(state, &lookup))
        .await?
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
