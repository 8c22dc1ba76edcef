//! Unauthenticated control endpoint under `/_emulator/` (for the sandbox).

use std::time::Duration;

use axum::extract::{Json, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Router, response::IntoResponse};
use serde::Deserialize;

use crate::{FaultRule, Load, RequestRecord, SeedToken, Seeded, Shared, TokenState, lock};

/// Routes of the control endpoint.
pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/_emulator/tokens", post(seed).get(tokens))
        .route("/_emulator/faults", post(add_fault).delete(clear_faults))
        .route("/_emulator/latency", put(latency))
        .route("/_emulator/capacity", put(capacity))
        .route("/_emulator/load", get(load))
        .route("/_emulator/requests", get(requests))
        .route("/_emulator/events", get(events))
        .with_state(shared)
}

async fn seed(State(shared): State<Shared>, Json(spec): Json<SeedToken>) -> Json<Seeded> {
    Json(lock(&shared).seed(spec))
}

async fn tokens(State(shared): State<Shared>) -> Json<Vec<TokenState>> {
    Json(lock(&shared).tokens.iter().map(|t| t.state()).collect())
}

async fn add_fault(State(shared): State<Shared>, Json(rule): Json<FaultRule>) -> StatusCode {
    lock(&shared).add_fault(rule);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(shared): State<Shared>) -> StatusCode {
    lock(&shared).faults.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Latency {
    millis: u64,
}

async fn latency(State(shared): State<Shared>, Json(l): Json<Latency>) -> StatusCode {
    lock(&shared).latency = Duration::from_millis(l.millis);
    StatusCode::NO_CONTENT
}

async fn requests(State(shared): State<Shared>) -> Json<Vec<RequestRecord>> {
    Json(lock(&shared).requests.clone())
}

async fn events(State(shared): State<Shared>) -> impl IntoResponse {
    Json(lock(&shared).events.clone())
}

#[derive(Deserialize)]
struct Capacity {
    /// Most requests served at once; `null` lifts the limit.
    in_flight: Option<usize>,
}

async fn capacity(State(shared): State<Shared>, Json(c): Json<Capacity>) -> StatusCode {
    lock(&shared).capacity = c.in_flight;
    StatusCode::NO_CONTENT
}

async fn load(State(shared): State<Shared>) -> Json<Load> {
    let state = lock(&shared);
    Json(Load {
        peak_in_flight: state.peak_in_flight,
        shed: state.shed,
    })
}
