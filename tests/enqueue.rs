//! `enqueue-vault` (docs/design.md §6) against moto's SQS, OpenBao and the Dynatrace
//! emulator: the messages land in the queue with at most `batchSize` paths each, every path
//! once and never the manager; fed back as an SQS event they rotate every path exactly once;
//! a dry run sends nothing; a missing `VAULT_QUEUE_URL` or an unusable queue fails clearly.

mod support;

use std::collections::BTreeSet;

use dynatrace_token_rotator::event::parse_action;
use rotator_sandbox::{Moto, sqs};
use serde_json::{Value, json};
use support::{VaultWorld, World};

/// A fresh queue on the shared moto; returns its URL.
async fn queue() -> String {
    let name = format!("rotations-{}", rotator_sandbox::unique_suffix());
    sqs::create_queue(&Moto::shared().sqs_client(), &name)
        .await
        .expect("create queue")
}

/// A Vault world whose `VAULT_QUEUE_URL` is a fresh queue, with `n` app paths under
/// `<root>/dynatrace/` (beside the manager at `<root>/dynatrace/master`).
async fn world_with_apps(n: usize) -> (VaultWorld, String, Vec<String>) {
    let url = queue().await;
    let w = VaultWorld::new(&[("VAULT_QUEUE_URL", &url)]).await;
    let mut paths = Vec::new();
    for i in 0..n {
        paths.push(w.app(&format!("app{i:02}"), json!({})).await.0);
    }
    (w, url, paths)
}

/// The SQS event Lambda would build from `received` (the shape of events/sqs-rotate-vault.json).
fn sqs_event(received: &[sqs::Received]) -> Value {
    let records: Vec<Value> = received
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id,
                "receiptHandle": "AQEB-test",
                "body": m.body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:rotations",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn messages_land_in_batches_and_fed_back_rotate_every_path_exactly_once() {
    let (w, url, paths) = world_with_apps(30).await;
    let manager = format!("{}/dynatrace/master", w.root);
    let prefix = format!("{}/dynatrace/", w.root);
    let out = w
        .invoke(json!({"action": "enqueue-vault", "prefix": prefix, "batchSize": 7}))
        .await
        .unwrap_or_else(|e| panic!("enqueue-vault failed: {e}"));
    assert_eq!(out["action"], "enqueue-vault");
    assert_eq!(out["dryRun"], false);
    assert_eq!(
        (out["paths"].as_u64(), out["messages"].as_u64()),
        (Some(30), Some(5)),
        "{out}"
    );
    assert_eq!(out["errors"], json!([]));

    let received = sqs::drain(&Moto::shared().sqs_client(), &url)
        .await
        .unwrap();
    assert_eq!(received.len(), 5, "{received:?}");
    let mut seen = Vec::new();
    for m in &received {
        let action = parse_action(&m.body).unwrap_or_else(|e| panic!("{}: {e}", m.body));
        assert_eq!(action.action, "rotate-vault");
        assert!(!action.force && !action.dry_run && action.prefix.is_none());
        assert!(
            !action.paths.is_empty() && action.paths.len() <= 7,
            "{}",
            m.body
        );
        seen.extend(action.paths);
    }
    assert!(!seen.contains(&manager), "the manager path was enqueued");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a path was enqueued twice: {seen:?}"
    );
    let expected: BTreeSet<&String> = paths.iter().collect();
    assert_eq!(unique, expected);

    // The queue's consumer: the function again, with the received messages as an SQS event.
    let answer = w.invoke(sqs_event(&received)).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    for p in &paths {
        let (version, doc) = w.read(p).await;
        assert_eq!(version, 2, "{p} was not rotated exactly once");
        assert!(doc["previousTokenId"].is_string(), "{p}: {doc}");
    }
    assert_eq!(w.read(&manager).await.0, 1, "the manager was rotated");
    w.assert_invariants(&paths).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_dry_run_sends_nothing_and_reports_the_counts() {
    let (w, url, paths) = world_with_apps(12).await;
    let out = w
        .invoke(json!({"action": "enqueue-vault", "prefix": format!("{}/dynatrace/", w.root), "batchSize": 5, "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(out["dryRun"], true);
    assert_eq!(
        (out["paths"].as_u64(), out["messages"].as_u64()),
        (Some(12), Some(3)),
        "{out}"
    );
    assert!(
        sqs::drain(&Moto::shared().sqs_client(), &url)
            .await
            .unwrap()
            .is_empty()
    );
    for p in &paths {
        assert_eq!(w.read(p).await.0, 1);
    }
    w.assert_no_leaks();
}

#[tokio::test]
async fn without_paths_it_enqueues_the_configured_ones_and_refuses_force() {
    let (mut w, url, paths) = world_with_apps(3).await;
    // The template's schedule sends {"action":"enqueue-vault"}: VAULT_ROTATE_* decide.
    w.deps.vault.as_mut().unwrap().config.rotate_prefix = Some(format!("{}/dynatrace/", w.root));
    let out = w.invoke(json!({"action": "enqueue-vault"})).await.unwrap();
    assert_eq!(
        (out["paths"].as_u64(), out["messages"].as_u64()),
        (Some(3), Some(1)),
        "{out}"
    );
    let received = sqs::drain(&Moto::shared().sqs_client(), &url)
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(parse_action(&received[0].body).unwrap().paths, paths);

    // `force` is refused: a message delivered twice would rotate its paths twice.
    let refused = w
        .invoke(json!({"action": "enqueue-vault", "paths": [&paths[0]], "force": true}))
        .await
        .unwrap_err();
    assert_eq!(refused.error_type, "MalformedEvent", "{}", refused.message);
    // Explicit paths (the manager among them is left out).
    let manager = format!("{}/dynatrace/master", w.root);
    let out = w
        .invoke(json!({"action": "enqueue-vault", "paths": [&paths[0], &manager]}))
        .await
        .unwrap();
    assert_eq!(
        (out["paths"].as_u64(), out["messages"].as_u64()),
        (Some(1), Some(1)),
        "{out}"
    );
    let received = sqs::drain(&Moto::shared().sqs_client(), &url)
        .await
        .unwrap();
    let action = parse_action(&received[0].body).unwrap();
    assert_eq!(
        (action.paths, action.force),
        (vec![paths[0].clone()], false)
    );

    // Nothing listed: nothing to send, and that is no failure.
    let out = w
        .invoke(json!({"action": "enqueue-vault", "prefix": format!("{}/nothing-here/", w.root)}))
        .await
        .unwrap();
    assert_eq!(
        (out["paths"].as_u64(), out["messages"].as_u64()),
        (Some(0), Some(0)),
        "{out}"
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_missing_queue_url_or_vault_is_a_config_error() {
    let w = VaultWorld::new(&[]).await;
    w.app("app1", json!({})).await;
    let e = w
        .invoke(json!({"action": "enqueue-vault", "prefix": format!("{}/dynatrace/", w.root)}))
        .await
        .unwrap_err();
    assert_eq!(e.error_type, "ConfigError");
    assert!(e.message.contains("VAULT_QUEUE_URL"), "{e}");
    // A dry run only lists and counts: it needs no queue.
    let dry = w
        .invoke(json!({"action": "enqueue-vault", "prefix": format!("{}/dynatrace/", w.root), "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(
        (dry["paths"].as_u64(), dry["messages"].as_u64()),
        (Some(1), Some(1)),
        "{dry}"
    );
    let e = w
        .invoke(json!({"action": "enqueue-vault", "dryRun": true}))
        .await
        .unwrap_err();
    assert_eq!(e.error_type, "ConfigError");
    w.assert_no_leaks();

    let url = queue().await;
    let sm = World::new(&[("VAULT_QUEUE_URL", &url)]).await;
    let e = sm
        .invoke(json!({"action": "enqueue-vault"}))
        .await
        .unwrap_err();
    assert_eq!(e.error_type, "ConfigError");
    assert!(e.message.contains("VAULT_ADDR"), "{e}");
    sm.assert_no_leaks();
}

#[tokio::test]
async fn a_queue_that_takes_nothing_fails_the_invocation_with_sqs_error() {
    let url = queue().await;
    let gone = format!("{}-deleted", url);
    let w = VaultWorld::new(&[("VAULT_QUEUE_URL", &gone)]).await;
    let (p, _) = w.app("app1", json!({})).await;
    let e = w
        .invoke(json!({"action": "enqueue-vault", "paths": [&p]}))
        .await
        .unwrap_err();
    assert_eq!(e.error_type, "SqsError", "{e}");
    assert!(e.message.contains("none of its 1"), "{e}");
    assert!(e.message.contains("sqs:SendMessage"), "{e}");
    assert_eq!(w.read(&p).await.0, 1);
    w.assert_no_leaks();
}
