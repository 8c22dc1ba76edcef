//! Rotation policy as pure functions: which scopes a new token gets, when it expires, and
//! what happens to old tokens. No I/O here, so every rule is unit-tested directly.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

/// Scopes Dynatrace no longer grants on create/update (release 1.247 and 1.330). Copying
/// them would make the create call fail with `400`, so they are dropped with a warning.
pub const NO_LONGER_GRANTABLE: &[&str] = &[
    "DiagnosticExport",
    "MemoryDump",
    "Mobile",
    "ViewDashboard",
    "ViewReport",
    "WriteSyntheticData",
    "AppMonIntegration",
    "analyzers.read",
    "analyzers.write",
];

/// When the token that was current before a rotation stops working (`DT_REVOKE_OLD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOld {
    /// Keep the previous token valid until the next rotation (one interval of overlap).
    NextRotation,
    /// Revoke the previous token as soon as the new one is current.
    Immediately,
    /// Never revoke (someone else cleans up).
    Never,
}

/// What revoking means (`DT_OLD_TOKEN_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldTokenAction {
    /// Disable (and rename with the date); the sweep deletes it after the grace period.
    Disable,
    /// Delete at once (no rollback possible).
    Delete,
}

/// The scopes a rotated token gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePlan {
    /// What the new token is minted with.
    pub scopes: Vec<String>,
    /// Scopes of the old token that Dynatrace no longer grants (reported as a warning).
    pub dropped: Vec<String>,
}

/// Scopes on the current token that the policy forbids copying (`DT_FORBIDDEN_SCOPES`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token holds scopes the rotator will not copy: {}; remove them from the token or adjust DT_FORBIDDEN_SCOPES", .0.join(", "))]
pub struct ForbiddenScopes(pub Vec<String>);

/// Decides the new token's scopes from the current ones: refuses forbidden scopes, drops
/// those no longer grantable. The result is sorted and free of duplicates.
pub fn plan_scopes(current: &[String], forbidden: &[String]) -> Result<ScopePlan, ForbiddenScopes> {
    let held: BTreeSet<&str> = current.iter().map(String::as_str).collect();
    let bad: Vec<String> = forbidden
        .iter()
        .filter(|f| held.contains(f.as_str()))
        .cloned()
        .collect();
    if !bad.is_empty() {
        return Err(ForbiddenScopes(bad));
    }
    let (dropped, scopes): (Vec<&str>, Vec<&str>) = held
        .into_iter()
        .partition(|s| NO_LONGER_GRANTABLE.contains(s));
    Ok(ScopePlan {
        scopes: scopes.into_iter().map(str::to_owned).collect(),
        dropped: dropped.into_iter().map(str::to_owned).collect(),
    })
}

/// Whether two scope lists hold the same scopes, in any order.
pub fn same_scopes(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// The expiry of a new token: `now + lifetime_days` when set; otherwise the old token's
/// lifetime (creation→expiry) from now; none when the old token never expired.
pub fn expiry(
    lifetime_days: Option<u32>,
    old_creation: Option<Timestamp>,
    old_expiry: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    let lifetime = match (lifetime_days, old_creation, old_expiry) {
        (Some(days), _, _) => SignedDuration::from_hours(i64::from(days) * 24),
        (None, Some(created), Some(expires)) if expires > created => {
            expires.duration_since(created)
        }
        // An expiry without a known creation date: keep at least a day.
        (None, None, Some(_)) => SignedDuration::from_hours(24),
        _ => return None,
    };
    now.checked_add(lifetime.max(SignedDuration::from_hours(1)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn forbidden_scopes_refuse_and_removed_scopes_drop() {
        let forbidden = s(&["apiTokens.write", "TenantTokenManagement"]);
        let err = plan_scopes(&s(&["metrics.read", "apiTokens.write"]), &forbidden).unwrap_err();
        assert_eq!(err.0, s(&["apiTokens.write"]));
        assert!(err.to_string().contains("DT_FORBIDDEN_SCOPES"));
        let plan = plan_scopes(
            &s(&[
                "metrics.read",
                "ViewDashboard",
                "metrics.read",
                "logs.ingest",
            ]),
            &forbidden,
        )
        .unwrap();
        assert_eq!(plan.scopes, s(&["logs.ingest", "metrics.read"]));
        assert_eq!(plan.dropped, s(&["ViewDashboard"]));
        assert!(plan_scopes(&s(&["apiTokens.write"]), &[]).is_ok());
    }

    #[test]
    fn expiry_follows_policy() {
        let now: Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
        let c: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let e: Timestamp = "2026-01-31T00:00:00Z".parse().unwrap();
        assert_eq!(
            expiry(Some(7), Some(c), Some(e), now).unwrap().to_string(),
            "2026-12-05T00:00:00Z"
        );
        assert_eq!(
            expiry(None, Some(c), Some(e), now).unwrap().to_string(),
            "2026-12-28T00:00:00Z"
        );
        assert_eq!(expiry(None, Some(c), None, now), None);
        assert!(same_scopes(&s(&["a", "b"]), &s(&["b", "a"])));
        assert!(!same_scopes(&s(&["a"]), &s(&["a", "b"])));
    }
}
