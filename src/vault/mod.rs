//! HashiCorp Vault / OpenBao client: KV v2 reads, check-and-set writes, listing and
//! metadata ([`kv`]), plus login and token handling ([`auth`]).
//!
//! This is a deliberately thin `reqwest` + `serde` client rather than the `vaultrs` crate:
//! `vaultrs` has no read that returns the data *and* its version (needed as the CAS value of
//! the next write), no PATCH of data or metadata, and it types errors by body shape, so a
//! soft-deleted version's `404` (a normal body carrying `data.metadata`) becomes an opaque
//! transport error while a CAS conflict is an `APIError` whose `Display` omits the message.
//! Owning the few HTTP calls we need lets us tell the two kinds of `404` apart, classify the
//! exact CAS-conflict message, refuse redirects, bound retries by the Lambda deadline and keep
//! every secret out of errors, `Debug` output and logs.

pub mod auth;
pub mod kv;
pub mod rotate;

mod http;

use reqwest::StatusCode;

pub use auth::{AuthMethod, Session};
pub use kv::{CasWrite, KvClient, KvEntry, KvRead};

/// Where the Vault/OpenBao server is and which KV v2 mount to use (docs/design.md §5: `VAULT_ADDR`,
/// `VAULT_NAMESPACE`, `VAULT_KV_MOUNT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultSettings {
    /// Server base address, e.g. `https://vault.example.com:8200`; must be `https://` unless the
    /// host is loopback (see [`VaultSettings::new`]).
    pub addr: url::Url,
    /// Namespace sent as `X-Vault-Namespace` (Vault Enterprise / OpenBao ≥ 2.3); `None` = root.
    pub namespace: Option<String>,
    /// KV v2 mount path without slashes at either end, e.g. `secret`.
    pub mount: String,
}

impl VaultSettings {
    /// Validates and normalises the settings: `https://` is required except for loopback hosts
    /// (`127.0.0.0/8`, `::1`, `localhost`), credentials in the URL are refused (they would leak
    /// into error messages), empty namespace means none and slashes around the mount are trimmed.
    pub fn new(
        addr: url::Url,
        namespace: Option<String>,
        mount: impl Into<String>,
    ) -> Result<Self, VaultError> {
        check_addr(&addr)?;
        let mount = mount.into().trim_matches('/').to_owned();
        validate_path_segments(&mount).map_err(|reason| {
            VaultError::InvalidConfig(format!("VAULT_KV_MOUNT {mount:?} is not usable: {reason}"))
        })?;
        if mount.is_empty() {
            return Err(VaultError::InvalidConfig(
                "VAULT_KV_MOUNT is empty: set it to the KV v2 mount path, e.g. `secret`".into(),
            ));
        }
        let namespace = namespace
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        Ok(Self {
            addr,
            namespace,
            mount,
        })
    }
}

/// Builds the `reqwest::Client` the Vault client expects: redirects disabled (a redirect is an
/// error, so neither the token nor a secret body can reach another origin) and bounded timeouts.
pub fn http_client() -> Result<reqwest::Client, VaultError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!(
            "dynatrace-token-rotator/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| VaultError::InvalidConfig(format!("cannot build the HTTP client: {e}")))
}

/// Checks a Vault address against the one URL rule of the project
/// ([`crate::environment::checked_base_url`]: `https://`, or `http://` on loopback only; no
/// user-info, query or fragment), naming `VAULT_ADDR` in the error.
pub fn check_addr(addr: &url::Url) -> Result<(), VaultError> {
    crate::environment::checked_base_url(addr.as_str())
        .map(|_| ())
        .map_err(|e| {
            VaultError::InvalidConfig(format!(
                "VAULT_ADDR: {e}; use VAULT_AUTH_METHOD for credentials"
            ))
        })
}

/// Checks a slash-separated path for segments that would change its meaning once put in a URL.
pub(crate) fn validate_path_segments(path: &str) -> Result<(), &'static str> {
    for seg in path.split('/') {
        if seg == "." || seg == ".." {
            return Err("`.` and `..` segments are not allowed");
        }
        if seg.chars().any(char::is_control) {
            return Err("control characters are not allowed");
        }
    }
    if path.contains("//") {
        return Err("empty segments (`//`) are not allowed");
    }
    Ok(())
}

/// Everything that can go wrong talking to Vault/OpenBao. Messages name the path or mount and
/// what to do; they never carry a secret value or a Vault token. Server messages from
/// `{"errors":[...]}` bodies are included (Vault does not echo secret values in them).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The configuration (address, mount, auth method) is unusable.
    #[error("Vault configuration error: {0}")]
    InvalidConfig(String),

    /// A key path given by the caller is malformed.
    #[error("invalid Vault key path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The request could not be sent or its answer not received (connection, TLS, timeout).
    /// For a CAS write the write may or may not have landed: re-read before deciding.
    #[error("could not reach Vault for {op} {path:?}: {source}")]
    Transport {
        /// What was attempted (`read`, `write`, `list`, `login`, ...).
        op: &'static str,
        /// Path (relative to the mount, or the API path for non-KV calls).
        path: String,
        /// The underlying transport error (its text includes the URL, never headers or bodies).
        #[source]
        source: reqwest::Error,
    },

    /// The server answered with a redirect, which is never followed (docs/design.md §5).
    #[error(
        "Vault answered {op} {path:?} with redirect {status}; redirects are not followed — point VAULT_ADDR at the active node / final address"
    )]
    Redirect {
        /// What was attempted.
        op: &'static str,
        /// Path concerned.
        path: String,
        /// The 3xx status.
        status: StatusCode,
    },

    /// `403` after one re-login: the token's policies do not allow this operation.
    #[error(
        "permission denied by Vault for {op} {path:?} (even after logging in again): grant the rotator's policy the needed capability on this path{}",
        fmt_messages(messages)
    )]
    PermissionDenied {
        /// What was attempted.
        op: &'static str,
        /// Path concerned.
        path: String,
        /// Server messages.
        messages: Vec<String>,
    },

    /// `404 no handler for route`: nothing is mounted at the configured mount (or namespace).
    #[error(
        "no secrets engine is mounted at {mount:?}{}: check VAULT_KV_MOUNT and VAULT_NAMESPACE",
        namespace.as_deref().map(|n| format!(" in namespace {n:?}")).unwrap_or_default()
    )]
    NoMount {
        /// The mount that was addressed.
        mount: String,
        /// The namespace, if any.
        namespace: Option<String>,
    },

    /// The mount exists but is not a KV version 2 engine.
    #[error(
        "mount {mount:?} is {kind}, not KV version 2: the rotator needs versions and check-and-set (enable `kv-v2` or upgrade the mount with `options.version=2`)"
    )]
    NotKvV2 {
        /// The mount concerned.
        mount: String,
        /// What it is instead, e.g. `KV version 1`.
        kind: String,
    },

    /// The key (or its metadata) does not exist, where existence was required.
    #[error("Vault key {path:?} does not exist in mount {mount:?}")]
    NotFound {
        /// Mount.
        mount: String,
        /// Key path.
        path: String,
    },

    /// Any other non-success answer (after retries where they apply).
    #[error("Vault answered {op} {path:?} with HTTP {status}{}{}", fmt_messages(messages), retried_note(*attempts))]
    Api {
        /// What was attempted.
        op: &'static str,
        /// Path concerned.
        path: String,
        /// HTTP status.
        status: StatusCode,
        /// Server messages from the `errors` array.
        messages: Vec<String>,
        /// How many attempts were made.
        attempts: u32,
    },

    /// The caller's deadline passed before a usable answer arrived.
    #[error("deadline reached before Vault answered {op} {path:?}")]
    DeadlineExceeded {
        /// What was attempted.
        op: &'static str,
        /// Path concerned.
        path: String,
    },

    /// A success answer did not have the expected shape.
    #[error("unexpected answer from Vault for {op} {path:?}: {detail}")]
    Decode {
        /// What was attempted.
        op: &'static str,
        /// Path concerned.
        path: String,
        /// What was wrong (never the body itself).
        detail: String,
    },

    /// Logging in failed (wrong role, bad secret_id, IAM binding mismatch, ...).
    #[error("Vault login with {method} failed{}: {hint}", fmt_messages(messages))]
    Login {
        /// Auth method label, e.g. `approle` or `aws (mount aws, role dt-rotator)`.
        method: String,
        /// Server messages, if any.
        messages: Vec<String>,
        /// What to check.
        hint: &'static str,
    },

    /// AWS credentials for the IAM login could not be obtained or used for signing.
    #[error("AWS IAM login to Vault: {0}")]
    Aws(String),

    /// Vault refuses the static `VAULT_TOKEN` itself (`auth/token/lookup-self` answered 403):
    /// it expired or was revoked. Not a policy question: a new token is needed.
    #[error(
        "Vault refuses VAULT_TOKEN itself (auth/token/lookup-self answered 403): it has expired or been revoked, or lacks the `default` policy that allows lookup-self; issue a new token with the rotator's policy and `default`, and update VAULT_TOKEN (or use VAULT_AUTH_METHOD=approle or aws, which log in again on their own)"
    )]
    TokenExpired,
}

fn fmt_messages(messages: &[String]) -> String {
    if messages.is_empty() {
        String::new()
    } else {
        format!(": {}", messages.join("; "))
    }
}

fn retried_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// Extracts the `errors` array of a Vault error body, bounded in count and length.
/// Returns `None` when the body is not an error envelope.
pub(crate) fn error_messages(body: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<serde_json::Value>,
    }
    let env: Envelope = serde_json::from_slice(body).ok()?;
    Some(
        env.errors
            .into_iter()
            .take(8)
            .map(|v| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                // A server (or a proxy in front of it) may echo a credential: never pass on
                // anything shaped like a Vault or Dynatrace token.
                truncate(
                    &redact_token_words(&crate::secret::redact_text(&s, 400)),
                    400,
                )
            })
            .collect(),
    )
}

/// Replaces words shaped like Vault tokens (`s.`, `hvs.`, `hvb.`, `b.`, `hvr.`, `r.` followed by
/// 20 or more characters) by `<redacted>`.
fn redact_token_words(s: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let secret = ["s.", "hvs.", "hvb.", "b.", "hvr.", "r."]
            .iter()
            .any(|p| word.strip_prefix(p).is_some_and(|rest| rest.len() >= 20));
        out.push_str(if secret { "<redacted>" } else { word });
        word.clear();
    };
    for c in s.chars() {
        if is_word(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Describes a JSON decoding failure without quoting any of the input (which may hold secrets).
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    format!(
        "invalid JSON ({:?} error at line {}, column {})",
        e.classify(),
        e.line(),
        e.column()
    )
}

impl VaultError {
    /// The `errorType` this failure is reported with (docs/design.md §6).
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::PermissionDenied { .. } => "VaultPermissionDenied",
            VaultError::TokenExpired => "VaultTokenExpired",
            VaultError::Login { .. } | VaultError::Aws(_) => "VaultLoginFailed",
            VaultError::NoMount { .. }
            | VaultError::NotKvV2 { .. }
            | VaultError::InvalidConfig(_)
            | VaultError::Redirect { .. } => "ConfigError",
            VaultError::InvalidPath { .. } => "MalformedEvent",
            VaultError::Transport { .. }
            | VaultError::Api { .. }
            | VaultError::DeadlineExceeded { .. }
            | VaultError::Decode { .. }
            | VaultError::NotFound { .. } => "VaultError",
        }
    }

    /// Whether the failure leaves the outcome of a write unknown (no answer, a 5xx, a
    /// throttle, an unreadable answer), so the same CAS write must be repeated to learn it.
    pub fn is_unclear(&self) -> bool {
        match self {
            VaultError::Transport { .. }
            | VaultError::DeadlineExceeded { .. }
            | VaultError::Decode { .. } => true,
            VaultError::Api { status, .. } => {
                status.is_server_error() || matches!(status.as_u16(), 412 | 429)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn addr_rule() {
        assert!(check_addr(&url("https://vault.example.com:8200")).is_ok());
        assert!(check_addr(&url("http://127.0.0.1:8200")).is_ok());
        assert!(check_addr(&url("http://127.8.0.1:8200")).is_ok());
        assert!(check_addr(&url("http://[::1]:8200")).is_ok());
        assert!(check_addr(&url("http://localhost:8200")).is_ok());
        assert!(check_addr(&url("http://vault.example.com")).is_err());
        assert!(check_addr(&url("http://10.0.0.1")).is_err());
        assert!(check_addr(&url("ftp://vault.example.com")).is_err());
        let e = check_addr(&url("https://user:hunter2@vault.example.com")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn settings_normalise() {
        let s = VaultSettings::new(url("https://v.example"), Some(" ".into()), "/secret/").unwrap();
        assert_eq!(s.mount, "secret");
        assert_eq!(s.namespace, None);
        assert!(VaultSettings::new(url("https://v.example"), None, "/").is_err());
        assert!(VaultSettings::new(url("https://v.example"), None, "a/../b").is_err());
    }

    #[test]
    fn messages_parsed() {
        assert_eq!(error_messages(br#"{"errors":[]}"#), Some(vec![]));
        assert_eq!(
            error_messages(br#"{"errors":["permission denied"]}"#),
            Some(vec!["permission denied".to_owned()])
        );
        assert_eq!(error_messages(br#"{"data":{}}"#), None);
        assert_eq!(error_messages(b"<html>"), None);
    }
}
