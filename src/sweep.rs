//! The `sweep` invocation (docs/design.md §3, §6): cleans up after rotations.
//!
//! For each environment of a configured manager token (Secrets Manager managers of
//! `DT_MANAGER_SECRET_IDS` and the Vault manager at `VAULT_MANAGER_PATH`, one pass per
//! environment URL), the sweep
//!
//! 1. **disables** the tokens this rotator minted (their name carries the
//!    `[dtr:<secret>:<rotation>]` marker, see [`crate::marker`]) that no stored secret
//!    references any more, with [`rotation::revoke`] and [`OldTokenAction::Disable`], which
//!    also appends ` [disabled YYYY-MM-DD]` to the name; and
//! 2. **deletes** the disabled tokens whose ` [disabled YYYY-MM-DD]` date lies more than
//!    `DT_DELETE_DISABLED_AFTER_DAYS` whole days in the past (with the default 7, a token
//!    disabled on the 1st is deleted from the 9th on, so the grace period is never shorter
//!    than the setting; `0` deletes from the next day on).
//!
//! ## Why the disable date lives in the token's name
//!
//! Dynatrace records no time of disabling: `modifiedDate` changes on a rename or a scope
//! edit, not on enable/disable. The rotator therefore renames the token in the same `PUT`
//! that disables it, and the name becomes the record of *when*. A separate ledger (a table,
//! a tag on the secret) could drift from Dynatrace — a token deleted or re-enabled by hand,
//! a ledger write lost after the `PUT` — whereas the name travels with the token: whatever
//! the sweep reads is, by construction, the state of that very token.
//!
//! ## What is deleted
//!
//! Deletion applies to every **disabled** token carrying the rotator's disabled suffix,
//! minted or not: the original (pre-rotator) tokens the rotator revoked carry the suffix
//! because the rotator renamed them when it disabled them, and their grace period is the
//! same. A token with the suffix that someone re-enabled by hand is not deleted (an
//! original is left alone; a minted one is unreferenced and live, so it is disabled again,
//! keeping its date). A token carrying neither the marker nor the suffix is never touched,
//! and neither is any configured manager token.
//!
//! ## What counts as referenced
//!
//! - Secrets Manager (only when `DT_MANAGER_SECRET_IDS` is set): the secrets whose
//!   `RotationLambdaARN` names this function (`AWS_LAMBDA_FUNCTION_NAME`, matched on the
//!   `:function:<name>` part, any qualifier), found with paginated `ListSecrets`; of each,
//!   the versions labelled `AWSCURRENT`, `AWSPREVIOUS` and `AWSPENDING`.
//! - Vault: the latest document of each path of `VAULT_ROTATE_PATHS` / `VAULT_ROTATE_PREFIX`
//!   (resolved as `rotate-vault` does), its token and its `previousTokenId`.
//!
//! A referenced token is never disabled nor deleted by the sweep (revocation of labelled
//! tokens is the rotation's business, by policy).
//!
//! ## Safety
//!
//! - A minted token younger than one hour (`creationDate`, or no `creationDate` at all) is
//!   never disabled: it may belong to a rotation in progress whose value is not stored yet.
//! - A failed read must not look like "unreferenced": when a store cannot be read
//!   completely, nothing is disabled or deleted in the environments it may reference (the
//!   Vault manager's environment for a Vault path; every environment when the secret's
//!   environment is unknown, when `ListSecrets` fails, or when a configured manager cannot
//!   be read, since its token id is then unknown). Unset `VAULT_ROTATE_PATHS` /
//!   `VAULT_ROTATE_PREFIX` count as unknown references too. Each case is reported under
//!   `errors`.
//! - `dryRun` reports what would be disabled and deleted and changes nothing.
//!
//! Response: `{"action":"sweep","dryRun":false,"disabled":[ids],"deleted":[ids],"kept":N,
//! "errors":[{"source":..,"error":..}]}`, where `kept` counts the tokens carrying the marker
//! or the disabled suffix that the sweep left as they are. Ids only, never a value.

use std::collections::BTreeSet;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use futures::StreamExt;
use jiff::Timestamp;
use jiff::civil::Date;
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::deadline::Deadline;
use crate::document::SecretDocument;
use crate::environment::EnvironmentUrl;
use crate::event::VaultAction;
use crate::marker;
use crate::policy::{OldTokenAction, RevokeOld};
use crate::rotation::{self, Manager, Revoked};
use crate::secret::redact_text;
use crate::secrets_manager::{self, SecretsManagerContext};
use crate::vault::rotate::{RunError, read_manager, resolve_paths};
use crate::vault::{KvClient, KvRead};

/// A minted token younger than this is never disabled by the sweep.
pub const MIN_AGE_SECONDS: i64 = 3600;

const LABELS: [&str; 3] = ["AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"];

/// A problem the run reports without failing (secret-free).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What could not be read or changed (secret id, Vault path, environment, setting).
    pub source: String,
    /// What went wrong and its consequence.
    pub error: String,
}

impl Problem {
    /// A problem of `source`, its text cut and redacted.
    pub(crate) fn new(source: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self {
            source: source.into(),
            error: redact_text(&error.to_string(), 1000),
        }
    }
}

/// Why a sweep or an audit could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// No manager token is configured.
    #[error(
        "no manager token is configured: set DT_MANAGER_SECRET_IDS or VAULT_ADDR (with VAULT_MANAGER_PATH)"
    )]
    NotConfigured,
    /// Managers are configured, but none could be read.
    #[error("no configured manager token could be read: {0}")]
    ManagersUnusable(String),
}

impl SweepError {
    /// The `errorType` this failure is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            SweepError::NotConfigured => "ConfigError",
            SweepError::ManagersUnusable(_) => "ManagerUnusable",
        }
    }
}

/// What the sweep and the audit read and change: the configuration and the clients, without
/// the rest of the invocation's dependencies.
pub struct Cleanup<'a> {
    /// The validated configuration.
    pub config: &'a crate::config::Config,
    /// Secrets Manager client (secrets that rotate with this function, manager secrets).
    pub secrets_manager: &'a aws_sdk_secretsmanager::Client,
    /// Dynatrace client.
    pub dynatrace: &'a crate::dynatrace::Dynatrace,
    /// Vault backend, when configured.
    pub vault: Option<&'a crate::vault::rotate::VaultBackend>,
}

/// The summary of a sweep.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    /// Always `sweep`.
    pub action: &'static str,
    /// Whether this was a dry run (the lists then say what would happen).
    pub dry_run: bool,
    /// Ids disabled (renamed with today's date).
    pub disabled: Vec<String>,
    /// Ids deleted.
    pub deleted: Vec<String>,
    /// Tokens with the marker or the disabled suffix left as they are.
    pub kept: usize,
    /// What could not be read or done.
    pub errors: Vec<Problem>,
    /// Previous tokens still in use after their successor's promotion.
    pub lagging_consumers: Vec<LaggingConsumer>,
}

/// A previous token Dynatrace saw in use after its successor was promoted: some consumer still
/// holds the old value (ids, dates and the address only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaggingConsumer {
    /// The secret's name or ARN, or `vault:<path>`.
    pub secret: String,
    /// The previous token.
    pub token_id: String,
    /// When its successor was promoted (`rotatedAt`).
    pub promoted_at: String,
    /// Its last use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_date: Option<String>,
    /// Where from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_ip_address: Option<String>,
}

/// The previous token of one secret or path, proven by value, and when its successor was
/// promoted: what `when-unused` revokes and what lagging consumers are reported against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreviousToken {
    /// The secret's name or ARN, or `vault:<path>`.
    pub secret: String,
    /// The secret's marker key (the owner written into the name when it is revoked).
    pub key: String,
    /// The successor's `rotatedAt`.
    pub promoted_at: Timestamp,
}

/// The previous token a secret or path names (its current document's `previousTokenId`), with
/// the value stored for it: [`PreviousToken`] once that value looks up to that id. The lookup
/// is made only for the tokens a listing shows it can matter for (see [`prove_previous`]).
#[derive(Clone)]
pub(crate) struct PreviousCandidate {
    /// What it is when proven.
    pub previous: PreviousToken,
    /// The stored value of the earlier version.
    value: crate::secret::TokenValue,
    /// The environment of the manager that looks the value up.
    env: EnvironmentUrl,
}

impl PreviousCandidate {
    /// The candidate `(hint, candidate)` of an earlier document `earlier` of `secret` whose
    /// successor names `hint` as the token it replaced, promoted at `promoted_at`, in `mgr`'s
    /// environment; `None` when the value's shape already shows another id (no lookup can
    /// prove it).
    fn of(
        mgr: &Manager,
        secret: &str,
        key: String,
        earlier: &SecretDocument,
        hint: &str,
        promoted_at: Timestamp,
    ) -> Option<(String, Self)> {
        if earlier.token.derived_id().is_some_and(|id| id != hint) {
            return None;
        }
        Some((
            hint.to_owned(),
            Self {
                previous: PreviousToken {
                    secret: secret.to_owned(),
                    key,
                    promoted_at,
                },
                value: earlier.token.clone(),
                env: mgr.env.clone(),
            },
        ))
    }
}

/// Whether `t`, named as a previous token by `candidates`, is used after one of their
/// successors' promotions (a lagging consumer if the candidate is proven).
pub(crate) fn may_lag(t: &crate::dynatrace::ApiToken, candidates: &[PreviousCandidate]) -> bool {
    candidates
        .iter()
        .any(|c| crate::policy::used_after_promotion(c.previous.promoted_at, t.last_used()))
}

/// Proves by value the previous-token candidates of the tokens `ids` (one lookup each, with
/// the manager of the candidate's environment, as many at once as the environment's window
/// allows): a candidate is proven when its value looks up to the very id its successor names.
/// When several secrets name the same token, the latest promotion among the proven counts
/// (the safe side for `when-unused`). A candidate that cannot be looked up is skipped this time
/// (logged): when-unused and lagging consumers leave it for the next run.
pub(crate) async fn prove_previous(
    cleanup: &Cleanup<'_>,
    managers: &[Manager],
    refs: &References,
    tokens: &[crate::dynatrace::ApiToken],
    deadline: Deadline,
) -> std::collections::BTreeMap<String, PreviousToken> {
    let dt = cleanup.dynatrace;
    // Owned items: the handler's future stays `Send` for any lifetime.
    let lookups: Vec<(String, PreviousCandidate)> = tokens
        .iter()
        .flat_map(|t| {
            let id = t.id_str();
            refs.previous
                .get(id)
                .into_iter()
                .flatten()
                .map(move |c| (id.to_owned(), c.clone()))
        })
        .collect();
    let mut proofs = std::pin::pin!(
        futures::stream::iter(lookups)
            .map(|(id, c)| async move {
                let mgr = managers.iter().find(|m| m.env == c.env)?;
                match rotation::proven_id(dt, mgr, &c.value, deadline).await {
                    Ok(Some(proven)) if proven == id => Some((id, c.previous)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(secret = %c.previous.secret, error = %e, "could not look up the previous token; when-unused and lagging consumers skip it this time");
                        None
                    }
                }
            })
            .buffer_unordered(dt.max_in_flight())
    );
    let mut proven = std::collections::BTreeMap::<String, PreviousToken>::new();
    while let Some(found) = proofs.next().await {
        let Some((id, p)) = found else { continue };
        match proven.get(&id) {
            Some(existing) if existing.promoted_at >= p.promoted_at => {}
            _ => {
                proven.insert(id, p);
            }
        }
    }
    proven
}

/// The lagging consumer entry for `t` when it is a previous token used after its promotion.
pub(crate) fn lagging(
    t: &crate::dynatrace::ApiToken,
    previous: &PreviousToken,
) -> Option<LaggingConsumer> {
    crate::policy::used_after_promotion(previous.promoted_at, t.last_used()).then(|| {
        LaggingConsumer {
            secret: previous.secret.clone(),
            token_id: t.id_str().to_owned(),
            promoted_at: crate::dynatrace::format_time(previous.promoted_at),
            last_used_date: t.last_used_date.clone(),
            last_used_ip_address: t.last_used_ip_address.clone(),
        }
    })
}

/// The configured managers, one per environment.
pub(crate) struct Managers {
    /// One manager per environment URL (the first configured wins).
    pub by_env: Vec<Manager>,
    /// Ids of every configured manager token: never touched.
    pub manager_ids: BTreeSet<String>,
    /// Problems reading managers.
    pub errors: Vec<Problem>,
    /// A configured manager could not be read, or its id is unknown.
    pub incomplete: bool,
    /// The logged-in Vault client and the Vault manager, when Vault is configured and works.
    pub vault: Option<(KvClient, Manager)>,
    /// Where each configured manager token was read from, by id (a Secrets Manager secret
    /// id, or the Vault manager path): `revoke-leaked` rotates a leaked manager there.
    pub sources: std::collections::BTreeMap<String, String>,
}

/// Reads every configured manager (Secrets Manager and Vault).
pub(crate) async fn load_managers(cleanup: &Cleanup<'_>, deadline: Deadline) -> Managers {
    let mut all = Vec::new();
    let mut errors = Vec::new();
    let mut incomplete = false;
    let mut vault = None;
    if !cleanup.config.manager_secret_ids.is_empty() {
        let ctx = SecretsManagerContext {
            config: cleanup.config,
            secrets_manager: cleanup.secrets_manager,
            dynatrace: cleanup.dynatrace,
        };
        let set = secrets_manager::load_managers(&ctx).await;
        all.extend(set.usable);
        for (id, reason) in set.broken {
            errors.push(Problem::new(
                id,
                format!("manager token secret is unusable: {reason}"),
            ));
            incomplete = true;
        }
    }
    if let Some(backend) = &cleanup.vault {
        let kv = backend.kv.with_deadline(deadline.work_until());
        let path = backend.config.manager_path.clone();
        let read: Result<Manager, RunError> = async {
            kv.session().token_until(deadline.work_until()).await?;
            kv.ensure_kv_v2().await?;
            read_manager(&kv, &path).await
        }
        .await;
        match read {
            Ok(m) => {
                vault = Some((kv, m.clone()));
                all.push(m);
            }
            Err(e) => {
                errors.push(Problem::new(format!("vault:{path}"), e));
                incomplete = true;
            }
        }
    }
    let mut by_env: Vec<Manager> = Vec::new();
    let mut manager_ids = BTreeSet::new();
    let mut sources = std::collections::BTreeMap::new();
    for m in all {
        let id = match m.token.derived_id() {
            Some(id) => Some(id),
            // A legacy manager token: its id comes from a lookup of itself.
            None => match cleanup
                .dynatrace
                .lookup(&m.env, &m.token, &m.token, deadline)
                .await
            {
                Ok(Some(t)) => t.id,
                Ok(None) => None,
                Err(e) => {
                    errors.push(Problem::new(
                        &m.source,
                        format!("looking up the manager token: {e}"),
                    ));
                    None
                }
            },
        };
        match id {
            Some(id) => {
                sources
                    .entry(id.clone())
                    .or_insert_with(|| m.source.clone());
                manager_ids.insert(id);
            }
            None => incomplete = true,
        }
        if !by_env.iter().any(|x| x.env == m.env) {
            by_env.push(m);
        }
    }
    Managers {
        by_env,
        manager_ids,
        errors,
        incomplete,
        vault,
        sources,
    }
}

/// The run could not start: no managers at all.
pub(crate) fn no_managers(cleanup: &Cleanup<'_>, managers: &Managers) -> SweepError {
    if cleanup.config.manager_secret_ids.is_empty() && cleanup.vault.is_none() {
        SweepError::NotConfigured
    } else {
        SweepError::ManagersUnusable(
            managers
                .errors
                .iter()
                .map(|p| format!("{}: {}", p.source, p.error))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// What the stores reference.
#[derive(Default)]
pub(crate) struct References {
    /// Every referenced token id (ids are unique across environments).
    ids: BTreeSet<String>,
    /// Environments whose references are incomplete: nothing is changed there.
    tainted: BTreeSet<String>,
    /// References of every environment are incomplete.
    taint_all: bool,
    /// Latest version of each Vault path, by the path's marker key: a minted token whose
    /// marker names a version at or below it can never be stored any more (a rotation in
    /// progress always mints for latest + 1), so its age does not protect it.
    vault_latest: std::collections::BTreeMap<String, u64>,
    /// Marker keys of every secret and path this sweep enumerated. A live minted token whose
    /// marker names another secret (a path rotated by an event outside the configured ones,
    /// another deployment sharing the tenant) may be that secret's current token: never
    /// disabled.
    known_keys: BTreeSet<String>,
    /// Deployment parts of this deployment's keys (see [`marker::deployment_of`]): a live
    /// minted token under one of them whose secret this sweep did not read is an orphan of a
    /// deleted secret (audit `orphanedMinted`).
    deployments: BTreeSet<String>,
    /// Tokens two generations old whose revocation a rotation left undone, proven by value,
    /// with the secret key they belong to and the secret's name: disabled by the sweep.
    overdue: std::collections::BTreeMap<String, (String, String)>,
    /// What could not be read, and its consequence.
    pub(crate) errors: Vec<Problem>,
    /// The current token of each secret and path read (for the audit's `danglingSecrets` and
    /// `expiresBeforeNextRotation`).
    pub(crate) current: Vec<StoredToken>,
    /// Every id a current value of a secret or path read is known by (for a legacy value
    /// its `tokenId` and its lookup): never revoked as another secret's previous token.
    current_ids: BTreeSet<String>,
    /// Previous-token candidates by the id their successors name, not yet proven (see
    /// [`PreviousCandidate`], [`prove_previous`]).
    pub(crate) previous: std::collections::BTreeMap<String, Vec<PreviousCandidate>>,
    /// Which secrets reference each token id (any labelled Secrets Manager version; a Vault
    /// path's latest token and `previousTokenId`): the secrets `revoke-leaked` rotates.
    pub(crate) holders: std::collections::BTreeMap<String, BTreeSet<Holder>>,
}

/// A secret that references a token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Holder {
    /// A Secrets Manager secret (its ARN).
    SecretsManager(String),
    /// A Vault path of the configured mount.
    Vault(String),
}

/// The current token of one secret or Vault path, as the audit reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredToken {
    /// The secret's name or ARN, or `vault:<path>`.
    pub secret: String,
    /// The document's `environmentUrl`, normalised (`None`: the only environment).
    pub environment: Option<EnvironmentUrl>,
    /// The token's id, derived from the value (from `tokenId` for a legacy value).
    pub token_id: String,
    /// When the secret is rotated next (Secrets Manager's `NextRotationDate`; Vault:
    /// `rotatedAt` + `ROTATION_INTERVAL_DAYS`).
    pub next_rotation: Option<Timestamp>,
}

impl StoredToken {
    /// The record for `doc`, when its token has an id to report.
    fn of(secret: String, doc: &SecretDocument, next_rotation: Option<Timestamp>) -> Option<Self> {
        Some(Self {
            secret,
            environment: doc
                .environment_url
                .as_deref()
                .and_then(|raw| EnvironmentUrl::parse(raw).ok()),
            token_id: doc.token.derived_id().or_else(|| doc.token_id_hint())?,
            next_rotation,
        })
    }
}

impl References {
    /// Records a previous-token candidate (several secrets may name the same token).
    fn add_previous(&mut self, previous: Option<(String, PreviousCandidate)>) {
        if let Some((id, c)) = previous {
            self.previous.entry(id).or_default().push(c);
        }
    }

    /// Whether some secret or path this sweep read holds `id` as its current token.
    fn is_current(&self, id: &str) -> bool {
        self.current_ids.contains(id) || self.current.iter().any(|c| c.token_id == id)
    }

    fn fail(&mut self, env: Option<&EnvironmentUrl>, problem: Problem) {
        match env {
            Some(env) => {
                self.tainted.insert(env.to_string());
            }
            None => self.taint_all = true,
        }
        self.errors.push(problem);
    }

    /// Whether the references of `env` are incomplete (nothing may change there).
    pub(crate) fn is_tainted(&self, env: &EnvironmentUrl) -> bool {
        self.taint_all || self.tainted.contains(&env.to_string())
    }
}

/// What one stored secret references, or why that is unknown.
#[derive(Default)]
struct Found {
    ids: Vec<String>,
    current: Option<StoredToken>,
    /// Every id the current value is known by (a legacy value: its `tokenId` and its lookup).
    current_ids: Vec<String>,
    previous: Option<(String, PreviousCandidate)>,
    failure: Option<(Option<EnvironmentUrl>, Problem)>,
}

/// Runs a sweep. Returns the summary whenever it ran (problems included); an error only when
/// no manager could be used.
pub async fn run(
    cleanup: &Cleanup<'_>,
    dry_run: bool,
    deadline: Deadline,
) -> Result<SweepSummary, SweepError> {
    let managers = load_managers(cleanup, deadline).await;
    if managers.by_env.is_empty() {
        return Err(no_managers(cleanup, &managers));
    }
    let refs = collect_references(cleanup, &managers, deadline).await;
    let mut summary = SweepSummary {
        action: "sweep",
        dry_run,
        disabled: Vec::new(),
        deleted: Vec::new(),
        kept: 0,
        errors: Vec::new(),
        lagging_consumers: Vec::new(),
    };
    for mgr in &managers.by_env {
        sweep_environment(cleanup, mgr, &managers, &refs, &mut summary, deadline).await;
    }
    let mut errors = refs.errors.clone();
    errors.append(&mut summary.errors);
    summary.errors = errors;
    tracing::info!(
        dry_run,
        disabled = ?summary.disabled,
        deleted = ?summary.deleted,
        kept = summary.kept,
        errors = summary.errors.len(),
        "sweep done"
    );
    Ok(summary)
}

/// Reads every store the deployment covers and collects what it references (shared by the
/// sweep and the audit).
pub(crate) async fn collect_references(
    cleanup: &Cleanup<'_>,
    managers: &Managers,
    deadline: Deadline,
) -> References {
    let mut refs = References {
        errors: managers.errors.clone(),
        ..References::default()
    };
    if managers.incomplete {
        refs.taint_all = true;
        refs.errors.push(Problem::new(
            "managers",
            "a configured manager token could not be read, so its id is unknown: nothing is disabled or deleted",
        ));
    }
    if !cleanup.config.manager_secret_ids.is_empty() {
        collect_secrets_manager(cleanup, managers, &mut refs, deadline).await;
    }
    if let (Some(backend), Some((kv, vmgr))) = (&cleanup.vault, &managers.vault) {
        refs.deployments.insert(backend.scope().deployment_key());
        collect_vault(cleanup, backend, kv, vmgr, &mut refs, deadline).await;
    }
    refs
}

/// Whether `t` is a live token minted under this deployment's marker for a secret it did not
/// read (a deleted secret, a path outside the configured ones) and referenced by nothing: the
/// sweep cannot attribute it, so a person decides (pure).
pub(crate) fn is_orphaned_minted(t: &crate::dynatrace::ApiToken, refs: &References) -> bool {
    let name = t.name_str();
    t.is_enabled()
        && marker::is_minted(name)
        && !refs.ids.contains(t.id_str())
        && marker::owner_key(name).is_some_and(|key| {
            !refs.known_keys.contains(key)
                && marker::deployment_of(key).is_some_and(|d| refs.deployments.contains(d))
        })
}

/// Whether `arn` (a `RotationLambdaARN`) names the function `name`, with or without a
/// version/alias qualifier.
pub fn names_function(arn: &str, name: &str) -> bool {
    arn.split_once(":function:")
        .map(|(_, rest)| rest.split(':').next() == Some(name))
        .unwrap_or(false)
}

/// Stored secrets (Secrets Manager secrets, Vault paths) read at once by a sweep, an audit or
/// `revoke-leaked`. Their Dynatrace calls (legacy ids, previous-token proofs) are bounded
/// separately, by the environment's window (`ROTATION_CONCURRENCY`, [`crate::throttle`]).
pub const STORE_READ_CONCURRENCY: usize = 16;

/// A secret `ListSecrets` names, with what its entry says: the labels of its versions and
/// its next rotation (`None`: the entry carries no versions, read them with DescribeSecret).
struct ListedSecret {
    /// ARN (or name).
    id: String,
    versions: Option<std::collections::HashMap<String, Vec<String>>>,
    next_rotation: Option<Timestamp>,
}

/// One item of the `ListSecrets` stream: a secret to read, or why the listing stopped.
enum Listing {
    Secret(ListedSecret),
    Failed(Problem),
}

/// The secrets that rotate with `function`, page by page as `ListSecrets` returns them
/// (`None` state: the listing is over).
fn list_rotating_secrets<'a>(
    sm: &'a aws_sdk_secretsmanager::Client,
    function: &'a str,
) -> impl futures::Stream<Item = Listing> + 'a {
    futures::stream::unfold(Some(None::<String>), move |state| async move {
        let next = state?;
        let page = match sm
            .list_secrets()
            .max_results(100)
            .set_next_token(next)
            .send()
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let problem = Problem::new(
                    "secretsmanager:ListSecrets",
                    format!(
                        "{}: {}; nothing is disabled or deleted",
                        e.code().unwrap_or("Unknown"),
                        e.message().unwrap_or("no message")
                    ),
                );
                return Some((vec![Listing::Failed(problem)], None));
            }
        };
        let secrets: Vec<Listing> = page
            .secret_list
            .unwrap_or_default()
            .into_iter()
            .filter(|s| {
                s.rotation_lambda_arn()
                    .is_some_and(|a| names_function(a, function))
            })
            .filter_map(|s| {
                Some(Listing::Secret(ListedSecret {
                    id: s.arn.or(s.name)?,
                    versions: s.secret_versions_to_stages.filter(|v| !v.is_empty()),
                    next_rotation: s
                        .next_rotation_date
                        .and_then(|d| Timestamp::from_second(d.secs()).ok()),
                }))
            })
            .collect();
        let next = page.next_token.filter(|t| !t.is_empty()).map(Some);
        Some((secrets, next))
    })
    .flat_map(futures::stream::iter)
}

/// Reads the Secrets Manager secrets that rotate with this function: `ListSecrets` pages are
/// streamed into reads, [`STORE_READ_CONCURRENCY`] secrets at a time, and each result is
/// folded into `refs` as it arrives.
async fn collect_secrets_manager(
    cleanup: &Cleanup<'_>,
    managers: &Managers,
    refs: &mut References,
    deadline: Deadline,
) {
    let Some(function) = cleanup.config.function_name.as_deref() else {
        refs.fail(
            None,
            Problem::new(
                "secretsmanager",
                "AWS_LAMBDA_FUNCTION_NAME is not set, so the secrets this function rotates cannot be found: nothing is disabled or deleted",
            ),
        );
        return;
    };
    let mut reads = std::pin::pin!(
        list_rotating_secrets(cleanup.secrets_manager, function)
            .map(|item| async move {
                match item {
                    Listing::Secret(listed) => {
                        Ok(read_sm_secret(cleanup, managers, listed, deadline).await)
                    }
                    Listing::Failed(problem) => Err(problem),
                }
            })
            .buffer_unordered(STORE_READ_CONCURRENCY)
    );
    let mut secrets = 0usize;
    while let Some(read) = reads.next().await {
        let (id, f) = match read {
            Ok(found) => found,
            Err(problem) => {
                refs.fail(None, problem);
                continue;
            }
        };
        secrets += 1;
        // A secret whose read failed is not known: its minted tokens are nobody's to touch.
        if f.failure.is_none() {
            refs.known_keys
                .extend(marker::secret_keys_secrets_manager(&id));
        }
        refs.deployments
            .insert(marker::deployment_key_secrets_manager(&id));
        for token in &f.ids {
            refs.holders
                .entry(token.clone())
                .or_default()
                .insert(Holder::SecretsManager(id.clone()));
        }
        refs.ids.extend(f.ids);
        refs.current.extend(f.current);
        refs.current_ids.extend(f.current_ids);
        refs.add_previous(f.previous);
        if let Some((env, p)) = f.failure {
            refs.fail(env.as_ref(), p);
        }
    }
    tracing::info!(
        secrets,
        "sweep: Secrets Manager secrets rotated by this function read"
    );
}

/// What one secret references. The versions and their labels come from its `ListSecrets`
/// entry (DescribeSecret only when the entry carries none); its labelled versions are read at
/// once.
///
/// `ListSecrets` is eventually consistent and may lag by minutes. A lagging entry still names
/// every version that carried a label before the lag (a label only moves between versions it
/// names, and a version that lost its label is read anyway: more is referenced, nothing less).
/// Only a version written within the lag can be missing; its token was minted just before it,
/// so the one-hour age guard ([`MIN_AGE_SECONDS`]) keeps that token.
async fn read_sm_secret(
    cleanup: &Cleanup<'_>,
    managers: &Managers,
    listed: ListedSecret,
    deadline: Deadline,
) -> (String, Found) {
    let found = read_listed_secret(
        cleanup,
        managers,
        &listed.id,
        listed.versions,
        listed.next_rotation,
        deadline,
    )
    .await;
    (listed.id, found)
}

async fn read_listed_secret(
    cleanup: &Cleanup<'_>,
    managers: &Managers,
    secret: &str,
    versions: Option<std::collections::HashMap<String, Vec<String>>>,
    next_rotation: Option<Timestamp>,
    deadline: Deadline,
) -> Found {
    let sm = &cleanup.secrets_manager;
    let mut found = Found::default();
    let aws_problem = |op: &str, code: Option<&str>, msg: Option<&str>| {
        Problem::new(
            secret,
            format!(
                "{op}: {}: {}; nothing is disabled or deleted where it may reference tokens",
                code.unwrap_or("Unknown"),
                msg.unwrap_or("no message")
            ),
        )
    };
    let (versions, next_rotation) = match versions {
        Some(v) => (v, next_rotation),
        None => match sm.describe_secret().secret_id(secret).send().await {
            Ok(d) => (
                d.version_ids_to_stages.unwrap_or_default(),
                d.next_rotation_date
                    .and_then(|d| Timestamp::from_second(d.secs()).ok()),
            ),
            Err(e) if e.code() == Some("ResourceNotFoundException") => return found,
            Err(e) => {
                found.failure = Some((None, aws_problem("DescribeSecret", e.code(), e.message())));
                return found;
            }
        },
    };
    let labelled: Vec<(String, bool, bool)> = versions
        .into_iter()
        .filter(|(_, stages)| stages.iter().any(|s| LABELS.contains(&s.as_str())))
        .map(|(version, stages)| {
            let is_current = stages.iter().any(|s| s == "AWSCURRENT");
            let is_previous = stages.iter().any(|s| s == "AWSPREVIOUS");
            (version, is_current, is_previous)
        })
        .collect();
    let values = futures::future::join_all(labelled.iter().map(|(version, _, _)| {
        sm.get_secret_value()
            .secret_id(secret)
            .version_id(version)
            .send()
    }))
    .await;
    let (mut promoted_at, mut current_doc, mut previous_doc) = (None, None, None);
    for ((_, is_current, is_previous), value) in labelled.into_iter().zip(values) {
        let value = match value {
            Ok(v) => v,
            // A pending version without a value yet, or a secret deleted meanwhile.
            Err(e) if e.code() == Some("ResourceNotFoundException") => continue,
            Err(e) => {
                found.failure = Some((None, aws_problem("GetSecretValue", e.code(), e.message())));
                return found;
            }
        };
        let Some(text) = value.secret_string.map(secrecy::SecretString::from) else {
            continue;
        };
        match SecretDocument::parse(text.expose_secret()) {
            Ok(doc) => match document_ids(cleanup, managers, &doc, deadline).await {
                Ok(ids) if is_current => {
                    found.current = StoredToken::of(secret.to_owned(), &doc, next_rotation);
                    found.current_ids.extend(ids.iter().cloned());
                    promoted_at = doc.rotated_at_time();
                    current_doc = Some(doc);
                    found.ids.extend(ids);
                }
                Ok(ids) if is_previous => {
                    previous_doc = Some(doc);
                    found.ids.extend(ids);
                }
                Ok(ids) => found.ids.extend(ids),
                Err((env, why)) => {
                    found.failure = Some((env, Problem::new(secret, why)));
                    return found;
                }
            },
            // Not a token document the rotator accepts; any token id it holds still counts.
            Err(_) => found.ids.extend(scan_ids(text.expose_secret())),
        }
    }
    // The promotion time belongs to the current document: only for the token it names as the
    // one it replaced (a copied or edited value names another, or none), proven by value later.
    if let (Some(at), Some(current), Some(previous)) = (promoted_at, &current_doc, &previous_doc)
        && !previous.token.same_as(&current.token)
        && let Some(hint) = current.previous_token_id.as_deref()
        && let Some(mgr) = manager_for(managers, previous)
    {
        let key = marker::secret_key_secrets_manager(secret);
        found.previous = PreviousCandidate::of(mgr, secret, key, previous, hint, at);
    }
    found
}

/// The manager of `doc`'s environment (the only one when the document names none).
fn manager_for<'m>(managers: &'m Managers, doc: &SecretDocument) -> Option<&'m Manager> {
    match doc.environment_url.as_deref() {
        Some(raw) => {
            let env = EnvironmentUrl::parse(raw).ok()?;
            managers.by_env.iter().find(|m| m.env == env)
        }
        None if managers.by_env.len() == 1 => managers.by_env.first(),
        None => None,
    }
}

/// The id of the token a document holds. A legacy token is looked up by value with the
/// manager of its environment (its `tokenId` may be stale or edited: both ids count); an
/// environment that is not one of ours cannot hold our tokens.
async fn document_ids(
    cleanup: &Cleanup<'_>,
    managers: &Managers,
    doc: &SecretDocument,
    deadline: Deadline,
) -> Result<Vec<String>, (Option<EnvironmentUrl>, String)> {
    let hint = doc.token_id_hint();
    if doc.token.derived_id().is_some() {
        return Ok(hint.into_iter().collect());
    }
    let mgr = match doc.environment_url.as_deref() {
        Some(raw) => match EnvironmentUrl::parse(raw) {
            Ok(env) => match managers.by_env.iter().find(|m| m.env == env) {
                Some(m) => m,
                None => return Ok(Vec::new()),
            },
            Err(_) => return Ok(Vec::new()),
        },
        None if managers.by_env.len() == 1 => &managers.by_env[0],
        None => {
            return Err((
                None,
                "a legacy token without environmentUrl and several environments: its id cannot be determined; nothing is disabled or deleted".into(),
            ));
        }
    };
    match rotation::proven_id(cleanup.dynatrace, mgr, &doc.token, deadline).await {
        Ok(id) => {
            let mut ids: Vec<String> = hint.into_iter().chain(id).collect();
            ids.dedup();
            Ok(ids)
        }
        Err(e) => Err((
            Some(mgr.env.clone()),
            format!("{e}; nothing is disabled or deleted in {}", mgr.env),
        )),
    }
}

async fn collect_vault(
    cleanup: &Cleanup<'_>,
    backend: &crate::vault::rotate::VaultBackend,
    kv: &KvClient,
    vmgr: &Manager,
    refs: &mut References,
    deadline: Deadline,
) {
    let action = VaultAction::default();
    let paths = match resolve_paths(kv, backend, &action, &backend.config.manager_path).await {
        Ok(p) => p,
        Err(RunError::NoPaths) => {
            refs.fail(
                Some(&vmgr.env),
                Problem::new(
                    "vault",
                    format!(
                        "VAULT_ROTATE_PATHS / VAULT_ROTATE_PREFIX are not set, so the Vault secrets that reference tokens are unknown: nothing is disabled or deleted in {}",
                        vmgr.env
                    ),
                ),
            );
            return;
        }
        Err(e) => {
            refs.fail(
                Some(&vmgr.env),
                Problem::new(
                    "vault",
                    format!("{e}; nothing is disabled or deleted in {}", vmgr.env),
                ),
            );
            return;
        }
    };
    let managers = std::slice::from_ref(vmgr);
    let mut found = std::pin::pin!(
        futures::stream::iter(paths)
            .map(|path| async move {
                let r = read_vault_path(cleanup, kv, managers, &path, deadline).await;
                (path, r)
            })
            .buffer_unordered(STORE_READ_CONCURRENCY)
    );
    let scope = backend.scope();
    while let Some((path, r)) = found.next().await {
        let key = scope.secret_key(&path);
        match r {
            Ok(PathRefs {
                ids,
                latest,
                overdue,
                current,
                current_ids,
                previous,
            }) => {
                // Only a path read in full is known (see the Secrets Manager side).
                refs.known_keys.insert(key.clone());
                refs.current_ids.extend(current_ids);
                for token in &ids {
                    refs.holders
                        .entry(token.clone())
                        .or_default()
                        .insert(Holder::Vault(path.clone()));
                }
                refs.ids.extend(ids);
                refs.current.extend(current);
                refs.add_previous(previous);
                if let Some(id) = overdue {
                    refs.overdue
                        .insert(id, (key.clone(), format!("vault:{path}")));
                }
                if let Some(v) = latest {
                    refs.vault_latest.insert(key, v);
                }
            }
            Err(why) => refs.fail(
                Some(&vmgr.env),
                Problem::new(
                    format!("vault:{path}"),
                    format!("{why}; nothing is disabled or deleted in {}", vmgr.env),
                ),
            ),
        }
    }
}

/// What one Vault path references, or why that is unknown.
type VaultPathRefs = Result<PathRefs, String>;

/// What one Vault path references.
#[derive(Default)]
struct PathRefs {
    /// Token ids referenced.
    ids: Vec<String>,
    /// Its latest version.
    latest: Option<u64>,
    /// An overdue revocation (see [`overdue_vault_revocation`]).
    overdue: Option<String>,
    /// Its current token.
    current: Option<StoredToken>,
    /// Every id its current value is known by (a legacy value: `tokenId` and its lookup).
    current_ids: Vec<String>,
    /// Its previous token, to be proven by value.
    previous: Option<(String, PreviousCandidate)>,
}

/// The token two generations old of a Vault path when it is still enabled although the
/// policy revokes it at rotation (a run that crashed or failed between its write and the
/// revocation: the next scheduled run finds the path not due and never retries it). Proven
/// like the rotation proves it: the document that was current before the latest names it in
/// `previousTokenId`, and an earlier stored value looks up to it. Never a token the rotator
/// disabled before (someone re-enabled it: theirs to decide).
async fn overdue_vault_revocation(
    cleanup: &Cleanup<'_>,
    kv: &KvClient,
    mgr: &Manager,
    path: &str,
    latest: u64,
    doc: &SecretDocument,
    deadline: Deadline,
) -> Option<String> {
    /// Versions read back at most.
    const MAX_WALK: u64 = 10;
    let lowest = latest.saturating_sub(MAX_WALK).max(1);
    let mut previous: Option<SecretDocument> = None;
    let mut v = latest.saturating_sub(1);
    while v >= lowest {
        let Ok(KvRead::Present(entry)) = kv.read_version(path, v).await else {
            return None;
        };
        let Ok(d) = SecretDocument::from_map(entry.data) else {
            return None;
        };
        v -= 1;
        if d.token.same_as(&doc.token) {
            continue;
        }
        match &previous {
            None => {
                // The token the latest document replaced: it must name what it replaced.
                previous = Some(d);
            }
            Some(p) if d.token.same_as(&p.token) => {}
            Some(p) => {
                let hint = p.previous_token_id.as_deref()?;
                if d.token.derived_id().is_some_and(|id| id != hint) {
                    return None;
                }
                let found = cleanup
                    .dynatrace
                    .lookup(&mgr.env, &mgr.token, &d.token, deadline)
                    .await
                    .ok()??;
                let id = found.id.clone()?;
                let overdue = id == hint
                    && found.is_enabled()
                    && marker::disabled_on(found.name_str()).is_none();
                return overdue.then_some(id);
            }
        }
    }
    None
}

/// The previous-token candidate of a Vault path: the token of the nearest earlier version
/// holding another token (at most ten versions back), named by the latest document's
/// `previousTokenId`, with the latest `rotatedAt` as its successor's promotion; proven when its
/// value looks up to that id ([`prove_previous`]).
async fn vault_previous(
    cleanup: &Cleanup<'_>,
    kv: &KvClient,
    mgr: &Manager,
    path: &str,
    latest: u64,
    doc: &SecretDocument,
) -> Option<(String, PreviousCandidate)> {
    const MAX_WALK: u64 = 10;
    let hint = doc.previous_token_id.as_deref()?;
    let promoted_at = doc.rotated_at_time()?;
    let key = cleanup.vault?.scope().secret_key(path);
    let lowest = latest.saturating_sub(MAX_WALK).max(1);
    let mut v = latest.saturating_sub(1);
    while v >= lowest {
        let entry = match kv.read_version(path, v).await {
            Ok(KvRead::Present(entry)) => entry,
            // Deleted or destroyed (`max_versions`, a person): look further back, as the
            // rotation does.
            Ok(_) => {
                v -= 1;
                continue;
            }
            Err(_) => return None,
        };
        let earlier = SecretDocument::from_map(entry.data).ok()?;
        v -= 1;
        if earlier.token.same_as(&doc.token) {
            continue;
        }
        if earlier.token.derived_id().is_some_and(|id| id != hint) {
            return None;
        }
        // A value is only ever sent to its own environment.
        if let Some(raw) = earlier.environment_url.as_deref()
            && EnvironmentUrl::parse(raw).ok().as_ref() != Some(&mgr.env)
        {
            return None;
        }
        let secret = format!("vault:{path}");
        return PreviousCandidate::of(mgr, &secret, key, &earlier, hint, promoted_at);
    }
    None
}

async fn read_vault_path(
    cleanup: &Cleanup<'_>,
    kv: &KvClient,
    vmgr: &[Manager],
    path: &str,
    deadline: Deadline,
) -> VaultPathRefs {
    let entry = match kv.read(path).await.map_err(|e| e.to_string())? {
        KvRead::Present(e) => e,
        KvRead::Missing => return Ok(PathRefs::default()),
        // A soft-deleted latest version (`delete_version_after`, a person) can be undeleted:
        // what it references is unknown, so nothing changes in its environment.
        KvRead::Deleted { version } => {
            return Err(format!(
                "its latest version {version} is deleted, so the token it references is unknown (undelete or destroy it)"
            ));
        }
    };
    let latest = Some(entry.version);
    match SecretDocument::from_map(entry.data.clone()) {
        Ok(doc) => {
            let mut ids: Vec<String> = doc.previous_token_id.iter().cloned().collect();
            let mgr = &vmgr[0];
            let mut current_ids: Vec<String> = doc.token_id_hint().into_iter().collect();
            if doc.token.derived_id().is_none() {
                // A legacy value: its `tokenId` may be stale or edited; its lookup tells.
                current_ids.extend(
                    rotation::proven_id(cleanup.dynatrace, mgr, &doc.token, deadline)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                current_ids.dedup();
            }
            ids.extend(current_ids.iter().cloned());
            let overdue = match cleanup.config.revoke_old {
                RevokeOld::NextRotation | RevokeOld::WhenUnused | RevokeOld::Immediately => {
                    overdue_vault_revocation(cleanup, kv, mgr, path, entry.version, &doc, deadline)
                        .await
                }
                _ => None,
            };
            let next = doc.rotated_at_time().map(|at| {
                at + jiff::SignedDuration::from_hours(
                    24 * i64::from(cleanup.config.rotation_interval_days),
                )
            });
            let current = StoredToken::of(format!("vault:{path}"), &doc, next);
            let previous = vault_previous(cleanup, kv, mgr, path, entry.version, &doc).await;
            Ok(PathRefs {
                ids,
                latest,
                overdue,
                current,
                current_ids,
                previous,
            })
        }
        Err(_) => {
            let text = zeroize::Zeroizing::new(serde_json::Value::Object(entry.data).to_string());
            Ok(PathRefs {
                ids: scan_ids(&text),
                latest,
                ..PathRefs::default()
            })
        }
    }
}

/// Every current-format token id (`dt0[a-zA-Z][0-9]{2}.` + 24 of `[A-Z0-9]`) in `text`, as
/// found in a token value, `tokenId` or `previousTokenId` alike.
pub fn scan_ids(text: &str) -> Vec<String> {
    const LEN: usize = 31;
    let b = text.as_bytes();
    let upper_digit = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    let mut out = Vec::new();
    let mut i = 0;
    while i + LEN <= b.len() {
        let candidate = &b[i..i + LEN];
        let boundary_before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let boundary_after = b.get(i + LEN).is_none_or(|c| !upper_digit(c));
        if boundary_before
            && boundary_after
            && candidate.starts_with(b"dt0")
            && candidate[3].is_ascii_alphabetic()
            && candidate[4].is_ascii_digit()
            && candidate[5].is_ascii_digit()
            && candidate[6] == b'.'
            && candidate[7..].iter().all(upper_digit)
        {
            out.push(text[i..i + LEN].to_owned());
            i += LEN;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether the token disabled on `date` is past its grace period of `days` on `today`.
pub fn grace_over(date: Date, days: u32, today: Date) -> bool {
    match date.checked_add(jiff::Span::new().days(i64::from(days))) {
        Ok(limit) => today > limit,
        Err(_) => false,
    }
}

/// Whether `name` carries a Vault marker `v<N>` of a path whose latest version is ≥ N: the
/// token was minted for a write that lost or never happened, whatever its age.
fn superseded_vault_mint(name: &str, latest: &std::collections::BTreeMap<String, u64>) -> bool {
    let Some((secret, rotation)) = marker::parse(name) else {
        return false;
    };
    let Some(n) = marker::vault_version(rotation) else {
        return false;
    };
    latest.get(secret).is_some_and(|l| n <= *l)
}

/// What the sweep does with one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Neither marker nor disabled suffix: not the rotator's.
    NotOurs,
    /// Left as it is.
    Keep,
    /// Disable (and rename with today's date).
    Disable,
    /// Delete.
    Delete,
}

/// The decision for one token (pure).
pub fn verdict(
    token: &crate::dynatrace::ApiToken,
    referenced: bool,
    is_manager: bool,
    delete_after_days: u32,
    now: Timestamp,
    today: Date,
) -> Verdict {
    let name = token.name_str();
    let minted = marker::is_minted(name);
    let disabled_on = marker::disabled_on(name);
    if !minted && disabled_on.is_none() {
        return Verdict::NotOurs;
    }
    if marker::leaked_on(name).is_some() {
        // Disabled by `revoke-leaked`: evidence, kept as it is.
        return Verdict::Keep;
    }
    if is_manager || referenced || token.id.is_none() {
        return Verdict::Keep;
    }
    if !token.is_enabled() {
        return match disabled_on {
            Some(date) if grace_over(date, delete_after_days, today) => Verdict::Delete,
            Some(_) => Verdict::Keep,
            // Disabled by hand without the rotator's record: start the grace period now.
            None => Verdict::Disable,
        };
    }
    if !minted {
        // An original the rotator disabled, enabled again by someone: theirs to decide.
        return Verdict::Keep;
    }
    let old_enough = token
        .created()
        .is_some_and(|c| now.as_second() - c.as_second() >= MIN_AGE_SECONDS);
    if old_enough {
        Verdict::Disable
    } else {
        Verdict::Keep
    }
}

/// What the sweep does to one listed token, decided while the listing is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Disable a token two generations old that a rotation left enabled (proven by value),
    /// renamed under `owner`; `secret` names it in the revocation event.
    Overdue {
        id: String,
        owner: String,
        secret: String,
    },
    /// Revoke a previous token unused since its successor's promotion (`when-unused`).
    Unused {
        id: String,
        key: String,
        secret: String,
    },
    /// Disable an unreferenced minted token.
    Disable { id: String },
    /// Delete a token disabled past its grace period.
    Delete { id: String },
}

/// The sweep of one environment, folded from its listing token by token: only the tokens it
/// acts on and the lagging consumers are kept, never the listing.
#[derive(Default)]
struct Plan {
    actions: Vec<Action>,
    kept: usize,
    lagging: Vec<LaggingConsumer>,
    /// Tokens whose decision waits for their previous-token candidates to be proven.
    deferred: Vec<crate::dynatrace::ApiToken>,
}

/// What the sweep's decision for a token depends on besides the token (see [`Plan::add`]).
struct Judge<'a> {
    refs: &'a References,
    manager_ids: &'a BTreeSet<String>,
    tainted: bool,
    now: Timestamp,
    today: Date,
    config: &'a crate::config::Config,
}

impl Plan {
    /// Decides what happens to `t` as it is listed, or defers it when it is named as a previous
    /// token and the decision can depend on that (a lagging consumer to report, a `when-unused`
    /// revocation): only then is its candidate looked up by value ([`prove_previous`]), and
    /// the decision made with [`Plan::add`] once the listing is over.
    fn fold(&mut self, t: crate::dynatrace::ApiToken, judge: &Judge<'_>) {
        let id = t.id_str();
        let can_matter = judge.refs.previous.get(id).is_some_and(|candidates| {
            t.is_enabled()
                && !judge.manager_ids.contains(id)
                && !judge.refs.is_current(id)
                && marker::disabled_on(t.name_str()).is_none()
                && (may_lag(&t, candidates)
                    || judge.config.revoke_old == RevokeOld::WhenUnused
                        && !judge.tainted
                        && candidates.iter().any(|c| {
                            crate::policy::quiet_since_promotion(
                                judge.now,
                                c.previous.promoted_at,
                                t.last_used(),
                                judge.config.unused_hours,
                            )
                        }))
        });
        if can_matter {
            self.deferred.push(t);
        } else {
            self.add(&t, judge, None);
        }
    }

    /// Decides what happens to `t`, `previous` being its proven previous-token record (pure but
    /// for the logs).
    fn add(
        &mut self,
        t: &crate::dynatrace::ApiToken,
        judge: &Judge<'_>,
        previous: Option<&PreviousToken>,
    ) {
        let Judge {
            refs,
            manager_ids,
            tainted,
            now,
            today,
            config,
        } = judge;
        let id = t.id_str();
        let referenced = refs.ids.contains(id);
        let is_manager = manager_ids.contains(id);
        let mut v = verdict(
            t,
            referenced,
            is_manager,
            config.delete_disabled_after_days,
            *now,
            *today,
        );
        if v == Verdict::Keep
            && t.is_enabled()
            && !referenced
            && !is_manager
            && superseded_vault_mint(t.name_str(), &refs.vault_latest)
        {
            v = Verdict::Disable;
        }
        // Only tokens this sweep attributes to a secret it read are changed: another
        // deployment's tokens, a path outside the configured ones, a person's token that happens
        // to carry the disabled suffix, legacy Vault keys (any deployment's) are left alone.
        if matches!(v, Verdict::Disable | Verdict::Delete)
            && !marker::owner_key(t.name_str()).is_some_and(|key| refs.known_keys.contains(key))
        {
            tracing::info!(token_id = %id, "sweep: not attributable to a secret this sweep read; kept");
            v = Verdict::Keep;
        }
        if let Some((owner, secret)) = refs.overdue.get(id)
            && t.is_enabled()
            && !referenced
            && !is_manager
            && !tainted
        {
            self.actions.push(Action::Overdue {
                id: id.to_owned(),
                owner: owner.clone(),
                secret: secret.clone(),
            });
            return;
        }
        if let Some(previous) = previous
            && t.is_enabled()
            && !is_manager
            // A value copied between secrets may be another secret's current token.
            && !refs.is_current(id)
            && marker::disabled_on(t.name_str()).is_none()
        {
            if let Some(l) = lagging(t, previous) {
                tracing::warn!(
                    secret = %l.secret,
                    token_id = %id,
                    last_used = ?l.last_used_date,
                    address = ?l.last_used_ip_address,
                    "a consumer still uses the previous token after its successor's promotion: give it the current value before the old one is revoked"
                );
                self.lagging.push(l);
            }
            let quiet = crate::policy::quiet_since_promotion(
                *now,
                previous.promoted_at,
                t.last_used(),
                config.unused_hours,
            );
            if config.revoke_old == RevokeOld::WhenUnused && quiet && !tainted {
                self.actions.push(Action::Unused {
                    id: id.to_owned(),
                    key: previous.key.clone(),
                    secret: previous.secret.clone(),
                });
                return;
            }
        }
        if *tainted && v != Verdict::NotOurs {
            v = Verdict::Keep;
        }
        match v {
            Verdict::NotOurs => {}
            Verdict::Keep => self.kept += 1,
            Verdict::Disable => self.actions.push(Action::Disable { id: id.to_owned() }),
            Verdict::Delete => self.actions.push(Action::Delete { id: id.to_owned() }),
        }
    }
}

/// What carrying out one [`Action`] did, for the summary.
#[derive(Default)]
struct Done {
    disabled: Option<String>,
    deleted: Option<String>,
    error: Option<Problem>,
}

impl Done {
    fn revoked(id: String, action: OldTokenAction) -> Self {
        match action {
            OldTokenAction::Disable => Self {
                disabled: Some(id),
                ..Self::default()
            },
            OldTokenAction::Delete => Self {
                deleted: Some(id),
                ..Self::default()
            },
        }
    }
    fn failed(problem: Problem) -> Self {
        Self {
            error: Some(problem),
            ..Self::default()
        }
    }
}

/// Carries out `action` (or, in a dry run, says what it would do).
async fn act(
    cleanup: &Cleanup<'_>,
    mgr: &Manager,
    action: Action,
    dry_run: bool,
    today: Date,
    deadline: Deadline,
) -> Done {
    let dt = &cleanup.dynatrace;
    let events = cleanup.config.events;
    match action {
        Action::Overdue { id, .. } | Action::Disable { id } if dry_run => {
            Done::revoked(id, OldTokenAction::Disable)
        }
        Action::Unused { id, .. } if dry_run => Done::revoked(id, cleanup.config.old_token_action),
        Action::Delete { id } if dry_run => Done::revoked(id, OldTokenAction::Delete),
        Action::Overdue { id, owner, secret } => {
            match rotation::revoke(
                dt,
                mgr,
                &id,
                Some(&owner),
                OldTokenAction::Disable,
                today,
                deadline,
            )
            .await
            {
                Ok(Revoked::Disabled) => {
                    tracing::info!(token_id = %id, env = %mgr.env, "sweep: disabled a token two generations old that a rotation left enabled");
                    rotation::report_revocation(
                        dt,
                        mgr,
                        events,
                        &secret,
                        &id,
                        Revoked::Disabled,
                        deadline,
                    )
                    .await;
                    Done::revoked(id, OldTokenAction::Disable)
                }
                Ok(_) => Done::default(),
                Err(e) => Done::failed(Problem::new(id, e)),
            }
        }
        Action::Unused { id, key, secret } => {
            let action = cleanup.config.old_token_action;
            match rotation::revoke(dt, mgr, &id, Some(&key), action, today, deadline).await {
                Ok(outcome @ (Revoked::Disabled | Revoked::Deleted)) => {
                    tracing::info!(secret = %secret, token_id = %id, "sweep: revoked a previous token unused since its successor's promotion (when-unused)");
                    rotation::report_revocation(dt, mgr, events, &secret, &id, outcome, deadline)
                        .await;
                    Done::revoked(id, action)
                }
                Ok(_) => Done::default(),
                Err(e) => Done::failed(Problem::new(id, e)),
            }
        }
        Action::Disable { id } => {
            match rotation::revoke(dt, mgr, &id, None, OldTokenAction::Disable, today, deadline)
                .await
            {
                Ok(Revoked::Disabled) => {
                    tracing::info!(token_id = %id, env = %mgr.env, "sweep: disabled an unreferenced token");
                    Done::revoked(id, OldTokenAction::Disable)
                }
                Ok(other) => {
                    tracing::info!(token_id = %id, outcome = ?other, "sweep: nothing to disable");
                    Done::default()
                }
                Err(e) => Done::failed(Problem::new(id, e)),
            }
        }
        Action::Delete { id } => {
            // Read afresh: someone may have re-enabled it (a rollback) or `revoke-leaked` may
            // have renamed it as evidence since the listing.
            match dt.get(&mgr.env, &mgr.token, &id, deadline).await {
                Ok(Some(t))
                    if !t.is_enabled()
                        && marker::disabled_on(t.name_str()).is_some()
                        && marker::leaked_on(t.name_str()).is_none() => {}
                Ok(None) => return Done::default(),
                Ok(Some(_)) => {
                    tracing::info!(token_id = %id, "sweep: changed since the listing (re-enabled or kept as evidence); not deleted");
                    return Done::default();
                }
                Err(e) => {
                    return Done::failed(Problem::new(
                        id.clone(),
                        format!("reading token {id} before deleting it: {e}"),
                    ));
                }
            }
            delete_disabled(dt, mgr, id, deadline).await
        }
    }
}

/// Deletes a token the sweep disabled longer ago than the grace period.
async fn delete_disabled(
    dt: &crate::dynatrace::Dynatrace,
    mgr: &Manager,
    id: String,
    deadline: Deadline,
) -> Done {
    match dt.delete(&mgr.env, &mgr.token, &id, deadline).await {
        Ok(true) => {
            tracing::info!(token_id = %id, env = %mgr.env, "sweep: deleted a token disabled past its grace period");
            Done::revoked(id, OldTokenAction::Delete)
        }
        Ok(false) => {
            tracing::info!(token_id = %id, "sweep: already deleted");
            Done::default()
        }
        Err(e) => Done::failed(Problem::new(
            id.clone(),
            format!("deleting token {id}: {e}"),
        )),
    }
}

/// Sweeps one environment: one listing (page by page, folded into a [`Plan`]), then the
/// actions, as many at once as the environment's window of Dynatrace calls allows, reported
/// in listing order. A listing that fails part-way changes nothing.
async fn sweep_environment(
    cleanup: &Cleanup<'_>,
    mgr: &Manager,
    managers: &Managers,
    refs: &References,
    summary: &mut SweepSummary,
    deadline: Deadline,
) {
    let dt = &cleanup.dynatrace;
    let judge = Judge {
        refs,
        manager_ids: &managers.manager_ids,
        tainted: refs.is_tainted(&mgr.env),
        now: Timestamp::now(),
        today: crate::policy::today(),
        config: cleanup.config,
    };
    let mut plan = Plan::default();
    let listed = dt
        .list_each(
            &mgr.env,
            &mgr.token,
            None,
            "+modifiedDate,+lastUsedDate,+lastUsedIpAddress",
            deadline,
            |t| plan.fold(t, &judge),
        )
        .await;
    match listed {
        Ok(n) => {
            tracing::info!(env = %mgr.env, tokens = n, actions = plan.actions.len(), "sweep: environment listed")
        }
        Err(e) => {
            summary.errors.push(Problem::new(
                mgr.env.to_string(),
                format!("listing tokens: {e}"),
            ));
            return;
        }
    }
    let deferred = std::mem::take(&mut plan.deferred);
    let proven = prove_previous(cleanup, &managers.by_env, refs, &deferred, deadline).await;
    for t in &deferred {
        plan.add(t, &judge, proven.get(t.id_str()));
    }
    summary.kept += plan.kept;
    summary.lagging_consumers.append(&mut plan.lagging);
    let (dry_run, today) = (summary.dry_run, judge.today);
    let mut done = std::pin::pin!(
        futures::stream::iter(plan.actions)
            .map(|a| act(cleanup, mgr, a, dry_run, today, deadline))
            .buffered(dt.max_in_flight())
    );
    while let Some(d) = done.next().await {
        summary.disabled.extend(d.disabled);
        summary.deleted.extend(d.deleted);
        summary.errors.extend(d.error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynatrace::ApiToken;

    #[test]
    fn vault_mints_for_stored_versions_are_superseded() {
        let scope = marker::VaultScope::new("https://vault.example.com", None, "secret");
        let key = scope.secret_key("dynatrace/app1");
        let latest = std::collections::BTreeMap::from([(key.clone(), 3u64)]);
        let name = |v: u64| marker::Marker::vault(&scope, "dynatrace/app1", v).name_for("app1");
        assert!(superseded_vault_mint(&name(3), &latest));
        assert!(superseded_vault_mint(&name(2), &latest));
        assert!(
            !superseded_vault_mint(&name(4), &latest),
            "a rotation in progress mints latest + 1"
        );
        let other = marker::Marker::vault(&scope, "dynatrace/app2", 1).name_for("x");
        assert!(!superseded_vault_mint(&other, &latest));
        assert!(!superseded_vault_mint("plain name", &latest));
    }

    #[test]
    fn function_arn_matching() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:rotator";
        assert!(names_function(arn, "rotator"));
        assert!(names_function(&format!("{arn}:live"), "rotator"));
        assert!(!names_function(arn, "rot"));
        assert!(!names_function(
            "arn:aws:lambda:us-east-1:1:function:rotator-2",
            "rotator"
        ));
        assert!(!names_function("rotator", "rotator"));
    }

    #[test]
    fn ids_are_found_in_any_text() {
        let id = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX";
        let value = format!("{id}.{}", "A".repeat(64));
        let text = format!(
            "{{\"token\":\"{value}\",\"x\":\"{id}\",\"y\":\"xdt0c01.ABCDEFGHIJKLMNOPQRSTUVWX\"}}"
        );
        assert_eq!(scan_ids(&text), vec![id.to_owned(), id.to_owned()]);
        assert!(scan_ids("dt0c01.SHORT").is_empty());
    }

    #[test]
    fn grace_period_is_whole_days() {
        let d: Date = "2026-11-01".parse().unwrap();
        assert!(!grace_over(d, 7, "2026-11-08".parse().unwrap()));
        assert!(grace_over(d, 7, "2026-11-09".parse().unwrap()));
        assert!(!grace_over(d, 0, d));
        assert!(grace_over(d, 0, "2026-11-02".parse().unwrap()));
    }

    fn token(name: &str, enabled: bool, age_seconds: i64, now: Timestamp) -> ApiToken {
        ApiToken {
            id: Some("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX".into()),
            name: Some(name.into()),
            enabled: Some(enabled),
            creation_date: Some(crate::dynatrace::format_time(
                now - jiff::SignedDuration::from_secs(age_seconds),
            )),
            ..ApiToken::default()
        }
    }

    #[test]
    fn verdicts() {
        let now = Timestamp::now();
        let today: Date = "2026-11-20".parse().unwrap();
        let v = |t: &ApiToken, referenced, manager| verdict(t, referenced, manager, 7, now, today);
        let minted = token("a [dtr:s:r]", true, 7200, now);
        assert_eq!(v(&minted, false, false), Verdict::Disable);
        assert_eq!(v(&minted, true, false), Verdict::Keep);
        assert_eq!(v(&minted, false, true), Verdict::Keep);
        assert_eq!(
            v(&token("a [dtr:s:r]", true, 60, now), false, false),
            Verdict::Keep
        );
        assert_eq!(
            v(&token("plain", true, 7200, now), false, false),
            Verdict::NotOurs
        );
        assert_eq!(
            v(&token("plain", false, 7200, now), false, false),
            Verdict::NotOurs
        );
        let old = token("a [disabled 2026-11-01]", false, 7200, now);
        assert_eq!(v(&old, false, false), Verdict::Delete);
        assert_eq!(v(&old, true, false), Verdict::Keep);
        let recent = token("a [dtr:s:r] [disabled 2026-11-19]", false, 7200, now);
        assert_eq!(v(&recent, false, false), Verdict::Keep);
        assert_eq!(
            v(
                &token("a [disabled 2026-11-01]", true, 7200, now),
                false,
                false
            ),
            Verdict::Keep
        );
        assert_eq!(
            v(&token("a [dtr:s:r]", false, 7200, now), false, false),
            Verdict::Disable
        );
    }
}
