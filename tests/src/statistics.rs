//! The read side's figures as a test compares them: analytics' totals for a campaign or a creator
//! ([`seen`]), and the same figures counted independently from what the tracking and commission
//! services recorded in their own databases ([`counted`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::platform::Platform;
use affiliate_proto::analytics as pb;
use affiliate_proto::analytics::analytics_service_client::AnalyticsServiceClient;

/// Totals as the comparison sees them: counters, and money per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub views: i64,
    pub clicks: i64,
    pub purchases: i64,
    pub commissions: i64,
    /// currency → (revenue, earned, reserved, released, paid)
    pub money: BTreeMap<String, (i64, i64, i64, i64, i64)>,
}

pub fn seen(totals: Option<&pb::Totals>) -> Seen {
    let Some(t) = totals else {
        return Seen::default();
    };
    let c = t.counts.unwrap_or_default();
    Seen {
        views: c.views,
        clicks: c.clicks,
        purchases: c.purchases,
        commissions: c.commissions,
        money: t
            .amounts
            .iter()
            .map(|a| {
                (
                    a.currency.clone(),
                    (
                        a.revenue_minor,
                        a.earned_minor,
                        a.reserved_minor,
                        a.released_minor,
                        a.paid_minor,
                    ),
                )
            })
            .collect(),
    }
}

/// What the tracking and commission databases hold for one campaign or creator.
pub async fn counted(platform: &Platform, column: &str, id: Uuid, creator: bool) -> Seen {
    let tracking = &platform.databases["tracking"].pool;
    let commission = &platform.databases["commission"].pool;
    let mut s = Seen::default();
    let kinds: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select kind, count(*) from tracking_events where {column} = $1 group by kind"
    )))
    .bind(id)
    .fetch_all(tracking)
    .await
    .unwrap();
    for (kind, n) in kinds {
        match kind.as_str() {
            "view" => s.views = n,
            "click" => s.clicks = n,
            _ => s.purchases = n,
        }
    }
    let revenue: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select currency, sum(amount_minor)::bigint from tracking_events where {column} = $1 and kind = 'purchase' group by currency"
    )))
    .bind(id)
    .fetch_all(tracking)
    .await
    .unwrap();
    for (currency, minor) in revenue {
        s.money.entry(currency).or_default().0 = minor;
    }
    let earned: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select currency, count(*), sum(amount_minor)::bigint from commissions where {column} = $1 group by currency"
    )))
    .bind(id)
    .fetch_all(commission)
    .await
    .unwrap();
    for (currency, n, minor) in earned {
        s.commissions += n;
        s.money.entry(currency).or_default().1 = minor;
    }
    if creator {
        // Every reservation was reserved once; the released and the settled ones moved on.
        let reservations: Vec<(String, String, i64)> = sqlx::query_as(
            "select currency, status, sum(amount_minor)::bigint from reservations where creator_id = $1 group by currency, status",
        )
        .bind(id)
        .fetch_all(commission)
        .await
        .unwrap();
        for (currency, status, minor) in reservations {
            let m = s.money.entry(currency).or_default();
            m.2 += minor;
            match status.as_str() {
                "released" => m.3 += minor,
                "settled" => m.4 += minor,
                _ => {}
            }
        }
    }
    s
}

/// Waits up to `within` until the analytics service's totals for each of `campaigns` and
/// `creators` equal what the tracking and commission databases hold ([`counted`]); panics with
/// the first difference otherwise. Returns how many subjects were compared.
pub async fn assert_analytics_agree(
    platform: &Platform,
    campaigns: &[Uuid],
    creators: &[Uuid],
    within: Duration,
) -> usize {
    let channel = tonic::transport::Channel::from_shared(platform.url(crate::platform::ANALYTICS))
        .expect("analytics address")
        .connect_lazy();
    let mut client = AnalyticsServiceClient::new(channel);
    let deadline = Instant::now() + within;
    loop {
        let mut difference = None;
        for (subject, id, creator) in campaigns
            .iter()
            .map(|id| ("campaign", id, false))
            .chain(creators.iter().map(|id| ("creator", id, true)))
        {
            let totals = if creator {
                client
                    .get_creator_stats(pb::GetCreatorStatsRequest {
                        creator_id: id.to_string(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().totals)
            } else {
                client
                    .get_campaign_stats(pb::GetCampaignStatsRequest {
                        campaign_id: id.to_string(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().totals)
            };
            let column = if creator { "creator_id" } else { "campaign_id" };
            let expected = counted(platform, column, *id, creator).await;
            let actual = totals.map(|t| seen(t.as_ref()));
            if actual.as_ref().ok() != Some(&expected) {
                difference = Some(format!(
                    "{subject} {id}: analytics says {actual:?}, the services' databases {expected:?}"
                ));
                break;
            }
        }
        let Some(difference) = difference else {
            return campaigns.len() + creators.len();
        };
        assert!(
            Instant::now() < deadline,
            "the analytics statistics equal the services' own numbers within {within:?}: {difference} (logs in {})",
            platform.logs.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
