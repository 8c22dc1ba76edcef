//! The Lambda handler: shared dependencies built once per execution environment, the
//! dispatch of each invocation kind, and the mapping of failures to Lambda error types an
//! operator can act on (`RotationNotEnabled`, `DynatraceForbidden`, ...).

use lambda_runtime::Diagnostic;
use serde_json::Value;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::dynatrace::{DtError, Dynatrace};
use crate::event::{self, EventError, Invocation};
use crate::rotation::RotationError;
use crate::secrets_manager::{self, SmContext, SmError};

/// Everything a handler needs, built once in `main` and shared by every invocation.
pub struct Deps {
    /// The validated configuration.
    pub config: Config,
    /// Secrets Manager client.
    pub secrets_manager: aws_sdk_secretsmanager::Client,
    /// Dynatrace client (with the shared back-off).
    pub dynatrace: Dynatrace,
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

impl From<EventError> for HandlerError {
    fn from(e: EventError) -> Self {
        let error_type = match e {
            EventError::UnknownStep(_) => "UnknownStep",
            EventError::UnknownAction(_) => "UnknownAction",
            EventError::Malformed(_) => "MalformedEvent",
        };
        Self {
            error_type,
            message: e.to_string(),
        }
    }
}

/// The error type of a Dynatrace failure.
pub fn dynatrace_error_type(e: &DtError) -> &'static str {
    match e {
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

/// The error type of a rotation failure.
pub fn rotation_error_type(e: &RotationError) -> &'static str {
    match e {
        RotationError::Document(_) => "InvalidSecretDocument",
        RotationError::BadEnvironmentUrl(_) => "InvalidEnvironmentUrl",
        RotationError::EnvironmentMismatch { .. } => "EnvironmentMismatch",
        RotationError::AmbiguousEnvironment(_) => "AmbiguousEnvironment",
        RotationError::NoManager => "ConfigError",
        RotationError::ManagerWithoutEnvironment { .. } | RotationError::BadManagerUrl { .. } => {
            "ManagerUnusable"
        }
        RotationError::Forbidden { .. } => "ForbiddenScopes",
        RotationError::CurrentTokenUnknown { .. } => "CurrentTokenUnknown",
        RotationError::ProofFailed { .. } => "NewTokenFailedCheck",
        RotationError::ManagerProtected(_) => "ManagerProtected",
        RotationError::Dynatrace { source, .. } => dynatrace_error_type(source),
    }
}

impl From<SmError> for HandlerError {
    fn from(e: SmError) -> Self {
        let error_type = match &e {
            SmError::RotationNotEnabled(_) => "RotationNotEnabled",
            SmError::VersionNotFound { .. } => "VersionNotFound",
            SmError::VersionNotPending { .. } => "VersionNotPending",
            SmError::NoCurrentValue(_) => "NoCurrentValue",
            SmError::PendingMissing { .. } => "PendingValueMissing",
            SmError::PendingTokenVanished { .. } => "PendingTokenVanished",
            SmError::ManagerUnusable { .. } => "ManagerUnusable",
            SmError::SecretNotFound(_) => "SecretNotFound",
            SmError::Aws { .. } => "SecretsManagerError",
            SmError::Rotation { source, .. } => rotation_error_type(source),
        };
        Self {
            error_type,
            message: e.to_string(),
        }
    }
}

/// Handles one invocation: decodes the payload and dispatches it.
pub async fn handle(
    deps: &Deps,
    payload: Value,
    deadline: Deadline,
) -> Result<Value, HandlerError> {
    let invocation = event::parse(payload)?;
    match invocation {
        Invocation::Rotation(req) => {
            tracing::info!(secret = %req.secret_id, version = %req.client_request_token, step = ?req.step, "Secrets Manager rotation step");
            let ctx = SmContext {
                config: &deps.config,
                sm: &deps.secrets_manager,
                dt: &deps.dynatrace,
            };
            let report = secrets_manager::run_step(&ctx, &req, deadline).await.map_err(|e| {
                let e = HandlerError::from(e);
                tracing::error!(error_type = e.error_type, error = %e.message, "rotation step failed");
                e
            })?;
            tracing::info!(status = report.status, token_id = ?report.token_id, revoked = ?report.revoked, "step done");
            Ok(serde_json::to_value(report).unwrap_or(Value::Null))
        }
        Invocation::RotateVault(_) | Invocation::Scheduled | Invocation::Sqs(_) => {
            Err(HandlerError {
                error_type: "NotConfigured",
                message: "Vault rotation is not available in this build".into(),
            })
        }
        Invocation::Sweep { .. } | Invocation::Audit => Err(HandlerError {
            error_type: "NotConfigured",
            message: "sweep and audit are not available in this build".into(),
        }),
    }
}
