//! Scheduling state and the scheduling decision, both pure.
//!
//! Four signals, in priority order:
//! 1. capability: the node serves the model, at a tier at least the request's;
//! 2. capacity: it has a free slot (a node only ever holds as many tasks as it has slots, so
//!    "queue position" is the request's place in the coordinator's queue: priority, then
//!    deadline, then arrival);
//! 3. best fit: the smallest tier that fits, so big machines stay free for big work;
//! 4. reputation: standing in basis points times the configured weight (1.0 today).
//!
//! Then more free slots, then the node id, so the choice is a total order. The decision is
//! a function of the state alone: the coordinator records it with its ranked candidates, and
//! the fold re-derives it when it applies `RequestScheduled` (an auditor replaying the log
//! gets the check for free).
//!
//! A replica (a sampled request's second or third dispatch) is the exception: it is drawn
//! under the open sampling epoch's secret seed among every eligible peer, so no node can
//! steer its way into checking a result. The fold checks that the peer was eligible when it
//! applies `RequestScheduled`, and that the seed draws it when the seed is revealed.
//!
//! Cost is sublinear in the number of nodes: nodes with a free slot are indexed by model and
//! tier in ordered sets keyed by rank, so a decision walks at most `tiers` set heads (plus the
//! nodes a retry already tried); a replica's draw lists the free peers of its model.
//!
//! # Layout
//! - `queue`: [`QueueEntry`], a request's place in its queue.
//! - `index`: the [`Scheduler`] (queues, free-capacity index, deadlines, heartbeats) and
//!   [`Choice`], a decision with its reasons.
//! - `choose`: [`choose_node`] and [`next_assignment`], the decision itself, and
//!   [`untried_capable`], whether a request can still be placed at all.
//! - `replica`: the replica draw under the sampling epoch's seed ([`replica_peers`],
//!   [`replica_index`]), which the fold re-derives at the seed's reveal.

pub(crate) mod choose;
pub(crate) mod index;
pub(crate) mod queue;
pub(crate) mod replica;

pub use self::choose::{
    any_node_serves, choose_node, next_assignment, past_registration_grace, unservable_at,
    untried_capable,
};
pub use self::index::{Choice, Scheduler, SlotKey, RANKED_REASONS};
pub use self::queue::QueueEntry;
pub use self::replica::{replica_index, replica_peers, replica_receipt, ReplicaPeer};
