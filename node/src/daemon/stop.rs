//! The shutdown request as every part of the daemon checks it.

use std::future::Future;

use tokio::sync::watch;

/// Resolves when shutdown was asked for; cheap to clone and to check.
#[derive(Debug, Clone)]
pub(super) struct StopFlag(watch::Receiver<bool>);

impl StopFlag {
    pub(super) fn new(shutdown: impl Future<Output = ()> + Send + 'static) -> StopFlag {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
            // Keep the sender: a dropped sender would read as "never".
            std::future::pending::<()>().await;
        });
        StopFlag(rx)
    }

    pub(super) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    pub(super) async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
