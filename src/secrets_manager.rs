//! The Secrets Manager rotation protocol (DESIGN.md §4): `createSecret`, `setSecret`,
//! `testSecret`, `finishSecret`, each idempotent because Secrets Manager retries whole
//! rotations and steps may run twice or at the same time.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_secretsmanager::Client as SmClient;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::document::SecretDocument;
use crate::dynatrace::Dynatrace;
use crate::marker::{self, Marker};
use crate::policy::RevokeOld;
use crate::rotation::{self, Manager, RotationError, dt};
use crate::secret::RotationToken;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";
const PREVIOUS: &str = "AWSPREVIOUS";

/// One of the four steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Step {
    /// `createSecret`.
    #[serde(rename = "createSecret")]
    Create,
    /// `setSecret`.
    #[serde(rename = "setSecret")]
    Set,
    /// `testSecret`.
    #[serde(rename = "testSecret")]
    Test,
    /// `finishSecret`.
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    /// Parses the camelCase wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "createSecret" => Self::Create,
            "setSecret" => Self::Set,
            "testSecret" => Self::Test,
            "finishSecret" => Self::Finish,
            _ => return None,
        })
    }
}

/// A rotation step invocation.
#[derive(Debug, Clone)]
pub struct StepRequest {
    /// `SecretId` (ARN on AWS, name on moto).
    pub secret_id: String,
    /// `ClientRequestToken`: the pending version id.
    pub client_request_token: String,
    /// `Step`.
    pub step: Step,
    /// `RotationToken`, forwarded to `PutSecretValue` when present.
    pub rotation_token: Option<RotationToken>,
}

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
pub enum SmError {
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
    /// The rotation of the token failed.
    #[error("secret {secret}: {source}")]
    Rotation {
        /// The secret.
        secret: String,
        /// The failure.
        source: RotationError,
    },
}

fn aws_err<E: ProvideErrorMetadata>(op: &'static str, secret: &str) -> impl FnOnce(E) -> SmError {
    let secret = secret.to_owned();
    move |e| {
        let code = e.code().unwrap_or("Unknown").to_owned();
        if code == "ResourceNotFoundException" && op == "DescribeSecret" {
            return SmError::SecretNotFound(secret);
        }
        SmError::Aws {
            op,
            secret,
            code,
            message: crate::secret::redact_text(e.message().unwrap_or("no message"), 300),
        }
    }
}

/// What a step needs: the configuration and the shared clients.
pub struct SmContext<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// Secrets Manager.
    pub sm: &'a SmClient,
    /// Dynatrace.
    pub dt: &'a Dynatrace,
}

/// Reads a secret string; `None` when that version/stage has no value.
async fn get_value(
    sm: &SmClient,
    secret: &str,
    version: Option<&str>,
    stage: &str,
) -> Result<Option<secrecy::SecretString>, SmError> {
    let resp = sm
        .get_secret_value()
        .secret_id(secret)
        .set_version_id(version.map(str::to_owned))
        .version_stage(stage)
        .send()
        .await;
    match resp {
        Ok(out) => Ok(out.secret_string.map(secrecy::SecretString::from)),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(aws_err("GetSecretValue", secret)(e)),
    }
}

async fn get_document(
    sm: &SmClient,
    secret: &str,
    version: Option<&str>,
    stage: &str,
) -> Result<Option<SecretDocument>, SmError> {
    match get_value(sm, secret, version, stage).await? {
        None => Ok(None),
        Some(text) => SecretDocument::parse(text.expose_secret())
            .map(Some)
            .map_err(|e| SmError::Rotation {
                secret: secret.to_owned(),
                source: e.into(),
            }),
    }
}

/// Reads and validates every manager document of `DT_MANAGER_SECRET_IDS`.
pub async fn load_managers(ctx: &SmContext<'_>) -> Result<Vec<Manager>, SmError> {
    let mut managers = Vec::new();
    for id in &ctx.config.manager_secret_ids {
        let unusable = |reason: String| SmError::ManagerUnusable {
            id: id.clone(),
            reason,
        };
        let text = get_value(ctx.sm, id, None, CURRENT)
            .await
            .map_err(|e| unusable(e.to_string()))?
            .ok_or_else(|| unusable("it has no AWSCURRENT value".into()))?;
        let doc =
            SecretDocument::parse(text.expose_secret()).map_err(|e| unusable(e.to_string()))?;
        managers.push(Manager::from_document(doc, id).map_err(|e| unusable(e.to_string()))?);
    }
    Ok(managers)
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

/// Runs one step, with the entry checks of DESIGN.md §4 first.
pub async fn run_step(
    ctx: &SmContext<'_>,
    req: &StepRequest,
    deadline: Deadline,
) -> Result<StepReport, SmError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    let desc = ctx
        .sm
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(aws_err("DescribeSecret", secret))?;
    if desc.rotation_enabled != Some(true) {
        return Err(SmError::RotationNotEnabled(secret.to_owned()));
    }
    let described = Described {
        arn: desc.arn.clone().unwrap_or_else(|| secret.to_owned()),
        stages: desc.version_ids_to_stages.clone().unwrap_or_default(),
    };
    if !described.stages.contains_key(version) {
        return Err(SmError::VersionNotFound {
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
        if let Ok(Some(doc)) = get_document(ctx.sm, secret, Some(version), CURRENT).await {
            report.token_id = doc.known_token_id();
        }
        return Ok(report);
    }
    if !described.has(version, PENDING) {
        return Err(SmError::VersionNotPending {
            secret: secret.to_owned(),
            version: version.to_owned(),
        });
    }
    let managers = load_managers(ctx).await?;
    let rot = |source: RotationError| SmError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let current = get_document(ctx.sm, secret, None, CURRENT)
        .await?
        .ok_or_else(|| SmError::NoCurrentValue(secret.to_owned()))?;
    // A pending value equal to the current one is a placeholder (moto, or the
    // RotateImmediately=false check), not a token this function minted.
    let pending = get_document(ctx.sm, secret, Some(version), PENDING)
        .await?
        .filter(|p| !p.token.same_as(&current.token));
    match req.step {
        Step::Create => {
            if let Some(p) = pending {
                report.status = "already-created";
                report.token_id = p.known_token_id();
                return Ok(report);
            }
            let mgr = rotation::select_manager(&managers, current.environment_url.as_deref())
                .map_err(rot)?;
            report.token_id = Some(create(ctx, req, &described, mgr, &current, deadline).await?);
            report.status = "created";
        }
        Step::Set => {
            let pending = pending.ok_or_else(|| SmError::PendingMissing {
                secret: secret.to_owned(),
                version: version.to_owned(),
            })?;
            let mgr = rotation::select_manager(&managers, pending.environment_url.as_deref())
                .map_err(rot)?;
            report.token_id = Some(set(ctx, req, mgr, &current, &pending, deadline).await?);
            report.status = "set";
        }
        Step::Test => {
            let mgr = rotation::select_manager(&managers, current.environment_url.as_deref())
                .map_err(rot)?;
            match pending {
                Some(p) => {
                    let facts = rotation::inspect(ctx.dt, mgr, &current.token, deadline)
                        .await
                        .map_err(rot)?;
                    let expected = rotation::intended_scopes(ctx.config, &facts).map_err(rot)?;
                    let pmgr = rotation::select_manager(&managers, p.environment_url.as_deref())
                        .map_err(rot)?;
                    rotation::prove(ctx.dt, &pmgr.env, &p.token, &expected, deadline)
                        .await
                        .map_err(rot)?;
                    report.token_id = p.known_token_id();
                    report.status = "tested";
                }
                None => {
                    // Configuration check (rotation enabled without rotating): the current
                    // token must authenticate by itself and the manager must know it.
                    rotation::inspect(ctx.dt, mgr, &current.token, deadline)
                        .await
                        .map_err(rot)?;
                    rotation::prove_current(ctx.dt, &mgr.env, &current.token, deadline)
                        .await
                        .map_err(rot)?;
                    report.token_id = current.known_token_id();
                    report.status = "configuration-ok";
                }
            }
        }
        Step::Finish => {
            let pending = pending.ok_or_else(|| SmError::PendingMissing {
                secret: secret.to_owned(),
                version: version.to_owned(),
            })?;
            let mgr = rotation::select_manager(&managers, pending.environment_url.as_deref())
                .map_err(rot)?;
            let (new_id, revoked) =
                finish(ctx, req, &described, mgr, &current, &pending, deadline).await?;
            report.token_id = Some(new_id);
            report.revoked = revoked;
            report.status = "finished";
        }
    }
    Ok(report)
}

/// `createSecret`: steps 1–3 of §3, then `PutSecretValue` under AWSPENDING. Returns the id
/// of the token stored as pending.
async fn create(
    ctx: &SmContext<'_>,
    req: &StepRequest,
    described: &Described,
    mgr: &Manager,
    current: &SecretDocument,
    deadline: Deadline,
) -> Result<String, SmError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    let rot = |source: RotationError| SmError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let facts = rotation::inspect(ctx.dt, mgr, &current.token, deadline)
        .await
        .map_err(rot)?;
    let marker = Marker::secrets_manager(&described.arn, version);
    let plan = rotation::plan(ctx.config, &facts, &marker, jiff::Timestamp::now()).map_err(rot)?;
    let created = rotation::mint(ctx.dt, mgr, &plan, &marker, deadline)
        .await
        .map_err(rot)?
        .created;
    if let Err(e) = rotation::prove(ctx.dt, &mgr.env, &created.token, &plan.scopes, deadline).await
    {
        rotation::discard(ctx.dt, mgr, &created.id, deadline).await;
        return Err(rot(e));
    }
    let doc = current.rotated(
        created.token.clone(),
        &created.id,
        &facts.id,
        jiff::Timestamp::now(),
    );
    let put = ctx
        .sm
        .put_secret_value()
        .secret_id(secret)
        .client_request_token(version)
        .secret_string(doc.render().expose_secret())
        .version_stages(PENDING)
        .set_rotation_token(req.rotation_token.as_ref().map(|t| t.expose().to_owned()))
        .send()
        .await;
    // Whatever the answer, what is stored now decides: ours, another run's, or nothing.
    let stored = get_document(ctx.sm, secret, Some(version), PENDING).await;
    let stored_id = match &stored {
        Ok(Some(d)) if !d.token.same_as(&current.token) => d.known_token_id(),
        _ => None,
    };
    match (put, stored_id) {
        (_, Some(id)) if id == created.id => {
            tracing::info!(secret, version, token_id = %id, "stored the new token as AWSPENDING");
        }
        (_, Some(other)) => {
            tracing::info!(secret, version, token_id = %other, "another run stored its token first; discarding ours");
            rotation::discard(ctx.dt, mgr, &created.id, deadline).await;
            return Ok(other);
        }
        (Err(e), None) => {
            if stored.is_ok() {
                // Nothing stored: our token must not survive.
                rotation::discard(ctx.dt, mgr, &created.id, deadline).await;
            }
            return Err(aws_err("PutSecretValue", secret)(e));
        }
        (Ok(_), None) => {
            tracing::warn!(
                secret,
                version,
                "the pending value could not be read back yet; keeping the token just stored"
            );
        }
    }
    // Tokens earlier, interrupted attempts of this rotation minted can never be stored.
    rotation::delete_marked(ctx.dt, mgr, &marker, &[&created.id], deadline)
        .await
        .map_err(rot)?;
    Ok(created.id)
}

/// `setSecret`: the value was chosen by Dynatrace at creation, so confirm the pending token
/// exists, is enabled and holds the intended scopes; repair what can be repaired.
async fn set(
    ctx: &SmContext<'_>,
    req: &StepRequest,
    mgr: &Manager,
    current: &SecretDocument,
    pending: &SecretDocument,
    deadline: Deadline,
) -> Result<String, SmError> {
    let secret = req.secret_id.as_str();
    let rot = |source: RotationError| SmError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let id = rotation::token_id_of(ctx.dt, mgr, pending, deadline)
        .await
        .map_err(rot)?;
    let vanished = |id: String| SmError::PendingTokenVanished {
        secret: secret.to_owned(),
        version: req.client_request_token.clone(),
        token_id: id,
    };
    let id = id.ok_or_else(|| vanished("<unknown>".into()))?;
    let token = ctx
        .dt
        .get(&mgr.env, &mgr.token, &id, deadline)
        .await
        .map_err(|e| rot(dt(format!("reading pending token {id}"))(e)))?
        .ok_or_else(|| vanished(id.clone()))?;
    let facts = rotation::inspect(ctx.dt, mgr, &current.token, deadline)
        .await
        .map_err(rot)?;
    let intended = rotation::intended_scopes(ctx.config, &facts).map_err(rot)?;
    let mut update = crate::dynatrace::TokenUpdate::default();
    if !token.is_enabled() {
        update.enabled = Some(true);
    }
    if !crate::policy::same_scopes(&token.scope_list(), &intended) {
        update.scopes = Some(intended);
    }
    if update.enabled.is_some() || update.scopes.is_some() {
        tracing::warn!(token_id = %id, enable = ?update.enabled, "repairing the pending token");
        ctx.dt
            .update(&mgr.env, &mgr.token, &id, &update, deadline)
            .await
            .map_err(|e| rot(dt(format!("repairing pending token {id}"))(e)))?;
    }
    Ok(id)
}

/// `finishSecret` before the label move: revoke per policy, clean up, then move
/// AWSCURRENT to the new version and remove AWSPENDING.
async fn finish(
    ctx: &SmContext<'_>,
    req: &StepRequest,
    described: &Described,
    mgr: &Manager,
    current: &SecretDocument,
    pending: &SecretDocument,
    deadline: Deadline,
) -> Result<(String, Vec<String>), SmError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    let rot = |source: RotationError| SmError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let new_id = rotation::token_id_of(ctx.dt, mgr, pending, deadline)
        .await
        .map_err(rot)?
        .ok_or_else(|| SmError::PendingTokenVanished {
            secret: secret.to_owned(),
            version: version.to_owned(),
            token_id: "<unknown>".into(),
        })?;
    let cur_id = rotation::token_id_of(ctx.dt, mgr, current, deadline)
        .await
        .map_err(rot)?;
    let prev_id = match get_document(ctx.sm, secret, None, PREVIOUS).await {
        Ok(Some(prev)) => rotation::token_id_of(ctx.dt, mgr, &prev, deadline)
            .await
            .map_err(rot)?,
        _ => None,
    };
    // Before the move nothing a label will still reference is revoked: the current token
    // stays live until AWSCURRENT has moved (even under `immediately`, so a failed move never
    // leaves AWSCURRENT on a revoked token); after the move AWSPREVIOUS = the old current.
    let keep: BTreeSet<String> = [Some(new_id.clone()), cur_id.clone()]
        .into_iter()
        .flatten()
        .collect();
    let mut targets: Vec<String> = match ctx.config.revoke_old {
        RevokeOld::Never => vec![],
        RevokeOld::NextRotation | RevokeOld::Immediately => prev_id.into_iter().collect(),
    };
    targets.retain(|t| !keep.contains(t));
    let mut revoked = revoke_all(ctx, mgr, described, version, &targets, &keep, deadline)
        .await
        .map_err(rot)?;
    let mut call = ctx
        .sm
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
        let now_previous: Vec<String> = cur_id.iter().filter(|c| **c != new_id).cloned().collect();
        let keep = BTreeSet::from([new_id.clone()]);
        revoked.extend(
            revoke_all(ctx, mgr, described, version, &now_previous, &keep, deadline)
                .await
                .map_err(rot)?,
        );
    }
    tracing::info!(secret, version, token_id = %new_id, previous_token_id = ?cur_id, "rotation finished: new token is AWSCURRENT");
    if ctx.config.events {
        let old = cur_id.as_deref().unwrap_or("<unknown>");
        rotation::report_event(ctx.dt, mgr, secret, old, &new_id, deadline).await;
    }
    Ok((new_id, revoked))
}

/// Revokes `targets` and the tokens minted for this secret that no label will reference
/// (`keep` = what stays referenced). Under `DT_REVOKE_OLD=never` only the orphans of this
/// very rotation go.
async fn revoke_all(
    ctx: &SmContext<'_>,
    mgr: &Manager,
    described: &Described,
    version: &str,
    targets: &[String],
    keep: &BTreeSet<String>,
    deadline: Deadline,
) -> Result<Vec<String>, RotationError> {
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let mut revoked = Vec::new();
    let manager_id = mgr.token.derived_id();
    for id in targets {
        if manager_id.as_deref() == Some(id.as_str()) {
            tracing::warn!(token_id = %id, "not revoking the manager token");
            continue;
        }
        rotation::revoke(
            ctx.dt,
            mgr,
            id,
            ctx.config.old_token_action,
            today,
            deadline,
        )
        .await?;
        revoked.push(id.clone());
    }
    let secret_key = Marker::secret_key_sm(&described.arn);
    let this_rotation = Marker::secrets_manager(&described.arn, version).tag();
    let pending_elsewhere: Vec<&str> = described
        .stages
        .keys()
        .filter(|v| *v != version && described.has(v, PENDING))
        .map(String::as_str)
        .collect();
    for t in rotation::minted_for_secret(ctx.dt, mgr, &secret_key, deadline).await? {
        let id = t.id_str().to_owned();
        let name = t.name_str();
        let ours = name.contains(&this_rotation);
        let other_pending = pending_elsewhere
            .iter()
            .any(|v| name.contains(&Marker::secrets_manager(&described.arn, v).tag()));
        let orphan = !keep.contains(&id)
            && !other_pending
            && t.is_enabled()
            && marker::disabled_on(name).is_none();
        if orphan && (ours || ctx.config.revoke_old != RevokeOld::Never) && !revoked.contains(&id) {
            rotation::revoke(
                ctx.dt,
                mgr,
                &id,
                ctx.config.old_token_action,
                today,
                deadline,
            )
            .await?;
            revoked.push(id);
        }
    }
    Ok(revoked)
}

/// A re-run `finishSecret` after the label move: remove a leftover AWSPENDING and redo the
/// idempotent revocation from what the labels now reference.
async fn finish_after_move(
    ctx: &SmContext<'_>,
    req: &StepRequest,
    described: &Described,
    deadline: Deadline,
) -> Result<Vec<String>, SmError> {
    let secret = req.secret_id.as_str();
    let version = req.client_request_token.as_str();
    if described.has(version, PENDING) {
        remove_pending(ctx, secret, version).await?;
    }
    let rot = |source: RotationError| SmError::Rotation {
        secret: secret.to_owned(),
        source,
    };
    let current = get_document(ctx.sm, secret, None, CURRENT)
        .await?
        .ok_or_else(|| SmError::NoCurrentValue(secret.to_owned()))?;
    let managers = load_managers(ctx).await?;
    let mgr =
        rotation::select_manager(&managers, current.environment_url.as_deref()).map_err(rot)?;
    let mut keep = BTreeSet::new();
    keep.extend(
        rotation::token_id_of(ctx.dt, mgr, &current, deadline)
            .await
            .map_err(rot)?,
    );
    let previous = match get_document(ctx.sm, secret, None, PREVIOUS).await {
        Ok(Some(prev)) => rotation::token_id_of(ctx.dt, mgr, &prev, deadline)
            .await
            .map_err(rot)?,
        _ => None,
    };
    // `immediately`: the token now under AWSPREVIOUS goes (its revocation may have failed
    // after the move); otherwise it stays for the overlap.
    let targets: Vec<String> = match ctx.config.revoke_old {
        RevokeOld::Immediately => previous.into_iter().filter(|p| !keep.contains(p)).collect(),
        _ => {
            keep.extend(previous);
            Vec::new()
        }
    };
    revoke_all(ctx, mgr, described, version, &targets, &keep, deadline)
        .await
        .map_err(rot)
}

async fn remove_pending(ctx: &SmContext<'_>, secret: &str, version: &str) -> Result<(), SmError> {
    ctx.sm
        .update_secret_version_stage()
        .secret_id(secret)
        .version_stage(PENDING)
        .remove_from_version_id(version)
        .send()
        .await
        .map_err(aws_err("UpdateSecretVersionStage", secret))?;
    Ok(())
}
