//! Accept loop and the per-request wrapper that applies latency, faults and the request log.
//!
//! Connections are served with hyper directly so that a lost response can be emulated:
//! the service returns an error and hyper closes the connection without answering.

use std::net::IpAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::api::{PeerIp, error_response};
use crate::{FaultKind, RequestRecord, Shared, lock};

/// Error returned to hyper to drop a connection without a response.
#[derive(Debug)]
struct LostResponse;

impl std::fmt::Display for LostResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response deliberately lost by fault injection")
    }
}

impl std::error::Error for LostResponse {}

/// Serves until `stop` turns true or its sender is gone; open connections are then aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Shared, mut stop: watch::Receiver<bool>) {
    let router = crate::api::router(shared.clone()).merge(crate::control::router(shared.clone()));
    let mut conns = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let router = router.clone();
                let ip = peer.ip();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        handle(shared.clone(), router.clone(), ip, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

fn is_control(path: &str) -> bool {
    path == "/_emulator" || path.starts_with("/_emulator/")
}

async fn run(router: Router, ip: IpAddr, mut req: Request<Incoming>) -> Response<Body> {
    req.extensions_mut().insert(PeerIp(ip));
    match router.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

async fn handle(
    shared: Shared,
    router: Router,
    ip: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, LostResponse> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    if is_control(&path) {
        return Ok(run(router, ip, req).await);
    }
    // Capacity: a request beyond what the environment serves at once is shed with a bare 429
    // (Dynatrace sends no rate headers when it sheds load). The slot is held until the answer,
    // latency included.
    let _slot = {
        let mut state = lock(&shared);
        match state.capacity {
            Some(cap) if state.in_flight >= cap => {
                state.shed += 1;
                state.requests.push(RequestRecord {
                    method,
                    path,
                    status: Some(429),
                });
                return Ok(error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests: the environment's request limit is reached",
                ));
            }
            _ => {
                state.in_flight += 1;
                state.peak_in_flight = state.peak_in_flight.max(state.in_flight);
                InFlight(shared.clone())
            }
        }
    };
    let decision = lock(&shared).decide_faults(&method, &path);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let record = |status: Option<u16>| {
        lock(&shared).requests.push(RequestRecord {
            method: method.clone(),
            path: path.clone(),
            status,
        });
    };
    match decision.action {
        Some(FaultKind::Status {
            status,
            retry_after_secs,
            retry_after_as_date,
        }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = code.canonical_reason().unwrap_or("Injected fault");
            let mut resp = error_response(code, message);
            if let Some(secs) = retry_after_secs {
                let value = if retry_after_as_date {
                    // An HTTP date has whole seconds: round up so the wait is at least `secs`.
                    let at = jiff::Timestamp::now().as_second() + secs as i64 + 1;
                    jiff::Timestamp::from_second(at)
                        .ok()
                        .and_then(|at| {
                            jiff::fmt::rfc2822::DateTimePrinter::new()
                                .timestamp_to_rfc9110_string(&at)
                                .ok()
                        })
                        .and_then(|s| HeaderValue::from_str(&s).ok())
                } else {
                    Some(HeaderValue::from(secs))
                };
                if let Some(v) = value {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            record(Some(code.as_u16()));
            Ok(resp)
        }
        Some(FaultKind::Redirect { location }) => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            record(Some(307));
            Ok(resp)
        }
        Some(FaultKind::LostResponse) => {
            // Perform the request fully (the handler's state changes happen), then drop it.
            let resp = run(router, ip, req).await;
            drop(resp);
            record(None);
            Err(LostResponse)
        }
        Some(FaultKind::Delay(_)) | None => {
            let resp = run(router, ip, req).await;
            record(Some(resp.status().as_u16()));
            Ok(resp)
        }
    }
}

/// One request counted in [`crate::model::State::in_flight`] until dropped.
struct InFlight(Shared);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}
