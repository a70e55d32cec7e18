//! `--workflow`: after the purchases, every creator with an available balance requests a payout
//! of all of it (to an account the sandbox provider pays), and the run waits until each payout
//! has completed, failed or been rejected.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use affiliate_proto::commission::GetBalanceRequest;
use affiliate_proto::common::Money;
use affiliate_proto::payment::{
    GetPayoutRequest, PayoutMethod, PayoutStatus, RequestPayoutRequest,
};
use service_runtime::errors::code_name;

use super::report::Payouts;
use super::retry::RetryPolicy;
use super::setup::{Clients, Run};

/// An IBAN the sandbox provider pays.
const ACCOUNT: &str = "DE89370400440532013000";
/// How often unfinished payouts are looked at again.
const POLL: Duration = Duration::from_millis(250);
/// Payout calls in flight at most.
const IN_FLIGHT: usize = 8;

/// What asking one creator's payout came to.
enum Asked {
    Requested { payout_id: String, status: i32 },
    NothingAvailable,
    Failed(&'static str),
}

fn is_terminal(status: i32) -> bool {
    matches!(
        PayoutStatus::try_from(status),
        Ok(PayoutStatus::Completed | PayoutStatus::Failed | PayoutStatus::Rejected)
    )
}

fn status_name(status: i32) -> String {
    PayoutStatus::try_from(status).map_or_else(
        |_| format!("PAYOUT_STATUS_{status}"),
        |s| s.as_str_name().to_owned(),
    )
}

async fn ask(
    clients: &Clients,
    run: &Run,
    retry: RetryPolicy,
    creator_id: &str,
    i: usize,
    currency: &str,
) -> Asked {
    let balance = retry
        .call(|| {
            let mut client = clients.commission.clone();
            let request = GetBalanceRequest {
                creator_id: creator_id.to_owned(),
                currency: currency.to_owned(),
            };
            async move { client.get_balance(request).await }
        })
        .await;
    let available = match balance.result {
        Ok(response) => response
            .into_inner()
            .balance
            .map_or(0, |b| b.available_minor),
        Err(status) => return Asked::Failed(code_name(status.code())),
    };
    if available <= 0 {
        return Asked::NothingAvailable;
    }
    let message = RequestPayoutRequest {
        creator_id: creator_id.to_owned(),
        amount: Some(Money {
            amount_minor: available,
            currency: currency.to_owned(),
        }),
        method: PayoutMethod::BankTransfer.into(),
        account_details: ACCOUNT.to_owned(),
    };
    let step = format!("payout-{i}");
    let requested = retry
        .call(|| {
            let mut client = clients.payment.clone();
            let request = run.request(message.clone(), &step);
            async move { client.request_payout(request?).await }
        })
        .await;
    match requested.result.map(|r| r.into_inner().payout) {
        Ok(Some(payout)) => Asked::Requested {
            payout_id: payout.id,
            status: payout.status,
        },
        Ok(None) => Asked::Failed("NO_PAYOUT_IN_RESPONSE"),
        Err(status) => Asked::Failed(code_name(status.code())),
    }
}

/// Requests the payouts and waits for them, at most `timeout` (or until `stop`).
pub async fn payouts(
    clients: &Clients,
    run: &Run,
    retry: RetryPolicy,
    creators: &[String],
    currency: &str,
    timeout: Duration,
    stop: &CancellationToken,
) -> Payouts {
    let started = Instant::now();
    let mut report = Payouts::default();
    let asked: Vec<Asked> = futures::stream::iter(creators.iter().enumerate())
        .map(|(i, creator)| ask(clients, run, retry, creator, i, currency))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut statuses: HashMap<String, i32> = HashMap::new();
    for outcome in asked {
        match outcome {
            Asked::Requested { payout_id, status } => {
                report.requested += 1;
                statuses.insert(payout_id, status);
            }
            Asked::NothingAvailable => report.skipped_without_balance += 1,
            Asked::Failed(code) => {
                *report
                    .request_failed_by_code
                    .entry(code.to_owned())
                    .or_default() += 1;
            }
        }
    }
    let deadline = started + timeout;
    loop {
        let unfinished: Vec<String> = statuses
            .iter()
            .filter(|(_, status)| !is_terminal(**status))
            .map(|(id, _)| id.clone())
            .collect();
        if unfinished.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => break,
        }
        let looked: Vec<(String, Option<i32>)> = futures::stream::iter(unfinished)
            .map(|payout_id| async move {
                let got = retry
                    .call(|| {
                        let mut client = clients.payment.clone();
                        let request = GetPayoutRequest {
                            payout_id: payout_id.clone(),
                        };
                        async move { client.get_payout(request).await }
                    })
                    .await;
                let status = got
                    .result
                    .ok()
                    .and_then(|r| r.into_inner().payout)
                    .map(|p| p.status);
                (payout_id, status)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (payout_id, status) in looked {
            if let Some(status) = status {
                statuses.insert(payout_id, status);
            }
        }
    }
    for status in statuses.values() {
        *report.by_status.entry(status_name(*status)).or_default() += 1;
        if !is_terminal(*status) {
            report.unfinished += 1;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_failed_and_rejected_are_the_terminal_statuses() {
        let terminal: Vec<String> = (0..=8)
            .filter(|s| is_terminal(*s))
            .map(status_name)
            .collect();
        assert_eq!(
            terminal,
            [
                "PAYOUT_STATUS_COMPLETED",
                "PAYOUT_STATUS_FAILED",
                "PAYOUT_STATUS_REJECTED"
            ]
        );
        assert_eq!(status_name(99), "PAYOUT_STATUS_99");
    }
}
