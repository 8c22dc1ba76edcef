//! Helpers shared by the emulator's integration tests.
#![allow(dead_code)]

use dynatrace_emulator::{Emulator, SeedToken, Seeded};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

/// A client that never follows redirects and never retries.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Starts an emulator with a manager token (`apiTokens.read`, `apiTokens.write`, `events.ingest`).
pub async fn setup() -> (Emulator, Seeded) {
    let emu = Emulator::start().await;
    let mut spec = SeedToken::new(
        "manager",
        &["apiTokens.read", "apiTokens.write", "events.ingest"],
    );
    spec.owner = "manager@example.com".into();
    let mgr = emu.seed_token(spec);
    (emu, mgr)
}

/// A request to `path` authenticated with `token`.
pub fn req(emu: &Emulator, method: Method, path: &str, token: &str) -> RequestBuilder {
    client()
        .request(method, format!("{}{}", emu.url(), path))
        .header("Authorization", format!("Api-Token {token}"))
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub async fn parts(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts the Dynatrace error envelope with this code.
pub fn assert_envelope(body: &Value, code: u16) {
    assert_eq!(body["error"]["code"], code, "envelope: {body}");
    assert!(body["error"]["message"].is_string(), "envelope: {body}");
}

/// Whether `s` has the shape `dt0c01.<24 [A-Z0-9]>.<64 [A-Z0-9]>`.
pub fn is_new_format(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    parts.len() == 3 && parts[0] == "dt0c01" && ok(parts[1], 24) && ok(parts[2], 64)
}

/// Whether `s` has the wire date shape `yyyy-MM-ddTHH:mm:ss.SSSZ`.
pub fn is_wire_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.parse::<jiff::Timestamp>().is_ok()
}
