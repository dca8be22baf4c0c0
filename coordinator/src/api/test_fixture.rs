//! The set-up shared by the router tests (`*_tests.rs`): a fresh database on the test
//! binary's private PostgreSQL (store::testing), the shipped catalog, one user of each
//! role, a scheduler with no agent (runs stay queued; the dashboard's time out quickly),
//! and the whole router as `coordinator serve` builds it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use salvo::Service;
use salvo::test::{RequestBuilder, ResponseExt, TestClient};
use serde_json::Value;

use super::*;
use crate::link::{Dispatch, DispatchError};
use crate::store::catalog::shipped;
use crate::store::testing::fresh_store;

pub(super) const BASE: &str = "http://127.0.0.1:5800";

/// Takes every job and runs none of them.
pub(super) struct NoAgents;

impl Dispatch for NoAgents {
    fn dispatch(&self, _agent_id: &str, _job: protocol::Job) -> Result<(), DispatchError> {
        Ok(())
    }
}

/// What a test may change about the router.
pub(super) struct Setup {
    pub options: ApiOptions,
    pub caps: ApiLimits,
    pub dashboard: DashboardLimits,
    /// Seed the shipped catalog (24 algorithms).
    pub catalog: bool,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            options: ApiOptions::default(),
            caps: ApiLimits::default(),
            // No agent will ever take a run: a short wait makes the time-out path quick.
            dashboard: DashboardLimits { wait: Duration::from_millis(300), ..DashboardLimits::default() },
            catalog: true,
        }
    }
}

pub(super) struct Fixture {
    pub service: Service,
    pub store: Store,
    pub scheduler: Scheduler,
    pub metrics: crate::metrics::Metrics,
    /// The projection stream the dashboard's runs are keyed by.
    pub epoch: i64,
    /// Tokens of an admin (root) and a setter (sam); id and token of two users (uma, olaf).
    pub admin: String,
    pub setter: String,
    pub user: (i64, String),
    pub other: (i64, String),
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Fixture {
        let store = fresh_store().await;
        if setup.catalog {
            store.seed_catalog(&shipped::all().unwrap()).await.unwrap();
        }
        let (_, admin) = store.create_user_with_token("root", Role::Admin).await.unwrap();
        let (_, setter) = store.create_user_with_token("sam", Role::Setter).await.unwrap();
        let user = store.create_user_with_token("uma", Role::User).await.unwrap();
        let other = store.create_user_with_token("olaf", Role::User).await.unwrap();
        let metrics = crate::metrics::Metrics::new(&["python".to_string()]).unwrap();
        let scheduler =
            Scheduler::with_metrics(Arc::new(NoAgents), Default::default(), crate::scheduler::system_clock(), metrics.clone());
        let spec = Arc::new(Spec::builtin().unwrap());
        let epoch = store.new_epoch().await.unwrap();
        let runner = crate::runner::Runner::new(scheduler.clone());
        let options = ApiOptions {
            dashboard: Some(DashboardSetup { runner, epoch, limits: setup.dashboard }),
            ..setup.options
        };
        let router =
            router_with_options(scheduler.clone(), spec, setup.caps, Judge0Config::default(), Some(store.clone()), options);
        Fixture { service: Service::new(router), store, scheduler, metrics, epoch, admin, setter, user, other }
    }

    /// Sends `req` with `token` as a Bearer credential (none: anonymous).
    pub async fn send(&self, req: RequestBuilder, token: Option<&str>) -> (u16, Value) {
        send(&self.service, req, token).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(TestClient::get(format!("{BASE}{path}")), token).await
    }

    /// POSTs `body` as JSON, as given (it may be malformed on purpose).
    pub async fn post(&self, path: &str, body: impl Into<String>, token: Option<&str>) -> (u16, Value) {
        self.send(TestClient::post(format!("{BASE}{path}")).raw_json(body), token).await
    }
}

/// Sends `req` to `service` with `token` as a Bearer credential; the status and JSON body.
pub(super) async fn send(service: &Service, req: RequestBuilder, token: Option<&str>) -> (u16, Value) {
    let req = match token {
        Some(t) => req.add_header("authorization", format!("Bearer {t}"), true),
        None => req,
    };
    let mut res = req.send(service).await;
    let status = res.status_code.unwrap().as_u16();
    let body: Value = res.take_json().await.unwrap();
    (status, body)
}

/// Asserts the status and error code, and that the message mentions `mentions`.
#[track_caller]
pub(super) fn assert_error((status, body): &(u16, Value), want: u16, code: &str, mentions: &str) {
    assert_eq!(*status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(mentions), "{message:?} should mention {mentions:?}");
}
