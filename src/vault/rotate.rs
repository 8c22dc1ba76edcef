//! The `rotate-vault` action (docs/design.md §6): the function drives the whole rotation of
//! each listed KV v2 secret itself. Per path: read the document and its version, skip it
//! when not due, rotate the token (shared steps of [`crate::rotation`]), write the new
//! document with check-and-set on the version read, then revoke by policy. Paths run
//! concurrently up to `ROTATION_CONCURRENCY`; Dynatrace throttling slows the whole run down
//! through the client's shared back-off instead of failing paths.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

use crate::config::{Config, VaultConfig};
use crate::deadline::Deadline;
use crate::document::SecretDocument;
use crate::dynatrace::{ApiToken, Dynatrace};
use crate::event::VaultAction;
use crate::marker::{self, Marker, VaultScope};
use crate::policy::{self, Expiry, RevokeOld};
use crate::rotation::{self, Attempt, Candidate, Manager, Proof, Replaced, RotationError};
use crate::vault::{CasWrite, KvClient, KvRead, Session, VaultError, VaultSettings};

/// The Vault side of the function, built once per execution environment (the session logs
/// in on first use and again when its token expires or is refused).
#[derive(Clone)]
pub struct VaultBackend {
    /// KV v2 client on the configured mount.
    pub kv: KvClient,
    /// Settings (mount, manager path, paths to rotate).
    pub config: VaultConfig,
}

impl VaultBackend {
    /// Builds the client from the configuration. `aws_credentials` is needed for
    /// `VAULT_AUTH_METHOD=aws` (the Lambda's own credentials).
    pub fn new(
        config: &VaultConfig,
        aws_credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    ) -> Result<Self, VaultError> {
        let settings = VaultSettings::new(
            config.addr.clone(),
            config.namespace.clone(),
            config.kv_mount.clone(),
        )?;
        let http = crate::vault::http_client()?;
        let method = config.auth.clone();
        let mut session = Session::new(http.clone(), &settings, method);
        if let Some(p) = aws_credentials {
            session = session.with_aws_credentials(p);
        }
        Ok(Self {
            kv: KvClient::new(http, settings, Arc::new(session)),
            config: config.clone(),
        })
    }

    /// The marker scope of this deployment: server, namespace and mount.
    pub fn scope(&self) -> VaultScope {
        VaultScope::new(
            self.config.addr.as_str(),
            self.config.namespace.as_deref(),
            &self.config.kv_mount,
        )
    }
}

/// The outcome for one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathStatus {
    /// Rotated now.
    Rotated,
    /// Not rotated (not due, concurrent rotation).
    Skipped,
    /// Failed (reason given).
    Failed,
    /// Dry run: would rotate.
    WouldRotate,
}

/// One line of the summary.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathResult {
    /// The KV path.
    pub path: String,
    /// What happened.
    pub status: PathStatus,
    /// The new (or current) token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The token it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_token_id: Option<String>,
    /// Why it was skipped or failed (secret-free).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PathResult {
    fn new(path: &str, status: PathStatus, reason: Option<String>) -> Self {
        Self {
            path: path.to_owned(),
            status,
            token_id: None,
            previous_token_id: None,
            reason,
        }
    }
    fn failed(path: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(path, PathStatus::Failed, Some(reason.to_string()))
    }
}

/// The JSON summary of a run (docs/design.md §6).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Always `rotate-vault`.
    pub action: &'static str,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Paths rotated.
    pub rotated: usize,
    /// Paths skipped.
    pub skipped: usize,
    /// Paths failed.
    pub failed: usize,
    /// Paths that would rotate (dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_rotate: Option<usize>,
    /// Per path, in path order.
    pub results: Vec<PathResult>,
}

impl Summary {
    fn from_results(dry_run: bool, mut results: Vec<PathResult>) -> Self {
        results.sort_by(|a, b| a.path.cmp(&b.path));
        let count = |s: PathStatus| results.iter().filter(|r| r.status == s).count();
        Self {
            action: "rotate-vault",
            dry_run,
            rotated: count(PathStatus::Rotated),
            skipped: count(PathStatus::Skipped),
            failed: count(PathStatus::Failed),
            would_rotate: dry_run.then(|| count(PathStatus::WouldRotate)),
            results,
        }
    }
}

/// Why a run could not happen at all (configuration, login, manager).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Vault is not configured.
    #[error(
        "Vault is not configured: set VAULT_ADDR (and the VAULT_* settings) to rotate Vault secrets"
    )]
    NotConfigured,
    /// Nothing to rotate was named.
    #[error(
        "no paths to rotate: give `paths` or `prefix` in the event, or set VAULT_ROTATE_PATHS / VAULT_ROTATE_PREFIX"
    )]
    NoPaths,
    /// A path or prefix is unusable.
    #[error("invalid path {path:?}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Vault refused or failed (login, mount, listing).
    #[error("Vault: {0}")]
    Vault(#[from] VaultError),
    /// The manager document is unusable.
    #[error("manager token at {path} is unusable: {reason}")]
    Manager {
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
}

impl RunError {
    /// The `errorType` this failure is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::NotConfigured | RunError::NoPaths => "ConfigError",
            RunError::BadPath { .. } => "MalformedEvent",
            RunError::Vault(v) => v.code(),
            RunError::Manager { .. } => "ManagerUnusable",
        }
    }
}

/// Everything a run shares.
struct Run<'a> {
    config: &'a Config,
    dynatrace: &'a Dynatrace,
    kv: KvClient,
    scope: VaultScope,
    manager: Manager,
    force: bool,
    dry_run: bool,
    deadline: Deadline,
    /// The environment's tokens when the run started (for the clean-up of old mints).
    snapshot: Vec<ApiToken>,
    /// This run rotates the manager document itself (`rotate-manager`): the forbidden-scope
    /// rule does not apply, and old tokens are revoked with the successor (a token cannot
    /// revoke itself).
    manager_rotation: bool,
}

/// Runs a `rotate-vault` action. Returns the summary whenever the run happened (failed paths
/// included); an error only when nothing could run.
pub async fn run(
    config: &Config,
    dt: &Dynatrace,
    backend: &VaultBackend,
    action: &VaultAction,
    deadline: Deadline,
) -> Result<Summary, RunError> {
    let kv = backend.kv.with_deadline(deadline.work_until());
    kv.session().token_until(deadline.work_until()).await?;
    kv.ensure_kv_v2().await?;
    let manager_path = backend.config.manager_path.clone();
    let manager = read_manager(&kv, &manager_path).await?;
    // The Vault listing and the tenant's token listing are independent: both at once.
    let (paths, run) = tokio::try_join!(
        resolve_paths(&kv, backend, action, &manager_path),
        Run::start(config, dt, backend, kv.clone(), manager, action, deadline),
    )?;
    tracing::info!(
        paths = paths.len(),
        dry_run = action.dry_run,
        force = action.force,
        "rotate-vault run"
    );
    let results: Vec<PathResult> = futures::stream::iter(paths)
        .map(|p| {
            let run = &run;
            async move { run.rotate_path(&p).await }
        })
        .buffer_unordered(path_concurrency(dt.max_in_flight()))
        .collect()
        .await;
    let summary = Summary::from_results(action.dry_run, results);
    Ok(summary)
}

/// Runs `rotate-manager`: rotates the manager document at `VAULT_MANAGER_PATH` by the
/// ordinary recipe (mint with the old manager, prove, CAS-write, read back), always (an
/// operator action is never "not due"), with the token-management scopes of the old manager
/// (the forbidden-scope rule does not apply to manager documents); old managers are revoked
/// per `DT_REVOKE_OLD` **with the successor**. The summary has the one path; an error only
/// when nothing could run.
pub async fn rotate_manager(
    config: &Config,
    dt: &Dynatrace,
    backend: &VaultBackend,
    dry_run: bool,
    deadline: Deadline,
) -> Result<Summary, RunError> {
    let kv = backend.kv.with_deadline(deadline.work_until());
    kv.session().token_until(deadline.work_until()).await?;
    kv.ensure_kv_v2().await?;
    let manager_path = backend.config.manager_path.clone();
    let manager = read_manager(&kv, &manager_path).await?;
    let action = VaultAction {
        action: "rotate-manager".into(),
        force: true,
        dry_run,
        ..VaultAction::default()
    };
    let mut run = Run::start(config, dt, backend, kv, manager, &action, deadline).await?;
    run.manager_rotation = true;
    tracing::info!(path = %manager_path, dry_run, "rotate-manager run");
    let result = run.rotate_path(&manager_path).await;
    let mut summary = Summary::from_results(dry_run, vec![result]);
    summary.action = "rotate-manager";
    Ok(summary)
}

impl<'a> Run<'a> {
    /// The shared state of a run: the environment's tokens listed once (not in a dry run).
    async fn start(
        config: &'a Config,
        dt: &'a Dynatrace,
        backend: &VaultBackend,
        kv: KvClient,
        manager: Manager,
        action: &VaultAction,
        deadline: Deadline,
    ) -> Result<Self, RunError> {
        let manager_path = &backend.config.manager_path;
        let snapshot = if action.dry_run {
            Vec::new()
        } else {
            dt.list(
                &manager.env,
                &manager.token,
                None,
                "+modifiedDate",
                deadline,
            )
            .await
            .map_err(|e| RunError::Manager {
                path: manager_path.clone(),
                reason: format!("cannot list tokens with it: {e}"),
            })?
        };
        Ok(Run {
            config,
            dynatrace: dt,
            kv,
            scope: backend.scope(),
            manager,
            force: action.force,
            dry_run: action.dry_run,
            deadline,
            snapshot,
            manager_rotation: false,
        })
    }
}

pub(crate) async fn read_manager(kv: &KvClient, path: &str) -> Result<Manager, RunError> {
    let unusable = |reason: String| RunError::Manager {
        path: path.to_owned(),
        reason,
    };
    match kv.read(path).await? {
        KvRead::Present(entry) => {
            let doc = SecretDocument::from_map(entry.data).map_err(|e| unusable(e.to_string()))?;
            Manager::from_document(doc, path).map_err(|e| unusable(e.to_string()))
        }
        KvRead::Missing => Err(unusable(
            "no secret at that path (VAULT_MANAGER_PATH)".into(),
        )),
        KvRead::Deleted { version } => {
            Err(unusable(format!("its latest version {version} is deleted")))
        }
    }
}

/// A KV path as the rotator uses it (surrounding `/` and blanks trimmed), or why it is refused.
pub fn check_path(p: &str) -> Result<String, RunError> {
    let clean = p.trim().trim_matches('/').to_owned();
    let bad = |reason| {
        Err(RunError::BadPath {
            path: crate::secret::redact_text(p, 100),
            reason,
        })
    };
    if clean.is_empty() {
        return bad("empty");
    }
    if clean.len() > 512 {
        return bad("longer than 512 characters");
    }
    if clean
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, `.` or `..` segment");
    }
    if clean
        .chars()
        .any(|c| c.is_control() || c == '?' || c == '#' || c == '%')
    {
        return bad("control characters, `?`, `#` or `%`");
    }
    Ok(clean)
}

pub(crate) async fn resolve_paths(
    kv: &KvClient,
    backend: &VaultBackend,
    action: &VaultAction,
    manager_path: &str,
) -> Result<Vec<String>, RunError> {
    let (paths, prefix) = if action.paths.is_empty() && action.prefix.is_none() {
        (
            backend.config.rotate_paths.clone(),
            backend.config.rotate_prefix.clone(),
        )
    } else {
        (action.paths.clone(), action.prefix.clone())
    };
    let mut out = BTreeSet::new();
    for p in &paths {
        out.insert(check_path(p)?);
    }
    if let Some(prefix) = prefix {
        // An empty prefix (`""`, `/`) would list the whole mount, other teams' secrets
        // included: refuse it like any other unusable path.
        let trimmed = prefix.trim().trim_start_matches('/');
        check_path(&prefix)?;
        out.extend(kv.list_recursive(trimmed).await?);
    }
    if paths.is_empty() && action.prefix.is_none() && backend.config.rotate_prefix.is_none() {
        return Err(RunError::NoPaths);
    }
    out.remove(manager_path);
    Ok(out.into_iter().collect())
}

/// Vault's side of [`rotation::replace`]: the successor is written with check-and-set over the
/// version read, so only one write can ever take index `version + 1`; the read-back is that
/// version.
struct CasVersion<'a> {
    kv: &'a KvClient,
    path: &'a str,
    version: u64,
}

impl rotation::Store for CasVersion<'_> {
    type Refusal = String;

    const READ_BACK_AFTER_LANDING: bool = false;

    fn what(&self) -> &'static str {
        "Vault CAS write"
    }

    async fn write(&self, doc: &SecretDocument) -> Attempt<Result<(), String>> {
        match self
            .kv
            .write_cas(self.path, &doc.to_map(), self.version)
            .await
        {
            Ok(CasWrite::Written { .. }) => Attempt::Definitive(Ok(())),
            Ok(CasWrite::Conflict) => Attempt::Definitive(Err("check-and-set conflict".into())),
            Err(e) if e.is_unclear() => Attempt::Unclear(e.to_string()),
            Err(e) => Attempt::Definitive(Err(e.to_string())),
        }
    }

    async fn read_back(&self) -> Result<Option<SecretDocument>, ()> {
        match self.kv.read_version(self.path, self.version + 1).await {
            Ok(KvRead::Present(entry)) => SecretDocument::from_map(entry.data)
                .map(Some)
                .map_err(|_| ()),
            Ok(KvRead::Missing) => Ok(None),
            // A deleted or destroyed version N+1 still took the index: its outcome is unknown.
            Ok(KvRead::Deleted { .. }) | Err(_) => Err(()),
        }
    }
}

/// Paths rotated at once in one run: eight per slot of the Dynatrace window
/// (`ROTATION_CONCURRENCY` calls in flight per environment, see [`crate::throttle`]), since a
/// path spends part of its time in Vault reads and writes, which hold no slot. Bounded so a
/// large run does not start more rotations than it can finish before its deadline.
pub fn path_concurrency(dynatrace_in_flight: usize) -> usize {
    (dynatrace_in_flight * PATHS_PER_SLOT).clamp(1, MAX_PATHS_AT_ONCE)
}

/// Paths in progress per slot of the Dynatrace window.
const PATHS_PER_SLOT: usize = 8;

/// Most paths in progress in one run.
const MAX_PATHS_AT_ONCE: usize = 256;

/// A path is not started with less time than this left before the deadline's reserve: its
/// mint could not be written, and would only leave a token for the sweep.
const PATH_ADMISSION: std::time::Duration = std::time::Duration::from_millis(250);

impl Run<'_> {
    async fn rotate_path(&self, path: &str) -> PathResult {
        if !self.deadline.allows(PATH_ADMISSION) {
            tracing::warn!(path, "path not started: the invocation is out of time");
            return PathResult::failed(
                path,
                "not started: the invocation ran out of time (a later run rotates it; for large fleets raise the function timeout or use enqueue-vault)",
            );
        }
        let result = self.rotate_inner(path).await;
        match &result.status {
            PathStatus::Failed => tracing::warn!(path, reason = ?result.reason, "path failed"),
            status => {
                tracing::info!(path, status = ?status, token_id = ?result.token_id, reason = ?result.reason, "path done")
            }
        }
        result
    }

    async fn rotate_inner(&self, path: &str) -> PathResult {
        let entry = match self.kv.read(path).await {
            Ok(KvRead::Present(e)) => e,
            Ok(KvRead::Missing) => return PathResult::failed(path, "no secret at this path"),
            Ok(KvRead::Deleted { version }) => {
                return PathResult::failed(
                    path,
                    format!("the latest version ({version}) is deleted"),
                );
            }
            Err(e) => return PathResult::failed(path, e),
        };
        let version = entry.version;
        let doc = match SecretDocument::from_map(entry.data) {
            Ok(d) => d,
            Err(e) => return PathResult::failed(path, e),
        };
        let mut facts = None;
        if !self.force {
            let expiry = match doc.expires_at_time() {
                Some(Some(at)) => Expiry::Known(Some(at)),
                _ => Expiry::Unknown,
            };
            let due = |expiry| {
                policy::due(
                    Timestamp::now(),
                    doc.rotated_at_time(),
                    expiry,
                    self.config.rotation_interval_days,
                    self.config.rotation_expiry_margin_days,
                )
            };
            let skip = |reason: String| {
                let mut r = PathResult::new(path, PathStatus::Skipped, Some(reason));
                r.token_id = doc.token_id_hint();
                r
            };
            match due(expiry) {
                Ok(()) => {}
                Err(Some(reason)) => return skip(reason),
                Err(None) => {
                    // Recently rotated, expiry not recorded: only a lookup tells.
                    let looked_up = async {
                        let managers = std::slice::from_ref(&self.manager);
                        let mgr =
                            rotation::select_manager(managers, doc.environment_url.as_deref())?;
                        rotation::inspect(self.dynatrace, mgr, &doc.token, self.deadline).await
                    }
                    .await;
                    match looked_up {
                        Ok(f) => match due(Expiry::Known(f.expires)) {
                            Ok(()) => facts = Some(f),
                            Err(reason) => return skip(reason.unwrap_or_default()),
                        },
                        Err(e) => return PathResult::failed(path, e),
                    }
                }
            }
        }
        match self.rotate_document(path, version, &doc, facts).await {
            Ok(r) => r,
            Err(e) => PathResult::failed(path, e),
        }
    }

    async fn rotate_document(
        &self,
        path: &str,
        version: u64,
        doc: &SecretDocument,
        facts: Option<rotation::TokenFacts>,
    ) -> Result<PathResult, RotationError> {
        let managers = std::slice::from_ref(&self.manager);
        let mgr = rotation::select_manager(managers, doc.environment_url.as_deref())?;
        let facts = match facts {
            Some(f) => f,
            None => rotation::inspect(self.dynatrace, mgr, &doc.token, self.deadline).await?,
        };
        // A manager document keeps its token-management scopes: the forbidden-scope rule
        // guards against copying them into an ordinary secret, not into the manager itself.
        let manager_config;
        let config = if self.manager_rotation {
            manager_config = Config {
                forbidden_scopes: Vec::new(),
                ..self.config.clone()
            };
            &manager_config
        } else {
            self.config
        };
        let marker = Marker::vault(&self.scope, path, version + 1);
        if self.dry_run {
            // The plan refuses what the rotation would refuse (forbidden scopes).
            rotation::plan(config, &facts, &marker, Timestamp::now())?;
            let mut r = PathResult::new(path, PathStatus::WouldRotate, None);
            r.token_id = Some(facts.id);
            return Ok(r);
        }
        let store = CasVersion {
            kv: &self.kv,
            path,
            version,
        };
        let replaced = rotation::replace(
            self.dynatrace,
            config,
            mgr,
            doc,
            facts,
            &marker,
            &store,
            self.deadline,
        )
        .await?;
        let (created, facts) = match replaced {
            Replaced::Stored { created, facts, .. } => (created, facts),
            Replaced::Theirs(_) => {
                let mut r = PathResult::new(
                    path,
                    PathStatus::Skipped,
                    Some("concurrent rotation".into()),
                );
                r.previous_token_id = doc.token_id_hint();
                return Ok(r);
            }
            Replaced::NotStored(why) => {
                return Ok(PathResult::failed(
                    path,
                    format!(
                        "storing the new token failed: {}",
                        why.unwrap_or_else(|| "nothing was stored".into())
                    ),
                ));
            }
            Replaced::Unknown { token_id, detail } => {
                return Ok(PathResult::failed(
                    path,
                    format!(
                        "storing the new token {token_id} has no definitive answer (the token is kept; the next run or the sweep settles it): {detail}"
                    ),
                ));
            }
        };
        // The old manager cannot revoke itself: its successor, just proven, does.
        let successor;
        let revoker = if self.manager_rotation {
            successor = Manager {
                env: mgr.env.clone(),
                token: created.token.clone(),
                source: format!("{path} (successor)"),
            };
            &successor
        } else {
            mgr
        };
        let revoked = self
            .revoke_old(revoker, path, version, doc, &facts.id, &created.id)
            .await;
        if let Err(e) = revoked {
            // The rotation itself succeeded; a failed revocation is retried by the next run/sweep.
            tracing::warn!(path, error = %e, "revoking old tokens failed; the next run or the sweep retries");
        }
        if self.config.events {
            rotation::report_event(
                self.dynatrace,
                revoker,
                &format!("vault:{path}"),
                &facts.id,
                &created.id,
                self.deadline,
            )
            .await;
        }
        Ok(PathResult {
            path: path.to_owned(),
            status: PathStatus::Rotated,
            token_id: Some(created.id.clone()),
            previous_token_id: Some(facts.id),
            reason: None,
        })
    }

    /// The token that was current before `old` (the document of `version`, just replaced) as
    /// a revocation candidate. `previousTokenId` only says which token to look for: it is
    /// proven by walking back through the earlier versions to a stored value that looks up
    /// to that id (skipping versions that hold the same token, e.g. an edit of another field,
    /// and versions deleted or destroyed by `max_versions`), or by this deployment's marker
    /// for this path in its name. Otherwise it is returned unproven (never revoked).
    async fn previous_candidate(
        &self,
        mgr: &Manager,
        path: &str,
        version: u64,
        old: &SecretDocument,
    ) -> Option<Candidate> {
        /// Versions read back at most.
        const MAX_WALK: u64 = 10;
        let hint = old.previous_token_id.as_deref()?;
        let lowest = version.saturating_sub(MAX_WALK).max(1);
        let mut v = version.saturating_sub(1);
        while v >= lowest {
            match self.kv.read_version(path, v).await {
                Ok(KvRead::Present(entry)) => {
                    if let Ok(d) = SecretDocument::from_map(entry.data)
                        && !d.token.same_as(&old.token)
                        && d.token.derived_id().is_none_or(|id| id == hint)
                    {
                        match rotation::proven_id(self.dynatrace, mgr, &d.token, self.deadline)
                            .await
                        {
                            Ok(Some(id)) if id == hint => {
                                return Some(Candidate::new(id, Proof::ByValue));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(path, version = v, error = %e, "could not look up an earlier version's token");
                                break;
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path, version = v, error = %e, "could not read an earlier version");
                    break;
                }
            }
            v -= 1;
        }
        let key = self.scope.secret_key(path);
        let marked = self.snapshot.iter().any(|t| {
            t.id.as_deref() == Some(hint) && marker::owner_key(t.name_str()) == Some(key.as_str())
        });
        Some(Candidate::new(
            hint,
            if marked {
                Proof::ByMarker
            } else {
                Proof::Unproven
            },
        ))
    }

    /// Revokes by policy after a successful write over `version` (the old document `old`,
    /// whose token `old_id` was looked up by value): the token two generations old
    /// (next-rotation), or also the one just replaced (immediately); plus tokens minted for
    /// this path by rotations that can no longer be stored (marker version ≤ `version + 1`)
    /// and that nothing references. Only proven targets go.
    async fn revoke_old(
        &self,
        mgr: &Manager,
        path: &str,
        version: u64,
        old: &SecretDocument,
        old_id: &str,
        new_id: &str,
    ) -> Result<(), RotationError> {
        let today = policy::today();
        let written = version + 1;
        let mut keep: Vec<&str> = vec![new_id];
        if self.config.revoke_old != RevokeOld::Immediately {
            keep.push(old_id);
        }
        let key = self.scope.secret_key(path);
        let mut candidates = Vec::new();
        if self.config.revoke_old != RevokeOld::Never {
            candidates.extend(self.previous_candidate(mgr, path, version, old).await);
        }
        if self.config.revoke_old == RevokeOld::Immediately {
            candidates.push(Candidate::new(old_id, Proof::ByValue));
        }
        let this = Marker::vault(&self.scope, path, written).tag();
        for t in &self.snapshot {
            let name = t.name_str();
            let Some((secret, rot)) = marker::parse(name) else {
                continue;
            };
            let stale = marker::vault_version(rot).is_some_and(|v| v <= written);
            let ours = name.contains(&this);
            if secret == key
                && stale
                && t.is_enabled()
                && (ours || self.config.revoke_old != RevokeOld::Never)
            {
                candidates.push(Candidate::new(t.id_str(), Proof::ByMarker));
            }
        }
        let manager_id = mgr.token.derived_id();
        let managers: Vec<&str> = manager_id.iter().map(String::as_str).collect();
        let targets = rotation::revocation_targets(&candidates, &keep, &managers);
        for id in &targets.unproven {
            tracing::warn!(path, token_id = %id, "not revoking previousTokenId: no earlier version of this path holds a value that looks up to it and it carries no marker of this path");
        }
        for id in targets.revoke {
            let outcome = rotation::revoke(
                self.dynatrace,
                mgr,
                &id,
                Some(&key),
                self.config.old_token_action,
                today,
                self.deadline,
            )
            .await?;
            let (events, secret) = (self.config.events, format!("vault:{path}"));
            rotation::report_revocation(
                self.dynatrace,
                mgr,
                events,
                &secret,
                &id,
                outcome,
                self.deadline,
            )
            .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_or_refused_with_a_reason() {
        assert_eq!(check_path(" /team/app1/ ").unwrap(), "team/app1");
        for (bad, why) in [
            ("", "empty"),
            ("a//b", "segment"),
            ("a/../b", "segment"),
            ("a?b", "`?`"),
            ("a%2Fb", "`%`"),
            ("a\nb", "control"),
        ] {
            let e = check_path(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
            assert_eq!(e.code(), "MalformedEvent");
        }
        assert!(check_path(&"a".repeat(513)).is_err());
    }
}
