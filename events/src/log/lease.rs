//! Who may open a log's writer now, among several instances that could.
//!
//! - `file://`: no election. The file lock at [`LogUrl::open_writer`] already refuses a second
//!   writer, so the lease is always held ([`Lease::is_elected`] is false).
//! - `kafka://`: the members of one consumer group compete for the one partition of a lease
//!   topic (see `kafka::lease`). Holding the lease says "open the writer now"; it is not what
//!   keeps two writers apart — the transactional id's fencing is.

use std::time::Duration;

use tokio::sync::watch;

use super::{LogError, LogUrl};

/// The default session timeout of a Kafka lease: the broker's smallest by default
/// (`group.min.session.timeout.ms` = 6 s), so the longest a crashed holder keeps it.
pub const DEFAULT_LEASE_SESSION: Duration = Duration::from_secs(6);

/// A membership in the election for one log's writer.
#[derive(Debug)]
pub struct Lease {
    url: LogUrl,
    member: String,
    session: Duration,
    inner: Inner,
    held: watch::Receiver<bool>,
}

#[derive(Debug)]
enum Inner {
    /// Always held: the backend refuses a second writer by itself. (The sender is kept so
    /// that the value stays, never changing.)
    Solo(#[allow(dead_code)] watch::Sender<bool>),
    /// Out of the group after a failed rejoin; [`Lease::rejoin`] tries again.
    Left,
    /// Kept for its drop, which leaves the group.
    #[cfg(feature = "kafka")]
    Kafka(#[allow(dead_code)] super::kafka::lease::KafkaLease),
}

impl LogUrl {
    /// Joins the election for this log's writer as `member` (a name for logs). `session`
    /// bounds how long a crashed holder keeps a Kafka lease.
    pub fn join_lease(&self, member: &str, session: Duration) -> Result<Lease, LogError> {
        let (inner, held) = join(self, member, session)?;
        Ok(Lease {
            url: self.clone(),
            member: member.to_owned(),
            session,
            inner,
            held,
        })
    }
}

fn join(
    url: &LogUrl,
    member: &str,
    session: Duration,
) -> Result<(Inner, watch::Receiver<bool>), LogError> {
    let _ = (member, session);
    match url {
        LogUrl::File { .. } => {
            let (tx, rx) = watch::channel(true);
            Ok((Inner::Solo(tx), rx))
        }
        #[cfg(feature = "kafka")]
        LogUrl::Kafka {
            bootstrap,
            topic,
            options,
        } => {
            let lease = super::kafka::lease::KafkaLease::join(
                bootstrap,
                topic,
                options.clone(),
                member,
                session,
            )?;
            let held = lease.held();
            Ok((Inner::Kafka(lease), held))
        }
        #[cfg(not(feature = "kafka"))]
        LogUrl::Kafka { .. } => Err(super::KAFKA_NOT_COMPILED_IN),
    }
}

impl Lease {
    /// Whether the lease comes from an election (Kafka), or is always held (file log).
    pub fn is_elected(&self) -> bool {
        !matches!(self.inner, Inner::Solo(_))
    }

    /// Whether this member holds the lease now.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Whether this member holds the lease, as a value that changes (`false` for good once
    /// the membership ends).
    pub fn holder(&self) -> watch::Receiver<bool> {
        self.held.clone()
    }

    /// Resolves once this member holds the lease (at once if it does).
    pub async fn acquired(&mut self) -> Result<(), LogError> {
        self.held
            .wait_for(|held| *held)
            .await
            .map(drop)
            .map_err(|_| LogError::Closed)
    }

    /// Resolves once this member no longer holds the lease (never, for a file log).
    pub async fn lost(&mut self) {
        if self.held.wait_for(|held| !*held).await.is_err() {
            std::future::pending::<()>().await
        }
    }

    /// Leaves the group and joins it again: the lease goes to another member if there is
    /// one. For a holder that had to step down while still holding the lease, so that it
    /// does not at once fence whoever fenced it.
    pub fn rejoin(&mut self) -> Result<(), LogError> {
        if !self.is_elected() {
            return Ok(());
        }
        // The old membership must be gone (the group rebalanced without us) before the new
        // one joins, else the group may hand the lease straight back.
        drop(std::mem::replace(&mut self.inner, Inner::Left));
        // Not held while out of the group (a closed channel: `acquired` fails at once).
        self.held = watch::channel(false).1;
        let (inner, held) = join(&self.url, &self.member, self.session)?;
        self.inner = inner;
        self.held = held;
        Ok(())
    }
}
