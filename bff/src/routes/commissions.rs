//! Commissions' lifecycle and a creator's statement: an advertiser lists a campaign's commissions
//! (its pending ones, say), approves pending ones before their hold ends, or declines them with a
//! reason; a creator reads a month's statement from the commission ledger, as JSON or as CSV for
//! a spreadsheet.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use affiliate_proto::commission as pb;

use super::Paging;
use super::campaigns::owned;
use super::creators::creator;
use crate::AppState;
use crate::auth::Role;
use crate::dto::{
    Commission, CommissionPage, CurrencyStatement, DecideCommissions, DecidedCommissions,
    MAX_DECIDED_COMMISSIONS, Statement,
};
use crate::edge::{Answer as _, ApiJson, ApiPath, ApiQuery, Caller, uuid_field};
use crate::problem::Problem;

const SERVICE: &str = "commission";
/// The longest decline reason (the service's limit too).
const MAX_REASON_CHARS: usize = 500;

/// The advertiser a decision is made for: the caller, or the one an admin names.
fn deciding_advertiser(caller: &Caller, named: Option<Uuid>) -> Result<Uuid, Problem> {
    caller.require(&[Role::Advertiser])?;
    match named {
        Some(id) => {
            caller.require_self(id)?;
            Ok(id)
        }
        None if caller.is_admin() => Err(Problem::invalid_field(
            "advertiserId",
            "admins must name the advertiser",
        )),
        None => Ok(caller.id()),
    }
}

/// The ids of a decision: 1 to 100 UUIDs, each named in its error.
fn commission_ids(ids: &[String]) -> Result<Vec<String>, Problem> {
    if ids.is_empty() || ids.len() > MAX_DECIDED_COMMISSIONS {
        return Err(Problem::invalid_field(
            "commissionIds",
            format!(
                "must list 1 to {MAX_DECIDED_COMMISSIONS} commission ids, not {}",
                ids.len()
            ),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| uuid_field(&format!("commissionIds[{i}]"), id).map(|id| id.to_string()))
        .collect()
}

fn decided(commissions: Vec<pb::Commission>) -> Json<DecidedCommissions> {
    Json(DecidedCommissions {
        commissions: commissions.into_iter().map(Commission::from).collect(),
    })
}

/// A stage of a commission's life, to list by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommissionLife {
    /// In its hold: to approve or decline.
    Pending,
    /// Payable: available, reserved by a payout, or paid.
    Approved,
    Declined,
    /// Taken back whole by refunds.
    Reversed,
}

impl CommissionLife {
    /// The commission service's name of it (`ListCommissionsRequest.status`).
    fn code(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Reversed => "reversed",
        }
    }
}

/// Filter of a campaign's commission list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CampaignCommissionFilter {
    /// Only the commissions at this stage of their life: `pending` (to approve or decline),
    /// `approved` (payable: available, reserved or paid), `declined` or `reversed`. All otherwise.
    #[param(inline)]
    pub status: Option<CommissionLife>,
}

/// The creators' commissions on one of your campaigns, newest first, optionally at one stage of
/// their life: `status=pending` lists those to approve or decline.
#[utoipa::path(get, path = "/api/v1/campaigns/{campaignId}/commissions", tag = "commissions",
    params(("campaignId" = Uuid, Path), Paging, CampaignCommissionFilter),
    responses((status = 200, description = "One page", body = CommissionPage)),
    security(("bearer" = [])))]
pub async fn of_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(campaign_id): ApiPath<String>,
    ApiQuery(paging): ApiQuery<Paging>,
    ApiQuery(filter): ApiQuery<CampaignCommissionFilter>,
) -> Result<Json<CommissionPage>, Problem> {
    caller.require(&[Role::Advertiser])?;
    let campaign_id = uuid_field("campaignId", &campaign_id)?;
    owned(&state, &caller, campaign_id).await?;
    let page = state
        .clients
        .commission
        .clone()
        .list_commissions(
            caller.grpc(pb::ListCommissionsRequest {
                page_size: paging.size(),
                page_token: paging.token(),
                creator_id: String::new(),
                campaign_id: campaign_id.to_string(),
                status: filter
                    .status
                    .map(CommissionLife::code)
                    .unwrap_or_default()
                    .to_owned(),
            }),
        )
        .await
        .or_problem(SERVICE)?;
    Ok(Json(CommissionPage {
        commissions: page.commissions.into_iter().map(Commission::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Approve pending commissions of your campaigns before their hold ends: up to 100, all or
/// nothing. One already approved is answered as it is.
#[utoipa::path(post, path = "/api/v1/commissions/approve", tag = "commissions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = DecideCommissions,
    responses((status = 200, description = "Approved", body = DecidedCommissions)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<DecideCommissions>,
) -> Result<Json<DecidedCommissions>, Problem> {
    let advertiser_id = deciding_advertiser(&caller, body.advertiser_id)?;
    let commission_ids = commission_ids(&body.commission_ids)?;
    if !body.reason.is_empty() {
        return Err(Problem::invalid_field(
            "reason",
            "only a decline takes a reason",
        ));
    }
    let approved = state
        .clients
        .commission
        .clone()
        .approve_commissions(caller.grpc(pb::ApproveCommissionsRequest {
            advertiser_id: advertiser_id.to_string(),
            commission_ids,
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(decided(approved.commissions))
}

/// Decline pending commissions of your campaigns, with a reason the creators see: up to 100, all
/// or nothing; their amounts go back to the campaigns' budgets. One already declined is answered
/// as it is.
#[utoipa::path(post, path = "/api/v1/commissions/decline", tag = "commissions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the first result")),
    request_body = DecideCommissions,
    responses((status = 200, description = "Declined", body = DecidedCommissions)),
    security(("bearer" = [])))]
pub async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<DecideCommissions>,
) -> Result<Json<DecidedCommissions>, Problem> {
    let advertiser_id = deciding_advertiser(&caller, body.advertiser_id)?;
    let commission_ids = commission_ids(&body.commission_ids)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(Problem::invalid_field(
            "reason",
            format!("required: 1 to {MAX_REASON_CHARS} characters, shown to the creators"),
        ));
    }
    let declined = state
        .clients
        .commission
        .clone()
        .decline_commissions(caller.grpc(pb::DeclineCommissionsRequest {
            advertiser_id: advertiser_id.to_string(),
            commission_ids,
            reason: reason.to_owned(),
        }))
        .await
        .or_problem(SERVICE)?;
    Ok(decided(declined.commissions))
}

/// The month (and currency) of a statement.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// The month, `YYYY-MM` (UTC).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$", example = "2025-11")]
    pub month: String,
    /// Only this currency (ISO-4217); every currency the creator has otherwise.
    #[param(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Option<String>,
}

/// A month `YYYY-MM` as the client sent it, checked: four digits, a dash, 01 to 12.
fn month(value: &str) -> Result<&str, Problem> {
    let bytes = value.as_bytes();
    let well_formed = bytes.len() == 7
        && bytes[4] == b'-'
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[5..].iter().all(u8::is_ascii_digit);
    let month_number = value.get(5..).and_then(|m| m.parse::<u8>().ok());
    if !well_formed || !matches!(month_number, Some(1..=12)) {
        return Err(Problem::invalid_field(
            "month",
            "must be a month as YYYY-MM, e.g. 2025-11",
        ));
    }
    Ok(value)
}

/// A creator's statement of one month: every commission, decline, reversal, clawback and payout,
/// with opening and closing balances, per currency. JSON by default; `Accept: text/csv` gives a
/// CSV with an opening and a closing line per currency (amounts in major units).
#[utoipa::path(get, path = "/api/v1/creators/{creatorId}/statements", tag = "creators",
    params(("creatorId" = Uuid, Path), StatementQuery),
    responses((status = 200, description = "The statement", content(
        (Statement = "application/json"),
        (String = "text/csv"),
    ))),
    security(("bearer" = [])))]
pub async fn statement(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(creator_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<StatementQuery>,
) -> Result<Response, Problem> {
    let creator_id = creator(&caller, &creator_id)?;
    let month = month(&query.month)?;
    let currency = query.currency.unwrap_or_default();
    if !currency.is_empty() && !service_runtime::money::is_iso_4217(&currency) {
        return Err(Problem::invalid_field(
            "currency",
            "must be an ISO-4217 currency code in upper case",
        ));
    }
    let found = state
        .clients
        .commission
        .clone()
        .get_statement(caller.grpc(pb::GetStatementRequest {
            creator_id: creator_id.to_string(),
            month: month.to_owned(),
            currency,
        }))
        .await
        .or_problem(SERVICE)?;
    let mut response = if wants_csv(&headers) {
        let body = csv::statement(&found.month, &found.currencies).ok_or_else(|| {
            tracing::error!(month = %found.month, "the commission service answered a statement of no month");
            Problem::internal()
        })?;
        let disposition = format!("attachment; filename=\"statement-{creator_id}-{month}.csv\"");
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CSV_CONTENT_TYPE),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_str(&disposition).map_err(|_| Problem::internal())?,
                ),
            ],
            body,
        )
            .into_response()
    } else {
        Json(Statement {
            creator_id: found.creator_id,
            month: found.month,
            currencies: found
                .currencies
                .into_iter()
                .map(CurrencyStatement::from)
                .collect(),
        })
        .into_response()
    };
    // Caches keep the JSON and the CSV apart.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8; header=present";

/// Whether the client prefers CSV: `Accept` lists `text/csv` with a quality above zero and above
/// that of `application/json`. JSON otherwise (the default, and on a tie).
fn wants_csv(headers: &HeaderMap) -> bool {
    let (mut csv, mut json) = (0.0_f32, 0.0_f32);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
            match media.as_str() {
                "text/csv" => csv = csv.max(quality),
                "application/json" => json = json.max(quality),
                _ => {}
            }
        }
    }
    csv > 0.0 && csv > json
}

/// A statement as CSV (RFC 4180: CRLF line ends, fields quoted where they must be), safe to open
/// in a spreadsheet: text a client could have written never starts a formula.
mod csv {
    use affiliate_proto::commission as pb;

    use crate::dto::rfc3339;

    pub const HEADER: [&str; 9] = [
        "currency",
        "at",
        "kind",
        "amount",
        "balance_after",
        "commission_id",
        "campaign_id",
        "payout_id",
        "reference",
    ];

    /// A field written as it is, quoted when RFC 4180 requires it (a comma, a quote, a CR or LF):
    /// for what the BFF itself formats (amounts, timestamps).
    pub fn quoted(value: &str) -> String {
        if value.contains([',', '"', '\r', '\n']) {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else {
            value.to_owned()
        }
    }

    /// A text field, neutralised against formula injection, then quoted: one that a spreadsheet
    /// would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a CR) is prefixed with
    /// `'`, which makes it text (OWASP's advice).
    pub fn text(value: &str) -> String {
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            quoted(&format!("'{value}"))
        } else {
            quoted(value)
        }
    }

    /// `amount_minor` in major units with the currency's decimals (`-1234` EUR → `-12.34`,
    /// `500` JPY → `500`), as `service_runtime::money::display` writes it, without the code.
    pub fn decimal(amount_minor: i64, currency: &str) -> String {
        let shown = service_runtime::money::display(amount_minor, currency);
        match shown.strip_suffix(currency) {
            Some(number) => number.trim_end().to_owned(),
            None => shown,
        }
    }

    fn row(out: &mut String, fields: [&str; 9]) {
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }

    /// The instants a month `YYYY-MM` begins and ends (the next one begins), RFC 3339 UTC.
    pub fn month_bounds(month: &str) -> Option<(String, String)> {
        let (year, number) = month.split_once('-')?;
        let start = chrono::NaiveDate::from_ymd_opt(year.parse().ok()?, number.parse().ok()?, 1)?;
        let end = start.checked_add_months(chrono::Months::new(1))?;
        let at = |d: chrono::NaiveDate| format!("{}T00:00:00Z", d.format("%Y-%m-%d"));
        Some((at(start), at(end)))
    }

    fn section(out: &mut String, c: &pb::CurrencyStatement, start: &str, end: &str) {
        let currency = text(&c.currency);
        let money = |minor: i64| decimal(minor, &c.currency);
        let opening = money(c.opening_minor);
        row(
            out,
            [&currency, start, "opening", "", &opening, "", "", "", ""],
        );
        for line in &c.lines {
            let at = rfc3339(line.at).unwrap_or_default();
            row(
                out,
                [
                    &currency,
                    &quoted(&at),
                    &text(&line.kind),
                    &money(line.amount_minor),
                    &money(line.balance_minor),
                    &text(&line.commission_id),
                    &text(&line.campaign_id),
                    &text(&line.payout_id),
                    &text(&line.reference),
                ],
            );
        }
        let closing = money(c.closing_minor);
        row(
            out,
            [&currency, end, "closing", "", &closing, "", "", "", ""],
        );
    }

    /// The statement's CSV: a header row, then per currency an opening line, its lines and a
    /// closing line. `month` is the statement's, `YYYY-MM`.
    pub fn statement(month: &str, currencies: &[pb::CurrencyStatement]) -> Option<String> {
        let (start, end) = month_bounds(month)?;
        let mut out = String::new();
        row(&mut out, HEADER);
        for currency in currencies {
            section(&mut out, currency, &start, &end);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_as_rfc_4180_requires() {
        assert_eq!(csv::quoted("plain"), "plain");
        assert_eq!(csv::quoted(""), "");
        assert_eq!(csv::quoted("a,b"), "\"a,b\"");
        assert_eq!(csv::quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv::quoted("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv::quoted("cr\rlf"), "\"cr\rlf\"");
        assert_eq!(csv::quoted("\""), "\"\"\"\"");
    }

    #[test]
    fn text_that_would_start_a_formula_is_neutralised() {
        assert_eq!(csv::text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv::text("+1"), "'+1");
        assert_eq!(csv::text("-2+3"), "'-2+3");
        assert_eq!(csv::text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv::text("\tcmd"), "'\tcmd");
        assert_eq!(csv::text("\r=1"), "\"'\r=1\"");
        assert_eq!(csv::text("=1,2"), "\"'=1,2\"");
        // Only a leading character makes a formula.
        assert_eq!(csv::text("a=b"), "a=b");
        assert_eq!(csv::text("refund-42"), "refund-42");
    }

    #[test]
    fn amounts_are_written_in_major_units_with_the_currency_s_decimals() {
        assert_eq!(csv::decimal(1234, "EUR"), "12.34");
        assert_eq!(csv::decimal(-5, "USD"), "-0.05");
        assert_eq!(csv::decimal(0, "EUR"), "0.00");
        assert_eq!(csv::decimal(500, "JPY"), "500");
        assert_eq!(csv::decimal(-1500, "KWD"), "-1.500");
    }

    fn line(
        kind: &str,
        amount_minor: i64,
        balance_minor: i64,
        reference: &str,
    ) -> pb::StatementLine {
        pb::StatementLine {
            at: Some(pbjson_types::Timestamp {
                seconds: 1_764_756_000, // 2025-12-03T10:00:00Z
                nanos: 0,
            }),
            kind: kind.into(),
            amount_minor,
            balance_minor,
            commission_id: "c1".into(),
            campaign_id: "k1".into(),
            payout_id: String::new(),
            reference: reference.into(),
        }
    }

    #[test]
    fn a_statement_has_a_header_then_opening_lines_and_closing_per_currency() {
        let currencies = [
            pb::CurrencyStatement {
                currency: "EUR".into(),
                opening_minor: 1000,
                closing_minor: -250,
                lines: vec![
                    line("commission", 250, 1250, ""),
                    line(
                        "decline",
                        -1500,
                        -250,
                        "=cmd|' /C calc'!A0, \"fake\"\nsecond",
                    ),
                ],
                available_minor: -250,
                ..Default::default()
            },
            pb::CurrencyStatement {
                currency: "JPY".into(),
                opening_minor: 0,
                closing_minor: 0,
                ..Default::default()
            },
        ];
        let text = csv::statement("2025-12", &currencies).unwrap();
        let rows: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            rows,
            [
                "currency,at,kind,amount,balance_after,commission_id,campaign_id,payout_id,reference",
                "EUR,2025-12-01T00:00:00Z,opening,,10.00,,,,",
                "EUR,2025-12-03T10:00:00Z,commission,2.50,12.50,c1,k1,,",
                "EUR,2025-12-03T10:00:00Z,decline,-15.00,-2.50,c1,k1,,\"'=cmd|' /C calc'!A0, \"\"fake\"\"\nsecond\"",
                "EUR,2026-01-01T00:00:00Z,closing,,-2.50,,,,",
                "JPY,2025-12-01T00:00:00Z,opening,,0,,,,",
                "JPY,2026-01-01T00:00:00Z,closing,,0,,,,",
                "",
            ]
        );
        assert_eq!(csv::statement("2025-13", &currencies), None);
    }

    #[test]
    fn csv_is_chosen_only_when_preferred() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_csv(&headers)
        };
        assert!(!wants_csv(&HeaderMap::new()));
        assert!(accept("text/csv"));
        assert!(accept("TEXT/CSV; charset=utf-8"));
        assert!(accept("text/csv, */*;q=0.1"));
        assert!(accept("application/json;q=0.5, text/csv"));
        assert!(!accept("application/json"));
        assert!(!accept("*/*"));
        assert!(!accept("text/csv;q=0"));
        assert!(!accept("text/csv, application/json"));
        assert!(!accept("text/csv;q=0.4, application/json;q=0.9"));
    }

    #[test]
    fn months_are_yyyy_mm() {
        for good in ["2025-11", "1999-01", "2030-12"] {
            assert_eq!(month(good).ok(), Some(good), "{good}");
        }
        for bad in [
            "",
            "2025-13",
            "2025-00",
            "2025-1",
            "25-11",
            "2025/11",
            "2025-11-01",
            "２０２５-11",
            "+025-11",
            "2025-+1",
        ] {
            let problem = month(bad).unwrap_err();
            assert_eq!(problem.status, 400, "{bad}");
            assert_eq!(problem.errors[0].field, "month", "{bad}");
        }
    }

    #[test]
    fn more_than_a_hundred_ids_are_refused_naming_the_field() {
        let ids: Vec<String> = (0..101).map(|_| Uuid::new_v4().to_string()).collect();
        let problem = commission_ids(&ids).unwrap_err();
        assert_eq!(
            (problem.status, problem.errors[0].field.as_str()),
            (400, "commissionIds")
        );
        assert!(commission_ids(&ids[..100]).is_ok());
        assert!(commission_ids(&[]).is_err());
        let problem = commission_ids(&[Uuid::new_v4().to_string(), "x".into()]).unwrap_err();
        assert_eq!(problem.errors[0].field, "commissionIds[1]");
    }

    #[test]
    fn a_campaign_s_commissions_are_filtered_by_a_stage_of_their_life() {
        let status = |query: &str| {
            let uri: axum::http::Uri = format!("/api/v1?{query}").parse().unwrap();
            axum::extract::Query::<CampaignCommissionFilter>::try_from_uri(&uri).map(|q| q.0.status)
        };
        assert_eq!(
            status("status=pending&pageSize=5").unwrap(),
            Some(CommissionLife::Pending)
        );
        assert_eq!(status("pageToken=x").unwrap(), None);
        assert!(status("status=available").is_err());
        assert!(status("status=PENDING").is_err());
        for (life, code) in [
            (CommissionLife::Pending, "pending"),
            (CommissionLife::Approved, "approved"),
            (CommissionLife::Declined, "declined"),
            (CommissionLife::Reversed, "reversed"),
        ] {
            assert_eq!(life.code(), code);
        }

        let doc = serde_json::to_value(crate::openapi::api().1).unwrap();
        let get = &doc["paths"]["/api/v1/campaigns/{campaignId}/commissions"]["get"];
        let params = get["parameters"].as_array().unwrap();
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["campaignId", "pageSize", "pageToken", "status"]);
        assert_eq!(
            params[3]["schema"]["enum"],
            serde_json::json!(["pending", "approved", "declined", "reversed"])
        );
        assert_eq!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CommissionPage"
        );
    }

    #[test]
    fn the_routes_are_documented() {
        let doc = serde_json::to_value(crate::openapi::api().1).unwrap();
        let paths = &doc["paths"];
        assert!(paths["/api/v1/commissions/approve"]["post"].is_object());
        assert!(paths["/api/v1/commissions/decline"]["post"].is_object());
        let get = &paths["/api/v1/creators/{creatorId}/statements"]["get"];
        let content = &get["responses"]["200"]["content"];
        assert!(content["application/json"].is_object(), "{content}");
        assert!(content["text/csv"].is_object(), "{content}");
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["Balance"]["properties"]["pendingMinor"].is_object());
        assert!(schemas["Commission"]["properties"]["clawedBackMinor"].is_object());
        let statuses = &schemas["CommissionStatus"]["enum"];
        assert!(
            statuses
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("COMMISSION_STATUS_DECLINED")),
            "{statuses}"
        );
    }
}
