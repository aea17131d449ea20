//! The HTTP intake in process, for the tests that drive `app()` with `oneshot`: a coordinator
//! on a fresh file log in a temporary directory, with [`super::intake::CATALOG`] published and
//! whatever a test records next.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use prlx_events::event::CatalogPublished;
use prlx_events::log::LogUrl;
use prlx_events::seal::StorageKey;
use serde_json::Value;
use tower::ServiceExt;

use crate::actor::{self, CoordinatorHandle};
use crate::decide::Command;
use crate::http::app;
use crate::shell::{Coordinator, Outcome};

/// The router over a running coordinator, and the directory its log is in.
#[derive(Debug)]
pub struct InProcess {
    pub dir: tempfile::TempDir,
    /// `app()`, without the transport checks (`http::guarded` adds them).
    pub app: Router,
    pub handle: CoordinatorHandle,
}

impl InProcess {
    /// A coordinator writing as `producer` with the catalog published, then `setup`'s
    /// commands, each of which must be recorded.
    pub async fn start(producer: &str, setup: impl IntoIterator<Item = Command>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
        let mut coord = Coordinator::open(&url, producer, StorageKey::from_bytes([7; 32]))
            .await
            .unwrap();
        let catalog: CatalogPublished = serde_json::from_str(super::intake::CATALOG).unwrap();
        for command in std::iter::once(Command::PublishCatalog(catalog)).chain(setup) {
            let outcome = coord.execute(command).await.unwrap();
            assert!(matches!(outcome, Outcome::Appended(_)), "{outcome:?}");
        }
        let log = coord.writer().reader();
        let (handle, _task) = actor::spawn(coord);
        Self {
            dir,
            app: app(handle.clone(), log),
            handle,
        }
    }

    /// One exchange: the status and the body as JSON (`Null` when it is none).
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}
