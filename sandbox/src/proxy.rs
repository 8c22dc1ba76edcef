//! [`FaultProxy`]: a loopback HTTP/1 reverse proxy that records every call and injects faults,
//! to fault the AWS (moto) and Vault (OpenBao) sides the way the Dynatrace emulator faults its
//! own API.
//!
//! Each request is matched against the rules in insertion order; a rule counts every request
//! it matches, lets the first `skip` through and fires on the next `times`. The first firing
//! rule decides what happens:
//!
//! - [`ProxyFault::Status`]: answer the status without forwarding, with a JSON body: for an
//!   AWS request (it carries `X-Amz-Target`) `{"__type":"InternalFailure"|"ThrottlingException",
//!   "message":"injected"}` (`ThrottlingException` for 400 and 429, since AWS throttles with
//!   `400 ThrottlingException`), else Vault's `{"errors":["injected"]}`;
//! - [`ProxyFault::LostResponse`]: forward (the upstream performs the request), then close the
//!   connection without answering;
//! - [`ProxyFault::Refuse`]: close the connection without forwarding (a refused or reset
//!   connection, as the client sees it);
//! - [`ProxyFault::Delay`]: wait, then forward. The forward runs in its own task, so it
//!   happens even when the client gave up meanwhile, like a slow server would. Held past the
//!   client's request timeout on a write, this is the *delayed write*: the client sees a
//!   timeout, reads back the old state, and the write lands afterwards;
//! - [`ProxyFault::ForwardThenStatus`]: forward (the upstream performs the request), then
//!   answer the status instead of the upstream's answer: a write that took effect although
//!   the server said 5xx.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a firing [`ProxyRule`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// Answer this status with an error body, without forwarding.
    Status(u16),
    /// Forward, then drop the connection without answering.
    LostResponse,
    /// Drop the connection without forwarding.
    Refuse,
    /// Wait, then forward.
    Delay(Duration),
    /// Forward, then answer this status with an error body instead of the real answer.
    ForwardThenStatus(u16),
}

/// A programmable fault of a [`FaultProxy`]: matches on method, path and `X-Amz-Target`
/// (each `None` = any) and fires on matching requests number `skip+1 ..= skip+times`.
#[derive(Debug, Clone)]
pub struct ProxyRule {
    /// HTTP method (case-insensitive), `None` = any.
    pub method: Option<String>,
    /// Path prefix (query string excluded), `None` = any.
    pub path_prefix: Option<String>,
    /// When true, `path_prefix` must match the whole path.
    pub path_exact: bool,
    /// `X-Amz-Target` header, e.g. `secretsmanager.PutSecretValue`; `None` = any.
    pub target: Option<String>,
    /// Matching requests let through first.
    pub skip: u32,
    /// Matching requests the rule fires on after `skip` (default: unlimited).
    pub times: u32,
    /// What to do.
    pub kind: ProxyFault,
    seen: u32,
}

impl ProxyRule {
    /// A rule firing `kind` on every request.
    pub fn new(kind: ProxyFault) -> Self {
        Self {
            method: None,
            path_prefix: None,
            path_exact: false,
            target: None,
            skip: 0,
            times: u32::MAX,
            kind,
            seen: 0,
        }
    }

    /// Only requests with this method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only paths starting with `prefix`.
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_owned());
        self.path_exact = false;
        self
    }

    /// Only exactly this path.
    pub fn path(mut self, path: &str) -> Self {
        self.path_prefix = Some(path.to_owned());
        self.path_exact = true;
        self
    }

    /// Only requests whose `X-Amz-Target` is `target`.
    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(target.to_owned());
        self
    }

    /// Lets the first `n` matching requests through.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Fires on `n` matching requests (after the skipped ones).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    fn matches(&self, call: &ProxyCall) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&call.method))
            && self.path_prefix.as_deref().is_none_or(|p| {
                if self.path_exact {
                    call.path == p
                } else {
                    call.path.starts_with(p)
                }
            })
            && self
                .target
                .as_deref()
                .is_none_or(|t| call.target.as_deref() == Some(t))
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyCall {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The `X-Amz-Target` header (AWS JSON APIs), else `None`.
    pub target: Option<String>,
}

#[derive(Default)]
struct State {
    rules: Vec<ProxyRule>,
    calls: Vec<ProxyCall>,
    fired: usize,
}

/// A recording, fault-injecting reverse proxy on a free loopback port. It stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (a base URL such as `http://127.0.0.1:5000`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        handle(req, state.clone(), client.clone(), upstream.clone())
                    });
                    // An error here is a deliberately dropped connection or a client gone.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy { addr, state, task }
    }

    /// Base URL of the proxy, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule (after the existing ones).
    pub fn add_rule(&self, rule: ProxyRule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// How many requests a rule fired on so far (across [`FaultProxy::clear`]).
    pub fn fired(&self) -> usize {
        self.lock().fired
    }

    /// Every request received so far, in arrival order (faulted ones included).
    pub fn calls(&self) -> Vec<ProxyCall> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A deliberately dropped connection (hyper closes it without a response).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    upstream: Arc<str>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let call = ProxyCall {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        target: req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let fault = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.calls.push(call.clone());
        let mut fault = None;
        for rule in st.rules.iter_mut().filter(|r| r.matches(&call)) {
            rule.seen += 1;
            let fires = rule.seen > rule.skip && rule.seen - rule.skip <= rule.times;
            if fires && fault.is_none() {
                fault = Some(rule.kind);
            }
        }
        st.fired += usize::from(fault.is_some());
        fault
    };
    match fault {
        Some(ProxyFault::Status(status)) => Ok(error_response(status, call.target.is_some())),
        Some(ProxyFault::Refuse) => Err(Dropped),
        Some(ProxyFault::LostResponse) => {
            let _ = forward(req, &client, &upstream).await;
            Err(Dropped)
        }
        Some(ProxyFault::ForwardThenStatus(status)) => {
            let _ = forward(req, &client, &upstream).await;
            Ok(error_response(status, call.target.is_some()))
        }
        Some(ProxyFault::Delay(d)) => {
            let forwarded = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                forward(req, &client, &upstream).await
            });
            forwarded.await.map_err(|_| Dropped)?.map_err(|_| Dropped)
        }
        None => forward(req, &client, &upstream).await.map_err(|_| Dropped),
    }
}

fn error_response(status: u16, aws: bool) -> Response<Full<Bytes>> {
    let body = if aws {
        let kind = if matches!(status, 400 | 429) {
            "ThrottlingException"
        } else {
            "InternalFailure"
        };
        serde_json::json!({"__type": kind, "message": "injected"})
    } else {
        serde_json::json!({"errors": ["injected"]})
    };
    let content_type = if aws {
        "application/x-amz-json-1.1"
    } else {
        "application/json"
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

/// Sends `req` to `upstream` and returns its answer.
async fn forward(
    req: Request<Incoming>,
    client: &reqwest::Client,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut rb = client.request(parts.method, format!("{upstream}{path_and_query}"));
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            rb = rb.header(name, value);
        }
    }
    let resp = rb.body(body).send().await?;
    let mut out = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            out = out.header(name, value);
        }
    }
    let bytes = resp.bytes().await?;
    Ok(out.body(Full::new(bytes))?)
}
