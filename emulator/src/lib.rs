//! Local emulator of the Dynatrace Environment API v2 token endpoints.
//!
//! It serves `/api/v2/apiTokens` (list, create, get, update, delete, lookup) and
//! `/api/v2/events/ingest` with the real status codes, token format, scope checks,
//! pagination and error envelopes, plus fault injection (status answers such as `429`
//! with `Retry-After`, lost responses, delays, redirects) and a global latency.
//!
//! Use it in-process from tests ([`Emulator::start`]) or as a standalone process
//! (the `dynatrace-emulator` binary), driven over the unauthenticated control
//! endpoint under `/_emulator/`:
//!
//! | call | body | answer |
//! |---|---|---|
//! | `POST /_emulator/tokens` | [`SeedToken`] | [`Seeded`] |
//! | `GET /_emulator/tokens` | — | `[`[`TokenState`]`]` (never values) |
//! | `POST /_emulator/faults` | [`FaultRule`] | `204` |
//! | `DELETE /_emulator/faults` | — | `204` |
//! | `PUT /_emulator/latency` | `{"millis": N}` | `204` |
//! | `GET /_emulator/requests` | — | `[`[`RequestRecord`]`]` |
//! | `GET /_emulator/events` | — | ingested events |
//!
//! Control calls are never subject to faults or latency and are not recorded.
//! The emulator never prints or logs token values.

#![warn(missing_docs)]

mod api;
mod control;
mod model;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::State;

/// Shared mutable emulator state.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the shared state, ignoring poisoning (a panicking test must not cascade).
pub(crate) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle to a running emulator; cheap to clone.
///
/// Serving stops when the last handle is dropped or on [`Emulator::shutdown`].
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1` with an OS-chosen port, serving in a tokio task.
    pub async fn start() -> Emulator {
        Self::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Starts an emulator listening on `addr`, serving in a tokio task.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared: Shared = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(Emulator {
            inner: Arc::new(Inner { shared, addr, stop }),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        let addr = self.inner.addr;
        let ip = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, addr.port()))
    }

    /// The socket address the emulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Creates a token directly (no HTTP, no scope validation: removed scopes may be seeded).
    pub fn seed_token(&self, spec: SeedToken) -> Seeded {
        lock(&self.inner.shared).seed(spec)
    }

    /// All live (not deleted) tokens, in creation order.
    pub fn tokens(&self) -> Vec<TokenState> {
        lock(&self.inner.shared)
            .tokens
            .iter()
            .map(|t| t.state())
            .collect()
    }

    /// The live token with this id, if any.
    pub fn token(&self, id: &str) -> Option<TokenState> {
        lock(&self.inner.shared)
            .tokens
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.state())
    }

    /// Whether a token with this id existed and was deleted.
    pub fn was_deleted(&self, id: &str) -> bool {
        lock(&self.inner.shared).deleted.contains(id)
    }

    /// Every secret value ever issued (seeded or minted), for leak checks.
    pub fn issued_values(&self) -> Vec<String> {
        lock(&self.inner.shared).issued.clone()
    }

    /// Adds a fault rule; rules are evaluated in the order they were added.
    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.inner.shared).add_fault(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.inner.shared).faults.clear();
    }

    /// Delays every (non-control) request by `d`; `Duration::ZERO` switches it off.
    pub fn set_latency(&self, d: Duration) {
        lock(&self.inner.shared).latency = d;
    }

    /// Serves at most `in_flight` API requests at once, like a tenant at its request limit:
    /// one more is answered `429` at once, without `Retry-After`. `None` lifts the limit.
    pub fn set_capacity(&self, in_flight: Option<usize>) {
        lock(&self.inner.shared).capacity = in_flight;
    }

    /// Load figures since the start: most requests served at once, and requests shed with
    /// `429` for capacity.
    pub fn load(&self) -> Load {
        let state = lock(&self.inner.shared);
        Load {
            peak_in_flight: state.peak_in_flight,
            shed: state.shed,
        }
    }

    /// Every recorded API request, in arrival-completion order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.shared).requests.clone()
    }

    /// Every event accepted by `POST /api/v2/events/ingest`, as received.
    pub fn events(&self) -> Vec<serde_json::Value> {
        lock(&self.inner.shared).events.clone()
    }

    /// Stops serving: the listener closes and open connections are dropped.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }
}

/// Specification of a token created with [`Emulator::seed_token`] or `POST /_emulator/tokens`.
///
/// In JSON every field is optional (snake_case names; timestamps as RFC 3339 strings).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SeedToken {
    /// Token name.
    pub name: String,
    /// Scopes, taken verbatim (no-longer-grantable scopes are allowed here).
    pub scopes: Vec<String>,
    /// Owner; default `admin@example.com`.
    pub owner: String,
    /// Expiry; `None` = never expires. May lie in the past (an expired token).
    pub expiration: Option<jiff::Timestamp>,
    /// Creation (and modification) time; `None` = now.
    pub creation: Option<jiff::Timestamp>,
    /// Whether the token is enabled; default `true`.
    pub enabled: bool,
    /// A legacy short opaque token whose id cannot be derived from its value.
    pub legacy: bool,
    /// A personal access token.
    pub personal_access_token: bool,
}

impl Default for SeedToken {
    fn default() -> Self {
        SeedToken {
            name: String::new(),
            scopes: Vec::new(),
            owner: "admin@example.com".to_string(),
            expiration: None,
            creation: None,
            enabled: true,
            legacy: false,
            personal_access_token: false,
        }
    }
}

impl SeedToken {
    /// An enabled, never-expiring token owned by `admin@example.com`.
    pub fn new(name: &str, scopes: &[&str]) -> SeedToken {
        SeedToken {
            name: name.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..SeedToken::default()
        }
    }
}

/// Result of seeding: the token id and its secret value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seeded {
    /// Token id (for new-format tokens: everything before the last dot of the value).
    pub id: String,
    /// Full secret value.
    pub value: String,
}

/// Snapshot of a token's metadata (never its value).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenState {
    /// Token id.
    pub id: String,
    /// Token name.
    pub name: String,
    /// `false` = revoked.
    pub enabled: bool,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Owner.
    pub owner: String,
    /// Creation time.
    pub creation: jiff::Timestamp,
    /// Last name/scope change (not changed by enable/disable).
    pub modified: jiff::Timestamp,
    /// Expiry; `None` = never expires.
    pub expiration: Option<jiff::Timestamp>,
    /// Last authenticated use.
    pub last_used: Option<jiff::Timestamp>,
    /// Personal access token.
    pub personal_access_token: bool,
    /// Legacy (short, opaque) token.
    pub legacy: bool,
}

/// Which request paths a [`FaultRule`] matches (the query string is ignored).
///
/// JSON: `"Any"`, `{"Exact": "/api/v2/apiTokens"}` or `{"Prefix": "/api/v2/apiTokens/"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum PathMatch {
    /// Every path.
    Any,
    /// Exactly this path (so `/api/v2/apiTokens` does not match `/api/v2/apiTokens/lookup`).
    Exact(String),
    /// Every path starting with this prefix.
    Prefix(String),
}

impl PathMatch {
    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// What a firing [`FaultRule`] does.
///
/// JSON: `{"Status": {"status": 429, "retry_after_secs": 2}}`, `"LostResponse"`,
/// `{"Delay": 1500}` (milliseconds), `{"Redirect": {"location": "http://..."}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status with the error envelope (and `Retry-After` when given),
    /// without performing the request.
    Status {
        /// HTTP status code.
        status: u16,
        /// Value of the `Retry-After` header, in seconds.
        #[serde(default)]
        retry_after_secs: Option<u64>,
        /// Send `Retry-After` as an HTTP date (now + `retry_after_secs`) instead of seconds;
        /// RFC 9110 allows both forms.
        #[serde(default)]
        retry_after_as_date: bool,
    },
    /// Perform the request fully (state changes happen), then close the connection
    /// without sending a response.
    LostResponse,
    /// Wait, then proceed normally.
    #[serde(with = "millis")]
    Delay(Duration),
    /// Answer `307 Temporary Redirect` with this `Location`, without performing the request.
    Redirect {
        /// Value of the `Location` header.
        location: String,
    },
}

impl FaultKind {
    /// `Status` without `Retry-After`.
    pub fn status(status: u16) -> FaultKind {
        FaultKind::Status {
            status,
            retry_after_secs: None,
            retry_after_as_date: false,
        }
    }

    /// `429` with `Retry-After: secs`.
    pub fn throttled(retry_after_secs: u64) -> FaultKind {
        FaultKind::Status {
            status: 429,
            retry_after_secs: Some(retry_after_secs),
            retry_after_as_date: false,
        }
    }

    /// `429` with `Retry-After` as the HTTP date `secs` seconds from now.
    pub fn throttled_until(secs: u64) -> FaultKind {
        FaultKind::Status {
            status: 429,
            retry_after_secs: Some(secs),
            retry_after_as_date: true,
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A programmable fault: applies `kind` to matching requests number `skip+1 ..= skip+times`.
///
/// Every matching rule counts every matching request. When several rules fire on one
/// request, all their delays add up and the first non-delay kind (in insertion order) applies.
/// JSON: `{"method": "POST", "path": {"Exact": "/api/v2/apiTokens"}, "skip": 0, "times": 1,
/// "kind": {"Status": {"status": 503}}}`; `method` (case-insensitive) and `path` default
/// to any, `skip` to 0 and `times` to unlimited.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FaultRule {
    /// HTTP method to match; `None` = any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path to match.
    #[serde(default = "any_path")]
    pub path: PathMatch,
    /// Let the first `skip` matching requests through untouched.
    #[serde(default)]
    pub skip: u32,
    /// Apply to the next `times` matching requests (`u32::MAX` = unlimited).
    #[serde(default = "unlimited")]
    pub times: u32,
    /// What to do.
    pub kind: FaultKind,
}

fn any_path() -> PathMatch {
    PathMatch::Any
}

fn unlimited() -> u32 {
    u32::MAX
}

impl FaultRule {
    /// A rule for `method` (`""` or `"*"` = any method) and `path`, unlimited, no skip.
    pub fn new(method: &str, path: PathMatch, kind: FaultKind) -> FaultRule {
        let method = match method.trim() {
            "" | "*" => None,
            m => Some(m.to_ascii_uppercase()),
        };
        FaultRule {
            method,
            path,
            skip: 0,
            times: u32::MAX,
            kind,
        }
    }

    /// A rule matching every request, unlimited, no skip.
    pub fn any(kind: FaultKind) -> FaultRule {
        FaultRule::new("", PathMatch::Any, kind)
    }

    /// Sets how many matching requests fire the rule.
    pub fn times(mut self, times: u32) -> FaultRule {
        self.times = times;
        self
    }

    /// Sets how many matching requests pass untouched first.
    pub fn skip(mut self, skip: u32) -> FaultRule {
        self.skip = skip;
        self
    }

    /// Whether a request with this method and path matches (counting aside).
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.matches(path)
    }
}

/// Load figures of an emulator (see [`Emulator::set_capacity`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// Most API requests served at once.
    pub peak_in_flight: usize,
    /// Requests answered `429` because the capacity was reached.
    pub shed: u64,
}

/// One API request as seen by the emulator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Status answered; `None` = the response was lost (connection dropped).
    pub status: Option<u16>,
}
