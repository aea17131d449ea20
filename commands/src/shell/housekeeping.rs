//! What the shell owes the log after a change, at time `now`: the coordinator's key, session
//! grants for new nodes, sampling epochs, expired deadlines, lapsed nodes, requests past the
//! queue's admission bound, results held past the wait for a replica, and dispatches.

use std::collections::{BTreeMap, BTreeSet};

use prlx_events::event::Sealed;
use prlx_events::Hash32;
use rand::RngCore;

use chrono::{DateTime, Utc};
use prlx_events::crypto::{
    grant_session_signed_by, seal_message, seal_to_public_key, Direction, SessionKey,
};
use prlx_events::event::SessionKeyIssued;
use prlx_events::protocol::{DispatchBody, SubtaskWork};
use prlx_events::signer::Signer;
use prlx_events::{NodeId, RequestId, TaskId};
use prlx_projections::scheduler::{
    any_node_serves, next_assignment, past_registration_grace, Choice,
};
use prlx_projections::validation::unconfirmed_hold;

use crate::decide::{Command, Dispatch};

use super::reports::result_aad;
use super::{Coordinator, ShellError, SESSION_EPOCH};
use crate::encoder::AppendFuture;

impl Coordinator {
    /// The earliest time the timer service has something to do: a running dispatch's
    /// deadline, a queued request's admission bound, or a held result's hold.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let state = &self.fold.state;
        let dispatch = state.sched.deadlines.first().map(|(at, _)| *at);
        let queue = state
            .sched
            .waiting
            .first()
            .map(|(accepted, _)| *accepted + state.queue_timeout());
        // A result held for a replica, once the catalog's hold has passed.
        let held = state
            .sched
            .replicas
            .first()
            .zip(unconfirmed_hold(&state.validation_policy()))
            .map(|((since, _), hold)| *since + hold);
        dispatch.into_iter().chain(queue).chain(held).min()
    }

    /// Everything the shell owes the log after a change, at time `now`: the coordinator's key,
    /// session grants for new nodes, expiries of passed deadlines, then dispatches until no
    /// waiting request has a free capable node. Each is one command through `decide`, so each
    /// decision sees the state the previous one left.
    pub async fn housekeeping(&mut self, now: DateTime<Utc>) -> Result<(), ShellError> {
        for durable in self.stage_housekeeping(now)? {
            let range = durable.await?;
            self.durable_through(&range);
        }
        Ok(())
    }

    /// [`Coordinator::housekeeping`] without waiting: the commands are decided and applied,
    /// and their appends are in flight, in order.
    pub fn stage_housekeeping(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppendFuture>, ShellError> {
        self.snapshot_tick();
        let mut pending = Vec::new();
        let mut stage = |this: &mut Self, command| -> Result<(), ShellError> {
            if let Some(durable) = this.stage(command)?.durable {
                pending.push(durable);
            }
            Ok(())
        };
        // Cloned out of `self` (an `Arc`: cheap) so that staging may borrow `self` mutably.
        let Some(signing) = self.signing_key.clone() else {
            return Ok(pending);
        };
        if self.fold.state.coordinator_key.as_deref() != self.signing_pem.as_deref() {
            let pem = self.signing_pem.clone().expect("set with the key");
            stage(
                self,
                Command::PublishCoordinatorKey {
                    public_key_pem: pem,
                },
            )?;
        }
        // Sampling epochs: reveal the seed of one that ended, open the next.
        let ended = match &self.fold.state.sampling.current {
            Some(open) if now >= open.ends_at => Some(open.epoch),
            Some(_) => None,
            None => Some(0),
        };
        if let Some(epoch) = ended {
            if epoch > 0 {
                let seed = self.sampling_seed()?.expect("an epoch is open");
                stage(self, Command::RevealSamplingSeed { epoch, seed })?;
            }
            let mut seed = [0u8; 32];
            rsa::rand_core::OsRng.fill_bytes(&mut seed);
            let seed = Hash32(seed);
            let next = self.fold.state.sampling.last_epoch + 1;
            let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
            rsa::rand_core::OsRng.fill_bytes(&mut nonce);
            let sealed_seed = self.key.seal(nonce, &seed_aad(next), &seed.0);
            stage(
                self,
                Command::CommitSamplingSeed {
                    epoch: next,
                    seed_hash: Hash32::of(&seed.0),
                    sealed_seed,
                },
            )?;
            self.seed = Some((next, seed));
        }
        if self.grants_pending {
            self.grants_pending = false;
            let needing: Vec<(NodeId, String)> = self
                .fold
                .state
                .nodes
                .iter()
                .filter(|(_, n)| n.session.is_none() && n.in_pool)
                .map(|(id, n)| (*id, n.public_key_pem.clone()))
                .collect();
            for (node, pem) in needing {
                match self.grant(&signing, node, &pem) {
                    Some(command) => stage(self, command)?,
                    // A registration from before keys were checked at intake (a 512-bit key,
                    // say): the node can never get a session, so it drains rather than rank
                    // first for work it cannot be sent (docs/protocol.md, step 1).
                    None => {
                        tracing::warn!(%node, "the registered key does not parse: draining the node");
                        stage(self, Command::DrainNode { node_id: node })?;
                    }
                }
            }
        }
        let state = &self.fold.state;
        let silent = past_due(&state.sched.heartbeats, state.node_timeout(), now);
        for node_id in silent {
            stage(self, Command::LapseNode { node_id, now })?;
        }
        let due: Vec<(DateTime<Utc>, RequestId)> = self
            .fold
            .state
            .sched
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .copied()
            .collect();
        for (_, request) in due {
            let Some(a) = self.fold.state.requests[&request].running.clone() else {
                continue;
            };
            let release = self.release_for_client(request);
            stage(
                self,
                Command::ExpireDeadline {
                    request,
                    node: a.node,
                    attempt: a.attempt,
                    now,
                    release,
                },
            )?;
        }
        // After the expiries, so a request they re-queued past its bound fails before it
        // could be dispatched again.
        let state = &self.fold.state;
        let stale = past_due(&state.sched.waiting, state.queue_timeout(), now);
        for request in stale {
            stage(self, Command::ExpireQueued { request, now })?;
        }
        for request in self.unservable(now) {
            stage(self, Command::ExpireQueued { request, now })?;
        }
        // Sampled results that waited out the hold for a replica go out unconfirmed.
        let state = &self.fold.state;
        if let Some(hold) = unconfirmed_hold(&state.validation_policy()) {
            for request in past_due(&state.sched.replicas, hold, now) {
                let release = self.release_for_client(request);
                let command = Command::ReleaseUnconfirmed {
                    request,
                    now,
                    release,
                };
                stage(self, command)?;
            }
        }
        for command in crate::settle::due_settlements(&self.fold.state, now) {
            stage(self, Command::Settlement(command))?;
        }
        // The general path: dependent sub-tasks whose deps returned, tasks whose sub-tasks
        // all did. Before dispatch, so a released sub-task goes out in this round.
        for command in self.general_path_commands()? {
            stage(self, command)?;
        }
        // Replicas are drawn under the open epoch's seed (docs/validation.md).
        let seed = self.sampling_seed()?;
        while let Some(choice) = next_assignment(&self.fold.state, seed.as_ref()) {
            let Some(sealed_work) = self.seal_dispatch(&choice)? else {
                // No session to seal the work with, and none to come: the node drains and the
                // work goes to the next choice, instead of every request waiting behind it.
                tracing::warn!(node = %choice.node, "no session key for the chosen node: draining it");
                stage(
                    self,
                    Command::DrainNode {
                        node_id: choice.node,
                    },
                )?;
                if self.fold.state.nodes[&choice.node].draining {
                    continue;
                }
                break;
            };
            stage(
                self,
                Command::Dispatch(Box::new(Dispatch {
                    choice,
                    sealed_work,
                    now,
                    seed,
                })),
            )?;
        }
        Ok(pending)
    }

    /// Waiting requests that no registered node serves and that gave nodes the catalog's
    /// `node_timeout_seconds` to register: they fail now rather than at the queue bound. The
    /// walk covers every request waiting that long, so it runs at most once a second.
    fn unservable(&mut self, now: DateTime<Utc>) -> Vec<RequestId> {
        if self
            .unservable_scan
            .is_some_and(|last| now < last + chrono::Duration::seconds(1))
        {
            return Vec::new();
        }
        self.unservable_scan = Some(now);
        let state = &self.fold.state;
        // `unservable_at` split in two: the walk over the nodes once per model and tier.
        let mut served: BTreeMap<(&str, u8), bool> = BTreeMap::new();
        past_due(&state.sched.waiting, state.node_timeout(), now)
            .into_iter()
            .filter(|id| {
                let req = &state.requests[id];
                past_registration_grace(state, req, now)
                    && !*served
                        .entry((req.model.as_str(), req.hardware_tier))
                        .or_insert_with(|| any_node_serves(state, &req.model, req.hardware_tier))
            })
            .collect()
    }

    /// The open sampling epoch's seed, opened from its `SamplingSeedCommitted` on first use
    /// (after a restart); `None` when no epoch is open.
    pub(super) fn sampling_seed(&mut self) -> Result<Option<Hash32>, ShellError> {
        let Some(open) = &self.fold.state.sampling.current else {
            return Ok(None);
        };
        if let Some((epoch, seed)) = self.seed {
            if epoch == open.epoch {
                return Ok(Some(seed));
            }
        }
        let epoch = open.epoch;
        let opened = open
            .sealed_seed
            .as_ref()
            .and_then(|sealed| self.key.open(&seed_aad(epoch), sealed).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Hash32)
            .filter(|seed| Hash32::of(&seed.0) == open.seed_hash)
            .ok_or_else(|| ShellError::Key {
                path: "storage key".into(),
                reason: format!(
                    "the seed of sampling epoch {epoch} does not open with this storage key"
                ),
            })?;
        self.seed = Some((epoch, opened));
        Ok(Some(opened))
    }

    /// The request's one verified result, sealed to its client, for a command that may
    /// release it unconfirmed. `None` unless exactly one verified result is held.
    pub(super) fn release_for_client(&self, request: RequestId) -> Option<Sealed> {
        let req = self.fold.state.requests.get(&request)?;
        let [only] = req.results.as_slice() else {
            return None;
        };
        let task = TaskId::whole(request);
        let result = self
            .key
            .open(&result_aad(task, only.attempt), &only.sealed_result)
            .ok()?;
        let client = prlx_events::crypto::parse_public_key_pem(&req.client_pubkey).ok()?;
        Some(Sealed(seal_to_public_key(
            &client,
            &request.0.to_be_bytes(),
            &result,
            &mut rsa::rand_core::OsRng,
        )))
    }

    /// Marks that a node may need a session grant (after a registration).
    pub fn note_registration(&mut self) {
        self.grants_pending = true;
    }

    /// A session grant for `node`, as the command that records it; the key is cached.
    fn grant(&mut self, signing: &Signer, node: NodeId, pem: &str) -> Option<Command> {
        let Ok(node_key) = prlx_events::crypto::parse_public_key_pem(pem) else {
            // Registration checks the key; a node whose key does not parse gets no work.
            return None;
        };
        let mut rng = rsa::rand_core::OsRng;
        let session = SessionKey::generate(&mut rng);
        let grant =
            grant_session_signed_by(&node_key, SESSION_EPOCH, &session, &mut rng, |s, _| {
                signing.sign(s, &aws_lc_rs::rand::SystemRandom::new())
            });
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed = self.key.seal(
            nonce,
            &session_aad(node, SESSION_EPOCH),
            session.expose_bytes(),
        );
        self.sessions.insert(node, (SESSION_EPOCH, session));
        Some(Command::IssueSession(Box::new(SessionKeyIssued {
            node_id: node,
            epoch: SESSION_EPOCH,
            wrapped_key: Sealed(grant.wrapped_key),
            signature: Sealed(grant.signature),
            sealed_for_coordinator: sealed,
        })))
    }

    /// The session key of `node`, opened from the log on first use.
    pub(super) fn session(&mut self, node: NodeId) -> Option<(u64, SessionKey)> {
        if let Some(s) = self.sessions.get(&node) {
            return Some(s.clone());
        }
        let (epoch, sealed) = self.fold.state.nodes.get(&node)?.session.clone()?;
        let bytes = self.key.open(&session_aad(node, epoch), &sealed).ok()?;
        let key = SessionKey::from_bytes(bytes.try_into().ok()?);
        self.sessions.insert(node, (epoch, key.clone()));
        Some((epoch, key))
    }

    /// The work for `choice`, sealed to its node; `None` when the node has no session yet.
    fn seal_dispatch(&mut self, choice: &Choice) -> Result<Option<Sealed>, ShellError> {
        let Some((epoch, session)) = self.session(choice.node) else {
            return Ok(None);
        };
        let req = &self.fold.state.requests[&choice.request];
        let prompt = self
            .open_payload(&req.payload_hash, &req.sealed_payload)
            .map_err(|e| ShellError::Key {
                path: "storage key".into(),
                reason: format!("payload of {} does not open: {e}", choice.request),
            })?;
        let body = match &req.subtask_of {
            // A general-path sub-task: its kind and input bytes, run by the node's built-in
            // workload library.
            Some(of) => DispatchBody {
                request_id: choice.request,
                model: req.model.clone(),
                prompt: String::new(),
                max_tokens: req.max_tokens,
                subtask: Some(SubtaskWork {
                    kind: of.kind.clone(),
                    input: prompt,
                }),
            },
            None => DispatchBody {
                request_id: choice.request,
                model: req.model.clone(),
                prompt: String::from_utf8_lossy(&prompt).into_owned(),
                max_tokens: req.max_tokens,
                subtask: None,
            },
        };
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let task = TaskId::whole(choice.request);
        let json = serde_json::to_vec(&body).expect("plain data");
        Ok(Some(Sealed(seal_message(
            &session,
            Direction::Dispatch,
            task,
            choice.node,
            choice.attempt,
            epoch,
            nonce,
            &json,
        ))))
    }
}

/// The ids in a timer index of `(since, id)` whose `since + after` has passed at `now`, in
/// index order.
fn past_due<T: Copy>(
    index: &BTreeSet<(DateTime<Utc>, T)>,
    after: chrono::Duration,
    now: DateTime<Utc>,
) -> Vec<T> {
    index
        .iter()
        .take_while(|(since, _)| *since + after <= now)
        .map(|(_, id)| *id)
        .collect()
}

fn session_aad(node: NodeId, epoch: u64) -> Vec<u8> {
    let mut aad = b"prlx/session/v1/".to_vec();
    aad.extend_from_slice(&node.to_bytes());
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

fn seed_aad(epoch: u64) -> Vec<u8> {
    let mut aad = b"prlx/sampling-seed/v1/".to_vec();
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}
