//! The emulated Environment API v2: `/api/v2/apiTokens*` and `/api/v2/events/ingest`.

// Error responses are built at most once per request; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, header};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::model::{
    ALL_FIELDS, DEFAULT_FIELDS, KNOWN_SCOPES, REMOVED_SCOPES, Snapshot, State, Token, now_ms,
    parse_time, parse_time_str, pat_allows, scope_label,
};
use crate::{Shared, lock};

/// Peer IP of the connection, inserted as a request extension by the server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerIp(pub IpAddr);

type Resp = Response<Body>;

/// Routes of the emulated API (fallback: `404` envelope).
pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/api/v2/apiTokens", get(list).post(create))
        .route("/api/v2/apiTokens/lookup", post(lookup))
        .route(
            "/api/v2/apiTokens/{id}",
            get(get_one).put(update).delete(delete),
        )
        .route("/api/v2/events/ingest", post(ingest))
        .fallback(not_found)
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// The Dynatrace error envelope `{"error":{"code":N,"message":"..."}}`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message}}),
    )
}

fn bad_request(message: &str) -> Resp {
    error_response(StatusCode::BAD_REQUEST, message)
}

/// `400` with `constraintViolations` located in the request body.
fn violations(list: &[(&str, String)]) -> Resp {
    let items: Vec<Value> = list
        .iter()
        .map(|(path, message)| {
            json!({"path": path, "message": message, "parameterLocation": "PAYLOAD_BODY", "location": null})
        })
        .collect();
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"code": 400, "message": "Constraints violated.", "constraintViolations": items}}),
    )
}

fn unauthorized() -> Resp {
    error_response(StatusCode::UNAUTHORIZED, "Token Authentication failed")
}

fn token_not_found() -> Resp {
    error_response(StatusCode::NOT_FOUND, "Token not found")
}

async fn not_found() -> Resp {
    error_response(StatusCode::NOT_FOUND, "Not Found")
}

// ---------------------------------------------------------------------------------------------
// Authentication and bodies

/// The token that authenticated a request.
struct Caller {
    id: String,
    owner: String,
}

/// Checks `Authorization: Api-Token <value>`, records the use, then checks `scope`.
fn authenticate(
    st: &mut State,
    headers: &HeaderMap,
    ip: IpAddr,
    scope: Option<&str>,
) -> Result<Caller, Resp> {
    let now = now_ms();
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("Api-Token")
                .then(|| rest.trim())
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(unauthorized)?;
    let tok = st
        .tokens
        .iter_mut()
        .find(|t| t.value == value)
        .filter(|t| t.usable(now))
        .ok_or_else(unauthorized)?;
    tok.last_used = Some(now);
    tok.last_used_ip = Some(ip.to_canonical().to_string());
    if let Some(scope) = scope
        && !tok.scopes.iter().any(|s| s == scope)
    {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            &format!(
                "Token is missing required scope. Use one of: {scope} ({})",
                scope_label(scope)
            ),
        ));
    }
    Ok(Caller {
        id: tok.id.clone(),
        owner: tok.owner.clone(),
    })
}

/// Parses a JSON body; errors never echo input strings (they could be secrets).
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Resp> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(bad_request("Request body is required"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => {
                let msg = e.to_string();
                if msg.contains('"') || (msg.contains('`') && msg.contains("invalid value")) {
                    "Invalid value type".to_string()
                } else {
                    msg.split(" at line")
                        .next()
                        .unwrap_or("Invalid body")
                        .to_string()
                }
            }
            _ => "Could not parse JSON".to_string(),
        };
        bad_request(&format!(
            "Could not map JSON: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Validates a scope list for create/update; pushes violations.
fn check_scopes(scopes: &Option<Vec<String>>, pat: bool, out: &mut Vec<(&str, String)>) {
    match scopes {
        None => out.push(("scopes", "must not be null".to_string())),
        Some(list) if list.is_empty() => out.push(("scopes", "must not be empty".to_string())),
        Some(list) => {
            for s in list {
                if REMOVED_SCOPES.contains(&s.as_str()) {
                    out.push((
                        "scopes",
                        format!("Scope {s} is deprecated and can no longer be assigned to tokens"),
                    ));
                } else if !KNOWN_SCOPES.contains(&s.as_str()) {
                    out.push(("scopes", format!("Unknown scope: {s}")));
                } else if pat && !pat_allows(s) {
                    out.push((
                        "scopes",
                        format!("Scope {s} cannot be assigned to a personal access token"),
                    ));
                }
            }
        }
    }
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for s in list {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// List

/// One `apiTokenSelector` criterion.
enum Criterion {
    Owner(String),
    Pat(bool),
    Scope(Vec<String>),
}

impl Criterion {
    fn matches(&self, t: &Token) -> bool {
        match self {
            Criterion::Owner(o) => &t.owner == o,
            Criterion::Pat(p) => t.pat == *p,
            Criterion::Scope(list) => list.iter().any(|s| t.scopes.contains(s)),
        }
    }
}

/// Parses `owner("x"),personalAccessToken(false),scope("a","b")`.
fn parse_selector(s: &str) -> Result<Vec<Criterion>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_alphabetic() {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if chars.get(i) != Some(&'(') {
            return Err(format!("expected '(' after '{name}'"));
        }
        i += 1;
        let mut args = Vec::new();
        loop {
            skip_ws(&mut i);
            match chars.get(i) {
                Some(')') if args.is_empty() => {
                    i += 1;
                    break;
                }
                Some('"') => {
                    i += 1;
                    let mut arg = String::new();
                    loop {
                        match chars.get(i) {
                            None => return Err("unterminated string".to_string()),
                            Some('\\') => {
                                if let Some(c) = chars.get(i + 1) {
                                    arg.push(*c);
                                }
                                i += 2;
                            }
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some(c) => {
                                arg.push(*c);
                                i += 1;
                            }
                        }
                    }
                    args.push(arg);
                }
                Some(_) => {
                    let start = i;
                    while i < chars.len() && chars[i] != ',' && chars[i] != ')' {
                        i += 1;
                    }
                    args.push(
                        chars[start..i]
                            .iter()
                            .collect::<String>()
                            .trim()
                            .to_string(),
                    );
                }
                None => return Err("unterminated criterion".to_string()),
            }
            skip_ws(&mut i);
            match chars.get(i) {
                Some(',') => i += 1,
                Some(')') => {
                    i += 1;
                    break;
                }
                _ => return Err(format!("malformed arguments of '{name}'")),
            }
        }
        let crit = match (name.as_str(), args.as_slice()) {
            ("owner", [o]) => Criterion::Owner(o.clone()),
            ("personalAccessToken", [b]) => match b.as_str() {
                "true" => Criterion::Pat(true),
                "false" => Criterion::Pat(false),
                _ => return Err("personalAccessToken takes true or false".to_string()),
            },
            ("scope", list) if !list.is_empty() => Criterion::Scope(list.to_vec()),
            _ => return Err(format!("unsupported criterion '{name}'")),
        };
        out.push(crit);
        skip_ws(&mut i);
        match chars.get(i) {
            None => break,
            Some(',') => i += 1,
            Some(_) => return Err("criteria must be separated by ','".to_string()),
        }
    }
    Ok(out)
}

/// Parses `fields`: `+f` adds to the default set, `-f` removes, unsigned names replace it.
fn parse_fields(s: &str) -> Result<Vec<&'static str>, String> {
    let items: Vec<&str> = s
        .split(',')
        .map(str::trim_end)
        .filter(|i| !i.trim().is_empty())
        .collect();
    if items.is_empty() {
        return Ok(DEFAULT_FIELDS.to_vec());
    }
    if items.iter().any(|i| i.starts_with(char::is_whitespace)) {
        return Err(
            "Invalid fields: a field starts with a space (a raw '+' decodes to a space; send it as %2B)"
                .to_string(),
        );
    }
    let replace = items.iter().any(|i| !i.starts_with(['+', '-']));
    let mut set: Vec<&'static str> = if replace {
        Vec::new()
    } else {
        DEFAULT_FIELDS.to_vec()
    };
    for item in items {
        let (remove, name) = match item.as_bytes()[0] {
            b'+' => (false, &item[1..]),
            b'-' => (true, &item[1..]),
            _ => (false, item),
        };
        let field = ALL_FIELDS
            .iter()
            .copied()
            .find(|f| *f == name)
            .ok_or_else(|| format!("Invalid fields: unknown field '{name}'"))?;
        if remove {
            set.retain(|f| *f != field);
        } else if !set.contains(&field) {
            set.push(field);
        }
    }
    if !set.contains(&"id") {
        set.push("id");
    }
    Ok(set)
}

const KEY_MAGIC: [u8; 3] = [0xFB, 0xFF, 0x01];

/// Opaque page key: base64 of magic, snapshot id, offset and a pad byte. The magic makes
/// every key contain `+`, `/` and `=`, so clients that do not percent-encode it fail loudly.
fn encode_key(snapshot: u64, offset: usize) -> String {
    let mut bytes = KEY_MAGIC.to_vec();
    bytes.extend_from_slice(&snapshot.to_be_bytes());
    bytes.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_be_bytes());
    bytes.push(0);
    B64.encode(bytes)
}

fn decode_key(key: &str) -> Option<(u64, usize)> {
    let bytes = B64.decode(key).ok()?;
    if bytes.len() != 16 || bytes[..3] != KEY_MAGIC {
        return None;
    }
    let snap = u64::from_be_bytes(bytes[3..11].try_into().ok()?);
    let offset = u32::from_be_bytes(bytes[11..15].try_into().ok()?);
    Some((snap, offset as usize))
}

async fn list(
    AxState(shared): AxState<Shared>,
    Extension(PeerIp(ip)): Extension<PeerIp>,
    headers: HeaderMap,
    uri: Uri,
) -> Resp {
    let mut st = lock(&shared);
    list_sync(&mut st, ip, &headers, &uri).unwrap_or_else(|e| e)
}

fn list_sync(st: &mut State, ip: IpAddr, headers: &HeaderMap, uri: &Uri) -> Result<Resp, Resp> {
    authenticate(st, headers, ip, Some("apiTokens.read"))?;
    let params = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| bad_request("Invalid query string"))?
        .0;
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let now = now_ms();
    let (snap_id, offset) = if let Some(key) = param("nextPageKey") {
        if params.len() != 1 {
            return Err(bad_request(
                "The nextPageKey parameter must be the only query parameter when present",
            ));
        }
        let (id, offset) = decode_key(key).ok_or_else(|| bad_request("Invalid nextPageKey"))?;
        match st.snapshots.get(&id) {
            Some(s) if offset < s.ids.len() => (id, offset),
            _ => return Err(bad_request("Invalid nextPageKey")),
        }
    } else {
        let page_size = match param("pageSize") {
            None => 200,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (100..=10_000).contains(&n) => n,
                _ => return Err(bad_request("pageSize must be between 100 and 10000")),
            },
        };
        let criteria = match param("apiTokenSelector") {
            None => Vec::new(),
            Some(s) => parse_selector(s)
                .map_err(|e| bad_request(&format!("Invalid apiTokenSelector: {e}")))?,
        };
        let fields = match param("fields") {
            None => DEFAULT_FIELDS.to_vec(),
            Some(s) => parse_fields(s).map_err(|e| bad_request(&e))?,
        };
        let parse_bound = |name: &str| -> Result<Option<jiff::Timestamp>, Resp> {
            param(name)
                .map(|v| parse_time_str(v, now))
                .transpose()
                .map_err(|e| bad_request(&format!("Invalid {name}: {e}")))
        };
        let from = parse_bound("from")?;
        let to = parse_bound("to")?;
        let (desc, key) = match param("sort").map(str::trim) {
            None | Some("") => (true, "creationDate"),
            Some(s) => {
                let (desc, name) = match s.as_bytes()[0] {
                    b'-' => (true, &s[1..]),
                    b'+' => (false, &s[1..]),
                    _ => (false, s),
                };
                match name {
                    "creationDate" | "expirationDate" | "lastUsedDate" | "modifiedDate" => {
                        (desc, name)
                    }
                    _ => {
                        return Err(bad_request(&format!(
                            "Invalid sort: unknown field '{name}'"
                        )));
                    }
                }
            }
        };
        let mut matching: Vec<(usize, &Token)> = st
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| criteria.iter().all(|c| c.matches(t)))
            .filter(|(_, t)| {
                if from.is_none() && to.is_none() {
                    return true;
                }
                let to = to.unwrap_or(now);
                t.last_used
                    .is_some_and(|u| from.is_none_or(|f| u >= f) && u <= to)
            })
            .collect();
        let sort_key = |t: &Token| match key {
            "creationDate" => Some(t.creation),
            "expirationDate" => t.expiration,
            "lastUsedDate" => t.last_used,
            _ => Some(t.modified),
        };
        matching.sort_by(|(ia, a), (ib, b)| {
            let ord = sort_key(a).cmp(&sort_key(b)).then(ia.cmp(ib));
            if desc { ord.reverse() } else { ord }
        });
        let ids = matching.into_iter().map(|(_, t)| t.id.clone()).collect();
        let id = st.store_snapshot(Snapshot {
            ids,
            page_size,
            fields,
        });
        (id, 0)
    };
    let snap = &st.snapshots[&snap_id];
    let end = (offset + snap.page_size).min(snap.ids.len());
    let items: Vec<Value> = snap.ids[offset..end]
        .iter()
        .filter_map(|id| st.tokens.iter().find(|t| &t.id == id))
        .map(|t| t.render(&snap.fields))
        .collect();
    let mut body = json!({
        "totalCount": snap.ids.len(),
        "pageSize": snap.page_size,
    });
    if end < snap.ids.len() {
        body["nextPageKey"] = Value::from(encode_key(snap_id, end));
    }
    body["apiTokens"] = Value::from(items);
    Ok(json_response(StatusCode::OK, &body))
}

// ---------------------------------------------------------------------------------------------
// Create

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    expiration_date: Option<Value>,
    personal_access_token: Option<bool>,
}

async fn create(
    AxState(shared): AxState<Shared>,
    Extension(PeerIp(ip)): Extension<PeerIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Resp {
    let mut st = lock(&shared);
    create_sync(&mut st, ip, &headers, &body).unwrap_or_else(|e| e)
}

fn create_sync(
    st: &mut State,
    ip: IpAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Resp, Resp> {
    let caller = authenticate(st, headers, ip, Some("apiTokens.write"))?;
    let req: CreateBody = parse_json(body)?;
    let now = now_ms();
    let pat = req.personal_access_token.unwrap_or(false);
    let mut errs = Vec::new();
    match req.name.as_deref().map(str::trim) {
        None => errs.push(("name", "must not be null".to_string())),
        Some("") => errs.push(("name", "must not be empty".to_string())),
        Some(_) => {}
    }
    check_scopes(&req.scopes, pat, &mut errs);
    let mut expiration = None;
    if let Some(v) = &req.expiration_date {
        match parse_time(v, now) {
            Ok(t) if t <= now => errs.push(("expirationDate", "must be in the future".to_string())),
            Ok(t) => expiration = Some(crate::model::trunc_ms(t)),
            Err(e) => errs.push(("expirationDate", e)),
        }
    }
    if !errs.is_empty() {
        return Err(violations(&errs));
    }
    let seeded = st.insert(
        req.name.unwrap_or_default(),
        dedup(req.scopes.unwrap_or_default()),
        caller.owner,
        now,
        expiration,
        true,
        false,
        pat,
    );
    let mut body = json!({"id": seeded.id, "token": seeded.value});
    if let Some(e) = expiration {
        body["expirationDate"] = Value::from(crate::model::fmt_date(e));
    }
    Ok(json_response(StatusCode::CREATED, &body))
}

// ---------------------------------------------------------------------------------------------
// Get, update, delete, lookup

async fn get_one(
    AxState(shared): AxState<Shared>,
    Extension(PeerIp(ip)): Extension<PeerIp>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Resp {
    let mut st = lock(&shared);
    let st = &mut *st;
    if let Err(e) = authenticate(st, &headers, ip, Some("apiTokens.read")) {
        return e;
    }
    match st.tokens.iter().find(|t| t.id == id) {
        Some(t) => json_response(StatusCode::OK, &t.render(ALL_FIELDS)),
        None => token_not_found(),
    }
}

#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    enabled: Option<bool>,
    scopes: Option<Vec<String>>,
}

async fn update(
    AxState(shared): AxState<Shared>,
    Extension(PeerIp(ip)): Extension<PeerIp>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Resp {
    let mut st = lock(&shared);
    update_sync(&mut st, ip, &headers, &id, &body).unwrap_or_else(|e| e)
}

fn update_sync(
    st: &mut State,
    ip: IpAddr,
    headers: &HeaderMap,
    id: &str,
    body: &Bytes,
) -> Result<Resp, Resp> {
    let caller = authenticate(st, headers, ip, Some("apiTokens.write"))?;
    let req: UpdateBody = parse_json(body)?;
    let idx = st
        .tokens
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(token_not_found)?;
    let mut errs = Vec::new();
    if req.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        errs.push(("name", "must not be empty".to_string()));
    }
    if req.scopes.is_some() {
        check_scopes(&req.scopes, st.tokens[idx].pat, &mut errs);
    }
    if !errs.is_empty() {
        return Err(violations(&errs));
    }
    if req.enabled == Some(false) && st.tokens[idx].id == caller.id {
        return Err(bad_request("A token cannot disable itself"));
    }
    let now = now_ms();
    let t = &mut st.tokens[idx];
    if let Some(name) = req.name
        && name != t.name
    {
        t.name = name;
        t.modified = now;
    }
    if let Some(scopes) = req.scopes {
        let scopes = dedup(scopes);
        if scopes != t.scopes {
            t.scopes = scopes;
            t.modified = now;
        }
    }
    if let Some(enabled) = req.enabled {
        t.enabled = enabled;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn delete(
    AxState(shared): AxState<Shared>,
    Extension(PeerIp(ip)): Extension<PeerIp>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Resp {
    let mut st = lock(&shared);
    let st = &mut *st;
    let caller = match authenticate(st, &headers, ip, Some("apiTokens.write")) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Some(idx) = st.tokens.iter().position(|t| t.id == id || t.value == id) else {
        return token_not_found();
    };
    if st.tokens[idx].id == caller.id {
        return bad_request("A token cannot delete itself");
    }
    let gone = st.tokens.remove(idx);
    st.deleted.insert(gone.id);
    empty(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LookupBody {
    token: Option<String>,
}

async fn lookup(
    AxState(shared): AxState<Shared>,
    Extension(PeerIp(ip)): Extension<PeerIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Resp {
    let mut st = lock(&shared);
    let st = &mut *st;
    if let Err(e) = authenticate(st, &headers, ip, None) {
        return e;
    }
    let req: LookupBody = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Some(value) = req.token.filter(|v| !v.is_empty()) else {
        return violations(&[("token", "must not be null".to_string())]);
    };
    match st.tokens.iter().find(|t| t.value == value) {
        Some(t) => json_response(StatusCode::OK, &t.render(ALL_FIELDS)),
        None => token_not_found(),
    }
}

// ---------------------------------------------------------------------------------------------
// Events

/// Event types accepted by `POST /api/v2/events/ingest`.
const EVENT_TYPES: &[&str] = &[
    "AVAILABILITY_EVENT",
    "CUSTOM_ALERT",
    "CUSTOM_ANNOTATION",
    "CUSTOM_CONFIGURATION",
    "CUSTOM_DEPLOYMENT",
    "CUSTOM_INFO",
    "ERROR_EVENT",
    "MARKED_FOR_TERMINATION",
    "PERFORMANCE_EVENT",
    "RESOURCE_CONTENTION_EVENT",
    "WARNING",
];

async fn ingest(
    AxState(shared): AxState<Shared>,
    Extension(PeerIp(ip)): Extension<PeerIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Resp {
    let mut st = lock(&shared);
    let st = &mut *st;
    if let Err(e) = authenticate(st, &headers, ip, Some("events.ingest")) {
        return e;
    }
    let event: Value = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if !event.is_object() {
        return bad_request("The event must be a JSON object");
    }
    let mut errs = Vec::new();
    match event.get("eventType").and_then(Value::as_str) {
        None => errs.push(("eventType", "must not be null".to_string())),
        Some(t) if !EVENT_TYPES.contains(&t) => {
            errs.push(("eventType", format!("Unknown event type: {t}")))
        }
        Some(_) => {}
    }
    if event
        .get("title")
        .and_then(Value::as_str)
        .is_none_or(|t| t.trim().is_empty())
    {
        errs.push(("title", "must not be empty".to_string()));
    }
    if let Some(props) = event.get("properties")
        && !props.is_object()
    {
        errs.push(("properties", "must be an object".to_string()));
    }
    if !errs.is_empty() {
        return violations(&errs);
    }
    st.events.push(event);
    let correlation: u64 = rand::random();
    json_response(
        StatusCode::CREATED,
        &json!({
            "reportCount": 1,
            "eventIngestResults": [{"correlationId": format!("{correlation:016x}"), "status": "OK"}]
        }),
    )
}
