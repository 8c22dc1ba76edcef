//! Fault injection, latency, the request log, the control endpoint, shutdown and the binary.

mod common;

use std::time::{Duration, Instant};

use common::{assert_envelope, client, parts, req, setup};
use dynatrace_emulator::{FaultKind, FaultRule, PathMatch, RequestRecord, SeedToken};
use reqwest::Method;
use serde_json::{Value, json};

const CREATE: &str = "/api/v2/apiTokens";
const LOOKUP: &str = "/api/v2/apiTokens/lookup";

fn exact_create(kind: FaultKind) -> FaultRule {
    FaultRule::new("POST", PathMatch::Exact(CREATE.into()), kind)
}

#[tokio::test]
async fn lost_response_performs_the_request_then_drops_the_connection() {
    let (emu, mgr) = setup().await;
    emu.add_fault(exact_create(FaultKind::LostResponse).times(1));
    let before = emu.tokens().len();

    let started = Instant::now();
    let err = req(&emu, Method::POST, CREATE, &mgr.value)
        .json(&json!({"name": "lost", "scopes": ["metrics.read"]}))
        .send()
        .await
        .expect_err("the response must be lost");
    assert!(!err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The token was created although the client never saw it.
    let tokens = emu.tokens();
    assert_eq!(tokens.len(), before + 1);
    assert!(
        tokens
            .iter()
            .any(|t| t.name == "lost" && t.owner == "manager@example.com")
    );
    assert_eq!(emu.issued_values().len(), 2);

    // Lookup (same prefix, different exact path) is unaffected, and the rule is used up.
    let resp = req(&emu, Method::POST, LOOKUP, &mgr.value)
        .json(&json!({"token": mgr.value}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = req(&emu, Method::POST, CREATE, &mgr.value)
        .json(&json!({"name": "second", "scopes": ["metrics.read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);

    assert_eq!(
        emu.requests(),
        vec![
            RequestRecord {
                method: "POST".into(),
                path: CREATE.into(),
                status: None
            },
            RequestRecord {
                method: "POST".into(),
                path: LOOKUP.into(),
                status: Some(200)
            },
            RequestRecord {
                method: "POST".into(),
                path: CREATE.into(),
                status: Some(201)
            },
        ]
    );
}

#[tokio::test]
async fn status_fault_answers_without_performing_and_sets_retry_after() {
    let (emu, mgr) = setup().await;
    emu.add_fault(exact_create(FaultKind::throttled(7)).times(1));
    let before = emu.tokens().len();

    let resp = req(&emu, Method::POST, CREATE, &mgr.value)
        .json(&json!({"name": "x", "scopes": ["metrics.read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let (_, body) = parts(resp).await;
    assert_envelope(&body, 429);
    assert_eq!(emu.tokens().len(), before);
    // Not performed: the caller's last use is not even recorded.
    assert!(emu.token(&mgr.id).unwrap().last_used.is_none());

    // 5xx without Retry-After, prefix match on any method.
    emu.add_fault(
        FaultRule::new(
            "",
            PathMatch::Prefix("/api/v2/apiTokens/".into()),
            FaultKind::status(503),
        )
        .times(1),
    );
    let resp = req(
        &emu,
        Method::GET,
        &format!("/api/v2/apiTokens/{}", mgr.id),
        &mgr.value,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_none());
    let resp = req(
        &emu,
        Method::GET,
        &format!("/api/v2/apiTokens/{}", mgr.id),
        &mgr.value,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn skip_and_times_count_matching_requests_only() {
    let (emu, mgr) = setup().await;
    emu.add_fault(
        FaultRule::new(
            "post",
            PathMatch::Exact(LOOKUP.into()),
            FaultKind::status(500),
        )
        .skip(1)
        .times(2),
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        // A non-matching request in between does not count.
        let resp = req(&emu, Method::GET, CREATE, &mgr.value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let resp = req(&emu, Method::POST, LOOKUP, &mgr.value)
            .json(&json!({"token": mgr.value}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 500, 500, 200]);
    let lookups: Vec<Option<u16>> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path == LOOKUP)
        .map(|r| r.status)
        .collect();
    assert_eq!(lookups, vec![Some(200), Some(500), Some(500), Some(200)]);

    emu.clear_faults();
    emu.add_fault(FaultRule::any(FaultKind::status(502)));
    let resp = req(&emu, Method::GET, CREATE, &mgr.value)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    emu.clear_faults();
    let resp = req(&emu, Method::GET, CREATE, &mgr.value)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn delay_redirect_and_latency() {
    let (emu, mgr) = setup().await;
    emu.add_fault(
        FaultRule::new(
            "GET",
            PathMatch::Exact(CREATE.into()),
            FaultKind::Delay(Duration::from_millis(300)),
        )
        .times(1),
    );
    let started = Instant::now();
    let resp = req(&emu, Method::GET, CREATE, &mgr.value)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    req(&emu, Method::GET, CREATE, &mgr.value)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));

    // A delayed request still hits the client timeout.
    emu.add_fault(FaultRule::any(FaultKind::Delay(Duration::from_secs(3))).times(1));
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .get(format!("{}{CREATE}", emu.url()))
        .header("Authorization", format!("Api-Token {}", mgr.value))
        .send()
        .await
        .expect_err("timeout");
    assert!(err.is_timeout());

    emu.add_fault(
        FaultRule::any(FaultKind::Redirect {
            location: "http://elsewhere.invalid/api".into(),
        })
        .times(1),
    );
    let before = emu.tokens().len();
    let resp = req(&emu, Method::POST, CREATE, &mgr.value)
        .json(&json!({"name": "x", "scopes": ["metrics.read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 307);
    assert_eq!(resp.headers()["location"], "http://elsewhere.invalid/api");
    assert_eq!(emu.tokens().len(), before);

    emu.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    req(&emu, Method::GET, CREATE, &mgr.value)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    emu.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn control_endpoint_drives_the_emulator() {
    let (emu, _) = setup().await;
    let c = client();
    let base = emu.url();

    let seeded: Value = c
        .post(format!("{base}/_emulator/tokens"))
        .json(&json!({"name": "seeded", "scopes": ["apiTokens.read", "ViewReport"], "owner": "bob@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let value = seeded["value"].as_str().unwrap().to_string();
    let id = seeded["id"].as_str().unwrap().to_string();
    let state = emu.token(&id).unwrap();
    assert_eq!(state.owner, "bob@example.com");
    assert!(state.enabled);
    assert_eq!(state.scopes, vec!["apiTokens.read", "ViewReport"]);

    let text = c
        .get(format!("{base}/_emulator/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(list.len(), 2);
    for v in emu.issued_values() {
        assert!(!text.contains(&v), "control list leaked a value");
    }

    let resp = c
        .post(format!("{base}/_emulator/faults"))
        .json(&json!({"method": "GET", "path": {"Exact": "/api/v2/apiTokens"}, "times": 1, "kind": {"Status": {"status": 429, "retry_after_secs": 2}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let resp = req(&emu, Method::GET, CREATE, &value).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let resp = req(&emu, Method::GET, CREATE, &value).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    c.post(format!("{base}/_emulator/faults"))
        .json(&json!({"kind": "LostResponse"}))
        .send()
        .await
        .unwrap();
    assert!(req(&emu, Method::GET, CREATE, &value).send().await.is_err());
    // Control calls are exempt from faults.
    let resp = c
        .delete(format!("{base}/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        req(&emu, Method::GET, CREATE, &value)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    let resp = c
        .put(format!("{base}/_emulator/latency"))
        .json(&json!({"millis": 150}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let started = Instant::now();
    req(&emu, Method::GET, CREATE, &value).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));

    let records: Vec<RequestRecord> = c
        .get(format!("{base}/_emulator/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<Option<u16>> = records.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![Some(429), Some(200), None, Some(200), Some(200)]
    );
    assert!(
        records
            .iter()
            .all(|r| r.path == CREATE && r.method == "GET")
    );
}

#[tokio::test]
async fn fault_rules_round_trip_as_json() {
    let rule = FaultRule::new(
        "POST",
        PathMatch::Prefix("/api/v2/".into()),
        FaultKind::Delay(Duration::from_millis(1500)),
    )
    .skip(2)
    .times(3);
    let v = serde_json::to_value(&rule).unwrap();
    assert_eq!(v["kind"], json!({"Delay": 1500}));
    assert_eq!(v["path"], json!({"Prefix": "/api/v2/"}));
    assert_eq!(serde_json::from_value::<FaultRule>(v).unwrap(), rule);
    let minimal: FaultRule =
        serde_json::from_value(json!({"kind": {"Redirect": {"location": "http://x"}}})).unwrap();
    assert_eq!(minimal.path, PathMatch::Any);
    assert_eq!(minimal.method, None);
    assert_eq!(minimal.skip, 0);
    assert_eq!(minimal.times, u32::MAX);
}

#[tokio::test]
async fn shutdown_and_drop_stop_serving() {
    let (emu, mgr) = setup().await;
    let url = format!("{}{CREATE}", emu.url());
    let clone = emu.clone();
    drop(clone);
    assert_eq!(
        req(&emu, Method::GET, CREATE, &mgr.value)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    emu.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(client().get(&url).send().await.is_err());

    let emu = dynatrace_emulator::Emulator::start().await;
    let url = format!("{}{CREATE}", emu.url());
    drop(emu);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(client().get(&url).send().await.is_err());
}

#[tokio::test]
async fn seeded_tokens_keep_given_dates() {
    let (emu, _) = setup().await;
    let mut spec = SeedToken::new("dated", &["metrics.read"]);
    spec.creation = Some("2023-05-06T07:08:09.123456Z".parse().unwrap());
    spec.expiration = Some("2030-01-01T00:00:00Z".parse().unwrap());
    let s = emu.seed_token(spec);
    let t = emu.token(&s.id).unwrap();
    assert_eq!(t.creation.to_string(), "2023-05-06T07:08:09.123Z");
    assert_eq!(t.modified, t.creation);
    assert_eq!(t.expiration.unwrap().to_string(), "2030-01-01T00:00:00Z");
}

#[test]
fn binary_prints_listening_line_and_stops_on_stdin_eof() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_dynatrace-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening ")
        .expect("listening line")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        client()
            .get(format!("{url}/api/v2/apiTokens"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);

    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "emulator did not exit on stdin EOF"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn one_pooled_client_survives_a_lost_response() {
    let (emu, mgr) = setup().await;
    let c = client();
    let get = || {
        c.get(format!("{}{CREATE}", emu.url()))
            .header("Authorization", format!("Api-Token {}", mgr.value))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(get().await.unwrap().status().as_u16(), 200);
    }
    emu.add_fault(FaultRule::any(FaultKind::LostResponse).skip(1).times(1));
    assert_eq!(get().await.unwrap().status().as_u16(), 200);
    assert!(get().await.is_err());
    assert_eq!(get().await.unwrap().status().as_u16(), 200);
    let statuses: Vec<Option<u16>> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![Some(200), Some(200), Some(200), Some(200), None, Some(200)]
    );
}

#[tokio::test]
async fn capacity_sheds_requests_past_the_limit_with_a_bare_429() {
    let (emu, mgr) = setup().await;
    emu.set_latency(Duration::from_millis(150));
    emu.set_capacity(Some(3));
    let calls = (0..8).map(|_| {
        req(&emu, Method::POST, LOOKUP, &mgr.value)
            .json(&json!({"token": mgr.value}))
            .send()
    });
    let answers = futures::future::join_all(calls).await;
    let mut ok = 0;
    let mut shed = 0;
    for a in answers {
        let resp = a.unwrap();
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert!(resp.headers().get("retry-after").is_none());
                let body: Value = resp.json().await.unwrap();
                assert_envelope(&body, 429);
                shed += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, shed), (3, 5), "three served at once, the rest shed");
    let load = emu.load();
    assert_eq!(load.peak_in_flight, 3);
    assert_eq!(load.shed, 5);
    // Once the slots are free, requests are served again; lifting the limit serves all.
    let resp = req(&emu, Method::POST, LOOKUP, &mgr.value)
        .json(&json!({"token": mgr.value}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    emu.set_capacity(None);
    let calls = (0..8).map(|_| {
        req(&emu, Method::POST, LOOKUP, &mgr.value)
            .json(&json!({"token": mgr.value}))
            .send()
    });
    for a in futures::future::join_all(calls).await {
        assert_eq!(a.unwrap().status().as_u16(), 200);
    }
    assert_eq!(emu.load().peak_in_flight, 8);
}
