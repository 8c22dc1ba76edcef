//! The rotation marker written into the name of every token the rotator mints.
//!
//! Dynatrace token names are not unique and a token's value is shown only once, so a
//! retried step cannot recover a token an interrupted attempt created: it can only *find*
//! it, by a deterministic marker in its name, and delete it. The marker has two parts:
//! the secret (so one secret's tokens can be found) and the rotation (Secrets Manager
//! version id, or Vault path + next version). Both are short hashes: names stay readable
//! and carry no secret. Example: `app1 metrics [dtr:5f0c1a2b3c:9d8e7f6a5b4c]`. Disabled
//! tokens also get ` [disabled 2026-11-28]`, the date the sweep's grace period starts.

use jiff::civil::Date;
use sha2::{Digest, Sha256};

const TAG: &str = " [dtr:";
const DISABLED: &str = " [disabled ";
/// Longest base name kept from the old token (Dynatrace documents no maximum).
const MAX_BASE: usize = 120;

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

impl Marker {
    /// Marker of the Secrets Manager rotation `version_id` of the secret `secret_arn`.
    pub fn secrets_manager(secret_arn: &str, version_id: &str) -> Self {
        Self {
            secret: Self::secret_key_sm(secret_arn),
            rotation: short_hash(&format!("sm-version:{version_id}"), 12),
        }
    }

    /// Marker of the rotation of a Vault path that will write version `next_version`.
    pub fn vault(mount: &str, path: &str, next_version: u64) -> Self {
        Self {
            secret: Self::secret_key_vault(mount, path),
            rotation: format!("v{next_version}"),
        }
    }

    /// The secret part for a Secrets Manager secret (by ARN).
    pub fn secret_key_sm(secret_arn: &str) -> String {
        short_hash(&format!("sm:{secret_arn}"), 10)
    }

    /// The secret part for a Vault path.
    pub fn secret_key_vault(mount: &str, path: &str) -> String {
        short_hash(&format!("vault:{mount}/{path}"), 10)
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

/// The name without the rotator's suffixes.
pub fn base_name(name: &str) -> &str {
    let end = [name.find(TAG), name.find(DISABLED)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(name.len());
    name[..end].trim_end()
}

/// `(secret, rotation)` parts of the marker in `name`, if the rotator minted it.
pub fn parse(name: &str) -> Option<(&str, &str)> {
    let start = name.find(TAG)? + TAG.len();
    let rest = &name[start..];
    let inner = &rest[..rest.find(']')?];
    let (secret, rotation) = inner.split_once(':')?;
    (!secret.is_empty() && !rotation.is_empty()).then_some((secret, rotation))
}

/// Whether the rotator minted the token called `name`.
pub fn is_minted(name: &str) -> bool {
    parse(name).is_some()
}

/// The name a token gets when the rotator disables it on `date`.
pub fn disabled_name(name: &str, date: Date) -> String {
    if disabled_on(name).is_some() {
        return name.to_owned();
    }
    format!("{name}{DISABLED}{date}]")
}

/// The date the rotator disabled the token called `name`, if it did.
pub fn disabled_on(name: &str) -> Option<Date> {
    let start = name.find(DISABLED)? + DISABLED.len();
    let rest = &name[start..];
    rest[..rest.find(']')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_is_deterministic() {
        let a = Marker::secrets_manager("arn:aws:secretsmanager:r:1:secret:x", "v-1");
        assert_eq!(
            a,
            Marker::secrets_manager("arn:aws:secretsmanager:r:1:secret:x", "v-1")
        );
        assert_ne!(
            a,
            Marker::secrets_manager("arn:aws:secretsmanager:r:1:secret:x", "v-2")
        );
        let name = a.name_for("app1 metrics");
        assert!(name.starts_with("app1 metrics [dtr:"));
        let (s, r) = parse(&name).unwrap();
        assert_eq!(s, a.secret_key());
        assert_eq!(format!("[dtr:{s}:{r}]"), a.tag());
        // re-rotation replaces the marker instead of stacking them
        let b = Marker::vault("secret", "dynatrace/app1", 4);
        assert_eq!(base_name(&b.name_for(&name)), "app1 metrics");
        assert!(b.name_for(&name).ends_with(":v4]"));
        assert!(!is_minted("app1 metrics"));
    }

    #[test]
    fn disabled_date_round_trips() {
        let d: Date = "2026-11-28".parse().unwrap();
        let n = disabled_name("x [dtr:a:b]", d);
        assert_eq!(n, "x [dtr:a:b] [disabled 2026-11-28]");
        assert_eq!(disabled_on(&n), Some(d));
        assert_eq!(disabled_name(&n, "2027-01-01".parse().unwrap()), n);
        assert_eq!(base_name(&n), "x");
        assert!(is_minted(&n));
    }
}
