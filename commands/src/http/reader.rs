//! Who may read an account's balance and requests: the account itself, or a delegate the log
//! records it delegated spending to (a request was accepted under the delegation) while that
//! delegation lives. The caller proves its key with a short-lived EIP-712 `ReadAccess` token
//! (`prlx_chain::read_access`) in `Authorization: Bearer …`.
//!
//! Missing, malformed, expired, too long-lived or unrecoverable: `401 unauthenticated`. A
//! key that may not read the account the token names, or a token for another account than
//! the one in the path: `403 unauthorized`. A request that is not the token's account's is
//! answered as one that does not exist (`404 unknown_request`), so a reader learns nothing
//! of other accounts' requests.
//!
//! Reads decide nothing, so the token's life is judged by the wall clock; the rules are pure
//! functions of the time ([`reader_of`], [`may_read`]) so tests need none.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use prlx_chain::read_access::ReadToken;
use prlx_chain::record::hex0x;
use prlx_events::AccountId;
use prlx_projections::CoordinatorState;

use crate::actor::CoordinatorHandle;
use crate::consent::ConsentDomain;
use crate::error::AppError;

/// A caller whose read-access token checked: the account it names and the key that signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reader {
    /// Lowercase 0x-hex.
    pub account: AccountId,
    /// Lowercase 0x-hex.
    pub signer: String,
    /// When it was checked (Unix seconds): delegations are judged alive at the same time.
    pub now: i64,
}

/// The field every refusal of a read names.
const FIELD: &str = "Authorization";

/// Checks an `Authorization` header's value at `now` (Unix seconds) under `domain`: a token
/// that parses, lives, and recovers to a key. One key recovery.
pub(super) fn reader_of(
    header: Option<&str>,
    domain: &ConsentDomain,
    now: i64,
) -> Result<Reader, AppError> {
    let unauthenticated = |why: String| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            Some(FIELD),
            format!(
                "{why}: reads need `Authorization: Bearer 0xACCOUNT.EXPIRES_AT.0xSIGNATURE`, the \
                 account's (or its delegate's) EIP-712 ReadAccess signature (GET /v1/consent)"
            ),
        )
    };
    let header = header.ok_or_else(|| unauthenticated("no Authorization header".into()))?;
    let token = ReadToken::from_header(header).map_err(|e| unauthenticated(e.to_string()))?;
    token
        .freshness(now)
        .map_err(|e| unauthenticated(e.to_string()))?;
    let signer = token
        .signer(&domain.eip712())
        .map_err(|e| unauthenticated(e.to_string()))?;
    Ok(Reader {
        account: AccountId(hex0x(token.account.as_slice())),
        signer: hex0x(signer.as_slice()),
        now,
    })
}

/// Whether `reader` may read its token's account in `state`: its own key, or a delegate's by
/// a delegation the log records, alive at the time the token was checked.
pub(super) fn may_read(state: &CoordinatorState, reader: &Reader) -> Result<(), AppError> {
    if reader.signer == reader.account.0
        || state.is_delegate(&reader.account, &reader.signer, reader.now)
    {
        return Ok(());
    }
    Err(AppError::new(
        StatusCode::FORBIDDEN,
        "unauthorized",
        Some(FIELD),
        format!(
            "signed by {}, which is neither account {} nor a delegate of it with a live \
             delegation a request was accepted under",
            reader.signer, reader.account
        ),
    ))
}

/// The token is for `account` (as the path names it, any case): else 403.
pub(super) fn reads_account(reader: &Reader, account: &str) -> Result<AccountId, AppError> {
    let account = account.to_ascii_lowercase();
    if reader.account.0 == account {
        return Ok(reader.account.clone());
    }
    Err(AppError::new(
        StatusCode::FORBIDDEN,
        "unauthorized",
        Some(FIELD),
        format!("the token reads account {}, not {account}", reader.account),
    ))
}

impl<S> FromRequestParts<S> for Reader
where
    S: Send + Sync,
    CoordinatorHandle: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let domain = CoordinatorHandle::from_ref(state).consent_domain();
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        reader_of(header, &domain, chrono::Utc::now().timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::accounts::{account, key};

    fn token(signer: &str, reads: &str, expires_at: u64) -> String {
        let reads: alloy::primitives::Address = account(reads).0.parse().unwrap();
        ReadToken::sign(
            &key(signer),
            reads,
            expires_at,
            &ConsentDomain::default().eip712(),
        )
        .to_header()
    }

    #[test]
    fn a_token_is_judged_by_the_time_given_and_names_its_signer() {
        let d = ConsentDomain::default();
        let t = token("ai", "ai", 1_000);
        let reader = reader_of(Some(&t), &d, 999).unwrap();
        assert_eq!(reader.account, account("ai"));
        assert_eq!(reader.signer, account("ai").0);
        assert_eq!(may_read(&CoordinatorState::default(), &reader), Ok(()));
        for (header, now) in [
            (None, 999),
            (Some(t.as_str()), 1_000),
            (Some("Bearer x"), 0),
        ] {
            let e = reader_of(header, &d, now).unwrap_err();
            assert_eq!(
                (e.status, e.field.as_deref()),
                (StatusCode::UNAUTHORIZED, Some(FIELD))
            );
        }
        // Signed for another deployment: another signer, who may not read the account.
        let elsewhere = ConsentDomain {
            chain_id: 1,
            ..ConsentDomain::default()
        };
        let reader = reader_of(Some(&t), &elsewhere, 999).unwrap();
        let e = may_read(&CoordinatorState::default(), &reader).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        // A stranger's token for the account.
        let reader = reader_of(Some(&token("stranger", "ai", 1_000)), &d, 999).unwrap();
        assert_eq!(
            may_read(&CoordinatorState::default(), &reader).map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            reads_account(&reader, &account("other").0).map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
    }
}
