//! The invocation kinds (docs/design.md §4, §6), decoded from the raw JSON payload so that one
//! function serves Secrets Manager, EventBridge (rules and Scheduler), SQS and direct
//! invocations, and so that a malformed event gets a clear error instead of a generic
//! deserialisation failure.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::{RotationToken, TokenValue};

/// Largest event accepted, in bytes of JSON, and the largest SQS record body (SQS's own
/// message limit). Lambda's own limit for synchronous calls is 6 MB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Largest SQS envelope accepted: Lambda's payload limit (6 MB). An SQS batch of ten 256 KiB
/// messages is legitimate, so the per-event limit applies to each record's body instead.
pub const MAX_SQS_ENVELOPE_BYTES: usize = 6 * 1024 * 1024;

/// Most records in one SQS event (Lambda's largest batch size for a standard queue).
pub const MAX_SQS_RECORDS: usize = 10_000;

/// One of the four steps of Secrets Manager's rotation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Step {
    /// `createSecret`.
    #[serde(rename = "createSecret")]
    Create,
    /// `setSecret`.
    #[serde(rename = "setSecret")]
    Set,
    /// `testSecret`.
    #[serde(rename = "testSecret")]
    Test,
    /// `finishSecret`.
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    /// Parses the camelCase wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "createSecret" => Self::Create,
            "setSecret" => Self::Set,
            "testSecret" => Self::Test,
            "finishSecret" => Self::Finish,
            _ => return None,
        })
    }
}

/// A rotation step invocation.
#[derive(Debug, Clone)]
pub struct StepRequest {
    /// `SecretId` (ARN on AWS, name on moto).
    pub secret_id: String,
    /// `ClientRequestToken`: the pending version id.
    pub client_request_token: String,
    /// `Step`.
    pub step: Step,
    /// `RotationToken`, forwarded to `PutSecretValue` when present.
    pub rotation_token: Option<RotationToken>,
}

/// A `rotate-vault` action (direct, scheduled with input, or an SQS record body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultAction {
    /// Always `rotate-vault`.
    pub action: String,
    /// Explicit KV paths.
    #[serde(default)]
    pub paths: Vec<String>,
    /// A prefix to list recursively instead.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Rotate even when not due.
    #[serde(default)]
    pub force: bool,
    /// Report only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Paths per `rotate-vault` message of `enqueue-vault` when the event gives no `batchSize`.
pub const DEFAULT_BATCH_SIZE: usize = 25;

/// Most paths per `rotate-vault` message: one message is one `rotate-vault` run of the
/// consumer, which must finish within the function's timeout.
pub const MAX_BATCH_SIZE: usize = 250;

/// An `enqueue-vault` action (fan-out, docs/design.md §6): the paths to list, like
/// `rotate-vault`, and how to split them into `rotate-vault` messages for `VAULT_QUEUE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueAction {
    /// Explicit KV paths (none and no `prefix`: `VAULT_ROTATE_PATHS` / `VAULT_ROTATE_PREFIX`).
    pub paths: Vec<String>,
    /// A prefix to list recursively instead.
    pub prefix: Option<String>,
    /// Most paths per message (`batchSize`, 1 to [`MAX_BATCH_SIZE`]).
    pub batch_size: usize,
    /// Report the counts; send nothing.
    pub dry_run: bool,
}

/// The wire form of an `enqueue-vault` action, before `batchSize` is checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnqueueWire {
    #[allow(dead_code)]
    action: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    batch_size: Option<u64>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    dry_run: bool,
}

/// One SQS record: its id and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsRecord {
    /// `messageId`, echoed in `batchItemFailures`.
    pub message_id: String,
    /// The body (a `rotate-vault` action, as JSON text), or why this record alone is refused
    /// (it is then listed in `batchItemFailures`; the other records still run).
    pub body: Result<String, EventError>,
}

/// The token a `revoke-leaked` action names: by id (`dt0c01.<public>`) or by value. A value
/// is held redacted and only ever sent to Dynatrace in a lookup's body.
#[derive(Debug, Clone)]
pub enum LeakedToken {
    /// `tokenId`.
    Id(String),
    /// `token`.
    Value(TokenValue),
}

/// A `revoke-leaked` action (incident response, docs/design.md §6).
#[derive(Debug, Clone)]
pub struct LeakAction {
    /// The leaked token.
    pub token: LeakedToken,
    /// Report only; change nothing.
    pub dry_run: bool,
}

/// What the function was invoked to do.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// A Secrets Manager rotation step.
    Rotation(StepRequest),
    /// Rotate Vault paths.
    RotateVault(VaultAction),
    /// An EventBridge scheduled event without input: rotate the configured Vault paths.
    Scheduled,
    /// SQS fan-out.
    Sqs(Vec<SqsRecord>),
    /// Clean up unreferenced minted tokens.
    Sweep {
        /// Report only.
        dry_run: bool,
    },
    /// Token hygiene report.
    Audit,
    /// Disable a leaked token and rotate every secret holding it.
    RevokeLeaked(LeakAction),
    /// Rotate the Vault manager document.
    RotateManager {
        /// Report only.
        dry_run: bool,
    },
    /// Send `rotate-vault` messages for the listed Vault paths to `VAULT_QUEUE_URL`.
    EnqueueVault(EnqueueAction),
}

impl Invocation {
    /// The `Action` dimension of this invocation's metrics: the step name for Secrets Manager
    /// (`createSecret` …), the action otherwise (`rotate-vault`, `sqs`, `sweep`, `audit`).
    pub fn action_name(&self) -> &'static str {
        match self {
            Invocation::Rotation(r) => match r.step {
                Step::Create => "createSecret",
                Step::Set => "setSecret",
                Step::Test => "testSecret",
                Step::Finish => "finishSecret",
            },
            Invocation::RotateVault(_) | Invocation::Scheduled => "rotate-vault",
            Invocation::Sqs(_) => "sqs",
            Invocation::Sweep { .. } => "sweep",
            Invocation::Audit => "audit",
            Invocation::RevokeLeaked(_) => "revoke-leaked",
            Invocation::RotateManager { .. } => "rotate-manager",
            Invocation::EnqueueVault(_) => "enqueue-vault",
        }
    }
}

/// Why an event was not understood. Never echoes values (the event may carry a
/// `RotationToken`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Structurally wrong.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// `Step` is not one of the four.
    #[error("unknown Step `{0}`: expected createSecret, setSecret, testSecret or finishSecret")]
    UnknownStep(String),
    /// `action` is not known.
    #[error(
        "unknown action `{0}`: expected rotate-vault, enqueue-vault, sweep, audit, revoke-leaked or rotate-manager"
    )]
    UnknownAction(String),
}

impl EventError {
    /// The `errorType` this failure is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::UnknownStep(_) => "UnknownStep",
            EventError::UnknownAction(_) => "UnknownAction",
            EventError::Malformed(_) => "MalformedEvent",
        }
    }
}

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a str, EventError> {
    match v.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 2048 => Ok(s),
        Some(Value::String(_)) => Err(EventError::Malformed(format!(
            "`{name}` must be a non-empty string of at most 2048 characters"
        ))),
        Some(_) => Err(EventError::Malformed(format!("`{name}` must be a string"))),
        None => Err(EventError::Malformed(format!("`{name}` is missing"))),
    }
}

fn shown(s: &str) -> String {
    crate::secret::redact_text(s, 64)
}

/// Decodes a payload into an [`Invocation`].
pub fn parse(v: Value) -> Result<Invocation, EventError> {
    if !v.is_object() {
        return Err(EventError::Malformed(
            "the event must be a JSON object".into(),
        ));
    }
    if v.get("Step").is_some() {
        let step_name = field(&v, "Step")?;
        let step =
            Step::parse(step_name).ok_or_else(|| EventError::UnknownStep(shown(step_name)))?;
        let rotation_token = match v.get("RotationToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(RotationToken::new(s.clone())),
            Some(_) => {
                return Err(EventError::Malformed(
                    "`RotationToken` must be a string".into(),
                ));
            }
        };
        return Ok(Invocation::Rotation(StepRequest {
            secret_id: field(&v, "SecretId")?.to_owned(),
            client_request_token: field(&v, "ClientRequestToken")?.to_owned(),
            step,
            rotation_token,
        }));
    }
    if let Some(records) = v.get("Records") {
        let records = records
            .as_array()
            .ok_or_else(|| EventError::Malformed("`Records` must be an array".into()))?;
        if records.len() > MAX_SQS_RECORDS {
            return Err(EventError::Malformed(format!(
                "{} SQS records in one event; at most {MAX_SQS_RECORDS} are accepted",
                records.len()
            )));
        }
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            if r.get("eventSource").and_then(Value::as_str) != Some("aws:sqs") {
                return Err(EventError::Malformed(
                    "only SQS records (eventSource aws:sqs) are supported".into(),
                ));
            }
            let body = match r.get("body") {
                Some(Value::String(b)) if b.len() <= MAX_EVENT_BYTES => Ok(b.clone()),
                Some(Value::String(b)) => Err(EventError::Malformed(format!(
                    "the SQS message body is {} bytes; at most {MAX_EVENT_BYTES} are accepted",
                    b.len()
                ))),
                Some(_) => Err(EventError::Malformed(
                    "the SQS message `body` must be a string".into(),
                )),
                None => Err(EventError::Malformed(
                    "the SQS message has no `body`".into(),
                )),
            };
            out.push(SqsRecord {
                message_id: field(r, "messageId")?.to_owned(),
                body,
            });
        }
        return Ok(Invocation::Sqs(out));
    }
    if v.get("source").and_then(Value::as_str) == Some("aws.events")
        || v.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
    {
        return Ok(Invocation::Scheduled);
    }
    match v.get("action") {
        Some(Value::String(a)) => match a.as_str() {
            "rotate-vault" => serde_json::from_value(v.clone())
                .map(Invocation::RotateVault)
                .map_err(|e| EventError::Malformed(format!("rotate-vault action: {}", shown(&e.to_string())))),
            "sweep" => Ok(Invocation::Sweep { dry_run: v.get("dryRun").and_then(Value::as_bool).unwrap_or(false) }),
            "audit" => Ok(Invocation::Audit),
            "revoke-leaked" => parse_leak(&v).map(Invocation::RevokeLeaked),
            "enqueue-vault" => parse_enqueue(v).map(Invocation::EnqueueVault),
            "rotate-manager" => {
                only_fields(&v, &["action", "dryRun"], "rotate-manager")?;
                Ok(Invocation::RotateManager { dry_run: dry_run(&v)? })
            }
            other => Err(EventError::UnknownAction(shown(other))),
        },
        Some(_) => Err(EventError::Malformed("`action` must be a string".into())),
        None => Err(EventError::Malformed(
            "not a Secrets Manager rotation step (Step), an action (action), a scheduled event or an SQS event".into(),
        )),
    }
}

/// Refuses fields other than `allowed` (a misspelt `dryRun` must not run for real). Names
/// only the field, never its value.
fn only_fields(v: &Value, allowed: &[&str], action: &str) -> Result<(), EventError> {
    let unknown = v
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .find(|k| !allowed.contains(&k.as_str()));
    match unknown {
        Some(k) => Err(EventError::Malformed(format!(
            "{action} action: unknown field `{}` (expected {})",
            shown(k),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The optional `dryRun` flag.
fn dry_run(v: &Value) -> Result<bool, EventError> {
    match v.get("dryRun") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(EventError::Malformed(
            "`dryRun` must be true or false".into(),
        )),
    }
}

/// Decodes `{"action":"revoke-leaked","tokenId"|"token", "dryRun"?}`: exactly one of the two
/// names the token. A value that is not a token is refused without echoing it.
fn parse_leak(v: &Value) -> Result<LeakAction, EventError> {
    only_fields(
        v,
        &["action", "tokenId", "token", "dryRun"],
        "revoke-leaked",
    )?;
    let token = match (v.get("tokenId"), v.get("token")) {
        (Some(_), None) => {
            let id = field(v, "tokenId")?;
            let well_formed = id.split_once('.').is_some_and(|(prefix, rest)| {
                prefix.len() == 6
                    && prefix.starts_with("dt0")
                    && rest.len() == 24
                    && rest
                        .bytes()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            });
            if !well_formed {
                return Err(EventError::Malformed(
                    "revoke-leaked: `tokenId` must be a token id (`dt0c01.<24 upper-case letters/digits>`); to name a token by its value use `token`".into(),
                ));
            }
            LeakedToken::Id(id.to_owned())
        }
        (None, Some(Value::String(value))) => LeakedToken::Value(
            TokenValue::parse(value)
                .map_err(|e| EventError::Malformed(format!("revoke-leaked: `token`: {e}")))?,
        ),
        (None, Some(_)) => {
            return Err(EventError::Malformed(
                "revoke-leaked: `token` must be a string".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(EventError::Malformed(
                "revoke-leaked: give either `tokenId` or `token`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(EventError::Malformed(
                "revoke-leaked: `tokenId` or `token` names the leaked token".into(),
            ));
        }
    };
    Ok(LeakAction {
        token,
        dry_run: dry_run(v)?,
    })
}

/// Decodes `{"action":"enqueue-vault","paths"|"prefix"?,"batchSize"?,"dryRun"?}` (`force` is
/// refused: see the error).
fn parse_enqueue(v: Value) -> Result<EnqueueAction, EventError> {
    let wire: EnqueueWire = serde_json::from_value(v).map_err(|e| {
        EventError::Malformed(format!("enqueue-vault action: {}", shown(&e.to_string())))
    })?;
    let batch_size = match wire.batch_size {
        None => DEFAULT_BATCH_SIZE,
        Some(n) if (1..=MAX_BATCH_SIZE as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(EventError::Malformed(format!(
                "enqueue-vault action: `batchSize` {n} is not allowed: use 1 to {MAX_BATCH_SIZE} paths per message"
            )));
        }
    };
    if wire.force {
        return Err(EventError::Malformed(
            "enqueue-vault does not take `force`: SQS delivers a message at least once and a failed batch runs again, so a forced message could rotate its paths twice and revoke the token consumers just received; use rotate-vault with `force` for the paths that must rotate now".into(),
        ));
    }
    Ok(EnqueueAction {
        paths: wire.paths,
        prefix: wire.prefix,
        batch_size,
        dry_run: wire.dry_run,
    })
}

/// Parses an SQS record body as a `rotate-vault` action.
pub fn parse_action(body: &str) -> Result<VaultAction, EventError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|_| EventError::Malformed("the SQS message body is not JSON".into()))?;
    match parse(v)? {
        Invocation::RotateVault(a) => Ok(a),
        _ => Err(EventError::Malformed(
            "an SQS message body must be a rotate-vault action".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_sample_event_parses_as_the_invocation_its_name_says() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let inv = parse(v).unwrap_or_else(|e| panic!("events/{name}.json: {e}"));
            let action = inv.action_name();
            let dry = name.ends_with("dry-run");
            let expected = match name.trim_end_matches("-dry-run") {
                "secrets-manager-create" => "createSecret",
                "secrets-manager-set" => "setSecret",
                "secrets-manager-test" => "testSecret",
                "secrets-manager-finish" => "finishSecret",
                "vault-rotate" | "vault-rotate-prefix" | "eventbridge-scheduled" => "rotate-vault",
                "sqs-rotate-vault" => "sqs",
                other => other,
            };
            assert_eq!(action, expected, "events/{name}.json");
            let is_dry = match &inv {
                Invocation::RotateVault(a) => a.dry_run,
                Invocation::RevokeLeaked(a) => a.dry_run,
                Invocation::RotateManager { dry_run } => *dry_run,
                Invocation::Sweep { dry_run } => *dry_run,
                Invocation::EnqueueVault(a) => a.dry_run,
                _ => false,
            };
            assert_eq!(is_dry, dry, "events/{name}.json: dryRun");
            seen += 1;
        }
        assert!(
            seen >= 17,
            "only {seen} sample events found in {}",
            dir.display()
        );
    }

    #[test]
    fn a_leak_is_named_by_id_or_by_value_and_the_value_is_never_echoed() {
        let value = format!("dt0c01.{}.{}", "A".repeat(24), "S".repeat(64));
        let Invocation::RevokeLeaked(a) =
            parse(json!({"action":"revoke-leaked","token": value, "dryRun": true})).unwrap()
        else {
            panic!()
        };
        assert!(a.dry_run);
        assert!(matches!(&a.token, LeakedToken::Value(v) if v.expose() == value));
        assert!(!format!("{a:?}").contains(&"S".repeat(64)));
        let id = format!("dt0c01.{}", "A".repeat(24));
        let Invocation::RevokeLeaked(a) =
            parse(json!({"action":"revoke-leaked","tokenId": id})).unwrap()
        else {
            panic!()
        };
        assert!(!a.dry_run && matches!(&a.token, LeakedToken::Id(i) if *i == id));
        let almost = format!("dt0c01.{}.{}", "A".repeat(24), "s".repeat(64));
        for bad in [
            json!({"action":"revoke-leaked"}),
            json!({"action":"revoke-leaked","tokenId": id, "token": value}),
            json!({"action":"revoke-leaked","tokenId": value}),
            json!({"action":"revoke-leaked","token": almost}),
            json!({"action":"revoke-leaked","tokenId": id, "dryrun": true}),
            json!({"action":"revoke-leaked","tokenId": id, "dryRun": "yes"}),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.code(), "MalformedEvent", "{bad}");
            assert!(
                !e.to_string().contains(&"S".repeat(64))
                    && !e.to_string().contains(&"s".repeat(64)),
                "{e}"
            );
        }
        assert!(matches!(
            parse(json!({"action":"rotate-manager","dryRun":true})).unwrap(),
            Invocation::RotateManager { dry_run: true }
        ));
        assert!(parse(json!({"action":"rotate-manager","force":true})).is_err());
    }

    #[test]
    fn an_enqueue_action_takes_paths_or_a_prefix_and_a_bounded_batch_size() {
        let Invocation::EnqueueVault(a) = parse(json!({"action":"enqueue-vault"})).unwrap() else {
            panic!()
        };
        assert_eq!(
            a,
            EnqueueAction {
                paths: vec![],
                prefix: None,
                batch_size: DEFAULT_BATCH_SIZE,
                dry_run: false
            }
        );
        let Invocation::EnqueueVault(a) = parse(
            json!({"action":"enqueue-vault","prefix":"dynatrace/","batchSize":7,"dryRun":true}),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (a.prefix.as_deref(), a.batch_size, a.dry_run),
            (Some("dynatrace/"), 7, true)
        );
        let e = parse(json!({"action":"enqueue-vault","prefix":"dynatrace/","force":true}))
            .unwrap_err();
        assert!(e.to_string().contains("at least once"), "{e}");
        let Invocation::EnqueueVault(a) =
            parse(json!({"action":"enqueue-vault","paths":["a","b"],"batchSize":250})).unwrap()
        else {
            panic!()
        };
        assert_eq!((a.paths.len(), a.batch_size), (2, MAX_BATCH_SIZE));
        for bad in [
            json!({"action":"enqueue-vault","batchSize":0}),
            json!({"action":"enqueue-vault","batchSize":251}),
            json!({"action":"enqueue-vault","batchSize":-1}),
            json!({"action":"enqueue-vault","batchSize":2.5}),
            json!({"action":"enqueue-vault","batchSize":"7"}),
            json!({"action":"enqueue-vault","dryrun":true}),
            json!({"action":"enqueue-vault","paths":"a"}),
        ] {
            assert_eq!(
                parse(bad.clone()).unwrap_err().code(),
                "MalformedEvent",
                "{bad}"
            );
        }
        // A message body is a rotate-vault action, never an enqueue-vault one (no loops).
        assert!(parse_action(r#"{"action":"enqueue-vault"}"#).is_err());
    }

    #[test]
    fn decodes_each_kind() {
        let step = parse(json!({"Step":"createSecret","SecretId":"s","ClientRequestToken":"v","RotationToken":"SECRET-RT"})).unwrap();
        let Invocation::Rotation(r) = step else {
            panic!()
        };
        assert_eq!(r.step, Step::Create);
        assert!(!format!("{r:?}").contains("SECRET-RT"));
        assert!(matches!(
            parse(json!({"source":"aws.events","detail-type":"Scheduled Event","detail":{}}))
                .unwrap(),
            Invocation::Scheduled
        ));
        let Invocation::RotateVault(a) =
            parse(json!({"action":"rotate-vault","paths":["a"],"dryRun":true})).unwrap()
        else {
            panic!()
        };
        assert!(a.dry_run && a.paths == ["a"]);
        assert!(matches!(
            parse(json!({"action":"sweep"})).unwrap(),
            Invocation::Sweep { dry_run: false }
        ));
        let Invocation::Sqs(rs) =
            parse(json!({"Records":[{"eventSource":"aws:sqs","messageId":"m1","body":"{}"}]}))
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(rs[0].message_id, "m1");
        assert_eq!(rs[0].body.as_deref(), Ok("{}"));
    }

    #[test]
    fn an_oversized_sqs_body_refuses_that_record_only() {
        let big = format!(
            r#"{{"action":"rotate-vault","paths":["{}"]}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        let small = r#"{"action":"rotate-vault","paths":["p"]}"#;
        let Invocation::Sqs(rs) = parse(json!({"Records":[
            {"eventSource":"aws:sqs","messageId":"big","body":big},
            {"eventSource":"aws:sqs","messageId":"small","body":small},
            {"eventSource":"aws:sqs","messageId":"none"},
        ]}))
        .unwrap() else {
            panic!()
        };
        assert!(matches!(&rs[0].body, Err(EventError::Malformed(m)) if m.contains("bytes")));
        assert_eq!(rs[1].body.as_deref(), Ok(small));
        assert!(rs[2].body.is_err());
        // A body longer than the 2048 characters allowed for ids is fine.
        let long = format!(
            r#"{{"action":"rotate-vault","paths":[{}]}}"#,
            (0..300)
                .map(|i| format!("\"team/app{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(long.len() > 2048);
        let Invocation::Sqs(rs) =
            parse(json!({"Records":[{"eventSource":"aws:sqs","messageId":"m","body":long}]}))
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            parse_action(rs[0].body.as_deref().unwrap())
                .unwrap()
                .paths
                .len(),
            300
        );
    }

    #[test]
    fn refuses_bad_events_clearly() {
        assert_eq!(
            parse(json!({"Step":"rotateSecret","SecretId":"s","ClientRequestToken":"v"}))
                .unwrap_err(),
            EventError::UnknownStep("rotateSecret".into())
        );
        assert!(matches!(
            parse(json!({"Step":"createSecret","SecretId":"s"})).unwrap_err(),
            EventError::Malformed(_)
        ));
        assert!(matches!(
            parse(json!([1, 2])).unwrap_err(),
            EventError::Malformed(_)
        ));
        assert!(matches!(
            parse(json!({"hello":"world"})).unwrap_err(),
            EventError::Malformed(_)
        ));
        assert!(matches!(
            parse(json!({"action":"rotate-vault","pathz":[]})).unwrap_err(),
            EventError::Malformed(_)
        ));
        assert!(matches!(
            parse(json!({"action":"dance"})).unwrap_err(),
            EventError::UnknownAction(_)
        ));
    }
}
