//! The application: the dependencies built once per execution environment ([`Deps`]), the
//! dispatch of each invocation kind to its backend or clean-up, and the failure every
//! invocation reports (an `errorType` an operator can act on, from each error's `code()`).
//!
//! Nothing in the library imports this module: it sits on top, so dependencies run one way
//! (app → backends and clean-up → rotation → Dynatrace client → pure modules).

use lambda_runtime::Diagnostic;
use serde_json::Value;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::dynatrace::Dynatrace;
use crate::enqueue::EnqueueError;
use crate::event::{self, EventError, Invocation, VaultAction};
use crate::secrets_manager::{self, SecretsManagerContext, SecretsManagerError};
use crate::sweep::{Cleanup, SweepError};
use crate::vault::rotate::{self as vault_rotate, RunError, VaultBackend};

/// Everything an invocation needs, built once in `main` and shared by every invocation.
pub struct Deps {
    /// The validated configuration.
    pub config: Config,
    /// Secrets Manager client.
    pub secrets_manager: aws_sdk_secretsmanager::Client,
    /// SQS client (`enqueue-vault` sends to `VAULT_QUEUE_URL` with it).
    pub sqs: aws_sdk_sqs::Client,
    /// Dynatrace client (with the shared back-off).
    pub dynatrace: Dynatrace,
    /// Vault backend, when `VAULT_ADDR` is set.
    pub vault: Option<VaultBackend>,
}

impl Deps {
    /// The narrower view the sweep and the audit work with.
    fn cleanup(&self) -> Cleanup<'_> {
        Cleanup {
            config: &self.config,
            secrets_manager: &self.secrets_manager,
            dynatrace: &self.dynatrace,
            vault: self.vault.as_ref(),
        }
    }
}

/// Reports a failure of the init phase (a configuration refused, a client that cannot be
/// built) to the Lambda Runtime API's `/runtime/init/error` before the process exits, so that
/// Lambda, Secrets Manager's `RotationFailed` event and `aws lambda invoke` show the cause
/// (e.g. `ConfigError` naming the variable) instead of `Runtime.ExitError`. Outside Lambda
/// (`AWS_LAMBDA_RUNTIME_API` unset) it only logs. A failed report is logged, never retried:
/// the process exits either way.
pub async fn report_init_error(error: &HandlerError) {
    tracing::error!(error_type = error.error_type, error = %error.message, "init failed; the function cannot start");
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let body = serde_json::json!({
        "errorType": error.error_type,
        "errorMessage": error.message,
    });
    let sent = reqwest::Client::new()
        .post(&url)
        .header("Lambda-Runtime-Function-Error-Type", error.error_type)
        .timeout(std::time::Duration::from_secs(2))
        .json(&body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::error!(
            status = r.status().as_u16(),
            "the Runtime API refused the init error report"
        ),
        Err(e) => tracing::error!(error = %e, "could not report the init error to the Runtime API"),
    }
}

/// Reads the configuration from the environment and, when `VAULT_CREDENTIALS_SECRET_ID` names
/// a Secrets Manager secret, the Vault credentials from it (`VAULT_TOKEN`, `VAULT_ROLE_ID`,
/// `VAULT_SECRET_ID`): they then stay out of the function's configuration. A credential set in
/// both places is refused, so it is clear which one is used.
pub async fn read_config(
    secrets_manager: &aws_sdk_secretsmanager::Client,
) -> Result<Config, HandlerError> {
    use secrecy::ExposeSecret;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let credentials = match env("VAULT_CREDENTIALS_SECRET_ID") {
        Some(id) => secrets_manager::vault_credentials(secrets_manager, &id)
            .await
            .map_err(|e| {
                HandlerError::new(
                    "ConfigError",
                    format!("VAULT_CREDENTIALS_SECRET_ID: cannot read the Vault credentials: {e}"),
                )
            })?,
        None => Default::default(),
    };
    if let Some(both) = credentials.keys().find(|k| env(k).is_some()) {
        return Err(HandlerError::new(
            "ConfigError",
            format!(
                "{both} is set both in the environment and in the secret named by VAULT_CREDENTIALS_SECRET_ID: keep one"
            ),
        ));
    }
    Ok(Config::from_lookup(|k| match credentials.get(k) {
        Some(v) => Some(v.expose_secret().to_owned()),
        None => std::env::var(k).ok(),
    })?)
}

impl From<crate::config::ConfigError> for HandlerError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::new("ConfigError", e)
    }
}

impl From<crate::vault::VaultError> for HandlerError {
    fn from(e: crate::vault::VaultError) -> Self {
        Self::new(e.code(), e)
    }
}

/// A failed invocation: a stable error type and a secret-free message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// Category for the Lambda error response (`errorType`).
    pub error_type: &'static str,
    /// What went wrong and what to do (`errorMessage`).
    pub message: String,
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        Diagnostic {
            error_type: e.error_type.to_owned(),
            error_message: e.message,
        }
    }
}

impl HandlerError {
    /// A failure with `code` (an `errorType` of the README's list) and a secret-free message.
    fn new(code: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            error_type: code,
            message: message.to_string(),
        }
    }
}

impl From<EventError> for HandlerError {
    fn from(e: EventError) -> Self {
        Self::new(e.code(), e)
    }
}

impl From<SecretsManagerError> for HandlerError {
    fn from(e: SecretsManagerError) -> Self {
        Self::new(e.code(), e)
    }
}

impl From<RunError> for HandlerError {
    fn from(e: RunError) -> Self {
        Self::new(e.code(), e)
    }
}

impl From<EnqueueError> for HandlerError {
    fn from(e: EnqueueError) -> Self {
        Self::new(e.code(), e)
    }
}

impl From<SweepError> for HandlerError {
    fn from(e: SweepError) -> Self {
        Self::new(e.code(), e)
    }
}

/// Handles one invocation: decodes the payload and dispatches it.
pub async fn handle(
    deps: &Deps,
    payload: Value,
    deadline: Deadline,
) -> Result<Value, HandlerError> {
    let started = std::time::Instant::now();
    let (action, answer) = match decode(payload) {
        Ok(invocation) => {
            let action = invocation.action_name();
            (action, dispatch(deps, invocation, deadline).await)
        }
        Err(e) => ("invalid-event", Err(e)),
    };
    crate::metrics::emit(action, answer.as_ref().ok(), started.elapsed());
    answer
}

/// Checks the payload's size and decodes it.
fn decode(payload: Value) -> Result<Invocation, HandlerError> {
    // An SQS batch may carry up to ten messages of 256 KiB each: its envelope gets Lambda's
    // own payload limit, and each record's body is held to the per-event limit on its own.
    let limit = if payload.get("Records").is_some() {
        event::MAX_SQS_ENVELOPE_BYTES
    } else {
        event::MAX_EVENT_BYTES
    };
    let size = serialized_len(&payload, limit);
    if size > limit {
        return Err(EventError::Malformed(format!(
            "the event is {size} bytes of JSON; at most {limit} are accepted"
        ))
        .into());
    }
    Ok(event::parse(payload)?)
}

/// Runs one decoded invocation.
async fn dispatch(
    deps: &Deps,
    invocation: Invocation,
    deadline: Deadline,
) -> Result<Value, HandlerError> {
    match invocation {
        Invocation::Rotation(req) => {
            tracing::info!(secret = %req.secret_id, version = %req.client_request_token, step = ?req.step, "Secrets Manager rotation step");
            let ctx = SecretsManagerContext {
                config: &deps.config,
                secrets_manager: &deps.secrets_manager,
                dynatrace: &deps.dynatrace,
            };
            let report = secrets_manager::run_step(&ctx, &req, deadline).await.map_err(|e| {
                let e = HandlerError::from(e);
                tracing::error!(error_type = e.error_type, error = %e.message, "rotation step failed");
                e
            })?;
            tracing::info!(status = report.status, token_id = ?report.token_id, revoked = ?report.revoked, "step done");
            Ok(serde_json::to_value(report).unwrap_or(Value::Null))
        }
        Invocation::RotateVault(action) => rotate_vault(deps, &action, deadline).await,
        Invocation::Scheduled => {
            let action = VaultAction {
                action: "rotate-vault".into(),
                ..VaultAction::default()
            };
            rotate_vault(deps, &action, deadline).await
        }
        Invocation::Sqs(records) => Ok(run_sqs(deps, records, deadline).await),
        Invocation::Sweep { dry_run } => run_sweep(deps, dry_run, deadline).await,
        Invocation::Audit => run_audit(deps, deadline).await,
        Invocation::RevokeLeaked(action) => {
            let report = crate::leak::run(&deps.cleanup(), &action, deadline)
                .await
                .map_err(|e| {
                    let e = HandlerError::from(e);
                    tracing::error!(error_type = e.error_type, error = %e.message, "revoke-leaked could not run");
                    e
                })?;
            Ok(serde_json::to_value(report).unwrap_or(Value::Null))
        }
        Invocation::EnqueueVault(action) => {
            let summary = crate::enqueue::run(
                &deps.config,
                deps.vault.as_ref(),
                &deps.sqs,
                &action,
                deadline,
            )
            .await
            .map_err(|e| {
                let e = HandlerError::from(e);
                tracing::error!(error_type = e.error_type, error = %e.message, "enqueue-vault could not run");
                e
            })?;
            tracing::info!(
                paths = summary.paths,
                messages = summary.messages,
                unsent = summary.errors.len(),
                dry_run = summary.dry_run,
                "enqueue-vault done"
            );
            Ok(serde_json::to_value(summary).unwrap_or(Value::Null))
        }
        Invocation::RotateManager { dry_run } => {
            let backend = deps
                .vault
                .as_ref()
                .ok_or_else(|| HandlerError::from(RunError::NotConfigured))?;
            let summary =
                vault_rotate::rotate_manager(&deps.config, &deps.dynatrace, backend, dry_run, deadline)
                    .await
                    .map_err(|e| {
                        let e = HandlerError::from(e);
                        tracing::error!(error_type = e.error_type, error = %e.message, "rotate-manager could not run");
                        e
                    })?;
            Ok(serde_json::to_value(summary).unwrap_or(Value::Null))
        }
    }
}

/// Length of `v` serialised as JSON, counted without keeping the text; stops counting
/// (returns a value past the limit) as soon as the limit is exceeded.
fn serialized_len(v: &Value, limit: usize) -> usize {
    struct Counter(usize, usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > self.1 {
                return Err(std::io::Error::other("too large"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0, limit);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => c.0.max(limit + 1),
    }
}

/// Runs a `rotate-vault` action and returns its summary as JSON.
async fn rotate_vault(
    deps: &Deps,
    action: &VaultAction,
    deadline: Deadline,
) -> Result<Value, HandlerError> {
    let backend = deps
        .vault
        .as_ref()
        .ok_or_else(|| HandlerError::from(RunError::NotConfigured))?;
    let summary = vault_rotate::run(&deps.config, &deps.dynatrace, backend, action, deadline).await.map_err(|e| {
        let e = HandlerError::from(e);
        tracing::error!(error_type = e.error_type, error = %e.message, "rotate-vault run could not run");
        e
    })?;
    tracing::info!(
        rotated = summary.rotated,
        skipped = summary.skipped,
        failed = summary.failed,
        "rotate-vault run done"
    );
    Ok(serde_json::to_value(summary).unwrap_or(Value::Null))
}

/// Runs the `rotate-vault` actions of an SQS batch and answers `batchItemFailures`. Records
/// naming explicit paths with the same `force` and `dryRun` (what `enqueue-vault` sends) run
/// as one `rotate-vault` run: one Vault login, one manager read and one tenant listing for
/// the batch, and all its paths in flight together under the Dynatrace window. A record
/// fails when one of its paths failed (or the run could not run); a record with a `prefix`
/// runs on its own; a record that is not a usable action fails alone.
async fn run_sqs(deps: &Deps, records: Vec<event::SqsRecord>, deadline: Deadline) -> Value {
    use std::collections::{BTreeMap, BTreeSet};
    let order: Vec<String> = records.iter().map(|r| r.message_id.clone()).collect();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    // By (force, dryRun): each record's message id and its cleaned paths.
    type Members = Vec<(String, Vec<String>)>;
    let mut batches: BTreeMap<(bool, bool), Members> = BTreeMap::new();
    let mut alone = Vec::new();
    for record in records {
        let id = record.message_id;
        let action = match record.body.and_then(|body| event::parse_action(&body)) {
            Ok(action) => action,
            Err(e) => {
                tracing::warn!(message_id = %id, error = %e, "SQS record refused: it is not a usable rotate-vault action");
                failed.insert(id);
                continue;
            }
        };
        if action.prefix.is_some() || action.paths.is_empty() {
            alone.push((id, action));
            continue;
        }
        let paths: Result<Vec<String>, _> = action
            .paths
            .iter()
            .map(|p| vault_rotate::check_path(p))
            .collect();
        match paths {
            Ok(paths) => batches
                .entry((action.force, action.dry_run))
                .or_default()
                .push((id, paths)),
            Err(e) => {
                tracing::warn!(message_id = %id, error = %e, "SQS record refused: a path is unusable");
                failed.insert(id);
            }
        }
    }
    for ((force, dry_run), members) in batches {
        let paths: BTreeSet<String> = members.iter().flat_map(|(_, p)| p.clone()).collect();
        let action = VaultAction {
            action: "rotate-vault".into(),
            paths: paths.into_iter().collect(),
            prefix: None,
            force,
            dry_run,
        };
        tracing::info!(
            records = members.len(),
            paths = action.paths.len(),
            "SQS records run as one rotate-vault run"
        );
        match rotate_vault(deps, &action, deadline).await {
            Ok(summary) => {
                let failed_paths: BTreeSet<&str> = summary["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["status"] == "failed")
                    .filter_map(|r| r["path"].as_str())
                    .collect();
                for (id, paths) in &members {
                    if paths.iter().any(|p| failed_paths.contains(p.as_str())) {
                        failed.insert(id.clone());
                    }
                }
            }
            Err(_) => failed.extend(members.into_iter().map(|(id, _)| id)),
        }
    }
    for (id, action) in alone {
        let ok = match rotate_vault(deps, &action, deadline).await {
            Ok(summary) => summary["failed"].as_u64() == Some(0),
            Err(_) => false,
        };
        if !ok {
            failed.insert(id);
        }
    }
    let failures: Vec<Value> = order
        .into_iter()
        .filter(|id| failed.contains(id))
        .map(|id| serde_json::json!({ "itemIdentifier": id }))
        .collect();
    serde_json::json!({ "batchItemFailures": failures })
}

/// Runs a `sweep` and returns its summary as JSON.
async fn run_sweep(deps: &Deps, dry_run: bool, deadline: Deadline) -> Result<Value, HandlerError> {
    let summary = crate::sweep::run(&deps.cleanup(), dry_run, deadline)
        .await
        .map_err(|e| {
            let e = HandlerError::from(e);
            tracing::error!(error_type = e.error_type, error = %e.message, "sweep could not run");
            e
        })?;
    Ok(serde_json::to_value(summary).unwrap_or(Value::Null))
}

/// Runs an `audit` and returns its report as JSON.
async fn run_audit(deps: &Deps, deadline: Deadline) -> Result<Value, HandlerError> {
    let report = crate::audit::run(&deps.cleanup(), deadline)
        .await
        .map_err(|e| {
            let e = HandlerError::from(e);
            tracing::error!(error_type = e.error_type, error = %e.message, "audit could not run");
            e
        })?;
    Ok(serde_json::to_value(report).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_size_of_an_event_is_counted_up_to_the_limit() {
        let v = json!({"action": "sweep"});
        assert_eq!(serialized_len(&v, 1000), v.to_string().len());
        let big = json!({"pad": "x".repeat(5000)});
        assert!(serialized_len(&big, 100) > 100, "stops past the limit");
    }

    #[test]
    fn failures_carry_their_errors_code_and_message() {
        let e = HandlerError::from(EventError::UnknownAction("dance".into()));
        assert_eq!(e.error_type, "UnknownAction");
        assert!(e.message.contains("dance"));
        let e = HandlerError::from(RunError::NoPaths);
        assert_eq!(e.error_type, "ConfigError");
        let d = lambda_runtime::Diagnostic::from(e.clone());
        assert_eq!(d.error_type, "ConfigError");
        assert_eq!(d.error_message, e.message);
    }
}
