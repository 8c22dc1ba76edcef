//! A typed client for the Dynatrace API token endpoints (Environment API v2) and event
//! ingest, with the retry rules of `docs/dynatrace-api.md` (Retries):
//!
//! * `429` and `5xx` are retried with jittered exponential back-off (from `backon`),
//!   honouring `Retry-After` when sent, and never past the invocation's [`Deadline`];
//! * every request holds a slot of its environment's window of calls in flight
//!   ([`crate::throttle`], `ROTATION_CONCURRENCY`) while it is on the wire; a `429` halves
//!   the window and a `Retry-After` pauses *every* request to that environment, so a storm
//!   slows a run down instead of failing paths;
//! * transport errors are retried only for idempotent calls: a lost response to a create
//!   may have minted a token, which only the caller can clean up (by its marker);
//! * redirects are never followed, so the `Authorization` header cannot reach another origin.
//!
//! Token values travel only in the `Authorization` header and in JSON bodies, never in URLs.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::deadline::Deadline;
use crate::environment::EnvironmentUrl;
use crate::secret::{TokenValue, redact_text};
use crate::throttle::{NoSlot, Windows};

/// Longest wait for an event ingest (one attempt: see [`Dynatrace::ingest_event`]).
const EVENT_TIMEOUT: Duration = Duration::from_secs(3);

/// Calls in flight per environment when not configured (`ROTATION_CONCURRENCY`'s default).
pub const DEFAULT_IN_FLIGHT: usize = 8;

/// Tokens per page of a listing: the API's maximum, so a tenant of 10 000 tokens is one
/// request (each page is decoded token by token, see [`Dynatrace::list_each`]).
pub const LIST_PAGE_SIZE: usize = 10_000;

/// Tokens per list page when a page of [`LIST_PAGE_SIZE`] timed out or was too large: the
/// listing starts over with pages of this size.
pub const SMALL_LIST_PAGE_SIZE: usize = 1_000;

/// A list page may take this many times the per-request timeout.
const LIST_TIMEOUT_FACTOR: u32 = 6;

/// Pages a listing follows at most.
const MAX_LIST_PAGES: usize = 10_000;

/// Retry and timeout settings. The defaults suit Lambda; tests shorten the delays.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Attempts per call, the first included.
    pub max_attempts: usize,
    /// First back-off delay (before jitter).
    pub min_delay: Duration,
    /// Longest single back-off delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Metadata of a token (`ApiToken`): list items, `GET {id}`, lookup. Every field optional,
/// as in the published schema; never contains the secret.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// `prefix.public`.
    pub id: Option<String>,
    /// Display name (not unique).
    pub name: Option<String>,
    /// `false` = revoked.
    pub enabled: Option<bool>,
    /// Personal access token.
    pub personal_access_token: Option<bool>,
    /// Owning user.
    pub owner: Option<String>,
    /// Creation time.
    pub creation_date: Option<String>,
    /// Expiry; absent = never.
    pub expiration_date: Option<String>,
    /// Last use; absent = never used.
    pub last_used_date: Option<String>,
    /// Address of the last use (`+lastUsedIpAddress`).
    #[serde(default)]
    pub last_used_ip_address: Option<String>,
    /// Last change of name or scopes.
    pub modified_date: Option<String>,
    /// Scopes.
    pub scopes: Option<Vec<String>>,
}

impl ApiToken {
    /// The id, or `"<unknown id>"`.
    pub fn id_str(&self) -> &str {
        self.id.as_deref().unwrap_or("<unknown id>")
    }
    /// The name, or empty.
    pub fn name_str(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
    /// Enabled unless Dynatrace says otherwise.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
    /// The scopes, or none.
    pub fn scope_list(&self) -> Vec<String> {
        self.scopes.clone().unwrap_or_default()
    }
    /// Parsed `creationDate`.
    pub fn created(&self) -> Option<Timestamp> {
        parse_time(&self.creation_date)
    }
    /// Parsed `expirationDate`.
    pub fn expires(&self) -> Option<Timestamp> {
        parse_time(&self.expiration_date)
    }
    /// Parsed `lastUsedDate`.
    pub fn last_used(&self) -> Option<Timestamp> {
        parse_time(&self.last_used_date)
    }
}

fn parse_time(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref().and_then(|s| s.parse().ok())
}

/// Formats a time the way Dynatrace writes them: `2026-11-27T10:00:00.000Z`.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Body of `POST /api/v2/apiTokens`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    /// Name (carries the rotation marker).
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry; `None` = never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
}

/// A freshly minted token: the only time its value is known.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its id.
    pub id: String,
    /// Its value (redacted in `Debug`).
    pub token: TokenValue,
    /// Its expiry as Dynatrace reports it.
    pub expiration_date: Option<String>,
    /// An earlier attempt of the create answered 5xx or lost its answer: it may have minted
    /// a token whose value nobody has (found by marker).
    pub after_unclear_attempt: bool,
}

/// Body of `PUT /api/v2/apiTokens/{id}`: every field optional.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenUpdate {
    /// New name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Enable or disable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Complete new scope list (replaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// What went wrong talking to Dynatrace. Messages carry ids, statuses and Dynatrace's own
/// (redacted) message, never a token value.
#[derive(Debug, thiserror::Error)]
pub enum DtError {
    /// `401`: the authenticating token is invalid, disabled or expired.
    #[error(
        "Dynatrace {op} at {env}: authentication failed (401); the token used is unknown, disabled or expired"
    )]
    Unauthorized {
        /// The operation.
        op: &'static str,
        /// The environment.
        env: String,
    },
    /// `403`: the authenticating token lacks a scope.
    #[error("Dynatrace {op} at {env}: permission denied (403): {message}")]
    Forbidden {
        /// The operation.
        op: &'static str,
        /// The environment.
        env: String,
        /// Dynatrace's message.
        message: String,
    },
    /// `400`: the request was refused.
    #[error("Dynatrace {op}: request refused (400): {message}")]
    BadRequest {
        /// The operation.
        op: &'static str,
        /// Dynatrace's message and constraint violations.
        message: String,
    },
    /// `404`.
    #[error("Dynatrace {op}: not found (404)")]
    NotFound {
        /// The operation.
        op: &'static str,
    },
    /// `429`/`5xx` after every retry the time budget allowed.
    #[error(
        "Dynatrace {op}: still failing after {attempts} attempt(s), last status {status}: {message}; retry later"
    )]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// Last status.
        status: u16,
        /// Attempts made.
        attempts: usize,
        /// Dynatrace's message.
        message: String,
    },
    /// A `3xx`: never followed.
    #[error(
        "Dynatrace {op}: answered with a redirect ({status}); redirects are not followed so credentials cannot reach another origin; check the environment URL"
    )]
    Redirect {
        /// The operation.
        op: &'static str,
        /// The status.
        status: u16,
    },
    /// Network failure or timeout. `ambiguous`: the request may have taken effect.
    #[error("Dynatrace {op} at {env}: network error: {detail}")]
    Transport {
        /// The operation.
        op: &'static str,
        /// The environment.
        env: String,
        /// What happened.
        detail: String,
        /// The request may have been processed.
        ambiguous: bool,
    },
    /// A response that does not match the API.
    #[error("Dynatrace {op}: unexpected response: {detail}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl DtError {
    /// The `errorType` this failure is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            DtError::Unauthorized { .. } => "DynatraceUnauthorized",
            DtError::Forbidden { .. } => "DynatraceForbidden",
            DtError::BadRequest { .. } => "DynatraceBadRequest",
            DtError::NotFound { .. } => "DynatraceNotFound",
            DtError::Unavailable { .. } => "DynatraceUnavailable",
            DtError::Redirect { .. } => "DynatraceRedirect",
            DtError::Transport { .. } => "DynatraceUnreachable",
            DtError::Protocol { .. } => "DynatraceProtocolError",
        }
    }
}

impl DtError {
    /// Whether the request may have taken effect although no answer came back.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            DtError::Transport {
                ambiguous: true,
                ..
            }
        )
    }
}

impl DtError {
    /// A request that timed out, or an answer over its size cap: what a smaller page avoids.
    fn is_slow_or_large(&self) -> bool {
        match self {
            DtError::Transport { detail, .. } => detail.starts_with("timed out"),
            DtError::Protocol { detail, .. } => detail.contains("larger than"),
            _ => false,
        }
    }
}

/// The Dynatrace client: one per execution environment, cheap to clone, shared by all
/// rotations (the per-environment windows of calls in flight live here).
#[derive(Clone)]
pub struct Dynatrace {
    http: reqwest::Client,
    retry: Arc<RetrySettings>,
    /// Per environment: the calls in flight, adapted to `429`s, and `Retry-After` pauses.
    windows: Arc<Windows>,
    /// Called before every request is sent (tests use it to simulate a crash between calls).
    before_send: Option<CallHook>,
}

/// A function called with the operation name before each request is sent.
pub type CallHook = Arc<dyn Fn(&'static str) + Send + Sync>;

struct Reply {
    status: u16,
    body: Zeroizing<Vec<u8>>,
    /// An earlier attempt of this request ended with a 5xx or a lost answer: for a
    /// non-idempotent call it may have taken effect.
    unclear_before: bool,
}

impl Dynatrace {
    /// Builds the client with its own HTTP connection pool (no redirects, rustls).
    pub fn new(retry: RetrySettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!(
                "dynatrace-token-rotator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            http,
            retry: Arc::new(retry),
            windows: Arc::new(Windows::new(DEFAULT_IN_FLIGHT)),
            before_send: None,
        })
    }

    /// The same client with windows of at most `max` calls in flight per environment
    /// (`ROTATION_CONCURRENCY`).
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.windows = Arc::new(Windows::new(max));
        self
    }

    /// The most calls in flight per environment.
    pub fn max_in_flight(&self) -> usize {
        self.windows.max()
    }

    /// The same client calling `hook` before every request it sends: a test seam to stop a
    /// rotation between two calls as a crash would.
    pub fn with_call_hook(mut self, hook: CallHook) -> Self {
        self.before_send = Some(hook);
        self
    }

    /// `POST /api/v2/apiTokens/lookup` authenticated with `auth`: metadata of the token
    /// whose value is `value`; `None` when Dynatrace does not know it.
    pub async fn lookup(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        value: &TokenValue,
        deadline: Deadline,
    ) -> Result<Option<ApiToken>, DtError> {
        let op = "token lookup";
        let body = Zeroizing::new(serde_json::json!({ "token": value.expose() }).to_string());
        let reply = self
            .send(env, op, true, deadline, |c| {
                c.post(env.join("/api/v2/apiTokens/lookup"))
                    .header("Authorization", auth_header(auth))
                    .header("Content-Type", "application/json; charset=utf-8")
                    .body(body.as_bytes().to_vec())
            })
            .await?;
        match reply.status {
            200 => decode(op, &reply).map(Some),
            404 => Ok(None),
            _ => Err(status_error(op, env, &reply)),
        }
    }

    /// `POST /api/v2/apiTokens`: mints a token. Not retried on transport errors (a lost
    /// answer may still have minted it; the caller cleans up by marker).
    pub async fn create(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        new: &NewToken,
        deadline: Deadline,
    ) -> Result<Created, DtError> {
        let op = "token create";
        let reply = self
            .send(env, op, false, deadline, |c| {
                c.post(env.join("/api/v2/apiTokens"))
                    .header("Authorization", auth_header(auth))
                    .json(new)
            })
            .await?;
        if reply.status != 201 {
            return Err(status_error(op, env, &reply));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            id: String,
            token: secrecy::SecretString,
            expiration_date: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(&reply.body).map_err(|e| DtError::Protocol {
            op,
            detail: format!("invalid create response: {}", e.classify_str()),
        })?;
        let token =
            TokenValue::parse(secrecy::ExposeSecret::expose_secret(&raw.token)).map_err(|e| {
                DtError::Protocol {
                    op,
                    detail: format!("minted token {} has an unexpected format: {e}", raw.id),
                }
            })?;
        if token.derived_id().as_deref() != Some(raw.id.as_str()) {
            return Err(DtError::Protocol {
                op,
                detail: format!("minted token value does not match its id {}", raw.id),
            });
        }
        Ok(Created {
            id: raw.id,
            token,
            expiration_date: raw.expiration_date,
            after_unclear_attempt: reply.unclear_before,
        })
    }

    /// `GET /api/v2/apiTokens/{id}`; `None` when unknown.
    pub async fn get(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        id: &str,
        deadline: Deadline,
    ) -> Result<Option<ApiToken>, DtError> {
        let op = "token read";
        let url = token_url(env, id);
        let reply = self
            .send(env, op, true, deadline, |c| {
                c.get(&url).header("Authorization", auth_header(auth))
            })
            .await?;
        match reply.status {
            200 => decode(op, &reply).map(Some),
            404 => Ok(None),
            _ => Err(status_error(op, env, &reply)),
        }
    }

    /// `PUT /api/v2/apiTokens/{id}` (`204`). Idempotent, so retried on transport errors.
    pub async fn update(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        id: &str,
        update: &TokenUpdate,
        deadline: Deadline,
    ) -> Result<(), DtError> {
        let op = "token update";
        let url = token_url(env, id);
        let reply = self
            .send(env, op, true, deadline, |c| {
                c.put(&url)
                    .header("Authorization", auth_header(auth))
                    .json(update)
            })
            .await?;
        match reply.status {
            200 | 204 => Ok(()),
            _ => Err(status_error(op, env, &reply)),
        }
    }

    /// `DELETE /api/v2/apiTokens/{id}`; `Ok(false)` when it was already gone.
    pub async fn delete(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        id: &str,
        deadline: Deadline,
    ) -> Result<bool, DtError> {
        let op = "token delete";
        let url = token_url(env, id);
        let reply = self
            .send(env, op, true, deadline, |c| {
                c.delete(&url).header("Authorization", auth_header(auth))
            })
            .await?;
        match reply.status {
            200 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(op, env, &reply)),
        }
    }

    /// `GET /api/v2/apiTokens`, every page, collected (see [`Self::list_each`]).
    pub async fn list(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        selector: Option<&str>,
        fields: &str,
        deadline: Deadline,
    ) -> Result<Vec<ApiToken>, DtError> {
        let mut tokens = Vec::new();
        self.list_each(env, auth, selector, fields, deadline, |t| tokens.push(t))
            .await?;
        Ok(tokens)
    }

    /// `GET /api/v2/apiTokens`, every page of [`LIST_PAGE_SIZE`] tokens, handing each token to
    /// `each` as it is decoded: only one page's body is held at a time, never the tenant.
    /// The first request carries the filters, the following ones only `nextPageKey`. `fields`
    /// uses Dynatrace's syntax (`+scopes,...`). Returns the number of tokens listed.
    ///
    /// On an error, `each` may already have seen the tokens of the pages before (or part of
    /// the failing page): a caller that acts on a complete listing discards what it gathered.
    pub async fn list_each(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        selector: Option<&str>,
        fields: &str,
        deadline: Deadline,
        mut each: impl FnMut(ApiToken),
    ) -> Result<usize, DtError> {
        let mut listed = 0;
        let first = self
            .list_pages(
                env,
                auth,
                selector,
                fields,
                deadline,
                LIST_PAGE_SIZE,
                &mut each,
                &mut listed,
            )
            .await;
        match first {
            // Nothing was handed out yet (the first page failed as a whole): start over with
            // smaller pages rather than fail on every run against a slow or large tenant.
            Err(error) if listed == 0 && error.is_slow_or_large() => {
                tracing::warn!(env = %env, error = %error, page_size = SMALL_LIST_PAGE_SIZE, "a token list page of {LIST_PAGE_SIZE} failed; listing again in smaller pages");
                self.list_pages(
                    env,
                    auth,
                    selector,
                    fields,
                    deadline,
                    SMALL_LIST_PAGE_SIZE,
                    &mut each,
                    &mut listed,
                )
                .await
            }
            other => other,
        }
    }

    /// The listing of [`Self::list_each`] with pages of `page_size`; `listed` counts the
    /// tokens handed out (also when it fails part-way).
    #[allow(clippy::too_many_arguments)]
    async fn list_pages(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        selector: Option<&str>,
        fields: &str,
        deadline: Deadline,
        page_size: usize,
        each: &mut impl FnMut(ApiToken),
        listed: &mut usize,
    ) -> Result<usize, DtError> {
        let op = "token list";
        let url = env.join("/api/v2/apiTokens");
        let page_size = page_size.to_string();
        let mut next: Option<String> = None;
        // A first page of the large size that fails in transport (a timeout) is not repeated:
        // the caller lists again in smaller pages instead of spending the deadline on it.
        let small = page_size
            .parse::<usize>()
            .is_ok_and(|n| n <= SMALL_LIST_PAGE_SIZE);
        for page in 1..=MAX_LIST_PAGES {
            let retry_transport = small || next.is_some();
            let reply = self
                .send_capped(
                    env,
                    op,
                    retry_transport,
                    deadline,
                    crate::body::MAX_LIST_PAGE_BYTES,
                    |c| {
                        let req = c.get(&url).header("Authorization", auth_header(auth));
                        match &next {
                            Some(key) => req.query(&[("nextPageKey", key.as_str())]),
                            None => {
                                let mut q =
                                    vec![("pageSize", page_size.as_str()), ("fields", fields)];
                                if let Some(s) = selector {
                                    q.push(("apiTokenSelector", s));
                                }
                                req.query(&q)
                            }
                        }
                    },
                )
                .await?;
            if reply.status != 200 {
                return Err(status_error(op, env, &reply));
            }
            let mut in_page = 0usize;
            let mut counted = |t: ApiToken| {
                in_page += 1;
                each(t);
            };
            let key = decode_page(&reply.body, &mut counted).map_err(|e| DtError::Protocol {
                op,
                detail: format!("status 200 with a body that is {}", e.classify_str()),
            })?;
            *listed += in_page;
            tracing::debug!(env = %env, page, tokens = in_page, bytes = reply.body.len(), "Dynatrace token list page read");
            match key {
                Some(k) if !k.is_empty() => next = Some(k),
                _ => return Ok(*listed),
            }
        }
        Err(DtError::Protocol {
            op,
            detail: format!("more than {MAX_LIST_PAGES} pages; giving up"),
        })
    }

    /// `POST /api/v2/events/ingest` of one event, one attempt of at most 3 s; checks the
    /// per-event status.
    pub async fn ingest_event(
        &self,
        env: &EnvironmentUrl,
        auth: &TokenValue,
        event: &Value,
        deadline: Deadline,
    ) -> Result<(), DtError> {
        let op = "event ingest";
        // One short attempt: an event never holds up the work it reports (no retries, no
        // back-off, and a 429 here neither shrinks nor pauses the environment's window).
        let slot = self
            .windows
            .of(env.as_str())
            .acquire(deadline)
            .await
            .map_err(|_| DtError::Unavailable {
                op,
                status: 429,
                attempts: 0,
                message: "no slot of the environment's window before the deadline".into(),
            })?;
        let resp = self
            .http
            .post(env.join("/api/v2/events/ingest"))
            .header("Authorization", auth_header(auth))
            .json(event)
            .timeout(deadline.cap(EVENT_TIMEOUT))
            .send()
            .await
            .map_err(|e| DtError::Transport {
                op,
                env: env.to_string(),
                detail: describe_transport(&e),
                ambiguous: true,
            })?;
        let status = resp.status().as_u16();
        let body = crate::body::read_capped(resp, crate::body::MAX_RESPONSE_BYTES)
            .await
            .map_err(|_| DtError::Protocol {
                op,
                detail: format!("status {status} with an unreadable or oversized body"),
            })?;
        drop(slot);
        let reply = Reply {
            status,
            body,
            unclear_before: false,
        };
        if (300..400).contains(&status) {
            return Err(DtError::Redirect { op, status });
        }
        if !(200..300).contains(&reply.status) {
            return Err(status_error(op, env, &reply));
        }
        let v: Value = decode(op, &reply)?;
        let bad: Vec<String> = v["eventIngestResults"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["status"].as_str())
                    .filter(|s| *s != "OK")
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(DtError::Protocol {
                op,
                detail: format!("event not accepted: {}", bad.join(", ")),
            })
        }
    }

    /// Sends with retries. Returns every final status except `3xx` (an error) and
    /// exhausted `429`/`5xx`.
    async fn send(
        &self,
        env: &EnvironmentUrl,
        op: &'static str,
        retry_transport: bool,
        deadline: Deadline,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply, DtError> {
        self.send_capped(
            env,
            op,
            retry_transport,
            deadline,
            crate::body::MAX_RESPONSE_BYTES,
            make,
        )
        .await
    }

    /// [`Self::send`] reading at most `max_body` bytes of the answer.
    async fn send_capped(
        &self,
        env: &EnvironmentUrl,
        op: &'static str,
        retry_transport: bool,
        deadline: Deadline,
        max_body: usize,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply, DtError> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_jitter()
            .with_max_times(self.retry.max_attempts.saturating_sub(1))
            .build();
        let mut attempt = 0;
        let mut unclear_before = false;
        let window = self.windows.of(env.as_str());
        loop {
            attempt += 1;
            let slot = window.acquire(deadline).await.map_err(|why| DtError::Unavailable {
                op,
                status: 429,
                attempts: attempt - 1,
                message: match why {
                    NoSlot::Paused => "the environment is throttling and the invocation has no time left to wait",
                    NoSlot::Busy => "every slot of the environment's window stayed busy until the deadline",
                }
                .into(),
            })?;
            if let Some(hook) = &self.before_send {
                hook(op);
            }
            // A list page of up to 10,000 tokens may take longer than one token's answer.
            let per_request = if max_body > crate::body::MAX_RESPONSE_BYTES {
                self.retry.request_timeout * LIST_TIMEOUT_FACTOR
            } else {
                self.retry.request_timeout
            };
            let timeout = deadline.cap(per_request);
            let result = make(&self.http).timeout(timeout).send().await;
            let (status, message, retry_after) = match result {
                Err(e) => {
                    drop(slot);
                    let detail = describe_transport(&e);
                    let ambiguous = !e.is_connect();
                    match delays.next() {
                        Some(d) if (retry_transport || !ambiguous) && deadline.allows(d) => {
                            tracing::warn!(op, env = %env, attempt, error = %detail, "Dynatrace request failed; retrying");
                            tokio::time::sleep(d).await;
                            continue;
                        }
                        _ => {
                            return Err(DtError::Transport {
                                op,
                                env: env.to_string(),
                                detail,
                                ambiguous,
                            });
                        }
                    }
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry_after(&resp);
                    let body = match crate::body::read_capped(resp, max_body).await {
                        Ok(b) => b,
                        Err(crate::body::BodyError::TooLarge) => {
                            return Err(DtError::Protocol {
                                op,
                                detail: format!(
                                    "status {status} with a body larger than {max_body} bytes"
                                ),
                            });
                        }
                        Err(crate::body::BodyError::Transport(e)) => {
                            drop(slot);
                            let detail = describe_transport(&e);
                            match delays.next() {
                                Some(d) if retry_transport && deadline.allows(d) => {
                                    tokio::time::sleep(d).await;
                                    continue;
                                }
                                _ => {
                                    return Err(DtError::Transport {
                                        op,
                                        env: env.to_string(),
                                        detail,
                                        ambiguous: true,
                                    });
                                }
                            }
                        }
                    };
                    let reply = Reply {
                        status,
                        body,
                        unclear_before,
                    };
                    if (300..400).contains(&status) {
                        return Err(DtError::Redirect { op, status });
                    }
                    if status == 429 {
                        window.throttled(
                            &slot,
                            retry_after.map(|d| d.min(self.retry.max_retry_after)),
                        );
                    } else if status < 500 {
                        window.succeeded();
                    }
                    drop(slot);
                    if status != 429 && !(500..600).contains(&status) {
                        return Ok(reply);
                    }
                    unclear_before |= status != 429;
                    (status, error_message(&reply), retry_after)
                }
            };
            let backoff = delays.next();
            let wait = match (retry_after, backoff) {
                (_, None) => None,
                (Some(ra), Some(_)) => Some(ra.min(self.retry.max_retry_after)),
                (None, Some(d)) => Some(d),
            };
            match wait {
                Some(d) if deadline.allows(d) => {
                    tracing::warn!(op, env = %env, status, attempt, wait_ms = d.as_millis() as u64, window = window.size(), "Dynatrace throttled or failed; backing off");
                    tokio::time::sleep(d).await;
                }
                _ => {
                    return Err(DtError::Unavailable {
                        op,
                        status,
                        attempts: attempt,
                        message,
                    });
                }
            }
        }
    }
}

fn auth_header(token: &TokenValue) -> reqwest::header::HeaderValue {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Api-Token {}", token.expose()))
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Api-Token invalid"));
    v.set_sensitive(true);
    v
}

fn token_url(env: &EnvironmentUrl, id: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    env.join(&format!("/api/v2/apiTokens/{encoded}"))
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    crate::deadline::parse_retry_after(v)
}

fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the response"
    } else {
        "connection failed or closed without a response"
    };
    let path = e.url().map(|u| u.path().to_owned()).unwrap_or_default();
    format!("{kind} ({path})")
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}
impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "JSON of the wrong shape",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// Decodes one page of `GET /api/v2/apiTokens`, handing each token of `apiTokens` to `each`
/// as it is read (no vector of the page's tokens is built); returns `nextPageKey`. Other
/// members (`totalCount`, `pageSize`) are skipped.
fn decode_page(
    body: &[u8],
    each: &mut impl FnMut(ApiToken),
) -> Result<Option<String>, serde_json::Error> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct PageSeed<'a, F>(&'a mut F);
    impl<'de, F: FnMut(ApiToken)> DeserializeSeed<'de> for PageSeed<'_, F> {
        type Value = Option<String>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, F: FnMut(ApiToken)> Visitor<'de> for PageSeed<'_, F> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a page of API tokens")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut next = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "nextPageKey" => next = map.next_value::<Option<String>>()?,
                    "apiTokens" => map.next_value_seed(TokensSeed(&mut *self.0))?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(next)
        }
    }

    struct TokensSeed<'a, F>(&'a mut F);
    impl<'de, F: FnMut(ApiToken)> DeserializeSeed<'de> for TokensSeed<'_, F> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, F: FnMut(ApiToken)> Visitor<'de> for TokensSeed<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of API tokens")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(t) = seq.next_element::<ApiToken>()? {
                (self.0)(t);
            }
            Ok(())
        }
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    let next = PageSeed(each).deserialize(&mut de)?;
    de.end()?;
    Ok(next)
}

fn decode<T: serde::de::DeserializeOwned>(op: &'static str, reply: &Reply) -> Result<T, DtError> {
    serde_json::from_slice(&reply.body).map_err(|e| DtError::Protocol {
        op,
        detail: format!(
            "status {} with a body that is {}",
            reply.status,
            e.classify_str()
        ),
    })
}

/// Dynatrace's message from the error envelope, redacted and cut short.
fn error_message(reply: &Reply) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        message: Option<String>,
        #[serde(default)]
        constraint_violations: Vec<Violation>,
    }
    #[derive(Deserialize)]
    struct Violation {
        path: Option<String>,
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<Envelope>(&reply.body) {
        Ok(env) => {
            let mut m = env.error.message.unwrap_or_default();
            for v in env.error.constraint_violations.iter().take(10) {
                m.push_str(&format!(
                    "; {}: {}",
                    v.path.as_deref().unwrap_or("?"),
                    v.message.as_deref().unwrap_or("")
                ));
            }
            m
        }
        Err(_) if reply.body.is_empty() => "(empty body)".to_owned(),
        Err(_) => "(no error envelope in the body)".to_owned(),
    };
    redact_text(&text, 400)
}

fn status_error(op: &'static str, env: &EnvironmentUrl, reply: &Reply) -> DtError {
    let message = error_message(reply);
    match reply.status {
        400 => DtError::BadRequest { op, message },
        401 => DtError::Unauthorized {
            op,
            env: env.to_string(),
        },
        403 => DtError::Forbidden {
            op,
            env: env.to_string(),
            message,
        },
        404 => DtError::NotFound { op },
        status => DtError::Protocol {
            op,
            detail: format!("unexpected status {status}: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: Zeroizing::new(body.as_bytes().to_vec()),
            unclear_before: false,
        }
    }

    #[test]
    fn error_bodies_are_summarised_without_token_values() {
        let r = reply(
            400,
            r#"{"error":{"code":400,"message":"Constraints violated.","constraintViolations":[{"path":"scopes","message":"unknown scope"}]}}"#,
        );
        assert_eq!(
            error_message(&r),
            "Constraints violated.; scopes: unknown scope"
        );
        assert_eq!(error_message(&reply(502, "")), "(empty body)");
        assert_eq!(
            error_message(&reply(502, "<html>bad gateway</html>")),
            "(no error envelope in the body)"
        );
        // A server echoing a token value in its message never passes it on.
        let echoed = format!(
            r#"{{"error":{{"code":401,"message":"token dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.{} is invalid"}}}}"#,
            "A".repeat(64)
        );
        assert!(!error_message(&reply(401, &echoed)).contains(&"A".repeat(64)));
    }

    #[test]
    fn pages_are_decoded_token_by_token() {
        let mut seen = Vec::new();
        let next = decode_page(
            br#"{"totalCount":3,"pageSize":2,"nextPageKey":"k1","apiTokens":[{"id":"a","name":"x","enabled":false,"scopes":["s"]},{"id":"b","extra":{"n":[1]}}]}"#,
            &mut |t: ApiToken| seen.push((t.id, t.enabled)),
        )
        .unwrap();
        assert_eq!(next.as_deref(), Some("k1"));
        assert_eq!(
            seen,
            [(Some("a".into()), Some(false)), (Some("b".into()), None)]
        );
        let mut n = 0;
        // The last page: no key (or null); the member order does not matter.
        let last = br#"{"apiTokens":[{"id":"c"}],"nextPageKey":null,"pageSize":2}"#;
        assert_eq!(decode_page(last, &mut |_| n += 1).unwrap(), None);
        assert_eq!(n, 1);
        assert_eq!(
            decode_page(br#"{"totalCount":0}"#, &mut |_| n += 1).unwrap(),
            None
        );
        for bad in [
            &br#"{"apiTokens":{}}"#[..],
            b"[]",
            br#"{"apiTokens":[{"id":1}]}"#,
            br#"{"apiTokens":[]"#,
            br#"{} x"#,
        ] {
            assert!(
                decode_page(bad, &mut |_| {}).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn token_ids_are_encoded_in_urls() {
        let env = EnvironmentUrl::parse("https://abc123.live.dynatrace.com/").unwrap();
        assert_eq!(
            token_url(&env, "dt0c01.ABC"),
            "https://abc123.live.dynatrace.com/api/v2/apiTokens/dt0c01.ABC"
        );
        // An id cannot change the path it is sent to.
        assert!(token_url(&env, "../x?y#z").ends_with("/api/v2/apiTokens/..%2Fx%3Fy%23z"));
    }

    #[test]
    fn times_round_trip_in_the_api_format() {
        let t: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let shown = format_time(t);
        assert_eq!(parse_time(&Some(shown)), Some(t));
        assert_eq!(parse_time(&Some("not a time".into())), None);
        assert_eq!(parse_time(&None), None);
    }

    #[test]
    fn every_error_has_its_own_code() {
        let env = EnvironmentUrl::parse("https://abc123.live.dynatrace.com/").unwrap();
        let e = status_error(
            "create",
            &env,
            &reply(
                403,
                r#"{"error":{"code":403,"message":"Token is missing required scope"}}"#,
            ),
        );
        assert_eq!(e.code(), "DynatraceForbidden", "{e}");
        let e = status_error("create", &env, &reply(401, ""));
        assert_eq!(e.code(), "DynatraceUnauthorized", "{e}");
        let e = status_error("create", &env, &reply(400, ""));
        assert_eq!(e.code(), "DynatraceBadRequest", "{e}");
        let e = status_error("lookup", &env, &reply(404, ""));
        assert_eq!(e.code(), "DynatraceNotFound", "{e}");
        // A status the API does not document is a protocol error, not a guess.
        let e = status_error("create", &env, &reply(418, ""));
        assert_eq!(e.code(), "DynatraceProtocolError", "{e}");
    }
}
