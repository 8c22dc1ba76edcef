//! `sandbox bench`: the release binary under `cargo lambda watch`, against the Dynatrace
//! emulator, moto (Secrets Manager and SQS) and OpenBao. Figures, not assertions: the numbers
//! go into the closing notes, never into timed tests.
//!
//! The emulator plays a tenant at its limit: 20 ms per request and 16 requests served at once
//! (one more is shed with a bare `429`, as Dynatrace does), with `ROTATION_CONCURRENCY=16`.
//! A run's share of that capacity is `calls × 20 ms ÷ 16 ÷ wall time`.
//!
//! Phases, each reporting what it measures:
//! 1. cold start (first invocation vs. the same warm) and the binary's size;
//! 2. `rotate-vault` over 200 and over 2,000 paths in one invocation;
//! 3. 2,000 other paths through `enqueue-vault` and SQS batches;
//! 4. the Dynatrace calls of one Secrets Manager rotation with a previous token to revoke;
//! 5. `sweep` and `audit` of a tenant of 10,000 tokens with 1,000 Secrets Manager secrets, in a
//!    fresh function process (its own peak RSS).

use std::time::{Duration, Instant};

use rotator_sandbox::sqs;

use super::*;

/// Latency of every Dynatrace request.
const LATENCY: Duration = Duration::from_millis(20);
/// Requests the emulated tenant serves at once (and `ROTATION_CONCURRENCY`).
const CAPACITY: usize = 16;
/// Paths of the small and the large Vault run.
const SMALL: usize = 200;
const LARGE: usize = 2_000;
/// Paths per `rotate-vault` message and messages per SQS invocation (the template's values).
const BATCH_SIZE: usize = 25;
const RECORDS_PER_INVOCATION: usize = 5;
/// The tenant of the sweep and audit phase.
const TENANT_TOKENS: usize = 10_000;
const SECRETS: usize = 1_000;

/// Which phases to run: `all`, or one of `fleet` (phases 1–4) and `tenant` (phase 5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// Every phase.
    All,
    /// Cold start, the Vault runs, enqueue-vault, the Secrets Manager rotation.
    Fleet,
    /// Sweep and audit of the large tenant.
    Tenant,
}

/// Runs the benchmark (see the module documentation).
pub async fn bench(phases: Phases) -> Result<()> {
    say("building the release binary");
    let binary = build_rotator(true).await?;
    let size = std::fs::metadata(&binary)?.len();
    println!(
        "    release binary (host architecture): {size} bytes ({:.1} MiB)",
        size as f64 / 1048576.0
    );
    say("init: from process start to the first poll of the Runtime API (stub), 5 starts");
    let mut inits = Vec::new();
    for _ in 0..5 {
        inits.push(init_time(&binary)?);
    }
    inits.sort();
    println!(
        "    median {:?} (min {:?}, max {:?})",
        inits[2], inits[0], inits[4]
    );

    let emulator = Emulator::start().await;
    let manager = emulator.seed_token(SeedToken::new("bench manager", &MANAGER_SCOPES));
    let moto = tokio::task::spawn_blocking(Moto::start)
        .await
        .map_err(|e| Error::new(e.to_string()))??;
    let client = moto.client();
    let manager_doc = token_document(&emulator.url(), &manager.value, &[]);
    secrets_manager::create_secret(&client, MANAGER_SECRET, &manager_doc).await?;
    let bao = tokio::task::spawn_blocking(Bao::start)
        .await
        .map_err(|e| Error::new(e.to_string()))??;
    bao.kv_put(
        "secret",
        VAULT_MANAGER_PATH,
        &serde_json::from_str(&manager_doc)?,
    )
    .await?;
    let sqs_client = sqs::client(&moto.endpoint());
    let queue = sqs::create_queue(&sqs_client, "bench-rotations").await?;
    let concurrency = CAPACITY.to_string();
    let mut problems = Vec::new();
    if phases != Phases::Tenant {
        fleet(
            &emulator,
            &moto,
            &bao,
            &client,
            &sqs_client,
            &queue,
            &mut problems,
        )
        .await?;
    }
    if phases != Phases::Fleet {
        tenant(&emulator, &moto, &bao, &client, &concurrency, &mut problems).await?;
    }
    emulator.shutdown();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "the bench runs did not all succeed:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

/// Phases 1–4: cold start under cargo lambda, the Vault runs, enqueue-vault, a Secrets
/// Manager rotation.
async fn fleet(
    emulator: &Emulator,
    moto: &Moto,
    bao: &Bao,
    client: &aws_sdk_secretsmanager::Client,
    sqs_client: &aws_sdk_sqs::Client,
    queue: &str,
    problems: &mut Vec<String>,
) -> Result<()> {
    say(&format!(
        "seeding {} Vault secrets and one Secrets Manager secret",
        SMALL + 2 * LARGE
    ));
    for (prefix, n) in [("small", SMALL), ("large", LARGE), ("queued", LARGE)] {
        for i in 0..n {
            let t = emulator.seed_token(SeedToken::new(&format!("{prefix} app {i}"), &APP_SCOPES));
            bao.kv_put(
                "secret",
                &format!("{prefix}/app{i:04}"),
                &serde_json::json!({"token": t.value}),
            )
            .await?;
        }
    }
    let app = emulator.seed_token(SeedToken::new(APP_TOKEN_NAME, &APP_SCOPES));
    secrets_manager::create_secret(
        client,
        APP_SECRET,
        &token_document(&emulator.url(), &app.value, &[]),
    )
    .await?;

    let concurrency = CAPACITY.to_string();
    let sqs_endpoint = moto.endpoint();
    let lambda = start_function(
        moto,
        bao,
        &[
            ("RUST_LOG", "warn"),
            ("ROTATION_CONCURRENCY", &concurrency),
            ("VAULT_QUEUE_URL", queue),
            ("AWS_ENDPOINT_URL_SQS", &sqs_endpoint),
        ],
        true,
    )
    .await
    .map_err(|e| Error::new(e.to_string()))??;

    say("cold start: first invocation (process start + init + a dry run) vs. the same warm");
    let probe =
        serde_json::json!({"action": "rotate-vault", "paths": ["small/app0000"], "dryRun": true})
            .to_string();
    let t = Instant::now();
    lambda.invoke(&probe).await?;
    let cold = t.elapsed();
    let t = Instant::now();
    lambda.invoke(&probe).await?;
    let warm = t.elapsed();
    println!(
        "    first invocation {cold:?}, warm {warm:?}: init ~{:?} (includes cargo-lambda's process start)",
        cold.saturating_sub(warm)
    );

    emulator.set_latency(LATENCY);
    emulator.set_capacity(Some(CAPACITY));
    for (prefix, n) in [("small", SMALL), ("large", LARGE)] {
        say(&format!(
            "rotate-vault of {n} paths in one invocation ({} ms per request, {CAPACITY} served at once, ROTATION_CONCURRENCY={CAPACITY})",
            LATENCY.as_millis()
        ));
        let action = serde_json::json!({"action": "rotate-vault", "prefix": format!("{prefix}/")});
        let payload = action.to_string();
        let (summary, figures) = measured(emulator, lambda.invoke(&payload)).await?;
        println!(
            "    rotated {}, failed {}; {figures}",
            summary["rotated"], summary["failed"]
        );
        if summary["rotated"].as_u64() != Some(n as u64) {
            problems.push(format!("{n}-path run: {}", one_line(&summary.to_string())));
        }
    }

    say(&format!(
        "{LARGE} other paths through enqueue-vault (batchSize {BATCH_SIZE}) and SQS ({RECORDS_PER_INVOCATION} records per invocation)"
    ));
    let started = Instant::now();
    let before = Counters::read(emulator);
    let enqueue = serde_json::json!({"action": "enqueue-vault", "prefix": "queued/", "batchSize": BATCH_SIZE});
    let answer: Value = serde_json::from_str(&lambda.invoke(&enqueue.to_string()).await?)?;
    let enqueued_in = started.elapsed();
    let received = sqs::drain(sqs_client, queue).await?;
    let mut invocations = 0;
    let mut failed_records = 0;
    for chunk in received.chunks(RECORDS_PER_INVOCATION) {
        let out: Value =
            serde_json::from_str(&lambda.invoke(&sqs_event(chunk).to_string()).await?)?;
        invocations += 1;
        failed_records += out["batchItemFailures"].as_array().map_or(0, Vec::len);
    }
    let wall = started.elapsed();
    let figures = Counters::read(emulator).since(&before, wall);
    println!(
        "    enqueue-vault: {} paths in {} messages ({enqueued_in:?}); {invocations} SQS invocations, {failed_records} records failed; total {figures}",
        answer["paths"], answer["messages"]
    );
    if answer["paths"].as_u64() != Some(LARGE as u64) || failed_records > 0 {
        problems.push(format!("enqueue phase: {}", one_line(&answer.to_string())));
    }

    say("Dynatrace calls of one Secrets Manager rotation with a previous token to revoke");
    for round in 1..=2 {
        let before = emulator.requests().len();
        let t = Instant::now();
        let version = secrets_manager::begin_rotation(client, APP_SECRET, LAMBDA_ARN).await?;
        for step in STEPS {
            let payload = serde_json::json!({"Step": step, "SecretId": APP_SECRET, "ClientRequestToken": version}).to_string();
            lambda.invoke(&payload).await?;
        }
        let calls = emulator.requests().len() - before;
        println!(
            "    rotation {round}{}: {calls} Dynatrace calls, {:?} for the four steps (each includes cargo lambda invoke's own process start)",
            if round == 2 {
                " (revokes the original)"
            } else {
                ""
            },
            t.elapsed()
        );
    }
    report_rss("rotations");
    drop(lambda);
    emulator.set_capacity(None);
    emulator.set_latency(Duration::ZERO);
    Ok(())
}

/// Phase 5: sweep and audit of a tenant of [`TENANT_TOKENS`] tokens with [`SECRETS`] Secrets
/// Manager secrets, in a fresh function process (its own peak RSS).
async fn tenant(
    emulator: &Emulator,
    moto: &Moto,
    bao: &Bao,
    client: &aws_sdk_secretsmanager::Client,
    concurrency: &str,
    problems: &mut Vec<String>,
) -> Result<()> {
    say(&format!(
        "seeding a tenant of {TENANT_TOKENS} tokens with {SECRETS} Secrets Manager secrets (current and previous) rotated by this function"
    ));
    emulator.set_latency(Duration::ZERO);
    for i in 0..SECRETS {
        let previous = emulator.seed_token(SeedToken::new(&format!("tenant app {i}"), &APP_SCOPES));
        let current = emulator.seed_token(SeedToken::new(&format!("tenant app {i}"), &APP_SCOPES));
        let name = format!("tenant/app{i:04}");
        secrets_manager::create_secret(
            client,
            &name,
            &token_document(&emulator.url(), &previous.value, &[]),
        )
        .await?;
        let doc = token_document(
            &emulator.url(),
            &current.value,
            &[
                ("previousTokenId", previous.id.as_str()),
                ("rotatedAt", "2026-11-01T00:00:00Z"),
            ],
        );
        secrets_manager::update_value(client, &name, &doc).await?;
        // Rotation enabled with this function, nothing pending (as between two rotations).
        let pending = secrets_manager::begin_rotation(client, &name, LAMBDA_ARN).await?;
        secrets_manager::remove_stage(client, &name, AWSPENDING, &pending).await?;
    }
    let others = TENANT_TOKENS.saturating_sub(emulator.tokens().len());
    for i in 0..others {
        emulator.seed_token(SeedToken::new(
            &format!("other token {i}"),
            &["metrics.read"],
        ));
    }
    println!("    {} tokens in the tenant", emulator.tokens().len());
    emulator.set_latency(LATENCY);
    emulator.set_capacity(Some(CAPACITY));

    // The sweep also reads the 200 Vault paths of the fleet phase.
    let lambda = start_function(
        moto,
        bao,
        &[
            ("RUST_LOG", "warn"),
            ("ROTATION_CONCURRENCY", concurrency),
            ("VAULT_ROTATE_PREFIX", "small/"),
        ],
        true,
    )
    .await
    .map_err(|e| Error::new(e.to_string()))??;
    for action in ["sweep", "audit"] {
        say(&format!("{action} of that tenant (fresh function process)"));
        let payload = serde_json::json!({"action": action});
        let payload = payload.to_string();
        let (answer, figures) = measured(emulator, lambda.invoke(&payload)).await?;
        let errors = answer["errors"].as_array().map_or(0, Vec::len);
        println!("    {errors} errors; {figures}");
        if errors > 0 {
            problems.push(format!("{action}: {}", one_line(&answer.to_string())));
        }
        report_rss(action);
    }
    drop(lambda);
    Ok(())
}

/// Starts the release binary against a stub Runtime API and returns the time from the spawn
/// to its first `GET /2018-06-01/runtime/invocation/next` (the init: configuration, clients).
fn init_time(binary: &std::path::Path) -> Result<Duration> {
    let polled: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let seen = polled.clone();
    let api = rotator_sandbox::StubServer::start(move |r, _| {
        if r.path.ends_with("/invocation/next") {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(Instant::now);
        }
        rotator_sandbox::Reply::json(500, r#"{"errorMessage":"bench"}"#)
    });
    let started = Instant::now();
    let mut child = std::process::Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "dynatrace-token-rotator")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/dynatrace-token-rotator",
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("DT_MANAGER_SECRET_IDS", MANAGER_SECRET)
        .env("VAULT_ADDR", "http://127.0.0.1:8200")
        .env("VAULT_TOKEN", "bench-not-a-real-token")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let at = loop {
        if let Some(at) = *polled.lock().unwrap_or_else(|p| p.into_inner()) {
            break at;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err(Error::new("the function never polled the Runtime API"));
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(at.duration_since(started))
}

/// The emulator's request and shed counts at one moment.
struct Counters {
    calls: usize,
    shed: u64,
}

impl Counters {
    fn read(emulator: &Emulator) -> Self {
        Self {
            calls: emulator.requests().len(),
            shed: emulator.load().shed,
        }
    }

    /// Calls since `before`, their kinds, and the share of the tenant's capacity used.
    fn since(&self, before: &Counters, wall: Duration) -> String {
        let calls = self.calls - before.calls;
        let ideal = calls as f64 * LATENCY.as_secs_f64() / CAPACITY as f64;
        format!(
            "{wall:.2?}, {calls} Dynatrace calls ({} shed with 429), {:.0} % of the tenant's capacity",
            self.shed - before.shed,
            100.0 * ideal / wall.as_secs_f64()
        )
    }
}

/// Runs one invocation and returns its answer and the figures of [`Counters::since`].
async fn measured(
    emulator: &Emulator,
    invocation: impl std::future::Future<Output = Result<String>>,
) -> Result<(Value, String)> {
    let before = Counters::read(emulator);
    let started = Instant::now();
    let out = invocation.await?;
    let wall = started.elapsed();
    let figures = Counters::read(emulator).since(&before, wall);
    Ok((serde_json::from_str(&out)?, figures))
}

/// An SQS event carrying `received` as Lambda's event source mapping delivers it.
fn sqs_event(received: &[sqs::Received]) -> Value {
    let records: Vec<Value> = received
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id,
                "receiptHandle": "AQEB-bench",
                "body": m.body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-rotations",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// Prints the function process's peak RSS so far.
fn report_rss(after: &str) {
    match function_peak_rss_kib() {
        Some(kib) => println!(
            "    function process peak RSS (VmHWM) after {after}: {kib} KiB ({:.1} MiB)",
            kib as f64 / 1024.0
        ),
        None => println!("    function process not found for the memory reading"),
    }
}
