//! The `rotate-vault` action (DESIGN.md §6): the function drives the whole rotation of
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
use crate::marker::{self, Marker};
use crate::policy::RevokeOld;
use crate::rotation::{self, Manager, RotationError};
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

/// The JSON summary of a run (DESIGN.md §6).
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

/// Everything a run shares.
struct Run<'a> {
    config: &'a Config,
    dt: &'a Dynatrace,
    kv: KvClient,
    mount: String,
    manager: Manager,
    force: bool,
    dry_run: bool,
    deadline: Deadline,
    /// The environment's tokens when the run started (for the clean-up of old mints).
    snapshot: Vec<ApiToken>,
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
    let kv = backend.kv.with_deadline(deadline.instant());
    kv.session().token_until(deadline.instant()).await?;
    kv.ensure_kv_v2().await?;
    let manager_path = backend.config.manager_path.clone();
    let manager = read_manager(&kv, &manager_path).await?;
    let paths = resolve_paths(&kv, backend, action, &manager_path).await?;
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
    let run = Run {
        config,
        dt,
        kv,
        mount: backend.config.kv_mount.clone(),
        manager,
        force: action.force,
        dry_run: action.dry_run,
        deadline,
        snapshot,
    };
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
        .buffer_unordered(config.rotation_concurrency)
        .collect()
        .await;
    let summary = Summary::from_results(action.dry_run, results);
    emit_metrics(&summary);
    Ok(summary)
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

fn check_path(p: &str) -> Result<String, RunError> {
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

impl Run<'_> {
    async fn rotate_path(&self, path: &str) -> PathResult {
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
        if !self.force
            && let Some(at) = doc.rotated_at_time()
        {
            let age_days = (Timestamp::now().as_second() - at.as_second()) / 86_400;
            if age_days < i64::from(self.config.rotation_interval_days) {
                let mut r = PathResult::new(
                    path,
                    PathStatus::Skipped,
                    Some(format!("rotated {age_days} days ago")),
                );
                r.token_id = doc.known_token_id();
                return r;
            }
        }
        match self.rotate_document(path, version, &doc).await {
            Ok(r) => r,
            Err(e) => PathResult::failed(path, e),
        }
    }

    async fn rotate_document(
        &self,
        path: &str,
        version: u64,
        doc: &SecretDocument,
    ) -> Result<PathResult, RotationError> {
        let managers = std::slice::from_ref(&self.manager);
        let mgr = rotation::select_manager(managers, doc.environment_url.as_deref())?;
        let facts = rotation::inspect(self.dt, mgr, &doc.token, self.deadline).await?;
        let marker = Marker::vault(&self.mount, path, version + 1);
        let plan = rotation::plan(self.config, &facts, &marker, Timestamp::now())?;
        if self.dry_run {
            let mut r = PathResult::new(path, PathStatus::WouldRotate, None);
            r.token_id = Some(facts.id);
            return Ok(r);
        }
        let minted = rotation::mint(self.dt, mgr, &plan, &marker, self.deadline).await?;
        let created = &minted.created;
        if let Err(e) = rotation::prove(
            self.dt,
            &mgr.env,
            &created.token,
            &plan.scopes,
            self.deadline,
        )
        .await
        {
            rotation::discard(self.dt, mgr, &created.id, self.deadline).await;
            return Err(e);
        }
        let new_doc = doc.rotated(
            created.token.clone(),
            &created.id,
            &facts.id,
            Timestamp::now(),
        );
        // Whatever the write answers, what is stored decides: a retried write whose first
        // attempt landed answers "conflict", and a newer run may already have written on top
        // of ours (our token is then its `previousTokenId`).
        let outcome = self.kv.write_cas(path, &new_doc.to_map(), version).await;
        let written = match outcome {
            Ok(CasWrite::Written { version: written }) => Ok(written),
            Ok(CasWrite::Conflict) => Err(None),
            Err(e) => Err(Some(e)),
        };
        let written = match written {
            Ok(written) => {
                tracing::info!(path, version = written, token_id = %created.id, "stored the new token");
                version + 1
            }
            Err(error) => match self.stored_ours(path, created).await {
                Some(true) => {
                    tracing::warn!(path, token_id = %created.id, "the write answered with an error or a conflict but landed");
                    version + 1
                }
                Some(false) => {
                    rotation::discard(self.dt, mgr, &created.id, self.deadline).await;
                    return Ok(match error {
                        None => {
                            let mut r = PathResult::new(
                                path,
                                PathStatus::Skipped,
                                Some("concurrent rotation".into()),
                            );
                            r.previous_token_id = Some(facts.id);
                            r
                        }
                        Some(e) => {
                            PathResult::failed(path, format!("storing the new token failed: {e}"))
                        }
                    });
                }
                None => {
                    let why = error
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "check-and-set conflict".into());
                    return Ok(PathResult::failed(
                        path,
                        format!(
                            "storing the new token failed and its outcome is unknown (the next run or the sweep cleans up): {why}"
                        ),
                    ));
                }
            },
        };
        if minted.after_lost_answer {
            // The lost create may have minted a token whose value nobody has: it carries this
            // rotation's marker, and with version `written` stored no run can store it any more.
            if let Err(e) =
                rotation::delete_marked(self.dt, mgr, &marker, &[&created.id], self.deadline).await
            {
                tracing::warn!(path, error = %e, "could not remove what the lost create minted; the next run or the sweep will");
            }
        }
        let revoked = self
            .revoke_old(mgr, path, written, doc, &facts.id, &created.id)
            .await;
        if let Err(e) = revoked {
            // The rotation itself succeeded; a failed revocation is retried by the next run/sweep.
            tracing::warn!(path, error = %e, "revoking old tokens failed; the next run or the sweep retries");
        }
        if self.config.events {
            rotation::report_event(self.dt, mgr, path, &facts.id, &created.id, self.deadline).await;
        }
        Ok(PathResult {
            path: path.to_owned(),
            status: PathStatus::Rotated,
            token_id: Some(created.id.clone()),
            previous_token_id: Some(facts.id),
            reason: None,
        })
    }

    /// `previousTokenId` of the document just replaced, when it really is this path's token
    /// two generations old: the token stored in version `written - 2`, or one the rotator
    /// minted for this path. A field anyone with write access can edit must not be able to
    /// revoke an arbitrary token of the tenant.
    async fn verified_previous(
        &self,
        path: &str,
        id: &str,
        written: u64,
        key: &str,
    ) -> Option<String> {
        let minted_here = self.snapshot.iter().any(|t| {
            t.id.as_deref() == Some(id)
                && marker::parse(t.name_str()).is_some_and(|(s, _)| s == key)
        });
        let stored_before = match written.checked_sub(2).filter(|v| *v > 0) {
            Some(v) => match self.kv.read_version(path, v).await {
                Ok(KvRead::Present(entry)) => SecretDocument::from_map(entry.data)
                    .is_ok_and(|d| d.known_token_id().as_deref() == Some(id)),
                _ => false,
            },
            None => false,
        };
        if minted_here || stored_before {
            Some(id.to_owned())
        } else {
            tracing::warn!(path, token_id = %id, "previousTokenId is not this path's earlier token; not revoking it");
            None
        }
    }

    /// Whether the token `created` is stored at `path` after an unclear write: as the latest
    /// token, or as the `previousTokenId` of a newer run's write. `None` when Vault cannot say.
    async fn stored_ours(&self, path: &str, created: &crate::dynatrace::Created) -> Option<bool> {
        match self.kv.read(path).await {
            Ok(KvRead::Present(entry)) => {
                Some(SecretDocument::from_map(entry.data).is_ok_and(|d| {
                    d.token.same_as(&created.token)
                        || d.previous_token_id.as_deref() == Some(created.id.as_str())
                }))
            }
            Ok(_) => Some(false),
            Err(_) => None,
        }
    }

    /// Revokes by policy after a successful write of `written` (the version holding `new_id`):
    /// the token two generations old (next-rotation), or also the one just replaced
    /// (immediately); plus tokens minted for this path by rotations that can no longer be
    /// stored (marker version ≤ `written`) and that nothing references.
    async fn revoke_old(
        &self,
        mgr: &Manager,
        path: &str,
        written: u64,
        old: &SecretDocument,
        old_id: &str,
        new_id: &str,
    ) -> Result<(), RotationError> {
        let today = jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::UTC)
            .date();
        let mut keep: BTreeSet<&str> = BTreeSet::from([new_id]);
        if self.config.revoke_old != RevokeOld::Immediately {
            keep.insert(old_id);
        }
        let key = Marker::secret_key_vault(&self.mount, path);
        let previous = match (&old.previous_token_id, self.config.revoke_old) {
            (Some(id), RevokeOld::NextRotation | RevokeOld::Immediately) => {
                self.verified_previous(path, id, written, &key).await
            }
            _ => None,
        };
        let mut targets: Vec<String> = match self.config.revoke_old {
            RevokeOld::Never => vec![],
            RevokeOld::NextRotation => previous.into_iter().collect(),
            RevokeOld::Immediately => previous.into_iter().chain([old_id.to_owned()]).collect(),
        };
        let this = Marker::vault(&self.mount, path, written).tag();
        for t in &self.snapshot {
            let name = t.name_str();
            let Some((secret, rot)) = marker::parse(name) else {
                continue;
            };
            let stale = rot
                .strip_prefix('v')
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v <= written);
            let ours = name.contains(&this);
            if secret == key
                && stale
                && t.is_enabled()
                && (ours || self.config.revoke_old != RevokeOld::Never)
            {
                targets.push(t.id_str().to_owned());
            }
        }
        let manager_id = mgr.token.derived_id();
        let mut done = BTreeSet::new();
        for id in targets {
            if keep.contains(id.as_str())
                || manager_id.as_deref() == Some(id.as_str())
                || !done.insert(id.clone())
            {
                continue;
            }
            rotation::revoke(
                self.dt,
                mgr,
                &id,
                self.config.old_token_action,
                today,
                self.deadline,
            )
            .await?;
        }
        Ok(())
    }
}

/// One CloudWatch embedded-metric-format line per run, so failed paths show up in metrics
/// without a `PutMetricData` call (no token data in it).
fn emit_metrics(summary: &Summary) {
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": Timestamp::now().as_millisecond(),
            "CloudWatchMetrics": [{
                "Namespace": "DynatraceTokenRotator",
                "Dimensions": [["Action"]],
                "Metrics": [
                    {"Name": "Rotated", "Unit": "Count"},
                    {"Name": "Skipped", "Unit": "Count"},
                    {"Name": "Failed", "Unit": "Count"}
                ]
            }]
        },
        "Action": summary.action,
        "Rotated": summary.rotated,
        "Skipped": summary.skipped,
        "Failed": summary.failed,
    });
    // EMF must be a line of its own on stdout, not a field of a log record.
    println!("{line}");
}
