//! The Helm chart's pods, for real: `helm template` of the chart, its Deployments, ConfigMaps and
//! Secret started by `podman kube play` (`deploy/containers/kube.sh`) against PostgreSQL and
//! Pulsar on a podman network, then:
//!
//! - every probe of every container, as the manifest declares it (gRPC health on its port,
//!   `GET` on its named port), answers; podman runs none of them itself (it ignores startup and
//!   readiness probes and would run a liveness probe with curl, which the image has not);
//! - every process runs as 65532 with a read-only root and no capabilities (the pod and
//!   container security contexts), with its environment from its ConfigMap and the Secret;
//! - the redirect edge (its probes are `GET /healthz`) answers `404` for an unknown link;
//! - the relay's two replicas: exactly one holds each outbox (its PostgreSQL advisory lock);
//! - purchases to paid payouts through the services (`platform load --workflow` inside the
//!   network, by the Services' names); then the relay that leads the tracking outbox is stopped,
//!   exits 0, the other takes the outbox over, and a second load completes.
//!
//! What kube play does not run (HorizontalPodAutoscalers, PodDisruptionBudgets, Services as
//! objects, the ServiceAccount) is validated by deploy/static-checks.sh. Needs what the container
//! test needs (deploy/containers/setup.sh) and helm (deploy/static-checks.sh installs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use e2e::containers::{
    assert_confined, inspect, logs_dir, must, podman, prepare_image, repo, run, script, text,
};
use e2e::eventually;

const NETWORK: &str = "affiliate-kube";
const RELEASE: &str = "kp";
const POSTGRES: &str = "affiliate-kube-postgresql";
const PULSAR: &str = "affiliate-kube-pulsar";
const OUTBOXES: [&str; 5] = ["campaign", "tracking", "commission", "payment", "webhook"];

/// Removes the pods, PostgreSQL, Pulsar and the network, whatever happened; after a failure,
/// first keeps every container's log in `target/containers-test/helm/`.
struct Kube;

impl Drop for Kube {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = logs_dir("helm");
            let names = text(&podman(&["ps", "-a", "--format", "{{.Names}}"]));
            // PostgreSQL and Pulsar ("affiliate-kube-…") and every pod's containers ("kp-…")
            let ours = |n: &&str| n.starts_with("affiliate") || n.starts_with(RELEASE);
            for name in names.lines().filter(ours) {
                let log = podman(&["logs", "--timestamps", name]);
                let _ = std::fs::write(dir.join(format!("{name}.log")), text(&log));
            }
            eprintln!("helm pods: the containers' logs are in {}", dir.display());
        }
        let down = run(script("kube.sh", &["down"]), Duration::from_secs(180));
        if !down.status.success() {
            eprintln!("kube.sh down failed:\n{}", text(&down));
        }
    }
}

fn sql(database: &str, query: &str) -> String {
    let out = podman(&[
        "exec",
        POSTGRES,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "platform",
        "-d",
        database,
        "-tAc",
        query,
    ]);
    must(&format!("psql {database}: {query}"), out)
        .trim()
        .to_owned()
}

/// The address of a pod on the network (its infra container's).
fn pod_ip(pod: &str) -> String {
    let infra = inspect("pod", pod)["InfraContainerID"]
        .as_str()
        .unwrap()
        .to_owned();
    let container = inspect("container", &infra);
    container["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("pod {pod} is not on {NETWORK}"))
        .to_owned()
}

/// Runs one probe of the manifest against the running container; Err says why it failed.
fn probe(container: &str, ip: &str, ports: &Value, probe: &Value) -> Result<(), String> {
    let port = |p: &Value| -> u64 {
        match p {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(name) => ports[name.as_str()]
                .as_u64()
                .unwrap_or_else(|| panic!("{container}: no port named {name}")),
            other => panic!("{container}: probe port {other}"),
        }
    };
    let out = if let Some(grpc) = probe.get("grpc") {
        let mut args = vec![
            "exec".to_owned(),
            container.to_owned(),
            "grpc-health-probe".to_owned(),
            format!("-addr=127.0.0.1:{}", port(&grpc["port"])),
        ];
        if let Some(service) = grpc.get("service").and_then(Value::as_str) {
            args.push(format!("-service={service}"));
        }
        podman(&args.iter().map(String::as_str).collect::<Vec<_>>())
    } else if let Some(http) = probe.get("httpGet") {
        // from another container on the network, as the kubelet asks from outside the pod
        let url = format!(
            "http://{ip}:{}{}",
            port(&http["port"]),
            http["path"].as_str().unwrap_or("/")
        );
        podman(&[
            "exec",
            PULSAR,
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "--max-time",
            "3",
            &url,
        ])
    } else {
        panic!("{container}: a probe kind this test does not run: {probe}")
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// Which relay pod's connection holds each outbox's advisory lock (by address), if exactly one.
fn leader(outbox: &str) -> Option<String> {
    let holders = sql(
        outbox,
        "select coalesce(host(a.client_addr), '') from pg_locks l join pg_stat_activity a using (pid) \
         where l.locktype = 'advisory' and l.granted and l.database = \
         (select oid from pg_database where datname = current_database())",
    );
    let holders: Vec<&str> = holders.lines().filter(|l| !l.is_empty()).collect();
    (holders.len() == 1).then(|| holders[0].to_owned())
}

/// `platform load --workflow` inside the network, by the Services' names, `rate` purchases a
/// second; returns its report.
fn load(count: u32, rate: u32) -> Value {
    let service = |name: &str| format!("http://{RELEASE}-affiliate-platform-{name}:50051");
    let env = [
        ("PULSAR_URL", "pulsar://pulsar-broker:6650".to_owned()),
        ("PULSAR_ADMIN_URL", "http://pulsar-broker:8080".to_owned()),
        ("PULSAR_TENANT", "affiliate".to_owned()),
        ("PULSAR_NAMESPACE", "platform".to_owned()),
        ("CAMPAIGN_GRPC_URL", service("campaign")),
        ("TRACKING_GRPC_URL", service("tracking")),
        ("COMMISSION_GRPC_URL", service("commission")),
        ("PAYMENT_GRPC_URL", service("payment")),
    ];
    let mut args: Vec<String> = ["run", "--rm", "--network", NETWORK]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (k, v) in &env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    let count = count.to_string();
    let rate = rate.to_string();
    args.extend(
        [
            "localhost/affiliate-platform:dev",
            "platform",
            "load",
            "--rate",
            &rate,
            "--count",
            &count,
            "--creators",
            "4",
            "--workflow",
            "--json",
            "--drain-timeout",
            "60s",
            "--payout-timeout",
            "60s",
        ]
        .map(str::to_owned),
    );
    let mut command = std::process::Command::new("podman");
    command.args(&args).env(
        "CONTAINERS_CONF",
        repo().join("deploy/containers/containers.conf"),
    );
    let out = must(
        "platform load in the network",
        run(command, Duration::from_secs(240)),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("platform load --json: {e}: {out}"))
}

/// Every acknowledged purchase has exactly one commission and every payout completed. With
/// `refusals_allowed`, purchases may be refused FAILED_PRECONDITION or NOT_FOUND (nothing written):
/// the load creates its campaign and acceptances first, and right after the relay's failover they
/// may reach tracking later than its attribution grace (3 s).
fn assert_load(report: &Value, count: u64, refusals_allowed: bool) {
    let purchases = &report["purchases"];
    let acknowledged = purchases["acknowledged"].as_u64().unwrap();
    let failed = purchases["failed"].as_u64().unwrap();
    if refusals_allowed {
        assert_eq!(acknowledged + failed, count, "{purchases}");
        let refused = ["FAILED_PRECONDITION", "NOT_FOUND"]
            .map(|code| purchases["failed_by_code"][code].as_u64().unwrap_or(0));
        assert_eq!(refused.iter().sum::<u64>(), failed, "{purchases}");
        assert!(acknowledged > 0, "{purchases}");
        if failed > 0 {
            println!(
                "helm pods: right after the failover {failed} of {count} purchases were refused as not yet attributable: {purchases}"
            );
        }
    } else {
        assert_eq!(acknowledged, count, "{purchases}");
    }
    let commissions = &report["commissions"];
    assert_eq!(commissions["calculated"], acknowledged, "{commissions}");
    assert_eq!(commissions["missing"], 0, "{commissions}");
    assert_eq!(commissions["duplicates"], 0, "{commissions}");
    let payouts = &report["payouts"];
    let requested = payouts["requested"].as_u64().unwrap();
    assert!(requested > 0, "{payouts}");
    assert_eq!(
        payouts["by_status"]["PAYOUT_STATUS_COMPLETED"], requested,
        "{payouts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_charts_pods_run() {
    let started = Instant::now();
    prepare_image();
    let kube = Kube;
    let up = run(
        script(
            "kube.sh",
            &[
                "up",
                "--set",
                "secrets.jwtHs256Secret=kube-test-hs256-secret-0123456789abcdef",
            ],
        ),
        Duration::from_secs(480),
    );
    must("deploy/containers/kube.sh up", up);
    let up_secs = started.elapsed().as_secs_f64();
    let state = std::env::var_os("STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join(".state"));
    let summary = state.join("containers/kube/pods.json");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("kube.sh wrote pods.json"))
            .unwrap();
    let pods = summary["pods"].as_array().unwrap();
    let components: BTreeSet<&str> = pods
        .iter()
        .map(|p| p["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        components,
        BTreeSet::from([
            "analytics",
            "bff",
            "campaign",
            "commission",
            "notification",
            "payment",
            "redirect",
            "relay",
            "tracking",
            "webhook"
        ]),
        "the chart's Deployments"
    );
    println!(
        "helm pods: not played by podman (checked statically): {}",
        summary["not_played"]
    );

    // ---- every probe answers; every process confined, configured from its ConfigMap and Secret
    let mut relays = Vec::new();
    let mut redirects = Vec::new();
    let mut probes_run = 0;
    for pod in pods {
        let pod_name = pod["pod"].as_str().unwrap();
        let ip = pod_ip(pod_name);
        if pod["component"] == "relay" {
            relays.push((pod_name.to_owned(), ip.clone()));
        }
        if pod["component"] == "redirect" {
            let http = pod["containers"][0]["ports"]["http"].as_u64().unwrap();
            redirects.push(format!("{ip}:{http}"));
        }
        for c in pod["containers"].as_array().unwrap() {
            let name = format!("{pod_name}-{}", c["name"].as_str().unwrap());
            for (kind, p) in c["probes"].as_object().unwrap() {
                let what = format!("{name}: {kind}");
                eventually(Duration::from_secs(120), &what, || {
                    let result = probe(&name, &ip, &c["ports"], p);
                    async move { result.ok() }
                })
                .await;
                probes_run += 1;
            }
            let container = inspect("container", &name);
            assert_eq!(
                container["State"]["Status"], "running",
                "{name}: {}",
                container["State"]
            );
            assert_confined(&name, &container);
            let env: Vec<&str> = container["Config"]["Env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap())
                .collect();
            // from the component's ConfigMap (envFrom) and the Secret (secretKeyRef)
            let has = |prefix: &str| env.iter().any(|e| e.starts_with(prefix));
            assert!(has("RUST_LOG="), "{name}: nothing from its ConfigMap");
            match pod["component"].as_str().unwrap() {
                "relay" => assert!(
                    has("RELAY_OUTBOXES=campaign=postgres://"),
                    "{name}: {env:?}"
                ),
                "bff" => assert!(has("JWT_HS256_SECRET="), "{name}: no JWT secret"),
                // tracking's database, and the salt the chart's Secret generated
                "redirect" => assert!(
                    has("DATABASE_URL=postgres://") && has("CLICK_IP_SALT="),
                    "{name}: {env:?}"
                ),
                _ => assert!(has("DATABASE_URL=postgres://"), "{name}: no database URL"),
            }
        }
    }
    // startup, readiness and liveness of the seven services, the BFF and the redirect edge; the
    // liveness of each of the relay's two replicas
    assert!(probes_run >= 29, "only {probes_run} probes in the chart");
    assert_eq!(relays.len(), 2, "the relay's two replicas");
    // the redirect edge, past its probes: a well-formed code no link has is looked up in
    // tracking's database and answered 404 (from another container, as a client would ask)
    assert_eq!(redirects.len(), 1, "the redirect edge's replica");
    for address in &redirects {
        let url = format!("http://{address}/c/ZZZZZZZZZZ");
        let status = must(
            "curl the redirect edge",
            podman(&[
                "exec",
                PULSAR,
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                &url,
            ]),
        );
        assert_eq!(status.trim(), "404", "GET {url}");
    }
    println!(
        "helm pods: {} pods, {probes_run} probes answered, every process as 65532, read-only, no capabilities",
        pods.len()
    );

    // ---- one relay holds each outbox -----------------------------------------------------------
    let relay_ips: Vec<&str> = relays.iter().map(|(_, ip)| ip.as_str()).collect();
    for outbox in OUTBOXES {
        let holder = eventually(
            Duration::from_secs(60),
            &format!("one relay holds the {outbox} outbox"),
            || {
                let holder = leader(outbox);
                async move { holder }
            },
        )
        .await;
        assert!(
            relay_ips.contains(&holder.as_str()),
            "{outbox}'s lock is held by {holder}, not a relay ({relay_ips:?})"
        );
    }

    // ---- the workflow, then the tracking outbox's relay stops and the other takes over -------
    let t = Instant::now();
    assert_load(&load(40, 20), 40, false);
    let first_load_secs = t.elapsed().as_secs_f64();
    let stopped_ip = leader("tracking").unwrap();
    let (stopped, _) = relays
        .iter()
        .find(|(_, ip)| *ip == stopped_ip)
        .unwrap()
        .clone();
    let (_, other) = relays
        .iter()
        .find(|(_, ip)| *ip != stopped_ip)
        .unwrap()
        .clone();
    must(
        "podman pod stop",
        podman(&["pod", "stop", "-t", "20", &stopped]),
    );
    let code = inspect("container", &format!("{stopped}-relay"))["State"]["ExitCode"].clone();
    assert_eq!(code, 0, "the stopped relay exited with {code} on SIGTERM");
    for outbox in OUTBOXES {
        // the stopped relay's database sessions end a moment after it does
        let holder = eventually(
            Duration::from_secs(60),
            &format!("the standby takes the {outbox} outbox"),
            || {
                let holder = leader(outbox).filter(|h| *h != stopped_ip);
                async move { holder }
            },
        )
        .await;
        assert_eq!(
            holder, other,
            "{outbox}'s lock after {stopped} ({stopped_ip}) stopped: held by {holder}, not the other relay"
        );
    }
    // The new leader publishes once its producers are up. On these two busy cores that has taken
    // longer than a short load's attribution grace: every purchase of a 4 s load refused
    // NOT_FOUND (its new campaign had not reached tracking), with the pods' connections timing out
    // around then. So loads of 5 until one purchase is acknowledged (at most 90 s; until then
    // every refusal must be "not yet attributable"), then a load of 20, each checked in full.
    let failover = Instant::now();
    loop {
        let report = load(5, 5);
        let purchases = &report["purchases"];
        if purchases["acknowledged"].as_u64().unwrap_or(0) > 0 {
            assert_load(&report, 5, true);
            break;
        }
        for code in purchases["failed_by_code"].as_object().unwrap().keys() {
            assert!(
                code == "NOT_FOUND" || code == "FAILED_PRECONDITION",
                "after the failover: {purchases}"
            );
        }
        assert!(
            failover.elapsed() < Duration::from_secs(90),
            "no purchase acknowledged within 90 s of the relay's failover: {purchases}"
        );
    }
    println!(
        "helm pods: the first purchase after the relay's failover acknowledged {:.1} s after it",
        failover.elapsed().as_secs_f64()
    );
    assert_load(&load(20, 5), 20, true);
    drop(kube);
    println!(
        "helm pods: kube.sh up {up_secs:.1} s, 40 purchases to paid payouts in {first_load_secs:.1} s, failover of the relay, all with down {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
