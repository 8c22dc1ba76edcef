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
    /// Revoke the previous token once Dynatrace reports it unused for `DT_UNUSED_HOURS` since
    /// its successor was promoted (checked by the sweep), at the latest at the next rotation.
    WhenUnused,
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

/// What is known of a stored token's expiry when deciding whether it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Known: `None` = never expires.
    Known(Option<Timestamp>),
    /// Not recorded (`expiresAt` absent in a document the rotator may not have written, or
    /// unparseable): a lookup tells.
    Unknown,
}

/// Whether a Vault secret is due (docs/design.md §3): `Ok(())` when it is, `Err(reason)` to
/// skip it, or `Err(None)` when only its expiry can tell (look the token up, then ask again
/// with [`Expiry::Known`]). Due when `rotated_at` is absent, at least `interval_days` old, or
/// when the token expires within `margin_days`.
pub fn due(
    now: Timestamp,
    rotated_at: Option<Timestamp>,
    expiry: Expiry,
    interval_days: u32,
    margin_days: u32,
) -> Result<(), Option<String>> {
    let Some(at) = rotated_at else {
        return Ok(());
    };
    let age_days = (now.as_second() - at.as_second()) / 86_400;
    if age_days >= i64::from(interval_days) {
        return Ok(());
    }
    match expiry {
        Expiry::Unknown => Err(None),
        Expiry::Known(Some(exp))
            if exp.as_second() - now.as_second() <= i64::from(margin_days) * 86_400 =>
        {
            Ok(())
        }
        Expiry::Known(_) => Err(Some(format!("rotated {age_days} days ago"))),
    }
}

/// Whether a previous token promoted out at `promoted` and last used at `last_used` has been
/// quiet for `hours` (`DT_REVOKE_OLD=when-unused`): at least `hours` since the later of its
/// successor's promotion and its own last use.
pub fn quiet_since_promotion(
    now: Timestamp,
    promoted: Timestamp,
    last_used: Option<Timestamp>,
    hours: u32,
) -> bool {
    let since = last_used.map_or(promoted, |u| u.max(promoted));
    now.duration_since(since) >= jiff::SignedDuration::from_hours(i64::from(hours))
}

/// Whether a previous token was used after its successor's promotion: a consumer still holds
/// the old value (a lagging consumer).
pub fn used_after_promotion(promoted: Timestamp, last_used: Option<Timestamp>) -> bool {
    last_used.is_some_and(|u| u > promoted)
}

/// Today's date in UTC: the date written into the names of tokens the rotator disables.
pub fn today() -> jiff::civil::Date {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_unused_waits_for_quiet_hours_after_promotion_and_last_use() {
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let hours_ago = |h: i64| now - jiff::SignedDuration::from_hours(h);
        // Promoted 30 h ago, never used since: quiet for 24 h.
        assert!(quiet_since_promotion(now, hours_ago(30), None, 24));
        assert!(quiet_since_promotion(
            now,
            hours_ago(30),
            Some(hours_ago(40)),
            24
        ));
        // Promoted 10 h ago: not yet, whatever the use.
        assert!(!quiet_since_promotion(now, hours_ago(10), None, 24));
        // Used 2 h ago, after the promotion: a consumer still holds it.
        assert!(!quiet_since_promotion(
            now,
            hours_ago(30),
            Some(hours_ago(2)),
            24
        ));
        assert!(used_after_promotion(hours_ago(30), Some(hours_ago(2))));
        assert!(!used_after_promotion(hours_ago(30), Some(hours_ago(40))));
        assert!(!used_after_promotion(hours_ago(30), None));
        // Quiet again for 24 h after its last (lagging) use.
        assert!(quiet_since_promotion(
            now,
            hours_ago(60),
            Some(hours_ago(25)),
            24
        ));
    }

    #[test]
    fn due_looks_at_age_and_expiry() {
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let days = |d: i64| now + jiff::SignedDuration::from_hours(24 * d);
        let never = Expiry::Known(None);
        assert_eq!(due(now, None, never, 30, 7), Ok(()));
        assert_eq!(due(now, Some(days(-30)), never, 30, 7), Ok(()));
        assert_eq!(
            due(now, Some(days(-3)), never, 30, 7),
            Err(Some("rotated 3 days ago".into()))
        );
        // a 7-day token on a 30-day interval is due before it expires, not 23 days after
        assert_eq!(
            due(now, Some(days(-1)), Expiry::Known(Some(days(6))), 30, 7),
            Ok(())
        );
        assert_eq!(
            due(now, Some(days(-1)), Expiry::Known(Some(days(-2))), 30, 7),
            Ok(())
        );
        assert!(due(now, Some(days(-1)), Expiry::Known(Some(days(8))), 30, 7).is_err());
        assert_eq!(due(now, Some(days(-1)), Expiry::Unknown, 30, 7), Err(None));
        assert_eq!(due(now, Some(days(-40)), Expiry::Unknown, 30, 7), Ok(()));
    }

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
