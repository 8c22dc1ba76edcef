//! Incident response: the `revoke-leaked` action (docs/design.md §6).
//!
//! The operator names a token, by id or by value. It is disabled **at once** and renamed
//! ` [leaked YYYY-MM-DD]`, never deleted (the evidence stays; no rotation or sweep touches it
//! again, see [`marker::leaked_name`]). Then every secret in scope that references it (the
//! Secrets Manager secrets the sweep covers, the Vault paths of `VAULT_ROTATE_*`) is rotated
//! now: Secrets Manager through `RotateSecret` (Secrets Manager then runs the four steps),
//! Vault by a forced rotation. A leaked **manager** is rotated first and then disabled with
//! its successor (a token cannot disable itself, and the rotations need a working manager).
//!
//! Naming the token is the operator's proof (the one exception of the trust rules); the
//! rotations it starts follow the ordinary rules. A value given is only ever sent to
//! Dynatrace in the body of a lookup, to the configured environments, and never logged or
//! echoed: the answer names the id.

use serde::Serialize;

use crate::deadline::Deadline;
use crate::dynatrace::{ApiToken, TokenUpdate};
use crate::event::{LeakAction, LeakedToken, VaultAction};
use crate::marker;
use crate::rotation::{self, Manager};
use crate::sweep::{self, Cleanup, Holder, Managers, Problem, SweepError};
use crate::vault::rotate::{self as vault_rotate, PathStatus};

/// How long a leak response waits for Secrets Manager to finish rotating a leaked manager
/// secret before it gives up (and asks to be invoked again), at most.
const MANAGER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The answer of `revoke-leaked`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeakReport {
    /// Always `revoke-leaked`.
    pub action: &'static str,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// The leaked token's id (derived from the value when Dynatrace does not know it).
    pub token_id: Option<String>,
    /// Whether the token is disabled now (false in a dry run).
    pub disabled: bool,
    /// Why it is not disabled, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each secret found holding the token, and what happened to it.
    pub secrets: Vec<SecretOutcome>,
    /// What could not be read or changed (secret-free).
    pub errors: Vec<Problem>,
}

/// What happened to one secret holding the leaked token.
#[derive(Debug, Clone, Serialize)]
pub struct SecretOutcome {
    /// The Secrets Manager secret's ARN, or `vault:<path>`.
    pub secret: String,
    /// `rotated` (Vault, or a manager rotation that finished), `rotation-started` (Secrets
    /// Manager runs the four steps now), `would-rotate` (dry run), `skipped` or `failed`.
    pub status: &'static str,
    /// Why, for `skipped` and `failed`, or what to watch for `rotation-started`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SecretOutcome {
    fn new(secret: impl Into<String>, status: &'static str, reason: Option<String>) -> Self {
        Self {
            secret: secret.into(),
            status,
            reason,
        }
    }
}

/// Runs `revoke-leaked`. Returns the report whenever the token could be looked for (failed
/// rotations included); an error only when no manager could be used.
pub async fn run(
    cleanup: &Cleanup<'_>,
    action: &LeakAction,
    deadline: Deadline,
) -> Result<LeakReport, SweepError> {
    let mut managers = sweep::load_managers(cleanup, deadline).await;
    if managers.by_env.is_empty() {
        return Err(sweep::no_managers(cleanup, &managers));
    }
    let mut report = LeakReport {
        action: "revoke-leaked",
        dry_run: action.dry_run,
        token_id: match &action.token {
            LeakedToken::Id(id) => Some(id.clone()),
            LeakedToken::Value(v) => v.derived_id(),
        },
        disabled: false,
        reason: None,
        secrets: Vec::new(),
        errors: managers.errors.clone(),
    };
    let Some((env_manager, token)) =
        locate(cleanup, &managers, action, &mut report, deadline).await
    else {
        report.reason = Some(
            "no configured environment knows this token: nothing was disabled (check the id or value, and that its environment has a configured manager)"
                .into(),
        );
        tracing::warn!(token_id = ?report.token_id, "revoke-leaked: the token was not found");
        return Ok(report);
    };
    let id = token.id_str().to_owned();
    report.token_id = Some(id.clone());
    tracing::warn!(token_id = %id, env = %env_manager.env, dry_run = action.dry_run, "revoke-leaked: responding to a leaked token");

    // A leaked manager is rotated first: the rotations below need a manager that works, and
    // only another token may disable it.
    let mut revoker = env_manager;
    if managers.manager_ids.contains(&id) {
        let source = managers.sources.get(&id).cloned().unwrap_or_default();
        let (outcome, successor) =
            rotate_leaked_manager(cleanup, &managers, &source, &id, action.dry_run, deadline).await;
        report.secrets.push(outcome);
        match successor {
            Some(s) => revoker = s,
            None if action.dry_run => {}
            None => {
                report.reason = Some(format!(
                    "the leaked token is the manager of {source}, and it was not rotated: disable it by hand in Dynatrace (Access tokens) once a new manager is stored, or invoke revoke-leaked again when the rotation has finished"
                ));
                return Ok(report);
            }
        }
        // Everything below reads the stores with the managers as they are now.
        managers = sweep::load_managers(cleanup, deadline).await;
        report.errors.extend(managers.errors.iter().cloned());
    }

    if !action.dry_run {
        match disable(cleanup, &revoker, &token, deadline).await {
            Ok(()) => report.disabled = true,
            Err(why) => {
                report.reason = Some(why.clone());
                report.errors.push(Problem::new(id.clone(), why));
            }
        }
    }

    let refs = sweep::collect_references(cleanup, &managers, deadline).await;
    report.errors.extend(refs.errors.iter().cloned());
    let holders = refs.holders.get(&id).cloned().unwrap_or_default();
    let mut vault_paths = Vec::new();
    for holder in holders {
        match holder {
            Holder::SecretsManager(secret) => {
                let outcome = rotate_secrets_manager(cleanup, &secret, action.dry_run).await;
                report.secrets.push(outcome);
            }
            Holder::Vault(path) => vault_paths.push(path),
        }
    }
    if !vault_paths.is_empty() {
        report
            .secrets
            .extend(rotate_vault(cleanup, vault_paths, action.dry_run, deadline).await);
    }
    for s in &report.secrets {
        match s.status {
            "failed" => {
                tracing::error!(token_id = %id, secret = %s.secret, reason = ?s.reason, error_type = "LeakRotationFailed", "revoke-leaked: a secret holding the leaked token was not rotated; rotate it by hand")
            }
            status => {
                tracing::info!(token_id = %id, secret = %s.secret, status, "revoke-leaked: secret")
            }
        }
    }
    if report.disabled && cleanup.config.events {
        let names: Vec<String> = report.secrets.iter().map(|s| s.secret.clone()).collect();
        rotation::report_leak(cleanup.dynatrace, &revoker, &id, &names, deadline).await;
    }
    Ok(report)
}

/// Finds the token in the configured environments: by id with `GET`, by value with a lookup
/// (the value goes nowhere else). Returns the environment's manager and the token.
async fn locate(
    cleanup: &Cleanup<'_>,
    managers: &Managers,
    action: &LeakAction,
    report: &mut LeakReport,
    deadline: Deadline,
) -> Option<(Manager, ApiToken)> {
    for mgr in &managers.by_env {
        let found = match &action.token {
            LeakedToken::Id(id) => {
                cleanup
                    .dynatrace
                    .get(&mgr.env, &mgr.token, id, deadline)
                    .await
            }
            LeakedToken::Value(value) => {
                cleanup
                    .dynatrace
                    .lookup(&mgr.env, &mgr.token, value, deadline)
                    .await
            }
        };
        match found {
            Ok(Some(t)) if t.id.is_some() => return Some((mgr.clone(), t)),
            Ok(_) => {}
            Err(e) => report.errors.push(Problem::new(
                mgr.env.to_string(),
                format!("looking for the leaked token: {e}"),
            )),
        }
    }
    None
}

/// Disables `token` with `revoker` and renames it ` [leaked <today>]` (idempotent).
async fn disable(
    cleanup: &Cleanup<'_>,
    revoker: &Manager,
    token: &ApiToken,
    deadline: Deadline,
) -> Result<(), String> {
    let id = token.id_str();
    let name = token.name_str();
    if !token.is_enabled() && marker::leaked_on(name).is_some() {
        return Ok(());
    }
    let update = TokenUpdate {
        name: Some(marker::leaked_name(name, crate::policy::today())),
        enabled: Some(false),
        scopes: None,
    };
    cleanup
        .dynatrace
        .update(&revoker.env, &revoker.token, id, &update, deadline)
        .await
        .map_err(|e| format!("disabling the leaked token {id} failed: {e}; disable it by hand in Dynatrace (Access tokens)"))?;
    tracing::warn!(token_id = %id, env = %revoker.env, "revoke-leaked: disabled the leaked token");
    Ok(())
}

/// Rotates the manager stored at `source` and returns the outcome and, when the successor is
/// stored, the successor (to disable the leaked manager with).
async fn rotate_leaked_manager(
    cleanup: &Cleanup<'_>,
    managers: &Managers,
    source: &str,
    leaked_id: &str,
    dry_run: bool,
    deadline: Deadline,
) -> (SecretOutcome, Option<Manager>) {
    if let (Some(backend), Some((kv, _))) = (cleanup.vault, &managers.vault)
        && source == backend.config.manager_path
    {
        let secret = format!("vault:{source}");
        let summary = vault_rotate::rotate_manager(
            cleanup.config,
            cleanup.dynatrace,
            backend,
            dry_run,
            deadline,
        )
        .await;
        let result = match summary {
            Ok(mut s) if !s.results.is_empty() => s.results.remove(0),
            Ok(_) => {
                return (
                    SecretOutcome::new(secret, "failed", Some("no result".into())),
                    None,
                );
            }
            Err(e) => {
                return (
                    SecretOutcome::new(secret, "failed", Some(e.to_string())),
                    None,
                );
            }
        };
        let outcome = path_outcome(&result.path, &result.status, result.reason.clone());
        if result.status != PathStatus::Rotated {
            return (outcome, None);
        }
        return match vault_rotate::read_manager(kv, source).await {
            Ok(m) if m.token.derived_id().as_deref() != Some(leaked_id) => (outcome, Some(m)),
            Ok(_) => (
                SecretOutcome::new(
                    secret,
                    "failed",
                    Some("the manager path still holds the leaked token after its rotation".into()),
                ),
                None,
            ),
            Err(e) => (
                SecretOutcome::new(secret, "failed", Some(e.to_string())),
                None,
            ),
        };
    }
    // A Secrets Manager manager secret: Secrets Manager rotates it (this function's four
    // steps); wait for the successor to become AWSCURRENT.
    let started = rotate_secrets_manager(cleanup, source, dry_run).await;
    if dry_run || started.status != "rotation-started" {
        return (started, None);
    }
    let ctx = crate::secrets_manager::SecretsManagerContext {
        config: cleanup.config,
        secrets_manager: cleanup.secrets_manager,
        dynatrace: cleanup.dynatrace,
    };
    let until = std::time::Instant::now()
        + deadline
            .remaining()
            .map(|r| r.saturating_sub(std::time::Duration::from_secs(5)))
            .unwrap_or(MANAGER_WAIT)
            .min(MANAGER_WAIT);
    while std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let set = crate::secrets_manager::load_managers(&ctx).await;
        if let Some(m) = set
            .usable
            .into_iter()
            .find(|m| m.source == source && m.token.derived_id().as_deref() != Some(leaked_id))
        {
            return (SecretOutcome::new(source, "rotated", None), Some(m));
        }
    }
    (
        SecretOutcome::new(
            source,
            "rotation-started",
            Some("the manager's rotation has not finished yet: invoke revoke-leaked again when it has, to disable the leaked token".into()),
        ),
        None,
    )
}

/// Starts the rotation of a Secrets Manager secret (`RotateSecret` with its configured
/// rotation; Secrets Manager then invokes the four steps).
async fn rotate_secrets_manager(
    cleanup: &Cleanup<'_>,
    secret: &str,
    dry_run: bool,
) -> SecretOutcome {
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    if dry_run {
        return SecretOutcome::new(secret, "would-rotate", None);
    }
    // The function ARN is passed back as configured (RotateSecret keeps the schedule): an
    // emulator without it would make an empty version current at once.
    let function = match cleanup
        .secrets_manager
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
    {
        Ok(d) => d.rotation_lambda_arn,
        Err(e) => {
            return SecretOutcome::new(
                secret,
                "failed",
                Some(format!(
                    "DescribeSecret: {}: {}; rotate it by hand",
                    e.code().unwrap_or("Unknown"),
                    crate::secret::redact_text(e.message().unwrap_or("no message"), 300)
                )),
            );
        }
    };
    match cleanup
        .secrets_manager
        .rotate_secret()
        .secret_id(secret)
        .set_rotation_lambda_arn(function)
        .send()
        .await
    {
        Ok(out) => {
            tracing::info!(secret, version = ?out.version_id, "revoke-leaked: rotation started");
            SecretOutcome::new(
                secret,
                "rotation-started",
                Some(
                    "Secrets Manager runs the four steps now; a failure shows as RotationFailed"
                        .into(),
                ),
            )
        }
        Err(e) => SecretOutcome::new(
            secret,
            "failed",
            Some(format!(
                "RotateSecret: {}: {}; rotate it by hand (aws secretsmanager rotate-secret --secret-id …)",
                e.code().unwrap_or("Unknown"),
                crate::secret::redact_text(e.message().unwrap_or("no message"), 300)
            )),
        ),
    }
}

/// Rotates the Vault paths holding the leaked token now, whether due or not.
async fn rotate_vault(
    cleanup: &Cleanup<'_>,
    paths: Vec<String>,
    dry_run: bool,
    deadline: Deadline,
) -> Vec<SecretOutcome> {
    let Some(backend) = cleanup.vault else {
        return Vec::new();
    };
    let action = VaultAction {
        action: "rotate-vault".into(),
        paths: paths.clone(),
        prefix: None,
        force: true,
        dry_run,
    };
    match vault_rotate::run(
        cleanup.config,
        cleanup.dynatrace,
        backend,
        &action,
        deadline,
    )
    .await
    {
        Ok(summary) => summary
            .results
            .into_iter()
            .map(|r| path_outcome(&r.path, &r.status, r.reason))
            .collect(),
        Err(e) => paths
            .into_iter()
            .map(|p| SecretOutcome::new(format!("vault:{p}"), "failed", Some(e.to_string())))
            .collect(),
    }
}

fn path_outcome(path: &str, status: &PathStatus, reason: Option<String>) -> SecretOutcome {
    let status = match status {
        PathStatus::Rotated => "rotated",
        PathStatus::Skipped => "skipped",
        PathStatus::Failed => "failed",
        PathStatus::WouldRotate => "would-rotate",
    };
    SecretOutcome::new(format!("vault:{path}"), status, reason)
}
