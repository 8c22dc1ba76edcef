//! Integration tests of the Vault/OpenBao client against a real OpenBao dev server (the
//! sandbox's shared one, [`Bao::shared`]), plus loopback stubs ([`StubServer`]) for redirects,
//! retries and the AWS IAM login.
//!
//! `bao` comes from the sandbox's tools directory (`$ROTATOR_TOOLS_BIN`, else
//! `<workspace>/.tools/venv/bin`, installed by `scripts/tools.sh`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dynatrace_token_rotator::vault::auth::{
    AuthMethod, STS_BODY, STS_URL, Session, build_iam_login_body,
};
use dynatrace_token_rotator::vault::kv::{CasWrite, KvClient, KvRead};
use dynatrace_token_rotator::vault::{VaultError, VaultSettings, http_client};
use rotator_sandbox::{Bao, LogCapture, Reply, StubServer, unique_suffix};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// OpenBao dev server
// ---------------------------------------------------------------------------------------------

fn bao() -> &'static Bao {
    Bao::shared()
}

/// `prefix` plus a random suffix: names that do not collide on the shared server.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", unique_suffix())
}

/// A root-token call for test setup; returns status and JSON body (Null when empty).
async fn root_call(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let (status, value) = bao().request(method, path, body.as_ref()).await.unwrap();
    (status.as_u16(), value)
}

fn settings(mount: &str, namespace: Option<&str>) -> VaultSettings {
    VaultSettings::new(
        url::Url::parse(&bao().addr()).unwrap(),
        namespace.map(str::to_owned),
        mount,
    )
    .unwrap()
}

fn session_for(settings: &VaultSettings, method: AuthMethod) -> Arc<Session> {
    Arc::new(Session::new(http_client().unwrap(), settings, method))
}

/// A KV client for `mount` using the root token.
fn root_kv(mount: &str) -> KvClient {
    let s = settings(mount, None);
    let session = session_for(
        &s,
        AuthMethod::Token(SecretString::from(bao().root_token().to_owned())),
    );
    KvClient::new(http_client().unwrap(), s, session)
}

fn doc(token: &str) -> Map<String, Value> {
    json!({"environmentUrl": "https://abc12345.live.dynatrace.com", "token": token})
        .as_object()
        .unwrap()
        .clone()
}

async fn enable_mount(path: &str, kind: &str, options: Value) {
    let (status, body) = root_call(
        "POST",
        &format!("sys/mounts/{path}"),
        Some(json!({"type": kind, "options": options})),
    )
    .await;
    assert!(status < 300, "mount {path}: {status} {body}");
}

// ---------------------------------------------------------------------------------------------
// KV v2 against the real server
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn read_missing_present_deleted() {
    let kv = root_kv("secret");
    let path = unique("read/p");

    assert!(matches!(kv.read(&path).await.unwrap(), KvRead::Missing));

    let w = kv
        .write_cas(&path, &doc("dt0c01.AAA.SECRET1"), 0)
        .await
        .unwrap();
    assert_eq!(w, CasWrite::Written { version: 1 });

    match kv.read(&path).await.unwrap() {
        KvRead::Present(e) => {
            assert_eq!(e.version, 1);
            assert_eq!(e.data["token"], "dt0c01.AAA.SECRET1");
        }
        other => panic!("expected Present, got {other:?}"),
    }

    // Soft-delete the latest version: the key still exists with version 1.
    let (status, _) = root_call("DELETE", &format!("secret/data/{path}"), None).await;
    assert_eq!(status, 204);
    match kv.read(&path).await.unwrap() {
        KvRead::Deleted { version } => assert_eq!(version, 1),
        other => panic!("expected Deleted, got {other:?}"),
    }
    // The next CAS value after a soft-delete is the deleted version.
    let w = kv
        .write_cas(&path, &doc("dt0c01.BBB.SECRET2"), 1)
        .await
        .unwrap();
    assert_eq!(w, CasWrite::Written { version: 2 });

    // Older versions can still be addressed; a destroyed one reads as Deleted.
    let (status, _) = root_call(
        "POST",
        &format!("secret/destroy/{path}"),
        Some(json!({"versions": [1]})),
    )
    .await;
    assert!(status < 300);
    assert!(matches!(
        kv.read_version(&path, 1).await.unwrap(),
        KvRead::Deleted { version: 1 }
    ));
    assert!(matches!(
        kv.read_version(&path, 2).await.unwrap(),
        KvRead::Present(ref e) if e.version == 2
    ));
    assert!(matches!(
        kv.read_version(&path, 99).await.unwrap(),
        KvRead::Missing
    ));
}

#[tokio::test]
async fn write_cas_conflict_and_other_400s() {
    let kv = root_kv("secret");
    let path = unique("cas/p");
    assert_eq!(
        kv.write_cas(&path, &doc("v1"), 0).await.unwrap(),
        CasWrite::Written { version: 1 }
    );
    // A second create-only write loses.
    assert_eq!(
        kv.write_cas(&path, &doc("v1b"), 0).await.unwrap(),
        CasWrite::Conflict
    );
    assert_eq!(
        kv.write_cas(&path, &doc("v2"), 1).await.unwrap(),
        CasWrite::Written { version: 2 }
    );
    // Stale CAS.
    assert_eq!(
        kv.write_cas(&path, &doc("v3"), 1).await.unwrap(),
        CasWrite::Conflict
    );
    match kv.read(&path).await.unwrap() {
        KvRead::Present(e) => assert_eq!((e.version, e.data["token"].as_str()), (2, Some("v2"))),
        other => panic!("{other:?}"),
    }

    // A different 400 (custom_metadata validation) is an error carrying the server message.
    let mut bad = BTreeMap::new();
    bad.insert("k".repeat(200), Some("v".into()));
    let err = kv.patch_custom_metadata(&path, &bad).await.unwrap_err();
    match &err {
        VaultError::Api {
            status, messages, ..
        } => {
            assert_eq!(status.as_u16(), 400);
            assert!(
                messages.iter().any(|m| m.contains("custom_metadata")),
                "{messages:?}"
            );
        }
        other => panic!("expected Api error, got {other:?}"),
    }
    assert!(err.to_string().contains("custom_metadata"), "{err}");
}

#[tokio::test]
async fn list_recursive_nested_and_empty() {
    let mount = unique("listkv");
    enable_mount(&mount, "kv", json!({"version": "2"})).await;
    let kv = root_kv(&mount);

    // Empty mount, empty prefix: no keys (404 {"errors":[]}).
    assert_eq!(kv.list_recursive("").await.unwrap(), Vec::<String>::new());

    for p in [
        "dynatrace/app1",
        "dynatrace/team/app2",
        "dynatrace/team/deep/app3",
        "other/x",
        "top",
    ] {
        kv.write_cas(p, &doc("t"), 0).await.unwrap();
    }
    assert_eq!(
        kv.list_recursive("dynatrace/").await.unwrap(),
        vec![
            "dynatrace/app1",
            "dynatrace/team/app2",
            "dynatrace/team/deep/app3"
        ]
    );
    // Without the trailing slash the prefix is still a folder.
    assert_eq!(
        kv.list_recursive("dynatrace/team").await.unwrap(),
        vec!["dynatrace/team/app2", "dynatrace/team/deep/app3"]
    );
    assert_eq!(
        kv.list_recursive("").await.unwrap(),
        vec![
            "dynatrace/app1",
            "dynatrace/team/app2",
            "dynatrace/team/deep/app3",
            "other/x",
            "top"
        ]
    );
    assert_eq!(
        kv.list_recursive("nothing-here/").await.unwrap(),
        Vec::<String>::new()
    );
    let mut one_level = kv.list("dynatrace").await.unwrap();
    one_level.sort();
    assert_eq!(one_level, vec!["app1", "team/"]);
}

#[tokio::test]
async fn missing_mount_is_a_configuration_error() {
    let kv = root_kv("no-such-mount");
    let err = kv.list_recursive("dynatrace/").await.unwrap_err();
    assert!(
        matches!(&err, VaultError::NoMount { mount, .. } if mount == "no-such-mount"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-mount"), "{err}");
    let err = kv.read("dynatrace/app1").await.unwrap_err();
    assert!(matches!(err, VaultError::NoMount { .. }), "{err:?}");
}

#[tokio::test]
async fn custom_metadata_read_and_patch() {
    let kv = root_kv("secret");
    let path = unique("meta/p");
    assert_eq!(kv.custom_metadata(&path).await.unwrap(), None);
    kv.write_cas(&path, &doc("t"), 0).await.unwrap();
    assert_eq!(
        kv.custom_metadata(&path).await.unwrap(),
        Some(BTreeMap::new())
    );

    let mut set = BTreeMap::new();
    set.insert("owner".to_owned(), Some("team-a".to_owned()));
    set.insert("rotated-by".to_owned(), Some("dt-rotator".to_owned()));
    kv.patch_custom_metadata(&path, &set).await.unwrap();
    let got = kv.custom_metadata(&path).await.unwrap().unwrap();
    assert_eq!(got.get("owner").map(String::as_str), Some("team-a"));
    assert_eq!(
        got.get("rotated-by").map(String::as_str),
        Some("dt-rotator")
    );

    let mut remove = BTreeMap::new();
    remove.insert("owner".to_owned(), None);
    kv.patch_custom_metadata(&path, &remove).await.unwrap();
    let got = kv.custom_metadata(&path).await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert!(got.contains_key("rotated-by"));

    // Patching a key that does not exist.
    let err = kv
        .patch_custom_metadata(&unique("meta/none"), &set)
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn kv_v1_mount_detected() {
    let v1 = unique("kvone");
    enable_mount(&v1, "kv", json!({})).await;
    let kv = root_kv("secret");
    assert_eq!(kv.mount_version("secret").await.unwrap(), Some(2));
    assert_eq!(kv.mount_version(&v1).await.unwrap(), Some(1));
    // Unknown mount: the endpoint refuses; tolerated as "unknown".
    assert_eq!(kv.mount_version("no-such-mount").await.unwrap(), None);

    kv.ensure_kv_v2().await.unwrap();
    let err = root_kv(&v1).ensure_kv_v2().await.unwrap_err();
    assert!(matches!(err, VaultError::NotKvV2 { .. }), "{err:?}");
    assert!(err.to_string().contains(&v1), "{err}");
    assert!(err.to_string().contains("KV version 1"), "{err}");

    let transit = unique("transit");
    enable_mount(&transit, "transit", json!({})).await;
    assert_eq!(kv.mount_version(&transit).await.unwrap(), None);
    assert!(matches!(
        root_kv(&transit).ensure_kv_v2().await,
        Err(VaultError::NotKvV2 { .. })
    ));
}

#[tokio::test]
async fn namespace_header() {
    // OpenBao >= 2.3 supports namespaces on the dev server: create one with its own KV v2 mount.
    let ns = unique("team");
    let (status, body) = root_call("POST", &format!("sys/namespaces/{ns}"), None).await;
    if status >= 400 {
        eprintln!("namespaces unsupported by this server ({status} {body}); skipping");
        return;
    }
    let (status, body) = bao()
        .request_in(
            &ns,
            reqwest::Method::POST,
            "sys/mounts/secret",
            Some(&json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await
        .unwrap();
    assert!(status.is_success(), "{status} {body}");

    let s = settings("secret", Some(&format!("{ns}/")));
    let session = session_for(
        &s,
        AuthMethod::Token(SecretString::from(bao().root_token().to_owned())),
    );
    let kv = KvClient::new(http_client().unwrap(), s, session);
    assert_eq!(
        kv.write_cas("dynatrace/app1", &doc("ns-token"), 0)
            .await
            .unwrap(),
        CasWrite::Written { version: 1 }
    );
    assert_eq!(kv.list_recursive("").await.unwrap(), vec!["dynatrace/app1"]);
    // The same path in the root namespace never sees the namespaced value.
    let (_, v) = root_call("GET", "secret/data/dynatrace/app1", None).await;
    assert_ne!(v["data"]["data"]["token"], "ns-token");

    // A namespace that does not exist is an error, never "Missing".
    let s = settings("secret", Some("no-such-ns/"));
    let session = session_for(
        &s,
        AuthMethod::Token(SecretString::from(bao().root_token().to_owned())),
    );
    let kv = KvClient::new(http_client().unwrap(), s, session);
    let err = kv.read("dynatrace/app1").await.unwrap_err();
    assert!(err.to_string().contains("namespace"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Authentication against the real server
// ---------------------------------------------------------------------------------------------

/// Enables AppRole (once) and creates a role whose policy allows `secret/data/approle/*`.
async fn approle_credentials() -> (String, String) {
    let (status, body) = root_call("GET", "sys/auth", None).await;
    assert_eq!(status, 200, "{body}");
    if body["data"].get("approle/").is_none() {
        let (status, body) =
            root_call("POST", "sys/auth/approle", Some(json!({"type": "approle"}))).await;
        // A parallel test may have enabled it in the meantime.
        assert!(
            status < 300 || body.to_string().contains("already in use"),
            "{body}"
        );
    }
    let policy = r#"
        path "secret/data/approle/*" { capabilities = ["create", "read", "update"] }
        path "secret/metadata/approle/*" { capabilities = ["list", "read"] }
    "#;
    let (status, body) = root_call(
        "PUT",
        "sys/policies/acl/rotator-approle",
        Some(json!({"policy": policy})),
    )
    .await;
    assert!(status < 300, "{body}");
    let role = unique("rotator");
    let (status, body) = root_call(
        "POST",
        &format!("auth/approle/role/{role}"),
        Some(json!({"token_policies": ["rotator-approle"], "token_ttl": "10m"})),
    )
    .await;
    assert!(status < 300, "{body}");
    let (_, body) = root_call("GET", &format!("auth/approle/role/{role}/role-id"), None).await;
    let role_id = body["data"]["role_id"].as_str().unwrap().to_owned();
    let (_, body) = root_call("POST", &format!("auth/approle/role/{role}/secret-id"), None).await;
    let secret_id = body["data"]["secret_id"].as_str().unwrap().to_owned();
    (role_id, secret_id)
}

#[tokio::test]
async fn approle_login_and_relogin_after_revocation() {
    let (role_id, secret_id) = approle_credentials().await;
    let s = settings("secret", None);
    let session = session_for(
        &s,
        AuthMethod::AppRole {
            role_id,
            secret_id: SecretString::from(secret_id.clone()),
        },
    );
    let kv = KvClient::new(http_client().unwrap(), s, session.clone());
    let path = unique("approle/p");
    assert_eq!(
        kv.write_cas(&path, &doc("approle-token"), 0).await.unwrap(),
        CasWrite::Written { version: 1 }
    );
    let first = session.token().await.unwrap();
    assert_ne!(first.expose_secret(), bao().root_token());

    // Revoke the session's token behind its back.
    let (status, body) = root_call(
        "POST",
        "auth/token/revoke",
        Some(json!({"token": first.expose_secret()})),
    )
    .await;
    assert!(status < 300, "{body}");

    // The next read gets a 403, logs in again once and succeeds.
    match kv.read(&path).await.unwrap() {
        KvRead::Present(e) => assert_eq!(e.data["token"], "approle-token"),
        other => panic!("{other:?}"),
    }
    let second = session.token().await.unwrap();
    assert_ne!(first.expose_secret(), second.expose_secret());

    // Concurrent callers holding the same refused token trigger a single login.
    let (status, _) = root_call(
        "POST",
        "auth/token/revoke",
        Some(json!({"token": second.expose_secret()})),
    )
    .await;
    assert!(status < 300);
    let reads = futures::future::join_all((0..8).map(|_| kv.read(&path))).await;
    assert!(reads.iter().all(|r| matches!(r, Ok(KvRead::Present(_)))));
    let third = session.token().await.unwrap();
    let (status, body) = root_call(
        "POST",
        "auth/token/lookup",
        Some(json!({"token": third.expose_secret()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Outside its policy: permission denied even after re-login.
    let err = kv.read(&unique("elsewhere/p")).await.unwrap_err();
    assert!(
        matches!(err, VaultError::PermissionDenied { .. }),
        "{err:?}"
    );

    // revoke-self at the end of an invocation.
    session.revoke().await.unwrap();
    let (status, _) = root_call(
        "POST",
        "auth/token/lookup",
        Some(json!({"token": third.expose_secret()})),
    )
    .await;
    assert_eq!(status, 403);

    // A wrong secret_id is a clear login error without the secret.
    let s = settings("secret", None);
    let bad = session_for(
        &s,
        AuthMethod::AppRole {
            role_id: "no-such-role-id".into(),
            secret_id: SecretString::from("wrong-secret-id-value".to_owned()),
        },
    );
    let err = bad.login().await.unwrap_err();
    assert!(matches!(err, VaultError::Login { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-secret-id-value"));
    assert!(!format!("{err:?}").contains("wrong-secret-id-value"));
}

/// A token holding the `restricted` policy, created by root with `ttl`.
async fn restricted_token_with_ttl(ttl: &str) -> String {
    restricted_token().await;
    let (status, body) = root_call(
        "POST",
        "auth/token/create",
        Some(json!({"policies": ["restricted"], "ttl": ttl})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// Root's view of a token's remaining TTL, in seconds.
async fn ttl_of(token: &str) -> u64 {
    let (status, body) =
        root_call("POST", "auth/token/lookup", Some(json!({"token": token}))).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["ttl"].as_u64().unwrap()
}

/// A static `VAULT_TOKEN` that Vault no longer accepts (revoked, or expired) is reported as
/// `TokenExpired`, at first use and in the middle of a run; a valid token outside its policy is
/// still a permission denial. Neither message carries the token.
#[tokio::test]
async fn an_expired_static_token_is_told_from_a_policy_denial() {
    let s = settings("secret", None);

    // Refused in the middle of a run: valid at first use, revoked after.
    let token = restricted_token_with_ttl("10m").await;
    let session = session_for(&s, AuthMethod::Token(SecretString::from(token.clone())));
    let kv = KvClient::new(http_client().unwrap(), s.clone(), session.clone());
    assert!(matches!(
        kv.read("allowed/x").await.unwrap(),
        KvRead::Missing
    ));
    let denied = kv.read("forbidden/x").await.unwrap_err();
    assert_eq!(denied.code(), "VaultPermissionDenied", "{denied:?}");
    let (status, _) = root_call("POST", "auth/token/revoke", Some(json!({"token": token}))).await;
    assert!(status < 300);
    let err = kv.read("allowed/x").await.unwrap_err();
    assert!(matches!(err, VaultError::TokenExpired), "{err:?}");
    assert_eq!(err.code(), "VaultTokenExpired");
    assert!(err.to_string().contains("issue a new token"));

    // Refused at first use: the TTL ran out before the invocation.
    let short = restricted_token_with_ttl("2s").await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let session = session_for(&s, AuthMethod::Token(SecretString::from(short.clone())));
    let kv = KvClient::new(http_client().unwrap(), s.clone(), session);
    let err = kv.read("allowed/x").await.unwrap_err();
    assert!(matches!(err, VaultError::TokenExpired), "{err:?}");
    for (e, t) in [(&err, &short), (&denied, &token)] {
        assert!(!e.to_string().contains(t.as_str()));
        assert!(!format!("{e:?}").contains(t.as_str()));
    }
}

/// A renewable static token past half its TTL is renewed at first use (`renew-self`), so a
/// token used by a daily schedule does not run out; one with more than half left is not
/// touched.
#[tokio::test]
async fn a_static_token_is_renewed_past_half_its_ttl() {
    let s = settings("secret", None);
    let token = restricted_token_with_ttl("8s").await;
    let fresh = restricted_token_with_ttl("1h").await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let before = ttl_of(&token).await;
    assert!(before <= 4, "{before}");
    for t in [&token, &fresh] {
        let session = session_for(&s, AuthMethod::Token(SecretString::from(t.clone())));
        let kv = KvClient::new(http_client().unwrap(), s.clone(), session);
        assert!(matches!(
            kv.read("allowed/x").await.unwrap(),
            KvRead::Missing
        ));
    }
    let after = ttl_of(&token).await;
    assert!(
        after >= 6,
        "renewed back to its 8 s TTL, was {before} s, now {after} s"
    );
    let fresh_ttl = ttl_of(&fresh).await;
    assert!(
        fresh_ttl <= 3596,
        "a token with more than half its TTL left is not renewed (TTL {fresh_ttl} s)"
    );
}

async fn restricted_token() -> String {
    let policy = r#"path "secret/data/allowed/*" { capabilities = ["read"] }"#;
    let (status, body) = root_call(
        "PUT",
        "sys/policies/acl/restricted",
        Some(json!({"policy": policy})),
    )
    .await;
    assert!(status < 300, "{body}");
    let (status, body) = root_call(
        "POST",
        "auth/token/create",
        Some(json!({"policies": ["restricted"], "ttl": "10m"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn permission_denied_with_restricted_token() {
    let token = restricted_token().await;
    let s = settings("secret", None);
    let session = session_for(&s, AuthMethod::Token(SecretString::from(token.clone())));
    let kv = KvClient::new(http_client().unwrap(), s, session.clone());

    // Allowed read path: Missing is fine.
    assert!(matches!(
        kv.read("allowed/x").await.unwrap(),
        KvRead::Missing
    ));
    let err = kv.read("forbidden/x").await.unwrap_err();
    match &err {
        VaultError::PermissionDenied { path, messages, .. } => {
            assert_eq!(path, "secret/forbidden/x");
            assert!(messages.iter().any(|m| m.contains("permission denied")));
        }
        other => panic!("{other:?}"),
    }
    let err2 = kv.write_cas("allowed/x", &doc("t"), 0).await.unwrap_err();
    assert!(matches!(err2, VaultError::PermissionDenied { .. }));
    let err3 = kv.list_recursive("allowed/").await.unwrap_err();
    assert!(matches!(err3, VaultError::PermissionDenied { .. }));
    // A static token cannot be replaced by logging in again; it is still valid, so the 403
    // was a policy denial.
    assert!(
        !session
            .relogin(&SecretString::from(token.clone()))
            .await
            .unwrap()
    );
    for e in [&err, &err2, &err3] {
        assert!(!e.to_string().contains(&token));
        assert!(!format!("{e:?}").contains(&token));
    }
}

// ---------------------------------------------------------------------------------------------
// Loopback stub server: redirects, retries, IAM login
// ---------------------------------------------------------------------------------------------

/// The stub's base URL as the Vault settings take it.
fn stub_url(stub: &StubServer) -> url::Url {
    url::Url::parse(&stub.url()).unwrap()
}

fn stub_kv(stub: &StubServer, token: &str) -> KvClient {
    let s = VaultSettings::new(stub_url(stub), None, "secret").unwrap();
    let session = Arc::new(Session::new(
        http_client().unwrap(),
        &s,
        AuthMethod::Token(SecretString::from(token.to_owned())),
    ));
    KvClient::new(http_client().unwrap(), s, session)
}

#[tokio::test]
async fn concurrent_refusals_trigger_a_single_relogin() {
    // Logins hand out s.gen1, s.gen2, ...; s.gen1 is "revoked" (403 everywhere).
    let logins = Arc::new(AtomicU32::new(0));
    let counter = logins.clone();
    let s = StubServer::start(move |req, _| {
        if req.path == "/v1/auth/approle/login" {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::json(
                200,
                &format!(r#"{{"auth":{{"client_token":"s.gen{n}","lease_duration":600}}}}"#),
            );
        }
        if req.header("x-vault-token") == Some("s.gen1") {
            return Reply::json(403, r#"{"errors":["permission denied"]}"#);
        }
        Reply::json(
            200,
            r#"{"data":{"data":{"token":"v"},"metadata":{"version":1}}}"#,
        )
    });
    let settings = VaultSettings::new(stub_url(&s), None, "secret").unwrap();
    let session = Arc::new(Session::new(
        http_client().unwrap(),
        &settings,
        AuthMethod::AppRole {
            role_id: "rid".into(),
            secret_id: SecretString::from("sid".to_owned()),
        },
    ));
    session.login().await.unwrap();
    assert_eq!(session.token().await.unwrap().expose_secret(), "s.gen1");
    let kv = KvClient::new(http_client().unwrap(), settings, session.clone());
    let reads = futures::future::join_all((0..8).map(|_| kv.read("x"))).await;
    assert!(reads.iter().all(|r| matches!(r, Ok(KvRead::Present(_)))));
    assert_eq!(logins.load(Ordering::SeqCst), 2);
    assert_eq!(session.token().await.unwrap().expose_secret(), "s.gen2");
    // The refused token was checked with lookup-self before logging in again.
    let reqs = s.requests();
    assert!(
        reqs.iter().any(|r| r.path == "/v1/auth/token/lookup-self"
            && r.header("x-vault-token") == Some("s.gen1"))
    );
}

#[tokio::test]
async fn redirect_is_an_error_and_not_followed() {
    let target = StubServer::vault(vec![Reply::json(
        200,
        r#"{"data":{"data":{},"metadata":{"version":1}}}"#,
    )]);
    let s = StubServer::vault(vec![
        Reply::json(307, "").header("Location", format!("{}/v1/secret/data/x", target.url())),
    ]);
    let kv = stub_kv(&s, "s.redirect-token");
    let err = kv.read("x").await.unwrap_err();
    assert!(matches!(err, VaultError::Redirect { .. }), "{err:?}");
    assert!(target.requests().is_empty());
    assert_eq!(s.requests().len(), 1);
    assert!(!err.to_string().contains("s.redirect-token"));
}

#[tokio::test]
async fn retries_on_503_429_then_succeeds() {
    let s = StubServer::vault(vec![
        Reply::json(503, r#"{"errors":["Vault is sealed"]}"#),
        Reply::json(429, r#"{"errors":["rate limit quota exceeded"]}"#).header("Retry-After", "0"),
        Reply::json(
            200,
            r#"{"data":{"data":{"token":"x"},"metadata":{"version":4}}}"#,
        ),
    ]);
    let kv = stub_kv(&s, "s.t");
    match kv.read("x").await.unwrap() {
        KvRead::Present(e) => assert_eq!(e.version, 4),
        other => panic!("{other:?}"),
    }
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].path, "/v1/secret/data/x");
    assert_eq!(reqs[0].header("x-vault-token"), Some("s.t"));
    assert_eq!(reqs[0].header("x-vault-namespace"), None);
}

#[tokio::test]
async fn retries_are_bounded_and_cas_write_not_retried_on_500() {
    let s = StubServer::vault(vec![Reply::json(502, r#"{"errors":["upstream"]}"#)]);
    let kv = stub_kv(&s, "s.t");
    let err = kv.read("x").await.unwrap_err();
    match &err {
        VaultError::Api {
            status, attempts, ..
        } => {
            assert_eq!(status.as_u16(), 502);
            assert_eq!(*attempts, 4);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.requests().len(), 4);

    // A 500 on a CAS write may hide a landed write: not repeated.
    let s = StubServer::vault(vec![Reply::json(500, r#"{"errors":["internal error"]}"#)]);
    let kv = stub_kv(&s, "s.t");
    let err = kv.write_cas("x", &doc("t"), 3).await.unwrap_err();
    assert!(matches!(err, VaultError::Api { .. }), "{err:?}");
    assert_eq!(s.requests().len(), 1);
    let sent: Value = serde_json::from_slice(&s.requests()[0].body).unwrap();
    assert_eq!(sent["options"]["cas"], 3);

    // The deadline bounds the back-off.
    let s = StubServer::vault(vec![
        Reply::json(503, r#"{"errors":["standby"]}"#).header("Retry-After", "10"),
    ]);
    let kv = stub_kv(&s, "s.t")
        .with_deadline(Some(tokio::time::Instant::now() + Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let err = kv.read("x").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{err:?}");
    assert_eq!(s.requests().len(), 1);
}

#[tokio::test]
async fn transport_error_on_cas_write_is_reported_not_retried() {
    // Nothing listens on this port.
    let port = rotator_sandbox::free_port().unwrap();
    let s = VaultSettings::new(
        url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        None,
        "secret",
    )
    .unwrap();
    let session = Arc::new(Session::new(
        http_client().unwrap(),
        &s,
        AuthMethod::Token(SecretString::from("s.transport-token".to_owned())),
    ));
    let kv = KvClient::new(http_client().unwrap(), s, session);
    let err = kv
        .write_cas("x", &doc("dt0c01.TRANSPORT.SECRET"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::Transport { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s.transport-token"));
    assert!(!text.contains("TRANSPORT.SECRET"));
}

/// Parses `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
fn amz_date(s: &str) -> SystemTime {
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", s).unwrap();
    let ts = dt.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
    SystemTime::UNIX_EPOCH + Duration::from_secs(ts.as_second() as u64)
}

/// Checks a decoded IAM login body the way Vault + STS would, and recomputes the signature.
fn verify_iam_login(body: &Value, creds: &Credentials, server_id: Option<&str>, region: &str) {
    assert_eq!(body["iam_http_request_method"], "POST");
    let url = B64
        .decode(body["iam_request_url"].as_str().unwrap())
        .unwrap();
    // The request names the endpoint of the region it is signed for (host is signed).
    let expected_url = if region == "us-east-1" {
        STS_URL.to_owned()
    } else {
        format!("https://sts.{region}.amazonaws.com/")
    };
    assert_eq!(std::str::from_utf8(&url).unwrap(), expected_url);
    let sts_body = B64
        .decode(body["iam_request_body"].as_str().unwrap())
        .unwrap();
    assert_eq!(sts_body, STS_BODY.as_bytes());
    let headers: Map<String, Value> = serde_json::from_slice(
        &B64.decode(body["iam_request_headers"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let get = |name: &str| -> Option<String> {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v[0].as_str().unwrap().to_owned())
    };
    let authorization = get("authorization").expect("authorization header");
    assert!(
        authorization.contains(&format!("/{region}/sts/aws4_request")),
        "{authorization}"
    );
    let signed: Vec<&str> = authorization
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .split(';')
        .collect();
    assert!(signed.contains(&"host"));
    assert!(signed.contains(&"content-type"));
    let expected_host = url::Url::parse(&expected_url).unwrap();
    assert_eq!(get("host").as_deref(), expected_host.host_str());
    match server_id {
        Some(id) => {
            assert_eq!(get("x-vault-aws-iam-server-id").as_deref(), Some(id));
            assert!(signed.contains(&"x-vault-aws-iam-server-id"), "{signed:?}");
        }
        None => assert!(get("x-vault-aws-iam-server-id").is_none()),
    }
    match creds.session_token() {
        Some(tok) => {
            assert_eq!(get("x-amz-security-token").as_deref(), Some(tok));
            assert!(signed.contains(&"x-amz-security-token"));
        }
        None => assert!(get("x-amz-security-token").is_none()),
    }

    // Recompute the signature over the decoded request with aws-sigv4 itself.
    let time = amz_date(&get("x-amz-date").unwrap());
    let identity = creds.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(aws_sigv4::http_request::SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let replay: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| {
            !["authorization", "x-amz-date", "x-amz-security-token"]
                .contains(&k.to_ascii_lowercase().as_str())
        })
        .map(|(k, v)| (k.clone(), v[0].as_str().unwrap().to_owned()))
        .collect();
    let signable = aws_sigv4::http_request::SignableRequest::new(
        "POST",
        std::str::from_utf8(&url).unwrap(),
        replay.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        aws_sigv4::http_request::SignableBody::Bytes(&sts_body),
    )
    .unwrap();
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
        .unwrap()
        .into_parts();
    let recomputed = instructions
        .headers()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.to_owned())
        .unwrap();
    assert_eq!(recomputed, authorization);
}

#[test]
fn iam_login_body_is_consistently_signed() {
    let with_token = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("FwoGZXIvYXdzEXAMPLESESSION".into()),
        None,
        "test",
    );
    let body = build_iam_login_body(
        &with_token,
        "dt-rotator",
        Some("vault.example.com"),
        "us-east-1",
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(body["role"], "dt-rotator");
    verify_iam_login(&body, &with_token, Some("vault.example.com"), "us-east-1");

    let plain = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    let body = build_iam_login_body(&plain, "r", None, "eu-central-1", SystemTime::now()).unwrap();
    verify_iam_login(&body, &plain, None, "eu-central-1");
}

#[tokio::test]
async fn iam_login_against_stub() {
    let s = StubServer::vault(vec![
        Reply::json(
            200,
            r#"{"auth":{"client_token":"s.test","lease_duration":300,"renewable":true}}"#,
        ),
        Reply::json(
            200,
            r#"{"data":{"data":{"token":"v"},"metadata":{"version":1}}}"#,
        ),
    ]);
    let settings = VaultSettings::new(stub_url(&s), Some("team-a/".into()), "secret").unwrap();
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("FwoGZXIvYXdzEXAMPLESESSION".into()),
        None,
        "test",
    );
    let session = Arc::new(
        Session::new(
            http_client().unwrap(),
            &settings,
            AuthMethod::Aws {
                role: "dt-rotator".into(),
                mount: "aws".into(),
                server_id: Some("vault.example.com".into()),
                region: "us-east-1".into(),
            },
        )
        .with_aws_credentials(SharedCredentialsProvider::new(creds.clone())),
    );
    let kv = KvClient::new(http_client().unwrap(), settings, session.clone());
    assert!(matches!(kv.read("x").await.unwrap(), KvRead::Present(_)));
    assert_eq!(session.token().await.unwrap().expose_secret(), "s.test");

    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    let login = &reqs[0];
    assert_eq!(login.method, "POST");
    assert_eq!(login.path, "/v1/auth/aws/login");
    assert_eq!(login.header("x-vault-namespace"), Some("team-a/"));
    assert_eq!(login.header("x-vault-token"), None);
    let body: Value = serde_json::from_slice(&login.body).unwrap();
    assert_eq!(body["role"], "dt-rotator");
    verify_iam_login(&body, &creds, Some("vault.example.com"), "us-east-1");
    assert_eq!(reqs[1].header("x-vault-token"), Some("s.test"));
    assert_eq!(reqs[1].path, "/v1/secret/data/x");

    // Missing credentials provider is a configuration error, not a panic.
    let settings = VaultSettings::new(stub_url(&s), None, "secret").unwrap();
    let no_creds = Session::new(
        http_client().unwrap(),
        &settings,
        AuthMethod::Aws {
            role: "r".into(),
            mount: "aws".into(),
            server_id: None,
            region: "us-east-1".into(),
        },
    );
    assert!(matches!(
        no_creds.login().await,
        Err(VaultError::InvalidConfig(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// No secret in errors, Debug or logs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn secrets_never_in_errors_debug_or_logs() {
    // Capture every log line (TRACE, dependencies included) emitted on this test's thread.
    let (_guard, capture) = LogCapture::install();

    let secret_value = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.SECRETPARTSECRETPARTSECRETPART";
    let kv = root_kv("secret");
    let path = unique("leak/p");
    kv.write_cas(&path, &doc(secret_value), 0).await.unwrap();
    let read = kv.read(&path).await.unwrap();
    let entry_debug = format!("{read:?}");
    assert!(entry_debug.contains("token"), "{entry_debug}");
    assert!(!entry_debug.contains("SECRETPART"), "{entry_debug}");
    assert!(!entry_debug.contains("dynatrace.com"), "{entry_debug}");

    let root = bao().root_token().to_owned();
    let client_debug = format!("{kv:?} {:?}", kv.session());
    assert!(!client_debug.contains(&root), "{client_debug}");
    kv.session().token().await.unwrap();
    let session_debug = format!("{:?}", kv.session());
    assert!(!session_debug.contains(&root), "{session_debug}");

    let approle = AuthMethod::AppRole {
        role_id: "rid".into(),
        secret_id: SecretString::from("approle-secret-id-value".to_owned()),
    };
    assert!(!format!("{approle:?}").contains("approle-secret-id-value"));

    // Errors from several kinds of failure.
    let restricted = restricted_token().await;
    let s = settings("secret", None);
    let denied = KvClient::new(
        http_client().unwrap(),
        s.clone(),
        session_for(
            &s,
            AuthMethod::Token(SecretString::from(restricted.clone())),
        ),
    );
    let errors = vec![
        denied.read(&path).await.unwrap_err(),
        denied
            .write_cas(&path, &doc(secret_value), 1)
            .await
            .unwrap_err(),
        root_kv("no-such-mount").read(&path).await.unwrap_err(),
        session_for(&s, approle).login().await.unwrap_err(),
        kv.read("../x").await.unwrap_err(),
    ];
    // A successful AppRole login and re-login, and an IAM login, with logging on.
    let (role_id, secret_id) = approle_credentials().await;
    let session = session_for(
        &s,
        AuthMethod::AppRole {
            role_id,
            secret_id: SecretString::from(secret_id.clone()),
        },
    );
    let approle_token = session.token().await.unwrap();
    let approle_token = approle_token.expose_secret().to_owned();
    root_call(
        "POST",
        "auth/token/revoke",
        Some(json!({"token": approle_token})),
    )
    .await;
    let approle_kv = KvClient::new(http_client().unwrap(), s.clone(), session.clone());
    approle_kv.read(&unique("approle/p")).await.unwrap();
    let relogin_token = session.token().await.unwrap().expose_secret().to_owned();

    let iam_stub = StubServer::vault(vec![Reply::json(
        200,
        r#"{"auth":{"client_token":"s.iam-issued-token","lease_duration":300}}"#,
    )]);
    let iam_settings = VaultSettings::new(stub_url(&iam_stub), None, "secret").unwrap();
    let iam = Session::new(
        http_client().unwrap(),
        &iam_settings,
        AuthMethod::Aws {
            role: "dt-rotator".into(),
            mount: "aws".into(),
            server_id: None,
            region: "us-east-1".into(),
        },
    )
    .with_aws_credentials(SharedCredentialsProvider::new(Credentials::new(
        "AKIDEXAMPLE",
        "aws-secret-access-key-value",
        Some("aws-session-token-value".into()),
        None,
        "test",
    )));
    iam.login().await.unwrap();
    assert!(!format!("{iam:?}").contains("s.iam-issued-token"));

    drop(_guard);
    let logs = capture.text();
    assert!(logs.contains("logged in to Vault"), "{logs}");
    for secret in [
        secret_value,
        "SECRETPART",
        root.as_str(),
        restricted.as_str(),
        secret_id.as_str(),
        approle_token.as_str(),
        relogin_token.as_str(),
        "s.iam-issued-token",
        "aws-secret-access-key-value",
        "aws-session-token-value",
    ] {
        assert!(!logs.contains(secret), "leak of {secret:?} in logs");
    }

    for e in &errors {
        let text = format!("{e} | {e:?}");
        for secret in [
            secret_value,
            "SECRETPART",
            root.as_str(),
            restricted.as_str(),
            "approle-secret-id-value",
        ] {
            assert!(!text.contains(secret), "leak of {secret:?} in {text}");
        }
    }
}
