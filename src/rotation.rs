//! The rotation of one token, shared by both backends (docs/design.md §3). [`replace`] is the
//! sequence itself, written once: mint the successor under a rotation marker, prove it by
//! authenticating with it, write it through the backend's [`Store`], read back and settle.
//! Around it: inspecting the current token by its value, choosing managers, the pure rules
//! for revocation targets ([`revocation_targets`]) and store settlement ([`stored_after`],
//! [`settle`]), revoking by policy, and finding what an interrupted attempt left behind. The
//! backends decide *when* each step runs and implement the store; this module decides *what*
//! happens at Dynatrace.

use jiff::Timestamp;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::document::{DocumentError, SecretDocument};
use crate::dynatrace::{ApiToken, Created, DtError, Dynatrace, NewToken, TokenUpdate, format_time};
use crate::environment::{EnvironmentUrl, UrlError};
use crate::marker::{self, Marker};
use crate::policy::{self, ForbiddenScopes, OldTokenAction};
use crate::secret::TokenValue;

/// A manager token (`apiTokens.read` + `apiTokens.write`) bound to its environment; it is
/// only ever sent there.
#[derive(Debug, Clone)]
pub struct Manager {
    /// Its environment.
    pub env: EnvironmentUrl,
    /// Its value (redacted in `Debug`).
    pub token: TokenValue,
    /// Where it was read from (secret id or Vault path), for messages.
    pub source: String,
}

impl Manager {
    /// Builds a manager from its stored document, which must name its environment.
    pub fn from_document(doc: SecretDocument, source: &str) -> Result<Self, RotationError> {
        let raw = doc.environment_url.as_deref().ok_or_else(|| {
            RotationError::ManagerWithoutEnvironment {
                source_id: source.to_owned(),
            }
        })?;
        let env = EnvironmentUrl::parse(raw).map_err(|e| RotationError::BadManagerUrl {
            source_id: source.to_owned(),
            error: e,
        })?;
        Ok(Self {
            env,
            token: doc.token,
            source: source.to_owned(),
        })
    }
}

/// What went wrong in the rotation of one token. Messages name ids and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The stored document is unusable.
    #[error("{0}")]
    Document(#[from] DocumentError),
    /// The document's `environmentUrl` is refused.
    #[error("the secret's environmentUrl is refused: {0}")]
    BadEnvironmentUrl(UrlError),
    /// The document's environment has no configured manager.
    #[error(
        "the secret's environment {env} matches no configured manager token ({known}); the manager token is only sent to its own environment"
    )]
    EnvironmentMismatch {
        /// The secret's environment.
        env: String,
        /// Environments of the managers.
        known: String,
    },
    /// No `environmentUrl` and several managers.
    #[error(
        "the secret has no environmentUrl and {0} manager tokens are configured; add environmentUrl to the secret"
    )]
    AmbiguousEnvironment(usize),
    /// No manager configured at all.
    #[error("no manager token is configured (DT_MANAGER_SECRET_IDS or VAULT_MANAGER_PATH)")]
    NoManager,
    /// A manager document without `environmentUrl`.
    #[error(
        "manager token document {source_id} has no environmentUrl; add it so the token is only sent to its own environment"
    )]
    ManagerWithoutEnvironment {
        /// Where it came from.
        source_id: String,
    },
    /// A manager document with a refused URL.
    #[error("manager token document {source_id}: environmentUrl refused: {error}")]
    BadManagerUrl {
        /// Where it came from.
        source_id: String,
        /// Why.
        error: UrlError,
    },
    /// The current token holds a forbidden scope.
    #[error("token {id}: {source}")]
    Forbidden {
        /// The token.
        id: String,
        /// The scopes.
        source: ForbiddenScopes,
    },
    /// Dynatrace does not know the stored token.
    #[error("the stored token{} is unknown to {env} (lookup answered 404): it was deleted, or belongs to another environment; store a valid token", .id.as_deref().map(|i| format!(" {i}")).unwrap_or_default())]
    CurrentTokenUnknown {
        /// Its id, when derivable.
        id: Option<String>,
        /// The environment asked.
        env: String,
    },
    /// The freshly minted token did not pass its proof.
    #[error("new token {id} failed its check: {reason}")]
    ProofFailed {
        /// The new token.
        id: String,
        /// Why.
        reason: String,
    },
    /// The manager the secret needs could not be read or used.
    #[error(
        "no usable manager token for this secret's environment; unusable manager token(s): {detail}"
    )]
    ManagerUnusable {
        /// Each unusable manager and why.
        detail: String,
    },
    /// Refusing to revoke the manager token itself.
    #[error(
        "token {0} is the manager token; the rotator never revokes the token it authenticates with"
    )]
    ManagerProtected(String),
    /// A Dynatrace call failed.
    #[error("{context}: {source}")]
    Dynatrace {
        /// What the rotator was doing.
        context: String,
        /// The failure.
        source: DtError,
    },
}

impl RotationError {
    /// The `errorType` this failure is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            RotationError::Document(_) => "InvalidSecretDocument",
            RotationError::BadEnvironmentUrl(_) => "InvalidEnvironmentUrl",
            RotationError::EnvironmentMismatch { .. } => "EnvironmentMismatch",
            RotationError::AmbiguousEnvironment(_) => "AmbiguousEnvironment",
            RotationError::NoManager => "ConfigError",
            RotationError::ManagerWithoutEnvironment { .. }
            | RotationError::BadManagerUrl { .. }
            | RotationError::ManagerUnusable { .. } => "ManagerUnusable",
            RotationError::Forbidden { .. } => "ForbiddenScopes",
            RotationError::CurrentTokenUnknown { .. } => "CurrentTokenUnknown",
            RotationError::ProofFailed { .. } => "NewTokenFailedCheck",
            RotationError::ManagerProtected(_) => "ManagerProtected",
            RotationError::Dynatrace { source, .. } => source.code(),
        }
    }
}

/// Wraps a Dynatrace error with what the rotator was doing.
pub fn dynatrace_error(context: impl Into<String>) -> impl FnOnce(DtError) -> RotationError {
    move |source| RotationError::Dynatrace {
        context: context.into(),
        source,
    }
}

/// The managers of a deployment, loaded per environment: the usable ones, and the configured
/// ones that could not be read or used (with why), so that one broken manager fails only the
/// secrets that need it.
#[derive(Debug, Default)]
pub struct ManagerSet {
    /// Usable managers.
    pub usable: Vec<Manager>,
    /// `(source, reason)` of each configured manager that is unusable.
    pub broken: Vec<(String, String)>,
}

impl ManagerSet {
    /// The manager for a secret whose document names `doc_env`. When it is not among the
    /// usable ones and a configured manager is broken, the error names the broken ones.
    pub fn select(&self, doc_env: Option<&str>) -> Result<&Manager, RotationError> {
        let configured = self.usable.len() + self.broken.len();
        if self.broken.is_empty() {
            return select_manager(&self.usable, doc_env);
        }
        let unusable = || RotationError::ManagerUnusable {
            detail: self
                .broken
                .iter()
                .map(|(source, reason)| format!("{source}: {reason}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        match doc_env {
            Some(_) => match select_manager(&self.usable, doc_env) {
                Ok(m) => Ok(m),
                Err(RotationError::EnvironmentMismatch { .. } | RotationError::NoManager) => {
                    Err(unusable())
                }
                Err(e) => Err(e),
            },
            None if configured == 1 => Err(unusable()),
            None => Err(RotationError::AmbiguousEnvironment(configured)),
        }
    }
}

/// Picks the manager for a secret whose document names `doc_env` (docs/design.md §2, §5).
pub fn select_manager<'a>(
    managers: &'a [Manager],
    doc_env: Option<&str>,
) -> Result<&'a Manager, RotationError> {
    if managers.is_empty() {
        return Err(RotationError::NoManager);
    }
    match doc_env {
        Some(raw) => {
            let env = EnvironmentUrl::parse(raw).map_err(RotationError::BadEnvironmentUrl)?;
            managers.iter().find(|m| m.env == env).ok_or_else(|| {
                RotationError::EnvironmentMismatch {
                    env: env.to_string(),
                    known: managers
                        .iter()
                        .map(|m| m.env.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })
        }
        None if managers.len() == 1 => Ok(&managers[0]),
        None => Err(RotationError::AmbiguousEnvironment(managers.len())),
    }
}

/// What the rotator knows of the current token after looking it up by value.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Creation time.
    pub created: Option<Timestamp>,
    /// Expiry.
    pub expires: Option<Timestamp>,
}

/// Step 1: looks the current token up **by its value** (scopes are only ever copied from a
/// token whose value the secret holds).
pub async fn inspect(
    dt_client: &Dynatrace,
    mgr: &Manager,
    value: &TokenValue,
    deadline: Deadline,
) -> Result<TokenFacts, RotationError> {
    let found = dt_client
        .lookup(&mgr.env, &mgr.token, value, deadline)
        .await
        .map_err(dynatrace_error("looking up the current token"))?;
    let t = found.ok_or_else(|| RotationError::CurrentTokenUnknown {
        id: value.derived_id(),
        env: mgr.env.to_string(),
    })?;
    let id =
        t.id.clone()
            .or_else(|| value.derived_id())
            .ok_or_else(|| RotationError::Dynatrace {
                context: "looking up the current token".into(),
                source: DtError::Protocol {
                    op: "token lookup",
                    detail: "the answer has no id".into(),
                },
            })?;
    if !t.is_enabled() {
        tracing::warn!(token_id = %id, "the current token is disabled; rotating it anyway");
    }
    Ok(TokenFacts {
        id,
        name: t.name_str().to_owned(),
        scopes: t.scope_list(),
        enabled: t.is_enabled(),
        created: t.created(),
        expires: t.expires(),
    })
}

/// What a rotation will mint.
#[derive(Debug, Clone)]
pub struct MintPlan {
    /// The new token's name (with the marker).
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its expiry.
    pub expires: Option<Timestamp>,
}

/// Step 2a (pure): the new token's name, scopes and expiry under the configured policy.
pub fn plan(
    config: &Config,
    facts: &TokenFacts,
    marker: &Marker,
    now: Timestamp,
) -> Result<MintPlan, RotationError> {
    let scopes = intended_scopes(config, facts)?;
    Ok(MintPlan {
        name: marker.name_for(&facts.name),
        scopes,
        expires: policy::expiry(
            config.token_lifetime_days,
            facts.created,
            facts.expires,
            now,
        ),
    })
}

/// The scopes a successor of `facts` gets (forbidden scopes refuse, removed ones drop).
pub fn intended_scopes(config: &Config, facts: &TokenFacts) -> Result<Vec<String>, RotationError> {
    let plan = policy::plan_scopes(&facts.scopes, &config.forbidden_scopes).map_err(|source| {
        RotationError::Forbidden {
            id: facts.id.clone(),
            source,
        }
    })?;
    if !plan.dropped.is_empty() {
        tracing::warn!(token_id = %facts.id, dropped = ?plan.dropped, "scopes Dynatrace no longer grants are not copied");
    }
    Ok(plan.scopes)
}

/// A minted token, and whether its create call had to be repeated after a lost answer (the
/// first call may have minted a token whose value nobody has; it carries the same marker and
/// the caller removes it once its own token is stored).
#[derive(Debug, Clone)]
pub struct Minted {
    /// The token minted.
    pub created: Created,
    /// The answer to an earlier create of this rotation was lost.
    pub after_lost_answer: bool,
}

/// Step 2b: mints the token. When the answer to the create is lost, mints once more; the
/// lost token is not deleted here (another run of the same rotation may have minted and
/// stored a token with the same marker) but by the caller after its store succeeded.
pub async fn mint(
    dt_client: &Dynatrace,
    mgr: &Manager,
    plan: &MintPlan,
    marker: &Marker,
    deadline: Deadline,
) -> Result<Minted, RotationError> {
    let body = NewToken {
        name: plan.name.clone(),
        scopes: plan.scopes.clone(),
        expiration_date: plan.expires.map(format_time),
    };
    let (created, after_lost_answer) = match dt_client
        .create(&mgr.env, &mgr.token, &body, deadline)
        .await
    {
        // A create retried after a 5xx may have minted on the failed attempt, like a lost answer.
        Ok(c) => {
            let unclear = c.after_unclear_attempt;
            (c, unclear)
        }
        Err(e) if e.is_ambiguous() => {
            tracing::warn!(error = %e, marker = %marker.tag(), "the create call may have minted a token without answering; minting again");
            let c = dt_client
                .create(&mgr.env, &mgr.token, &body, deadline)
                .await
                .map_err(dynatrace_error("minting the new token"))?;
            (c, true)
        }
        Err(e) => return Err(dynatrace_error("minting the new token")(e)),
    };
    tracing::info!(token_id = %created.id, scopes = ?plan.scopes, expires = ?created.expiration_date, "minted new token");
    Ok(Minted {
        created,
        after_lost_answer,
    })
}

/// Step 3: proves a token works by authenticating **with the token itself** (lookup
/// accepts any scope) and checks that it is enabled and holds `expected` scopes.
pub async fn prove(
    dt_client: &Dynatrace,
    env: &EnvironmentUrl,
    value: &TokenValue,
    expected: &[String],
    deadline: Deadline,
) -> Result<(), RotationError> {
    let id = value
        .derived_id()
        .unwrap_or_else(|| "<legacy token>".into());
    let fail = |reason: String| RotationError::ProofFailed {
        id: id.clone(),
        reason,
    };
    let info = match dt_client.lookup(env, value, value, deadline).await {
        Ok(Some(info)) => info,
        Ok(None) => return Err(fail("Dynatrace does not know it (404)".into())),
        Err(DtError::Unauthorized { .. }) => {
            return Err(fail(
                "Dynatrace refuses it (401): disabled, expired or unknown".into(),
            ));
        }
        Err(e) => return Err(dynatrace_error(format!("checking new token {id}"))(e)),
    };
    if !info.is_enabled() {
        return Err(fail("it is disabled".into()));
    }
    let scopes = info.scope_list();
    if !policy::same_scopes(&scopes, expected) {
        return Err(fail(format!(
            "it holds scopes {scopes:?}, expected {expected:?}"
        )));
    }
    tracing::info!(token_id = %id, "new token proven by authenticating with it");
    Ok(())
}

/// The result of revoking one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Disabled (and renamed with the date) now.
    Disabled,
    /// It was already disabled.
    AlreadyDisabled,
    /// Deleted now.
    Deleted,
    /// It did not exist any more.
    Gone,
    /// `revoke-leaked` disabled it: kept as evidence (never renamed again, never deleted).
    Evidence,
}

/// Step 6: revokes token `id` per `action`, authenticated with the manager. Idempotent.
/// Never revokes the manager token itself. `owner` is the secret key the token was proven to
/// belong to: a disabled token without a marker gets its `revoked` marker (see
/// [`marker::disabled_name`]) so only that secret's sweep may delete it later. The caller
/// must have proven the target (see [`revocation_targets`]). Reads the token first (its name
/// and state); a caller that just looked it up by value passes that answer to
/// [`revoke_known`] instead and saves the call.
pub async fn revoke(
    dt_client: &Dynatrace,
    mgr: &Manager,
    id: &str,
    owner: Option<&str>,
    action: OldTokenAction,
    today: jiff::civil::Date,
    deadline: Deadline,
) -> Result<Revoked, RotationError> {
    if mgr.token.derived_id().as_deref() == Some(id) {
        return Err(RotationError::ManagerProtected(id.to_owned()));
    }
    let token = dt_client
        .get(&mgr.env, &mgr.token, id, deadline)
        .await
        .map_err(dynatrace_error(format!("reading old token {id}")))?;
    match token {
        None => {
            tracing::info!(token_id = %id, outcome = ?Revoked::Gone, "revoked old token");
            Ok(Revoked::Gone)
        }
        Some(token) => revoke_known(dt_client, mgr, &token, owner, action, today, deadline).await,
    }
}

/// [`revoke`] of a token whose metadata (`name`, `enabled`) the caller has just read, by a
/// lookup or a listing. A token disabled as leaked is evidence: never renamed or deleted.
pub async fn revoke_known(
    dt_client: &Dynatrace,
    mgr: &Manager,
    token: &ApiToken,
    owner: Option<&str>,
    action: OldTokenAction,
    today: jiff::civil::Date,
    deadline: Deadline,
) -> Result<Revoked, RotationError> {
    let id = token.id_str();
    if mgr.token.derived_id().as_deref() == Some(id) {
        return Err(RotationError::ManagerProtected(id.to_owned()));
    }
    let name = token.name_str();
    let outcome = if marker::leaked_on(name).is_some() {
        // Evidence: never renamed or deleted; disabled again if someone re-enabled it.
        if token.is_enabled() {
            let update = TokenUpdate {
                enabled: Some(false),
                ..Default::default()
            };
            dt_client
                .update(&mgr.env, &mgr.token, id, &update, deadline)
                .await
                .map_err(dynatrace_error(format!("disabling leaked token {id}")))?;
            tracing::warn!(token_id = %id, "a token disabled as leaked was enabled again: disabled (name kept as evidence)");
        }
        tracing::info!(token_id = %id, "old token was disabled as leaked: kept as evidence");
        Revoked::Evidence
    } else {
        match action {
            OldTokenAction::Delete => {
                match dt_client.delete(&mgr.env, &mgr.token, id, deadline).await {
                    Ok(true) => Revoked::Deleted,
                    Ok(false) => Revoked::Gone,
                    Err(e) => return Err(dynatrace_error(format!("deleting old token {id}"))(e)),
                }
            }
            OldTokenAction::Disable
                if !token.is_enabled() && marker::disabled_on(name).is_some() =>
            {
                Revoked::AlreadyDisabled
            }
            OldTokenAction::Disable => {
                let update = TokenUpdate {
                    name: Some(marker::disabled_name(name, today, owner)),
                    enabled: Some(false),
                    scopes: None,
                };
                match dt_client
                    .update(&mgr.env, &mgr.token, id, &update, deadline)
                    .await
                {
                    Ok(()) => Revoked::Disabled,
                    Err(DtError::NotFound { .. }) => Revoked::Gone,
                    Err(e) => return Err(dynatrace_error(format!("disabling old token {id}"))(e)),
                }
            }
        }
    };
    tracing::info!(token_id = %id, outcome = ?outcome, "revoked old token");
    Ok(outcome)
}

/// Every token in `mgr`'s environment whose marker names one of `secret_keys` (the secret's
/// keys, see [`Marker::secret_key`] and [`marker::secret_keys_secrets_manager`]).
pub async fn minted_for_secret(
    dt_client: &Dynatrace,
    mgr: &Manager,
    secret_keys: &[&str],
    deadline: Deadline,
) -> Result<Vec<ApiToken>, RotationError> {
    let all = dt_client
        .list(&mgr.env, &mgr.token, None, "+modifiedDate", deadline)
        .await
        .map_err(dynatrace_error("listing tokens"))?;
    Ok(all
        .into_iter()
        .filter(|t| marker::owner_key(t.name_str()).is_some_and(|s| secret_keys.contains(&s)))
        .collect())
}

/// Deletes the tokens carrying exactly `marker`, except the ids in `keep`: what an
/// interrupted attempt of the same rotation minted (its value is lost, so it can never
/// be stored). Returns the ids deleted.
pub async fn delete_marked(
    dt_client: &Dynatrace,
    mgr: &Manager,
    marker: &Marker,
    keep: &[&str],
    deadline: Deadline,
) -> Result<Vec<String>, RotationError> {
    let tag = marker.tag();
    let mut deleted = Vec::new();
    for t in minted_for_secret(dt_client, mgr, &[marker.secret_key()], deadline).await? {
        let id = t.id_str().to_owned();
        if t.name_str().contains(&tag) && !keep.contains(&id.as_str()) {
            dt_client
                .delete(&mgr.env, &mgr.token, &id, deadline)
                .await
                .map_err(dynatrace_error(format!("deleting orphaned token {id}")))?;
            tracing::info!(token_id = %id, "deleted a token an interrupted attempt minted");
            deleted.push(id);
        }
    }
    Ok(deleted)
}

/// Deletes a token minted by this run that must not survive (its storing failed, or
/// another run won). Best effort: a failure is logged, and the next run or the sweep
/// finds the token by its marker.
pub async fn discard(dt_client: &Dynatrace, mgr: &Manager, id: &str, deadline: Deadline) {
    match dt_client.delete(&mgr.env, &mgr.token, id, deadline).await {
        Ok(_) => tracing::info!(token_id = %id, "deleted the token this attempt minted"),
        Err(e) => {
            tracing::warn!(token_id = %id, error = %e, "could not delete the token this attempt minted; the next run or the sweep will")
        }
    }
}

/// The id `doc`'s token claims ([`SecretDocument::token_id_hint`]), or for a legacy token
/// without `tokenId` the id a lookup answers. A hint: for reports and for what to keep, never
/// for what to revoke (use [`proven_id`]).
pub async fn token_id_of(
    dt_client: &Dynatrace,
    mgr: &Manager,
    doc: &SecretDocument,
    deadline: Deadline,
) -> Result<Option<String>, RotationError> {
    if let Some(id) = doc.token.derived_id() {
        return Ok(Some(id));
    }
    if let Some(id) = &doc.token_id {
        return Ok(Some(id.clone()));
    }
    let found = dt_client
        .lookup(&mgr.env, &mgr.token, &doc.token, deadline)
        .await
        .map_err(dynatrace_error("looking up a stored legacy token"))?;
    Ok(found.and_then(|t| t.id))
}

/// The id of the token whose value is `value`, as Dynatrace answers a lookup **by value**
/// with the manager: the only proof, besides the rotator's own marker, that a token belongs
/// to the secret that stores the value (docs/design.md §3, trust rules). `None` when
/// Dynatrace knows no such value (deleted, or a forged value naming another token's id).
pub async fn proven_id(
    dt_client: &Dynatrace,
    mgr: &Manager,
    value: &TokenValue,
    deadline: Deadline,
) -> Result<Option<String>, RotationError> {
    Ok(proven_token(dt_client, mgr, value, deadline)
        .await?
        .and_then(|t| t.id))
}

/// [`proven_id`] with the whole answer (name, state, scopes), so that a revocation of the
/// proven token needs no second read (see [`revoke_known`]).
pub async fn proven_token(
    dt_client: &Dynatrace,
    mgr: &Manager,
    value: &TokenValue,
    deadline: Deadline,
) -> Result<Option<ApiToken>, RotationError> {
    let found = dt_client
        .lookup(&mgr.env, &mgr.token, value, deadline)
        .await
        .map_err(dynatrace_error("looking up a stored token by its value"))?;
    Ok(found.filter(|t| t.id.is_some()))
}

/// Why the rotator believes a token belongs to the secret it rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A value stored in one of the secret's versions was looked up by value and Dynatrace
    /// answered with this id.
    ByValue,
    /// The token's name carries this deployment's marker for this very secret.
    ByMarker,
    /// Only a hint names it (an id derived from a value's shape, `tokenId`,
    /// `previousTokenId`): never revoked.
    Unproven,
}

/// A token a revocation policy would revoke, and what proves it is the secret's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The token id.
    pub id: String,
    /// The proof.
    pub proof: Proof,
}

impl Candidate {
    /// A candidate with `proof`.
    pub fn new(id: impl Into<String>, proof: Proof) -> Self {
        Self {
            id: id.into(),
            proof,
        }
    }
}

/// What [`revocation_targets`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Ids to revoke, in order, each once.
    pub revoke: Vec<String>,
    /// Ids the policy named but nothing proves: left alone (the caller warns).
    pub unproven: Vec<String>,
}

/// The tokens to revoke out of `candidates` (pure): only proven ones, never one in `keep`
/// (still referenced by a label or the latest version) and never a manager token.
pub fn revocation_targets(
    candidates: &[Candidate],
    keep: &[&str],
    manager_ids: &[&str],
) -> Targets {
    let mut out = Targets::default();
    for c in candidates {
        let id = c.id.as_str();
        if keep.contains(&id) || manager_ids.contains(&id) || out.revoke.iter().any(|r| r == id) {
            continue;
        }
        match c.proof {
            Proof::ByValue | Proof::ByMarker => out.revoke.push(c.id.clone()),
            Proof::Unproven if !out.unproven.iter().any(|r| r == id) => {
                out.unproven.push(c.id.clone())
            }
            Proof::Unproven => {}
        }
    }
    // A token proven by one route is not also reported as unproven.
    let revoke = out.revoke.clone();
    out.unproven.retain(|u| !revoke.contains(u));
    out
}

/// What a store holds for a rotation after a write, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Our minted token.
    Ours,
    /// Another run's token (its id, when known).
    Theirs(Option<String>),
    /// Nothing of this rotation: the write definitely did not land.
    Nothing,
    /// The store cannot say (the write's outcome is still unclear).
    Unknown,
}

/// What to do with the token this run minted, given what the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// It is stored: keep it and carry on.
    Keep,
    /// It can never be stored: delete it.
    Discard,
    /// Its fate is unknown: keep it (its marker lets the next run or the sweep decide) and
    /// report the failure.
    LeaveMarked,
}

/// The pure rule of docs/design.md §3 for a write: a token is deleted only when the store
/// definitely does not hold it.
pub fn settle(stored: &Stored) -> Settlement {
    match stored {
        Stored::Ours => Settlement::Keep,
        Stored::Theirs(_) | Stored::Nothing => Settlement::Discard,
        Stored::Unknown => Settlement::LeaveMarked,
    }
}

/// The answer to one attempt of an idempotent store write.
#[derive(Debug)]
pub enum Attempt<T> {
    /// A definitive answer (success or a refusal that says the write did not land).
    Definitive(T),
    /// The outcome is unknown (timeout, 5xx, throttling, lost answer): the same write is
    /// repeated.
    Unclear(String),
}

/// Repeats the same idempotent write (`attempt`) until it answers definitively, with
/// jittered exponential back-off, while `deadline` allows. `Err` (the last reason): still
/// unclear when time ran out (the caller keeps its token marked). Safe only for writes that cannot land twice:
/// a Vault CAS write on one index, a `PutSecretValue` with one `ClientRequestToken` and value.
pub async fn repeat_until_definitive<T, F, Fut>(
    what: &str,
    deadline: Deadline,
    mut attempt: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    use backon::BackoffBuilder;
    let mut backoff = backon::ExponentialBuilder::new()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_delay(std::time::Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Attempt::Definitive(t) => return Ok(t),
            Attempt::Unclear(why) => {
                let wait = backoff.next().unwrap_or(std::time::Duration::from_secs(2));
                if !deadline.allows(wait) {
                    tracing::warn!(what, tries, reason = %why, "the write's outcome is still unknown and time is up");
                    return Err(why);
                }
                tracing::warn!(what, tries, reason = %why, wait_ms = wait.as_millis() as u64, "the write's outcome is unknown; repeating the same write");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The store half of a rotation: where the successor's document goes and what is there
/// afterwards. Secrets Manager writes the pending version under the rotation's
/// `ClientRequestToken`; Vault writes with check-and-set over the version it read. Both writes
/// can land at most once, which is what makes repeating them safe ([`repeat_until_definitive`]).
pub trait Store {
    /// A definitive refusal of the write (it did not land).
    type Refusal: std::fmt::Display;

    /// Whether a write the store says landed is still read back. Vault's check-and-set
    /// index is exclusive, so no; Secrets Manager refuses a second value under one
    /// `ClientRequestToken`, but moto accepts it, so the read-back tells two concurrent runs
    /// apart there too (one Secrets Manager read).
    const READ_BACK_AFTER_LANDING: bool;

    /// What the messages and logs call this store's write (`PutSecretValue`, `Vault CAS write`).
    fn what(&self) -> &'static str;

    /// Writes `doc` once: a definitive answer, or unclear (repeated with the same document).
    fn write(
        &self,
        doc: &SecretDocument,
    ) -> impl std::future::Future<Output = Attempt<Result<(), Self::Refusal>>>;

    /// Reads back the document this rotation's write would have produced: `Ok(None)` when
    /// there is none, `Err` when the store cannot say.
    fn read_back(&self) -> impl std::future::Future<Output = Result<Option<SecretDocument>, ()>>;
}

/// How a write ended, after repeating it while unclear.
#[derive(Debug)]
pub enum WriteAnswer<E> {
    /// The store said it landed.
    Landed,
    /// The store said it did not land, and why; `after_unclear`: an earlier attempt's outcome
    /// was unknown, so that attempt may have landed (the refusal can be our own write's doing,
    /// e.g. a CAS conflict with it).
    Refused {
        /// Why.
        refusal: E,
        /// An earlier attempt was unclear.
        after_unclear: bool,
    },
    /// Still unclear when time ran out (the last reason).
    Unclear(String),
}

/// What the read-back found, compared with the token this run minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBack {
    /// Our token is there.
    Ours,
    /// Another run's document is there (its token id, when known).
    Theirs(Option<String>),
    /// Nothing is there.
    Absent,
    /// The store could not be read.
    Unreadable,
}

/// The pure rule for what a store holds after a write (docs/design.md §3, ambiguous writes):
/// what the read-back sees decides; when it sees neither ours nor another run's document, a
/// write the store says landed is ours (a read right after may lag), and only a refusal with no
/// unclear attempt before it means nothing is stored. After an unclear attempt, a refusal may
/// be caused by that attempt having landed, so what the read-back cannot see stays unknown.
pub fn stored_after<E>(answer: &WriteAnswer<E>, read: &ReadBack) -> Stored {
    match (answer, read) {
        (_, ReadBack::Ours) | (WriteAnswer::Landed, ReadBack::Absent | ReadBack::Unreadable) => {
            Stored::Ours
        }
        (_, ReadBack::Theirs(id)) => Stored::Theirs(id.clone()),
        (
            WriteAnswer::Refused {
                after_unclear: false,
                ..
            },
            _,
        ) => Stored::Nothing,
        (
            WriteAnswer::Refused {
                after_unclear: true,
                ..
            }
            | WriteAnswer::Unclear(_),
            _,
        ) => Stored::Unknown,
    }
}

/// How the replacement of one token ended.
#[derive(Debug)]
pub enum Replaced<E> {
    /// The successor is minted, proven and stored.
    Stored {
        /// The successor.
        created: Created,
        /// The current token's facts (its id is the successor's `previousTokenId`).
        facts: TokenFacts,
        /// `false` when what a lost create minted could not be deleted: a token of this
        /// rotation's marker may still be live, for a later clean-up to find.
        settled: bool,
    },
    /// Another run stored its successor first; ours was deleted.
    Theirs(Option<String>),
    /// The write definitely did not land; ours was deleted. `None`: refused without a reason
    /// of the store's own (the read-back found nothing after an unclear answer was settled).
    NotStored(Option<E>),
    /// The write's outcome is still unknown: ours is kept (marked) for the next attempt or the
    /// sweep to settle.
    Unknown {
        /// The kept token.
        token_id: String,
        /// The last unclear answer.
        detail: String,
    },
}

/// The rotation of one token, steps 2–5 of docs/design.md §3, written once for both backends:
/// mint the successor of the token `facts` describes under `marker`, prove it by
/// authenticating with it (deleting it when the proof fails), write the successor's document
/// to `store` (repeated while the answer is unclear), read back what is stored and settle: keep
/// ours, delete ours when the store definitely does not hold it, or keep it marked when nobody
/// can say. After a lost create answer, the token the lost create may have minted is deleted
/// once ours is stored (with our version stored, no run can store it any more).
///
/// Revoking old tokens is the caller's: Secrets Manager does it in `finishSecret`, Vault right
/// after the write.
#[allow(clippy::too_many_arguments)]
pub async fn replace<S: Store>(
    dt_client: &Dynatrace,
    config: &Config,
    mgr: &Manager,
    current: &SecretDocument,
    facts: TokenFacts,
    marker: &Marker,
    store: &S,
    deadline: Deadline,
) -> Result<Replaced<S::Refusal>, RotationError> {
    let plan = plan(config, &facts, marker, Timestamp::now())?;
    let minted = mint(dt_client, mgr, &plan, marker, deadline).await?;
    let created = minted.created;
    if let Err(e) = prove(dt_client, &mgr.env, &created.token, &plan.scopes, deadline).await {
        discard(dt_client, mgr, &created.id, deadline).await;
        return Err(e);
    }
    let expires = created
        .expiration_date
        .as_deref()
        .and_then(|d| d.parse().ok());
    let doc = current.rotated(
        created.token.clone(),
        &created.id,
        &facts.id,
        expires,
        Timestamp::now(),
    );
    // An atomic, not a Cell: the rotation's future must stay `Send` (paths run on tasks).
    let unclear_before = std::sync::atomic::AtomicBool::new(false);
    let attempt = || async {
        let answer = store.write(&doc).await;
        if matches!(answer, Attempt::Unclear(_)) {
            unclear_before.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        answer
    };
    let answer = match repeat_until_definitive(store.what(), deadline, attempt).await {
        Ok(Ok(())) => WriteAnswer::Landed,
        Ok(Err(refusal)) => WriteAnswer::Refused {
            refusal,
            after_unclear: unclear_before.load(std::sync::atomic::Ordering::Relaxed),
        },
        Err(why) => WriteAnswer::Unclear(why),
    };
    let read = match answer {
        WriteAnswer::Landed if !S::READ_BACK_AFTER_LANDING => ReadBack::Ours,
        _ => match store.read_back().await {
            Ok(Some(d)) if d.token.same_as(&created.token) => ReadBack::Ours,
            Ok(Some(d)) => ReadBack::Theirs(d.token_id_hint()),
            Ok(None) => ReadBack::Absent,
            Err(()) => ReadBack::Unreadable,
        },
    };
    let stored = stored_after(&answer, &read);
    let outcome = match (settle(&stored), stored) {
        (Settlement::Keep, _) => {
            tracing::info!(token_id = %created.id, marker = %marker.tag(), "stored the new token");
            let mut settled = true;
            if minted.after_lost_answer
                && let Err(e) =
                    delete_marked(dt_client, mgr, marker, &[&created.id], deadline).await
            {
                tracing::warn!(error = %e, marker = %marker.tag(), "could not remove what the lost create minted; the next run or the sweep will");
                settled = false;
            }
            Replaced::Stored {
                created,
                facts,
                settled,
            }
        }
        (Settlement::Discard, Stored::Theirs(other)) => {
            tracing::info!(token_id = ?other, marker = %marker.tag(), "another run stored its token first; discarding ours");
            discard(dt_client, mgr, &created.id, deadline).await;
            Replaced::Theirs(other)
        }
        (Settlement::Discard, _) => {
            discard(dt_client, mgr, &created.id, deadline).await;
            Replaced::NotStored(match answer {
                WriteAnswer::Refused { refusal, .. } => Some(refusal),
                _ => None,
            })
        }
        (Settlement::LeaveMarked, _) => {
            tracing::warn!(token_id = %created.id, marker = %marker.tag(), "the write's outcome is still unknown; keeping the minted token (marked) for the next attempt or the sweep");
            Replaced::Unknown {
                token_id: created.id.clone(),
                detail: match answer {
                    WriteAnswer::Unclear(why) => why,
                    _ => String::new(),
                },
            }
        }
    };
    Ok(outcome)
}

/// Posts the `CUSTOM_INFO` event of a rotation (`DT_EVENTS=on`). Failures are logged, not
/// fatal: the rotation itself succeeded.
pub async fn report_event(
    dt_client: &Dynatrace,
    mgr: &Manager,
    where_: &str,
    old_id: &str,
    new_id: &str,
    deadline: Deadline,
) {
    let properties = serde_json::json!({
        "rotation.oldTokenId": old_id,
        "rotation.newTokenId": new_id,
        "rotation.secret": where_,
    });
    post_event(
        dt_client,
        mgr,
        format!("API token rotated: {old_id}"),
        properties,
        deadline,
    )
    .await;
}

/// Posts the `CUSTOM_INFO` event of a revocation when `events` (`DT_EVENTS=on`) and the
/// token was disabled or deleted now. Ids and the secret's name only; a failure is logged.
pub async fn report_revocation(
    dt_client: &Dynatrace,
    mgr: &Manager,
    events: bool,
    secret: &str,
    id: &str,
    outcome: Revoked,
    deadline: Deadline,
) {
    let how = match outcome {
        Revoked::Disabled => "disabled",
        Revoked::Deleted => "deleted",
        Revoked::AlreadyDisabled | Revoked::Gone | Revoked::Evidence => return,
    };
    if !events {
        return;
    }
    let properties = serde_json::json!({
        "revocation.tokenId": id,
        "revocation.action": how,
        "revocation.secret": secret,
    });
    post_event(
        dt_client,
        mgr,
        format!("API token {how}: {id}"),
        properties,
        deadline,
    )
    .await;
}

/// Posts the `CUSTOM_INFO` event of a leak response (`DT_EVENTS=on`): the token disabled and
/// the secrets found holding it. Ids and names only; a failure is logged.
pub async fn report_leak(
    dt_client: &Dynatrace,
    mgr: &Manager,
    id: &str,
    secrets: &[String],
    deadline: Deadline,
) {
    let properties = serde_json::json!({
        "leak.tokenId": id,
        "leak.secrets": secrets.join(", "),
    });
    post_event(
        dt_client,
        mgr,
        format!("Leaked API token disabled: {id}"),
        properties,
        deadline,
    )
    .await;
}

/// Posts one `CUSTOM_INFO` event with `properties` (plus the tool's name) to `mgr`'s
/// environment. Failures are logged, never returned: an event never fails the work it reports.
async fn post_event(
    dt_client: &Dynatrace,
    mgr: &Manager,
    title: String,
    mut properties: serde_json::Value,
    deadline: Deadline,
) {
    properties["tool"] = "dynatrace-token-rotator".into();
    let event = serde_json::json!({
        "eventType": "CUSTOM_INFO",
        "title": title,
        "properties": properties,
    });
    if let Err(e) = dt_client
        .ingest_event(&mgr.env, &mgr.token, &event, deadline)
        .await
    {
        tracing::warn!(error = %e, title = %event["title"], "could not post the Dynatrace event");
    }
}

/// The configuration check of `testSecret` when nothing was minted: the current token
/// authenticates by itself and is enabled.
pub async fn prove_current(
    dt_client: &Dynatrace,
    env: &EnvironmentUrl,
    value: &TokenValue,
    deadline: Deadline,
) -> Result<(), RotationError> {
    let id = value
        .derived_id()
        .unwrap_or_else(|| "<legacy token>".into());
    match dt_client.lookup(env, value, value, deadline).await {
        Ok(Some(info)) if info.is_enabled() => Ok(()),
        Ok(_) | Err(DtError::Unauthorized { .. }) => Err(RotationError::ProofFailed {
            id,
            reason: "the current token does not authenticate (disabled, expired or unknown)".into(),
        }),
        Err(e) => Err(dynatrace_error(format!("checking current token {id}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_proven_targets_are_revoked() {
        let c = |id: &str, proof| Candidate::new(id, proof);
        let targets = revocation_targets(
            &[
                c("prev", Proof::ByValue),
                c("forged", Proof::Unproven),
                c("orphan", Proof::ByMarker),
                c("current", Proof::ByValue),
                c("manager", Proof::ByValue),
                c("orphan", Proof::ByMarker),
                c("hinted", Proof::Unproven),
                c("hinted", Proof::ByMarker),
            ],
            &["current"],
            &["manager"],
        );
        assert_eq!(targets.revoke, ["prev", "orphan", "hinted"]);
        assert_eq!(
            targets.unproven,
            ["forged"],
            "a token proven by one route is not reported unproven"
        );
        assert_eq!(revocation_targets(&[], &[], &[]), Targets::default());
    }

    #[test]
    fn a_token_is_deleted_only_when_the_store_definitely_does_not_hold_it() {
        assert_eq!(settle(&Stored::Ours), Settlement::Keep);
        assert_eq!(
            settle(&Stored::Theirs(Some("x".into()))),
            Settlement::Discard
        );
        assert_eq!(settle(&Stored::Theirs(None)), Settlement::Discard);
        assert_eq!(settle(&Stored::Nothing), Settlement::Discard);
        assert_eq!(settle(&Stored::Unknown), Settlement::LeaveMarked);
    }

    #[test]
    fn what_is_stored_after_a_write() {
        use ReadBack::*;
        use WriteAnswer::*;
        let refused = || Refused {
            refusal: "conflict",
            after_unclear: false,
        };
        let refused_after_unclear = || Refused {
            refusal: "conflict",
            after_unclear: true,
        };
        let unclear = || Unclear::<&str>("timeout".into());
        let theirs = || Theirs(Some("t".into()));
        // The store said it landed: ours, unless the read-back sees another run's document
        // (a store that accepted both writes); a lagging read that sees nothing changes nothing.
        for read in [Ours, Absent, Unreadable] {
            assert_eq!(stored_after(&Landed::<&str>, &read), Stored::Ours);
        }
        assert_eq!(
            stored_after(&Landed::<&str>, &theirs()),
            Stored::Theirs(Some("t".into()))
        );
        // Otherwise the read-back decides what it can see.
        assert_eq!(stored_after(&unclear(), &Ours), Stored::Ours, "landed late");
        assert_eq!(
            stored_after(&refused(), &theirs()),
            Stored::Theirs(Some("t".into()))
        );
        assert_eq!(
            stored_after(&unclear(), &theirs()),
            Stored::Theirs(Some("t".into()))
        );
        // Nothing visible: only a definitive refusal says nothing is stored.
        assert_eq!(stored_after(&refused(), &Absent), Stored::Nothing);
        assert_eq!(stored_after(&refused(), &Unreadable), Stored::Nothing);
        // A refusal after an unclear attempt may be our own landed write (a CAS conflict with
        // it): what cannot be seen stays unknown, and the token is kept.
        assert_eq!(
            stored_after(&refused_after_unclear(), &Absent),
            Stored::Unknown
        );
        assert_eq!(
            stored_after(&refused_after_unclear(), &Unreadable),
            Stored::Unknown
        );
        assert_eq!(stored_after(&refused_after_unclear(), &Ours), Stored::Ours);
        assert_eq!(
            stored_after(&unclear(), &Absent),
            Stored::Unknown,
            "may still land"
        );
        assert_eq!(stored_after(&unclear(), &Unreadable), Stored::Unknown);
        // And so a token is deleted only when it can never be stored.
        assert_eq!(
            settle(&stored_after(&unclear(), &Absent)),
            Settlement::LeaveMarked
        );
    }

    #[tokio::test]
    async fn unclear_writes_are_repeated_until_definitive_or_out_of_time() {
        let mut n = 0;
        let out = repeat_until_definitive(
            "w",
            Deadline::after(std::time::Duration::from_secs(30)),
            || {
                n += 1;
                let k = n;
                async move {
                    if k < 3 {
                        Attempt::Unclear(format!("timeout {k}"))
                    } else {
                        Attempt::Definitive(k)
                    }
                }
            },
        )
        .await;
        assert_eq!(out, Ok(3));
        // past the deadline's reserve: gives up with the last reason, after one attempt
        let out: Result<(), String> = repeat_until_definitive(
            "w",
            Deadline::after(std::time::Duration::from_millis(10)),
            || async { Attempt::Unclear("5xx".into()) },
        )
        .await;
        assert_eq!(out, Err("5xx".into()));
    }
}
