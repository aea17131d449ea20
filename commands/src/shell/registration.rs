//! A node's registration checked at the door: signed by the key it registers, over a statement
//! made near the coordinator's clock (`prlx_events::crypto::registration_statement`).

use prlx_events::event::NodeRegistered;

use super::HEARTBEAT_SKEW_SECONDS;

/// Why a registration was refused at the door; nothing of it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationRefused {
    #[error("a registration is signed by the node's key (signed_at and signature)")]
    Unsigned,
    #[error("the signed time is more than 120 s from the coordinator's clock")]
    Stale,
    #[error("not a signature by the registered key over this registration")]
    BadSignature,
}

impl RegistrationRefused {
    /// The registration's field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            RegistrationRefused::Stale => "signed_at",
            RegistrationRefused::Unsigned | RegistrationRefused::BadSignature => "signature",
        }
    }
}

/// Accepts `n` if it carries a signature by the key it registers over its statement, signed
/// within [`HEARTBEAT_SKEW_SECONDS`] of `now` (the shell's clock, Unix seconds; never
/// recorded). Whoever has only seen a node's public key cannot register it, and a captured
/// registration cannot be sent again once its time is old, nor with anything changed (the
/// statement covers every parameter and the operator). Within the window, the same statement
/// again is a retry that records nothing.
pub fn check_registration(n: &NodeRegistered, now: i64) -> Result<(), RegistrationRefused> {
    let Some(at) = n.signed_at.filter(|_| n.signature.is_some()) else {
        return Err(RegistrationRefused::Unsigned);
    };
    if at.saturating_sub(now).abs() > HEARTBEAT_SKEW_SECONDS {
        return Err(RegistrationRefused::Stale);
    }
    if !prlx_events::crypto::registration_verifies(n) {
        return Err(RegistrationRefused::BadSignature);
    }
    Ok(())
}
