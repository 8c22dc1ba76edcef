//! Dynatrace environment URLs: parsing, the https/loopback rule and normalisation.
//!
//! A manager token is only ever sent to its own environment, so environment URLs are
//! compared in a normalised form: scheme, lower-case host, port only when not the
//! default, path without trailing `/`.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// A validated, normalised Dynatrace environment base URL (e.g.
/// `https://abc12345.live.dynatrace.com` or `https://host/e/<env-id>`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EnvironmentUrl {
    normalized: String,
}

/// Why a URL is refused as a Dynatrace (or Vault) address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a parseable absolute URL.
    #[error("`{0}` is not a valid absolute URL")]
    Invalid(String),
    /// `http://` to something that is not a loopback host, or another scheme.
    #[error(
        "`{0}` must use https:// (plain http:// is allowed only for loopback hosts: 127.0.0.0/8, ::1, localhost)"
    )]
    Insecure(String),
    /// Credentials in the URL would be sent along with every request.
    #[error("`{0}` must not contain user information (user:password@)")]
    UserInfo(String),
    /// A query or fragment has no meaning on a base URL.
    #[error("`{0}` must not contain a query or fragment")]
    QueryOrFragment(String),
}

impl EnvironmentUrl {
    /// Parses and validates `raw` under the https/loopback rule of docs/design.md §5.
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let url = checked_base_url(raw)?;
        let mut normalized = format!("{}://", url.scheme());
        match url.host() {
            Some(Host::Domain(d)) => normalized.push_str(&d.to_ascii_lowercase()),
            Some(Host::Ipv4(ip)) => normalized.push_str(&ip.to_string()),
            Some(Host::Ipv6(ip)) => normalized.push_str(&format!("[{ip}]")),
            None => return Err(UrlError::Invalid(shown(raw))),
        }
        if let Some(port) = url.port() {
            normalized.push_str(&format!(":{port}"));
        }
        normalized.push_str(url.path().trim_end_matches('/'));
        Ok(Self { normalized })
    }

    /// The normalised form, used for comparison and display.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// `base + path` (path starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.normalized, path)
    }
}

impl fmt::Display for EnvironmentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

impl fmt::Debug for EnvironmentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvironmentUrl({})", self.normalized)
    }
}

/// Parses `raw` as a base URL that may receive credentials: https, or http on loopback; no
/// user info, query or fragment. Shared by the Dynatrace and Vault settings.
pub fn checked_base_url(raw: &str) -> Result<Url, UrlError> {
    let trimmed = raw.trim();
    let url = Url::parse(trimmed).map_err(|_| UrlError::Invalid(shown(raw)))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::UserInfo(redact_userinfo(&url)));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::QueryOrFragment(shown(raw)));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(UrlError::Insecure(shown(raw))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A URL as shown in an error: anything that could be user info (before an `@` in the
/// authority) hidden, cut to 200 characters.
fn shown(raw: &str) -> String {
    let raw = raw.trim();
    let hidden = match (raw.find("://"), raw.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}<user info hidden>{}", &raw[..start + 3], &raw[at..])
        }
        (None, Some(_)) => "<a value with user info, hidden>".to_owned(),
        _ => raw.to_owned(),
    };
    crate::secret::redact_text(&hidden, 200)
}

fn redact_userinfo(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    format!("{} (with user info removed)", u.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_for_comparison() {
        let a = EnvironmentUrl::parse("https://ABC12345.Live.Dynatrace.com:443/").unwrap();
        let b = EnvironmentUrl::parse("https://abc12345.live.dynatrace.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "https://abc12345.live.dynatrace.com");
        let m = EnvironmentUrl::parse("https://managed.example.com:9999/e/env1/").unwrap();
        assert_eq!(m.as_str(), "https://managed.example.com:9999/e/env1");
        assert_eq!(
            EnvironmentUrl::parse("http://127.0.0.1:8080/")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn refuses_insecure_and_tricky_urls() {
        for bad in [
            "http://abc.live.dynatrace.com",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "https://user:pw@abc.live.dynatrace.com",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "https://abc.live.dynatrace.com/?x=1",
            "not a url",
            "javascript:alert(1)",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(EnvironmentUrl::parse(bad).is_err(), "{bad} accepted");
        }
        let err = EnvironmentUrl::parse("https://user:hunter2@x.example").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        // an unparseable URL with credentials is not echoed either
        let err = EnvironmentUrl::parse("https://user:hun ter2@x.example/\u{0}").unwrap_err();
        assert!(!err.to_string().contains("hun ter2"), "{err}");
        for ok in [
            "http://localhost:1",
            "http://[::1]:2",
            "http://127.9.9.9",
            "https://10.0.0.1",
        ] {
            assert!(EnvironmentUrl::parse(ok).is_ok(), "{ok} refused");
        }
    }
}
