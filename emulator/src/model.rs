//! Token store, token generation, rendering and time parsing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::{Span, Timestamp, tz::TimeZone};
use rand::Rng;
use serde_json::{Map, Value};

use crate::{FaultKind, FaultRule, RequestRecord, SeedToken, Seeded, TokenState};

/// Every scope the emulator knows (grantable or not). Unknown names are refused on create/update.
pub(crate) const KNOWN_SCOPES: &[&str] = &[
    "metrics.read",
    "metrics.ingest",
    "metrics.write",
    "logs.read",
    "logs.ingest",
    "events.ingest",
    "events.read",
    "entities.read",
    "entities.write",
    "settings.read",
    "settings.write",
    "problems.read",
    "problems.write",
    "apiTokens.read",
    "apiTokens.write",
    "slo.read",
    "slo.write",
    "DataExport",
    "ReadConfig",
    "WriteConfig",
    "TenantTokenManagement",
    "InstallerDownload",
    "SupportAlert",
    "PluginUpload",
    "openpipeline.events",
    "openpipeline.events.custom",
    "openpipeline.events_data_lineage",
    "openpipeline.events_data_lineage.custom",
    "openpipeline.events_sdlc",
    "openpipeline.events_sdlc.custom",
    "openpipeline.events_security",
    "openpipeline.events_security.custom",
    "activeGateTokenManagement.create",
    "activeGateTokenManagement.read",
    "activeGateTokenManagement.write",
    "activeGates.read",
    "activeGates.write",
    "agentTokenManagement.read",
    "tenantTokenRotation.write",
    "ReadSyntheticData",
    "ExternalSyntheticIntegration",
    "CaptureRequestData",
    "LogExport",
    "LogImport",
    "RumJavaScriptTagManagement",
    "RumBrowserExtension",
    "DTAQLAccess",
    "releases.read",
    "securityProblems.read",
    "securityProblems.write",
    "networkZones.read",
    "networkZones.write",
    "geographicRegions.read",
    "credentialVault.read",
    "credentialVault.write",
    "extensions.read",
    "extensions.write",
    "extensionConfigurations.read",
    "extensionConfigurations.write",
    "extensionEnvironment.read",
    "extensionEnvironment.write",
    "syntheticLocations.read",
    "syntheticLocations.write",
    "syntheticExecutions.read",
    "syntheticExecutions.write",
    "auditLogs.read",
    "attacks.read",
    "attacks.write",
    "traces.lookup",
    "hub.read",
    "hub.write",
    "hub.install",
    "oneAgents.read",
    "oneAgents.write",
    "javaScriptMappingFiles.read",
    "javaScriptMappingFiles.write",
    "unifiedAnalysis.read",
    // No longer grantable, still readable on old tokens (may be seeded).
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

/// Scopes that can no longer be granted on create/update.
pub(crate) const REMOVED_SCOPES: &[&str] = &[
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

/// Scope families a personal access token may hold.
const PAT_SCOPE_PREFIXES: &[&str] = &[
    "apiTokens.",
    "entities.",
    "metrics.",
    "networkZones.",
    "problems.",
    "securityProblems.",
    "settings.",
    "slo.",
];

/// Whether a PAT may hold `scope`.
pub(crate) fn pat_allows(scope: &str) -> bool {
    scope == "releases.read" || PAT_SCOPE_PREFIXES.iter().any(|p| scope.starts_with(p))
}

/// Human label used in the `403` message.
pub(crate) fn scope_label(scope: &str) -> &'static str {
    match scope {
        "apiTokens.read" => "Read API tokens",
        "apiTokens.write" => "Write API tokens",
        "events.ingest" => "Ingest events",
        _ => "Required scope",
    }
}

/// Every property of `ApiToken`, in rendering order.
pub(crate) const ALL_FIELDS: &[&str] = &[
    "id",
    "name",
    "enabled",
    "personalAccessToken",
    "owner",
    "creationDate",
    "expirationDate",
    "lastUsedDate",
    "lastUsedIpAddress",
    "modifiedDate",
    "scopes",
    "additionalMetadata",
];

/// Properties returned by the list call when `fields` is absent.
pub(crate) const DEFAULT_FIELDS: &[&str] = &["id", "name", "enabled", "owner", "creationDate"];

/// One stored token.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub id: String,
    pub value: String,
    pub name: String,
    pub enabled: bool,
    pub scopes: Vec<String>,
    pub owner: String,
    pub creation: Timestamp,
    pub modified: Timestamp,
    pub expiration: Option<Timestamp>,
    pub last_used: Option<Timestamp>,
    pub last_used_ip: Option<String>,
    pub pat: bool,
    pub legacy: bool,
}

impl Token {
    /// Public snapshot (no value).
    pub fn state(&self) -> TokenState {
        TokenState {
            id: self.id.clone(),
            name: self.name.clone(),
            enabled: self.enabled,
            scopes: self.scopes.clone(),
            owner: self.owner.clone(),
            creation: self.creation,
            modified: self.modified,
            expiration: self.expiration,
            last_used: self.last_used,
            personal_access_token: self.pat,
            legacy: self.legacy,
        }
    }

    /// Whether the token may authenticate at `now`.
    pub fn usable(&self, now: Timestamp) -> bool {
        self.enabled && self.expiration.is_none_or(|e| e > now)
    }

    /// `ApiToken` JSON with the given properties (absent values are omitted).
    pub fn render(&self, fields: &[&str]) -> Value {
        let mut m = Map::new();
        for f in ALL_FIELDS.iter().filter(|f| fields.contains(f)) {
            let v = match *f {
                "id" => Some(Value::from(self.id.clone())),
                "name" => Some(Value::from(self.name.clone())),
                "enabled" => Some(Value::from(self.enabled)),
                "personalAccessToken" => Some(Value::from(self.pat)),
                "owner" => Some(Value::from(self.owner.clone())),
                "creationDate" => Some(Value::from(fmt_date(self.creation))),
                "expirationDate" => self.expiration.map(|t| Value::from(fmt_date(t))),
                "lastUsedDate" => self.last_used.map(|t| Value::from(fmt_date(t))),
                "lastUsedIpAddress" => self.last_used_ip.clone().map(Value::from),
                "modifiedDate" => Some(Value::from(fmt_date(self.modified))),
                "scopes" => Some(Value::from(self.scopes.clone())),
                // No token of the emulator carries additional metadata.
                _ => None,
            };
            if let Some(v) = v {
                m.insert((*f).to_string(), v);
            }
        }
        Value::Object(m)
    }
}

/// A page-able result set captured by the first list request.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub ids: Vec<String>,
    pub page_size: usize,
    pub fields: Vec<&'static str>,
}

/// A fault rule with its match counter.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub rule: FaultRule,
    pub seen: u64,
}

/// What the fault rules decided for one request.
#[derive(Debug, Default)]
pub(crate) struct FaultDecision {
    pub delay: Duration,
    pub action: Option<FaultKind>,
}

/// All emulator state.
#[derive(Default)]
pub(crate) struct State {
    pub tokens: Vec<Token>,
    pub deleted: HashSet<String>,
    pub issued: Vec<String>,
    pub faults: Vec<ActiveFault>,
    pub latency: Duration,
    pub requests: Vec<RequestRecord>,
    pub events: Vec<Value>,
    pub snapshots: HashMap<u64, Snapshot>,
    /// Most API requests served at once; one more is shed with `429` (see
    /// [`crate::Emulator::set_capacity`]). `None`: unlimited.
    pub capacity: Option<usize>,
    /// API requests being served now.
    pub in_flight: usize,
    /// Most API requests served at once so far.
    pub peak_in_flight: usize,
    /// Requests shed for capacity.
    pub shed: u64,
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LEGACY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

impl State {
    fn id_taken(&self, id: &str) -> bool {
        self.tokens.iter().any(|t| t.id == id) || self.deleted.contains(id)
    }

    /// A fresh `(id, value)` pair in the current or the legacy format.
    fn new_secret(&self, legacy: bool) -> (String, String) {
        loop {
            let id = format!("dt0c01.{}", random_string(UPPER_ALNUM, 24));
            if self.id_taken(&id) {
                continue;
            }
            let value = if legacy {
                random_string(LEGACY_ALPHABET, 21)
            } else {
                format!("{id}.{}", random_string(UPPER_ALNUM, 64))
            };
            if self.tokens.iter().any(|t| t.value == value) {
                continue;
            }
            return (id, value);
        }
    }

    /// Stores a new token and returns its id and value.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        name: String,
        scopes: Vec<String>,
        owner: String,
        creation: Timestamp,
        expiration: Option<Timestamp>,
        enabled: bool,
        legacy: bool,
        pat: bool,
    ) -> Seeded {
        let (id, value) = self.new_secret(legacy);
        self.issued.push(value.clone());
        self.tokens.push(Token {
            id: id.clone(),
            value: value.clone(),
            name,
            enabled,
            scopes,
            owner,
            creation,
            modified: creation,
            expiration,
            last_used: None,
            last_used_ip: None,
            pat,
            legacy,
        });
        Seeded { id, value }
    }

    /// Creates a token from a seed specification.
    pub fn seed(&mut self, spec: SeedToken) -> Seeded {
        let creation = spec.creation.map(trunc_ms).unwrap_or_else(now_ms);
        self.insert(
            spec.name,
            spec.scopes,
            spec.owner,
            creation,
            spec.expiration.map(trunc_ms),
            spec.enabled,
            spec.legacy,
            spec.personal_access_token,
        )
    }

    /// Adds a fault rule.
    pub fn add_fault(&mut self, rule: FaultRule) {
        self.faults.push(ActiveFault { rule, seen: 0 });
    }

    /// Counts the request against every matching rule and returns what applies.
    pub fn decide_faults(&mut self, method: &str, path: &str) -> FaultDecision {
        let mut decision = FaultDecision {
            delay: self.latency,
            action: None,
        };
        for f in self.faults.iter_mut() {
            if !f.rule.matches(method, path) {
                continue;
            }
            f.seen += 1;
            let skip = u64::from(f.rule.skip);
            let fires = f.seen > skip && f.seen - skip <= u64::from(f.rule.times);
            if !fires {
                continue;
            }
            match &f.rule.kind {
                FaultKind::Delay(d) => decision.delay += *d,
                other => {
                    if decision.action.is_none() {
                        decision.action = Some(other.clone());
                    }
                }
            }
        }
        decision
    }

    /// Remembers a list result; returns the snapshot id.
    pub fn store_snapshot(&mut self, snap: Snapshot) -> u64 {
        if self.snapshots.len() >= 10_000 {
            self.snapshots.clear();
        }
        loop {
            let id: u64 = rand::random();
            if let std::collections::hash_map::Entry::Vacant(e) = self.snapshots.entry(id) {
                e.insert(snap);
                return id;
            }
        }
    }
}

/// Now, truncated to milliseconds (the wire precision).
pub(crate) fn now_ms() -> Timestamp {
    trunc_ms(Timestamp::now())
}

/// Truncates to whole milliseconds.
pub(crate) fn trunc_ms(t: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ`.
pub(crate) fn fmt_date(t: Timestamp) -> String {
    format!("{t:.3}")
}

/// Parses an API time value: epoch milliseconds (number or digits), `now`, `now±N<unit>`
/// (units `m h d w M y`), ISO-8601 with offset, or ISO-8601 without zone (taken as UTC).
pub(crate) fn parse_time(v: &Value, now: Timestamp) -> Result<Timestamp, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .ok_or_else(|| "invalid epoch milliseconds".to_string()),
        Value::String(s) => parse_time_str(s, now),
        _ => Err("must be a string or a number".to_string()),
    }
}

/// String form of [`parse_time`].
pub(crate) fn parse_time_str(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty time value".to_string());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .ok_or_else(|| "invalid epoch milliseconds".to_string());
    }
    if let Some(rel) = s.strip_prefix("now") {
        if rel.is_empty() {
            return Ok(now);
        }
        return parse_relative(rel, now).ok_or_else(|| format!("invalid relative time '{s}'"));
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>()
        && let Ok(z) = dt.to_zoned(TimeZone::UTC)
    {
        return Ok(z.timestamp());
    }
    Err(format!("invalid time value '{s}'"))
}

fn parse_relative(rel: &str, now: Timestamp) -> Option<Timestamp> {
    let (sign, rest) = match rel.as_bytes().first()? {
        b'+' => (1i64, &rel[1..]),
        b'-' => (-1i64, &rel[1..]),
        _ => return None,
    };
    let unit = rest.chars().last()?;
    let n: i64 = rest[..rest.len() - unit.len_utf8()].parse().ok()?;
    let n = n.checked_mul(sign)?;
    let span = match unit {
        'm' => Span::new().try_minutes(n).ok()?,
        'h' => Span::new().try_hours(n).ok()?,
        'd' => Span::new().try_days(n).ok()?,
        'w' => Span::new().try_weeks(n).ok()?,
        'M' => Span::new().try_months(n).ok()?,
        'y' => Span::new().try_years(n).ok()?,
        _ => return None,
    };
    let z = now.to_zoned(TimeZone::UTC).checked_add(span).ok()?;
    Some(z.timestamp())
}
