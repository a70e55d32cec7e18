//! Dead letters end to end, as an operator meets them: a command whose handler keeps failing
//! (a database trigger refuses it) reaches the dead-letter topic after N tries while other
//! commands flow; `platform dlq list` and `show` find it; once the cause is fixed,
//! `platform dlq redrive` replays it and the command takes effect, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use prost::Message as _;
use uuid::Uuid;

use affiliate_proto::campaign::{CampaignCommand, CreateCampaignRequest, campaign_command};
use affiliate_proto::common::{MessageMetadata, Money};
use e2e::process::{Process, binary};
use e2e::{
    eventually, fresh_database, fresh_namespace, log_dir, publish, pulsar, pulsar_admin_url,
    pulsar_tenant, pulsar_url,
};

/// Runs `platform dlq …` in the test's namespace; returns (success, stdout, stderr).
fn dlq(namespace: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("platform"))
        .arg("dlq")
        .args(args)
        .args(e2e::pulsar_args(namespace))
        .args(["--pulsar-admin-url", &pulsar_admin_url(), "--idle", "1s"])
        .output()
        .expect("run platform dlq");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn create(message_id: &str, name: &str) -> Vec<u8> {
    CampaignCommand {
        metadata: Some(MessageMetadata {
            message_id: message_id.into(),
            message_type: "campaign.create.command.v1".into(),
            correlation_id: "dlq-test".into(),
            ..Default::default()
        }),
        command: Some(campaign_command::Command::CreateCampaign(
            CreateCampaignRequest {
                advertiser_id: Uuid::now_v7().to_string(),
                name: name.into(),
                description: String::new(),
                commission_rate_bps: 100,
                budget: Some(Money {
                    amount_minor: 100,
                    currency: "EUR".into(),
                }),
                tracking: None,
                hold_period: None,
            },
        )),
    }
    .encode_to_vec()
}

async fn names(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("select name from campaigns order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_shown_and_redriven_after_the_cause_is_fixed() {
    let logs = log_dir("dlq");
    let db = fresh_database("dlq").await;
    let namespace = fresh_namespace().await;
    let mut service = Process::start(
        "campaign-service",
        &binary("campaign-service"),
        &[],
        &[
            ("MODE", "events".into()),
            ("DATABASE_URL", db.url.clone()),
            ("GRPC_LISTEN", "127.0.0.1:0".into()),
            ("PULSAR_URL", pulsar_url()),
            ("PULSAR_TENANT", pulsar_tenant()),
            ("PULSAR_NAMESPACE", namespace.to_string()),
            ("MAX_REDELIVERIES", "2".into()),
            ("RETRY_MIN_BACKOFF", "10ms".into()),
            ("RETRY_MAX_BACKOFF", "50ms".into()),
        ],
        &logs,
    );
    service.wait_for_grpc_addr(Duration::from_secs(30));
    // The migrations have run once the server listens; now make one name fail every time.
    e2e::poison_campaigns(&db.pool).await;

    let client = pulsar().await;
    let commands = format!(
        "persistent://{}/{namespace}/campaign-commands",
        pulsar_tenant()
    );
    let poison = Uuid::now_v7().to_string();
    publish(
        &client,
        &commands,
        &poison,
        &poison,
        "campaign.create.command.v1",
        "dlq-test",
        create(&poison, "Poison"),
    )
    .await;
    for i in 0..3 {
        let id = Uuid::now_v7().to_string();
        publish(
            &client,
            &commands,
            &id,
            &id,
            "campaign.create.command.v1",
            "dlq-test",
            create(&id, &format!("Healthy {i}")),
        )
        .await;
    }
    let pool = db.pool.clone();
    eventually(
        Duration::from_secs(30),
        "the healthy commands applied",
        || {
            let pool = pool.clone();
            async move { (names(&pool).await.len() == 3).then_some(()) }
        },
    )
    .await;

    let topic = "campaign-commands-campaign-DLQ";
    let listed = eventually(
        Duration::from_secs(60),
        "the poisoned command is listed as a dead letter",
        || {
            let namespace = namespace.to_string();
            let poison = poison.clone();
            async move {
                let (ok, out, _) = dlq(&namespace, &["list", "--topic", topic]);
                (ok && out.contains(&poison)).then_some(out)
            }
        },
    )
    .await;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    // Reading the topic gave its letters a time to live (`--letter-ttl`, 7 days): the
    // `platform-dlq` subscription holds them, and retention alone never deletes what is held.
    // (Topic policies are applied through a system topic: eventually.)
    let ttl_path = format!(
        "/admin/v2/persistent/{}/{}/{topic}/messageTTL",
        e2e::pulsar_tenant(),
        &*namespace
    );
    eventually(
        Duration::from_secs(30),
        "the letters' time to live is 7 days",
        || {
            let ttl_path = ttl_path.clone();
            async move {
                let (status, ttl) = e2e::http_request("GET", &ttl_path, "").await;
                (status == 200 && ttl.trim() == "604800").then_some(())
            }
        },
    )
    .await;
    let (ok, topics, err) = dlq(&namespace, &["topics"]);
    assert!(ok && topics.contains(topic), "{topics} {err}");
    let (ok, shown, err) = dlq(
        &namespace,
        &["show", "--topic", topic, "--message-id", &poison],
    );
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["real_topic"], commands);
    assert_eq!(shown["envelope"]["createCampaign"]["name"], "Poison");

    // Fix the cause, then replay.
    sqlx::raw_sql("drop trigger poison on campaigns")
        .execute(&db.pool)
        .await
        .unwrap();
    let (ok, out, err) = dlq(
        &namespace,
        &["redrive", "--topic", topic, "--message-id", &poison],
    );
    assert!(ok, "redrive failed: {out} {err}");
    let pool = db.pool.clone();
    eventually(
        Duration::from_secs(30),
        "the redriven command created its campaign",
        || {
            let pool = pool.clone();
            async move {
                names(&pool)
                    .await
                    .contains(&"Poison".to_owned())
                    .then_some(())
            }
        },
    )
    .await;
    let (ok, out, _) = dlq(&namespace, &["list", "--topic", topic]);
    assert!(
        ok && !out.contains(&poison),
        "a redriven letter is listed again: {out}"
    );
    let (ok, _, err) = dlq(
        &namespace,
        &[
            "redrive",
            "--topic",
            topic,
            "--message-id",
            &Uuid::now_v7().to_string(),
        ],
    );
    assert!(!ok && err.contains("no matching dead letter"), "{err}");
    let (ok, _, err) = dlq(
        &namespace,
        &["list", "--topic", "campaign-commands-typo-DLQ"],
    );
    assert!(!ok && err.contains("is not a dead-letter topic"), "{err}");
    assert_eq!(
        names(&db.pool)
            .await
            .iter()
            .filter(|n| *n == "Poison")
            .count(),
        1
    );
    assert!(
        service.is_running(),
        "the service died; see {}",
        service.log.display()
    );
}
