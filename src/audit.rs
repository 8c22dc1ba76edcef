//! The `audit` invocation (docs/design.md §6): a token-hygiene report of each configured manager's
//! environment (Secrets Manager managers and the Vault manager, one entry per environment
//! URL). It lists the tokens with `+expirationDate,+lastUsedDate,+scopes,+personalAccessToken`
//! and reports, by id and name only (never a value), the **enabled** tokens that are
//!
//! - `expiring`: expiring within `AUDIT_EXPIRING_DAYS` (already expired ones included, they
//!   are the most urgent), with their `expirationDate`;
//! - `neverExpiring`: without an expiry;
//! - `unused`: not used for `AUDIT_UNUSED_DAYS` (`lastUsedDate` absent or older) and created
//!   before that (a new token has had no chance to be used), with `lastUsedDate` when known;
//! - `tokenManagement`: holding a scope that manages tokens (`apiTokens.write`,
//!   `TenantTokenManagement`, `activeGateTokenManagement.*`, `agentTokenManagement.read`,
//!   `tenantTokenRotation.write`), with those scopes. The manager token itself is listed
//!   here by design: it is the most privileged token of the environment;
//! - `personalAccessTokens`: personal access tokens (they stop working when their owner
//!   leaves, and no secret should depend on one);
//! - `danglingSecrets`: secrets and Vault paths whose current token Dynatrace does not know
//!   (deleted by hand, or a value from another tenant): every consumer of them fails;
//! - `expiresBeforeNextRotation`: secrets and paths whose current token expires before the
//!   secret is rotated next (Secrets Manager's `NextRotationDate`; Vault: `rotatedAt` +
//!   `ROTATION_INTERVAL_DAYS`), with both dates;
//! - `laggingConsumers`: previous tokens Dynatrace saw in use after their successor's
//!   promotion, with `lastUsedDate` and `lastUsedIpAddress`: a consumer still holds the old
//!   value;
//! - `orphanedMinted`: minted under this deployment's marker for a secret the audit cannot
//!   read (deleted, or outside the configured ones) and referenced by no secret it read; the
//!   sweep never touches them (it cannot tell whose they are), so a person decides.
//!
//! Disabled tokens are revoked already and only counted (`disabled`). The audit changes
//! nothing. An environment whose tokens cannot be listed gets an `error` and empty lists;
//! the invocation fails only when no manager can be read.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use crate::deadline::Deadline;
use crate::dynatrace::ApiToken;
use crate::sweep::{self, Cleanup, Problem, SweepError};

/// Fields asked for in the listing.
pub const FIELDS: &str =
    "+expirationDate,+lastUsedDate,+lastUsedIpAddress,+scopes,+personalAccessToken";

/// Whether `scope` manages tokens (docs/dynatrace-api.md).
pub fn is_token_management(scope: &str) -> bool {
    matches!(
        scope,
        "apiTokens.write"
            | "TenantTokenManagement"
            | "agentTokenManagement.read"
            | "tenantTokenRotation.write"
    ) || scope.starts_with("activeGateTokenManagement.")
}

/// One token in a list of the report (metadata only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Token id.
    pub id: String,
    /// Token name.
    pub name: String,
    /// Expiry (`expiring`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    /// Last use (`unused`; absent = never used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_date: Option<String>,
    /// Token-management scopes held (`tokenManagement`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Personal access token.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub personal_access_token: bool,
}

impl Entry {
    fn of(t: &ApiToken) -> Self {
        Self {
            id: t.id_str().to_owned(),
            name: t.name_str().to_owned(),
            expiration_date: None,
            last_used_date: None,
            scopes: None,
            personal_access_token: t.personal_access_token.unwrap_or(false),
        }
    }
}

/// A secret (or `vault:<path>`) and its current token, in `danglingSecrets` and
/// `expiresBeforeNextRotation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretEntry {
    /// The secret's name or ARN, or `vault:<path>`.
    pub secret: String,
    /// Its current token's id.
    pub token_id: String,
    /// The token's expiry (`expiresBeforeNextRotation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    /// When the secret is rotated next (`expiresBeforeNextRotation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<String>,
}

/// The report of one environment.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentReport {
    /// The environment.
    pub environment_url: String,
    /// Tokens listed.
    pub tokens: usize,
    /// Disabled tokens among them (not in the lists).
    pub disabled: usize,
    /// Expiring within `AUDIT_EXPIRING_DAYS`.
    pub expiring: Vec<Entry>,
    /// Never expiring.
    pub never_expiring: Vec<Entry>,
    /// Unused for `AUDIT_UNUSED_DAYS`.
    pub unused: Vec<Entry>,
    /// Holding token-management scopes.
    pub token_management: Vec<Entry>,
    /// Personal access tokens.
    pub personal_access_tokens: Vec<Entry>,
    /// Secrets whose current token this environment does not know.
    pub dangling_secrets: Vec<SecretEntry>,
    /// Secrets whose current token expires before their next rotation.
    pub expires_before_next_rotation: Vec<SecretEntry>,
    /// Previous tokens still used after their successor's promotion.
    pub lagging_consumers: Vec<sweep::LaggingConsumer>,
    /// Minted under this deployment's marker, for no secret it read, referenced by none.
    pub orphaned_minted: Vec<Entry>,
    /// Why the environment could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The categories cut to [`MAX_LISTED`] entries, with how many they held: the answer
    /// stays within Lambda's 6 MB response limit on any tenant (the log line has the counts).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub truncated: std::collections::BTreeMap<&'static str, usize>,
}

/// Most entries one category of an environment lists in the answer.
pub const MAX_LISTED: usize = 1_000;

impl EnvironmentReport {
    /// Cuts each token category to [`MAX_LISTED`] entries, recording the full counts.
    fn cap(&mut self) {
        let mut cut = |name: &'static str, list: &mut Vec<Entry>| {
            if list.len() > MAX_LISTED {
                self.truncated.insert(name, list.len());
                list.truncate(MAX_LISTED);
            }
        };
        cut("expiring", &mut self.expiring);
        cut("neverExpiring", &mut self.never_expiring);
        cut("unused", &mut self.unused);
        cut("tokenManagement", &mut self.token_management);
        cut("personalAccessTokens", &mut self.personal_access_tokens);
        cut("orphanedMinted", &mut self.orphaned_minted);
    }
}

/// The audit response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Always `audit`.
    pub action: &'static str,
    /// One entry per manager environment.
    pub environments: Vec<EnvironmentReport>,
    /// Managers that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
}

/// Classifies listed tokens (pure).
pub fn classify(
    env: &str,
    tokens: &[ApiToken],
    expiring_days: u32,
    unused_days: u32,
    now: Timestamp,
) -> EnvironmentReport {
    let mut c = Classifier::new(env, expiring_days, unused_days, now);
    for t in tokens {
        c.add(t);
    }
    c.finish()
}

/// [`classify`] one token at a time, as the listing is read: the report holds only the
/// tokens it lists, never the environment's listing.
pub struct Classifier {
    report: EnvironmentReport,
    expiring_limit: i64,
    unused_limit: i64,
}

impl Classifier {
    /// An empty report of `env`.
    pub fn new(env: &str, expiring_days: u32, unused_days: u32, now: Timestamp) -> Self {
        let day = 86_400_i64;
        Self {
            report: EnvironmentReport {
                environment_url: env.to_owned(),
                ..EnvironmentReport::default()
            },
            expiring_limit: now.as_second() + i64::from(expiring_days) * day,
            unused_limit: now.as_second() - i64::from(unused_days) * day,
        }
    }

    /// Counts `t` and lists it where it belongs.
    pub fn add(&mut self, t: &ApiToken) {
        let r = &mut self.report;
        r.tokens += 1;
        if !t.is_enabled() {
            r.disabled += 1;
            return;
        }
        match t.expires() {
            Some(exp) if exp.as_second() <= self.expiring_limit => r.expiring.push(Entry {
                expiration_date: t.expiration_date.clone(),
                ..Entry::of(t)
            }),
            Some(_) => {}
            None if t.expiration_date.is_none() => r.never_expiring.push(Entry::of(t)),
            None => {}
        }
        let old = t
            .created()
            .is_some_and(|c| c.as_second() < self.unused_limit);
        let idle = t
            .last_used()
            .is_none_or(|u| u.as_second() < self.unused_limit);
        if old && idle {
            r.unused.push(Entry {
                last_used_date: t.last_used_date.clone(),
                ..Entry::of(t)
            });
        }
        let mgmt: Vec<String> = t
            .scopes
            .iter()
            .flatten()
            .filter(|s| is_token_management(s))
            .cloned()
            .collect();
        if !mgmt.is_empty() {
            r.token_management.push(Entry {
                scopes: Some(mgmt),
                ..Entry::of(t)
            });
        }
        if t.personal_access_token == Some(true) {
            r.personal_access_tokens.push(Entry::of(t));
        }
    }

    /// The report, its lists sorted by name and id.
    pub fn finish(self) -> EnvironmentReport {
        let mut r = self.report;
        for list in [
            &mut r.expiring,
            &mut r.never_expiring,
            &mut r.unused,
            &mut r.token_management,
            &mut r.personal_access_tokens,
        ] {
            list.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        }
        r
    }
}

/// The secrets of `stored` whose current token one environment's listing does not hold
/// (`dangling`), and those whose token in it expires before the secret's next rotation
/// (pure). `listed` holds the listed tokens among the stored ones, by id (see
/// [`StoredTokens`]). `only_environment`: this is the only environment, so a document without
/// `environmentUrl` belongs to it; otherwise such a document is judged by the environment
/// that knows its token, and never called dangling.
pub(crate) fn secret_findings(
    env: &crate::environment::EnvironmentUrl,
    listed: &BTreeMap<String, ApiToken>,
    stored: &[sweep::StoredToken],
    only_environment: bool,
) -> (Vec<SecretEntry>, Vec<SecretEntry>) {
    let mut dangling = Vec::new();
    let mut expiring = Vec::new();
    for s in stored {
        let listed = listed.get(&s.token_id);
        let here = match &s.environment {
            Some(e) => e == env,
            None => only_environment || listed.is_some(),
        };
        if !here {
            continue;
        }
        let entry = || SecretEntry {
            secret: s.secret.clone(),
            token_id: s.token_id.clone(),
            expiration_date: None,
            next_rotation_date: None,
        };
        match listed {
            None => dangling.push(entry()),
            Some(t) => {
                if let (Some(exp), Some(next)) = (t.expires(), s.next_rotation)
                    && exp < next
                {
                    expiring.push(SecretEntry {
                        expiration_date: t.expiration_date.clone(),
                        next_rotation_date: Some(crate::dynatrace::format_time(next)),
                        ..entry()
                    });
                }
            }
        }
    }
    dangling.sort_by(|a, b| a.secret.cmp(&b.secret));
    expiring.sort_by(|a, b| a.secret.cmp(&b.secret));
    (dangling, expiring)
}

/// The stored current tokens an environment's listing holds, gathered as it is read: their
/// expiry is all [`secret_findings`] needs, so nothing else of the listing is kept.
pub(crate) struct StoredTokens<'a> {
    wanted: BTreeSet<&'a str>,
    /// Listed stored tokens by id (id and `expirationDate` only).
    pub listed: BTreeMap<String, ApiToken>,
}

impl<'a> StoredTokens<'a> {
    /// Looking for the tokens of `stored`.
    pub fn new(stored: &'a [sweep::StoredToken]) -> Self {
        Self {
            wanted: stored.iter().map(|s| s.token_id.as_str()).collect(),
            listed: BTreeMap::new(),
        }
    }

    /// Notes `t` when a stored secret holds it.
    pub fn add(&mut self, t: &ApiToken) {
        if self.wanted.contains(t.id_str()) {
            self.listed.insert(
                t.id_str().to_owned(),
                ApiToken {
                    id: t.id.clone(),
                    expiration_date: t.expiration_date.clone(),
                    ..ApiToken::default()
                },
            );
        }
    }
}

/// Audits one environment: one listing, page by page, each token classified and checked
/// against the stored secrets as it comes.
async fn audit_environment(
    cleanup: &Cleanup<'_>,
    mgr: &crate::rotation::Manager,
    managers: &[crate::rotation::Manager],
    refs: &sweep::References,
    only_environment: bool,
    now: Timestamp,
    deadline: Deadline,
) -> EnvironmentReport {
    let env = mgr.env.to_string();
    let mut classifier = Classifier::new(
        &env,
        cleanup.config.audit_expiring_days,
        cleanup.config.audit_unused_days,
        now,
    );
    let tainted = refs.is_tainted(&mgr.env);
    let mut orphaned = Vec::new();
    // Enabled tokens used after the promotion of a successor naming them: lagging consumers
    // once their previous-token candidate is proven by value.
    let mut may_lag = Vec::new();
    let mut stored = StoredTokens::new(&refs.current);
    let listed = cleanup
        .dynatrace
        .list_each(&mgr.env, &mgr.token, None, FIELDS, deadline, |t| {
            classifier.add(&t);
            if !tainted && sweep::is_orphaned_minted(&t, refs) {
                orphaned.push(Entry::of(&t));
            }
            stored.add(&t);
            if t.is_enabled()
                && refs
                    .previous
                    .get(t.id_str())
                    .is_some_and(|c| sweep::may_lag(&t, c))
            {
                may_lag.push(t);
            }
        })
        .await;
    if let Err(e) = listed {
        return EnvironmentReport {
            environment_url: env,
            error: Some(crate::secret::redact_text(
                &format!("listing tokens: {e}"),
                1000,
            )),
            ..EnvironmentReport::default()
        };
    }
    let proven = sweep::prove_previous(cleanup, managers, refs, &may_lag, deadline).await;
    let mut report = classifier.finish();
    report.orphaned_minted = orphaned;
    report.lagging_consumers = may_lag
        .iter()
        .filter_map(|t| sweep::lagging(t, proven.get(t.id_str())?))
        .collect();
    for l in &report.lagging_consumers {
        tracing::warn!(secret = %l.secret, token_id = %l.token_id, last_used = ?l.last_used_date, address = ?l.last_used_ip_address, "a consumer still uses the previous token after its successor's promotion");
    }
    (report.dangling_secrets, report.expires_before_next_rotation) =
        secret_findings(&mgr.env, &stored.listed, &refs.current, only_environment);
    report
}

/// Runs the audit.
pub async fn run(cleanup: &Cleanup<'_>, deadline: Deadline) -> Result<AuditReport, SweepError> {
    let managers = sweep::load_managers(cleanup, deadline).await;
    if managers.by_env.is_empty() {
        return Err(sweep::no_managers(cleanup, &managers));
    }
    let now = Timestamp::now();
    let refs = sweep::collect_references(cleanup, &managers, deadline).await;
    let mut environments = Vec::new();
    let only_environment = managers.by_env.len() == 1;
    for mgr in &managers.by_env {
        let mut report = audit_environment(
            cleanup,
            mgr,
            &managers.by_env,
            &refs,
            only_environment,
            now,
            deadline,
        )
        .await;
        tracing::info!(
            env = %report.environment_url,
            tokens = report.tokens,
            expiring = report.expiring.len(),
            never_expiring = report.never_expiring.len(),
            unused = report.unused.len(),
            token_management = report.token_management.len(),
            orphaned_minted = report.orphaned_minted.len(),
            personal_access_tokens = report.personal_access_tokens.len(),
            dangling_secrets = report.dangling_secrets.len(),
            expires_before_next_rotation = report.expires_before_next_rotation.len(),
            "audit of environment"
        );
        report.cap();
        environments.push(report);
    }
    Ok(AuditReport {
        action: "audit",
        environments,
        errors: refs.errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_past_the_limit_is_cut_and_its_count_kept() {
        let token = |i: usize| ApiToken {
            id: Some(format!("dt0c01.{i:024}")),
            name: Some(format!("t{i}")),
            ..ApiToken::default()
        };
        let mut r = EnvironmentReport {
            never_expiring: (0..MAX_LISTED + 5).map(|i| Entry::of(&token(i))).collect(),
            unused: (0..3).map(|i| Entry::of(&token(i))).collect(),
            ..EnvironmentReport::default()
        };
        r.cap();
        assert_eq!(r.never_expiring.len(), MAX_LISTED);
        assert_eq!(r.unused.len(), 3);
        assert_eq!(
            r.truncated.into_iter().collect::<Vec<_>>(),
            vec![("neverExpiring", MAX_LISTED + 5)]
        );
    }
    use crate::dynatrace::format_time;

    #[test]
    fn management_scopes() {
        for s in [
            "apiTokens.write",
            "TenantTokenManagement",
            "activeGateTokenManagement.create",
            "agentTokenManagement.read",
            "tenantTokenRotation.write",
        ] {
            assert!(is_token_management(s), "{s}");
        }
        assert!(!is_token_management("apiTokens.read"));
        assert!(!is_token_management("metrics.read"));
    }

    #[test]
    fn secrets_are_judged_by_the_environment_that_holds_them() {
        use crate::environment::EnvironmentUrl;
        let here = EnvironmentUrl::parse("https://a.example").unwrap();
        let there = EnvironmentUrl::parse("https://b.example").unwrap();
        let now = Timestamp::now();
        let token = |id: &str, expires_in_days: i64| ApiToken {
            id: Some(id.into()),
            expiration_date: Some(format_time(
                now + jiff::SignedDuration::from_hours(24 * expires_in_days),
            )),
            ..ApiToken::default()
        };
        let stored = |secret: &str, id: &str, env: Option<&EnvironmentUrl>, next_in_days: i64| {
            sweep::StoredToken {
                secret: secret.into(),
                environment: env.cloned(),
                token_id: id.into(),
                next_rotation: Some(now + jiff::SignedDuration::from_hours(24 * next_in_days)),
            }
        };
        let tokens: BTreeMap<String, ApiToken> = [token("t-short", 5), token("t-long", 90)]
            .into_iter()
            .map(|t| (t.id_str().to_owned(), t))
            .collect();
        let all = [
            stored("short", "t-short", Some(&here), 30),
            stored("long", "t-long", None, 30),
            stored("gone", "t-gone", Some(&here), 30),
            stored("elsewhere", "t-x", Some(&there), 30),
            stored("unplaced", "t-y", None, 30),
        ];
        let (dangling, expiring) = secret_findings(&here, &tokens, &all, false);
        let names = |l: &[SecretEntry]| l.iter().map(|e| e.secret.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&dangling),
            ["gone"],
            "another environment's secret is not ours to judge"
        );
        assert_eq!(names(&expiring), ["short"]);
        // As the only environment, a document without environmentUrl is ours.
        let (dangling, _) = secret_findings(&here, &tokens, &all, true);
        assert_eq!(names(&dangling), ["gone", "unplaced"]);
    }

    #[test]
    fn classification() {
        let now = Timestamp::now();
        let days = |d: i64| format_time(now + jiff::SignedDuration::from_hours(24 * d));
        let t = |id: &str, exp: Option<i64>, created: i64, used: Option<i64>, scopes: &[&str]| {
            ApiToken {
                id: Some(id.into()),
                name: Some(format!("{id} name")),
                enabled: Some(true),
                creation_date: Some(days(created)),
                expiration_date: exp.map(days),
                last_used_date: used.map(days),
                scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
                ..ApiToken::default()
            }
        };
        let tokens = vec![
            t("a", Some(3), -1, Some(0), &["metrics.read"]),
            t("b", None, -200, None, &["apiTokens.write"]),
            t("c", Some(100), -200, Some(-100), &[]),
            t("d", Some(-1), -5, None, &[]),
            ApiToken {
                personal_access_token: Some(true),
                ..t("p", Some(100), -1, Some(0), &[])
            },
            ApiToken {
                enabled: Some(false),
                ..t("e", None, -200, None, &["apiTokens.write"])
            },
        ];
        let r = classify("https://x", &tokens, 14, 90, now);
        let ids = |l: &[Entry]| l.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&r.expiring), ["a", "d"]);
        assert_eq!(ids(&r.never_expiring), ["b"]);
        assert_eq!(ids(&r.unused), ["b", "c"]);
        assert_eq!(ids(&r.token_management), ["b"]);
        assert_eq!(ids(&r.personal_access_tokens), ["p"]);
        assert_eq!((r.tokens, r.disabled), (6, 1));
    }
}
