//! The Secrets Manager rotation protocol (docs/design.md §4): `createSecret`, `setSecret`,
//! `testSecret`, `finishSecret`, each idempotent because Secrets Manager retries whole
//! rotations and steps may run twice or at the same time.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_secretsmanager::Client as SecretsManagerClient;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::document::SecretDocument;
use crate::dynatrace::Dynatrace;
pub use crate::event::{Step, StepRequest};
use crate::marker::{self, Marker};
use crate::policy::{OldTokenAction, RevokeOld};
use crate::rotation::{
    self, Attempt, Candidate, Manager, ManagerSet, Proof, Replaced, RotationError, dynatrace_error,
};

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";
const PREVIOUS: &str = "AWSPREVIOUS";

/// What a step did (the invocation's response; ids only).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The step.
    pub step: Step,
    /// The secret.
    pub secret_id: String,
    /// The version.
    pub version_id: String,
    /// `created`, `already-created`, `set`, `tested`, `finished`, `already-current`, ...
    pub status: &'static str,
    /// The pending/new token's id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Tokens revoked by this step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
}

/// What went wrong in a step. `error_type()` names it for the Lambda error response.
#[derive(Debug, thiserror::Error)]
pub enum SecretsManagerError {
    /// Rotation is not enabled on the secret.
    #[error(
        "rotation is not enabled on secret {0}; enable rotation with this function before invoking it"
    )]
    RotationNotEnabled(String),
    /// The version is not a version of the secret.
    #[error("ClientRequestToken {version} is not a version of secret {secret}")]
    VersionNotFound {
        /// The secret.
        secret: String,
        /// The version.
        version: String,
    },
    /// The version is neither current nor pending.
    #[error(
        "version {version} of secret {secret} is not AWSPENDING; remove the stale label and restart the rotation"
    )]
    VersionNotPending {
        /// The secret.
        secret: String,
        /// The version.
        version: String,
    },
    /// The secret has no AWSCURRENT value.
    #[error(
        "secret {0} has no AWSCURRENT value; store the current Dynatrace token in it before rotating"
    )]
    NoCurrentValue(String),
    /// `setSecret`/`finishSecret` without a pending value.
    #[error(
        "version {version} of secret {secret} has no pending value: createSecret has not completed; restart the rotation"
    )]
    PendingMissing {
        /// The secret.
        secret: String,
        /// The version.
        version: String,
    },
    /// The pending token disappeared from Dynatrace.
    #[error(
        "the pending token {token_id} of secret {secret} no longer exists in Dynatrace; remove AWSPENDING from version {version} and rotate again"
    )]
    PendingTokenVanished {
        /// The secret.
        secret: String,
        /// The version.
        version: String,
        /// The token.
        token_id: String,
    },
    /// Another run of this step stored its successor under this version first (seen before
    /// this run's put): nothing of this run's is stored; Secrets Manager's retry settles it.
    #[error(
        "another run of this rotation already stored a pending value under version {version} of secret {secret}; this run's token is deleted and Secrets Manager's retry of the step finds the stored one"
    )]
    PendingHeldByAnotherRun {
        /// The secret.
        secret: String,
        /// The version.
        version: String,
    },
    /// The pending token was disabled as leaked (`revoke-leaked`): it must never become
    /// current, and the rotator never re-enables it.
    #[error(
        "the pending token {token_id} of secret {secret} was disabled as leaked; it is never re-enabled: remove AWSPENDING from version {version} and rotate again"
    )]
    PendingTokenLeaked {
        /// The secret.
        secret: String,
        /// The version.
        version: String,
        /// The token.
        token_id: String,
    },
    /// A manager secret could not be read or used.
    #[error("manager token secret {id} is unusable: {reason}")]
    ManagerUnusable {
        /// The manager secret.
        id: String,
        /// Why.
        reason: String,
    },
    /// The secret does not exist.
    #[error("secret {0} does not exist (or this function may not read it)")]
    SecretNotFound(String),
    /// A Secrets Manager call failed.
    #[error("Secrets Manager {op} on {secret} failed: {code}: {message}")]
    Aws {
        /// The API.
        op: &'static str,
        /// The secret.
        secret: String,
        /// AWS's error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// A write of the pending value kept failing without a definitive answer until time ran
    /// out: the minted token is kept (marked) for the retry or the sweep to settle.
    #[error(
        "secret {secret}: storing the pending value of version {version} (token {token_id}) has no definitive answer yet: {detail}; Secrets Manager retries the rotation, which settles it"
    )]
    StoreOutcomeUnknown {
        /// The secret.
        secret: String,
        /// The version.
        version: String,
        /// The minted token, kept.
        token_id: String,
        /// The last failure.
        detail: String,
    },
    /// The rotation of the token failed.
    #[error("secret {secret}: {source}")]
    Rotation {
        /// The secret.
        secret: String,
        /// The failure.
        source: RotationError,
    },
}

impl SecretsManagerError {
    /// The `errorType` this failure is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            SecretsManagerError::RotationNotEnabled(_) => "RotationNotEnabled",
            SecretsManagerError::VersionNotFound { .. } => "VersionNotFound",
            SecretsManagerError::VersionNotPending { .. } => "VersionNotPending",
            SecretsManagerError::NoCurrentValue(_) => "NoCurrentValue",
            SecretsManagerError::PendingMissing { .. } => "PendingValueMissing",
            SecretsManagerError::PendingTokenVanished { .. } => "PendingTokenVanished",
            SecretsManagerError::PendingTokenLeaked { .. } => "PendingTokenLeaked",
            SecretsManagerError::PendingHeldByAnotherRun { .. } => "PendingHeldByAnotherRun",
            SecretsManagerError::ManagerUnusable { .. } => "ManagerUnusable",
            SecretsManagerError::SecretNotFound(_) => "SecretNotFound",
            SecretsManagerError::Aws { .. } => "SecretsManagerError",
            SecretsManagerError::StoreOutcomeUnknown { .. } => "StoreOutcomeUnknown",
            SecretsManagerError::Rotation { source, .. } => source.code(),
        }
    }
}

fn aws_err<E: ProvideErrorMetadata>(
    op: &'static str,
    secret: &str,
) -> impl FnOnce(E) -> SecretsManagerError {
    let secret = secret.to_owned();
    move |e| {
        let code = e.code().unwrap_or("Unknown").to_owned();
        if code == "ResourceNotFoundException" && op == "DescribeSecret" {
            return SecretsManagerError::SecretNotFound(secret);
        }
        SecretsManagerError::Aws {
            op,
            secret,
            code,
            message: crate::secret::redact_text(e.message().unwrap_or("no message"), 300),
        }
    }
}

/// What a step needs: the configuration and the shared clients.
pub struct SecretsManagerContext<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// Secrets Manager client.
    pub secrets_manager: &'a SecretsManagerClient,
    /// Dynatrace client.
    pub dynatrace: &'a Dynatrace,
}

/// Reads a secret string; `None` when that version/stage has no value.
async fn get_value(
    sm: &SecretsManagerClient,
    secret: &str,
    version: Option<&str>,
    stage: Option<&str>,
) -> Result<Option<secrecy::SecretString>, SecretsManagerError> {
    let resp = sm
        .get_secret_value()
        .secret_id(secret)
        .set_version_id(version.map(str::to_owned))
        .set_version_stage(stage.map(str::to_owned))
        .send()
        .await;
    match resp {
        Ok(out) => Ok(out.secret_string.map(secrecy::SecretString::from)),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(aws_err("GetSecretValue", secret)(e)),
    }
}

async fn get_document(
    sm: &SecretsManagerClient,
    secret: &str,
    version: Option<&str>,
    stage: Option<&str>,
) -> Result<Option<SecretDocument>, SecretsManagerError> {
    match get_value(sm, secret, version, stage).await? {
        None => Ok(None),
        Some(text) => SecretDocument::parse(text.expose_secret())
            .map(Some)
            .map_err(|e| SecretsManagerError::Rotation {
                secret: secret.to_owned(),
                source: e.into(),
            }),
    }
}

/// Reads every manager document of `DT_MANAGER_SECRET_IDS`, one by one: a manager that
/// cannot be read or used is recorded with why, and fails only the secrets that need it.
pub async fn load_managers(ctx: &SecretsManagerContext<'_>) -> ManagerSet {
    let mut set = ManagerSet::default();
    for id in &ctx.config.manager_secret_ids {
        let loaded: Result<Manager, String> = async {
            let text = get_value(ctx.secrets_manager, id, None, Some(CURRENT))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "it has no AWSCURRENT value".to_owned())?;
            let doc = SecretDocument::parse(text.expose_secret()).map_err(|e| e.to_string())?;
            Manager::from_document(doc, id).map_err(|e| e.to_string())
        }
        .await;
        match loaded {
            Ok(m) => set.usable.push(m),
            Err(reason) => {
                tracing::error!(manager_secret = %id, reason = %reason, "manager token secret is unusable; secrets of its environment fail until it is repaired");
                set.broken.push((id.clone(), reason));
            }
        }
    }
    set
}

/// The secret's state as `DescribeSecret` reports it.
struct Described {
    arn: String,
    stages: HashMap<String, Vec<String>>,
}

impl Described {
    fn holder(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v.as_str())
    }
    fn has(&self, version: &str, stage: &str) -> bool {
        self.stages
            .get(version)
            .is_some_and(|s| s.iter().any(|x| x == stage))
    }
}

/// Runs one step, with the entry checks of docs/design.md §4 first.
pub async fn run_step(
    ctx: &SecretsManagerContext<'_>,
    req: &StepRequest,
    deadline: Deadline,
) -> Result<StepReport, SecretsManagerError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    let desc = ctx
        .secrets_manager
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(aws_err("DescribeSecret", secret))?;
    if desc.rotation_enabled != Some(true) {
        return Err(SecretsManagerError::RotationNotEnabled(secret.to_owned()));
    }
    let described = Described {
        arn: desc.arn.clone().unwrap_or_else(|| secret.to_owned()),
        stages: desc.version_ids_to_stages.clone().unwrap_or_default(),
    };
    if !described.stages.contains_key(version) {
        return Err(SecretsManagerError::VersionNotFound {
            secret: secret.to_owned(),
            version: version.to_owned(),
        });
    }
    let mut report = StepReport {
        step: req.step,
        secret_id: secret.to_owned(),
        version_id: version.to_owned(),
        status: "already-current",
        token_id: None,
        revoked: Vec::new(),
    };
    if described.has(version, CURRENT) {
        tracing::info!(secret, version, step = ?req.step, "version is already AWSCURRENT; nothing to do");
        if req.step == Step::Finish {
            report.revoked = finish_after_move(ctx, req, &described, deadline).await?;
        }
        if let Ok(Some(doc)) =
            get_document(ctx.secrets_manager, secret, Some(version), Some(CURRENT)).await
        {
            report.token_id = doc.token_id_hint();
        }
        return Ok(report);
    }
    if !described.has(version, PENDING) {
        return Err(SecretsManagerError::VersionNotPending {
            secret: secret.to_owned(),
            version: version.to_owned(),
        });
    }
    let managers = load_managers(ctx).await;
    let rot = |source: RotationError| SecretsManagerError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    // A manager secret (one of DT_MANAGER_SECRET_IDS) rotates by the same recipe, except that
    // it keeps its token-management scopes (the forbidden-scope rule guards ordinary secrets)
    // and that the old manager mints its successor, which then revokes old managers (a token
    // cannot revoke itself).
    let is_manager = names_manager_secret(ctx.config, &desc);
    let manager_config;
    let manager_ctx;
    let ctx = if is_manager {
        manager_config = Config {
            forbidden_scopes: Vec::new(),
            ..ctx.config.clone()
        };
        manager_ctx = SecretsManagerContext {
            config: &manager_config,
            ..*ctx
        };
        &manager_ctx
    } else {
        ctx
    };
    // The manager that mints (createSecret, from AWSCURRENT) or revokes (finishSecret, from
    // AWSPENDING): the configured one of the document's environment, or for a manager secret
    // the manager that document holds itself.
    let manager_of = |doc: &SecretDocument| -> Result<std::borrow::Cow<'_, Manager>, _> {
        if is_manager {
            // Its environment must be a configured one: the manager token it holds, and the
            // values it looks up, go to that environment only.
            managers
                .select(doc.environment_url.as_deref())
                .map_err(rot)?;
            Manager::from_document(doc.clone(), secret)
                .map(std::borrow::Cow::Owned)
                .map_err(rot)
        } else {
            managers
                .select(doc.environment_url.as_deref())
                .map(std::borrow::Cow::Borrowed)
                .map_err(rot)
        }
    };
    let missing = || SecretsManagerError::PendingMissing {
        secret: secret.to_owned(),
        version: version.to_owned(),
    };
    let current = get_document(ctx.secrets_manager, secret, None, Some(CURRENT))
        .await?
        .ok_or_else(|| SecretsManagerError::NoCurrentValue(secret.to_owned()))?;
    // A pending value equal to the current one is a placeholder (moto, or the
    // RotateImmediately=false check), not a token this function minted.
    let pending = get_document(ctx.secrets_manager, secret, Some(version), Some(PENDING))
        .await?
        .filter(|p| !p.token.same_as(&current.token));
    match req.step {
        Step::Create => {
            if let Some(p) = pending {
                report.status = "already-created";
                report.token_id = p.token_id_hint();
                return Ok(report);
            }
            let mgr = manager_of(&current)?;
            report.token_id = Some(create(ctx, req, &described, &mgr, &current, deadline).await?);
            report.status = "created";
        }
        Step::Set => {
            let pending = pending.ok_or_else(missing)?;
            let mgr = managers
                .select(pending.environment_url.as_deref())
                .map_err(rot)?;
            report.token_id =
                Some(set(ctx, req, &described.arn, mgr, &current, &pending, deadline).await?);
            report.status = "set";
        }
        Step::Test => {
            let mgr = managers
                .select(current.environment_url.as_deref())
                .map_err(rot)?;
            match pending {
                Some(p) => {
                    let facts = rotation::inspect(ctx.dynatrace, mgr, &current.token, deadline)
                        .await
                        .map_err(rot)?;
                    let expected = rotation::intended_scopes(ctx.config, &facts).map_err(rot)?;
                    let pmgr = managers.select(p.environment_url.as_deref()).map_err(rot)?;
                    let proof =
                        rotation::prove(ctx.dynatrace, &pmgr.env, &p.token, &expected, deadline)
                            .await;
                    if let Err(failed) = proof {
                        // Scopes edited since createSecret: restore them and prove again (the
                        // intended scopes are known here; setSecret no longer reads them).
                        let arn = &described.arn;
                        if !restore_scopes(ctx, req, arn, pmgr, &p, &expected, deadline).await? {
                            return Err(rot(failed));
                        }
                        rotation::prove(ctx.dynatrace, &pmgr.env, &p.token, &expected, deadline)
                            .await
                            .map_err(rot)?;
                    }
                    report.token_id = p.token_id_hint();
                    report.status = "tested";
                }
                None => {
                    // Configuration check (rotation enabled without rotating): the current
                    // token must authenticate by itself and the manager must know it.
                    rotation::inspect(ctx.dynatrace, mgr, &current.token, deadline)
                        .await
                        .map_err(rot)?;
                    rotation::prove_current(ctx.dynatrace, &mgr.env, &current.token, deadline)
                        .await
                        .map_err(rot)?;
                    report.token_id = current.token_id_hint();
                    report.status = "configuration-ok";
                }
            }
        }
        Step::Finish => {
            let pending = pending.ok_or_else(missing)?;
            let mgr = manager_of(&pending)?;
            let (new_id, revoked) =
                finish(ctx, req, &described, &mgr, &current, &pending, deadline).await?;
            report.token_id = Some(new_id);
            report.revoked = revoked;
            report.status = "finished";
        }
    }
    Ok(report)
}

/// Whether the described secret is one of `DT_MANAGER_SECRET_IDS` (named by ARN, partial
/// ARN or name).
fn names_manager_secret(
    config: &Config,
    desc: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
) -> bool {
    config.manager_secret_ids.iter().any(|id| {
        desc.name() == Some(id.as_str())
            || desc
                .arn()
                .is_some_and(|arn| arn == id || is_partial_arn_of(id, arn))
    })
}

/// Whether `id` is `arn` without the six random characters Secrets Manager appends.
fn is_partial_arn_of(id: &str, arn: &str) -> bool {
    id.starts_with("arn:")
        && arn.len() == id.len() + 7
        && arn.starts_with(id)
        && arn.as_bytes()[id.len()] == b'-'
}

/// Whether a Secrets Manager failure leaves the outcome of the call unknown (timeout, lost
/// answer, throttling, 5xx), so the same idempotent call must be repeated to learn it.
fn unclear<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &aws_sdk_secretsmanager::error::SdkError<E, R>,
) -> bool {
    use aws_sdk_secretsmanager::error::SdkError;
    match e {
        SdkError::ServiceError(_) => matches!(
            e.code(),
            Some(
                "ThrottlingException"
                    | "InternalServiceError"
                    | "InternalFailure"
                    | "ServiceUnavailable"
                    | "RequestTimeout"
            )
        ),
        _ => true,
    }
}

/// `createSecret`: steps 1–3 of docs/design.md §3, then `PutSecretValue` under AWSPENDING,
/// repeated with the same `ClientRequestToken` and value until Secrets Manager answers
/// definitively. Returns the id of the token stored as pending.
async fn create(
    ctx: &SecretsManagerContext<'_>,
    req: &StepRequest,
    described: &Described,
    mgr: &Manager,
    current: &SecretDocument,
    deadline: Deadline,
) -> Result<String, SecretsManagerError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    let rot = |source: RotationError| SecretsManagerError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let facts = rotation::inspect(ctx.dynatrace, mgr, &current.token, deadline)
        .await
        .map_err(rot)?;
    // Write-ahead: while a mint may be unsettled the secret carries MINTING, so that
    // finishSecret knows to look for what an interrupted attempt left (and lists the tenant
    // only then). A label an earlier attempt left stays for finishSecret.
    // A rotation the policy refuses (forbidden scopes) mints nothing and labels nothing.
    let marker = Marker::secrets_manager(&described.arn, version);
    rotation::plan(ctx.config, &facts, &marker, jiff::Timestamp::now()).map_err(rot)?;
    let flagged_before = described.holder(MINTING).is_some();
    let current_version = described.holder(CURRENT).map(str::to_owned);
    if !flagged_before && let Some(v) = &current_version {
        set_label(ctx, secret, MINTING, Some(v), None).await?;
    }
    let store = PendingVersion {
        ctx,
        req,
        current,
        deadline,
    };
    let replaced = rotation::replace(
        ctx.dynatrace,
        ctx.config,
        mgr,
        current,
        facts,
        &marker,
        &store,
        deadline,
    )
    .await;
    // Anything but a settled store may leave a token behind: make sure the label is there
    // (a concurrent run of the same step may have removed it meanwhile). Best effort.
    if !matches!(replaced, Ok(Replaced::Stored { settled: true, .. }))
        && let Some(v) = &current_version
        && let Err(e) = set_label(ctx, secret, MINTING, Some(v), None).await
    {
        tracing::warn!(secret, version, error = %e, "could not keep the {MINTING} label; the sweep finds what this attempt may have left");
    }
    match replaced.map_err(rot)? {
        Replaced::Stored {
            created, settled, ..
        } => {
            tracing::info!(secret, version, token_id = %created.id, "stored the new token as AWSPENDING");
            if settled
                && !flagged_before
                && let Some(v) = &current_version
                && let Err(e) = set_label(ctx, secret, MINTING, None, Some(v)).await
            {
                tracing::warn!(secret, version, error = %e, "could not remove the {MINTING} label; finishSecret will look for leftovers and remove it");
            }
            Ok(created.id)
        }
        Replaced::Theirs(other) => Ok(other.unwrap_or_else(|| "<unknown>".into())),
        Replaced::NotStored(Some(e)) => Err(e),
        Replaced::NotStored(None) => Err(SecretsManagerError::PendingMissing {
            secret: secret.to_owned(),
            version: version.to_owned(),
        }),
        Replaced::Unknown { token_id, detail } => Err(SecretsManagerError::StoreOutcomeUnknown {
            secret: secret.to_owned(),
            version: version.to_owned(),
            token_id,
            detail,
        }),
    }
}

/// The variables a Vault credentials secret may set (`VAULT_CREDENTIALS_SECRET_ID`).
pub const VAULT_CREDENTIAL_KEYS: [&str; 3] = ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"];

/// Reads the Vault credentials the function's configuration names instead of holding them
/// (`VAULT_CREDENTIALS_SECRET_ID`): a JSON object with any of [`VAULT_CREDENTIAL_KEYS`], so that
/// neither a Vault token nor an AppRole secret id sits in the function's environment, readable by
/// whoever may call `lambda:GetFunctionConfiguration`. Values are held redacted; errors name the
/// secret and the keys, never a value.
pub async fn vault_credentials(
    client: &SecretsManagerClient,
    secret_id: &str,
) -> Result<HashMap<String, secrecy::SecretString>, SecretsManagerError> {
    let text = get_value(client, secret_id, None, Some(CURRENT))
        .await?
        .ok_or_else(|| SecretsManagerError::NoCurrentValue(secret_id.to_owned()))?;
    let bad = |why: String| SecretsManagerError::Aws {
        op: "GetSecretValue",
        secret: secret_id.to_owned(),
        code: "InvalidVaultCredentials".into(),
        message: why,
    };
    let parsed: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text.expose_secret()).map_err(|_| {
            bad("the Vault credentials secret is not a JSON object (expected {\"VAULT_TOKEN\": ...} or {\"VAULT_ROLE_ID\": ..., \"VAULT_SECRET_ID\": ...})".into())
        })?;
    let mut out = HashMap::new();
    for (key, value) in parsed {
        if !VAULT_CREDENTIAL_KEYS.contains(&key.as_str()) {
            // The key itself is not shown: a value pasted as a key would leak.
            return Err(bad(format!(
                "the Vault credentials secret has a key that is not allowed (allowed: {})",
                VAULT_CREDENTIAL_KEYS.join(", ")
            )));
        }
        let serde_json::Value::String(v) = value else {
            return Err(bad(format!("{key} must be a string")));
        };
        out.insert(key, secrecy::SecretString::from(v));
    }
    Ok(out)
}

/// Secrets Manager's side of [`rotation::replace`]: the successor goes in as `AWSPENDING` of
/// the rotation's version (`ClientRequestToken`), so a repeated put with the same value is
/// accepted and a different value is refused: the write lands at most once.
struct PendingVersion<'a> {
    ctx: &'a SecretsManagerContext<'a>,
    req: &'a StepRequest,
    current: &'a SecretDocument,
    deadline: Deadline,
}

impl rotation::Store for PendingVersion<'_> {
    type Refusal = SecretsManagerError;

    const READ_BACK_AFTER_LANDING: bool = true;

    fn what(&self) -> &'static str {
        "PutSecretValue"
    }

    async fn write(&self, doc: &SecretDocument) -> Attempt<Result<(), SecretsManagerError>> {
        let secret = self.req.secret_id.as_str();
        // Secrets Manager refuses a second, different value under one ClientRequestToken; moto
        // overwrites a version labelled AWSPENDING. Look first, so that a concurrent run's
        // stored successor is refused here as Secrets Manager would (the read-back settles it).
        if let Ok(Some(there)) = self.read_back().await
            && !there.token.same_as(&doc.token)
        {
            return Attempt::Definitive(Err(SecretsManagerError::PendingHeldByAnotherRun {
                secret: secret.to_owned(),
                version: self.req.client_request_token.clone(),
            }));
        }
        let body = doc.render();
        let put = self
            .ctx
            .secrets_manager
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(&self.req.client_request_token)
            .secret_string(body.expose_secret())
            .version_stages(PENDING)
            .set_rotation_token(
                self.req
                    .rotation_token
                    .as_ref()
                    .map(|t| t.expose().to_owned()),
            )
            .send();
        // The SDK's own attempts (and their timeouts) may outlast the invocation: past the
        // deadline less its reserve the put is abandoned as unclear, and settled like one.
        let put = match self.deadline.remaining() {
            Some(left) => match tokio::time::timeout(left, put).await {
                Ok(answer) => answer,
                Err(_) => {
                    return Attempt::Unclear(
                        "PutSecretValue did not answer before the invocation's deadline".into(),
                    );
                }
            },
            None => put.await,
        };
        match put {
            Ok(_) => Attempt::Definitive(Ok(())),
            Err(e) if unclear(&e) => {
                Attempt::Unclear(aws_err("PutSecretValue", secret)(e).to_string())
            }
            Err(e) => Attempt::Definitive(Err(aws_err("PutSecretValue", secret)(e))),
        }
    }

    /// The rotation's version by its id alone (its `AWSPENDING` label may have moved): what
    /// landed under this `ClientRequestToken`. A value equal to the current one is the
    /// placeholder some callers put there (moto, `RotateImmediately=false` checks), not
    /// another run's successor.
    async fn read_back(&self) -> Result<Option<SecretDocument>, ()> {
        let secret = self.req.secret_id.as_str();
        let version = self.req.client_request_token.as_str();
        match get_document(self.ctx.secrets_manager, secret, Some(version), None).await {
            Ok(Some(d)) if d.token.same_as(&self.current.token) => Ok(None),
            Ok(d) => Ok(d),
            Err(e) => {
                tracing::warn!(secret, version, error = %e, "could not read the pending version back");
                Err(())
            }
        }
    }
}

/// `setSecret`: the value was chosen by Dynatrace at creation, so confirm the pending token
/// exists (by its value) and is enabled. One call when it is as minted: its scopes are
/// proven by testSecret against the current token's, authenticated by the pending token
/// itself. A pending token someone disabled is restored whole (enabled, the intended
/// scopes). The token repaired is the one the pending value looks up to, never one a field
/// names.
async fn set(
    ctx: &SecretsManagerContext<'_>,
    req: &StepRequest,
    arn: &str,
    mgr: &Manager,
    current: &SecretDocument,
    pending: &SecretDocument,
    deadline: Deadline,
) -> Result<String, SecretsManagerError> {
    let secret = req.secret_id.as_str();
    let rot = |source: RotationError| SecretsManagerError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let token = ctx
        .dynatrace
        .lookup(&mgr.env, &mgr.token, &pending.token, deadline)
        .await
        .map_err(|e| rot(dynatrace_error("looking up the pending token by its value")(e)))?
        .ok_or_else(|| SecretsManagerError::PendingTokenVanished {
            secret: secret.to_owned(),
            version: req.client_request_token.clone(),
            token_id: pending
                .token_id_hint()
                .unwrap_or_else(|| "<unknown>".into()),
        })?;
    let id = token.id_str().to_owned();
    if marker::leaked_on(token.name_str()).is_some() {
        return Err(SecretsManagerError::PendingTokenLeaked {
            secret: secret.to_owned(),
            version: req.client_request_token.clone(),
            token_id: id,
        });
    }
    if token.is_enabled() {
        // As minted: testSecret proves its scopes against the current token's, by value.
        return Ok(id);
    }
    // Someone disabled it since createSecret: restore it whole, scopes included, but only a
    // token this rotation minted (its marker): a value someone else stored is never granted
    // scopes or enabled.
    if !minted_for_version(&token, arn, &req.client_request_token) {
        return Err(rot(RotationError::ProofFailed {
            id,
            reason: "the pending token is disabled and does not carry this rotation's marker (the rotator did not mint it); nothing is changed: remove AWSPENDING and rotate again".into(),
        }));
    }
    let facts = rotation::inspect(ctx.dynatrace, mgr, &current.token, deadline)
        .await
        .map_err(rot)?;
    let intended = rotation::intended_scopes(ctx.config, &facts).map_err(rot)?;
    let mut update = crate::dynatrace::TokenUpdate {
        enabled: Some(true),
        ..Default::default()
    };
    if !crate::policy::same_scopes(&token.scope_list(), &intended) {
        update.scopes = Some(intended);
    }
    {
        tracing::warn!(token_id = %id, enable = ?update.enabled, "repairing the pending token");
        ctx.dynatrace
            .update(&mgr.env, &mgr.token, &id, &update, deadline)
            .await
            .map_err(|e| rot(dynatrace_error(format!("repairing pending token {id}"))(e)))?;
    }
    Ok(id)
}

/// Whether `token` carries this deployment's marker for the rotation of `version` of the
/// secret `arn`: only such a token may be re-enabled or given scopes.
fn minted_for_version(token: &crate::dynatrace::ApiToken, arn: &str, version: &str) -> bool {
    token
        .name_str()
        .contains(&Marker::secrets_manager(arn, version).tag())
}

/// After a failed proof in testSecret: when the pending token (looked up by its value) is
/// enabled, minted by this rotation (its marker) but holds other scopes than `expected`, sets
/// them. Returns whether it did (then the
/// proof is worth repeating). A token disabled as leaked is refused, never touched.
async fn restore_scopes(
    ctx: &SecretsManagerContext<'_>,
    req: &StepRequest,
    arn: &str,
    mgr: &Manager,
    pending: &SecretDocument,
    expected: &[String],
    deadline: Deadline,
) -> Result<bool, SecretsManagerError> {
    let secret = req.secret_id.as_str();
    let rot = |source: RotationError| SecretsManagerError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let Some(token) = ctx
        .dynatrace
        .lookup(&mgr.env, &mgr.token, &pending.token, deadline)
        .await
        .map_err(|e| rot(dynatrace_error("looking up the pending token by its value")(e)))?
    else {
        return Ok(false);
    };
    let id = token.id_str().to_owned();
    if marker::leaked_on(token.name_str()).is_some() {
        return Err(SecretsManagerError::PendingTokenLeaked {
            secret: secret.to_owned(),
            version: req.client_request_token.clone(),
            token_id: id,
        });
    }
    if !token.is_enabled()
        || crate::policy::same_scopes(&token.scope_list(), expected)
        || !minted_for_version(&token, arn, &req.client_request_token)
    {
        return Ok(false);
    }
    tracing::warn!(token_id = %id, "the pending token's scopes were changed since createSecret: restoring them");
    let update = crate::dynatrace::TokenUpdate {
        scopes: Some(expected.to_vec()),
        ..Default::default()
    };
    ctx.dynatrace
        .update(&mgr.env, &mgr.token, &id, &update, deadline)
        .await
        .map_err(|e| rot(dynatrace_error(format!("restoring pending token {id}"))(e)))?;
    Ok(true)
}

/// The token under AWSPREVIOUS as a revocation candidate: proven when its value looks up to
/// an id, unproven (only its hint) when Dynatrace does not know the value. A failure to read
/// AWSPREVIOUS fails the step (Secrets Manager retries it): skipping it would keep the old
/// token alive for ever, and it carries no marker the sweep could find it by.
async fn previous_candidate(
    ctx: &SecretsManagerContext<'_>,
    secret: &str,
    mgr: &Manager,
    deadline: Deadline,
) -> Result<Option<Proven>, SecretsManagerError> {
    let Some(prev) = get_document(ctx.secrets_manager, secret, None, Some(PREVIOUS)).await? else {
        return Ok(None);
    };
    proven_candidate(ctx, secret, mgr, &prev, deadline)
        .await
        .map(Some)
}

/// A revocation candidate, with the lookup's answer when it was proven by value (so that
/// revoking it needs no second read).
struct Proven {
    candidate: Candidate,
    token: Option<crate::dynatrace::ApiToken>,
}

/// `doc`'s token as a candidate: by value when Dynatrace knows the value, else unproven.
async fn proven_candidate(
    ctx: &SecretsManagerContext<'_>,
    secret: &str,
    mgr: &Manager,
    doc: &SecretDocument,
    deadline: Deadline,
) -> Result<Proven, SecretsManagerError> {
    match rotation::proven_token(ctx.dynatrace, mgr, &doc.token, deadline)
        .await
        .map_err(|source| SecretsManagerError::Rotation {
            secret: secret.to_owned(),
            source,
        })? {
        Some(token) => Ok(Proven {
            candidate: Candidate::new(token.id_str(), Proof::ByValue),
            token: Some(token),
        }),
        None => Ok(Proven {
            candidate: Candidate::new(
                doc.token_id_hint()
                    .unwrap_or_else(|| "<legacy token>".into()),
                Proof::Unproven,
            ),
            token: None,
        }),
    }
}

/// `finishSecret` before the label move: revoke per policy, clean up, then move
/// AWSCURRENT to the new version and remove AWSPENDING.
async fn finish(
    ctx: &SecretsManagerContext<'_>,
    req: &StepRequest,
    described: &Described,
    mgr: &Manager,
    current: &SecretDocument,
    pending: &SecretDocument,
    deadline: Deadline,
) -> Result<(String, Vec<String>), SecretsManagerError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    let rot = |source: RotationError| SecretsManagerError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let new_id = rotation::token_id_of(ctx.dynatrace, mgr, pending, deadline)
        .await
        .map_err(rot)?
        .ok_or_else(|| SecretsManagerError::PendingTokenVanished {
            secret: secret.to_owned(),
            version: version.to_owned(),
            token_id: "<unknown>".into(),
        })?;
    let cur_id = rotation::token_id_of(ctx.dynatrace, mgr, current, deadline)
        .await
        .map_err(rot)?;
    let previous = match ctx.config.revoke_old {
        RevokeOld::Never => None,
        RevokeOld::NextRotation | RevokeOld::WhenUnused | RevokeOld::Immediately => {
            previous_candidate(ctx, secret, mgr, deadline).await?
        }
    };
    // Before the move nothing a label will still reference is revoked: the current token
    // stays live until AWSCURRENT has moved (even under `immediately`, so a failed move never
    // leaves AWSCURRENT on a revoked token); after the move AWSPREVIOUS = the old current.
    let keep: BTreeSet<String> = [Some(new_id.clone()), cur_id.clone()]
        .into_iter()
        .flatten()
        .collect();
    let mut revoked = revoke_proven(ctx, mgr, described, previous.as_slice(), &keep, deadline)
        .await
        .map_err(rot)?;
    // The tenant-wide listing for what an interrupted attempt minted only when createSecret
    // left MINTING (a crash, a failure, a lost answer not settled). Without it the listing is
    // saved; what else may be left (a rotation abandoned after its token was stored, a race
    // between two runs of one step) is the sweep's, which finds it by this secret's marker.
    if described.holder(MINTING).is_some() {
        let (cleaned, complete) =
            clean_orphans(ctx, mgr, described, version, &keep, &revoked, deadline).await;
        revoked.extend(cleaned);
        if complete {
            clear_minting(ctx, secret, described).await;
        }
    }
    let mut call = ctx
        .secrets_manager
        .update_secret_version_stage()
        .secret_id(secret)
        .version_stage(CURRENT)
        .move_to_version_id(version);
    if let Some(old) = described.holder(CURRENT) {
        call = call.remove_from_version_id(old);
    }
    call.send()
        .await
        .map_err(aws_err("UpdateSecretVersionStage", secret))?;
    remove_pending(ctx, secret, version).await?;
    if ctx.config.revoke_old == RevokeOld::Immediately {
        // A failure here is retried: a re-run finishSecret finds the version current and
        // revokes AWSPREVIOUS (see `finish_after_move`).
        let old_current = proven_candidate(ctx, secret, mgr, current, deadline).await?;
        let keep = BTreeSet::from([new_id.clone()]);
        revoked.extend(
            revoke_proven(ctx, mgr, described, &[old_current], &keep, deadline)
                .await
                .map_err(rot)?,
        );
    }
    tracing::info!(secret, version, token_id = %new_id, previous_token_id = ?cur_id, "rotation finished: new token is AWSCURRENT");
    if ctx.config.events {
        let old = cur_id.as_deref().unwrap_or("<unknown>");
        rotation::report_event(ctx.dynatrace, mgr, &described.arn, old, &new_id, deadline).await;
    }
    Ok((new_id, revoked))
}

/// Revokes the proven `candidates` not in `keep` (unproven ones are left, with a warning
/// naming the secret and the id). A failure fails the step: the policy's revocation happens
/// before the label move, and a re-run redoes it.
async fn revoke_proven(
    ctx: &SecretsManagerContext<'_>,
    mgr: &Manager,
    described: &Described,
    proven: &[Proven],
    keep: &BTreeSet<String>,
    deadline: Deadline,
) -> Result<Vec<String>, RotationError> {
    let today = crate::policy::today();
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    let manager_id = mgr.token.derived_id();
    let managers: Vec<&str> = manager_id.iter().map(String::as_str).collect();
    let candidates: Vec<Candidate> = proven.iter().map(|p| p.candidate.clone()).collect();
    let targets = rotation::revocation_targets(&candidates, &keep, &managers);
    for id in &targets.unproven {
        tracing::warn!(secret = %described.arn, token_id = %id, "not revoking the old token: no stored value of this secret looks up to it and it carries no marker of this secret (edited or forged value?)");
    }
    let owner = marker::secret_key_secrets_manager(&described.arn);
    let mut revoked = Vec::new();
    for id in targets.revoke {
        let action = ctx.config.old_token_action;
        // The lookup that proved it answered its name and state: no second read before a
        // disable. A delete reads afresh (a token renamed as leaked since is kept).
        let known = proven
            .iter()
            .filter(|_| action == OldTokenAction::Disable)
            .find_map(|p| p.token.as_ref().filter(|t| t.id_str() == id));
        let outcome = match known {
            Some(token) => {
                rotation::revoke_known(
                    ctx.dynatrace,
                    mgr,
                    token,
                    Some(&owner),
                    action,
                    today,
                    deadline,
                )
                .await?
            }
            None => {
                rotation::revoke(
                    ctx.dynatrace,
                    mgr,
                    &id,
                    Some(&owner),
                    action,
                    today,
                    deadline,
                )
                .await?
            }
        };
        let events = ctx.config.events;
        rotation::report_revocation(
            ctx.dynatrace,
            mgr,
            events,
            &described.arn,
            &id,
            outcome,
            deadline,
        )
        .await;
        revoked.push(id);
    }
    Ok(revoked)
}

/// Revokes the tokens minted for this secret (its marker) that no label will reference
/// (`keep`) and no other pending rotation may still store. Under `DT_REVOKE_OLD=never` only
/// the orphans of this very rotation go. Run by a finishSecret that finds its version already
/// current (a re-run: the earlier attempt may have been cut short); the ordinary finishSecret
/// leaves this to the sweep, which saves a tenant-wide listing per rotation. Best effort: a
/// failure (the listing, one unrelated token) is a warning, retried by the sweep.
async fn clean_orphans(
    ctx: &SecretsManagerContext<'_>,
    mgr: &Manager,
    described: &Described,
    version: &str,
    keep: &BTreeSet<String>,
    already: &[String],
    deadline: Deadline,
) -> (Vec<String>, bool) {
    let today = crate::policy::today();
    let keys = marker::secret_keys_secrets_manager(&described.arn);
    let key_refs = [keys[0].as_str(), keys[1].as_str()];
    let this_rotation = Marker::secrets_manager(&described.arn, version).tag();
    let pending_elsewhere: Vec<&str> = described
        .stages
        .keys()
        .filter(|v| *v != version && described.has(v, PENDING))
        .map(String::as_str)
        .collect();
    let tokens = match rotation::minted_for_secret(ctx.dynatrace, mgr, &key_refs, deadline).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(secret = %described.arn, error = %e, "could not list this secret's minted tokens; the sweep cleans up");
            return (Vec::new(), false);
        }
    };
    let manager_id = mgr.token.derived_id();
    let mut revoked = Vec::new();
    let mut complete = true;
    for t in tokens {
        let id = t.id_str().to_owned();
        let name = t.name_str();
        let ours = name.contains(&this_rotation);
        let other_pending = pending_elsewhere
            .iter()
            .any(|v| name.contains(&Marker::secrets_manager(&described.arn, v).tag()));
        let orphan = marker::is_minted(name)
            && !keep.contains(&id)
            && !other_pending
            && t.is_enabled()
            && marker::disabled_on(name).is_none()
            && manager_id.as_deref() != Some(id.as_str());
        if orphan && (ours || ctx.config.revoke_old != RevokeOld::Never) && !already.contains(&id) {
            // Read afresh: a token renamed as leaked since the listing is kept as evidence.
            let action = ctx.config.old_token_action;
            match rotation::revoke(ctx.dynatrace, mgr, &id, None, action, today, deadline).await {
                Ok(_) => revoked.push(id),
                Err(e) => {
                    complete = false;
                    tracing::warn!(secret = %described.arn, token_id = %id, error = %e, "could not revoke an unreferenced minted token; the sweep retries")
                }
            }
        }
    }
    (revoked, complete)
}

/// The custom staging label createSecret keeps on the secret (on its AWSCURRENT version)
/// while a mint may be unsettled; finishSecret lists the tenant for leftovers only when it
/// is there, and removes it after a complete clean-up. Ignored by the sweep and consumers.
pub const MINTING: &str = "DTR_MINTING";

/// Removes [`MINTING`] from the version carrying it. Best effort: a label left makes the
/// next finishSecret look again.
async fn clear_minting(ctx: &SecretsManagerContext<'_>, secret: &str, described: &Described) {
    if let Some(v) = described.holder(MINTING)
        && let Err(e) = set_label(ctx, secret, MINTING, None, Some(v)).await
    {
        tracing::warn!(secret, error = %e, "could not remove the {MINTING} label; the next finishSecret looks again");
    }
}

/// Moves staging label `stage` to version `to` and/or removes it from version `from`.
async fn set_label(
    ctx: &SecretsManagerContext<'_>,
    secret: &str,
    stage: &str,
    to: Option<&str>,
    from: Option<&str>,
) -> Result<(), SecretsManagerError> {
    ctx.secrets_manager
        .update_secret_version_stage()
        .secret_id(secret)
        .version_stage(stage)
        .set_move_to_version_id(to.map(str::to_owned))
        .set_remove_from_version_id(from.map(str::to_owned))
        .send()
        .await
        .map_err(aws_err("UpdateSecretVersionStage", secret))?;
    Ok(())
}

/// A re-run `finishSecret` after the label move: remove a leftover AWSPENDING and redo the
/// idempotent revocation from what the labels now reference.
async fn finish_after_move(
    ctx: &SecretsManagerContext<'_>,
    req: &StepRequest,
    described: &Described,
    deadline: Deadline,
) -> Result<Vec<String>, SecretsManagerError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    if described.has(version, PENDING) {
        remove_pending(ctx, secret, version).await?;
    }
    let rot = |source: RotationError| SecretsManagerError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let current = get_document(ctx.secrets_manager, secret, None, Some(CURRENT))
        .await?
        .ok_or_else(|| SecretsManagerError::NoCurrentValue(secret.to_owned()))?;
    let managers = load_managers(ctx).await;
    let mgr = managers
        .select(current.environment_url.as_deref())
        .map_err(rot)?;
    let mut keep = BTreeSet::new();
    keep.extend(
        rotation::token_id_of(ctx.dynatrace, mgr, &current, deadline)
            .await
            .map_err(rot)?,
    );
    // `immediately`: the token now under AWSPREVIOUS goes (its revocation may have failed
    // after the move); otherwise it stays for the overlap.
    let mut candidates = Vec::new();
    match ctx.config.revoke_old {
        RevokeOld::Immediately => {
            candidates.extend(previous_candidate(ctx, secret, mgr, deadline).await?);
        }
        _ => {
            if let Some(prev) =
                get_document(ctx.secrets_manager, secret, None, Some(PREVIOUS)).await?
            {
                keep.extend(
                    rotation::token_id_of(ctx.dynatrace, mgr, &prev, deadline)
                        .await
                        .map_err(rot)?,
                );
            }
        }
    }
    let mut revoked = revoke_proven(ctx, mgr, described, &candidates, &keep, deadline)
        .await
        .map_err(rot)?;
    let (cleaned, complete) =
        clean_orphans(ctx, mgr, described, version, &keep, &revoked, deadline).await;
    revoked.extend(cleaned);
    if complete {
        clear_minting(ctx, secret, described).await;
    }
    Ok(revoked)
}

async fn remove_pending(
    ctx: &SecretsManagerContext<'_>,
    secret: &str,
    version: &str,
) -> Result<(), SecretsManagerError> {
    ctx.secrets_manager
        .update_secret_version_stage()
        .secret_id(secret)
        .version_stage(PENDING)
        .remove_from_version_id(version)
        .send()
        .await
        .map_err(aws_err("UpdateSecretVersionStage", secret))?;
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_partial_arn_names_only_its_own_secret() {
        let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dt/manager-AbCdEf";
        assert!(is_partial_arn_of(
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dt/manager",
            arn
        ));
        assert!(!is_partial_arn_of(
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dt/man",
            arn
        ));
        assert!(!is_partial_arn_of(
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dt/manager",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dt/manager-2-AbCdEf"
        ));
    }

    use super::*;
    use aws_sdk_secretsmanager::error::{ErrorMetadata, SdkError};
    use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;

    fn service(code: &str) -> SdkError<PutSecretValueError, ()> {
        SdkError::service_error(
            PutSecretValueError::generic(ErrorMetadata::builder().code(code).build()),
            (),
        )
    }

    /// Which answers leave a put's outcome unknown (it is repeated) and which are final.
    #[test]
    fn unclear_answers_are_told_from_refusals() {
        for code in [
            "ThrottlingException",
            "InternalServiceError",
            "ServiceUnavailable",
        ] {
            assert!(unclear(&service(code)), "{code}");
        }
        for code in [
            "ResourceExistsException",
            "AccessDeniedException",
            "InvalidRequestException",
            "ResourceNotFoundException",
        ] {
            assert!(!unclear(&service(code)), "{code}");
        }
        let timeout: SdkError<PutSecretValueError, ()> =
            SdkError::timeout_error(Box::new(std::io::Error::other("attempt timed out")));
        assert!(unclear(&timeout));
    }

    #[test]
    fn errors_name_the_secret_and_their_code() {
        let e = aws_err("PutSecretValue", "app/one")(PutSecretValueError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not allowed")
                .build(),
        ));
        assert_eq!(e.code(), "SecretsManagerError");
        let shown = e.to_string();
        assert!(
            shown.contains("app/one") && shown.contains("AccessDeniedException"),
            "{shown}"
        );
    }
}
