//! The edge's copy of the links, in memory: every link by code, and every campaign's status and
//! link settings, read from tracking's database (the edge is tracking's public door and shares its
//! database). It is loaded whole at start; afterwards the database tells it what changed
//! (`NOTIFY tracking_links` with a code, `tracking_campaigns` with a campaign id, sent by
//! triggers when a link is created or disabled and when the copy of a campaign changes through
//! its events), and it reads just that again. When the listening connection was lost (and
//! notifications with it), it loads everything again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use affiliate_proto::tracking::SubIds;
use tracking_service::adapters::links::secs;
use tracking_service::domain::{CampaignStatus, LinkSettings};

/// A link as the edge needs it.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub sub_ids: SubIds,
    pub deep_link: Option<String>,
    pub disabled: bool,
}

/// A campaign as the edge needs it.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub status: CampaignStatus,
    /// `None` without a landing URL.
    pub settings: Option<LinkSettings>,
}

#[derive(Debug, Default)]
struct Maps {
    links: HashMap<String, Arc<Link>>,
    campaigns: HashMap<Uuid, Arc<Campaign>>,
}

/// The copy; cloning shares it.
#[derive(Debug, Clone)]
pub struct Links {
    pool: PgPool,
    maps: Arc<RwLock<Maps>>,
    /// Codes looked up in the database and not found, until when: a flood of made-up codes costs
    /// one query per code and [`MISS_MEMORY`], not one per request. (A link created meanwhile
    /// is in `maps` from its notification, which is looked at first.)
    misses: Arc<std::sync::Mutex<HashMap<String, std::time::Instant>>>,
}

/// How long a code found nowhere is answered 404 from memory.
const MISS_MEMORY: Duration = Duration::from_secs(10);
/// The most codes remembered as missing (then the memory starts afresh).
const MAX_MISSES: usize = 100_000;

macro_rules! link_columns {
    () => {
        "select code, id, campaign_id, creator_id, coalesce(sub1, ''), coalesce(sub2, ''), \
         coalesce(sub3, ''), coalesce(sub4, ''), coalesce(sub5, ''), deep_link, \
         disabled_at is not null from links"
    };
}
macro_rules! campaign_columns {
    () => {
        "select campaign_id, status, landing_url, landing_domains, click_id_param, \
         attribution_window_secs, min_conversion_secs, fallback_url from campaigns"
    };
}

type LinkRow = (
    String,
    Uuid,
    Uuid,
    Uuid,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
);
type CampaignRow = (
    Uuid,
    String,
    Option<String>,
    Vec<String>,
    String,
    i64,
    i64,
    Option<String>,
);

fn link(
    (code, id, campaign_id, creator_id, s1, s2, s3, s4, s5, deep_link, disabled): LinkRow,
) -> (String, Link) {
    let sub_ids = SubIds {
        sub1: s1,
        sub2: s2,
        sub3: s3,
        sub4: s4,
        sub5: s5,
    };
    (
        code,
        Link {
            id,
            campaign_id,
            creator_id,
            sub_ids,
            deep_link,
            disabled,
        },
    )
}

fn campaign(
    (id, status, landing_url, domains, param, window, min, fallback): CampaignRow,
) -> (Uuid, Campaign) {
    let settings = landing_url.map(|landing_url| LinkSettings {
        landing_url,
        landing_domains: domains,
        click_id_param: param,
        attribution_window: secs(window),
        min_click_to_conversion: secs(min),
        fallback_url: fallback,
    });
    (
        id,
        Campaign {
            status: CampaignStatus::parse(&status).unwrap_or(CampaignStatus::Closed),
            settings,
        },
    )
}

impl Links {
    /// Loads every link and campaign (fails if tracking's tables are not there yet).
    pub async fn load(pool: PgPool) -> anyhow::Result<Self> {
        let links = Self {
            pool,
            maps: Arc::default(),
            misses: Arc::default(),
        };
        links.reload_all().await?;
        Ok(links)
    }

    /// The link with `code` and its campaign, from memory.
    pub fn get(&self, code: &str) -> Option<(Arc<Link>, Option<Arc<Campaign>>)> {
        let maps = self
            .maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let link = maps.links.get(code)?.clone();
        let campaign = maps.campaigns.get(&link.campaign_id).cloned();
        Some((link, campaign))
    }

    /// How many links the copy holds.
    pub fn len(&self) -> usize {
        self.maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .links
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn reload_all(&self) -> anyhow::Result<()> {
        let links: Vec<LinkRow> = sqlx::query_as(link_columns!())
            .fetch_all(&self.pool)
            .await?;
        let campaigns: Vec<CampaignRow> = sqlx::query_as(campaign_columns!())
            .fetch_all(&self.pool)
            .await?;
        let fresh = Maps {
            links: links
                .into_iter()
                .map(link)
                .map(|(c, l)| (c, Arc::new(l)))
                .collect(),
            campaigns: campaigns
                .into_iter()
                .map(campaign)
                .map(|(id, c)| (id, Arc::new(c)))
                .collect(),
        };
        tracing::info!(
            links = fresh.links.len(),
            campaigns = fresh.campaigns.len(),
            "links loaded"
        );
        *self
            .maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Reads one link (and its campaign) from the database into the copy; returns it, `None` if
    /// there is no such link. Used for a change notification, and for a code the copy does not
    /// know (a link created a moment ago whose notification is still on its way).
    /// A code the copy does not know, looked up in the database unless it was missing there a
    /// moment ago.
    pub async fn lookup_missing(
        &self,
        code: &str,
    ) -> anyhow::Result<Option<(Arc<Link>, Option<Arc<Campaign>>)>> {
        let now = std::time::Instant::now();
        {
            let misses = self
                .misses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if misses.get(code).is_some_and(|until| *until > now) {
                return Ok(None);
            }
        }
        let found = self.reload_code(code).await?;
        if found.is_none() {
            let mut misses = self
                .misses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if misses.len() >= MAX_MISSES {
                misses.retain(|_, until| *until > now);
                if misses.len() >= MAX_MISSES {
                    misses.clear();
                }
            }
            misses.insert(code.to_owned(), now + MISS_MEMORY);
        }
        Ok(found)
    }

    pub async fn reload_code(
        &self,
        code: &str,
    ) -> anyhow::Result<Option<(Arc<Link>, Option<Arc<Campaign>>)>> {
        let row: Option<LinkRow> = sqlx::query_as(concat!(link_columns!(), " where code = $1"))
            .bind(code)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (code, link) = link(row);
        let campaign_id = link.campaign_id;
        let link = Arc::new(link);
        self.maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .links
            .insert(code, link.clone());
        let known = self
            .maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .campaigns
            .get(&campaign_id)
            .cloned();
        let campaign = match known {
            Some(c) => Some(c),
            None => self.reload_campaign(campaign_id).await?,
        };
        Ok(Some((link, campaign)))
    }

    async fn reload_campaign(&self, id: Uuid) -> anyhow::Result<Option<Arc<Campaign>>> {
        let row: Option<CampaignRow> =
            sqlx::query_as(concat!(campaign_columns!(), " where campaign_id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let (id, campaign) = campaign(row);
        let campaign = Arc::new(campaign);
        self.maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .campaigns
            .insert(id, campaign.clone());
        Ok(Some(campaign))
    }

    /// Follows the database's change notifications until `shutdown`. A lost connection (and the
    /// notifications lost with it) costs a full reload once it is back.
    pub async fn follow(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener
            .listen_all(["tracking_links", "tracking_campaigns"])
            .await?;
        // What changed between the load and the LISTEN is read by the first reload.
        let mut stale = true;
        loop {
            if stale {
                match self.reload_all().await {
                    Ok(()) => stale = false,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "loading every link failed: retrying in 1s"
                        );
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(()),
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = listener.try_recv() => next,
            };
            let applied = match next {
                Ok(Some(n)) => match n.channel() {
                    "tracking_links" => self.reload_code(n.payload()).await.map(drop),
                    _ => match Uuid::parse_str(n.payload()) {
                        Ok(id) => self.reload_campaign(id).await.map(drop),
                        Err(_) => Ok(()),
                    },
                },
                // The connection was lost and is back: notifications may have been missed.
                Ok(None) => Err(anyhow::anyhow!(
                    "the change notifications' connection was lost"
                )),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = applied {
                // Whatever was missed is read again, once the database answers.
                tracing::warn!(
                    error = format!("{e:#}"),
                    "following link changes: loading every link again in 1s"
                );
                stale = true;
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
