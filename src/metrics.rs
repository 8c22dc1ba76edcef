//! CloudWatch embedded-metric-format (EMF) lines: one per invocation, printed on stdout where
//! Lambda's log agent turns them into metrics without a `PutMetricData` call (namespace
//! `DynatraceTokenRotator`, dimension `Action`, and once without dimensions so that one alarm
//! covers every action). Counts and durations only, never token data.

use serde_json::{Map, Value, json};

/// The metric namespace.
pub const NAMESPACE: &str = "DynatraceTokenRotator";

/// The metrics an invocation can report, in the order they are declared.
pub const NAMES: [&str; 7] = [
    "Rotated",
    "Skipped",
    "Failed",
    "Revoked",
    "Disabled",
    "Deleted",
    "DurationMs",
];

/// The counts of one invocation, read from its answer: `rotated`, `skipped` and `failed`
/// numbers, the lengths of `revoked`, `disabled` and `deleted`, failed records
/// (`batchItemFailures`) and problems (`errors`) as `Failed`. `answer` is `None` when the
/// invocation failed as a whole (one `Failed`).
pub fn counts(answer: Option<&Value>) -> Vec<(&'static str, u64)> {
    let Some(v) = answer else {
        return vec![("Failed", 1)];
    };
    let number = |k: &str| v.get(k).and_then(Value::as_u64);
    let length = |k: &str| v.get(k).and_then(Value::as_array).map(|a| a.len() as u64);
    let mut out = Vec::new();
    // A Secrets Manager rotation is done when its finishSecret moved AWSCURRENT.
    if v.get("step").and_then(Value::as_str) == Some("finishSecret") {
        let finished = v.get("status").and_then(Value::as_str) == Some("finished");
        out.push(("Rotated", u64::from(finished)));
    }
    for (name, key) in [("Rotated", "rotated"), ("Skipped", "skipped")] {
        if let Some(n) = number(key) {
            out.push((name, n));
        }
    }
    // revoke-leaked: the secrets it rotated or failed to, and the token it disabled.
    let secrets_with = |status: &str| {
        v.get("secrets").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter(|s| s.get("status").and_then(Value::as_str) == Some(status))
                .count() as u64
        })
    };
    if let Some(n) = secrets_with("rotated") {
        out.push(("Rotated", n));
    }
    if let Some(disabled) = v.get("disabled").and_then(Value::as_bool) {
        out.push(("Disabled", u64::from(disabled)));
    }
    let failed = number("failed").unwrap_or(0)
        + length("batchItemFailures").unwrap_or(0)
        + length("errors").unwrap_or(0)
        + secrets_with("failed").unwrap_or(0);
    out.push(("Failed", failed));
    for (name, key) in [
        ("Revoked", "revoked"),
        ("Disabled", "disabled"),
        ("Deleted", "deleted"),
    ] {
        if let Some(n) = length(key) {
            out.push((name, n));
        }
    }
    out
}

/// The EMF record for `action` with `values` and the invocation's duration, stamped `now_ms`.
pub fn line(action: &str, values: &[(&'static str, u64)], duration_ms: u64, now_ms: i64) -> Value {
    let mut values = values.to_vec();
    values.push(("DurationMs", duration_ms));
    let declared: Vec<Value> = values
        .iter()
        .map(|(name, _)| {
            let unit = if *name == "DurationMs" {
                "Milliseconds"
            } else {
                "Count"
            };
            json!({"Name": name, "Unit": unit})
        })
        .collect();
    let mut record = Map::new();
    record.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                // By action, and once without dimensions for alarms over every action.
                "Dimensions": [["Action"], []],
                "Metrics": declared,
            }]
        }),
    );
    record.insert("Action".into(), json!(action));
    for (name, value) in values {
        record.insert(name.into(), json!(value));
    }
    Value::Object(record)
}

/// Prints the EMF line of one invocation on stdout (a line of its own, not a log record).
pub fn emit(action: &str, answer: Option<&Value>, duration: std::time::Duration) {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let record = line(action, &counts(answer), duration.as_millis() as u64, now_ms);
    println!("{record}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_the_answer() {
        let vault =
            json!({"action":"rotate-vault","rotated":3,"skipped":1,"failed":2,"results":[]});
        assert_eq!(
            counts(Some(&vault)),
            [("Rotated", 3), ("Skipped", 1), ("Failed", 2)]
        );
        let sweep = json!({"disabled":["a","b"],"deleted":["c"],"errors":[{"x":1}]});
        assert_eq!(
            counts(Some(&sweep)),
            [("Failed", 1), ("Disabled", 2), ("Deleted", 1)]
        );
        let step = json!({"step":"finishSecret","status":"finished","revoked":["t"]});
        assert_eq!(
            counts(Some(&step)),
            [("Rotated", 1), ("Failed", 0), ("Revoked", 1)]
        );
        let step = json!({"step":"createSecret","status":"created","revoked":[]});
        assert_eq!(counts(Some(&step)), [("Failed", 0), ("Revoked", 0)]);
        let sqs = json!({"batchItemFailures":[{"itemIdentifier":"m"}]});
        assert_eq!(counts(Some(&sqs)), [("Failed", 1)]);
        assert_eq!(counts(None), [("Failed", 1)]);
    }

    #[test]
    fn the_line_declares_every_value_it_carries() {
        let l = line(
            "sweep",
            &[("Failed", 0), ("Deleted", 4)],
            120,
            1_700_000_000_000,
        );
        let declared: Vec<&str> = l["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(declared, ["Failed", "Deleted", "DurationMs"]);
        for name in declared {
            assert!(NAMES.contains(&name));
            assert!(l[name].is_u64(), "{name}");
        }
        assert_eq!(l["Action"], "sweep");
        assert_eq!(l["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Action"], []])
        );
    }
}
