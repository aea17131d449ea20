//! What the coordinator's log says to this node, folded: the pure core of the daemon.
//!
//! [`Assignments`] is fed every event the node reads, in log order, and keeps only what this
//! node needs: the coordinator's signing key, the session grants addressed to this node, and
//! the dispatches addressed to this node that nothing on the log has closed yet. It does no I/O
//! and no private-key operation; the shell ([`crate::daemon`]) does those with what it returns.
//!
//! Why a dispatch is handed out only through [`Assignments::take_runnable`], and only once the
//! reader has caught up with the log: a node that restarts reads the log from offset 0 and
//! meets its old `TaskDispatched` records before the `ResultSubmitted` (or `DeadlineExpired`,
//! `DispatchRefused`, `LateResultDiscarded`, `RequestFailed`) that closed them. Handing a dispatch out as soon as
//! it is read would rerun finished work; handing out only what is still open at the end of
//! what has been read, and remembering what was handed out, runs each open `(task, attempt)`
//! at most once per process.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::crypto::{
    open_message, parse_public_key_pem, CryptoError, Direction, SessionGrant, SessionKey,
};
use prlx_events::protocol::DispatchBody;
use prlx_events::{Event, Hash32, NodeId, TaskId};
use rsa::RsaPublicKey;

/// One dispatch: a task's attempt. An attempt goes to one node, so this names a dispatch.
pub type DispatchKey = (TaskId, u32);

/// A dispatch addressed to this node, as the log recorded it (still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub task: TaskId,
    pub attempt: u32,
    /// The epoch of this node's newest session grant when the dispatch was recorded: the
    /// coordinator seals under its current session with the node. `None` when no grant had
    /// been read (the dispatch cannot be opened).
    pub epoch: Option<u64>,
    /// The work, AES-256-GCM under the session key (see [`open_dispatch`]).
    pub sealed_work: Vec<u8>,
    /// Log time after which the coordinator re-dispatches the work elsewhere.
    pub deadline_at: DateTime<Utc>,
}

impl Assigned {
    pub fn key(&self) -> DispatchKey {
        (self.task, self.attempt)
    }
}

/// A session grant for this node, with the coordinator key it must verify against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantToAccept {
    pub grant: SessionGrant,
    /// The pinned key if there is one, else the key last published on the log before the
    /// grant; `None` when neither exists (the grant cannot be checked, so it is not used).
    pub coordinator_key: Option<RsaPublicKey>,
}

/// What one event meant to this node; the shell acts on the variants that need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing for this node.
    Ignored,
    /// The coordinator's signing key was published (and matches the pin, if any).
    CoordinatorKey,
    /// A grant for this node: verify, then unwrap it (the shell holds the private key).
    Grant(GrantToAccept),
    /// A dispatch for this node; it becomes runnable through [`Assignments::take_runnable`].
    Dispatched(DispatchKey),
    /// A dispatch for this node that the log has closed.
    Closed(DispatchKey),
    /// The model catalog: model reference -> the SHA-256 nodes must serve.
    Catalog(BTreeMap<String, Hash32>),
}

/// Why the log cannot be followed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error(
        "the coordinator key published on the log does not match the pinned key \
         (--coordinator-key): this log is not from the coordinator this node trusts"
    )]
    CoordinatorKeyMismatch,
    #[error("the coordinator key published on the log is not an RSA public key: {0}")]
    BadCoordinatorKey(String),
}

/// Dispatches handed out by [`Assignments::take_runnable`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runnable {
    /// Open, not run yet in this process, deadline not passed: run these.
    pub run: Vec<Assigned>,
    /// Open and not run yet, but their deadline has passed: the coordinator re-dispatches
    /// them and would discard a result, so they are not run.
    pub past_deadline: Vec<Assigned>,
}

/// The fold of the log from this node's point of view. See the module docs.
#[derive(Debug, Clone)]
pub struct Assignments {
    node: NodeId,
    pinned: Option<RsaPublicKey>,
    coordinator_key: Option<RsaPublicKey>,
    current_epoch: Option<u64>,
    /// Dispatched to this node and not closed on the log.
    open: BTreeMap<DispatchKey, Assigned>,
    /// Handed out by `take_runnable` in this process and not closed on the log yet.
    started: BTreeSet<DispatchKey>,
}

impl Assignments {
    /// The state of a node that has read nothing. `pinned` is the coordinator key the
    /// operator configured; every key the log publishes must equal it.
    pub fn new(node: NodeId, pinned: Option<RsaPublicKey>) -> Assignments {
        Assignments {
            node,
            coordinator_key: pinned.clone(),
            pinned,
            current_epoch: None,
            open: BTreeMap::new(),
            started: BTreeSet::new(),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The epoch of the newest grant read for this node.
    pub fn current_epoch(&self) -> Option<u64> {
        self.current_epoch
    }

    /// Dispatches to this node that the log has not closed (started here or not).
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Folds one event, in log order.
    pub fn apply(&mut self, event: &Event) -> Result<Applied, FollowError> {
        let applied = match event {
            Event::CoordinatorKeyPublished(k) => {
                let key = parse_public_key_pem(&k.public_key_pem).map_err(|e| match e {
                    CryptoError::PublicKey(m) => FollowError::BadCoordinatorKey(m),
                    other => FollowError::BadCoordinatorKey(other.to_string()),
                })?;
                if self.pinned.as_ref().is_some_and(|pin| *pin != key) {
                    return Err(FollowError::CoordinatorKeyMismatch);
                }
                self.coordinator_key = Some(key);
                Applied::CoordinatorKey
            }
            Event::SessionKeyIssued(k) if k.node_id == self.node => {
                self.current_epoch = Some(self.current_epoch.map_or(k.epoch, |e| e.max(k.epoch)));
                Applied::Grant(GrantToAccept {
                    grant: SessionGrant {
                        node_id: k.node_id,
                        epoch: k.epoch,
                        wrapped_key: k.wrapped_key.0.clone(),
                        signature: k.signature.0.clone(),
                    },
                    coordinator_key: self.coordinator_key.clone(),
                })
            }
            Event::TaskDispatched(d) if d.node_id == self.node => {
                let assigned = Assigned {
                    task: d.task_id,
                    attempt: d.attempt,
                    epoch: self.current_epoch,
                    sealed_work: d.sealed_work.0.clone(),
                    deadline_at: d.deadline_at,
                };
                let key = assigned.key();
                self.open.insert(key, assigned);
                Applied::Dispatched(key)
            }
            Event::ResultSubmitted(e) => self.close((e.task_id, e.attempt)),
            Event::DeadlineExpired(e) => self.close((e.task_id, e.attempt)),
            Event::LateResultDiscarded(e) => self.close((e.task_id, e.attempt)),
            Event::DispatchRefused(e) => self.close((e.task_id, e.attempt)),
            Event::RequestFailed(f) => {
                // A failed request takes no more results, whatever attempt is open.
                let keys: Vec<DispatchKey> = self
                    .open
                    .keys()
                    .filter(|(task, _)| task.request == f.request_id)
                    .copied()
                    .collect();
                match keys.first().copied() {
                    Some(first) => {
                        for key in keys {
                            self.close(key);
                        }
                        Applied::Closed(first)
                    }
                    None => Applied::Ignored,
                }
            }
            Event::CatalogPublished(c) => Applied::Catalog(
                c.models
                    .iter()
                    .map(|m| (m.model.clone(), m.sha256))
                    .collect(),
            ),
            _ => Applied::Ignored,
        };
        Ok(applied)
    }

    fn close(&mut self, key: DispatchKey) -> Applied {
        let was_open = self.open.remove(&key).is_some();
        self.started.remove(&key);
        if was_open {
            Applied::Closed(key)
        } else {
            Applied::Ignored
        }
    }

    /// The open dispatches not handed out before, split by whether their deadline has passed
    /// at `now`; all of them count as handed out from here on. Call it only when the reader
    /// has caught up with the log (see the module docs).
    pub fn take_runnable(&mut self, now: DateTime<Utc>) -> Runnable {
        let mut out = Runnable::default();
        for (key, assigned) in &self.open {
            if !self.started.insert(*key) {
                continue;
            }
            if assigned.deadline_at <= now {
                out.past_deadline.push(assigned.clone());
            } else {
                out.run.push(assigned.clone());
            }
        }
        out
    }
}

/// Why a dispatch could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("no session grant for this node had been read when it was dispatched")]
    NoSession,
    #[error("no accepted session key for epoch {0}")]
    NoSessionKey(u64),
    #[error("the work does not open under this node's session key: {0}")]
    Seal(#[from] CryptoError),
    #[error("the opened work is not a dispatch body: {0}")]
    Body(String),
    #[error("the work names request {named}, but was dispatched as task {task}")]
    WrongRequest { named: String, task: TaskId },
}

/// Opens a dispatch with the session key of its epoch. The AAD binds task, node, attempt,
/// epoch and direction, so work sealed for another node, task or attempt does not open.
pub fn open_dispatch(
    sessions: &BTreeMap<u64, SessionKey>,
    node: NodeId,
    assigned: &Assigned,
) -> Result<DispatchBody, OpenError> {
    let epoch = assigned.epoch.ok_or(OpenError::NoSession)?;
    let session = sessions.get(&epoch).ok_or(OpenError::NoSessionKey(epoch))?;
    let plain = open_message(
        session,
        Direction::Dispatch,
        assigned.task,
        node,
        assigned.attempt,
        epoch,
        &assigned.sealed_work,
    )?;
    let body: DispatchBody =
        serde_json::from_slice(&plain).map_err(|e| OpenError::Body(e.to_string()))?;
    if body.request_id != assigned.task.request {
        return Err(OpenError::WrongRequest {
            named: body.request_id.to_string(),
            task: assigned.task,
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use prlx_events::crypto::{public_key_pem, seal_message};
    use prlx_events::event::{
        CoordinatorKeyPublished, DeadlineExpired, LateResultDiscarded, RequestFailed,
        ResultSubmitted, Sealed, SessionKeyIssued, TaskDispatched,
    };
    use prlx_events::{Hash32, RequestId};
    use rsa::rand_core::OsRng;
    use rsa::RsaPrivateKey;

    const ME: NodeId = NodeId(Hash32([1; 32]));
    const OTHER: NodeId = NodeId(Hash32([2; 32]));

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn task(n: u64) -> TaskId {
        TaskId::whole(RequestId(n))
    }

    fn dispatched(node: NodeId, request: u64, attempt: u32, deadline: i64) -> Event {
        TaskDispatched {
            task_id: task(request),
            attempt,
            node_id: node,
            sealed_work: Sealed(vec![7; 40]),
            deadline_at: at(deadline),
        }
        .into()
    }

    fn grant(node: NodeId, epoch: u64) -> Event {
        SessionKeyIssued {
            node_id: node,
            epoch,
            wrapped_key: Sealed(vec![1]),
            signature: Sealed(vec![2]),
            sealed_for_coordinator: Sealed(vec![3]),
        }
        .into()
    }

    fn submitted(node: NodeId, request: u64, attempt: u32) -> Event {
        ResultSubmitted {
            task_id: task(request),
            attempt,
            node_id: node,
            sealed_result: Sealed(vec![]),
            poe: Hash32([0; 32]),
            signature: Sealed(vec![]),
            token_count: 1,
            ciphertext_hash: None,
        }
        .into()
    }

    fn keys(r: &[Assigned]) -> Vec<DispatchKey> {
        r.iter().map(Assigned::key).collect()
    }

    fn fold(state: &mut Assignments, events: &[Event]) {
        for e in events {
            state.apply(e).unwrap();
        }
    }

    #[test]
    fn only_this_node_s_open_dispatches_run_and_each_only_once() {
        let mut s = Assignments::new(ME, None);
        fold(
            &mut s,
            &[
                grant(ME, 1),
                dispatched(ME, 1, 0, 100),
                dispatched(OTHER, 2, 0, 100),
                dispatched(ME, 3, 0, 100),
            ],
        );
        let first = s.take_runnable(at(0));
        assert_eq!(keys(&first.run), vec![(task(1), 0), (task(3), 0)]);
        assert_eq!(first.run[0].epoch, Some(1));
        // Handed out once: asking again gives nothing until something new arrives.
        assert_eq!(s.take_runnable(at(0)), Runnable::default());
        fold(&mut s, &[dispatched(ME, 4, 1, 100)]);
        assert_eq!(keys(&s.take_runnable(at(1)).run), vec![(task(4), 1)]);
    }

    #[test]
    fn a_restart_reruns_only_dispatches_the_log_has_not_closed() {
        // What a restarted node reads from offset 0, in log order.
        let log = [
            grant(ME, 1),
            dispatched(ME, 1, 0, 100), // answered
            submitted(ME, 1, 0),
            dispatched(ME, 2, 0, 100), // expired, then re-dispatched to us as attempt 1
            DeadlineExpired {
                task_id: task(2),
                attempt: 0,
                node_id: ME,
            }
            .into(),
            dispatched(ME, 2, 1, 200),
            dispatched(ME, 3, 0, 100), // a late result, discarded
            LateResultDiscarded {
                task_id: task(3),
                attempt: 0,
                node_id: ME,
            }
            .into(),
            dispatched(ME, 4, 0, 100), // the request failed
            RequestFailed {
                request_id: RequestId(4),
                reason: "x".into(),
                cause: None,
            }
            .into(),
            dispatched(ME, 5, 0, 100), // still open
        ];
        let mut s = Assignments::new(ME, None);
        fold(&mut s, &log);
        assert_eq!(s.open_count(), 2);
        assert_eq!(
            keys(&s.take_runnable(at(0)).run),
            vec![(task(2), 1), (task(5), 0)]
        );
    }

    #[test]
    fn a_dispatch_closed_after_it_started_is_forgotten() {
        let mut s = Assignments::new(ME, None);
        fold(&mut s, &[grant(ME, 1), dispatched(ME, 1, 0, 100)]);
        assert_eq!(s.take_runnable(at(0)).run.len(), 1);
        assert_eq!(
            s.apply(&submitted(ME, 1, 0)).unwrap(),
            Applied::Closed((task(1), 0))
        );
        assert_eq!(s.open_count(), 0);
        // Another node's result for its own attempt does not touch ours.
        fold(&mut s, &[dispatched(ME, 2, 1, 100)]);
        assert_eq!(s.apply(&submitted(OTHER, 2, 0)).unwrap(), Applied::Ignored);
        assert_eq!(s.open_count(), 1);
    }

    #[test]
    fn dispatches_past_their_deadline_are_not_run() {
        let mut s = Assignments::new(ME, None);
        fold(
            &mut s,
            &[
                grant(ME, 1),
                dispatched(ME, 1, 0, 10),
                dispatched(ME, 2, 0, 30),
            ],
        );
        let r = s.take_runnable(at(20));
        assert_eq!(keys(&r.run), vec![(task(2), 0)]);
        assert_eq!(keys(&r.past_deadline), vec![(task(1), 0)]);
        assert_eq!(s.take_runnable(at(20)), Runnable::default());
    }

    #[test]
    fn grants_for_other_nodes_are_ignored_and_the_newest_epoch_seals_dispatches() {
        let mut s = Assignments::new(ME, None);
        assert_eq!(s.apply(&grant(OTHER, 5)).unwrap(), Applied::Ignored);
        assert_eq!(s.current_epoch(), None);
        fold(&mut s, &[dispatched(ME, 1, 0, 100)]);
        fold(
            &mut s,
            &[grant(ME, 2), grant(ME, 1), dispatched(ME, 2, 0, 100)],
        );
        let run = s.take_runnable(at(0)).run;
        assert_eq!(run[0].epoch, None, "dispatched before any grant");
        assert_eq!(run[1].epoch, Some(2));
    }

    #[test]
    fn a_published_key_other_than_the_pinned_one_stops_the_node() {
        let pinned = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let other = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let publish = |k: &RsaPrivateKey| -> Event {
            CoordinatorKeyPublished {
                public_key_pem: public_key_pem(&k.to_public_key()),
            }
            .into()
        };
        let mut s = Assignments::new(ME, Some(pinned.to_public_key()));
        assert_eq!(s.apply(&publish(&pinned)).unwrap(), Applied::CoordinatorKey);
        assert_eq!(
            s.apply(&publish(&other)).unwrap_err(),
            FollowError::CoordinatorKeyMismatch
        );
        // Unpinned, the grant is checked against the key published before it.
        let mut s = Assignments::new(ME, None);
        fold(&mut s, &[publish(&other)]);
        let Applied::Grant(g) = s.apply(&grant(ME, 1)).unwrap() else {
            panic!("a grant for this node")
        };
        assert_eq!(g.coordinator_key, Some(other.to_public_key()));
        let bad: Event = CoordinatorKeyPublished {
            public_key_pem: "not a key".into(),
        }
        .into();
        assert!(matches!(
            s.apply(&bad),
            Err(FollowError::BadCoordinatorKey(_))
        ));
    }

    fn sealed_for(
        session: &SessionKey,
        node: NodeId,
        request: u64,
        attempt: u32,
        epoch: u64,
    ) -> Assigned {
        let body = DispatchBody {
            request_id: RequestId(request),
            model: "tiny-test-v1".into(),
            prompt: "secret prompt".into(),
            max_tokens: 8,
            subtask: None,
        };
        let sealed = seal_message(
            session,
            Direction::Dispatch,
            task(request),
            node,
            attempt,
            epoch,
            [3; 12],
            &serde_json::to_vec(&body).unwrap(),
        );
        Assigned {
            task: task(request),
            attempt,
            epoch: Some(epoch),
            sealed_work: sealed,
            deadline_at: at(100),
        }
    }

    #[test]
    fn a_node_cannot_open_a_dispatch_meant_for_another_node() {
        let mine = SessionKey::generate(&mut OsRng);
        let theirs = SessionKey::generate(&mut OsRng);
        let my_sessions = BTreeMap::from([(1, mine.clone())]);
        let their_sessions = BTreeMap::from([(1, theirs.clone())]);

        let for_me = sealed_for(&mine, ME, 9, 0, 1);
        let body = open_dispatch(&my_sessions, ME, &for_me).unwrap();
        assert_eq!(body.prompt, "secret prompt");

        let for_them = sealed_for(&theirs, OTHER, 9, 0, 1);
        // With my own session key and ids: the AAD names the other node, the key is theirs.
        assert!(matches!(
            open_dispatch(&my_sessions, ME, &for_them),
            Err(OpenError::Seal(_))
        ));
        // Even holding their session key, my node id in the AAD does not open it.
        assert!(matches!(
            open_dispatch(&their_sessions, ME, &for_them),
            Err(OpenError::Seal(_))
        ));
        // Nor with my key under their id (the key is what keeps it from me).
        assert!(matches!(
            open_dispatch(&my_sessions, OTHER, &for_them),
            Err(OpenError::Seal(_))
        ));
        // Replayed as another attempt, task or epoch: refused.
        let mut replayed = for_me.clone();
        replayed.attempt = 1;
        assert!(open_dispatch(&my_sessions, ME, &replayed).is_err());
        let mut moved = for_me.clone();
        moved.task = task(10);
        assert!(open_dispatch(&my_sessions, ME, &moved).is_err());
        let mut other_epoch = for_me.clone();
        other_epoch.epoch = Some(2);
        assert_eq!(
            open_dispatch(&my_sessions, ME, &other_epoch).unwrap_err(),
            OpenError::NoSessionKey(2)
        );
        let mut no_grant = for_me;
        no_grant.epoch = None;
        assert_eq!(
            open_dispatch(&my_sessions, ME, &no_grant).unwrap_err(),
            OpenError::NoSession
        );
    }
}
