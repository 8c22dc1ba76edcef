//! Configuration: every environment variable of docs/design.md §5, parsed and validated once at
//! start-up into typed values. Nothing else in the crate reads the environment. A bad value
//! fails the Lambda's init with a message naming the variable and what is allowed, and
//! never echoes a secret variable's value.

use std::fmt;

use secrecy::SecretString;

use crate::environment::checked_base_url;
use crate::policy::{OldTokenAction, RevokeOld};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DT_MANAGER_SECRET_IDS`: Secrets Manager ids of manager-token documents.
    pub manager_secret_ids: Vec<String>,
    /// `DT_TOKEN_LIFETIME_DAYS`: fixed lifetime of minted tokens; `None` keeps the old one's.
    pub token_lifetime_days: Option<u32>,
    /// `DT_REVOKE_OLD`.
    pub revoke_old: RevokeOld,
    /// `DT_OLD_TOKEN_ACTION`.
    pub old_token_action: OldTokenAction,
    /// `DT_UNUSED_HOURS`: quiet time after promotion before `when-unused` revokes.
    pub unused_hours: u32,
    /// `DT_DELETE_DISABLED_AFTER_DAYS`.
    pub delete_disabled_after_days: u32,
    /// `DT_FORBIDDEN_SCOPES`.
    pub forbidden_scopes: Vec<String>,
    /// `DT_EVENTS=on`: post a `CUSTOM_INFO` event per rotation.
    pub events: bool,
    /// Vault settings, present when `VAULT_ADDR` is set.
    pub vault: Option<VaultConfig>,
    /// `ROTATION_INTERVAL_DAYS`.
    pub rotation_interval_days: u32,
    /// `ROTATION_EXPIRY_MARGIN_DAYS`: a Vault secret whose token expires within this margin is
    /// due, so a stored token never expires between two runs.
    pub rotation_expiry_margin_days: u32,
    /// `ROTATION_CONCURRENCY`.
    pub rotation_concurrency: usize,
    /// `AUDIT_EXPIRING_DAYS`.
    pub audit_expiring_days: u32,
    /// `AUDIT_UNUSED_DAYS`.
    pub audit_unused_days: u32,
    /// `VAULT_QUEUE_URL`: the SQS queue `enqueue-vault` fills with `rotate-vault` messages
    /// (https, or http on a loopback host for local testing).
    pub vault_queue_url: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda itself): the sweep finds the Secrets Manager
    /// secrets whose `RotationLambdaARN` names this function.
    pub function_name: Option<String>,
}

/// Vault / OpenBao settings (`VAULT_*`).
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `VAULT_ADDR`, validated under the https/loopback rule.
    pub addr: url::Url,
    /// `VAULT_NAMESPACE`.
    pub namespace: Option<String>,
    /// `VAULT_KV_MOUNT`.
    pub kv_mount: String,
    /// `VAULT_MANAGER_PATH`.
    pub manager_path: String,
    /// `VAULT_AUTH_METHOD` and its credentials.
    pub auth: VaultAuth,
    /// `VAULT_ROTATE_PATHS`.
    pub rotate_paths: Vec<String>,
    /// `VAULT_ROTATE_PREFIX`.
    pub rotate_prefix: Option<String>,
}

/// How the rotator authenticates to Vault (docs/design.md §5 `VAULT_AUTH_METHOD`). `Debug` redacts
/// the secrets (`SecretString` prints `[REDACTED]`).
#[derive(Clone, Debug)]
pub enum VaultAuth {
    /// A ready token (`VAULT_TOKEN`); it cannot be renewed by logging in again.
    Token(SecretString),
    /// AppRole login at `auth/approle/login` (`VAULT_ROLE_ID`, `VAULT_SECRET_ID`).
    AppRole {
        /// The role id (an identifier, not a secret on its own).
        role_id: String,
        /// The secret id (a credential).
        secret_id: SecretString,
    },
    /// AWS IAM login: the Lambda's execution role signs an STS `GetCallerIdentity` request.
    Aws {
        /// Vault role name (`VAULT_AWS_ROLE`).
        role: String,
        /// Auth mount (`VAULT_AWS_MOUNT`, default `aws`).
        mount: String,
        /// Value for `X-Vault-AWS-IAM-Server-ID` (`VAULT_IAM_SERVER_ID`), signed when set.
        server_id: Option<String>,
        /// STS signing region, default `us-east-1`.
        region: String,
    },
}

impl VaultAuth {
    /// A short, secret-free label for messages and logs.
    pub fn label(&self) -> String {
        match self {
            VaultAuth::Token(_) => "token".to_owned(),
            VaultAuth::AppRole { .. } => "approle".to_owned(),
            VaultAuth::Aws { role, mount, .. } => format!("aws (mount {mount:?}, role {role:?})"),
        }
    }
}

/// A configuration variable with a value that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

fn err(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// Variables whose values are secret: never echoed in errors.
const SECRET_VARS: [&str; 2] = ["VAULT_TOKEN", "VAULT_SECRET_ID"];

struct Env<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The variable's value, trimmed; `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        name: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(err(
                name,
                format!("`{raw}` is not allowed: use a whole number from {min} to {max}"),
            )),
        }
    }

    fn choice<T: Copy>(
        &self,
        name: &'static str,
        default: T,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&raw))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let allowed: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
                err(
                    name,
                    format!("`{raw}` is not allowed: use one of {}", allowed.join(", ")),
                )
            })
    }

    fn required(&self, name: &'static str, why: &str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| err(name, format!("is required {why}")))
    }

    fn secret(&self, name: &'static str, why: &str) -> Result<SecretString, ConfigError> {
        debug_assert!(SECRET_VARS.contains(&name));
        Ok(SecretString::from(self.required(name, why)?))
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        // DT_FORBIDDEN_SCOPES: unset → default; set but empty → allow everything.
        let forbidden_scopes = match (env.0)("DT_FORBIDDEN_SCOPES") {
            None => vec![
                "apiTokens.write".to_owned(),
                "TenantTokenManagement".to_owned(),
            ],
            Some(_) => env.list("DT_FORBIDDEN_SCOPES"),
        };
        let config = Self {
            manager_secret_ids: env.list("DT_MANAGER_SECRET_IDS"),
            token_lifetime_days: match env.get("DT_TOKEN_LIFETIME_DAYS") {
                None => None,
                Some(_) => Some(env.number("DT_TOKEN_LIFETIME_DAYS", 0, 1, 3650)?),
            },
            revoke_old: env.choice(
                "DT_REVOKE_OLD",
                RevokeOld::NextRotation,
                &[
                    ("next-rotation", RevokeOld::NextRotation),
                    ("when-unused", RevokeOld::WhenUnused),
                    ("immediately", RevokeOld::Immediately),
                    ("never", RevokeOld::Never),
                ],
            )?,
            old_token_action: env.choice(
                "DT_OLD_TOKEN_ACTION",
                OldTokenAction::Disable,
                &[
                    ("disable", OldTokenAction::Disable),
                    ("delete", OldTokenAction::Delete),
                ],
            )?,
            delete_disabled_after_days: env.number("DT_DELETE_DISABLED_AFTER_DAYS", 7, 0, 3650)?,
            unused_hours: env.number("DT_UNUSED_HOURS", 24, 1, 8760)?,
            forbidden_scopes,
            events: env.choice("DT_EVENTS", false, &[("on", true), ("off", false)])?,
            vault: Self::vault(&env)?,
            rotation_interval_days: env.number("ROTATION_INTERVAL_DAYS", 30, 0, 3650)?,
            rotation_expiry_margin_days: env.number("ROTATION_EXPIRY_MARGIN_DAYS", 7, 0, 3650)?,
            rotation_concurrency: env.number("ROTATION_CONCURRENCY", 8, 1, 64)?,
            audit_expiring_days: env.number("AUDIT_EXPIRING_DAYS", 14, 0, 3650)?,
            audit_unused_days: env.number("AUDIT_UNUSED_DAYS", 90, 1, 3650)?,
            vault_queue_url: Self::queue_url(&env)?,
            function_name: env.get("AWS_LAMBDA_FUNCTION_NAME"),
        };
        if let Some(lifetime) = config.token_lifetime_days {
            let needed = config.rotation_interval_days + config.rotation_expiry_margin_days;
            if lifetime < needed {
                return Err(err(
                    "DT_TOKEN_LIFETIME_DAYS",
                    format!(
                        "{lifetime} days is shorter than ROTATION_INTERVAL_DAYS ({}) + ROTATION_EXPIRY_MARGIN_DAYS ({}) = {needed}: tokens would expire before their next rotation; raise DT_TOKEN_LIFETIME_DAYS or lower ROTATION_INTERVAL_DAYS",
                        config.rotation_interval_days, config.rotation_expiry_margin_days
                    ),
                ));
            }
        }
        for id in &config.manager_secret_ids {
            if id.len() > 2048 {
                return Err(err(
                    "DT_MANAGER_SECRET_IDS",
                    "a secret id is longer than 2048 characters",
                ));
            }
        }
        Ok(config)
    }

    /// `VAULT_QUEUE_URL`: an SQS queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`)
    /// under the https/loopback rule, naming a queue (a path).
    fn queue_url<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(raw) = env.get("VAULT_QUEUE_URL") else {
            return Ok(None);
        };
        let url = checked_base_url(&raw).map_err(|e| err("VAULT_QUEUE_URL", e.to_string()))?;
        if url.path().trim_matches('/').is_empty() {
            return Err(err(
                "VAULT_QUEUE_URL",
                "names no queue: use the queue's URL, https://sqs.<region>.amazonaws.com/<account>/<queue name>",
            ));
        }
        Ok(Some(raw))
    }

    fn vault<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Option<VaultConfig>, ConfigError> {
        let Some(addr) = env.get("VAULT_ADDR") else {
            return Ok(None);
        };
        let addr = checked_base_url(&addr).map_err(|e| err("VAULT_ADDR", e.to_string()))?;
        let auth = match env
            .get("VAULT_AUTH_METHOD")
            .unwrap_or_else(|| "token".into())
            .to_ascii_lowercase()
            .as_str()
        {
            "token" => {
                VaultAuth::Token(env.secret("VAULT_TOKEN", "when VAULT_AUTH_METHOD is token")?)
            }
            "approle" => VaultAuth::AppRole {
                role_id: env.required("VAULT_ROLE_ID", "when VAULT_AUTH_METHOD is approle")?,
                secret_id: env.secret("VAULT_SECRET_ID", "when VAULT_AUTH_METHOD is approle")?,
            },
            "aws" => VaultAuth::Aws {
                role: env.required("VAULT_AWS_ROLE", "when VAULT_AUTH_METHOD is aws")?,
                mount: env.get("VAULT_AWS_MOUNT").unwrap_or_else(|| "aws".into()),
                server_id: env.get("VAULT_IAM_SERVER_ID"),
                region: env
                    .get("VAULT_AWS_STS_REGION")
                    .unwrap_or_else(|| "us-east-1".into()),
            },
            other => {
                return Err(err(
                    "VAULT_AUTH_METHOD",
                    format!("`{other}` is not allowed: use one of token, approle, aws"),
                ));
            }
        };
        let clean = |p: String| p.trim_matches('/').to_owned();
        Ok(Some(VaultConfig {
            addr,
            namespace: env.get("VAULT_NAMESPACE"),
            kv_mount: env
                .get("VAULT_KV_MOUNT")
                .map(clean)
                .unwrap_or_else(|| "secret".into()),
            manager_path: env
                .get("VAULT_MANAGER_PATH")
                .map(clean)
                .unwrap_or_else(|| "dynatrace/master".into()),
            auth,
            rotate_paths: env
                .list("VAULT_ROTATE_PATHS")
                .into_iter()
                .map(clean)
                .collect(),
            rotate_prefix: env
                .get("VAULT_ROTATE_PREFIX")
                .map(|p| p.trim_start_matches('/').to_owned()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn lifetime_must_outlast_interval_and_margin() {
        assert_eq!(cfg(&[]).unwrap().rotation_expiry_margin_days, 7);
        let e = cfg(&[("DT_TOKEN_LIFETIME_DAYS", "30")]).unwrap_err();
        assert_eq!(e.variable, "DT_TOKEN_LIFETIME_DAYS");
        assert!(e.message.contains("ROTATION_INTERVAL_DAYS (30)"), "{e}");
        assert!(e.message.contains("ROTATION_EXPIRY_MARGIN_DAYS (7)"), "{e}");
        assert!(cfg(&[("DT_TOKEN_LIFETIME_DAYS", "37")]).is_ok());
        assert!(
            cfg(&[
                ("DT_TOKEN_LIFETIME_DAYS", "10"),
                ("ROTATION_INTERVAL_DAYS", "7"),
                ("ROTATION_EXPIRY_MARGIN_DAYS", "3")
            ])
            .is_ok()
        );
        assert!(cfg(&[("ROTATION_EXPIRY_MARGIN_DAYS", "x")]).is_err());
    }

    #[test]
    fn defaults() {
        let c = cfg(&[("DT_MANAGER_SECRET_IDS", " a , b ")]).unwrap();
        assert_eq!(c.manager_secret_ids, ["a", "b"]);
        assert_eq!(c.revoke_old, RevokeOld::NextRotation);
        assert_eq!(c.old_token_action, OldTokenAction::Disable);
        assert_eq!(
            c.forbidden_scopes,
            ["apiTokens.write", "TenantTokenManagement"]
        );
        assert_eq!(
            (
                c.delete_disabled_after_days,
                c.rotation_interval_days,
                c.rotation_concurrency
            ),
            (7, 30, 8)
        );
        assert!(c.vault.is_none() && !c.events && c.token_lifetime_days.is_none());
        assert!(c.function_name.is_none() && c.vault_queue_url.is_none());
        let q = "https://sqs.eu-west-1.amazonaws.com/111122223333/rotations";
        assert_eq!(
            cfg(&[("VAULT_QUEUE_URL", q)])
                .unwrap()
                .vault_queue_url
                .as_deref(),
            Some(q)
        );
        assert_eq!(
            cfg(&[("AWS_LAMBDA_FUNCTION_NAME", "rotator")])
                .unwrap()
                .function_name
                .as_deref(),
            Some("rotator")
        );
        assert!(
            cfg(&[("DT_FORBIDDEN_SCOPES", "")])
                .unwrap()
                .forbidden_scopes
                .is_empty()
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("DT_REVOKE_OLD", "sometimes"),
            ("DT_OLD_TOKEN_ACTION", "shred"),
            ("DT_TOKEN_LIFETIME_DAYS", "-3"),
            ("ROTATION_CONCURRENCY", "0"),
            ("DT_EVENTS", "yes"),
            ("VAULT_ADDR", "http://vault.example.com"),
            ("VAULT_QUEUE_URL", "http://sqs.eu-west-1.amazonaws.com/1/q"),
            ("VAULT_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert_eq!(e.variable, k);
            assert!(e.to_string().contains(k), "{e}");
        }
        let e = cfg(&[
            ("VAULT_ADDR", "https://v.example"),
            ("VAULT_AUTH_METHOD", "kerberos"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "VAULT_AUTH_METHOD");
    }

    #[test]
    fn vault_settings_and_redaction() {
        let c = cfg(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN", "hvs.SECRETVALUE"),
            ("VAULT_ROTATE_PATHS", "/dynatrace/a/,dynatrace/b"),
        ])
        .unwrap();
        let v = c.vault.unwrap();
        assert_eq!(v.kv_mount, "secret");
        assert_eq!(v.manager_path, "dynatrace/master");
        assert_eq!(v.rotate_paths, ["dynatrace/a", "dynatrace/b"]);
        assert!(!format!("{v:?}").contains("SECRETVALUE"));
        let e = cfg(&[
            ("VAULT_ADDR", "https://v.example"),
            ("VAULT_AUTH_METHOD", "approle"),
            ("VAULT_ROLE_ID", "r"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "VAULT_SECRET_ID");
    }
}
