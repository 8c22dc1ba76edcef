//! Vault/OpenBao authentication: a static token, AppRole, or AWS IAM (a SigV4-signed STS
//! `GetCallerIdentity` request that Vault replays), and a [`Session`] that holds the current
//! token and logs in again, once, when a token is refused.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::VaultError;
use super::http::{Req, Transport};

/// The global STS endpoint, which the IAM login request is signed for when the signing region is
/// the default ([`DEFAULT_AWS_REGION`]); Vault replays the request with this URL's host.
pub const STS_URL: &str = "https://sts.amazonaws.com/";
/// The signed STS request body.
pub const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// Content type of the signed STS request.
pub const STS_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// Header Vault checks against its `iam_server_id_header_value` (replay protection).
pub const IAM_SERVER_ID_HEADER: &str = "X-Vault-AWS-IAM-Server-ID";
/// Default mount of the AWS auth method.
pub const DEFAULT_AWS_MOUNT: &str = "aws";
/// Default STS signing region (matches the global endpoint Vault uses by default).
pub const DEFAULT_AWS_REGION: &str = "us-east-1";

/// The STS endpoint a login request signed for `region` must name: the global endpoint for the
/// default region, else the regional one (`https://sts.<region>.amazonaws.com/`, `.com.cn` in
/// the China partition). SigV4 signs the `host` header, so a request signed for `eu-west-1` but
/// addressed to the global host is refused by STS when Vault replays it; Vault's own
/// `sts_endpoint` must name the same host.
pub fn sts_url(region: &str) -> String {
    if region == DEFAULT_AWS_REGION {
        STS_URL.to_owned()
    } else if region.starts_with("cn-") {
        format!("https://sts.{region}.amazonaws.com.cn/")
    } else {
        format!("https://sts.{region}.amazonaws.com/")
    }
}

/// Log in this long before a login token's lease ends.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// How the rotator authenticates to Vault: defined with the configuration it comes from.
pub use crate::config::VaultAuth as AuthMethod;

/// Check a static token again this long after its lookup failed for a reason other than refusal.
const RECHECK_AFTER_FAILED_LOOKUP: Duration = Duration::from_secs(60);
/// Warn when a static token that cannot be renewed has less than this left.
const STATIC_TOKEN_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// The part of `auth/token/lookup-self`'s answer the session uses.
#[derive(serde::Deserialize)]
struct TokenInfo {
    /// Seconds left; `0` for a token that never expires (root).
    #[serde(default)]
    ttl: u64,
    /// Whether `renew-self` may extend it.
    #[serde(default)]
    renewable: bool,
    /// The TTL it was created (or last renewed) with, in seconds.
    #[serde(default)]
    creation_ttl: u64,
}

/// What Vault said about a token.
enum Lookup {
    /// The token is valid.
    Alive(TokenInfo),
    /// Vault refused the token itself (expired, revoked, or without the `default` policy).
    Refused,
    /// No verdict (unreachable, 5xx, unreadable answer).
    Unavailable(VaultError),
}

/// The token currently in use and, for login tokens, when it should be replaced.
struct TokenState {
    token: SecretString,
    renew_at: Option<Instant>,
}

/// Holds the Vault token for one configuration and obtains a new one when needed.
///
/// Logins are single-flight: the state sits behind one async mutex held across the login call,
/// so concurrent callers whose token was refused wait for one login and then share its token.
pub struct Session {
    http: Transport,
    method: AuthMethod,
    aws_credentials: Option<SharedCredentialsProvider>,
    state: Mutex<Option<TokenState>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let has_token = self.state.try_lock().map(|s| s.is_some()).ok();
        f.debug_struct("Session")
            .field("method", &self.method)
            .field("namespace", &self.http.namespace())
            .field(
                "token",
                &match has_token {
                    Some(true) => "[REDACTED]",
                    Some(false) => "none",
                    None => "[busy]",
                },
            )
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for `settings.addr` / `settings.namespace` (logins happen inside the
    /// namespace). `client` must have redirects disabled (see [`super::http_client`]).
    /// Nothing is sent until the first [`Session::token`] or [`Session::login`].
    pub fn new(
        client: reqwest::Client,
        settings: &super::VaultSettings,
        method: AuthMethod,
    ) -> Self {
        Self {
            http: Transport::new(client, settings.addr.clone(), settings.namespace.clone()),
            method,
            aws_credentials: None,
            state: Mutex::new(None),
        }
    }

    /// Supplies the AWS credentials used to sign the IAM login (in Lambda: from `aws_config`).
    pub fn with_aws_credentials(mut self, provider: SharedCredentialsProvider) -> Self {
        self.aws_credentials = Some(provider);
        self
    }

    /// The configured auth method.
    pub fn method(&self) -> &AuthMethod {
        &self.method
    }

    /// Logs in now (replacing any current token). For [`AuthMethod::Token`] this just installs
    /// the token.
    pub async fn login(&self) -> Result<(), VaultError> {
        self.login_until(None).await
    }

    /// [`Session::login`] bounded by a deadline.
    pub async fn login_until(&self, deadline: Option<Instant>) -> Result<(), VaultError> {
        let mut state = self.state.lock().await;
        *state = Some(self.do_login(deadline).await?);
        Ok(())
    }

    /// The token to send, logging in first if there is none yet or the login lease is about to
    /// end.
    pub async fn token(&self) -> Result<SecretString, VaultError> {
        self.token_until(None).await
    }

    /// [`Session::token`] bounded by a deadline.
    pub async fn token_until(&self, deadline: Option<Instant>) -> Result<SecretString, VaultError> {
        let mut state = self.state.lock().await;
        let fresh = match state.as_ref() {
            Some(s) => s.renew_at.is_none_or(|at| Instant::now() < at),
            None => false,
        };
        if !fresh {
            *state = Some(self.do_login(deadline).await?);
        }
        Ok(state.as_ref().expect("set above").token.clone())
    }

    /// Called after `refused` got a `403`. Returns `Ok(true)` when a different token is now
    /// current (someone else already logged in again, or this call did), so the request is
    /// worth repeating once; `Ok(false)` when logging in again cannot help: a static token, or
    /// a token that `lookup-self` shows is still alive (the 403 is then a policy denial).
    pub async fn relogin(&self, refused: &SecretString) -> Result<bool, VaultError> {
        self.relogin_until(refused, None).await
    }

    /// [`Session::relogin`] bounded by a deadline.
    pub async fn relogin_until(
        &self,
        refused: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<bool, VaultError> {
        if matches!(self.method, AuthMethod::Token(_)) {
            // A static token cannot be replaced; tell an expired or revoked token (Vault
            // refuses the token itself) from a policy that does not allow the operation.
            return match self.lookup_self(refused, deadline).await {
                Lookup::Refused => Err(VaultError::TokenExpired),
                Lookup::Alive(_) | Lookup::Unavailable(_) => Ok(false),
            };
        }
        let mut state = self.state.lock().await;
        if let Some(s) = state.as_ref()
            && s.token.expose_secret() != refused.expose_secret()
        {
            return Ok(true);
        }
        if self.token_is_alive(refused, deadline).await {
            // The token is valid: the 403 is a policy decision a new login would not change,
            // and logging in would only leave another live token behind.
            return Ok(false);
        }
        tracing::info!(method = %self.method.label(), "Vault refused the token; logging in again");
        *state = Some(self.do_login(deadline).await?);
        Ok(true)
    }

    /// Revokes a token obtained by login (`auth/token/revoke-self`) and forgets it; a static
    /// token is left alone. Call at the end of an invocation so short-lived tokens do not pile up.
    pub async fn revoke(&self) -> Result<(), VaultError> {
        if matches!(self.method, AuthMethod::Token(_)) {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let Some(current) = state.take() else {
            return Ok(());
        };
        let path = "auth/token/revoke-self";
        let resp = self
            .token_call(Method::POST, path, "revoke", &current.token, None)
            .await?;
        if resp.status.is_success() || resp.status == StatusCode::FORBIDDEN {
            // 403: already revoked or expired.
            Ok(())
        } else {
            Err(resp.api_error("revoke", path))
        }
    }

    /// One of the `auth/token/*-self` calls about `token` itself: idempotent, without a body
    /// (Vault takes an empty body as `{}`).
    async fn token_call(
        &self,
        method: Method,
        path: &'static str,
        op: &'static str,
        token: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<super::http::Resp, VaultError> {
        self.http
            .send(
                &Req {
                    method,
                    url: self.http.url(&[path]),
                    body: None,
                    token: Some(token),
                    idempotent: true,
                    op,
                    path,
                },
                deadline,
            )
            .await
    }

    /// `auth/token/lookup-self` with `token`: `true` only on success (any failure, including a
    /// token without the default policy, counts as "not known to be alive").
    async fn token_is_alive(&self, token: &SecretString, deadline: Option<Instant>) -> bool {
        matches!(self.lookup_self(token, deadline).await, Lookup::Alive(_))
    }

    /// Asks Vault about `token` itself (`auth/token/lookup-self`, allowed by the `default`
    /// policy). The answer's body holds the token itself (`data.id`): only the fields of
    /// [`TokenInfo`] are read from it, and it is never logged.
    async fn lookup_self(&self, token: &SecretString, deadline: Option<Instant>) -> Lookup {
        let path = "auth/token/lookup-self";
        let resp = self
            .token_call(Method::GET, path, "token lookup", token, deadline)
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Lookup::Unavailable(e),
        };
        if resp.status == StatusCode::FORBIDDEN || resp.status == StatusCode::UNAUTHORIZED {
            return Lookup::Refused;
        }
        if !resp.status.is_success() {
            return Lookup::Unavailable(resp.api_error("token lookup", path));
        }
        #[derive(serde::Deserialize)]
        struct Body {
            data: TokenInfo,
        }
        match serde_json::from_slice::<Body>(&resp.body) {
            Ok(b) => Lookup::Alive(b.data),
            Err(e) => Lookup::Unavailable(VaultError::Decode {
                op: "token lookup",
                path: path.to_owned(),
                detail: super::describe_json_error(&e),
            }),
        }
    }

    /// Checks a static `VAULT_TOKEN` before first use: a renewable token past half its TTL is
    /// renewed (`auth/token/renew-self`), so a token used by a daily schedule never runs out; a
    /// token that cannot be renewed and ends within a week is logged as a warning. A token
    /// Vault refuses to describe is used unchecked: a request it refuses as well is then
    /// [`VaultError::TokenExpired`]. The state is checked again after half the remaining TTL in
    /// a long-lived process.
    async fn check_static(
        &self,
        token: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<TokenState, VaultError> {
        let started = Instant::now();
        let info = match self.lookup_self(token, deadline).await {
            // Expired, revoked, or valid without the `default` policy: only the requests tell.
            // A request refused too is then reported as `TokenExpired` (see `relogin_until`).
            Lookup::Refused => {
                tracing::warn!(
                    "Vault refused lookup-self for VAULT_TOKEN (expired, revoked, or without the `default` policy); using it unchecked"
                );
                return Ok(TokenState {
                    token: token.clone(),
                    renew_at: Some(started + RECHECK_AFTER_FAILED_LOOKUP),
                });
            }
            Lookup::Unavailable(e) => {
                // Not a verdict on the token: use it and let the requests themselves tell.
                tracing::warn!(error = %e, "could not look up VAULT_TOKEN; using it unchecked");
                return Ok(TokenState {
                    token: token.clone(),
                    renew_at: Some(started + RECHECK_AFTER_FAILED_LOOKUP),
                });
            }
            Lookup::Alive(info) => info,
        };
        let mut ttl = info.ttl;
        let past_half = info.creation_ttl == 0 || ttl.saturating_mul(2) < info.creation_ttl;
        if info.renewable && ttl > 0 && past_half {
            match self.renew_self(token, deadline).await {
                Ok(new_ttl) => {
                    tracing::info!(
                        ttl_seconds_before = ttl,
                        ttl_seconds = new_ttl,
                        "renewed VAULT_TOKEN"
                    );
                    ttl = new_ttl;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ttl_seconds = ttl, "could not renew VAULT_TOKEN; it stays valid until its TTL ends")
                }
            }
        }
        if ttl > 0 && ttl < STATIC_TOKEN_WARNING.as_secs() && !info.renewable {
            tracing::warn!(
                ttl_seconds = ttl,
                "VAULT_TOKEN cannot be renewed and expires soon: issue a new token and update VAULT_TOKEN"
            );
        }
        Ok(TokenState {
            token: token.clone(),
            renew_at: (ttl > 0).then(|| started + Duration::from_secs(ttl / 2)),
        })
    }

    /// `auth/token/renew-self`; returns the new TTL in seconds.
    async fn renew_self(
        &self,
        token: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<u64, VaultError> {
        let path = "auth/token/renew-self";
        let resp = self
            .token_call(Method::POST, path, "token renewal", token, deadline)
            .await?;
        if !resp.status.is_success() {
            return Err(resp.api_error("token renewal", path));
        }
        #[derive(serde::Deserialize)]
        struct Body {
            auth: Auth,
        }
        #[derive(serde::Deserialize)]
        struct Auth {
            #[serde(default)]
            lease_duration: u64,
        }
        serde_json::from_slice::<Body>(&resp.body)
            .map(|b| b.auth.lease_duration)
            .map_err(|e| VaultError::Decode {
                op: "token renewal",
                path: path.to_owned(),
                detail: super::describe_json_error(&e),
            })
    }

    async fn do_login(&self, deadline: Option<Instant>) -> Result<TokenState, VaultError> {
        let (path, body) = match &self.method {
            AuthMethod::Token(t) => return self.check_static(t, deadline).await,
            AuthMethod::AppRole { role_id, secret_id } => (
                "auth/approle/login".to_owned(),
                json!({"role_id": role_id, "secret_id": secret_id.expose_secret()}),
            ),
            AuthMethod::Aws {
                role,
                mount,
                server_id,
                region,
            } => {
                let provider = self.aws_credentials.as_ref().ok_or_else(|| {
                    VaultError::InvalidConfig(
                        "VAULT_AUTH_METHOD=aws needs AWS credentials, but none were supplied to the session".into(),
                    )
                })?;
                let creds = provider.provide_credentials().await.map_err(|e| {
                    VaultError::Aws(format!(
                        "could not load AWS credentials to sign the login: {e}"
                    ))
                })?;
                let body = build_iam_login_body(
                    &creds,
                    role,
                    server_id.as_deref(),
                    region,
                    SystemTime::now(),
                )?;
                (format!("auth/{}/login", mount.trim_matches('/')), body)
            }
        };
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(&body).expect("serialising a JSON value cannot fail"),
        );
        drop(body);
        let started = Instant::now();
        let resp = self
            .http
            .send(
                &Req {
                    method: Method::POST,
                    url: self.http.url(&[&path]),
                    body: Some((&bytes, "application/json")),
                    token: None,
                    idempotent: false,
                    op: "login",
                    path: &path,
                },
                deadline,
            )
            .await?;
        let label = self.method.label();
        if !resp.status.is_success() {
            let hint = match resp.status.as_u16() {
                400 | 401 | 403 => match &self.method {
                    AuthMethod::AppRole { .. } => {
                        "check VAULT_ROLE_ID / VAULT_SECRET_ID (expired or used-up secret_id?) and the AppRole mount"
                    }
                    AuthMethod::Aws { .. } => {
                        "check VAULT_AWS_ROLE, bound_iam_principal_arn, VAULT_IAM_SERVER_ID and the STS region Vault expects"
                    }
                    AuthMethod::Token(_) => "check VAULT_TOKEN",
                },
                404 => {
                    "the auth method is not enabled at this mount (check VAULT_AWS_MOUNT / VAULT_NAMESPACE)"
                }
                _ => "Vault could not complete the login; retry later",
            };
            return Err(VaultError::Login {
                method: label,
                messages: resp.messages(),
                hint,
            });
        }
        #[derive(serde::Deserialize)]
        struct LoginBody {
            auth: Option<LoginAuth>,
        }
        #[derive(serde::Deserialize)]
        struct LoginAuth {
            client_token: SecretString,
            #[serde(default)]
            lease_duration: u64,
        }
        let parsed: LoginBody =
            serde_json::from_slice(&resp.body).map_err(|e| VaultError::Decode {
                op: "login",
                path: path.clone(),
                detail: super::describe_json_error(&e),
            })?;
        let auth = parsed.auth.ok_or_else(|| VaultError::Decode {
            op: "login",
            path: path.clone(),
            detail: "no `auth` object in the login answer".into(),
        })?;
        let renew_at = (auth.lease_duration > 0).then(|| {
            let lease = Duration::from_secs(auth.lease_duration);
            started + lease.saturating_sub(RENEW_MARGIN.min(lease / 2))
        });
        tracing::info!(method = %label, lease_seconds = auth.lease_duration, "logged in to Vault");
        Ok(TokenState {
            token: auth.client_token,
            renew_at,
        })
    }
}

/// Builds the body of `POST /v1/auth/{mount}/login` for the AWS IAM method: an STS
/// `GetCallerIdentity` request to [`sts_url`]`(region)`, SigV4-signed (service `sts`, `region`) at `now`
/// with `creds`, base64-encoded for Vault to replay. Signed headers: `host`, `content-type`,
/// `x-amz-date`, `x-amz-security-token` (when the credentials carry a session token, as Lambda's
/// do) and `X-Vault-AWS-IAM-Server-ID` when `server_id` is set. Pure, for unit tests.
///
/// The result contains the signature and session token: treat it as secret.
pub fn build_iam_login_body(
    creds: &Credentials,
    role: &str,
    server_id: Option<&str>,
    region: &str,
    now: SystemTime,
) -> Result<Value, VaultError> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(VaultError::InvalidConfig(format!(
            "VAULT_AWS_STS_REGION {:?} is not an AWS region name (e.g. eu-west-1)",
            crate::secret::redact_text(region, 64)
        )));
    }
    let sts = sts_url(region);
    let host = url::Url::parse(&sts)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .expect("a region of [a-z0-9-] makes a valid host name");
    let mut headers: Vec<(String, String)> = vec![
        ("host".to_owned(), host),
        ("content-type".to_owned(), STS_CONTENT_TYPE.to_owned()),
    ];
    if let Some(id) = server_id {
        headers.push((IAM_SERVER_ID_HEADER.to_ascii_lowercase(), id.to_owned()));
    }
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| VaultError::Aws(format!("cannot prepare SigV4 signing: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &sts,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(STS_BODY.as_bytes()),
    )
    .map_err(|e| VaultError::Aws(format!("cannot build the STS request to sign: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| VaultError::Aws(format!("SigV4 signing of the STS request failed: {e}")))?
        .into_parts();
    for (name, value) in instructions.headers() {
        headers.push((name.to_owned(), value.to_owned()));
    }
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        header_map.insert(name, json!([value]));
    }
    let header_json = serde_json::to_vec(&Value::Object(header_map)).expect("JSON of strings");
    Ok(json!({
        "role": role,
        "iam_http_request_method": "POST",
        "iam_request_url": B64.encode(&sts),
        "iam_request_body": B64.encode(STS_BODY),
        "iam_request_headers": B64.encode(header_json),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(v: &Value, field: &str) -> Vec<u8> {
        B64.decode(v[field].as_str().unwrap()).unwrap()
    }

    #[test]
    fn iam_body_shape() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "secretkey",
            Some("sessiontok".into()),
            None,
            "test",
        );
        let body = build_iam_login_body(
            &creds,
            "dt-rotator",
            Some("vault.example.com"),
            "us-east-1",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        assert_eq!(body["role"], "dt-rotator");
        assert_eq!(body["iam_http_request_method"], "POST");
        assert_eq!(decode(&body, "iam_request_url"), STS_URL.as_bytes());
        assert_eq!(decode(&body, "iam_request_body"), STS_BODY.as_bytes());
        let headers: serde_json::Map<String, Value> =
            serde_json::from_slice(&decode(&body, "iam_request_headers")).unwrap();
        assert_eq!(headers["host"][0], "sts.amazonaws.com");
        assert_eq!(headers["content-type"][0], STS_CONTENT_TYPE);
        assert_eq!(headers["x-vault-aws-iam-server-id"][0], "vault.example.com");
        assert_eq!(headers["x-amz-security-token"][0], "sessiontok");
        assert_eq!(headers["x-amz-date"][0], "20270115T080000Z");
        let auth = headers["authorization"][0].as_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20270115/us-east-1/sts/aws4_request"
            ),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-vault-aws-iam-server-id"),
            "{auth}"
        );
    }

    #[test]
    fn iam_body_without_session_token_or_server_id() {
        let creds = Credentials::new("AKIDEXAMPLE", "secretkey", None, None, "test");
        let body = build_iam_login_body(&creds, "r", None, "eu-west-1", SystemTime::now()).unwrap();
        let headers: serde_json::Map<String, Value> =
            serde_json::from_slice(&decode(&body, "iam_request_headers")).unwrap();
        assert!(!headers.contains_key("x-amz-security-token"));
        assert!(!headers.contains_key("x-vault-aws-iam-server-id"));
        let auth = headers["authorization"][0].as_str().unwrap();
        assert!(auth.contains("/eu-west-1/sts/aws4_request"));
        // Signed for a region, addressed to that region's endpoint (host is a signed header).
        assert_eq!(
            decode(&body, "iam_request_url"),
            b"https://sts.eu-west-1.amazonaws.com/"
        );
        assert_eq!(headers["host"][0], "sts.eu-west-1.amazonaws.com");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date,"),
            "{auth}"
        );
    }

    #[test]
    fn sts_endpoint_follows_the_region() {
        assert_eq!(sts_url("us-east-1"), STS_URL);
        assert_eq!(
            sts_url("eu-central-1"),
            "https://sts.eu-central-1.amazonaws.com/"
        );
        assert_eq!(
            sts_url("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        let creds = Credentials::new("AKIDEXAMPLE", "secretkey", None, None, "test");
        assert!(build_iam_login_body(&creds, "r", None, "bad/region", SystemTime::now()).is_err());
    }

    #[test]
    fn debug_redacts() {
        let m = AuthMethod::AppRole {
            role_id: "role".into(),
            secret_id: SecretString::from("very-secret-id"),
        };
        assert!(!format!("{m:?}").contains("very-secret-id"));
        let t = AuthMethod::Token(SecretString::from("hvs.tokentoken"));
        assert!(!format!("{t:?}").contains("hvs.tokentoken"));
    }
}
