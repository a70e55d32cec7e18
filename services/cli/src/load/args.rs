//! The flags of `platform load` (each also an environment variable), checked once at start.

use std::time::Duration;

use service_runtime::config::{PulsarArgs, parse_duration};

use super::retry::RetryPolicy;
use super::schedule::Schedule;

/// The run when neither --duration nor --count is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// What a load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Purchases through CreateEvent (gRPC).
    Purchases,
    /// Visits through the redirect edge (`GET /c/{code}`), and conversions for a share of them.
    Clicks,
}

/// The flags of `--mode clicks`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickArgs {
    /// The redirect edge's base URL. The edge must trust this machine's X-Forwarded-For
    /// (`TRUSTED_PROXIES`), which tells it each visitor's address.
    #[arg(
        long = "redirect-url",
        env = "REDIRECT_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub redirect_url: String,
    /// Share of clicks made by crawlers (0..=1).
    #[arg(long = "bot-share", env = "LOAD_BOT_SHARE", default_value_t = 0.05)]
    pub bot_share: f64,
    /// Share of persons' clicks by a visitor who clicked the same link before (0..=1).
    #[arg(
        long = "repeat-share",
        env = "LOAD_REPEAT_SHARE",
        default_value_t = 0.2
    )]
    pub repeat_share: f64,
    /// Share of persons' clicks that convert (0..=1): a RecordConversion, --convert-after later.
    #[arg(
        long = "convert-share",
        env = "LOAD_CONVERT_SHARE",
        default_value_t = 0.0
    )]
    pub convert_share: f64,
    /// How long after its click a conversion is reported, e.g. 1s.
    #[arg(long = "convert-after", env = "LOAD_CONVERT_AFTER", default_value = "1s", value_parser = parse_duration)]
    pub convert_after: Duration,
    /// First, the same rate for this long against a bare 302 handler in this process (the
    /// baseline the edge's latencies are compared with); 0s for none.
    #[arg(long = "baseline-duration", env = "LOAD_BASELINE_DURATION", default_value = "20s", value_parser = parse_duration)]
    pub baseline_duration: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// What to send: purchases, or clicks through the redirect edge.
    #[arg(long, env = "LOAD_MODE", value_enum, default_value = "purchases")]
    pub mode: Mode,
    #[command(flatten)]
    pub clicks: ClickArgs,
    /// Purchases per second; with --ramp-to, the rate at the start of the ramp.
    #[arg(long, env = "LOAD_RATE", default_value_t = 200.0)]
    pub rate: f64,
    /// Ramp the rate linearly from --rate to this many purchases per second over --duration.
    #[arg(long, env = "LOAD_RAMP_TO")]
    pub ramp_to: Option<f64>,
    /// How long to send, e.g. 60s or 2m (default 60s, or no limit with --count).
    #[arg(long, env = "LOAD_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many purchases (with --duration too: whichever comes first).
    #[arg(long, env = "LOAD_COUNT")]
    pub count: Option<u64>,
    /// Concurrent clients, i.e. purchases in flight at most. Sends keep to the timetable; one
    /// due while every client is busy starts late, and its latencies count from when it was due.
    #[arg(long, env = "LOAD_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// Creators who accept the campaign; each purchase names one of them at random.
    #[arg(long, env = "LOAD_CREATORS", default_value_t = 50)]
    pub creators: usize,
    /// Campaigns of the load, each accepted by every creator; each purchase names one of them at
    /// random. A few campaigns with few creators make hot rows: batches of commissions that share
    /// campaigns and balances (e.g. --campaigns 4 --creators 8).
    #[arg(long, env = "LOAD_CAMPAIGNS", default_value_t = 1)]
    pub campaigns: usize,
    /// Amount of each purchase in minor units (2000 = 20.00).
    #[arg(long, env = "LOAD_AMOUNT_MINOR", default_value_t = 2000)]
    pub amount_minor: i64,
    /// ISO-4217 currency of the campaign and its purchases.
    #[arg(long, env = "LOAD_CURRENCY", default_value = "EUR")]
    pub currency: String,
    /// Commission rate of the load's campaign in basis points (1250 = 12.5 %).
    #[arg(long, env = "LOAD_COMMISSION_RATE_BPS", default_value_t = 1250)]
    pub commission_rate_bps: u32,
    /// Retries of a call that failed with UNAVAILABLE, DEADLINE_EXCEEDED or a connection error
    /// (with the same idempotency key, so it takes effect once).
    #[arg(long, env = "LOAD_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// Deadline of each gRPC call attempt, e.g. 10s; past it the attempt is DEADLINE_EXCEEDED.
    #[arg(long, env = "LOAD_CALL_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// After the last send, how long to wait for the commissions still due, e.g. 120s.
    #[arg(long, env = "LOAD_DRAIN_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Then every creator with a balance requests a payout of all of it; wait for the payouts to
    /// end and count them by status.
    #[arg(long, env = "LOAD_WORKFLOW")]
    pub workflow: bool,
    /// With --workflow: how long to wait for the payouts to reach a terminal status.
    #[arg(long, env = "LOAD_PAYOUT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub payout_timeout: Duration,
    /// Register this many webhook endpoints per creator (commission.calculated.v1), on a
    /// receiver in this process, and report their deliveries: every commission's message
    /// delivered to each, once, and its latency from the event. The webhook service must allow
    /// this machine's address (WEBHOOK_ALLOW_NETWORKS, WEBHOOK_ALLOW_HTTP: `platform.sh` does).
    #[arg(long, env = "LOAD_WEBHOOKS", default_value_t = 0)]
    pub webhooks: u32,
    /// Print the report as one JSON object (instead of text).
    #[arg(long, env = "LOAD_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub services: ServiceUrls,
    #[command(flatten)]
    pub pulsar: PulsarArgs,
}

/// Where the services answer gRPC.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceUrls {
    /// Campaign service gRPC URL.
    #[arg(
        long = "campaign-url",
        env = "CAMPAIGN_GRPC_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub campaign: String,
    /// Tracking service gRPC URL.
    #[arg(
        long = "tracking-url",
        env = "TRACKING_GRPC_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub tracking: String,
    /// Commission service gRPC URL (balances, with --workflow).
    #[arg(
        long = "commission-url",
        env = "COMMISSION_GRPC_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub commission: String,
    /// Payment service gRPC URL (payouts, with --workflow).
    #[arg(
        long = "payment-url",
        env = "PAYMENT_GRPC_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    pub payment: String,
    /// Webhook service gRPC URL (endpoints, with --webhooks).
    #[arg(
        long = "webhook-url",
        env = "WEBHOOK_GRPC_URL",
        default_value = "http://127.0.0.1:50057"
    )]
    pub webhook: String,
}

impl LoadArgs {
    /// The timetable the flags describe, or why they describe none.
    pub fn schedule(&self) -> anyhow::Result<Schedule> {
        let positive = |name: &str, rate: f64| {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0,
                "{name} must be a positive number of purchases per second, not {rate}"
            );
            Ok(())
        };
        positive("--rate", self.rate)?;
        anyhow::ensure!(
            self.duration.is_none_or(|d| !d.is_zero()),
            "--duration must be longer than zero"
        );
        anyhow::ensure!(
            self.count.is_none_or(|c| c > 0),
            "--count must be at least 1"
        );
        match self.ramp_to {
            Some(to) => {
                positive("--ramp-to", to)?;
                let duration = match (self.duration, self.count) {
                    (Some(d), _) => d,
                    (None, None) => DEFAULT_DURATION,
                    (None, Some(_)) => {
                        anyhow::bail!("--ramp-to needs --duration: the ramp's length")
                    }
                };
                Ok(Schedule::ramp(self.rate, to, duration, self.count))
            }
            None => {
                let duration = match (self.duration, self.count) {
                    (None, None) => Some(DEFAULT_DURATION),
                    (duration, _) => duration,
                };
                Ok(Schedule::fixed(self.rate, duration, self.count))
            }
        }
    }

    /// The rest of the flags, checked.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(self.creators > 0, "--creators must be at least 1");
        anyhow::ensure!(
            (1..=100).contains(&self.campaigns),
            "--campaigns must be between 1 and 100"
        );
        anyhow::ensure!(self.amount_minor > 0, "--amount-minor must be positive");
        anyhow::ensure!(
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase()),
            "--currency must be an ISO-4217 code in upper case, e.g. EUR, not {:?}",
            self.currency
        );
        anyhow::ensure!(
            self.commission_rate_bps <= 10_000,
            "--commission-rate-bps must be 0..=10000"
        );
        anyhow::ensure!(
            !self.call_timeout.is_zero(),
            "--call-timeout must be longer than zero"
        );
        for (flag, share) in [
            ("--bot-share", self.clicks.bot_share),
            ("--repeat-share", self.clicks.repeat_share),
            ("--convert-share", self.clicks.convert_share),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&share),
                "{flag} must be between 0 and 1, not {share}"
            );
        }
        Ok(())
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            call_timeout: self.call_timeout,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn parse(args: &[&str]) -> LoadArgs {
        Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied()))
            .unwrap()
            .load
    }

    #[test]
    fn the_defaults_are_200_per_second_for_a_minute() {
        let args = parse(&[]);
        args.check().unwrap();
        assert_eq!(
            args.schedule().unwrap(),
            Schedule::fixed(200.0, Some(Duration::from_secs(60)), None)
        );
        assert_eq!((args.concurrency, args.creators), (32, 50));
        assert_eq!(args.drain_timeout, Duration::from_secs(120));
    }

    #[test]
    fn a_count_alone_has_no_time_limit_and_a_ramp_needs_a_length() {
        let counted = parse(&["--count", "500", "--rate", "50"]);
        assert_eq!(
            counted.schedule().unwrap(),
            Schedule::fixed(50.0, None, Some(500))
        );
        let ramp = parse(&["--ramp-to", "1000", "--duration", "30s"]);
        assert_eq!(
            ramp.schedule().unwrap(),
            Schedule::ramp(200.0, 1000.0, Duration::from_secs(30), None)
        );
        let unbounded_ramp = parse(&["--ramp-to", "1000", "--count", "10"]);
        assert!(
            unbounded_ramp
                .schedule()
                .unwrap_err()
                .to_string()
                .contains("--ramp-to needs --duration")
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        for (args, flag) in [
            (&["--rate", "0"][..], "--rate"),
            (&["--rate", "NaN"][..], "--rate"),
            (&["--ramp-to=-5"][..], "--ramp-to"),
            (&["--duration", "0s"][..], "--duration"),
            (&["--count", "0"][..], "--count"),
        ] {
            let error = parse(args).schedule().unwrap_err().to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
        for (args, flag) in [
            (&["--concurrency", "0"][..], "--concurrency"),
            (&["--creators", "0"][..], "--creators"),
            (&["--currency", "eur"][..], "--currency"),
            (&["--amount-minor=-1"][..], "--amount-minor"),
        ] {
            let error = parse(args).check().unwrap_err().to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
        assert!(Cli::try_parse_from(["load", "--duration", "soon"]).is_err());
    }
}
