//! The rotation marker written into the name of every token the rotator mints, and the
//! suffixes it adds when it revokes one.
//!
//! Dynatrace token names are not unique and a token's value is shown only once, so a
//! retried step cannot recover a token an interrupted attempt created: it can only *find*
//! it, by a deterministic marker in its name, and delete it. The marker is
//! `[dtr:<secret key>:<rotation>]`:
//!
//! - the **secret key** names the deployment *and* the secret (docs/design.md §3, trust
//!   rules): 16 hex characters, the first 6 a hash of the deployment (Secrets Manager: the
//!   AWS partition, Region and account of the secret's ARN; Vault: the normalised
//!   `VAULT_ADDR` and `VAULT_NAMESPACE`), the other 10 a hash of the secret within it (the
//!   ARN; the mount and path). Two deployments on one tenant therefore never share a key;
//! - the **rotation** is a hash of the Secrets Manager version id, `v<N>` for the Vault
//!   version the token will be written as, or `revoked` on a token the rotator did not mint
//!   but proved to belong to the secret and disabled (so the sweep can later attribute it).
//!
//! Keys of the earlier, 10-character format ("legacy") hashed the secret only. A legacy
//! Secrets Manager key still names one secret (its ARN carries account and Region), so it is
//! still attributed to it; a legacy Vault key (mount and path only) may belong to any
//! deployment and is attributed to none. Example:
//! `app1 metrics [dtr:1a2b3c5f0c1a2b3c:9d8e7f6a5b4c]`. Disabled tokens also get
//! ` [disabled 2026-11-28]`, the date the sweep's grace period starts.

use jiff::civil::Date;
use sha2::{Digest, Sha256};

use crate::environment::EnvironmentUrl;

const TAG: &str = " [dtr:";
const DISABLED: &str = " [disabled ";
const LEAKED: &str = " [leaked ";
/// Rotation part of the marker the rotator adds to a token it did not mint when it revokes it.
pub const REVOKED: &str = "revoked";
/// Longest base name kept from the old token (Dynatrace documents no maximum).
const MAX_BASE: usize = 120;
/// Length of the deployment part of a secret key.
const DEPLOYMENT_LEN: usize = 6;
/// Length of the secret part of a secret key (and of a whole legacy key).
const SECRET_LEN: usize = 10;

/// A deterministic rotation marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    secret: String,
    rotation: String,
}

fn short_hash(input: &str, len: usize) -> String {
    let digest = Sha256::digest(input.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..len]
        .to_owned()
}

/// `hash(deployment)` + `hash(secret)`: the secret key of a secret of a deployment.
fn scoped_key(deployment: &str, secret: &str) -> String {
    format!(
        "{}{}",
        short_hash(deployment, DEPLOYMENT_LEN),
        short_hash(secret, SECRET_LEN)
    )
}

/// The deployment a Secrets Manager secret belongs to: `arn:<partition>:secretsmanager:<region>:<account>`.
fn secrets_manager_deployment(secret_arn: &str) -> String {
    let parts: Vec<&str> = secret_arn.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" {
        format!("sm:{}", parts[..5].join(":"))
    } else {
        // A bare name (never seen from DescribeSecret): the name is all there is.
        format!("sm:{secret_arn}")
    }
}

/// Where Vault secrets of one deployment live: the normalised server address, the namespace
/// and the KV v2 mount. Markers of Vault paths are built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultScope {
    deployment: String,
    mount: String,
}

impl VaultScope {
    /// The scope of `addr` (normalised: scheme, lower-case host, port when not the default,
    /// path without trailing `/`), `namespace` (empty = root) and `mount`.
    pub fn new(addr: &str, namespace: Option<&str>, mount: &str) -> Self {
        let addr = EnvironmentUrl::parse(addr)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| addr.trim().trim_end_matches('/').to_ascii_lowercase());
        let namespace = namespace.map(|n| n.trim().trim_matches('/')).unwrap_or("");
        Self {
            deployment: format!("vault:{addr}|{namespace}"),
            mount: mount.trim_matches('/').to_owned(),
        }
    }

    /// The KV v2 mount.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The secret key of the KV path `path` in this scope.
    pub fn secret_key(&self, path: &str) -> String {
        scoped_key(
            &self.deployment,
            &format!("{}|{}/{}", self.deployment, self.mount, path),
        )
    }

    /// The deployment part every key of this scope starts with.
    pub fn deployment_key(&self) -> String {
        short_hash(&self.deployment, DEPLOYMENT_LEN)
    }
}

impl Marker {
    /// Marker of the Secrets Manager rotation `version_id` of the secret `secret_arn`.
    pub fn secrets_manager(secret_arn: &str, version_id: &str) -> Self {
        Self {
            secret: secret_key_secrets_manager(secret_arn),
            rotation: short_hash(&format!("sm-version:{version_id}"), 12),
        }
    }

    /// Marker of the rotation of the Vault path `path` of `scope` that will write version
    /// `next_version`.
    pub fn vault(scope: &VaultScope, path: &str, next_version: u64) -> Self {
        Self {
            secret: scope.secret_key(path),
            rotation: format!("v{next_version}"),
        }
    }

    /// The secret part of this marker.
    pub fn secret_key(&self) -> &str {
        &self.secret
    }

    /// The marker as it appears in a name: `[dtr:<secret>:<rotation>]`.
    pub fn tag(&self) -> String {
        format!("[dtr:{}:{}]", self.secret, self.rotation)
    }

    /// The name of a token minted by this rotation, from the old token's name.
    pub fn name_for(&self, old_name: &str) -> String {
        let base: String = base_name(old_name).chars().take(MAX_BASE).collect();
        let base = if base.trim().is_empty() {
            "rotated token".to_owned()
        } else {
            base
        };
        format!("{base} {}", self.tag())
    }
}

/// The secret key of a Secrets Manager secret (by ARN; account and Region included).
pub fn secret_key_secrets_manager(secret_arn: &str) -> String {
    scoped_key(
        &secrets_manager_deployment(secret_arn),
        &format!("sm:{secret_arn}"),
    )
}

/// The keys under which tokens of the Secrets Manager secret `secret_arn` may have been
/// minted: the current format and the legacy one (a hash of the ARN alone, which names one
/// secret of one account and Region, so it is still attributable).
pub fn secret_keys_secrets_manager(secret_arn: &str) -> [String; 2] {
    [
        secret_key_secrets_manager(secret_arn),
        short_hash(&format!("sm:{secret_arn}"), SECRET_LEN),
    ]
}

/// The deployment part of the keys of the Secrets Manager secrets of `secret_arn`'s account
/// and Region.
pub fn deployment_key_secrets_manager(secret_arn: &str) -> String {
    short_hash(&secrets_manager_deployment(secret_arn), DEPLOYMENT_LEN)
}

/// The deployment part of `key`, `None` for a legacy key.
pub fn deployment_of(key: &str) -> Option<&str> {
    (key.len() == DEPLOYMENT_LEN + SECRET_LEN).then(|| &key[..DEPLOYMENT_LEN])
}

/// The name without the rotator's suffixes.
pub fn base_name(name: &str) -> &str {
    let end = [name.find(TAG), name.find(DISABLED), name.find(LEAKED)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(name.len());
    name[..end].trim_end()
}

/// `(secret, rotation)` parts of the marker in `name`, if the rotator minted or revoked it.
pub fn parse(name: &str) -> Option<(&str, &str)> {
    let start = name.find(TAG)? + TAG.len();
    let rest = &name[start..];
    let inner = &rest[..rest.find(']')?];
    let (secret, rotation) = inner.split_once(':')?;
    (!secret.is_empty() && !rotation.is_empty()).then_some((secret, rotation))
}

/// The secret key in `name`'s marker: the secret the token was minted for, or proven to
/// belong to when the rotator revoked it.
pub fn owner_key(name: &str) -> Option<&str> {
    parse(name).map(|(secret, _)| secret)
}

/// Whether the rotator minted the token called `name` (a `revoked` marker does not count:
/// that token was someone else's original).
pub fn is_minted(name: &str) -> bool {
    parse(name).is_some_and(|(_, rotation)| rotation != REVOKED)
}

/// The Vault version `N` of a rotation part `v<N>`.
pub fn vault_version(rotation: &str) -> Option<u64> {
    rotation.strip_prefix('v')?.parse().ok()
}

/// The name a token gets when the rotator disables it on `date`. A token without a marker
/// gets the `revoked` marker of `owner` (the secret key it was proven to belong to), so the
/// sweep can attribute it later. A name already carrying the disabled suffix is kept.
pub fn disabled_name(name: &str, date: Date, owner: Option<&str>) -> String {
    if disabled_on(name).is_some() {
        return name.to_owned();
    }
    match owner {
        Some(key) if parse(name).is_none() => {
            format!("{name} [dtr:{key}:{REVOKED}]{DISABLED}{date}]")
        }
        _ => format!("{name}{DISABLED}{date}]"),
    }
}

/// The date the rotator disabled the token called `name`, if it did.
pub fn disabled_on(name: &str) -> Option<Date> {
    date_after(name, DISABLED)
}

/// The name a token gets when `revoke-leaked` disables it on `date`: ` [leaked YYYY-MM-DD]`
/// appended (once). A leaked token is evidence: no rotation, sweep or policy ever renames it
/// again, deletes it or counts a grace period on it.
pub fn leaked_name(name: &str, date: Date) -> String {
    if leaked_on(name).is_some() {
        return name.to_owned();
    }
    format!("{name}{LEAKED}{date}]")
}

/// The date `revoke-leaked` disabled the token called `name`, if it did.
pub fn leaked_on(name: &str) -> Option<Date> {
    date_after(name, LEAKED)
}

fn date_after(name: &str, suffix: &str) -> Option<Date> {
    let start = name.find(suffix)? + suffix.len();
    let rest = &name[start..];
    rest[..rest.find(']')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dynatrace/app1-AbCdEf";

    #[test]
    fn a_leaked_name_is_marked_once_and_never_reads_as_disabled() {
        let day: Date = "2026-12-02".parse().unwrap();
        let name = leaked_name("app1 [dtr:1a2b3c5f0c1a2b3c:v3]", day);
        assert_eq!(name, "app1 [dtr:1a2b3c5f0c1a2b3c:v3] [leaked 2026-12-02]");
        assert_eq!(leaked_on(&name), Some(day));
        assert_eq!(
            disabled_on(&name),
            None,
            "the sweep's grace period never starts"
        );
        assert_eq!(leaked_name(&name, "2027-01-01".parse().unwrap()), name);
        assert_eq!(base_name("app1 [leaked 2026-12-02]"), "app1");
        assert_eq!(leaked_on("app1"), None);
    }

    #[test]
    fn marker_round_trips_and_is_deterministic() {
        let a = Marker::secrets_manager(ARN, "v-1");
        assert_eq!(a, Marker::secrets_manager(ARN, "v-1"));
        assert_ne!(a, Marker::secrets_manager(ARN, "v-2"));
        let name = a.name_for("app1 metrics");
        assert!(name.starts_with("app1 metrics [dtr:"));
        let (s, r) = parse(&name).unwrap();
        assert_eq!(s, a.secret_key());
        assert_eq!(s.len(), 16);
        assert_eq!(format!("[dtr:{s}:{r}]"), a.tag());
        // re-rotation replaces the marker instead of stacking them
        let scope = VaultScope::new("https://vault.example.com", None, "secret");
        let b = Marker::vault(&scope, "dynatrace/app1", 4);
        assert_eq!(base_name(&b.name_for(&name)), "app1 metrics");
        assert!(b.name_for(&name).ends_with(":v4]"));
        assert_eq!(vault_version(parse(&b.name_for(&name)).unwrap().1), Some(4));
        assert!(!is_minted("app1 metrics"));
    }

    #[test]
    fn keys_are_scoped_to_the_deployment() {
        let path = "dynatrace/app1";
        let prod = VaultScope::new("https://vault.prod.example.com:8200/", None, "secret");
        let staging = VaultScope::new("https://vault.staging.example.com:8200", None, "secret");
        let team_ns = VaultScope::new(
            "https://vault.prod.example.com:8200",
            Some("team-a"),
            "secret",
        );
        let other_ns = VaultScope::new(
            "https://vault.prod.example.com:8200",
            Some("team-b/"),
            "secret",
        );
        let keys = [&prod, &staging, &team_ns, &other_ns].map(|s| s.secret_key(path));
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "two deployments share a key");
            }
        }
        // normalised: case of the host, default port, trailing slash do not matter
        assert_eq!(
            VaultScope::new("https://VAULT.example.com:443/", Some(""), "/secret/")
                .secret_key(path),
            VaultScope::new("https://vault.example.com", None, "secret").secret_key(path)
        );
        assert_eq!(
            deployment_of(&prod.secret_key(path)),
            Some(prod.deployment_key().as_str())
        );
        assert_ne!(prod.secret_key(path), prod.secret_key("dynatrace/app2"));
        // Secrets Manager: the same secret name in two accounts or Regions differs
        let other_account = ARN.replace("111122223333", "444455556666");
        let other_region = ARN.replace("eu-west-1", "us-east-1");
        assert_ne!(
            secret_key_secrets_manager(ARN),
            secret_key_secrets_manager(&other_account)
        );
        assert_ne!(
            secret_key_secrets_manager(ARN),
            secret_key_secrets_manager(&other_region)
        );
        assert_ne!(
            deployment_key_secrets_manager(ARN),
            deployment_key_secrets_manager(&other_account)
        );
        assert_eq!(
            deployment_of(&secret_key_secrets_manager(ARN)),
            Some(deployment_key_secrets_manager(ARN).as_str())
        );
        let [current, legacy] = secret_keys_secrets_manager(ARN);
        assert_eq!(current, secret_key_secrets_manager(ARN));
        assert_eq!(legacy.len(), 10);
        assert_eq!(deployment_of(&legacy), None);
    }

    #[test]
    fn disabled_date_round_trips() {
        let d: Date = "2026-11-28".parse().unwrap();
        let n = disabled_name("x [dtr:a:b]", d, Some("k"));
        assert_eq!(n, "x [dtr:a:b] [disabled 2026-11-28]");
        assert_eq!(disabled_on(&n), Some(d));
        assert_eq!(disabled_name(&n, "2027-01-01".parse().unwrap(), None), n);
        assert_eq!(base_name(&n), "x");
        assert!(is_minted(&n));
    }

    #[test]
    fn revoked_originals_carry_their_owner() {
        let d: Date = "2026-11-28".parse().unwrap();
        let n = disabled_name("ci token", d, Some("abc"));
        assert_eq!(n, "ci token [dtr:abc:revoked] [disabled 2026-11-28]");
        assert_eq!(owner_key(&n), Some("abc"));
        assert!(
            !is_minted(&n),
            "an original the rotator revoked was not minted by it"
        );
        assert_eq!(disabled_on(&n), Some(d));
        assert_eq!(base_name(&n), "ci token");
        assert_eq!(
            disabled_name("ci token", d, None),
            "ci token [disabled 2026-11-28]"
        );
    }
}
