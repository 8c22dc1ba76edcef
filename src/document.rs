//! The document stored in a secret (docs/design.md §2), in both backends: a JSON object with
//! `token`, optional `environmentUrl`, and the rotator's bookkeeping `tokenId`,
//! `previousTokenId`, `rotatedAt`, `expiresAt`; or a bare token string. Unknown fields are
//! kept verbatim across rotations. The bookkeeping fields are hints for finding versions and
//! reporting, never proof of which token a secret holds (docs/design.md §3, trust rules).

use std::fmt;

use jiff::Timestamp;
use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::secret::{TokenFormatError, TokenValue};

/// A parsed secret document. `Debug` shows field names and ids, never the token or the
/// values of unknown fields (consumers may keep other secrets beside the token).
#[derive(Clone)]
pub struct SecretDocument {
    /// The Dynatrace token value.
    pub token: TokenValue,
    /// Where the token lives, when the document says so.
    pub environment_url: Option<String>,
    /// Id of `token`, written by the rotator.
    pub token_id: Option<String>,
    /// Id of the token that was current before the last rotation.
    pub previous_token_id: Option<String>,
    /// When the rotator last rotated this document (as stored).
    pub rotated_at: Option<String>,
    /// When the token the rotator stored expires (as stored; absent: never, or not recorded).
    pub expires_at: Option<String>,
    /// Every other field, preserved as is.
    extra: Map<String, Value>,
    /// The secret was a bare token string, not JSON.
    bare: bool,
}

/// Why a stored value is not a usable secret document. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Neither a JSON object nor a token.
    #[error(
        "the secret value is neither a JSON object with a `token` field nor a bare Dynatrace token"
    )]
    NotADocument,
    /// JSON object without `token`.
    #[error(
        "the secret's JSON object has no `token` field; store the Dynatrace token under `token`"
    )]
    MissingToken,
    /// A known field with the wrong JSON type.
    #[error("the secret's field `{0}` must be a string")]
    NotAString(&'static str),
    /// `token` is present but is not a Dynatrace token.
    #[error("the secret's `token` is not a valid Dynatrace token: {0}")]
    BadToken(TokenFormatError),
}

const KNOWN: [&str; 6] = [
    "token",
    "environmentUrl",
    "tokenId",
    "previousTokenId",
    "rotatedAt",
    "expiresAt",
];

impl SecretDocument {
    /// Parses a stored secret string (JSON object or bare token).
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            let value: Value =
                serde_json::from_str(trimmed).map_err(|_| DocumentError::NotADocument)?;
            match value {
                Value::Object(map) => Self::from_map(map),
                _ => Err(DocumentError::NotADocument),
            }
        } else {
            let token = TokenValue::parse(trimmed).map_err(|_| DocumentError::NotADocument)?;
            Ok(Self::bare(token))
        }
    }

    /// A document that is only a token (the bare-string form).
    pub fn bare(token: TokenValue) -> Self {
        Self {
            token,
            environment_url: None,
            token_id: None,
            previous_token_id: None,
            rotated_at: None,
            expires_at: None,
            extra: Map::new(),
            bare: true,
        }
    }

    /// Builds a document from a JSON object (a Vault KV v2 `data` map).
    pub fn from_map(mut map: Map<String, Value>) -> Result<Self, DocumentError> {
        let token = match map.remove("token") {
            Some(Value::String(s)) => TokenValue::parse(&s).map_err(DocumentError::BadToken)?,
            Some(_) => return Err(DocumentError::NotAString("token")),
            None => return Err(DocumentError::MissingToken),
        };
        let mut take = |key: &'static str| -> Result<Option<String>, DocumentError> {
            match map.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(DocumentError::NotAString(key)),
            }
        };
        Ok(Self {
            token,
            environment_url: take("environmentUrl")?,
            token_id: take("tokenId")?,
            previous_token_id: take("previousTokenId")?,
            rotated_at: take("rotatedAt")?,
            expires_at: take("expiresAt")?,
            extra: map,
            bare: false,
        })
    }

    /// Whether the document is the bare-string form.
    pub fn is_bare(&self) -> bool {
        self.bare
    }

    /// The id the token *claims*: derived from a current-format value's shape, else the
    /// `tokenId` field. Good for reports and for keeping a token; never a reason to revoke
    /// one (anyone who may write the secret can make it name any id): revocation needs
    /// [`crate::rotation::proven_id`].
    pub fn token_id_hint(&self) -> Option<String> {
        self.token.derived_id().or_else(|| self.token_id.clone())
    }

    /// `rotatedAt` parsed, when present and valid.
    pub fn rotated_at_time(&self) -> Option<Timestamp> {
        self.rotated_at.as_deref().and_then(|s| s.parse().ok())
    }

    /// `expiresAt` parsed: `Some(None)` when absent (never expires, or an older document that
    /// did not record it), `None` when present but unparseable.
    pub fn expires_at_time(&self) -> Option<Option<Timestamp>> {
        match self.expires_at.as_deref() {
            None => Some(None),
            Some(s) => s.parse().ok().map(Some),
        }
    }

    /// Names of the fields the rotator does not know (for logs).
    pub fn extra_keys(&self) -> Vec<&str> {
        self.extra.keys().map(String::as_str).collect()
    }

    /// The document after rotating to `new_token` (id `new_id`, expiring at `expires`) at
    /// `now`: unknown fields and `environmentUrl` kept, `previousTokenId` set to the old
    /// token's id, `expiresAt` written (removed when the new token never expires).
    pub fn rotated(
        &self,
        new_token: TokenValue,
        new_id: &str,
        old_id: &str,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        if self.bare {
            return Self::bare(new_token);
        }
        Self {
            token: new_token,
            environment_url: self.environment_url.clone(),
            token_id: Some(new_id.to_owned()),
            previous_token_id: Some(old_id.to_owned()),
            rotated_at: Some(iso_seconds(now)),
            expires_at: expires.map(iso_seconds),
            extra: self.extra.clone(),
            bare: false,
        }
    }

    /// The JSON object form (for Vault). Holds the token value: hand it straight to the
    /// store and drop it.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = self.extra.clone();
        map.insert(
            "token".into(),
            Value::String(self.token.expose().to_owned()),
        );
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                map.insert(k.into(), Value::String(v.clone()));
            }
        };
        put("environmentUrl", &self.environment_url);
        put("tokenId", &self.token_id);
        put("previousTokenId", &self.previous_token_id);
        put("rotatedAt", &self.rotated_at);
        put("expiresAt", &self.expires_at);
        map
    }

    /// The stored string form (for Secrets Manager): JSON, or the bare token.
    pub fn render(&self) -> SecretString {
        if self.bare {
            return SecretString::from(self.token.expose().to_owned());
        }
        SecretString::from(Value::Object(self.to_map()).to_string())
    }
}

impl fmt::Debug for SecretDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretDocument")
            .field("token", &self.token)
            .field("environment_url", &self.environment_url)
            .field("token_id", &self.token_id)
            .field("previous_token_id", &self.previous_token_id)
            .field("rotated_at", &self.rotated_at)
            .field("expires_at", &self.expires_at)
            .field("extra_keys", &self.extra_keys())
            .field("bare", &self.bare)
            .finish()
    }
}

/// `t` as `2026-11-28T10:00:00Z` (whole seconds, UTC), the form the rotator writes.
fn iso_seconds(t: Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Field names the rotator owns in the document.
pub fn known_fields() -> &'static [&'static str] {
    &KNOWN
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const T1: &str = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ01";
    const T2: &str = "dt0c01.BBCDEFGHIJKLMNOPQRSTUVWX.BBCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ01";

    #[test]
    fn json_document_keeps_unknown_fields() {
        let text = format!(
            r#"{{"token":"{T1}","environmentUrl":"https://x.live.dynatrace.com","team":"payments","nested":{{"a":[1,2]}}}}"#
        );
        let doc = SecretDocument::parse(&text).unwrap();
        assert_eq!(
            doc.token_id_hint().unwrap(),
            "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX"
        );
        let now: Timestamp = "2026-11-28T10:00:00.123Z".parse().unwrap();
        let new = doc.rotated(
            TokenValue::parse(T2).unwrap(),
            "dt0c01.BBCDEFGHIJKLMNOPQRSTUVWX",
            "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX",
            Some("2026-12-28T10:00:00.5Z".parse().unwrap()),
            now,
        );
        let out: Value = serde_json::from_str(new.render().expose_secret()).unwrap();
        assert_eq!(out["team"], "payments");
        assert_eq!(out["nested"]["a"][1], 2);
        assert_eq!(out["token"], T2);
        assert_eq!(out["previousTokenId"], "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX");
        assert_eq!(out["rotatedAt"], "2026-11-28T10:00:00Z");
        assert_eq!(out["expiresAt"], "2026-12-28T10:00:01Z");
        let again = SecretDocument::parse(new.render().expose_secret()).unwrap();
        assert_eq!(
            again.expires_at_time(),
            Some(Some("2026-12-28T10:00:01Z".parse().unwrap()))
        );
        // a successor that never expires drops the field
        let never = again.rotated(TokenValue::parse(T1).unwrap(), "a", "b", None, now);
        assert!(!never.to_map().contains_key("expiresAt"));
        assert_eq!(never.expires_at_time(), Some(None));
        assert!(!format!("{new:?}").contains("0123456789"));
    }

    #[test]
    fn bare_and_bad_documents() {
        let doc = SecretDocument::parse(&format!(" {T1}\n")).unwrap();
        assert!(doc.is_bare());
        assert_eq!(doc.render().expose_secret(), T1);
        assert_eq!(
            SecretDocument::parse("hello world").unwrap_err(),
            DocumentError::NotADocument
        );
        assert_eq!(
            SecretDocument::parse("{\"tok\":1}").unwrap_err(),
            DocumentError::MissingToken
        );
        assert_eq!(
            SecretDocument::parse("{\"token\":1}").unwrap_err(),
            DocumentError::NotAString("token")
        );
        assert!(matches!(
            SecretDocument::parse("{\"token\":\"dt0c01.X.Y\"}").unwrap_err(),
            DocumentError::BadToken(_)
        ));
        assert_eq!(
            SecretDocument::parse("[1]").unwrap_err(),
            DocumentError::NotADocument
        );
        assert_eq!(
            SecretDocument::parse("{oops").unwrap_err(),
            DocumentError::NotADocument
        );
    }
}
