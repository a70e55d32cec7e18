//! Reading the ledger: a creator's monthly statement (every movement of money between the creator
//! and the outside, with opening and closing balances that reconcile to the ledger), and the check
//! that the books balance.

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use sqlx::PgConnection;

use affiliate_proto::commission as pb;
use service_runtime::validation::{FieldViolation, Violations, parse_id};

use super::{Commissions, Error, messages};
use crate::adapters::ledger;

/// The first instant of the month `YYYY-MM` (UTC) and of the next.
pub fn month_bounds(month: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (year, number) = month.split_once('-')?;
    if year.len() != 4 || number.len() != 2 {
        return None;
    }
    let (year, number): (i32, u32) = (year.parse().ok()?, number.parse().ok()?);
    let first = NaiveDate::from_ymd_opt(year, number, 1)?;
    let next = if number == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, number + 1, 1)?
    };
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
    Some((at(first), at(next)))
}

/// The statement line's kind of a transfer's.
fn line_kind(transfer_kind: &str) -> &str {
    match transfer_kind {
        "settle" => "payout",
        other => other,
    }
}

async fn currency_statement(
    conn: &mut PgConnection,
    creator: uuid::Uuid,
    currency: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<pb::CurrencyStatement, Error> {
    let (p, a, r, _) = ledger::balances_at(conn, creator, currency, from).await?;
    let opening = p + a + r;
    let rows = ledger::statement_lines(conn, creator, currency, from, until).await?;
    let mut balance = opening;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        balance += row.amount_minor;
        lines.push(pb::StatementLine {
            at: Some(messages::timestamp(row.at)),
            kind: line_kind(&row.kind).to_owned(),
            amount_minor: row.amount_minor,
            balance_minor: balance,
            commission_id: row
                .commission_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            campaign_id: row.campaign_id.map(|id| id.to_string()).unwrap_or_default(),
            payout_id: row.payout_id.map(|id| id.to_string()).unwrap_or_default(),
            reference: row.reference.unwrap_or_default(),
        });
    }
    let (pending, available, reserved, paid) =
        ledger::balances_at(conn, creator, currency, until).await?;
    if pending + available + reserved != balance {
        return Err(Error::Internal(anyhow::anyhow!(
            "the statement of creator {creator} in {currency} closes at {balance} but the ledger says {}",
            pending + available + reserved
        )));
    }
    Ok(pb::CurrencyStatement {
        currency: currency.to_owned(),
        opening_minor: opening,
        closing_minor: balance,
        lines,
        pending_minor: pending,
        available_minor: available,
        reserved_minor: reserved,
        paid_minor: paid,
    })
}

impl Commissions {
    pub async fn get_statement(
        &self,
        request: pb::GetStatementRequest,
    ) -> Result<pb::GetStatementResponse, Error> {
        let mut v = Violations::new();
        let creator = v.check(parse_id("creator_id", &request.creator_id));
        let bounds = month_bounds(&request.month);
        if bounds.is_none() {
            v.push(FieldViolation::new("month", "must be a month as YYYY-MM"));
        }
        if !request.currency.is_empty() && !service_runtime::money::is_iso_4217(&request.currency) {
            v.push(FieldViolation::new(
                "currency",
                "must be an ISO-4217 currency code in upper case",
            ));
        }
        let (creator, (from, until)) = v.finish(creator.zip(bounds))?;
        // One snapshot for the whole statement.
        let mut tx = self.pool().begin().await?;
        sqlx::query("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await?;
        let currencies = if request.currency.is_empty() {
            ledger::creator_currencies(&mut tx, creator).await?
        } else {
            vec![request.currency.clone()]
        };
        let mut statements = Vec::with_capacity(currencies.len());
        for currency in &currencies {
            statements.push(currency_statement(&mut tx, creator, currency, from, until).await?);
        }
        tx.commit().await?;
        Ok(pb::GetStatementResponse {
            creator_id: creator.to_string(),
            month: request.month,
            currencies: statements,
        })
    }

    pub async fn check_ledger(&self) -> Result<pb::CheckLedgerResponse, Error> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await?;
        let books = ledger::check(&mut tx).await?;
        tx.commit().await?;
        Ok(pb::CheckLedgerResponse {
            problems: books.problems,
            transfers: books.transfers,
            accounts: books.accounts,
            currencies: books.currencies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_its_first_instant_to_the_next_months() {
        let (from, until) = month_bounds("2026-12").unwrap();
        assert_eq!(from.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(until.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        for bad in [
            "2026-13", "2026-1", "26-12", "2026/12", "", "2026-00", "abcd-ef",
        ] {
            assert_eq!(month_bounds(bad), None, "{bad}");
        }
    }
}
