//! Behaviour of the emulated `/api/v2/apiTokens` and `/api/v2/events/ingest` endpoints.

mod common;

use common::{assert_envelope, client, is_new_format, is_wire_date, parts, req, setup};
use dynatrace_emulator::SeedToken;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn auth_failures_answer_401_and_missing_scope_403() {
    let (emu, mgr) = setup().await;
    let url = format!("{}/api/v2/apiTokens", emu.url());

    // No header at all.
    let (status, body) = parts(client().get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": {"code": 401, "message": "Token Authentication failed"}})
    );

    // Unknown value.
    let fake = format!("dt0c01.{}.{}", "A".repeat(24), "B".repeat(64));
    let (status, body) = parts(
        req(&emu, Method::GET, "/api/v2/apiTokens", &fake)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_envelope(&body, 401);

    // Wrong scheme.
    let resp = client()
        .get(&url)
        .header("Authorization", format!("Bearer {}", mgr.value))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Disabled token.
    let mut spec = SeedToken::new("off", &["apiTokens.read"]);
    spec.enabled = false;
    let off = emu.seed_token(spec);
    let resp = req(&emu, Method::GET, "/api/v2/apiTokens", &off.value)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Expired token.
    let mut spec = SeedToken::new("old", &["apiTokens.read"]);
    spec.expiration = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60));
    let old = emu.seed_token(spec);
    let resp = req(&emu, Method::GET, "/api/v2/apiTokens", &old.value)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Valid token without the scope.
    let weak = emu.seed_token(SeedToken::new("weak", &["metrics.read"]));
    let (status, body) = parts(
        req(&emu, Method::GET, "/api/v2/apiTokens", &weak.value)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "Token is missing required scope. Use one of: apiTokens.read (Read API tokens)"
    );
    let (status, body) = parts(
        req(&emu, Method::POST, "/api/v2/apiTokens", &weak.value)
            .json(&json!({"name": "x", "scopes": ["metrics.read"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("apiTokens.write (Write API tokens)")
    );

    // A 401 does not record a use; a 403 is an authenticated call and does.
    assert!(emu.token(&off.id).unwrap().last_used.is_none());
    assert!(emu.token(&weak.id).unwrap().last_used.is_some());
}

#[tokio::test]
async fn create_returns_201_with_new_format_token_owned_by_caller() {
    let (emu, mgr) = setup().await;
    let (status, body) = parts(
        req(&emu, Method::POST, "/api/v2/apiTokens", &mgr.value)
            .json(&json!({"name": "ci-metrics", "scopes": ["metrics.read", "metrics.ingest"], "expirationDate": "now+30d"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let value = body["token"].as_str().unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(is_new_format(value));
    assert_eq!(id, &value[..value.rfind('.').unwrap()]);
    let exp = body["expirationDate"].as_str().unwrap();
    assert!(is_wire_date(exp), "{exp}");
    let exp: jiff::Timestamp = exp.parse().unwrap();
    let days = (exp - jiff::Timestamp::now()).get_seconds() as f64 / 86_400.0;
    assert!((29.9..=30.1).contains(&days), "{days}");
    assert_eq!(body.as_object().unwrap().len(), 3);

    let state = emu.token(id).unwrap();
    assert_eq!(state.owner, "manager@example.com");
    assert!(state.enabled);
    assert_eq!(state.scopes, vec!["metrics.read", "metrics.ingest"]);
    assert_eq!(state.creation, state.modified);
    assert_eq!(state.expiration, Some(exp));
    assert!(emu.issued_values().iter().any(|v| v == value));
    assert!(emu.issued_values().contains(&mgr.value));

    // The new token authenticates.
    let resp = req(&emu, Method::POST, "/api/v2/apiTokens/lookup", value)
        .json(&json!({"token": value}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // Never-expiring: no expirationDate in the answer. ISO and epoch-ms expiries are accepted.
    for (exp, expect_exp) in [
        (Value::Null, false),
        (json!("2999-01-01T10:00:00.000+01:00"), true),
        (json!("2999-01-01T10:00:00"), true),
        (json!(32_503_680_000_000i64), true),
        (json!("now+2M"), true),
    ] {
        let mut b = json!({"name": "n", "scopes": ["logs.read"]});
        if !exp.is_null() {
            b["expirationDate"] = exp.clone();
        }
        let (status, body) = parts(
            req(&emu, Method::POST, "/api/v2/apiTokens", &mgr.value)
                .json(&b)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{exp}: {body}");
        assert_eq!(body.get("expirationDate").is_some(), expect_exp, "{body}");
        if exp == json!("2999-01-01T10:00:00.000+01:00") {
            assert_eq!(body["expirationDate"], "2999-01-01T09:00:00.000Z");
        }
        if exp == json!("2999-01-01T10:00:00") {
            assert_eq!(body["expirationDate"], "2999-01-01T10:00:00.000Z");
        }
    }
}

#[tokio::test]
async fn create_rejects_invalid_input_with_400() {
    let (emu, mgr) = setup().await;
    let before = emu.tokens().len();
    let post = |b: Value| {
        req(&emu, Method::POST, "/api/v2/apiTokens", &mgr.value)
            .json(&b)
            .send()
    };

    let (status, body) = parts(
        post(json!({"name": "x", "scopes": ["metrics.read", "DiagnosticExport"]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let v = &body["error"]["constraintViolations"][0];
    assert_eq!(v["path"], "scopes");
    assert_eq!(v["parameterLocation"], "PAYLOAD_BODY");
    assert!(v["location"].is_null());
    assert!(v["message"].as_str().unwrap().contains("DiagnosticExport"));

    for bad in [
        json!({"name": "x", "scopes": ["no.such.scope"]}),
        json!({"name": "x", "scopes": ["analyzers.read"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x"}),
        json!({"scopes": ["metrics.read"]}),
        json!({"name": "", "scopes": ["metrics.read"]}),
        json!({"name": "x", "scopes": ["metrics.read"], "expirationDate": "now-1d"}),
        json!({"name": "x", "scopes": ["metrics.read"], "expirationDate": 1_000}),
        json!({"name": "x", "scopes": ["metrics.read"], "expirationDate": "tomorrow"}),
        json!({"name": "x", "scopes": ["DataExport"], "personalAccessToken": true}),
    ] {
        let (status, body) = parts(post(bad.clone()).await.unwrap()).await;
        assert_eq!(status, 400, "{bad}");
        assert_envelope(&body, 400);
    }

    // Invalid JSON.
    let (status, body) = parts(
        req(&emu, Method::POST, "/api/v2/apiTokens", &mgr.value)
            .header("Content-Type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_envelope(&body, 400);
    assert_eq!(emu.tokens().len(), before);
}

#[tokio::test]
async fn lookup_needs_any_valid_token_and_answers_200_or_404() {
    let (emu, mgr) = setup().await;
    let plain = emu.seed_token(SeedToken::new("plain", &["metrics.read"]));
    let mut legacy = SeedToken::new("legacy", &["DataExport", "ViewDashboard"]);
    legacy.legacy = true;
    let legacy = emu.seed_token(legacy);
    assert!(!legacy.value.starts_with("dt0c01."));
    assert!((18..=24).contains(&legacy.value.len()));
    assert!(legacy.id.starts_with("dt0c01.") && legacy.id.len() == 31);

    // A token with no token scope can look up, even a legacy value.
    let (status, body) = parts(
        req(&emu, Method::POST, "/api/v2/apiTokens/lookup", &plain.value)
            .json(&json!({"token": legacy.value}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], legacy.id.as_str());
    assert_eq!(body["name"], "legacy");
    assert_eq!(body["scopes"], json!(["DataExport", "ViewDashboard"]));
    assert_eq!(body["owner"], "admin@example.com");
    assert_eq!(body["personalAccessToken"], false);
    assert!(is_wire_date(body["creationDate"].as_str().unwrap()));
    assert!(is_wire_date(body["modifiedDate"].as_str().unwrap()));
    assert!(body.get("expirationDate").is_none());
    assert!(body.get("token").is_none());
    assert!(!body.to_string().contains(&legacy.value));

    // Self lookup shows the use just made.
    let (status, body) = parts(
        req(&emu, Method::POST, "/api/v2/apiTokens/lookup", &plain.value)
            .json(&json!({"token": plain.value}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(is_wire_date(body["lastUsedDate"].as_str().unwrap()));
    assert_eq!(body["lastUsedIpAddress"], "127.0.0.1");

    let fake = format!("dt0c01.{}.{}", "Z".repeat(24), "Z".repeat(64));
    let resp = req(&emu, Method::POST, "/api/v2/apiTokens/lookup", &mgr.value)
        .json(&json!({"token": fake}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    for bad in ["{", "{}", "[]"] {
        let resp = req(&emu, Method::POST, "/api/v2/apiTokens/lookup", &mgr.value)
            .header("Content-Type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }

    // GET by id returns all fields; unknown id is 404.
    let (status, body) = parts(
        req(
            &emu,
            Method::GET,
            &format!("/api/v2/apiTokens/{}", plain.id),
            &mgr.value,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["scopes"], json!(["metrics.read"]));
    let resp = req(
        &emu,
        Method::GET,
        "/api/v2/apiTokens/dt0c01.NOPE",
        &mgr.value,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn put_replaces_scopes_keeps_modified_on_toggle_and_refuses_self_disable() {
    let (emu, mgr) = setup().await;
    let mut spec = SeedToken::new("target", &["metrics.read", "logs.read", "MemoryDump"]);
    spec.creation = Some("2024-01-01T00:00:00Z".parse().unwrap());
    let t = emu.seed_token(spec);
    let path = format!("/api/v2/apiTokens/{}", t.id);
    let put = |b: Value| req(&emu, Method::PUT, &path, &mgr.value).json(&b).send();
    let created = emu.token(&t.id).unwrap().creation;

    // Disable: 204, empty, modified unchanged.
    let resp = put(json!({"enabled": false})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(resp.text().await.unwrap().is_empty());
    let s = emu.token(&t.id).unwrap();
    assert!(!s.enabled);
    assert_eq!(s.modified, created);
    // Disabled tokens cannot authenticate but are still listed and readable.
    let resp = req(&emu, Method::POST, "/api/v2/apiTokens/lookup", &t.value)
        .json(&json!({"token": t.value}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (_, body) = parts(
        req(&emu, Method::GET, &path, &mgr.value)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["enabled"], false);

    // Re-enable: still unchanged.
    assert_eq!(
        put(json!({"enabled": true}))
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    assert_eq!(emu.token(&t.id).unwrap().modified, created);

    // A removed scope cannot be re-granted, even if the token already holds it.
    let resp = put(json!({"scopes": ["metrics.read", "MemoryDump"]}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Scopes replace the whole list and bump modified.
    assert_eq!(
        put(json!({"scopes": ["slo.read"]}))
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let s = emu.token(&t.id).unwrap();
    assert_eq!(s.scopes, vec!["slo.read"]);
    assert!(s.modified > created);
    let after_scopes = s.modified;

    // Rename bumps modified too.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        put(json!({"name": "renamed"}))
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let s = emu.token(&t.id).unwrap();
    assert_eq!(s.name, "renamed");
    assert!(s.modified > after_scopes);

    // Self-disable refused; manager still enabled.
    let (status, body) = parts(
        req(
            &emu,
            Method::PUT,
            &format!("/api/v2/apiTokens/{}", mgr.id),
            &mgr.value,
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot disable itself")
    );
    assert!(emu.token(&mgr.id).unwrap().enabled);

    // Unknown id.
    let resp = req(
        &emu,
        Method::PUT,
        "/api/v2/apiTokens/dt0c01.UNKNOWN",
        &mgr.value,
    )
    .json(&json!({"enabled": false}))
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn delete_by_id_or_value_refuses_self_and_404s_unknown() {
    let (emu, mgr) = setup().await;
    let a = emu.seed_token(SeedToken::new("a", &["metrics.read"]));
    let b = emu.seed_token(SeedToken::new("b", &["metrics.read"]));

    let del = |id: String| {
        req(
            &emu,
            Method::DELETE,
            &format!("/api/v2/apiTokens/{id}"),
            &mgr.value,
        )
        .send()
    };

    let (status, body) = parts(del(mgr.id.clone()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_envelope(&body, 400);
    let (status, _) = parts(del(mgr.value.clone()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(emu.token(&mgr.id).is_some());

    let resp = del(a.id.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(emu.was_deleted(&a.id));
    assert!(emu.token(&a.id).is_none());

    let resp = del(b.value.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(emu.was_deleted(&b.id));

    assert_eq!(del(a.id.clone()).await.unwrap().status().as_u16(), 404);
    assert_eq!(
        del("dt0c01.NOPE".into()).await.unwrap().status().as_u16(),
        404
    );
    assert!(!emu.was_deleted("dt0c01.NOPE"));
    let resp = req(
        &emu,
        Method::GET,
        &format!("/api/v2/apiTokens/{}", a.id),
        &mgr.value,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // A deleted token no longer authenticates.
    let resp = req(&emu, Method::POST, "/api/v2/apiTokens/lookup", &a.value)
        .json(&json!({"token": a.value}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn list_paginates_with_fields_and_strict_page_keys() {
    let (emu, mgr) = setup().await;
    for i in 0..250 {
        emu.seed_token(SeedToken::new(&format!("t{i}"), &["metrics.read"]));
    }
    let list = |q: Vec<(&'static str, String)>| {
        req(&emu, Method::GET, "/api/v2/apiTokens", &mgr.value)
            .query(&q)
            .send()
    };

    let mut ids = std::collections::HashSet::new();
    let mut pages = 0;
    let mut key: Option<String> = None;
    loop {
        let q = match &key {
            None => vec![
                ("pageSize", "100".to_string()),
                ("fields", "+scopes,-owner".to_string()),
            ],
            Some(k) => vec![("nextPageKey", k.clone())],
        };
        let (status, body) = parts(list(q).await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        assert_eq!(body["totalCount"], 251);
        assert_eq!(body["pageSize"], 100);
        let items = body["apiTokens"].as_array().unwrap();
        assert_eq!(items.len(), if pages < 3 { 100 } else { 51 });
        for item in items {
            let keys: std::collections::BTreeSet<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                ["creationDate", "enabled", "id", "name", "scopes"]
                    .into_iter()
                    .collect()
            );
            assert!(ids.insert(item["id"].as_str().unwrap().to_string()));
        }
        match body.get("nextPageKey").and_then(Value::as_str) {
            Some(k) => {
                // Keys carry '+', '/' and '=' so that unencoded keys break.
                assert!(k.contains('+') && k.contains('/') && k.ends_with('='));
                // With any other parameter the key is refused.
                let (status, body) = parts(
                    list(vec![
                        ("nextPageKey", k.to_string()),
                        ("pageSize", "100".into()),
                    ])
                    .await
                    .unwrap(),
                )
                .await;
                assert_eq!(status, 400);
                assert_envelope(&body, 400);
                key = Some(k.to_string());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 251);

    // Default: newest first, default field set, pageSize 200.
    let (_, body) = parts(list(vec![]).await.unwrap()).await;
    assert_eq!(body["pageSize"], 200);
    assert_eq!(body["apiTokens"].as_array().unwrap().len(), 200);
    assert_eq!(body["apiTokens"][0]["name"], "t249");
    let keys: Vec<&str> = body["apiTokens"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5);
    assert!(keys.contains(&"owner") && !keys.contains(&"scopes"));

    // Unsigned list replaces the default set; id is always present.
    let (_, body) = parts(list(vec![("fields", "scopes".into())]).await.unwrap()).await;
    let item = body["apiTokens"][0].as_object().unwrap();
    assert_eq!(item.len(), 2);
    assert!(item.contains_key("id") && item.contains_key("scopes"));

    // Errors: unknown field, raw '+' (decodes to a space), bad page size, foreign/bad keys.
    let bad = |q: &str| {
        req(
            &emu,
            Method::GET,
            &format!("/api/v2/apiTokens?{q}"),
            &mgr.value,
        )
        .send()
    };
    for q in [
        "fields=%2Bsecret",
        "fields=+scopes",
        "pageSize=99",
        "pageSize=10001",
        "pageSize=abc",
        "sort=name",
        "apiTokenSelector=bogus(1)",
        "nextPageKey=AAAA",
        "nextPageKey=%2B%2F8BAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (status, body) = parts(bad(q).await.unwrap()).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_envelope(&body, 400);
    }
    // A key from another emulator (unknown snapshot) is refused.
    let (other, other_mgr) = setup().await;
    for i in 0..150 {
        other.seed_token(SeedToken::new(&format!("o{i}"), &["metrics.read"]));
    }
    let (_, body) = parts(
        req(&other, Method::GET, "/api/v2/apiTokens", &other_mgr.value)
            .query(&[("pageSize", "100")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let foreign = body["nextPageKey"].as_str().unwrap().to_string();
    let (status, _) = parts(list(vec![("nextPageKey", foreign)]).await.unwrap()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn list_selector_and_sort() {
    let (emu, mgr) = setup().await;
    let mut a = SeedToken::new("a", &["metrics.read"]);
    a.owner = "alice@example.com".into();
    a.creation = Some("2024-03-01T00:00:00Z".parse().unwrap());
    let a = emu.seed_token(a);
    let mut b = SeedToken::new("b", &["logs.read"]);
    b.owner = "alice@example.com".into();
    b.personal_access_token = true;
    b.creation = Some("2024-01-01T00:00:00Z".parse().unwrap());
    let b = emu.seed_token(b);
    let mut c = SeedToken::new("c", &["slo.read"]);
    c.owner = "Alice@example.com".into();
    c.creation = Some("2024-02-01T00:00:00Z".parse().unwrap());
    emu.seed_token(c);

    let names = |body: &Value| -> Vec<String> {
        body["apiTokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |q: Vec<(&'static str, &'static str)>| {
        req(&emu, Method::GET, "/api/v2/apiTokens", &mgr.value)
            .query(&q)
            .send()
    };
    let (_, body) = parts(
        get(vec![
            ("apiTokenSelector", "owner(\"alice@example.com\")"),
            ("sort", "+creationDate"),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(names(&body), vec!["b", "a"]);
    assert_eq!(body["totalCount"], 2);
    let (_, body) = parts(
        get(vec![(
            "apiTokenSelector",
            "owner(\"alice@example.com\"),personalAccessToken(false)",
        )])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(names(&body), vec!["a"]);
    assert_eq!(body["apiTokens"][0]["id"], a.id.as_str());
    let (_, body) = parts(
        get(vec![
            ("apiTokenSelector", "personalAccessToken(true)"),
            ("fields", "+personalAccessToken"),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(names(&body), vec!["b"]);
    assert_eq!(body["apiTokens"][0]["id"], b.id.as_str());
    assert_eq!(body["apiTokens"][0]["personalAccessToken"], true);
    let (_, body) = parts(
        get(vec![
            ("apiTokenSelector", "scope(\"logs.read\",\"slo.read\")"),
            ("sort", "-creationDate"),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(names(&body), vec!["c", "b"]);
    // Tokens never used are excluded by a last-used window; the manager was just used.
    let (_, body) = parts(get(vec![("from", "now-1h")]).await.unwrap()).await;
    assert_eq!(names(&body), vec!["manager"]);
}

#[tokio::test]
async fn events_ingest_validates_and_keeps_events() {
    let (emu, mgr) = setup().await;
    let (status, body) = parts(
        req(&emu, Method::POST, "/api/v2/events/ingest", &mgr.value)
            .json(&json!({"eventType": "CUSTOM_INFO", "title": "API token rotated: dt0c01.X", "properties": {"k": "v"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["reportCount"], 1);
    assert_eq!(body["eventIngestResults"][0]["status"], "OK");
    assert!(body["eventIngestResults"][0]["correlationId"].is_string());
    assert_eq!(emu.events().len(), 1);
    assert_eq!(emu.events()[0]["properties"]["k"], "v");

    for bad in [
        json!({"eventType": "NOPE", "title": "t"}),
        json!({"eventType": "CUSTOM_INFO"}),
    ] {
        let resp = req(&emu, Method::POST, "/api/v2/events/ingest", &mgr.value)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
    }
    let weak = emu.seed_token(SeedToken::new("weak", &["apiTokens.read"]));
    let resp = req(&emu, Method::POST, "/api/v2/events/ingest", &weak.value)
        .json(&json!({"eventType": "CUSTOM_INFO", "title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(emu.events().len(), 1);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let (emu, mgr) = setup().await;
    let (status, body) = parts(
        req(&emu, Method::GET, "/api/v2/nothing", &mgr.value)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_envelope(&body, 404);
}
