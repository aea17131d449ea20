//! Read access: a short-lived bearer token by which a caller proves it holds the key of an
//! account, or of a delegate of it, to read the account's balance and requests.
//!
//! The token is the EIP-712 `ReadAccess(address account, uint64 expiresAt)` typed data under
//! the same domain as submissions ([`crate::consent::domain`]) with its signature, written
//! `0xACCOUNT.EXPIRES_AT.0xSIGNATURE` and sent as `Authorization: Bearer TOKEN`. It is a
//! bearer token: whoever sees it may read what its signer may read until it expires, so it
//! lives at most [`MAX_READ_TOKEN_SECONDS`] and a client signs a fresh one as it nears its
//! end. Signing once and reusing it keeps a poller's cost to one signature per token, and the
//! coordinator's to one key recovery per request.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;

use crate::consent::{address, read_access_hash, recover, sign, ConsentError, ReadAccess};

/// The longest a token may live: the coordinator refuses one that expires further ahead of
/// its clock than this, so a token that leaks is worth an hour at most.
pub const MAX_READ_TOKEN_SECONDS: u64 = 3600;

/// The `Authorization` scheme the token is sent under.
pub const SCHEME: &str = "Bearer";

/// A signed read-access statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadToken {
    pub account: Address,
    /// Unix seconds.
    pub expires_at: u64,
    /// 65 bytes, 0x-hex.
    pub signature: String,
}

/// Why a token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadTokenError {
    #[error("expected `Bearer 0xACCOUNT.EXPIRES_AT.0xSIGNATURE` (EIP-712 ReadAccess)")]
    Format,
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: i64 },
    #[error(
        "expires at {expires_at}, more than {MAX_READ_TOKEN_SECONDS} s after now ({now}): \
         sign a shorter-lived token"
    )]
    TooLong { expires_at: u64, now: i64 },
}

impl ReadToken {
    /// `key`'s token for reading `account` until `expires_at`.
    pub fn sign(
        key: &PrivateKeySigner,
        account: Address,
        expires_at: u64,
        domain: &Eip712Domain,
    ) -> Self {
        let hash = read_access_hash(
            &ReadAccess {
                account,
                expiresAt: expires_at,
            },
            domain,
        );
        Self {
            account,
            expires_at,
            signature: sign(key, hash),
        }
    }

    /// Parses an `Authorization` header's value.
    pub fn from_header(value: &str) -> Result<Self, ReadTokenError> {
        let token = value
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(ReadTokenError::Format)?;
        let mut parts = token.trim().split('.');
        let (Some(account), Some(expires_at), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ReadTokenError::Format);
        };
        Ok(Self {
            account: address(account)?,
            expires_at: expires_at.parse().map_err(|_| ReadTokenError::Format)?,
            signature: signature.to_owned(),
        })
    }

    /// The `Authorization` header's value.
    pub fn to_header(&self) -> String {
        format!(
            "{SCHEME} {}.{}.{}",
            crate::record::hex0x(self.account.as_slice()),
            self.expires_at,
            self.signature
        )
    }

    /// Whether the token may be used at `now` (Unix seconds): not expired, and not
    /// expiring more than [`MAX_READ_TOKEN_SECONDS`] ahead.
    pub fn freshness(&self, now: i64) -> Result<(), ReadTokenError> {
        let (expires_at, now_secs) = (self.expires_at, u64::try_from(now).unwrap_or(0));
        if expires_at <= now_secs {
            return Err(ReadTokenError::Expired { expires_at, now });
        }
        if expires_at - now_secs > MAX_READ_TOKEN_SECONDS {
            return Err(ReadTokenError::TooLong { expires_at, now });
        }
        Ok(())
    }

    /// Who signed it under `domain`.
    pub fn signer(&self, domain: &Eip712Domain) -> Result<Address, ReadTokenError> {
        let hash = read_access_hash(
            &ReadAccess {
                account: self.account,
                expiresAt: self.expires_at,
            },
            domain,
        );
        Ok(recover(hash, &self.signature)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::domain;
    use crate::devchain::{dev_role, dev_signer};

    #[test]
    fn a_token_round_trips_and_recovers_its_signer_within_its_life() {
        let key = dev_signer(dev_role::CLIENT);
        let d = domain(31337, Address::repeat_byte(1));
        let token = ReadToken::sign(&key, key.address(), 1_000, &d);
        let parsed = ReadToken::from_header(&token.to_header()).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.signer(&d), Ok(key.address()));
        // Another deployment's domain: another (useless) signer.
        assert_ne!(
            parsed.signer(&domain(1, Address::repeat_byte(1))),
            Ok(key.address())
        );
        assert_eq!(parsed.freshness(999), Ok(()));
        assert!(matches!(
            parsed.freshness(1_000),
            Err(ReadTokenError::Expired { .. })
        ));
        let long = ReadToken::sign(&key, key.address(), 1_000 + MAX_READ_TOKEN_SECONDS, &d);
        assert!(matches!(
            long.freshness(999),
            Err(ReadTokenError::TooLong { .. })
        ));
        assert_eq!(long.freshness(1_000), Ok(()));
        for bad in [
            "",
            "Bearer",
            "Basic abc",
            "Bearer 0x12.1.0x00",
            "Bearer a.b.c.d",
        ] {
            assert!(ReadToken::from_header(bad).is_err(), "{bad:?}");
        }
    }
}
