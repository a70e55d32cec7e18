//! The load generator end to end: `platform load` against the whole platform as real processes
//! (every service and the relay on real PostgreSQL and Pulsar, in a namespace of the test's own).
//! A three-second run at 50 purchases a second: its JSON report parses, every acknowledged purchase
//! has exactly one commission (in the report, in the tracking database and in the commission
//! database) and nothing is missing or duplicated. Then a short run with `--workflow` pays every
//! creator with a balance out and waits until each payout completed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::platform::Platform;
use e2e::process::binary;
use e2e::{pulsar_tenant, pulsar_url};

/// The longest a `platform load` run of this test may take (its drain is bounded well below).
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Runs `platform load` against the platform with `args`; returns its parsed JSON report after
/// checking it exited 0 (every acknowledged purchase has its commission).
async fn load(platform: &Platform, args: &[&str]) -> serde_json::Value {
    let mut command = tokio::process::Command::new(binary("platform"));
    command
        .arg("load")
        .args(args)
        .args([
            "--json",
            "--drain-timeout",
            "90s",
            "--payout-timeout",
            "90s",
        ])
        .args(["--campaign-url", &platform.url("campaign")])
        .args(["--tracking-url", &platform.url("tracking")])
        .args(["--commission-url", &platform.url("commission")])
        .args(["--payment-url", &platform.url("payment")])
        .args([
            "--pulsar-url",
            &pulsar_url(),
            "--pulsar-tenant",
            &pulsar_tenant(),
        ])
        .args(["--pulsar-namespace", &platform.namespace])
        .env_remove("RUST_BACKTRACE")
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("platform load {args:?} did not end within {RUN_LIMIT:?}"))
        .expect("run platform load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The progress lines, for --nocapture.
    eprintln!("platform load {}:\n{stderr}", args.join(" "));
    assert!(
        output.status.success(),
        "platform load {args:?} failed ({}):\n{stderr}\nstdout: {stdout}\nlogs: {}",
        output.status,
        platform.logs.display()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints one line: {stdout}");
    serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}): {stdout}"))
}

fn count(report: &serde_json::Value, path: &[&str]) -> u64 {
    let value = path.iter().fold(report, |v, key| &v[*key]);
    value
        .as_u64()
        .unwrap_or_else(|| panic!("no count at {path:?} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_gets_exactly_one_commission_per_acknowledged_purchase() {
    let mut platform = Platform::start("load_generator", "hybrid").await;

    let report = load(&platform, &["--rate", "50", "--duration", "3s"]).await;
    eprintln!("report: {report}");
    let acknowledged = count(&report, &["purchases", "acknowledged"]);
    assert_eq!(count(&report, &["planned"]), 150, "50/s for 3 s");
    assert_eq!(count(&report, &["purchases", "sent"]), 150);
    assert_eq!(acknowledged, 150, "{report}");
    assert_eq!(count(&report, &["purchases", "failed"]), 0);
    assert_eq!(count(&report, &["commissions", "calculated"]), acknowledged);
    assert_eq!(count(&report, &["commissions", "missing"]), 0);
    assert_eq!(count(&report, &["commissions", "duplicates"]), 0);
    assert_eq!(count(&report, &["commissions", "unacknowledged"]), 0);
    assert_eq!(count(&report, &["ack_latency", "count"]), acknowledged);
    assert_eq!(
        count(&report, &["commission_latency", "count"]),
        acknowledged
    );
    assert_eq!(report["drain"]["drained"], true, "{report}");
    assert!(report["drain"]["seconds"].as_f64().is_some(), "{report}");
    let p50 = report["commission_latency"]["p50_ms"].as_f64().unwrap();
    let max = report["commission_latency"]["max_ms"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= max, "{report}");
    assert!(report["achieved_rate"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report.get("payouts").is_none());
    // The cost: the platform's processes on this machine, found and measured.
    let cost = &report["cost"];
    for process in [
        "tracking-service",
        "commission-service",
        "relay",
        "pulsar",
        "postgresql",
    ] {
        let used = cost["per_process"][process]["cpu_ms"].as_f64();
        assert!(
            used.is_some_and(|ms| ms > 0.0),
            "{process} used CPU during the run: {cost}"
        );
    }
    assert!(
        cost["total_cpu_ms_per_purchase"].as_f64().unwrap() > 0.0,
        "{cost}"
    );

    // What the platform itself recorded: as many purchases and commissions, one each.
    let campaign_id = report["campaign_id"].as_str().unwrap();
    let purchases: i64 = sqlx::query_scalar(
        "select count(*) from tracking_events where campaign_id = $1::uuid and kind = 'purchase'",
    )
    .bind(campaign_id)
    .fetch_one(&platform.databases["tracking"].pool)
    .await
    .unwrap();
    let (commissions, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct tracking_event_id) from commissions where campaign_id = $1::uuid",
    )
    .bind(campaign_id)
    .fetch_one(&platform.databases["commission"].pool)
    .await
    .unwrap();
    let acknowledged = i64::try_from(acknowledged).unwrap();
    assert_eq!(purchases, acknowledged, "tracking events of the campaign");
    assert_eq!(
        (commissions, distinct),
        (acknowledged, acknowledged),
        "one commission per purchase"
    );

    // The workflow, on two campaigns that the same 4 creators accepted: every creator with a
    // balance is paid out.
    let report = load(
        &platform,
        &[
            "--rate",
            "20",
            "--count",
            "20",
            "--creators",
            "4",
            "--campaigns",
            "2",
            "--workflow",
        ],
    )
    .await;
    eprintln!("report: {report}");
    assert_eq!(count(&report, &["commissions", "missing"]), 0);
    let campaigns: Vec<String> = report["campaign_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(campaigns.len(), 2, "{report}");
    let commissions: i64 =
        sqlx::query_scalar("select count(*) from commissions where campaign_id::text = any($1)")
            .bind(&campaigns)
            .fetch_one(&platform.databases["commission"].pool)
            .await
            .unwrap();
    assert_eq!(
        commissions,
        i64::try_from(count(&report, &["commissions", "calculated"])).unwrap(),
        "the commissions of both campaigns are the load's"
    );
    let requested = count(&report, &["payouts", "requested"]);
    assert!(requested >= 1, "{report}");
    assert_eq!(
        requested + count(&report, &["payouts", "skipped_without_balance"]),
        4,
        "{report}"
    );
    assert_eq!(count(&report, &["payouts", "unfinished"]), 0, "{report}");
    assert_eq!(
        count(
            &report,
            &["payouts", "by_status", "PAYOUT_STATUS_COMPLETED"]
        ),
        requested,
        "{report}"
    );

    platform.assert_all_running();
}
