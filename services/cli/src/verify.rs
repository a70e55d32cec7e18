//! `platform verify ledger`: has the commission service check its books (`CheckLedger`) and
//! prints what was checked and every problem found. The exit status says how it went: 0 when the
//! books balance, 1 when they do not, 2 when they could not be checked (the service is not
//! reachable, too old, or failed).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tonic::Code;
use tonic::transport::Endpoint;

use affiliate_proto::commission::commission_service_client::CommissionServiceClient;
use affiliate_proto::commission::{CheckLedgerRequest, CheckLedgerResponse};
use service_runtime::config::parse_duration;
use service_runtime::errors::code_name;

/// What to verify.
#[derive(Debug, clap::Subcommand)]
pub enum VerifyCommand {
    /// The commission ledger: every account's running total equals the sum of its transfers,
    /// every currency sums to zero, no creator was paid more than their approved, unreversed
    /// commissions. Exits 0 when the books balance, 1 when they do not, 2 when they could not be
    /// checked.
    Ledger(LedgerArgs),
}

#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// The commission service's gRPC URL.
    #[arg(
        long = "commission-url",
        env = "COMMISSION_GRPC_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub commission_url: String,
    /// Longest wait for the check (it reads the whole ledger).
    #[arg(long, env = "VERIFY_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// How a check ended, and the exit status that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Balanced,
    Problems,
    CannotCheck,
}

impl Verdict {
    pub fn of(answer: &CheckLedgerResponse) -> Self {
        if answer.problems.is_empty() {
            Self::Balanced
        } else {
            Self::Problems
        }
    }

    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Balanced => 0,
            Self::Problems => 1,
            Self::CannotCheck => 2,
        })
    }
}

pub async fn run(command: VerifyCommand) -> ExitCode {
    let VerifyCommand::Ledger(args) = command;
    let verdict = match check_ledger(&args).await {
        Ok(answer) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(report(&answer).as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => Verdict::of(&answer),
                Err(e) => {
                    eprintln!("cannot write the report to stdout: {e}");
                    Verdict::CannotCheck
                }
            }
        }
        Err(e) => {
            eprintln!("cannot check the ledger: {e:#}");
            Verdict::CannotCheck
        }
    };
    verdict.exit_code()
}

/// The hint for a commission service that cannot be reached.
fn start_hint(url: &str) -> String {
    format!(
        "the commission service does not answer at {url}: start it (`deploy/local/platform.sh up` starts the platform) or point --commission-url / COMMISSION_GRPC_URL at it"
    )
}

async fn check_ledger(args: &LedgerArgs) -> anyhow::Result<CheckLedgerResponse> {
    let url = &args.commission_url;
    let channel = Endpoint::from_shared(url.clone())
        .with_context(|| format!("--commission-url {url:?} is not a URL"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(args.timeout)
        .connect()
        .await
        .with_context(|| start_hint(url))?;
    let answer = CommissionServiceClient::new(channel)
        .check_ledger(CheckLedgerRequest {})
        .await
        .map_err(|status| match status.code() {
            Code::Unavailable | Code::Cancelled => anyhow::anyhow!(start_hint(url)),
            Code::Unimplemented => anyhow::anyhow!(
                "the commission service at {url} cannot check its ledger (CheckLedger is UNIMPLEMENTED): start a current build of it"
            ),
            Code::DeadlineExceeded => anyhow::anyhow!(
                "the commission service at {url} did not finish the check within {:?}; try a longer --timeout",
                args.timeout
            ),
            code => anyhow::anyhow!("CheckLedger failed: {} {}", code_name(code), status.message()),
        })?;
    Ok(answer.into_inner())
}

/// What was checked, then the verdict and every problem, one per line.
pub fn report(answer: &CheckLedgerResponse) -> String {
    let currencies = if answer.currencies.is_empty() {
        "no currency".to_owned()
    } else {
        format!(
            "{} {} ({})",
            answer.currencies.len(),
            plural(answer.currencies.len(), "currency", "currencies"),
            answer.currencies.join(", ")
        )
    };
    let mut out = format!(
        "checked {} {} on {} {} in {currencies}\n",
        answer.transfers,
        plural(answer.transfers, "transfer", "transfers"),
        answer.accounts,
        plural(answer.accounts, "account", "accounts"),
    );
    if answer.problems.is_empty() {
        out.push_str("the books balance\n");
    } else {
        out.push_str(&format!(
            "the books do not balance: {} {}\n",
            answer.problems.len(),
            plural(answer.problems.len(), "problem", "problems")
        ));
        for problem in &answer.problems {
            // One problem per line, whatever the service wrote.
            out.push_str(&format!("  - {}\n", problem.replace(['\r', '\n'], " ")));
        }
    }
    out
}

fn plural<N: TryInto<i64>>(n: N, one: &'static str, many: &'static str) -> &'static str {
    if n.try_into().ok() == Some(1) {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(problems: &[&str]) -> CheckLedgerResponse {
        CheckLedgerResponse {
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
            transfers: 1234,
            accounts: 1,
            currencies: vec!["EUR".into(), "USD".into()],
        }
    }

    #[test]
    fn balanced_books_say_so_and_exit_zero() {
        let answer = answer(&[]);
        assert_eq!(
            report(&answer),
            "checked 1234 transfers on 1 account in 2 currencies (EUR, USD)\nthe books balance\n"
        );
        assert_eq!(Verdict::of(&answer), Verdict::Balanced);
    }

    #[test]
    fn every_problem_is_listed_on_its_own_line_and_exits_one() {
        let answer = answer(&[
            "EUR sums to 5, not 0",
            "account 7 holds 10\nbut its transfers 9",
        ]);
        assert_eq!(
            report(&answer),
            "checked 1234 transfers on 1 account in 2 currencies (EUR, USD)\n\
             the books do not balance: 2 problems\n  \
             - EUR sums to 5, not 0\n  \
             - account 7 holds 10 but its transfers 9\n"
        );
        assert_eq!(Verdict::of(&answer), Verdict::Problems);
        assert_eq!(Verdict::Problems.exit_code(), ExitCode::from(1));
    }

    #[test]
    fn an_empty_ledger_checks_no_currency() {
        let empty = CheckLedgerResponse::default();
        assert_eq!(
            report(&empty),
            "checked 0 transfers on 0 accounts in no currency\nthe books balance\n"
        );
    }

    #[tokio::test]
    async fn a_service_that_does_not_answer_cannot_be_checked_and_says_what_to_start() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let args = LedgerArgs {
            commission_url: format!("http://127.0.0.1:{port}"),
            timeout: Duration::from_secs(5),
        };
        let error = format!("{:#}", check_ledger(&args).await.unwrap_err());
        assert!(error.contains("deploy/local/platform.sh up"), "{error}");
        assert!(error.contains(&args.commission_url), "{error}");
        assert_eq!(
            run(VerifyCommand::Ledger(args)).await,
            Verdict::CannotCheck.exit_code()
        );
    }
}
