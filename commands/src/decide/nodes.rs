//! Node decisions: registration, heartbeats, lapses, the coordinator's key and session grants.

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Event, NodeId};
use prlx_projections::coordinator::heartbeat::heartbeat_time_problem;
use prlx_projections::coordinator::NodeView;
use prlx_projections::CoordinatorState;

use crate::decide::command::SignedHeartbeat;
use crate::decide::limits;
use crate::decide::rejection::{internal, Rejection};

pub(super) fn register(
    state: &CoordinatorState,
    n: NodeRegistered,
) -> Result<Vec<Event>, Rejection> {
    limits::within(
        "public_key_pem",
        &n.public_key_pem,
        limits::MAX_KEY_PEM_BYTES,
    )?;
    if n.models.len() > limits::MAX_MODELS_PER_NODE {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("models"),
            format!(
                "names {} models; at most {} are taken",
                n.models.len(),
                limits::MAX_MODELS_PER_NODE
            ),
        ));
    }
    for (i, m) in n.models.iter().enumerate() {
        limits::within(&format!("models[{i}]"), m, limits::MAX_NAME_BYTES)?;
    }
    let class = &n.execution_class;
    limits::within(
        "execution_class.device",
        &class.device,
        limits::MAX_NAME_BYTES,
    )?;
    limits::within(
        "execution_class.driver",
        &class.driver,
        limits::MAX_NAME_BYTES,
    )?;
    limits::within(
        "execution_class.runtime",
        &class.runtime,
        limits::MAX_NAME_BYTES,
    )?;
    // The class as recorded: normal form, so a retry that differs only in case is the same.
    let n = super::class::normalise_registration(state, n)?;
    // The id is the key's fingerprint: a registration cannot claim another node's id,
    // and every node on the log has a key that session grants can be wrapped to.
    match prlx_events::crypto::parse_public_key_pem(&n.public_key_pem) {
        Ok(key) if prlx_events::crypto::node_id_of(&key) == n.node_id => {}
        Ok(_) => {
            return Err(Rejection::new(
                RejectionCode::MalformedRequest,
                Some("node_id"),
                "is not the SHA-256 of the public key's SPKI DER",
            ))
        }
        Err(e) => {
            return Err(Rejection::new(
                RejectionCode::MalformedRequest,
                Some("public_key_pem"),
                format!("must be an RSA public key in PEM (SPKI): {e}"),
            ))
        }
    }
    // Any door's registration that carries a statement is checked here too, so a forged one
    // never reaches the log whoever passes it on; the HTTP door refuses an unsigned one.
    if n.signature.is_some() && !prlx_events::crypto::registration_verifies(&n) {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("signature"),
            "not a signature by the registered key over this registration (prlx/registration/v1)",
        ));
    }
    if let Some(existing) = state.nodes.get(&n.node_id) {
        // Registering again with the same facts is a retry; with other facts a conflict.
        let same = existing.hardware_tier == n.hardware_tier
            && existing.operator == n.operator
            && existing.slots == n.slots
            && existing.execution_class == n.execution_class
            && existing.model_hashes == n.model_hashes
            && existing
                .models
                .iter()
                .eq(n.models.iter().collect::<std::collections::BTreeSet<_>>());
        return if same {
            Ok(vec![])
        } else {
            Err(Rejection::new(
                RejectionCode::NodeAlreadyRegistered,
                Some("public_key_pem"),
                format!("{} is registered with other parameters", n.node_id),
            ))
        };
    }
    if n.slots == 0 {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("slots"),
            "must be at least 1",
        ));
    }
    if n.models.is_empty() {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("models"),
            "must name a model",
        ));
    }
    if let Some(max) = state.catalog.as_ref().map(|c| c.max_tier) {
        if n.hardware_tier == 0 || n.hardware_tier > max {
            return Err(Rejection::new(
                RejectionCode::TierOutOfRange,
                Some("hardware_tier"),
                format!("must be 1..={max}"),
            ));
        }
    }
    if let Some((field, reason)) = catalog_problem(state, &n) {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some(&field),
            reason,
        ));
    }
    Ok(vec![Event::NodeRegistered(n)])
}

/// Why the models `n` names may not be served as it says, as (field, reason), once a catalog
/// is published: each must be a catalog model, with the catalog's file reported for it, so a
/// node cannot join (and heartbeat for uptime) serving a model nobody asks for. A reported
/// hash that differs is [`prlx_projections::validation::model_hash_problem`]'s, checked
/// before.
fn catalog_problem(state: &CoordinatorState, n: &NodeRegistered) -> Option<(String, String)> {
    state.catalog.as_ref()?;
    n.models.iter().enumerate().find_map(|(i, name)| {
        let Some(m) = state.catalog_model(name) else {
            return Some((
                format!("models[{i}]"),
                format!("{name} is not a model of the catalog"),
            ));
        };
        (!n.model_hashes.contains_key(name)).then(|| {
            (
                format!("model_hashes.{name}"),
                format!(
                    "must be reported: the catalog's file for {name} is {}",
                    m.sha256
                ),
            )
        })
    })
}

pub(super) fn heartbeat(
    state: &CoordinatorState,
    node_id: NodeId,
    signed: SignedHeartbeat,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let node = known_node(state, node_id)?;
    // The fold refuses what it cannot follow; say so here, naming the field, instead.
    if let Some(problem) = heartbeat_time_problem(node, signed.at, now) {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("at"),
            problem,
        ));
    }
    Ok(vec![NodeHeartbeat {
        node_id,
        at: Some(signed.at),
        signature: Some(Sealed(signed.signature)),
    }
    .into()])
}

pub(super) fn drain(state: &CoordinatorState, node_id: NodeId) -> Result<Vec<Event>, Rejection> {
    let node = known_node(state, node_id)?;
    if node.draining {
        return Ok(vec![]);
    }
    Ok(vec![NodeDrained { node_id }.into()])
}

pub(super) fn lapse(
    state: &CoordinatorState,
    node_id: NodeId,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let node = known_node(state, node_id)?;
    if node.lapsed {
        return Ok(vec![]);
    }
    if now < node.last_heartbeat + state.node_timeout() {
        return Err(internal(
            "now",
            format!(
                "{node_id} heartbeated at {}, within the timeout",
                node.last_heartbeat
            ),
        ));
    }
    Ok(vec![NodeLapsed {
        node_id,
        last_heartbeat: node.last_heartbeat,
    }
    .into()])
}

pub(super) fn publish_coordinator_key(
    state: &CoordinatorState,
    public_key_pem: String,
) -> Result<Vec<Event>, Rejection> {
    if state.coordinator_key.as_deref() == Some(public_key_pem.as_str()) {
        return Ok(vec![]);
    }
    Ok(vec![CoordinatorKeyPublished { public_key_pem }.into()])
}

pub(super) fn issue_session(
    state: &CoordinatorState,
    k: SessionKeyIssued,
) -> Result<Vec<Event>, Rejection> {
    let node = known_node(state, k.node_id)?;
    if node
        .session
        .as_ref()
        .is_some_and(|(epoch, _)| *epoch >= k.epoch)
    {
        return Ok(vec![]);
    }
    Ok(vec![Event::SessionKeyIssued(k)])
}

/// The node, or the rejection that names `node_id` as not registered.
fn known_node(state: &CoordinatorState, node_id: NodeId) -> Result<&NodeView, Rejection> {
    state.nodes.get(&node_id).ok_or_else(|| {
        Rejection::new(
            RejectionCode::UnknownNode,
            Some("node_id"),
            format!("{node_id} is not registered"),
        )
    })
}
