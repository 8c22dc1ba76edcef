//! Shared request execution: URL building, namespace/token headers, redirect refusal and
//! bounded, jittered retries.

use std::time::Duration;

use backon::BackoffBuilder;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::VaultError;

/// At most this many attempts per request (first try included).
pub(crate) const MAX_ATTEMPTS: usize = 4;
/// Upper bound for a server-requested `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long one attempt may take by default. A request that hangs (a stuck node, a write held
/// by a proxy) is abandoned after this long, so the caller can repeat it or settle the outcome
/// well before the Lambda deadline, instead of waiting for the function to be killed.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client bound to one Vault address and namespace.
#[derive(Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    addr: url::Url,
    namespace: Option<String>,
    request_timeout: Duration,
}

/// One request to send.
pub(crate) struct Req<'a> {
    pub method: Method,
    pub url: url::Url,
    /// Body bytes and content type.
    pub body: Option<(&'a [u8], &'static str)>,
    pub token: Option<&'a SecretString>,
    /// Safe to repeat after a transport error or an ambiguous 5xx.
    pub idempotent: bool,
    pub op: &'static str,
    /// Path named in errors.
    pub path: &'a str,
}

/// A received answer. The body is wiped from memory on drop (it may hold secret values).
pub(crate) struct Resp {
    pub status: StatusCode,
    pub body: Zeroizing<Vec<u8>>,
    pub attempts: u32,
}

impl Resp {
    /// The server's `errors` messages (empty when the body is not an error envelope).
    pub fn messages(&self) -> Vec<String> {
        super::error_messages(&self.body).unwrap_or_default()
    }

    /// `Some(messages)` only for an `{"errors":[...]}` body.
    pub fn error_envelope(&self) -> Option<Vec<String>> {
        super::error_messages(&self.body)
    }

    /// A generic error for an unexpected status.
    pub fn api_error(&self, op: &'static str, path: &str) -> VaultError {
        VaultError::Api {
            op,
            path: path.to_owned(),
            status: self.status,
            messages: self.messages(),
            attempts: self.attempts,
        }
    }
}

impl Transport {
    pub fn new(client: reqwest::Client, addr: url::Url, namespace: Option<String>) -> Self {
        Self {
            client,
            addr,
            namespace,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// A clone whose attempts each time out after `timeout` (at most; never past the deadline).
    pub fn with_request_timeout(&self, timeout: Duration) -> Self {
        Self {
            request_timeout: timeout,
            ..self.clone()
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `<addr>/v1/<parts...>`; each part may contain `/` and is split into percent-encoded
    /// segments. A final empty part yields a trailing slash.
    pub fn url(&self, parts: &[&str]) -> url::Url {
        let mut url = self.addr.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .expect("checked: http(s) URLs have a path");
            segs.pop_if_empty().push("v1");
            for part in parts {
                segs.extend(part.split('/'));
            }
        }
        url
    }

    /// Sends `req`, retrying `429`, `412`, `503` (and for idempotent requests also `500`,
    /// `502`, `504` and transport errors) with jittered exponential back-off, honouring
    /// `Retry-After`, never past `deadline`. A 3xx answer is an error.
    pub async fn send(&self, req: &Req<'_>, deadline: Option<Instant>) -> Result<Resp, VaultError> {
        let mut backoff = backon::ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_max_times(MAX_ATTEMPTS - 1)
            .with_jitter()
            .build();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let remaining = match deadline {
                Some(d) => {
                    let r = d.saturating_duration_since(Instant::now());
                    if r.is_zero() {
                        return Err(VaultError::DeadlineExceeded {
                            op: req.op,
                            path: req.path.to_owned(),
                        });
                    }
                    Some(r)
                }
                None => None,
            };
            let mut rb = self.client.request(req.method.clone(), req.url.clone());
            if let Some(ns) = &self.namespace {
                rb = rb.header("X-Vault-Namespace", ns.as_str());
            }
            if let Some(token) = req.token {
                let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    VaultError::InvalidConfig(
                        "the Vault token contains characters not allowed in an HTTP header".into(),
                    )
                })?;
                value.set_sensitive(true);
                rb = rb.header("X-Vault-Token", value);
            }
            if let Some((body, content_type)) = req.body {
                rb = rb.header(CONTENT_TYPE, content_type).body(body.to_vec());
            }
            rb =
                rb.timeout(remaining.map_or(self.request_timeout, |r| r.min(self.request_timeout)));

            let outcome = rb.send().await;
            let resp = match outcome {
                Err(e) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(VaultError::DeadlineExceeded {
                            op: req.op,
                            path: req.path.to_owned(),
                        });
                    }
                    if req.idempotent
                        && let Some(delay) = next_delay(backoff.next(), None, deadline)
                    {
                        tracing::warn!(
                            op = req.op,
                            path = req.path,
                            attempt = attempts,
                            delay_ms = delay.as_millis() as u64,
                            error = %e.without_url_ref(),
                            "Vault request failed to complete; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(VaultError::Transport {
                        op: req.op,
                        path: req.path.to_owned(),
                        source: e,
                    });
                }
                Ok(resp) => resp,
            };

            let status = resp.status();
            if status.is_redirection() {
                return Err(VaultError::Redirect {
                    op: req.op,
                    path: req.path.to_owned(),
                    status,
                });
            }
            if retryable(status, req.idempotent) {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::deadline::parse_retry_after);
                if let Some(delay) = next_delay(backoff.next(), retry_after, deadline) {
                    tracing::warn!(
                        op = req.op,
                        path = req.path,
                        status = status.as_u16(),
                        attempt = attempts,
                        delay_ms = delay.as_millis() as u64,
                        "Vault asked to retry later; backing off"
                    );
                    drop(resp);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            let body = match crate::body::read_capped(resp, crate::body::MAX_RESPONSE_BYTES).await {
                Ok(b) => b,
                Err(crate::body::BodyError::TooLarge) => {
                    return Err(VaultError::Decode {
                        op: req.op,
                        path: req.path.to_owned(),
                        detail: format!(
                            "response larger than {} bytes",
                            crate::body::MAX_RESPONSE_BYTES
                        ),
                    });
                }
                Err(crate::body::BodyError::Transport(e)) => {
                    return Err(VaultError::Transport {
                        op: req.op,
                        path: req.path.to_owned(),
                        source: e,
                    });
                }
            };
            return Ok(Resp {
                status,
                body,
                attempts,
            });
        }
    }
}

/// Small helper so log lines do not repeat the URL (already named by op/path).
trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut s = self.to_string();
        if let Some(url) = self.url() {
            s = s.replace(url.as_str(), "<vault>");
        }
        s
    }
}

/// Which answers are worth repeating. Non-idempotent requests (a CAS write) are repeated only
/// for answers that mean "not processed": rate limit, consistency not reached, sealed/standby.
pub(crate) fn retryable(status: StatusCode, idempotent: bool) -> bool {
    match status.as_u16() {
        412 | 429 | 503 => true,
        500 | 502 | 504 => idempotent,
        _ => false,
    }
}

/// The delay before the next attempt, or `None` when attempts are exhausted or the delay would
/// end past the deadline.
pub(crate) fn next_delay(
    backoff: Option<Duration>,
    retry_after: Option<Duration>,
    deadline: Option<Instant>,
) -> Option<Duration> {
    let base = backoff?;
    let delay = match retry_after {
        Some(ra) => ra.min(MAX_RETRY_AFTER),
        None => base,
    };
    if let Some(d) = deadline
        && Instant::now() + delay >= d
    {
        return None;
    }
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Transport::new(
            reqwest::Client::new(),
            url::Url::parse("https://vault.example.com/proxy/").unwrap(),
            None,
        );
        assert_eq!(
            t.url(&["secret", "data", "dynatrace/app 1"]).as_str(),
            "https://vault.example.com/proxy/v1/secret/data/dynatrace/app%201"
        );
        assert_eq!(
            t.url(&["secret", "metadata", "dynatrace/"]).as_str(),
            "https://vault.example.com/proxy/v1/secret/metadata/dynatrace/"
        );
        assert_eq!(
            t.url(&["secret", "metadata", ""]).as_str(),
            "https://vault.example.com/proxy/v1/secret/metadata/"
        );
        assert_eq!(
            t.url(&["secret", "data", "a?b#c"]).as_str(),
            "https://vault.example.com/proxy/v1/secret/data/a%3Fb%23c"
        );
    }

    #[test]
    fn retry_policy() {
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS, false));
        assert!(retryable(StatusCode::PRECONDITION_FAILED, false));
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE, false));
        assert!(!retryable(StatusCode::INTERNAL_SERVER_ERROR, false));
        assert!(retryable(StatusCode::INTERNAL_SERVER_ERROR, true));
        assert!(retryable(StatusCode::BAD_GATEWAY, true));
        assert!(!retryable(StatusCode::BAD_REQUEST, true));
        assert!(!retryable(StatusCode::FORBIDDEN, true));
    }

    #[tokio::test]
    async fn delay_respects_deadline_and_retry_after() {
        assert_eq!(next_delay(None, None, None), None);
        assert_eq!(
            next_delay(
                Some(Duration::from_millis(100)),
                Some(Duration::from_secs(2)),
                None
            ),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            next_delay(
                Some(Duration::from_millis(100)),
                Some(Duration::from_secs(600)),
                None
            ),
            Some(MAX_RETRY_AFTER)
        );
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            next_delay(Some(Duration::from_secs(1)), None, Some(soon)),
            None
        );
    }
}
