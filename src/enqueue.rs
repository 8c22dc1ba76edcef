//! The `enqueue-vault` action (docs/design.md §6): fan-out for Vault fleets too large for one
//! invocation. It lists the paths like `rotate-vault` (same cleaning and listing rules, the
//! manager path left out), splits them into `rotate-vault` messages of at most `batchSize`
//! paths, and sends them to `VAULT_QUEUE_URL` with `SendMessageBatch` (at most 10 entries and
//! 256 KiB per call). The queue's consumer is this function again (an SQS event), which
//! rotates each message's paths and reports failed records in `batchItemFailures`.
//!
//! Entries SQS refuses for a reason of its own (`SenderFault: false`, throttling, a 5xx, a lost
//! answer) are sent again, up to [`SEND_ROUNDS`] rounds within the deadline; what still could
//! not be sent is listed under `errors` with its paths. An invocation that could send none of
//! its messages fails (`SqsError`). A message sent twice (a lost answer repeated) is harmless:
//! the consumer's due rule skips a path rotated moments ago, and SQS standard queues deliver
//! at least once anyway. On a FIFO queue each message carries a content-based deduplication
//! id, so SQS itself drops such a repeat.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::deadline::Deadline;
use crate::event::{EnqueueAction, MAX_EVENT_BYTES, VaultAction};
use crate::vault::rotate::{self as vault_rotate, RunError, VaultBackend};

/// Most entries in one `SendMessageBatch` call (SQS's limit).
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// Most bytes of message bodies in one `SendMessageBatch` call, and in one message (SQS's
/// limits; also the largest record body the consumer accepts, [`MAX_EVENT_BYTES`]).
pub const MAX_CALL_BYTES: usize = MAX_EVENT_BYTES;

/// Rounds of sending: the first, then retries of the entries SQS did not take for a reason
/// that may pass.
pub const SEND_ROUNDS: u32 = 3;

/// One `rotate-vault` message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The entry id within a `SendMessageBatch` call (the message's index, unique per run).
    pub id: String,
    /// The paths the message names.
    pub paths: Vec<String>,
    /// The body: `{"action":"rotate-vault","paths":[...]}`.
    pub body: String,
}

/// The body of a `rotate-vault` message for `paths`.
fn body(paths: &[String]) -> String {
    serde_json::json!({"action": "rotate-vault", "paths": paths}).to_string()
}

/// Splits `paths` (in order) into `rotate-vault` messages of at most `batch_size` paths and
/// at most [`MAX_CALL_BYTES`] of body each. Every path is in exactly one message.
pub fn messages(paths: &[String], batch_size: usize) -> Vec<Message> {
    let batch_size = batch_size.max(1);
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for p in paths {
        current.push(p.clone());
        let too_big = current.len() > 1 && body(&current).len() > MAX_CALL_BYTES;
        if too_big {
            let last = current.pop().unwrap_or_default();
            out.push(std::mem::take(&mut current));
            current.push(last);
        }
        if current.len() == batch_size {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, paths)| Message {
            id: i.to_string(),
            body: body(&paths),
            paths,
        })
        .collect()
}

/// Groups messages into `SendMessageBatch` calls: at most [`MAX_ENTRIES_PER_CALL`] entries
/// and [`MAX_CALL_BYTES`] of bodies per call, in order.
pub fn calls<'m>(messages: &[&'m Message]) -> Vec<Vec<&'m Message>> {
    let mut out: Vec<Vec<&Message>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let fits = out.last().is_some_and(|call| {
            call.len() < MAX_ENTRIES_PER_CALL && bytes + m.body.len() <= MAX_CALL_BYTES
        });
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += m.body.len();
        if let Some(call) = out.last_mut() {
            call.push(m);
        }
    }
    out
}

/// An entry SQS refused in a `SendMessageBatch` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEntry {
    /// The entry id.
    pub id: String,
    /// SQS says the request itself is at fault: sending it again cannot help.
    pub sender_fault: bool,
    /// SQS's error code and message.
    pub error: String,
}

/// A `SendMessageBatch` call that failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// Whether the same call may succeed later (timeout, throttling, 5xx, lost answer).
    pub retryable: bool,
    /// What went wrong (SQS's code and message, or the transport error).
    pub error: String,
}

/// The answer to one `SendMessageBatch` call: the ids SQS took and the entries it refused
/// (an entry in neither list counts as refused, retryably), or the call's failure.
pub type BatchAnswer = Result<(Vec<String>, Vec<RefusedEntry>), CallFailure>;

/// Where the messages go: `SendMessageBatch` on one queue. A trait so that partial failures
/// can be tested without a queue that produces them.
pub trait BatchSender {
    /// Sends `entries` in one call.
    fn send_batch(&self, entries: &[&Message]) -> impl Future<Output = BatchAnswer>;
}

/// The queue of `VAULT_QUEUE_URL`, through the SQS client built once in `main`.
pub struct SqsQueue<'a> {
    /// The SQS client.
    pub client: &'a aws_sdk_sqs::Client,
    /// The queue URL.
    pub url: &'a str,
}

/// Whether `url` names a FIFO queue (its name ends in `.fifo`): entries then need a group id
/// and a deduplication id.
fn is_fifo(url: &str) -> bool {
    url.trim_end_matches('/').ends_with(".fifo")
}

/// A content-based id for FIFO queues: the SHA-256 of the body, hex (64 characters).
fn content_id(body: &str) -> String {
    Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl BatchSender for SqsQueue<'_> {
    async fn send_batch(&self, entries: &[&Message]) -> BatchAnswer {
        use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let fifo = is_fifo(self.url);
        let mut built = Vec::with_capacity(entries.len());
        for m in entries {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(&m.id)
                .message_body(&m.body);
            if fifo {
                // One group per message (they are independent, so consumers run them in
                // parallel); the deduplication id drops a repeat of the same message.
                let id = content_id(&m.body);
                entry = entry.message_group_id(&id).message_deduplication_id(id);
            }
            built.push(entry.build().map_err(|e| CallFailure {
                retryable: false,
                error: format!("cannot build the SendMessageBatch entry: {e}"),
            })?);
        }
        let answer = self
            .client
            .send_message_batch()
            .queue_url(self.url)
            .set_entries(Some(built))
            .send()
            .await;
        match answer {
            Ok(out) => Ok((
                out.successful().iter().map(|e| e.id().to_owned()).collect(),
                out.failed()
                    .iter()
                    .map(|e| RefusedEntry {
                        id: e.id().to_owned(),
                        sender_fault: e.sender_fault(),
                        error: format!("{}: {}", e.code(), e.message().unwrap_or("refused")),
                    })
                    .collect(),
            )),
            Err(e) => {
                let retryable = match &e {
                    SdkError::ServiceError(ctx) => {
                        let status = ctx.raw().status().as_u16();
                        status >= 500
                            || status == 429
                            || e.code().is_some_and(|c| {
                                c.contains("Throttl") || c.contains("RequestThrottled")
                            })
                    }
                    _ => true,
                };
                Err(CallFailure {
                    retryable,
                    error: format!("SendMessageBatch failed: {}", DisplayErrorContext(&e)),
                })
            }
        }
    }
}

/// A message that could not be sent, with its paths (listed under `errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsent {
    /// The paths of the message: rotate them another way (`rotate-vault`, or the next run).
    pub paths: Vec<String>,
    /// Why (SQS's code and message; never a secret: bodies hold paths only).
    pub error: String,
}

/// What sending came to: how many messages SQS took and which it did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Messages SQS took.
    pub sent: usize,
    /// Messages it did not.
    pub unsent: Vec<Unsent>,
}

/// Sends `messages` through `sender`, in calls of at most 10 entries and 256 KiB, then again
/// (up to [`SEND_ROUNDS`] rounds, with a short pause, within the deadline) the entries SQS
/// refused for a reason that may pass. Entries refused with `SenderFault`, and whatever is
/// left after the last round or at the deadline, are reported unsent.
pub async fn send_all<S: BatchSender>(
    sender: &S,
    messages: &[Message],
    deadline: Deadline,
) -> Sent {
    let mut pending: Vec<&Message> = messages.iter().collect();
    let mut last_error: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Sent::default();
    let unsent = |m: &Message, error: String| Unsent {
        paths: m.paths.clone(),
        error,
    };
    for round in 1..=SEND_ROUNDS {
        if pending.is_empty() {
            break;
        }
        if round > 1 {
            let pause = Duration::from_millis(200 * 2u64.pow(round - 2));
            if !deadline.allows(pause + Duration::from_secs(1)) {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        let mut retry: Vec<&Message> = Vec::new();
        for call in calls(&pending) {
            if !deadline.allows(Duration::from_millis(500)) {
                for m in call {
                    last_error
                        .entry(m.id.clone())
                        .or_insert_with(|| "the invocation's deadline came first".into());
                    retry.push(m);
                }
                continue;
            }
            let answer = match deadline.remaining() {
                Some(left) => tokio::time::timeout(left, sender.send_batch(&call))
                    .await
                    .unwrap_or_else(|_| {
                        Err(CallFailure {
                            retryable: true,
                            error:
                                "SendMessageBatch did not answer before the invocation's deadline"
                                    .into(),
                        })
                    }),
                None => sender.send_batch(&call).await,
            };
            match answer {
                Ok((taken, refused)) => {
                    let refused: BTreeMap<&str, &RefusedEntry> =
                        refused.iter().map(|r| (r.id.as_str(), r)).collect();
                    for m in call {
                        if let Some(r) = refused.get(m.id.as_str()) {
                            tracing::warn!(message = %m.id, paths = m.paths.len(), sender_fault = r.sender_fault, error = %r.error, "SQS refused a rotate-vault message");
                            if r.sender_fault {
                                out.unsent.push(unsent(m, r.error.clone()));
                            } else {
                                last_error.insert(m.id.clone(), r.error.clone());
                                retry.push(m);
                            }
                        } else if taken.iter().any(|t| t == &m.id) {
                            out.sent += 1;
                        } else {
                            last_error.insert(
                                m.id.clone(),
                                "SQS's answer named neither success nor failure".into(),
                            );
                            retry.push(m);
                        }
                    }
                }
                Err(f) => {
                    tracing::warn!(entries = call.len(), retryable = f.retryable, error = %f.error, "SendMessageBatch failed");
                    for m in call {
                        if f.retryable {
                            last_error.insert(m.id.clone(), f.error.clone());
                            retry.push(m);
                        } else {
                            out.unsent.push(unsent(m, f.error.clone()));
                        }
                    }
                }
            }
        }
        pending = retry;
    }
    for m in pending {
        let error = last_error
            .remove(&m.id)
            .unwrap_or_else(|| "not sent".into());
        out.unsent.push(unsent(m, error));
    }
    // Report in message order.
    out.unsent.sort_by_key(|u| {
        messages
            .iter()
            .position(|m| m.paths == u.paths)
            .unwrap_or(usize::MAX)
    });
    out
}

/// The answer of `enqueue-vault` (docs/design.md §6).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Always `enqueue-vault`.
    pub action: &'static str,
    /// Whether this was a dry run (nothing sent).
    pub dry_run: bool,
    /// Paths listed (the manager path never among them).
    pub paths: usize,
    /// Messages sent (in a dry run: that would be sent).
    pub messages: usize,
    /// Messages that could not be sent, with their paths (each counts as one `Failed`).
    pub errors: Vec<Unsent>,
}

/// Why `enqueue-vault` could not run, or could send nothing.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// `VAULT_QUEUE_URL` is not set.
    #[error(
        "configuration error in VAULT_QUEUE_URL: is required by enqueue-vault (the SQS queue it fills with rotate-vault messages); set it to the queue's URL (the template does when CreateVaultQueue is true), or invoke rotate-vault instead"
    )]
    NoQueue,
    /// The paths could not be listed (Vault not configured, login, listing, a bad path).
    #[error(transparent)]
    Run(#[from] RunError),
    /// Not one message reached the queue.
    #[error(
        "enqueue-vault could send none of its {messages} rotate-vault messages ({paths} paths) to {queue}: {error}; check that the queue exists and that the function's role may sqs:SendMessage on it, then invoke again"
    )]
    NothingSent {
        /// Messages that were to be sent.
        messages: usize,
        /// Paths they named.
        paths: usize,
        /// `VAULT_QUEUE_URL`.
        queue: String,
        /// The first message's error.
        error: String,
    },
}

impl EnqueueError {
    /// The `errorType` this failure is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            EnqueueError::NoQueue => "ConfigError",
            EnqueueError::Run(e) => e.code(),
            EnqueueError::NothingSent { .. } => "SqsError",
        }
    }
}

/// Runs `enqueue-vault`: lists the paths (the event's `paths` / `prefix`, else
/// `VAULT_ROTATE_PATHS` / `VAULT_ROTATE_PREFIX`), builds the messages and, unless it is a dry
/// run, sends them to `VAULT_QUEUE_URL`. Fails when nothing could be listed, or when there
/// were messages and none could be sent.
pub async fn run(
    config: &Config,
    backend: Option<&VaultBackend>,
    sqs: &aws_sdk_sqs::Client,
    action: &EnqueueAction,
    deadline: Deadline,
) -> Result<Summary, EnqueueError> {
    // A dry run only lists and counts: it needs no queue.
    let queue = match config.vault_queue_url.as_deref() {
        Some(q) => Some(q),
        None if action.dry_run => None,
        None => return Err(EnqueueError::NoQueue),
    };
    let backend = backend.ok_or(RunError::NotConfigured)?;
    let paths = list(backend, action, deadline).await?;
    let messages = messages(&paths, action.batch_size);
    tracing::info!(
        paths = paths.len(),
        messages = messages.len(),
        batch_size = action.batch_size,
        dry_run = action.dry_run,
        "enqueue-vault"
    );
    let summary = |sent: usize, errors: Vec<Unsent>| Summary {
        action: "enqueue-vault",
        dry_run: action.dry_run,
        paths: paths.len(),
        messages: sent,
        errors,
    };
    let Some(queue) = queue.filter(|_| !action.dry_run && !messages.is_empty()) else {
        return Ok(summary(messages.len(), Vec::new()));
    };
    let sent = send_all(
        &SqsQueue {
            client: sqs,
            url: queue,
        },
        &messages,
        deadline,
    )
    .await;
    if sent.sent == 0 {
        return Err(EnqueueError::NothingSent {
            messages: messages.len(),
            paths: paths.len(),
            queue: queue.to_owned(),
            error: sent
                .unsent
                .first()
                .map(|u| u.error.clone())
                .unwrap_or_else(|| "not sent".into()),
        });
    }
    for u in &sent.unsent {
        tracing::error!(paths = ?u.paths, error = %u.error, error_type = "SqsError", "rotate-vault message not sent: these paths are not queued; invoke enqueue-vault again or rotate-vault with these paths");
    }
    Ok(summary(sent.sent, sent.unsent))
}

/// The paths of the action, listed and cleaned like `rotate-vault`'s (the manager path
/// removed), after logging in to Vault and checking the mount.
async fn list(
    backend: &VaultBackend,
    action: &EnqueueAction,
    deadline: Deadline,
) -> Result<Vec<String>, RunError> {
    let kv = backend.kv.with_deadline(deadline.work_until());
    kv.session().token_until(deadline.work_until()).await?;
    kv.ensure_kv_v2().await?;
    let as_rotation = VaultAction {
        action: "rotate-vault".into(),
        paths: action.paths.clone(),
        prefix: action.prefix.clone(),
        ..VaultAction::default()
    };
    vault_rotate::resolve_paths(&kv, backend, &as_rotation, &backend.config.manager_path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn paths(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("dynatrace/app{i:02}")).collect()
    }

    #[test]
    fn messages_hold_at_most_batch_size_paths_and_each_path_once() {
        let ps = paths(30);
        let ms = messages(&ps, 7);
        assert_eq!(
            ms.iter().map(|m| m.paths.len()).collect::<Vec<_>>(),
            [7, 7, 7, 7, 2]
        );
        let all: Vec<String> = ms.iter().flat_map(|m| m.paths.clone()).collect();
        assert_eq!(all, ps);
        for m in &ms {
            let action = crate::event::parse_action(&m.body).unwrap();
            assert_eq!(action.paths, m.paths);
            assert!(!action.force && !action.dry_run);
        }
        let ids: std::collections::BTreeSet<_> = ms.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids.len(), ms.len());
        assert!(messages(&[], 25).is_empty());
    }

    #[test]
    fn a_message_never_exceeds_the_sqs_limit() {
        let long: Vec<String> = (0..400)
            .map(|i| format!("{}/{i}", "p".repeat(500)))
            .collect();
        let ms = messages(&long, 250);
        assert!(ms.len() > 1);
        for m in &ms {
            assert!(m.body.len() <= MAX_CALL_BYTES, "{}", m.body.len());
        }
        assert_eq!(ms.iter().map(|m| m.paths.len()).sum::<usize>(), 400);
    }

    #[test]
    fn calls_hold_at_most_ten_entries_and_256_kib() {
        let ms = messages(&paths(95), 1);
        let refs: Vec<&Message> = ms.iter().collect();
        let cs = calls(&refs);
        assert_eq!(
            cs.iter().map(Vec::len).collect::<Vec<_>>(),
            [10, 10, 10, 10, 10, 10, 10, 10, 10, 5]
        );
        let long: Vec<String> = (0..1000)
            .map(|i| format!("{}/{i}", "p".repeat(500)))
            .collect();
        let ms = messages(&long, 200);
        let refs: Vec<&Message> = ms.iter().collect();
        for call in calls(&refs) {
            assert!(call.iter().map(|m| m.body.len()).sum::<usize>() <= MAX_CALL_BYTES);
        }
    }

    type Script = Box<dyn Fn(&[&Message]) -> BatchAnswer>;

    /// A sender that answers from a script, one answer per call (the last one repeats), and
    /// records the ids of each call.
    struct Scripted {
        answers: RefCell<Vec<Script>>,
        calls: RefCell<Vec<Vec<String>>>,
    }

    impl Scripted {
        fn new(answers: Vec<Script>) -> Self {
            Self {
                answers: RefCell::new(answers),
                calls: RefCell::new(vec![]),
            }
        }
    }

    impl BatchSender for Scripted {
        async fn send_batch(&self, entries: &[&Message]) -> BatchAnswer {
            self.calls
                .borrow_mut()
                .push(entries.iter().map(|m| m.id.clone()).collect());
            let mut answers = self.answers.borrow_mut();
            if answers.len() > 1 {
                answers.remove(0)(entries)
            } else {
                answers[0](entries)
            }
        }
    }

    /// Takes every entry but refuses `fault` (sender at fault) and `again` (may pass).
    fn refuse(fault: &'static [&'static str], again: &'static [&'static str]) -> Script {
        Box::new(move |entries: &[&Message]| {
            let mut taken = vec![];
            let mut refused = vec![];
            for m in entries {
                let id = m.id.as_str();
                if fault.contains(&id) || again.contains(&id) {
                    let sender_fault = fault.contains(&id);
                    refused.push(RefusedEntry {
                        id: id.to_owned(),
                        sender_fault,
                        error: if sender_fault {
                            "InvalidMessageContents: bad".into()
                        } else {
                            "InternalError: try again".into()
                        },
                    });
                } else {
                    taken.push(id.to_owned());
                }
            }
            Ok((taken, refused))
        })
    }

    fn fail(retryable: bool) -> Script {
        Box::new(move |_: &[&Message]| {
            Err(CallFailure {
                retryable,
                error: "AWS.SimpleQueueService.NonExistentQueue: no such queue".into(),
            })
        })
    }

    #[tokio::test]
    async fn refused_entries_are_sent_again_unless_the_sender_is_at_fault() {
        let ms = messages(&paths(12), 1);
        // first round: calls of 10 and 2 entries, "1" refused retryably; the retry takes it.
        let s = Scripted::new(vec![refuse(&[], &["1"]), refuse(&[], &[])]);
        let sent = send_all(&s, &ms, Deadline::none()).await;
        assert_eq!((sent.sent, sent.unsent.len()), (12, 0), "{sent:?}");
        let calls = s.calls.borrow();
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            [10, 2, 1],
            "{calls:?}"
        );
        assert_eq!(calls[2], ["1"]);
    }

    #[tokio::test]
    async fn what_cannot_be_sent_is_reported_with_its_paths() {
        let ms = messages(&paths(5), 2);
        let s = Scripted::new(vec![refuse(&["0"], &["1"]), refuse(&[], &["1"])]);
        let sent = send_all(&s, &ms, Deadline::none()).await;
        assert_eq!(sent.sent, 1);
        assert_eq!(sent.unsent.len(), 2);
        assert_eq!(sent.unsent[0].paths, ["dynatrace/app00", "dynatrace/app01"]);
        assert!(sent.unsent[0].error.contains("InvalidMessageContents"));
        assert_eq!(sent.unsent[1].paths, ["dynatrace/app02", "dynatrace/app03"]);
        assert!(sent.unsent[1].error.contains("InternalError"));
        // the sender-fault entry is not sent again; the other is, every round.
        let calls = s.calls.borrow();
        assert_eq!(calls.len(), SEND_ROUNDS as usize);
        assert!(calls[1..].iter().all(|c| c == &["1"]), "{calls:?}");
    }

    #[tokio::test]
    async fn a_failed_call_is_repeated_only_when_it_may_pass() {
        let ms = messages(&paths(3), 1);
        let s = Scripted::new(vec![fail(true), refuse(&[], &[])]);
        assert_eq!(send_all(&s, &ms, Deadline::none()).await.sent, 3);
        assert_eq!(s.calls.borrow().len(), 2);
        let s = Scripted::new(vec![fail(false)]);
        let sent = send_all(&s, &ms, Deadline::none()).await;
        assert_eq!((sent.sent, sent.unsent.len()), (0, 3));
        assert!(sent.unsent[0].error.contains("NonExistentQueue"));
        assert_eq!(s.calls.borrow().len(), 1);
    }

    #[test]
    fn fifo_queues_get_a_content_based_deduplication_id() {
        assert!(is_fifo(
            "https://sqs.eu-west-1.amazonaws.com/1/rotations.fifo"
        ));
        assert!(!is_fifo("https://sqs.eu-west-1.amazonaws.com/1/rotations"));
        let id = content_id(r#"{"action":"rotate-vault","paths":["a"]}"#);
        assert_eq!(id.len(), 64);
        assert_eq!(id, content_id(r#"{"action":"rotate-vault","paths":["a"]}"#));
        assert_ne!(id, content_id(r#"{"action":"rotate-vault","paths":["b"]}"#));
    }

    #[test]
    fn errors_carry_their_codes() {
        assert_eq!(EnqueueError::NoQueue.code(), "ConfigError");
        assert!(
            EnqueueError::NoQueue
                .to_string()
                .contains("VAULT_QUEUE_URL")
        );
        assert_eq!(
            EnqueueError::from(RunError::NotConfigured).code(),
            "ConfigError"
        );
        assert_eq!(
            EnqueueError::NothingSent {
                messages: 1,
                paths: 1,
                queue: "q".into(),
                error: "e".into()
            }
            .code(),
            "SqsError"
        );
    }
}
