//! [`StubServer`]: a scripted loopback HTTP/1.1 server standing in for "Vault" or "Dynatrace"
//! where the real server (OpenBao, the emulator) cannot answer what a test needs: redirects,
//! canned 5xx sequences, an IAM login, malformed, binary or huge bodies.
//!
//! It is written on plain `std::net` sockets rather than hyper, so that every byte of the answer
//! is the test's (no `Date` or other header added, any status, any body), and it runs on its own
//! threads, so it works under any tokio runtime (or none) and outlives none of them: each
//! connection gets one request and one answer, then `Connection: close`. Every request is
//! [recorded](Recorded) in arrival order before it is answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Path of Vault's token self-lookup, which the rotator's Vault client sends once for a static
/// token before its first real request (see [`StubServer::vault`]).
pub const VAULT_LOOKUP_SELF: &str = "/v1/auth/token/lookup-self";

/// Vault's answer to [`VAULT_LOOKUP_SELF`] for a live static token that never expires (TTL 0,
/// not renewable), so the client goes on without renewing it.
pub const VAULT_LIVE_TOKEN: &str = r#"{"data":{"ttl":0,"renewable":false}}"#;

/// How long a connection may stay silent before the stub gives up on it, so that a client that
/// never finishes its request cannot keep a thread forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One request as the stub received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request target as sent, query string included, e.g. `/v1/secret/data/x?version=2`.
    pub path: String,
    /// Header fields in the order sent, names as sent (use [`Recorded::header`] to look one up).
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; empty when there is none).
    pub body: Vec<u8>,
}

impl Recorded {
    /// Value of the first header named `name` (case-insensitive), `None` when absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, `None` when it is not JSON: for asserting what a client sent.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// An answer of the stub: status, header fields and body, sent exactly as given (plus
/// `Content-Length` and `Connection: close`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code; any number is sent as is, known or not.
    pub status: u16,
    /// Header fields, in order; nothing is added but `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    /// The body, any bytes (need not be UTF-8 or JSON).
    pub body: Vec<u8>,
}

impl Reply {
    /// `status` with no header field and an empty body, to build on with [`Reply::header`] and
    /// [`Reply::body`] (for answers that must not claim a content type, or claim another one).
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `status` with `Content-Type: application/json` and `body`, the usual Vault or Dynatrace
    /// answer (`body` need not be valid JSON).
    pub fn json(status: u16, body: &str) -> Self {
        Self::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// Adds the header field `name: value` (after those already set; a second field of the same
    /// name is sent too).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// What decides the answer to a request: the request and its number (0 for the first counted
/// request, see [`StubServer::start`]).
type Respond = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

struct State {
    /// Requests answered apart, by exact path: neither recorded nor counted.
    aside: Vec<(String, Reply)>,
    respond: Box<Respond>,
    requests: Mutex<Vec<Recorded>>,
}

/// A scripted HTTP/1.1 server on a free loopback port; stops accepting when dropped.
pub struct StubServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl StubServer {
    /// Answers each request with `respond(request, n)`, `n` counting the requests from 0 in
    /// arrival order; every request is recorded. Connections are served concurrently, each on
    /// its own thread.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn start(respond: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(Vec::new(), Box::new(respond))
    }

    /// Serves `replies` in order, one per request, the last one repeating for every further
    /// request (a canned sequence such as `503, 429, 200`); every request is recorded.
    ///
    /// # Panics
    /// When `replies` is empty, or no loopback port can be bound.
    pub fn replies(replies: Vec<Reply>) -> Self {
        Self::serve(Vec::new(), sequence(replies))
    }

    /// Like [`StubServer::replies`], for the rotator's Vault client holding a static token: the
    /// client's check of that token at first use (its request for [`VAULT_LOOKUP_SELF`]) is
    /// answered apart with [`VAULT_LIVE_TOKEN`], neither recorded nor counted, so `replies` and the
    /// recorded requests are exactly the calls under test. Use [`StubServer::start`] to see (and
    /// answer) the lookup too.
    ///
    /// # Panics
    /// When `replies` is empty, or no loopback port can be bound.
    pub fn vault(replies: Vec<Reply>) -> Self {
        let live = Reply::json(200, VAULT_LIVE_TOKEN);
        Self::serve(
            vec![(VAULT_LOOKUP_SELF.to_owned(), live)],
            sequence(replies),
        )
    }

    fn serve(aside: Vec<(String, Reply)>, respond: Box<Respond>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State {
            aside,
            respond,
            requests: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            let counter = Arc::new(Mutex::new(0usize));
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (state, counter) = (shared.clone(), counter.clone());
                std::thread::spawn(move || handle(conn, &state, &counter));
            }
        });
        Self { addr, state, stop }
    }

    /// The socket address the stub listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234` (the value for
    /// `VAULT_ADDR` or a document's `environmentUrl`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every recorded request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and releases the port.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// `replies[n]`, the last one for every `n` past the end.
fn sequence(replies: Vec<Reply>) -> Box<Respond> {
    assert!(!replies.is_empty(), "a stub needs at least one reply");
    Box::new(move |_, n| replies[n.min(replies.len() - 1)].clone())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads one request from `conn`, records and answers it, then closes the connection.
fn handle(mut conn: TcpStream, state: &State, counter: &Mutex<usize>) {
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IDLE_TIMEOUT));
    let Some(req) = read_request(&conn) else {
        return;
    };
    let aside = state
        .aside
        .iter()
        .find(|(path, _)| *path == req.path)
        .map(|(_, reply)| reply.clone());
    let reply = match aside {
        Some(reply) => reply,
        None => {
            let n = {
                // Numbered and recorded under one lock, so numbers follow the recorded order.
                let mut counter = lock(counter);
                let n = *counter;
                *counter += 1;
                lock(&state.requests).push(req.clone());
                n
            };
            (state.respond)(&req, n)
        }
    };
    write_reply(&mut conn, &reply);
    let _ = conn.shutdown(std::net::Shutdown::Write);
}

/// Reads the request line, the header fields and `Content-Length` bytes of body; `None` when the
/// client closed the connection or sent no well-formed head.
fn read_request(conn: &TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut field = String::new();
        if reader.read_line(&mut field).ok()? == 0 {
            return None;
        }
        let field = field.trim_end();
        if field.is_empty() {
            break;
        }
        let (k, v) = field.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// Writes `reply` (errors ignored: a client may hang up early, e.g. on an oversized body).
fn write_reply(conn: &mut TcpStream, reply: &Reply) {
    let reason = hyper::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Stub");
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_ok() {
        let _ = conn.write_all(&reply.body);
    }
    let _ = conn.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `request` (raw bytes) to `stub` and returns the whole raw answer.
    fn raw(stub: &StubServer, request: &[u8]) -> Vec<u8> {
        let mut conn = TcpStream::connect(stub.addr()).unwrap();
        conn.write_all(request).unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).unwrap();
        out
    }

    fn get(stub: &StubServer, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Vault-Token: s.t\r\n\r\n");
        String::from_utf8(raw(stub, request.as_bytes())).unwrap()
    }

    #[test]
    fn replies_come_in_order_and_the_last_repeats() {
        let stub = StubServer::replies(vec![
            Reply::json(503, r#"{"errors":["sealed"]}"#).header("Retry-After", "0"),
            Reply::json(200, "{}"),
        ]);
        let first = get(&stub, "/a");
        assert!(
            first.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{first}"
        );
        assert!(first.contains("\r\nRetry-After: 0\r\n"), "{first}");
        assert!(
            first.contains("\r\nContent-Type: application/json\r\n"),
            "{first}"
        );
        assert!(
            first.ends_with("\r\n\r\n{\"errors\":[\"sealed\"]}"),
            "{first}"
        );
        for _ in 0..3 {
            assert!(get(&stub, "/b").starts_with("HTTP/1.1 200 OK\r\n"));
        }
        let seen = stub.requests();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("GET", "/a")
        );
        assert_eq!(seen[0].header("x-vault-token"), Some("s.t"));
    }

    #[test]
    fn the_vault_lookup_is_answered_apart_neither_recorded_nor_counted() {
        let stub = StubServer::vault(vec![Reply::json(200, "one"), Reply::json(200, "two")]);
        let lookup = get(&stub, VAULT_LOOKUP_SELF);
        assert!(lookup.ends_with(VAULT_LIVE_TOKEN), "{lookup}");
        assert!(get(&stub, "/v1/secret/data/x").ends_with("one"));
        get(&stub, VAULT_LOOKUP_SELF);
        assert!(get(&stub, "/v1/secret/data/x").ends_with("two"));
        let paths: Vec<String> = stub.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/v1/secret/data/x", "/v1/secret/data/x"]);

        // start() records (and answers) the lookup like any request.
        let all = StubServer::start(|req, n| Reply::json(200, &format!("{n} {}", req.path)));
        assert!(get(&all, VAULT_LOOKUP_SELF).ends_with(&format!("0 {VAULT_LOOKUP_SELF}")));
        assert!(get(&all, "/x").ends_with("1 /x"));
        assert_eq!(all.requests().len(), 2);
    }

    #[test]
    fn bodies_are_recorded_and_answers_sent_byte_for_byte() {
        let stub = StubServer::start(|req, _| {
            Reply::new(418)
                .header("Content-Type", "text/html")
                .body(req.body.iter().rev().copied().collect::<Vec<u8>>())
        });
        let answer = raw(
            &stub,
            b"POST /p?q=1 HTTP/1.1\r\ncontent-length: 4\r\n\r\n\xff\x00ab",
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 418 I'm a teapot\r\n"), "{text}");
        assert!(answer.ends_with(b"\r\n\r\nba\x00\xff"), "{text}");
        // Only Content-Length and Connection are added to the reply's own fields.
        let head = text.split("\r\n\r\n").next().unwrap();
        assert_eq!(head.lines().count(), 4, "{head}");
        let seen = &stub.requests()[0];
        assert_eq!(seen.path, "/p?q=1");
        assert_eq!(seen.body, b"\xff\x00ab");
        assert_eq!(seen.json(), None);
    }

    #[test]
    fn unknown_statuses_and_huge_bodies_are_sent_as_given() {
        let huge = vec![b'['; 6 * 1024 * 1024];
        let body = huge.clone();
        let stub = StubServer::start(move |_, _| Reply::new(799).body(body.clone()));
        let answer = raw(&stub, b"GET / HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with(b"HTTP/1.1 799 Stub\r\n"));
        assert!(answer.ends_with(&huge));
    }

    #[test]
    fn concurrent_requests_are_each_numbered_once() {
        let stub = Arc::new(StubServer::start(|_, n| Reply::json(200, &n.to_string())));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let stub = stub.clone();
                std::thread::spawn(move || get(&stub, "/c"))
            })
            .collect();
        let mut numbers: Vec<usize> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap()
                    .rsplit("\r\n")
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        numbers.sort();
        assert_eq!(numbers, (0..8).collect::<Vec<_>>());
        assert_eq!(stub.requests().len(), 8);
    }

    #[test]
    fn a_dropped_stub_stops_listening() {
        let stub = StubServer::replies(vec![Reply::new(204)]);
        let addr = stub.addr();
        assert!(get(&stub, "/").starts_with("HTTP/1.1 204 No Content\r\n"));
        drop(stub);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "still listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
