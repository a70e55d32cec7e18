//! The payment service: creators' payouts, paid through a payment provider as a saga with
//! compensation (reserve → pay → settle, or release when the provider fails).
//!
//! `domain` holds the rules and the saga's state machine (no I/O), `app` the handlers and saga
//! steps, `adapters` the repository, the provider port with its sandbox, the gRPC server, the
//! `payment-commands` door and the commission-event feed. The feed and the resumer run in every
//! mode (they are the saga); the mode only chooses the client doors.

pub mod adapters;
pub mod app;
pub mod domain;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use affiliate_proto::payment::payment_service_server::PaymentServiceServer;
use service_host::kit::{Config, Declaration, Kit, Wiring};
use service_runtime::config::{Mode, parse_duration};
use service_runtime::outbox::events_topic;

use crate::adapters::provider::SandboxProvider;
use crate::app::Payouts;
use crate::domain::PayoutMinimums;

/// The payment service's own flags: the provider's settings and the payout rules.
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentArgs {
    #[command(flatten)]
    pub provider: ProviderArgs,
    /// The smallest payout per currency, in major units with the currency's decimals, e.g.
    /// `EUR=10.00,USD=25.00`: a payout request below its currency's minimum is refused
    /// (FAILED_PRECONDITION, reason BELOW_MINIMUM_PAYOUT); a currency not listed takes any
    /// amount. None by default.
    #[arg(long = "payout-minimums", env = "PAYOUT_MINIMUMS", value_parser = PayoutMinimums::parse)]
    pub payout_minimums: Option<PayoutMinimums>,
}

/// The payment provider's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderArgs {
    /// The sandbox provider's per-payout limit in minor units; larger payouts are declined.
    #[arg(
        long = "sandbox-limit-minor",
        env = "SANDBOX_LIMIT_MINOR",
        default_value_t = 1_000_000
    )]
    pub sandbox_limit_minor: i64,
    /// How long the sandbox takes to answer for accounts containing `slow`.
    #[arg(long = "sandbox-slow-delay", env = "SANDBOX_SLOW_DELAY", default_value = "3s", value_parser = parse_duration)]
    pub sandbox_slow_delay: Duration,
    /// Longest wait for the provider's answer.
    #[arg(long = "provider-timeout", env = "PROVIDER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often the resumer looks for payouts left mid-payment (by a crash or a provider outage).
    #[arg(long = "resume-interval", env = "SAGA_RESUME_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub resume_interval: Duration,
}

/// The payment service: its API and command door in the mode's doors; the saga (its
/// commission-event feed, its resumer) and the saga metrics in every mode.
pub struct Payment;

impl Declaration for Payment {
    const NAME: &'static str = "payment-service";
    const SERVICE: &'static str = app::messages::SERVICE;
    const ABOUT: &'static str = "Payouts through a payment provider, as a saga";
    const LISTEN: &'static str = "127.0.0.1:50054";
    const MODE: (Mode, Option<&'static str>) = (
        Mode::Hybrid,
        Some(
            "grpc (API), events (the payment-commands topic) or hybrid (both). The saga runs in all",
        ),
    );
    /// Versions from 1000; the platform tables come from the runtime.
    const MIGRATOR: &'static sqlx::migrate::Migrator = &sqlx::migrate!("./migrations");
    type Flags = PaymentArgs;

    fn needs_pulsar(_: Mode) -> bool {
        true
    }

    fn wire(config: &Config<PaymentArgs>, kit: &Kit) -> anyhow::Result<Wiring> {
        let own = &config.own.provider;
        let provider = Arc::new(SandboxProvider {
            limit_minor: own.sandbox_limit_minor,
            slow_delay: own.sandbox_slow_delay,
        });
        let minimums = config.own.payout_minimums.clone().unwrap_or_default();
        let payouts = Payouts::new(kit.pool.clone(), provider, own.timeout).with_minimums(minimums);
        let door = adapters::commands::PaymentDoor(payouts.clone());
        let feed = adapters::commissions::SagaFeed::new(payouts.clone());
        let (resumer, interval, pool) = (payouts.clone(), own.resume_interval, kit.pool.clone());
        Ok(Wiring::new()
            .api(PaymentServiceServer::new(adapters::grpc::PaymentApi::new(
                payouts,
            )))
            .door(door)
            .feed("saga feed", &events_topic("commission"), "payment", feed)
            .run("saga resumer", move |token| {
                resume_loop(resumer, interval, token)
            })
            .run("saga metrics", move |token| meter_sagas(pool, token)))
    }
}

/// A built payment service (see `service_host::kit::Application`).
pub type Application = service_host::kit::Application<Payment>;

/// Every few seconds, how many payouts are in each saga state (`payouts{status}`).
async fn meter_sagas(pool: sqlx::PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    const STATES: [&str; 7] = [
        "requested",
        "processing",
        "settling",
        "completed",
        "releasing",
        "failed",
        "rejected",
    ];
    loop {
        match sqlx::query!(r#"select status, count(*) as "count!" from payouts group by status"#)
            .fetch_all(&pool)
            .await
        {
            Ok(rows) => {
                for state in STATES {
                    let count = rows
                        .iter()
                        .find(|row| row.status == state)
                        .map_or(0, |row| row.count);
                    metrics::gauge!("payouts", "status" => state).set(count as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "counting payouts by state failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}

/// At start, finishes every payment a previous run left mid-way; then, every `interval`, those
/// stuck for longer than `interval` (a provider outage, a lost attempt).
async fn resume_loop(
    payouts: Payouts<SandboxProvider>,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut min_age = Duration::ZERO;
    loop {
        match payouts.resume(min_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(payouts = n, "resumed payments left mid-way"),
            Err(e) => tracing::warn!(error = %e, "resuming payments failed; will retry"),
        }
        min_age = interval;
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod config_tests {
    #[test]
    fn the_command_line_is_well_formed_with_the_declared_defaults() {
        service_host::kit::check_declaration::<super::Payment>();
    }

    fn parse(extra: &[&str]) -> Result<super::PaymentArgs, clap::Error> {
        let args = ["payment-service", "--database-url", "postgres://x@h/db"];
        service_host::kit::parse_from::<super::Payment, _, _>(args.iter().chain(extra))
            .map(|config| config.own)
    }

    #[test]
    fn payout_minimums_are_read_at_start_and_a_bad_one_is_refused_there() {
        let own = parse(&["--payout-minimums", "EUR=10.00,USD=25.00"]).unwrap();
        let minimums = own.payout_minimums.unwrap();
        assert_eq!(
            (minimums.of("EUR"), minimums.of("USD")),
            (Some(1000), Some(2500))
        );
        let error = parse(&["--payout-minimums", "EUR=10.001"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            error.to_string().contains("has 3 decimals; EUR has 2"),
            "{error}"
        );
    }
}
