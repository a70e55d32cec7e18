//! Clicks, written durably before the edge answers: concurrent clicks are queued and written
//! together by a group commit (`service_runtime::group_commit`: no timer, a writer takes what is
//! waiting when it is free), one multi-row statement for the clicks and one for their
//! `click.recorded.v1` outbox rows per set. A visitor's verdict is decided in that statement:
//! a bot stays a bot; a click by the same visitor (IP hash) on the same link within the
//! duplicate window, stored earlier or earlier in the same set, is a duplicate; any other is
//! unique. (Two sets written at the same instant by two writers may both call one visitor's
//! clicks unique: the window rule is a counting rule, not an invariant.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use affiliate_proto::tracking::{self as pb, ClickRecorded, tracking_event_envelope::Event};
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;
use service_runtime::group_commit::SetWriter;
use service_runtime::outbox::{self, Subject};
use tracking_service::app::messages::{CLICK, VERSION};

/// A click the edge is about to answer.
#[derive(Debug, Clone)]
pub struct NewClick {
    pub id: Uuid,
    pub link_id: Uuid,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub sub_ids: pb::SubIds,
    pub clicked_at: DateTime<Utc>,
    pub ip_hash: String,
    pub user_agent: String,
    pub referrer: String,
    /// Why it is a bot's; `None` for a person's (unique or duplicate, decided when stored).
    pub bot_reason: Option<&'static str>,
    pub traceparent: Option<String>,
}

/// The group commit's writer of clicks.
#[derive(Debug, Clone)]
pub struct ClickWriter {
    pub duplicate_window: Duration,
}

fn verdict(text: &str) -> pb::ClickVerdict {
    match text {
        "unique" => pb::ClickVerdict::Unique,
        "duplicate" => pb::ClickVerdict::Duplicate,
        "bot" => pb::ClickVerdict::Bot,
        _ => pb::ClickVerdict::Unspecified,
    }
}

/// Inserts the clicks in one statement (verdicts decided there); returns each click's verdict.
async fn insert_clicks(
    conn: &mut PgConnection,
    clicks: &[NewClick],
    window: Duration,
) -> sqlx::Result<Vec<(Uuid, String)>> {
    let ids: Vec<Uuid> = clicks.iter().map(|c| c.id).collect();
    let links: Vec<Uuid> = clicks.iter().map(|c| c.link_id).collect();
    let campaigns: Vec<Uuid> = clicks.iter().map(|c| c.campaign_id).collect();
    let creators: Vec<Uuid> = clicks.iter().map(|c| c.creator_id).collect();
    let at: Vec<DateTime<Utc>> = clicks.iter().map(|c| c.clicked_at).collect();
    let hashes: Vec<&str> = clicks.iter().map(|c| c.ip_hash.as_str()).collect();
    let agents: Vec<&str> = clicks.iter().map(|c| c.user_agent.as_str()).collect();
    let referrers: Vec<&str> = clicks.iter().map(|c| c.referrer.as_str()).collect();
    let bots: Vec<Option<&str>> = clicks.iter().map(|c| c.bot_reason).collect();
    let window_secs = window.as_secs_f64();
    sqlx::query_as(
        r#"
        with input as (
            select *
            from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::timestamptz[],
                        $6::text[], $7::text[], $8::text[], $9::text[]) with ordinality
                 as i(id, link_id, campaign_id, creator_id, clicked_at, ip_hash, user_agent,
                      referrer, bot_reason, ord)
        )
        insert into clicks (id, link_id, campaign_id, creator_id, clicked_at, ip_hash,
                            user_agent, referrer, verdict, bot_reason)
        select i.id, i.link_id, i.campaign_id, i.creator_id, i.clicked_at, i.ip_hash,
               i.user_agent, i.referrer,
               case
                   when i.bot_reason is not null then 'bot'
                   when exists (select 1 from clicks c
                                where c.link_id = i.link_id and c.ip_hash = i.ip_hash
                                  and c.clicked_at > i.clicked_at - make_interval(secs => $10)
                                  and c.verdict <> 'bot')
                     or exists (select 1 from input j
                                where j.link_id = i.link_id and j.ip_hash = i.ip_hash
                                  and j.ord < i.ord and j.bot_reason is null)
                   then 'duplicate'
                   else 'unique'
               end,
               i.bot_reason
        from input i
        order by i.ord
        returning id, verdict
        "#,
    )
    .bind(&ids)
    .bind(&links)
    .bind(&campaigns)
    .bind(&creators)
    .bind(&at)
    .bind(&hashes)
    .bind(&agents)
    .bind(&referrers)
    .bind(&bots)
    .bind(window_secs)
    .fetch_all(conn)
    .await
}

/// The click as its event carries it.
pub fn click_message(click: &NewClick, verdict: pb::ClickVerdict) -> pb::Click {
    pb::Click {
        id: click.id.simple().to_string(),
        link_id: click.link_id.to_string(),
        campaign_id: click.campaign_id.to_string(),
        creator_id: click.creator_id.to_string(),
        sub_ids: Some(click.sub_ids.clone()),
        clicked_at: Some(service_runtime::time::timestamp(click.clicked_at)),
        ip_hash: click.ip_hash.clone(),
        user_agent: click.user_agent.clone(),
        referrer: click.referrer.clone(),
        verdict: verdict.into(),
        bot_reason: click.bot_reason.unwrap_or_default().to_owned(),
    }
}

impl SetWriter for ClickWriter {
    type Item = NewClick;
    type Output = pb::ClickVerdict;
    const OPERATION: &'static str = "redirect.record_clicks";

    fn key(_: &NewClick) -> Option<&str> {
        None
    }

    async fn write_set(
        &self,
        conn: &mut PgConnection,
        items: &[NewClick],
    ) -> Result<Vec<Result<pb::ClickVerdict, Error>>, Error> {
        let stored: std::collections::HashMap<Uuid, String> =
            insert_clicks(conn, items, self.duplicate_window)
                .await?
                .into_iter()
                .collect();
        let mut messages = Vec::with_capacity(items.len());
        let mut verdicts = Vec::with_capacity(items.len());
        for click in items {
            let Some(text) = stored.get(&click.id) else {
                verdicts.push(Err(Error::Internal(anyhow::anyhow!(
                    "click {} was not stored",
                    click.id
                ))));
                continue;
            };
            let v = verdict(text);
            // The click starts its workflow: its id is the correlation id a conversion continues.
            let ctx = CommandContext {
                correlation_id: click.id.simple().to_string(),
                traceparent: click.traceparent.clone(),
                issued_at: Some(click.clicked_at),
                ..CommandContext::new()
            };
            messages.push(outbox::event::<pb::TrackingEventEnvelope>(
                &ctx,
                Subject::new(CLICK, click.id, VERSION),
                click.clicked_at,
                Event::ClickRecorded(ClickRecorded {
                    click: Some(click_message(click, v)),
                }),
            ));
            verdicts.push(Ok(v));
        }
        outbox::append_set(conn, &messages)
            .await
            .map_err(Error::Internal)?;
        Ok(verdicts)
    }
}
