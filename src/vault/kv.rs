//! KV version 2 over HTTP: versioned reads that tell "missing" from "soft-deleted", CAS
//! writes that tell a conflict from other `400`s, recursive listing, and `custom_metadata`.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::auth::Session;
use super::http::{Req, Resp, Transport};
use super::{VaultError, VaultSettings, describe_json_error, validate_path_segments};

/// The exact server message of a check-and-set mismatch (HTTP 400).
pub const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// Outcome of reading the latest (or a given) version of a key.
#[derive(Debug)]
pub enum KvRead {
    /// Nothing there (`404 {"errors":[]}`): the next CAS write uses `0`.
    Missing,
    /// The key exists but the version read is soft-deleted or destroyed (`404` with
    /// `data.metadata`); its value is unreadable. The next CAS write uses `version`.
    Deleted {
        /// The key's current version (the deleted one).
        version: u64,
    },
    /// A readable version.
    Present(KvEntry),
}

/// One readable version of a key. `Debug` shows the version and key *names* only: values are
/// secrets.
#[derive(Clone, PartialEq)]
pub struct KvEntry {
    /// Version number; the CAS value for the next write.
    pub version: u64,
    /// The stored JSON object.
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for KvEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvEntry")
            .field("version", &self.version)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Outcome of a check-and-set write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasWrite {
    /// Stored as `version`.
    Written {
        /// The new version (the CAS value for the write after this one).
        version: u64,
    },
    /// Another writer changed the key first (exact CAS-mismatch message): re-read, then decide.
    Conflict,
}

/// A KV v2 client for one mount. Cheap to clone; clones share the HTTP client and session.
#[derive(Clone)]
pub struct KvClient {
    http: Transport,
    settings: VaultSettings,
    session: Arc<Session>,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for KvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvClient")
            .field("settings", &self.settings)
            .field("session", &self.session)
            .field("deadline", &self.deadline)
            .finish()
    }
}

#[derive(Deserialize)]
struct DataEnvelope<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
struct ReadData {
    data: Option<Map<String, Value>>,
    metadata: Option<VersionMeta>,
}

#[derive(Deserialize)]
struct VersionMeta {
    version: u64,
}

#[derive(Deserialize)]
struct ListData {
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct MetadataData {
    #[serde(default)]
    custom_metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct MountData {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

impl KvClient {
    /// A client for `settings.mount`. `client` must have redirects disabled (see
    /// [`super::http_client`]); `session` supplies the token and re-logins.
    pub fn new(client: reqwest::Client, settings: VaultSettings, session: Arc<Session>) -> Self {
        Self {
            http: Transport::new(client, settings.addr.clone(), settings.namespace.clone()),
            settings,
            session,
            deadline: None,
        }
    }

    /// A clone whose requests (retries and re-logins included) stop at `deadline`, e.g. the
    /// Lambda invocation deadline minus a safety margin.
    pub fn with_deadline(&self, deadline: Option<Instant>) -> Self {
        Self {
            deadline,
            ..self.clone()
        }
    }

    /// A clone whose requests each time out after `timeout` (default 10 s) and are then
    /// repeated or reported as unclear; retries still stop at the deadline.
    pub fn with_request_timeout(&self, timeout: std::time::Duration) -> Self {
        Self {
            http: self.http.with_request_timeout(timeout),
            ..self.clone()
        }
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    /// The session supplying tokens.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Reads the latest version of `path` (relative to the mount, e.g. `dynatrace/app1`).
    pub async fn read(&self, path: &str) -> Result<KvRead, VaultError> {
        self.read_inner(path, None).await
    }

    /// Reads a specific `version` of `path`.
    pub async fn read_version(&self, path: &str, version: u64) -> Result<KvRead, VaultError> {
        self.read_inner(path, Some(version)).await
    }

    async fn read_inner(&self, path: &str, version: Option<u64>) -> Result<KvRead, VaultError> {
        let path = key_path(path)?;
        let mut url = self.http.url(&[&self.settings.mount, "data", path]);
        if let Some(v) = version {
            url.query_pairs_mut().append_pair("version", &v.to_string());
        }
        let resp = self
            .execute("read", path, Method::GET, url, None, true)
            .await?;
        match resp.status {
            s if s.is_success() => {
                let env: DataEnvelope<ReadData> = decode(&resp, "read", path)?;
                let d = env
                    .data
                    .ok_or_else(|| missing_field("read", path, "data"))?;
                let version = d
                    .metadata
                    .ok_or_else(|| missing_field("read", path, "data.metadata"))?
                    .version;
                Ok(match d.data {
                    Some(data) => KvRead::Present(KvEntry { version, data }),
                    None => KvRead::Deleted { version },
                })
            }
            StatusCode::NOT_FOUND => {
                if let Ok(DataEnvelope {
                    data:
                        Some(ReadData {
                            metadata: Some(m), ..
                        }),
                }) = serde_json::from_slice::<DataEnvelope<ReadData>>(&resp.body)
                {
                    return Ok(KvRead::Deleted { version: m.version });
                }
                self.not_found(&resp, "read", path)
                    .map(|()| KvRead::Missing)
            }
            _ => Err(resp.api_error("read", path)),
        }
    }

    /// Writes `data` as a new version of `path` if the key's current version is `cas`
    /// (`0`: only if it does not exist yet). Not repeated after a transport error (the write
    /// may have landed): that returns [`VaultError::Transport`], and the caller should re-read.
    /// A [`CasWrite::Conflict`] after a retried `429`/`412`/`503` cannot be our own write.
    pub async fn write_cas(
        &self,
        path: &str,
        data: &Map<String, Value>,
        cas: u64,
    ) -> Result<CasWrite, VaultError> {
        let path = key_path(path)?;
        let url = self.http.url(&[&self.settings.mount, "data", path]);
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&json!({"options": {"cas": cas}, "data": data}))
                .expect("serialising a JSON map cannot fail"),
        );
        let resp = self
            .execute(
                "write",
                path,
                Method::POST,
                url,
                Some((&body, "application/json")),
                false,
            )
            .await?;
        match resp.status {
            s if s.is_success() => {
                let env: DataEnvelope<VersionMeta> = decode(&resp, "write", path)?;
                let meta = env
                    .data
                    .ok_or_else(|| missing_field("write", path, "data"))?;
                Ok(CasWrite::Written {
                    version: meta.version,
                })
            }
            StatusCode::BAD_REQUEST => {
                let messages = resp.messages();
                if messages.iter().any(|m| m == CAS_MISMATCH) {
                    Ok(CasWrite::Conflict)
                } else {
                    Err(resp.api_error("write", path))
                }
            }
            StatusCode::NOT_FOUND => {
                self.not_found(&resp, "write", path)?;
                Err(resp.api_error("write", path))
            }
            _ => Err(resp.api_error("write", path)),
        }
    }

    /// Lists one folder (`metadata/<folder>`): key names, sub-folders ending in `/`. An empty or
    /// absent folder is an empty list.
    pub async fn list(&self, folder: &str) -> Result<Vec<String>, VaultError> {
        let folder = folder_path(folder)?;
        let mut url = self.http.url(&[&self.settings.mount, "metadata", &folder]);
        url.query_pairs_mut().append_pair("list", "true");
        let resp = self
            .execute("list", &folder, Method::GET, url, None, true)
            .await?;
        match resp.status {
            s if s.is_success() => {
                let env: DataEnvelope<ListData> = decode(&resp, "list", &folder)?;
                Ok(env.data.map(|d| d.keys).unwrap_or_default())
            }
            StatusCode::NOT_FOUND => {
                self.not_found(&resp, "list", &folder)?;
                Ok(Vec::new())
            }
            _ => Err(resp.api_error("list", &folder)),
        }
    }

    /// All keys under `prefix` (`""` = the whole mount), walking sub-folders, as full paths
    /// relative to the mount (e.g. `dynatrace/app1`), sorted. A prefix without a trailing `/`
    /// is treated as a folder.
    pub async fn list_recursive(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        let root = folder_path(prefix)?;
        let mut pending = vec![root];
        let mut keys = Vec::new();
        while let Some(folder) = pending.pop() {
            for name in self.list(&folder).await? {
                if name.is_empty() || name == "/" {
                    continue;
                }
                let full = format!("{folder}{name}");
                if name.ends_with('/') {
                    pending.push(full);
                } else {
                    keys.push(full);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The key's `custom_metadata` (descriptive tags, not secrets); `None` if the key has no
    /// metadata at all.
    pub async fn custom_metadata(
        &self,
        path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, VaultError> {
        let path = key_path(path)?;
        let url = self.http.url(&[&self.settings.mount, "metadata", path]);
        let resp = self
            .execute("read metadata", path, Method::GET, url, None, true)
            .await?;
        match resp.status {
            s if s.is_success() => {
                let env: DataEnvelope<MetadataData> = decode(&resp, "read metadata", path)?;
                Ok(Some(
                    env.data.and_then(|d| d.custom_metadata).unwrap_or_default(),
                ))
            }
            StatusCode::NOT_FOUND => {
                self.not_found(&resp, "read metadata", path)?;
                Ok(None)
            }
            _ => Err(resp.api_error("read metadata", path)),
        }
    }

    /// Merges `changes` into the key's `custom_metadata` (JSON merge patch: `Some` sets a tag,
    /// `None` removes it). The key must exist ([`VaultError::NotFound`] otherwise).
    pub async fn patch_custom_metadata(
        &self,
        path: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<(), VaultError> {
        let path = key_path(path)?;
        let url = self.http.url(&[&self.settings.mount, "metadata", path]);
        let body = serde_json::to_vec(&json!({ "custom_metadata": changes }))
            .expect("serialising a JSON map cannot fail");
        let resp = self
            .execute(
                "patch metadata",
                path,
                Method::PATCH,
                url,
                Some((&body, "application/merge-patch+json")),
                true,
            )
            .await?;
        match resp.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => {
                self.not_found(&resp, "patch metadata", path)?;
                Err(VaultError::NotFound {
                    mount: self.settings.mount.clone(),
                    path: path.to_owned(),
                })
            }
            _ => Err(resp.api_error("patch metadata", path)),
        }
    }

    /// The KV version of `mount` from `GET /v1/sys/internal/ui/mounts/{mount}`: `Some(2)` for
    /// KV v2, `Some(1)` for KV v1; `None` when the mount is not a KV engine or the (internal,
    /// unguaranteed) endpoint is unavailable or refused. Transport errors and deadlines are
    /// still errors.
    pub async fn mount_version(&self, mount: &str) -> Result<Option<u8>, VaultError> {
        Ok(match self.mount_info(mount).await? {
            Some((kind, version)) if kind == "kv" || kind == "generic" => Some(version),
            _ => None,
        })
    }

    /// Refuses a configured mount that is known not to be KV v2 ([`VaultError::NotKvV2`]);
    /// tolerates an unknown answer (the first KV call will then tell).
    pub async fn ensure_kv_v2(&self) -> Result<(), VaultError> {
        let mount = self.settings.mount.clone();
        match self.mount_info(&mount).await? {
            Some((kind, 2)) if kind == "kv" => Ok(()),
            Some((kind, version)) if kind == "kv" || kind == "generic" => {
                Err(VaultError::NotKvV2 {
                    mount,
                    kind: format!("KV version {version}"),
                })
            }
            Some((kind, _)) => Err(VaultError::NotKvV2 {
                mount,
                kind: format!("a {kind:?} secrets engine"),
            }),
            None => Ok(()),
        }
    }

    async fn mount_info(&self, mount: &str) -> Result<Option<(String, u8)>, VaultError> {
        let mount = mount.trim_matches('/');
        validate_path_segments(mount).map_err(|reason| VaultError::InvalidPath {
            path: mount.to_owned(),
            reason,
        })?;
        let url = self.http.url(&["sys/internal/ui/mounts", mount]);
        let resp = match self
            .execute("mount info", mount, Method::GET, url, None, true)
            .await
        {
            Ok(r) => r,
            Err(VaultError::PermissionDenied { .. } | VaultError::Api { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !resp.status.is_success() {
            tracing::debug!(
                mount,
                status = resp.status.as_u16(),
                "mount info unavailable; KV version unknown"
            );
            return Ok(None);
        }
        let Ok(env) = serde_json::from_slice::<DataEnvelope<MountData>>(&resp.body) else {
            return Ok(None);
        };
        let Some(d) = env.data else { return Ok(None) };
        let version = match d.options.as_ref().and_then(|o| o.get("version")) {
            Some(Value::String(s)) => s.parse::<u8>().unwrap_or(1),
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u8::try_from(n).ok()).unwrap_or(1),
            _ => 1,
        };
        Ok(Some((d.kind, version)))
    }

    /// Sends a request with the session token; on `403` logs in again once (single-flight in
    /// the session; skipped when the token is still alive) and repeats; a second `403` is
    /// [`VaultError::PermissionDenied`].
    async fn execute(
        &self,
        op: &'static str,
        path: &str,
        method: Method,
        url: url::Url,
        body: Option<(&[u8], &'static str)>,
        idempotent: bool,
    ) -> Result<Resp, VaultError> {
        let mut token = self.session.token_until(self.deadline).await?;
        let mut relogged = false;
        loop {
            let resp = self
                .http
                .send(
                    &Req {
                        method: method.clone(),
                        url: url.clone(),
                        body,
                        token: Some(&token),
                        idempotent,
                        op,
                        path,
                    },
                    self.deadline,
                )
                .await?;
            if resp.status != StatusCode::FORBIDDEN {
                return Ok(resp);
            }
            if !relogged && self.session.relogin_until(&token, self.deadline).await? {
                relogged = true;
                token = self.session.token_until(self.deadline).await?;
                continue;
            }
            return Err(VaultError::PermissionDenied {
                op,
                path: format!("{}/{}", self.settings.mount, path),
                messages: resp.messages(),
            });
        }
    }

    /// Classifies a `404`: `Ok(())` for an empty error envelope (nothing there),
    /// [`VaultError::NoMount`] for `no handler for route`, otherwise the server's error.
    fn not_found(&self, resp: &Resp, op: &'static str, path: &str) -> Result<(), VaultError> {
        match resp.error_envelope() {
            Some(messages) if messages.is_empty() => Ok(()),
            Some(messages) if messages.iter().any(|m| m.contains("no handler for route")) => {
                Err(VaultError::NoMount {
                    mount: self.settings.mount.clone(),
                    namespace: self.settings.namespace.clone(),
                })
            }
            // An empty body (e.g. PATCH of a missing key) also means "nothing there".
            None if resp.body.iter().all(u8::is_ascii_whitespace) => Ok(()),
            _ => Err(resp.api_error(op, path)),
        }
    }
}

fn decode<'a, T: Deserialize<'a>>(
    resp: &'a Resp,
    op: &'static str,
    path: &str,
) -> Result<T, VaultError> {
    serde_json::from_slice(&resp.body).map_err(|e| VaultError::Decode {
        op,
        path: path.to_owned(),
        detail: describe_json_error(&e),
    })
}

fn missing_field(op: &'static str, path: &str, field: &str) -> VaultError {
    VaultError::Decode {
        op,
        path: path.to_owned(),
        detail: format!("no `{field}` in the answer"),
    }
}

/// A key path: no leading/trailing slash, non-empty, no `.`/`..`/empty segments.
fn key_path(path: &str) -> Result<&str, VaultError> {
    let trimmed = path.trim_matches('/');
    let invalid = |reason| VaultError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(invalid("the key path is empty"));
    }
    validate_path_segments(trimmed).map_err(invalid)?;
    Ok(trimmed)
}

/// A folder path: `""` (mount root) or `a/b/` with exactly one trailing slash.
fn folder_path(prefix: &str) -> Result<String, VaultError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    validate_path_segments(trimmed).map_err(|reason| VaultError::InvalidPath {
        path: prefix.to_owned(),
        reason,
    })?;
    Ok(format!("{trimmed}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_debug_hides_values() {
        let mut data = Map::new();
        data.insert("token".into(), json!("dt0c01.SECRETSECRET"));
        data.insert("tokenId".into(), json!("dt0c01.PUBLIC"));
        let e = KvEntry { version: 3, data };
        let dbg = format!("{e:?}");
        assert!(dbg.contains("version: 3"));
        assert!(dbg.contains("\"token\""));
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(!dbg.contains("PUBLIC"), "{dbg}");
    }

    #[test]
    fn paths() {
        assert_eq!(key_path("/dynatrace/app1").unwrap(), "dynatrace/app1");
        assert!(key_path("").is_err());
        assert!(key_path("a/../b").is_err());
        assert!(key_path("a//b").is_err());
        assert_eq!(folder_path("").unwrap(), "");
        assert_eq!(folder_path("dynatrace").unwrap(), "dynatrace/");
        assert_eq!(folder_path("dynatrace/").unwrap(), "dynatrace/");
    }
}
