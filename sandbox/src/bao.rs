//! OpenBao (`bao server -dev`) as Vault, with KV, AppRole and policy helpers over plain HTTP.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::process::{Supervised, http_status};
use crate::{Error, Result, free_port, tool};

/// An OpenBao dev server (in memory, unsealed, KV v2 mounted at `secret/`) on a free loopback
/// port, with a random root token; stopped on drop.
///
/// Tests sharing one instance ([`Bao::shared`]) should use unique paths or their own mounts
/// ([`Bao::enable_kv2`]).
pub struct Bao {
    port: u16,
    root_token: String,
    process: Supervised,
}

/// Metadata of a KV v2 secret (`GET <mount>/metadata/<path>`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KvMetadata {
    /// Latest version number.
    pub current_version: u64,
    /// Oldest version still kept.
    pub oldest_version: u64,
    /// Every kept version by number.
    pub versions: BTreeMap<u64, KvVersionMeta>,
}

/// Metadata of one KV v2 version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KvVersionMeta {
    /// RFC 3339 creation time.
    pub created_time: String,
    /// RFC 3339 soft-deletion time, empty when not deleted.
    pub deletion_time: String,
    /// Whether the version was destroyed.
    pub destroyed: bool,
}

impl Bao {
    /// Starts `bao server -dev -dev-root-token-id=<random> -dev-listen-address=127.0.0.1:PORT`
    /// and waits (blocking, up to 60 s) until `/v1/sys/health` answers 200 and the root token is
    /// accepted. Independent of any async runtime.
    pub fn start() -> Result<Self> {
        let program = tool("bao")?;
        let root_token = format!("root-{}", crate::new_uuid());
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let args = [
                "server".to_string(),
                "-dev".to_string(),
                format!("-dev-root-token-id={root_token}"),
                format!("-dev-listen-address=127.0.0.1:{port}"),
                "-log-level=warn".to_string(),
            ];
            // Keep the dev server away from the user's token helper and ~/.vault-token.
            let envs = [
                ("BAO_ADDR".to_string(), format!("http://127.0.0.1:{port}")),
                (
                    "HOME".to_string(),
                    std::env::temp_dir().display().to_string(),
                ),
            ];
            let process = Supervised::spawn("bao", &program, &args, &envs, None)?;
            let token = root_token.clone();
            let ready = process.wait_until(Duration::from_secs(60), || {
                http_status(port, "/v1/sys/health", &[]) == Some(200)
                    // Proves the answer comes from our server, not another one on that port.
                    && http_status(port, "/v1/auth/token/lookup-self", &[("X-Vault-Token", &token)])
                        == Some(200)
            });
            match ready {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        root_token,
                        process,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::new("bao did not start")))
    }

    /// The instance shared by the whole test process, started on first use. Safe to call from
    /// any thread or tokio runtime; it is stopped when the process exits.
    ///
    /// # Panics
    /// When `bao` cannot be started (the message says why, e.g. run `scripts/tools.sh`).
    pub fn shared() -> &'static Bao {
        static SHARED: OnceLock<Bao> = OnceLock::new();
        SHARED.get_or_init(|| match Bao::start() {
            Ok(bao) => bao,
            Err(e) => panic!("cannot start the shared OpenBao dev server: {e}"),
        })
    }

    /// The address, `http://127.0.0.1:PORT` (the value for `VAULT_ADDR`).
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The root token of the dev server.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Path of the file collecting the server's output.
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }

    /// Sends `method path` (relative to `/v1/`) with the root token and optional JSON `body`;
    /// returns status and parsed body (`Value::Null` when empty or not JSON).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        self.request_as(&self.root_token, method, path, body).await
    }

    /// Like [`Bao::request`], authenticated with `token`.
    pub async fn request_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        self.send(token, None, method, path, body).await
    }

    /// Like [`Bao::request`], inside the Vault namespace `namespace` (sent as
    /// `X-Vault-Namespace`), e.g. to mount an engine in a namespace created with
    /// `POST sys/namespaces/<name>`.
    pub async fn request_in(
        &self,
        namespace: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        self.send(&self.root_token, Some(namespace), method, path, body)
            .await
    }

    async fn send(
        &self,
        token: &str,
        namespace: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        // A fresh client per call: tests run on many short-lived runtimes, and a pooled
        // connection cannot outlive the runtime that opened it.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = format!("{}/v1/{}", self.addr(), path.trim_start_matches('/'));
        let mut request = http.request(method, url).header("X-Vault-Token", token);
        if let Some(namespace) = namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Like [`Bao::request`] but fails on a non-2xx status, naming the call and Vault's errors.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, value) = self.request(method.clone(), path, body).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(Error::new(format!(
                "OpenBao {method} /v1/{path} answered {status}: {}",
                value.get("errors").unwrap_or(&Value::Null)
            )))
        }
    }

    /// Writes `data` as a new version of KV v2 secret `mount/path`; returns the version number.
    pub async fn kv_put(&self, mount: &str, path: &str, data: &Value) -> Result<u64> {
        let out = self
            .call(
                Method::POST,
                &format!("{mount}/data/{path}"),
                Some(&json!({ "data": data })),
            )
            .await?;
        version_of(&out["data"])
    }

    /// Writes `data` with check-and-set `cas` (0: only if absent); fails when `cas` does not match
    /// the current version.
    pub async fn kv_put_cas(&self, mount: &str, path: &str, data: &Value, cas: u64) -> Result<u64> {
        let body = json!({ "data": data, "options": { "cas": cas } });
        let out = self
            .call(Method::POST, &format!("{mount}/data/{path}"), Some(&body))
            .await?;
        version_of(&out["data"])
    }

    /// Latest version of KV v2 secret `mount/path` as `(version, data)`; `None` when absent or
    /// its latest version is deleted.
    pub async fn kv_get(&self, mount: &str, path: &str) -> Result<Option<(u64, Value)>> {
        self.kv_read(mount, &format!("{mount}/data/{path}")).await
    }

    /// Version `version` of KV v2 secret `mount/path`; `None` when absent, deleted or destroyed.
    pub async fn kv_get_version(
        &self,
        mount: &str,
        path: &str,
        version: u64,
    ) -> Result<Option<(u64, Value)>> {
        self.kv_read(mount, &format!("{mount}/data/{path}?version={version}"))
            .await
    }

    async fn kv_read(&self, _mount: &str, full_path: &str) -> Result<Option<(u64, Value)>> {
        let (status, value) = self.request(Method::GET, full_path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Error::new(format!(
                "OpenBao GET /v1/{full_path} answered {status}: {}",
                value.get("errors").unwrap_or(&Value::Null)
            )));
        }
        let version = version_of(&value["data"]["metadata"])?;
        Ok(Some((version, value["data"]["data"].clone())))
    }

    /// Metadata (versions) of KV v2 secret `mount/path`; `None` when it does not exist.
    pub async fn kv_versions(&self, mount: &str, path: &str) -> Result<Option<KvMetadata>> {
        let full_path = format!("{mount}/metadata/{path}");
        let (status, value) = self.request(Method::GET, &full_path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Error::new(format!(
                "OpenBao GET /v1/{full_path} answered {status}: {}",
                value.get("errors").unwrap_or(&Value::Null)
            )));
        }
        Ok(Some(serde_json::from_value(value["data"].clone())?))
    }

    /// Soft-deletes the latest version of KV v2 secret `mount/path`.
    pub async fn kv_delete_latest(&self, mount: &str, path: &str) -> Result<()> {
        self.call(Method::DELETE, &format!("{mount}/data/{path}"), None)
            .await?;
        Ok(())
    }

    /// Mounts a KV version 1 engine at `mount`.
    pub async fn enable_kv1(&self, mount: &str) -> Result<()> {
        let body = json!({ "type": "kv", "options": { "version": "1" } });
        self.call(Method::POST, &format!("sys/mounts/{mount}"), Some(&body))
            .await?;
        Ok(())
    }

    /// Mounts a KV version 2 engine at `mount` and waits until it accepts writes (a new KV v2
    /// mount upgrades itself for a moment after creation).
    pub async fn enable_kv2(&self, mount: &str) -> Result<()> {
        let body = json!({ "type": "kv", "options": { "version": "2" } });
        self.call(Method::POST, &format!("sys/mounts/{mount}"), Some(&body))
            .await?;
        for _ in 0..100 {
            let (status, _) = self
                .request(Method::GET, &format!("{mount}/config"), None)
                .await?;
            if status.is_success() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::new(format!(
            "KV v2 mount {mount} did not become ready"
        )))
    }

    /// Creates or replaces ACL policy `name` with HCL `policy`.
    pub async fn put_policy(&self, name: &str, policy: &str) -> Result<()> {
        self.call(
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(&json!({ "policy": policy })),
        )
        .await?;
        Ok(())
    }

    /// Creates a token (TTL 1 h) holding `policies` (plus `default`); returns its value.
    pub async fn create_token(&self, policies: &[&str]) -> Result<String> {
        let body = json!({ "policies": policies, "ttl": "1h" });
        let out = self
            .call(Method::POST, "auth/token/create", Some(&body))
            .await?;
        out["auth"]["client_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::new("token create returned no client_token"))
    }

    /// A token that may only read and list `mount` (KV v2): writes answer 403, for
    /// permission-denied tests.
    pub async fn read_only_token(&self, mount: &str) -> Result<String> {
        let name = format!("read-only-{}", mount.replace('/', "-"));
        let policy = format!(
            "path \"{mount}/data/*\" {{ capabilities = [\"read\", \"list\"] }}\n\
             path \"{mount}/metadata/*\" {{ capabilities = [\"read\", \"list\"] }}\n"
        );
        self.put_policy(&name, &policy).await?;
        self.create_token(&[&name]).await
    }

    /// A token with no access to `mount` at all (only the `default` policy).
    pub async fn no_access_token(&self) -> Result<String> {
        self.create_token(&[]).await
    }

    /// Enables AppRole (at `approle/`) with role `rotator` whose policy allows read, create,
    /// update and list on `secret/data/*` and `secret/metadata/*`; returns `(role_id,
    /// secret_id)`, a new secret id on every call.
    pub async fn enable_approle(&self) -> Result<(String, String)> {
        self.approle_for("secret").await
    }

    /// Like [`Bao::enable_approle`] for the KV v2 mount `mount` (role `rotator-<mount>`).
    pub async fn approle_for(&self, mount: &str) -> Result<(String, String)> {
        let (status, value) = self
            .request(
                Method::POST,
                "sys/auth/approle",
                Some(&json!({ "type": "approle" })),
            )
            .await?;
        let already = value.to_string().contains("already in use");
        if !status.is_success() && !already {
            return Err(Error::new(format!(
                "OpenBao could not enable AppRole ({status}): {}",
                value.get("errors").unwrap_or(&Value::Null)
            )));
        }
        let suffix = mount.replace('/', "-");
        let policy_name = format!("rotator-{suffix}");
        let policy = format!(
            "path \"{mount}/data/*\" {{ capabilities = [\"read\", \"create\", \"update\", \"list\"] }}\n\
             path \"{mount}/metadata/*\" {{ capabilities = [\"read\", \"create\", \"update\", \"list\"] }}\n"
        );
        self.put_policy(&policy_name, &policy).await?;
        let role = format!("rotator-{suffix}");
        let body =
            json!({ "token_policies": [policy_name], "token_ttl": "1h", "token_max_ttl": "4h" });
        self.call(
            Method::POST,
            &format!("auth/approle/role/{role}"),
            Some(&body),
        )
        .await?;
        let out = self
            .call(
                Method::GET,
                &format!("auth/approle/role/{role}/role-id"),
                None,
            )
            .await?;
        let role_id = out["data"]["role_id"]
            .as_str()
            .ok_or_else(|| Error::new("AppRole role-id missing"))?
            .to_string();
        let out = self
            .call(
                Method::POST,
                &format!("auth/approle/role/{role}/secret-id"),
                None,
            )
            .await?;
        let secret_id = out["data"]["secret_id"]
            .as_str()
            .ok_or_else(|| Error::new("AppRole secret-id missing"))?
            .to_string();
        Ok((role_id, secret_id))
    }
}

fn version_of(data: &Value) -> Result<u64> {
    data["version"]
        .as_u64()
        .ok_or_else(|| Error::new("OpenBao answer carries no version"))
}
