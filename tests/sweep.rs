//! The `sweep` invocation against moto, OpenBao and the Dynatrace emulator: unreferenced
//! minted tokens are disabled (not the young ones), tokens disabled past the grace period are
//! deleted, referenced tokens, unrelated tokens and the manager are never touched, a dry run
//! changes nothing, and an unreadable store disables nothing.

mod support;

use dynatrace_emulator::{SeedToken, Seeded};
use dynatrace_token_rotator::config::VaultAuth;
use dynatrace_token_rotator::marker::{self, Marker};
use dynatrace_token_rotator::vault::rotate::VaultBackend;
use jiff::civil::Date;
use jiff::{SignedDuration, Span, Timestamp};
use rotator_sandbox::secrets_manager;
use serde_json::{Value, json};
use support::{APP_SCOPES, VaultWorld, World};

const FUNCTION: &str = "dynatrace-token-rotator";

fn today() -> Date {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
}

fn days_ago(d: i64) -> Date {
    today() - Span::new().days(d)
}

fn hours_ago(h: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(h)
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The tokens the sweep must act on or leave alone, seeded next to real rotations.
struct Seeds {
    orphan: Seeded,
    young_orphan: Seeded,
    old_disabled: Seeded,
    old_disabled_minted: Seeded,
    recent_disabled: Seeded,
    unrelated: Seeded,
    unrelated_disabled: Seeded,
    /// A person's token that happens to carry the disabled suffix: no marker of ours.
    foreign_disabled: Seeded,
}

fn seed(emu: &dynatrace_emulator::Emulator, marker_of: &Marker) -> Seeds {
    let tok = |name: String, enabled: bool, creation: Timestamp| {
        emu.seed_token(SeedToken {
            enabled,
            creation: Some(creation),
            ..SeedToken::new(&name, APP_SCOPES)
        })
    };
    let minted_name = marker_of.name_for("app1 metrics");
    Seeds {
        orphan: tok(minted_name.clone(), true, hours_ago(2)),
        young_orphan: tok(
            minted_name.clone(),
            true,
            Timestamp::now() - SignedDuration::from_mins(10),
        ),
        old_disabled: tok(
            marker::disabled_name(
                "legacy app token",
                days_ago(30),
                Some(marker_of.secret_key()),
            ),
            false,
            hours_ago(24 * 60),
        ),
        old_disabled_minted: tok(
            marker::disabled_name(&minted_name, days_ago(8), None),
            false,
            hours_ago(24 * 40),
        ),
        recent_disabled: tok(
            marker::disabled_name(&minted_name, days_ago(2), None),
            false,
            hours_ago(24 * 40),
        ),
        unrelated: tok("someone else's token".into(), true, hours_ago(24 * 10)),
        unrelated_disabled: tok("disabled by hand".into(), false, hours_ago(24 * 10)),
        foreign_disabled: tok(
            marker::disabled_name("ci pipeline token", days_ago(30), None),
            false,
            hours_ago(24 * 60),
        ),
    }
}

/// (id, name, enabled) of every token: what a sweep may change.
fn state(emu: &dynatrace_emulator::Emulator) -> Vec<(String, String, bool)> {
    emu.tokens()
        .into_iter()
        .map(|t| (t.id, t.name, t.enabled))
        .collect()
}

#[tokio::test]
async fn secrets_manager_sweep_disables_orphans_deletes_expired_and_spares_the_rest() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    w.rotate(&secret).await;
    let current = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    let previous = w
        .token_id_at(&secret, secrets_manager::AWSPREVIOUS)
        .await
        .unwrap();
    // An interrupted rotation: a pending version holding a minted token.
    let pending_version = w.begin(&secret).await;
    w.step(&secret, &pending_version, "createSecret")
        .await
        .unwrap();
    let pending = w
        .token_id_at(&secret, secrets_manager::AWSPENDING)
        .await
        .unwrap();
    assert!(
        !w.token(&original.id).enabled,
        "disabled by the second rotation"
    );

    let arn = w
        .secrets_manager
        .describe_secret()
        .secret_id(&secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let s = seed(
        &w.emu,
        &Marker::secrets_manager(&arn, "an-abandoned-version"),
    );

    // Dry run: reports, changes nothing.
    let before = state(&w.emu);
    let dry = w
        .invoke(json!({"action": "sweep", "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(dry["action"], "sweep");
    assert_eq!(dry["dryRun"], true);
    assert_eq!(ids(&dry, "disabled"), vec![s.orphan.id.clone()], "{dry}");
    assert_eq!(
        ids(&dry, "deleted"),
        sorted(vec![
            s.old_disabled.id.clone(),
            s.old_disabled_minted.id.clone()
        ]),
        "{dry}"
    );
    assert_eq!(state(&w.emu), before, "a dry run changes nothing");

    let out = w
        .invoke(json!({"action": "sweep", "dryRun": false}))
        .await
        .unwrap();
    assert_eq!(out["dryRun"], false);
    assert_eq!(ids(&out, "disabled"), vec![s.orphan.id.clone()], "{out}");
    assert_eq!(
        ids(&out, "deleted"),
        sorted(vec![
            s.old_disabled.id.clone(),
            s.old_disabled_minted.id.clone()
        ]),
        "{out}"
    );
    assert_eq!(out["errors"], json!([]), "{out}");
    // kept: original (disabled today), previous, current, pending, young orphan, recent
    // disabled, and a person's token that merely carries the disabled suffix
    assert_eq!(out["kept"], 7, "{out}");

    let orphan = w.token(&s.orphan.id);
    assert!(!orphan.enabled);
    assert_eq!(marker::disabled_on(&orphan.name), Some(today()));
    assert!(marker::is_minted(&orphan.name));
    assert!(
        w.token(&s.young_orphan.id).enabled,
        "younger than 1 h: kept"
    );
    assert!(w.emu.was_deleted(&s.old_disabled.id));
    assert!(w.emu.was_deleted(&s.old_disabled_minted.id));
    assert!(
        !w.token(&s.recent_disabled.id).enabled,
        "within grace: kept"
    );
    assert_eq!(
        w.token(&s.unrelated.id).name,
        "someone else's token",
        "unrelated: untouched"
    );
    assert!(w.token(&s.unrelated.id).enabled);
    assert_eq!(w.token(&s.unrelated_disabled.id).name, "disabled by hand");
    assert!(
        !w.emu.was_deleted(&s.foreign_disabled.id),
        "a disabled token without our marker is not ours to delete"
    );
    assert!(
        w.token(&w.manager.id).enabled,
        "the manager is never touched"
    );
    for id in [&current, &previous, &pending] {
        assert!(w.token(id).enabled, "labelled token {id} stays enabled");
    }
    assert!(
        w.emu.token(&original.id).is_some(),
        "disabled today: within its grace period"
    );

    // Idempotent.
    let again = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(ids(&again, "disabled"), Vec::<String>::new(), "{again}");
    assert_eq!(ids(&again, "deleted"), Vec::<String>::new(), "{again}");

    // The interrupted rotation completes normally after the sweep.
    for step in ["setSecret", "testSecret", "finishSecret"] {
        w.step(&secret, &pending_version, step)
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    w.assert_no_leaks();
}

#[tokio::test]
async fn without_the_function_name_secrets_manager_references_are_unknown_and_nothing_changes() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let s = seed(&w.emu, &Marker::secrets_manager("arn:x", "v"));
    let before = state(&w.emu);
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(ids(&out, "disabled"), Vec::<String>::new(), "{out}");
    assert_eq!(ids(&out, "deleted"), Vec::<String>::new(), "{out}");
    assert!(
        out["errors"]
            .to_string()
            .contains("AWS_LAMBDA_FUNCTION_NAME"),
        "{out}"
    );
    assert_eq!(state(&w.emu), before);
    assert!(w.token(&s.orphan.id).enabled);
    w.assert_no_leaks();
}

#[tokio::test]
async fn vault_sweep_keeps_latest_and_previous_and_disables_orphans() {
    let mut w = VaultWorld::new(&[]).await;
    let prefix = format!("{}/dynatrace/", w.root);
    w.deps.vault.as_mut().unwrap().config.rotate_prefix = Some(prefix);
    let (a, original) = w.app("app1", json!({})).await;
    let (b, untouched) = w.app("app2", json!({})).await;
    w.rotate(&[&a], true, false).await;
    w.rotate(&[&a], true, false).await;
    let (_, doc) = w.read(&a).await;
    let latest = doc["tokenId"].as_str().unwrap().to_owned();
    let previous = doc["previousTokenId"].as_str().unwrap().to_owned();
    assert!(!w.token(&original.id).enabled);

    let s = seed(&w.emu, &Marker::vault(&w.scope(), &a, 99));
    let before = state(&w.emu);
    let dry = w
        .invoke(json!({"action": "sweep", "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(ids(&dry, "disabled"), vec![s.orphan.id.clone()], "{dry}");
    assert_eq!(state(&w.emu), before);

    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(ids(&out, "disabled"), vec![s.orphan.id.clone()], "{out}");
    assert_eq!(
        ids(&out, "deleted"),
        sorted(vec![
            s.old_disabled.id.clone(),
            s.old_disabled_minted.id.clone()
        ]),
        "{out}"
    );
    assert_eq!(out["errors"], json!([]), "{out}");
    for id in [&latest, &previous, &untouched.id, &w.manager.id] {
        assert!(w.token(id).enabled, "{id} stays enabled");
    }
    assert!(w.token(&s.young_orphan.id).enabled);
    assert!(w.token(&s.unrelated.id).enabled);
    assert!(
        !w.emu.was_deleted(&s.foreign_disabled.id),
        "a disabled token without our marker is not ours to delete"
    );
    // Every live minted token is referenced, except the young one (a rotation in progress).
    let (_, doc_b) = w.read(&b).await;
    let live: Vec<String> = w.live_minted().into_iter().map(|t| t.id).collect();
    for id in &live {
        assert!(
            [&latest, &previous, &s.young_orphan.id].contains(&id)
                || doc_b["tokenId"] == id.as_str(),
            "live unreferenced minted token {id}"
        );
    }
    w.assert_no_leaks();
}

#[tokio::test]
async fn unreadable_vault_paths_disable_and_delete_nothing_in_that_environment() {
    let mut w = VaultWorld::new(&[]).await;
    w.deps.vault.as_mut().unwrap().config.rotate_prefix = Some(format!("{}/dynatrace/", w.root));
    let (a, _) = w.app("app1", json!({})).await;
    w.rotate(&[&a], true, false).await;
    let s = seed(&w.emu, &Marker::vault(&w.scope(), &a, 99));

    // A token that reads the manager document only: listing and reading paths is refused.
    let policy = format!(
        "path \"secret/data/{root}/dynatrace/master\" {{ capabilities = [\"read\"] }}\n",
        root = w.root
    );
    let name = format!("sweep-manager-only-{}", w.root);
    w.bao.put_policy(&name, &policy).await.unwrap();
    let restricted = w.bao.create_token(&[&name]).await.unwrap();
    w.secrets.push(restricted.clone());
    let mut vcfg = w.deps.config.vault.clone().unwrap();
    vcfg.auth = VaultAuth::Token(restricted.into());
    vcfg.rotate_prefix = Some(format!("{}/dynatrace/", w.root));
    w.deps.vault = Some(VaultBackend::new(&vcfg, None).unwrap());

    let before = state(&w.emu);
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(ids(&out, "disabled"), Vec::<String>::new(), "{out}");
    assert_eq!(ids(&out, "deleted"), Vec::<String>::new(), "{out}");
    let errors = out["errors"].to_string();
    assert!(errors.contains("nothing is disabled or deleted"), "{out}");
    assert_eq!(state(&w.emu), before, "nothing changed");
    assert!(w.token(&s.orphan.id).enabled);

    // A Vault token that does not work at all: no manager can be read, the sweep cannot run.
    vcfg.auth = VaultAuth::Token("s.not-a-valid-vault-token".to_owned().into());
    w.deps.vault = Some(VaultBackend::new(&vcfg, None).unwrap());
    let err = w.invoke(json!({"action": "sweep"})).await.unwrap_err();
    assert_eq!(err.error_type, "ManagerUnusable", "{err}");
    assert_eq!(state(&w.emu), before);
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_failing_vault_store_blocks_the_sweep_of_a_shared_environment() {
    // Secrets Manager and Vault managers for the same environment; Vault refuses the login.
    let mut w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let s = seed(&w.emu, &Marker::secrets_manager("arn:elsewhere", "v"));
    let bao = rotator_sandbox::Bao::shared();
    let vcfg = dynatrace_token_rotator::config::VaultConfig {
        addr: url::Url::parse(&bao.addr()).unwrap(),
        namespace: None,
        kv_mount: "secret".into(),
        manager_path: "nowhere/dynatrace/master".into(),
        auth: VaultAuth::Token("s.wrong-token".to_owned().into()),
        rotate_paths: vec!["nowhere/app".into()],
        rotate_prefix: None,
    };
    w.deps.vault = Some(VaultBackend::new(&vcfg, None).unwrap());
    let before = state(&w.emu);
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(ids(&out, "disabled"), Vec::<String>::new(), "{out}");
    assert_eq!(ids(&out, "deleted"), Vec::<String>::new(), "{out}");
    assert!(out["errors"].to_string().contains("vault:"), "{out}");
    assert_eq!(state(&w.emu), before);
    assert!(w.token(&s.orphan.id).enabled);
    w.assert_no_leaks();
}

#[tokio::test]
async fn tokens_minted_for_secrets_the_sweep_does_not_cover_are_kept() {
    // e.g. a path rotated by an event outside VAULT_ROTATE_PREFIX, or another deployment of
    // the function on the same tenant: its current token carries a marker the sweep can't
    // resolve, and must not be disabled as an orphan.
    let mut w = VaultWorld::new(&[]).await;
    w.deps.vault.as_mut().unwrap().config.rotate_prefix = Some(format!("{}/dynatrace/", w.root));
    let (a, _) = w.app("app1", json!({})).await;
    w.rotate(&[&a], true, false).await;
    let foreign = seed(&w.emu, &Marker::vault(&w.scope(), "elsewhere/app9", 2));
    let covered = seed(&w.emu, &Marker::vault(&w.scope(), &a, 99));
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(
        ids(&out, "disabled"),
        vec![covered.orphan.id.clone()],
        "{out}"
    );
    assert!(
        w.token(&foreign.orphan.id).enabled,
        "a token of an uncovered secret is kept"
    );
    w.assert_no_leaks();
}

/// A consumer uses `value` (it authenticates a lookup of itself): Dynatrace records the use
/// and the address.
async fn use_token(emu_url: &str, value: &str) {
    use dynatrace_token_rotator::deadline::Deadline;
    use dynatrace_token_rotator::environment::EnvironmentUrl;
    use dynatrace_token_rotator::secret::TokenValue;
    let env = EnvironmentUrl::parse(emu_url).unwrap();
    let token = TokenValue::parse(value).unwrap();
    dynatrace_token_rotator::dynatrace::Dynatrace::new(support::fast_retries())
        .unwrap()
        .lookup(
            &env,
            &token,
            &token,
            Deadline::after(std::time::Duration::from_secs(10)),
        )
        .await
        .unwrap()
        .expect("the token exists");
}

fn lagging_ids(v: &Value) -> Vec<String> {
    v["laggingConsumers"]
        .as_array()
        .unwrap_or_else(|| panic!("laggingConsumers missing in {v}"))
        .iter()
        .map(|l| l["tokenId"].as_str().unwrap().to_owned())
        .collect()
}

/// `DT_REVOKE_OLD=when-unused` over Vault: a previous token quiet for `DT_UNUSED_HOURS` since its
/// successor's promotion is revoked by the sweep; one a consumer used after the promotion is
/// kept and reported as a lagging consumer, with the address it was used from.
#[tokio::test]
async fn when_unused_revokes_a_quiet_previous_vault_token_and_reports_a_used_one() {
    let mut w =
        VaultWorld::new(&[("DT_REVOKE_OLD", "when-unused"), ("DT_UNUSED_HOURS", "24")]).await;
    let (quiet, quiet_original) = w.app("quiet", json!({})).await;
    let (busy, busy_original) = w.app("busy", json!({})).await;
    w.rotate(&[&quiet, &busy], true, false).await;
    // The promotion happened two days ago: rewrite the latest document with that rotatedAt
    // (same token, so the previous token is found further back).
    let two_days_ago = dynatrace_token_rotator::dynatrace::format_time(hours_ago(48));
    for p in [&quiet, &busy] {
        let (v, mut doc) = w.read(p).await;
        doc["rotatedAt"] = json!(two_days_ago);
        w.bao.kv_put_cas("secret", p, &doc, v).await.unwrap();
    }
    w.deps.vault.as_mut().unwrap().config.rotate_paths = vec![quiet.clone(), busy.clone()];
    use_token(&w.emu.url(), &busy_original.value).await;
    // A deleted version between the latest and the previous token's (e.g. by a person): the
    // walk back goes past it.
    let (status, body) = w
        .bao
        .request(
            reqwest::Method::POST,
            &format!("secret/delete/{quiet}"),
            Some(&json!({"versions": [2]})),
        )
        .await
        .unwrap();
    assert!(status.is_success(), "{body}");

    let dry = w
        .invoke(json!({"action": "sweep", "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(
        ids(&dry, "disabled"),
        vec![quiet_original.id.clone()],
        "{dry}"
    );
    assert!(
        w.token(&quiet_original.id).enabled,
        "a dry run changes nothing"
    );

    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(
        ids(&out, "disabled"),
        vec![quiet_original.id.clone()],
        "{out}"
    );
    assert!(
        !w.token(&quiet_original.id).enabled,
        "quiet for 48 h since promotion: revoked"
    );
    assert!(
        w.token(&busy_original.id).enabled,
        "used after the promotion: kept"
    );
    assert_eq!(lagging_ids(&out), vec![busy_original.id.clone()]);
    let lag = &out["laggingConsumers"][0];
    assert_eq!(lag["secret"], format!("vault:{busy}"));
    assert_eq!(lag["lastUsedIpAddress"], "127.0.0.1", "{lag}");
    assert!(lag["lastUsedDate"].is_string() && lag["promotedAt"].is_string());
    assert!(
        w.logs
            .text()
            .contains("a consumer still uses the previous token")
    );
    // The audit reports it too, and changes nothing.
    let audit = w.invoke(json!({"action": "audit"})).await.unwrap();
    assert_eq!(
        lagging_ids(&audit["environments"][0]),
        vec![busy_original.id.clone()]
    );
    // The current tokens are untouched.
    for p in [&quiet, &busy] {
        let id = w.token_id(p).await;
        assert!(w.token(&id).enabled);
    }
    w.assert_no_leaks();
}

/// The same over Secrets Manager: `AWSPREVIOUS` is the previous token, the `rotatedAt` of
/// `AWSCURRENT` its successor's promotion. Under `next-rotation` nothing is revoked early, but
/// the lagging consumer is still reported.
#[tokio::test]
async fn when_unused_revokes_a_quiet_awsprevious_and_next_rotation_only_reports() {
    for policy in ["next-rotation", "when-unused"] {
        let w = World::new(&[
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION),
            ("DT_REVOKE_OLD", policy),
            ("DT_UNUSED_HOURS", "24"),
        ])
        .await;
        let (quiet, quiet_original) = w.app_secret(json!({})).await;
        let (busy, busy_original) = w.app_secret(json!({})).await;
        for secret in [&quiet, &busy] {
            w.rotate(secret).await;
            // Backdate the promotion: a new current version with the same token and an older
            // rotatedAt, then AWSPREVIOUS back on the original token's version.
            let original_version =
                secrets_manager::version_with(&w.secrets_manager, secret, "AWSPREVIOUS")
                    .await
                    .unwrap()
                    .unwrap();
            let mut doc = w.doc(secret, "AWSCURRENT").await.unwrap();
            doc["rotatedAt"] = json!(dynatrace_token_rotator::dynatrace::format_time(hours_ago(
                48
            )));
            let backdated =
                secrets_manager::update_value(&w.secrets_manager, secret, &doc.to_string())
                    .await
                    .unwrap();
            // Put the labels where AWS would have them (moto's stage moves can leave
            // AWSCURRENT on two versions): AWSCURRENT on the backdated version only,
            // AWSPREVIOUS on the original token's version.
            for (version, stages) in w.stages(secret).await {
                if version != backdated && stages.iter().any(|s| s == "AWSCURRENT") {
                    w.secrets_manager
                        .update_secret_version_stage()
                        .secret_id(secret)
                        .version_stage("AWSCURRENT")
                        .remove_from_version_id(&version)
                        .move_to_version_id(&backdated)
                        .send()
                        .await
                        .unwrap();
                }
            }
            let holder = secrets_manager::version_with(&w.secrets_manager, secret, "AWSPREVIOUS")
                .await
                .unwrap();
            let mut moving = w
                .secrets_manager
                .update_secret_version_stage()
                .secret_id(secret)
                .version_stage("AWSPREVIOUS")
                .move_to_version_id(&original_version);
            if let Some(h) = holder.filter(|h| *h != original_version) {
                moving = moving.remove_from_version_id(h);
            }
            moving.send().await.unwrap();
            let stages = w.stages(secret).await;
            let with = |label: &str| {
                stages
                    .iter()
                    .filter(|(_, s)| s.iter().any(|x| x == label))
                    .map(|(v, _)| v.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(with("AWSCURRENT"), vec![backdated.clone()], "{stages:?}");
            assert_eq!(
                with("AWSPREVIOUS"),
                vec![original_version.clone()],
                "{stages:?}"
            );
        }
        use_token(&w.emu.url(), &busy_original.value).await;
        let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
        let mut debug = String::new();
        for s in [&quiet, &busy] {
            debug.push_str(&format!(
                "{s}: {:?} current={:?} previous={:?}\n",
                w.stages(s).await,
                w.doc(s, "AWSCURRENT").await.map(|d| d["rotatedAt"].clone()),
                w.token_id_at(s, "AWSPREVIOUS").await
            ));
        }
        assert_eq!(
            lagging_ids(&out),
            vec![busy_original.id.clone()],
            "{policy}: {out}\n{debug}"
        );
        assert!(w.token(&busy_original.id).enabled, "{policy}: used: kept");
        if policy == "when-unused" {
            assert_eq!(
                ids(&out, "disabled"),
                vec![quiet_original.id.clone()],
                "{out}"
            );
            assert!(!w.token(&quiet_original.id).enabled);
        } else {
            assert!(ids(&out, "disabled").is_empty(), "{out}");
            assert!(w.token(&quiet_original.id).enabled);
        }
        // The current tokens are untouched.
        for s in [&quiet, &busy] {
            let current = w.token_id_at(s, secrets_manager::AWSCURRENT).await.unwrap();
            assert!(w.token(&current).enabled);
        }
        w.assert_no_leaks();
    }
}

/// A value copied between secrets: the previous token of one path is the current token of
/// another. `when-unused` never revokes it, however quiet.
#[tokio::test]
async fn when_unused_spares_a_previous_token_another_path_holds_as_current() {
    let mut w =
        VaultWorld::new(&[("DT_REVOKE_OLD", "when-unused"), ("DT_UNUSED_HOURS", "24")]).await;
    let (moved, original) = w.app("moved", json!({})).await;
    w.rotate(&[&moved], true, false).await;
    let (v, mut doc) = w.read(&moved).await;
    doc["rotatedAt"] = json!(dynatrace_token_rotator::dynatrace::format_time(hours_ago(
        48
    )));
    w.bao.kv_put_cas("secret", &moved, &doc, v).await.unwrap();
    // Someone copied the original value to another path, which still uses it.
    let copy = w.path("copy");
    w.bao
        .kv_put("secret", &copy, &json!({"token": original.value}))
        .await
        .unwrap();
    w.deps.vault.as_mut().unwrap().config.rotate_paths = vec![moved.clone(), copy.clone()];
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(ids(&out, "disabled").is_empty(), "{out}");
    assert!(
        w.token(&original.id).enabled,
        "the copy's current token was revoked"
    );
    w.assert_no_leaks();
}

/// The same guard for a legacy value, which has no id of its own shape: the copy's `tokenId`
/// is stale, and only its lookup by value tells which token the copy holds as current.
#[tokio::test]
async fn when_unused_spares_a_legacy_token_another_path_holds_as_current() {
    let mut w =
        VaultWorld::new(&[("DT_REVOKE_OLD", "when-unused"), ("DT_UNUSED_HOURS", "24")]).await;
    let legacy = w.emu.seed_token(SeedToken {
        legacy: true,
        ..SeedToken::new("legacy app", APP_SCOPES)
    });
    let moved = w.path("moved");
    w.bao
        .kv_put("secret", &moved, &json!({"token": legacy.value}))
        .await
        .unwrap();
    w.rotate(&[&moved], true, false).await;
    let (v, mut doc) = w.read(&moved).await;
    assert_eq!(doc["previousTokenId"], legacy.id.as_str());
    doc["rotatedAt"] = json!(dynatrace_token_rotator::dynatrace::format_time(hours_ago(
        48
    )));
    w.bao.kv_put_cas("secret", &moved, &doc, v).await.unwrap();
    let copy = w.path("copy");
    let stale = format!("dt0c01.{}", "S".repeat(24));
    w.bao
        .kv_put(
            "secret",
            &copy,
            &json!({"token": legacy.value, "tokenId": stale}),
        )
        .await
        .unwrap();
    w.deps.vault.as_mut().unwrap().config.rotate_paths = vec![moved.clone(), copy.clone()];
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(ids(&out, "disabled").is_empty(), "{out}");
    assert!(
        w.token(&legacy.id).enabled,
        "the copy's current (legacy) token was revoked"
    );
    w.assert_no_leaks();
}

/// `GET /api/v2/apiTokens` requests the emulator has answered so far.
fn list_requests(emu: &dynatrace_emulator::Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v2/apiTokens")
        .count()
}

/// The sizes of the listing pages the client logged, in order.
fn logged_pages(logs: &rotator_sandbox::LogCapture) -> Vec<u64> {
    logs.lines()
        .iter()
        .filter(|l| l.to_string().contains("Dynatrace token list page read"))
        .filter_map(|l| l["fields"]["tokens"].as_u64().or(l["tokens"].as_u64()))
        .collect()
}

/// A tenant of more than 10 000 tokens: a sweep lists it once, in two requests of the API's
/// largest page (10 000), and finds its work on both pages; an audit does the same.
#[tokio::test]
async fn a_tenant_of_ten_thousand_tokens_is_listed_once_in_pages_of_ten_thousand() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let current = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    let arn = w
        .secrets_manager
        .describe_secret()
        .secret_id(&secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    // Newest first: the orphans (hours old) lead the first page, the bulk (20 days old)
    // follows, and the long-disabled tokens (40 and 60 days old) end up on the second page.
    let s = seed(
        &w.emu,
        &Marker::secrets_manager(&arn, "an-abandoned-version"),
    );
    let bulk = 10_050;
    for i in 0..bulk {
        w.emu.seed_token(SeedToken {
            creation: Some(hours_ago(24 * 20)),
            expiration: Some(Timestamp::now() + SignedDuration::from_hours(24 * 365)),
            ..SeedToken::new(&format!("bulk token {i}"), APP_SCOPES)
        });
    }
    let total = w.emu.tokens().len();
    assert!(total > 10_000 + 50);

    let (before, pages_before) = (list_requests(&w.emu), logged_pages(&w.logs).len());
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(
        list_requests(&w.emu) - before,
        2,
        "one listing of two pages"
    );
    assert_eq!(
        logged_pages(&w.logs)[pages_before..],
        [10_000, total as u64 - 10_000],
        "pageSize=10000"
    );
    assert_eq!(ids(&out, "disabled"), vec![s.orphan.id.clone()], "{out}");
    assert_eq!(
        ids(&out, "deleted"),
        sorted(vec![
            s.old_disabled.id.clone(),
            s.old_disabled_minted.id.clone()
        ]),
        "{out}"
    );
    assert_eq!(out["errors"], json!([]), "{out}");
    // kept: the current token, the young orphan, the recently disabled one and a person's
    // token that merely carries the disabled suffix
    assert_eq!(out["kept"], 4, "{out}");
    assert!(w.token(&current).enabled);
    assert!(w.token(&original.id).enabled, "AWSPREVIOUS stays");
    assert!(w.token(&s.young_orphan.id).enabled);
    assert!(w.emu.was_deleted(&s.old_disabled.id));

    let (before, pages_before) = (list_requests(&w.emu), logged_pages(&w.logs).len());
    let audit = w.invoke(json!({"action": "audit"})).await.unwrap();
    assert_eq!(
        list_requests(&w.emu) - before,
        2,
        "one listing of two pages"
    );
    let total = w.emu.tokens().len();
    assert_eq!(
        logged_pages(&w.logs)[pages_before..],
        [10_000, total as u64 - 10_000],
        "pageSize=10000"
    );
    let e = &audit["environments"][0];
    assert_eq!(audit["environments"].as_array().unwrap().len(), 1);
    assert_eq!(e["tokens"], total, "{}", e["error"]);
    let disabled = w.emu.tokens().iter().filter(|t| !t.enabled).count();
    assert_eq!(e["disabled"], disabled);
    assert!(e["danglingSecrets"].as_array().unwrap().is_empty());
    let never: Vec<&str> = e["neverExpiring"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert!(
        never.contains(&current.as_str()) && never.contains(&s.young_orphan.id.as_str()),
        "{never:?}"
    );
    assert!(
        !never.iter().any(|id| w.token(id).name.starts_with("bulk")),
        "the bulk tokens expire"
    );
    w.assert_no_leaks();
}

/// Many Secrets Manager secrets, each with three labelled versions: the sweep reads every one
/// of them (their minted tokens stay, an orphan of each is disabled) from the `ListSecrets`
/// entries, with no DescribeSecret per secret.
#[tokio::test]
async fn many_secrets_are_read_from_their_listing_without_describe_secret() {
    const SECRETS: usize = 60;
    let mut w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let setups = (0..SECRETS).map(|i| {
        let (sm, emu) = (&w.secrets_manager, &w.emu);
        async move {
            let name = format!("dynatrace/bulk-{i}-{}", rotator_sandbox::unique_suffix());
            let arn = secrets_manager::create_secret(sm, &name, "{}")
                .await
                .unwrap();
            let minted = |rotation: &str| {
                emu.seed_token(SeedToken {
                    creation: Some(hours_ago(2)),
                    ..SeedToken::new(
                        &Marker::secrets_manager(&arn, rotation).name_for("app"),
                        APP_SCOPES,
                    )
                })
            };
            let (current, pending, orphan) = (minted("a"), minted("b"), minted("c"));
            let doc =
                |t: &Seeded| json!({"environmentUrl": emu.url(), "token": t.value}).to_string();
            // AWSCURRENT: current; AWSPREVIOUS: the first value; AWSPENDING: pending.
            secrets_manager::update_value(sm, &name, &doc(&current))
                .await
                .unwrap();
            let version = secrets_manager::begin_rotation(sm, &name, secrets_manager::LAMBDA_ARN)
                .await
                .unwrap();
            secrets_manager::put_value(sm, &name, &version, &doc(&pending), &["AWSPENDING"])
                .await
                .unwrap();
            (vec![current.id, pending.id], orphan.id)
        }
    });
    let seeded = futures::future::join_all(setups).await;
    let store =
        rotator_sandbox::FaultProxy::start(&rotator_sandbox::Moto::shared().endpoint()).await;
    w.deps.secrets_manager = secrets_manager::client(&store.url());

    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(out["errors"], json!([]), "{out}");
    let orphans = sorted(seeded.iter().map(|(_, o)| o.clone()).collect());
    assert_eq!(ids(&out, "disabled"), orphans, "one orphan of each secret");
    for (referenced, _) in &seeded {
        for id in referenced {
            assert!(w.token(id).enabled, "a labelled token of a secret read");
        }
    }
    let calls = store.calls();
    let count = |target: &str| {
        calls
            .iter()
            .filter(|c| c.target.as_deref() == Some(target))
            .count()
    };
    assert_eq!(count("secretsmanager.DescribeSecret"), 0, "{calls:?}");
    assert!(count("secretsmanager.ListSecrets") >= 1);
    // Every labelled version of each secret (other tests' secrets may add to it).
    assert!(
        count("secretsmanager.GetSecretValue") > 3 * SECRETS,
        "{calls:?}"
    );
    w.assert_no_leaks();
}

/// Token lookups by value the emulator has answered so far.
fn lookups(emu: &dynatrace_emulator::Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v2/apiTokens/lookup")
        .count()
}

/// A previous token is looked up by value (the proof a lagging consumer and a `when-unused`
/// revocation need) only when the listing shows a use after its successor's promotion: with
/// `next-rotation` and no consumer of an old value, a sweep and an audit look nothing up; the
/// consumer of one previous token costs one lookup each, and is reported.
#[tokio::test]
async fn previous_tokens_are_looked_up_only_when_the_listing_shows_a_use_after_promotion() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let mut originals = Vec::new();
    for _ in 0..3 {
        let (secret, original) = w.app_secret(json!({})).await;
        w.rotate(&secret).await;
        originals.push(original);
    }
    let before = lookups(&w.emu);
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(lagging_ids(&out).is_empty(), "{out}");
    let audit = w.invoke(json!({"action": "audit"})).await.unwrap();
    assert!(lagging_ids(&audit["environments"][0]).is_empty(), "{audit}");
    assert_eq!(lookups(&w.emu) - before, 0, "nothing can matter: no lookup");

    use_token(&w.emu.url(), &originals[1].value).await;
    let before = lookups(&w.emu);
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert_eq!(lagging_ids(&out), vec![originals[1].id.clone()], "{out}");
    assert_eq!(lookups(&w.emu) - before, 1, "one proof for the one used");
    let audit = w.invoke(json!({"action": "audit"})).await.unwrap();
    assert_eq!(
        lagging_ids(&audit["environments"][0]),
        vec![originals[1].id.clone()]
    );
    assert_eq!(lookups(&w.emu) - before, 2);
    for o in &originals {
        assert!(
            w.token(&o.id).enabled,
            "next-rotation: nothing revoked early"
        );
    }
    w.assert_no_leaks();
}

/// A first list page of 10,000 tokens that times out is not repeated until the deadline: the
/// listing starts over in pages of 1,000, and the sweep does its work.
#[tokio::test]
async fn a_list_page_that_times_out_is_listed_again_in_smaller_pages() {
    let retries = dynatrace_token_rotator::dynatrace::RetrySettings {
        request_timeout: std::time::Duration::from_millis(200),
        ..support::fast_retries()
    };
    let w = World::with_retries(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)], retries).await;
    let (secret, _) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    // An orphan of this secret (an abandoned version's mint, two hours old) to disable.
    let arn = w
        .secrets_manager
        .describe_secret()
        .secret_id(&secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let minted = Marker::secrets_manager(&arn, "an-abandoned-version").name_for("app1 metrics");
    let orphan = w.emu.seed_token(SeedToken {
        creation: Some(hours_ago(2)),
        ..SeedToken::new(&minted, APP_SCOPES)
    });
    // The first list request outlasts the page timeout (6 × 200 ms).
    w.emu.add_fault(
        dynatrace_emulator::FaultRule::new(
            "GET",
            dynatrace_emulator::PathMatch::Exact("/api/v2/apiTokens".into()),
            dynatrace_emulator::FaultKind::Delay(std::time::Duration::from_secs(3)),
        )
        .times(1),
    );
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(out["errors"].as_array().unwrap().is_empty(), "{out}");
    assert_eq!(ids(&out, "disabled"), vec![orphan.id.clone()], "{out}");
    assert!(w.logs.contains("listing again in smaller pages"));
    // (The timed-out request never completes, so the emulator records only the small listing.)
    assert_eq!(list_requests(&w.emu), 1);
    w.assert_no_leaks();
}
