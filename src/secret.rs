//! Types that hold secret values: Dynatrace token values and the Secrets Manager
//! `RotationToken`. They redact themselves in `Debug`/`Display` and are zeroized on drop
//! (through [`secrecy::SecretString`]), so a secret cannot reach a log line or an error
//! message by accident. Token *ids* are public and travel as plain strings.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Length of the public part of a current-format token.
const PUBLIC_LEN: usize = 24;
/// Length of the secret part of a current-format token.
const SECRET_LEN: usize = 64;

/// A Dynatrace API token value (`dt0c01.<24>.<64>` or a legacy opaque token).
///
/// Construct it with [`TokenValue::parse`], which refuses anything that is not a token
/// before any network call is made.
#[derive(Clone)]
pub struct TokenValue(SecretString);

/// Why a string is not accepted as a Dynatrace token. Never carries the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenFormatError(&'static str);

impl TokenValue {
    /// Checks the format of `value` and wraps it. Current-format tokens must match
    /// `dt0[a-zA-Z][0-9]{2}.[A-Z0-9]{24}.[A-Z0-9]{64}`; legacy tokens are 16 to 40
    /// characters of `[A-Za-z0-9_-]`.
    pub fn parse(value: &str) -> Result<Self, TokenFormatError> {
        if value.is_empty() {
            return Err(TokenFormatError("the token is empty"));
        }
        if value.contains('.') {
            if !is_current_format(value) {
                return Err(TokenFormatError(
                    "the token does not have the Dynatrace format `dt0c01.<24 upper-case letters/digits>.<64 upper-case letters/digits>`",
                ));
            }
        } else if !(16..=40).contains(&value.len())
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(TokenFormatError(
                "the token is neither a current-format Dynatrace token (`dt0c01.<24>.<64>`) nor a legacy token (16-40 characters of A-Z a-z 0-9 _ -)",
            ));
        }
        Ok(Self(SecretString::from(value.to_owned())))
    }

    /// The secret value, for the one place that needs it (an HTTP header or a stored document).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The token id (`prefix.public`), derivable only for current-format tokens; legacy
    /// tokens need a lookup.
    pub fn derived_id(&self) -> Option<String> {
        let v = self.expose();
        is_current_format(v).then(|| v[..v.rfind('.').unwrap_or(0)].to_owned())
    }

    /// Whether both values are the same token (constant-time is not needed: both are ours).
    pub fn same_as(&self, other: &TokenValue) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for TokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.derived_id() {
            Some(id) => write!(f, "TokenValue({id}.<redacted>)"),
            None => f.write_str("TokenValue(<legacy, redacted>)"),
        }
    }
}

impl fmt::Display for TokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Whether `v` has the exact shape of a current-format token.
pub fn is_current_format(v: &str) -> bool {
    let b = v.as_bytes();
    let prefix_ok = b.len() == 6 + 1 + PUBLIC_LEN + 1 + SECRET_LEN
        && b.starts_with(b"dt0")
        && b[3].is_ascii_alphabetic()
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'.'
        && b[7 + PUBLIC_LEN] == b'.';
    let upper_alnum = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    prefix_ok && upper_alnum(&b[7..7 + PUBLIC_LEN]) && upper_alnum(&b[8 + PUBLIC_LEN..])
}

/// Replaces anything shaped like a full current-format token in `text` by its id followed
/// by `.<redacted>`, and cuts the text to `max` characters. Used on text that comes from
/// outside (error bodies) before it goes into an error message.
pub fn redact_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut rest = text;
    while let Some(pos) = rest.find("dt0") {
        out.push_str(&rest[..pos]);
        let candidate = &rest[pos..];
        let full = 6 + 1 + PUBLIC_LEN + 1 + SECRET_LEN;
        if candidate.len() >= full
            && candidate.is_char_boundary(full)
            && is_current_format(&candidate[..full])
        {
            out.push_str(&candidate[..7 + PUBLIC_LEN]);
            out.push_str(".<redacted>");
            rest = &candidate[full..];
        } else {
            out.push_str("dt0");
            rest = &candidate[3..];
        }
    }
    out.push_str(rest);
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

/// The `RotationToken` Secrets Manager passes to the function: opaque proof of who started
/// the rotation, forwarded to `PutSecretValue` and nowhere else.
#[derive(Clone)]
pub struct RotationToken(SecretString);

impl RotationToken {
    /// Wraps the token received in the event.
    pub fn new(value: String) -> Self {
        Self(SecretString::from(value))
    }

    /// The value, for `PutSecretValue` only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for RotationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RotationToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ01";

    #[test]
    fn current_format_is_accepted_and_id_derived() {
        let t = TokenValue::parse(GOOD).unwrap();
        assert_eq!(t.derived_id().unwrap(), "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX");
        let shown = format!("{t:?} {t}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }

    #[test]
    fn wrong_shapes_are_refused_without_echoing() {
        for bad in [
            "",
            "dt0c01.short.ABC",
            &GOOD.to_lowercase(),
            &format!("{GOOD}X"),
            "has space in it here!",
            "abc",
            &format!("{}\n", &GOOD[..GOOD.len() - 1]),
        ] {
            let err = TokenValue::parse(bad).unwrap_err().to_string();
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
        assert!(TokenValue::parse("Ab3_defGhij-KLmnop12Q").is_ok());
    }

    #[test]
    fn redact_text_hides_full_tokens_only() {
        let text = format!("bad token {GOOD} and id dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX");
        let r = redact_text(&text, 500);
        assert!(!r.contains(&GOOD[30..]));
        assert!(r.contains("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.<redacted>"));
        assert!(r.ends_with("id dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX"));
        assert_eq!(redact_text("abcdef", 3), "abc…");
    }

    #[test]
    fn rotation_token_redacts() {
        assert_eq!(
            format!("{:?}", RotationToken::new("s3cr3t".into())),
            "RotationToken(<redacted>)"
        );
    }
}
