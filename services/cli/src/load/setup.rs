//! Before the load: one gRPC channel per service, the load's own campaign, and its creators'
//! acceptances, each call with an idempotency key so a retry takes effect once.

use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use uuid::Uuid;

use affiliate_proto::campaign::campaign_service_client::CampaignServiceClient;
use affiliate_proto::campaign::{AcceptCampaignRequest, CreateCampaignRequest};
use affiliate_proto::commission::commission_service_client::CommissionServiceClient;
use affiliate_proto::common::Money;
use affiliate_proto::payment::payment_service_client::PaymentServiceClient;
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use service_runtime::context::{CORRELATION_ID, IDEMPOTENCY_KEY};
use service_runtime::errors::code_name;

use super::args::{LoadArgs, ServiceUrls};
use super::retry::RetryPolicy;

/// The budget of the load's campaign (it caps nothing; it must only be positive).
const BUDGET_MINOR: i64 = 1_000_000_000_000;

/// Clients of the services, over one shared HTTP/2 channel each (clones share it).
#[derive(Debug, Clone)]
pub struct Clients {
    pub campaign: CampaignServiceClient<Channel>,
    pub tracking: TrackingServiceClient<Channel>,
    pub commission: CommissionServiceClient<Channel>,
    pub payment: PaymentServiceClient<Channel>,
}

/// One load run: its id names its keys, its correlation id groups its calls in the logs.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
}

impl Run {
    pub fn new() -> Self {
        Self {
            id: Uuid::new_v4().simple().to_string(),
        }
    }

    /// The idempotency key of one step, e.g. `load-<run>-purchase-17`.
    pub fn key(&self, step: &str) -> String {
        format!("load-{}-{step}", self.id)
    }

    /// `message` with the step's idempotency key and the run's correlation id.
    pub fn request<T>(&self, message: T, step: &str) -> Result<Request<T>, Status> {
        let mut request = Request::new(message);
        let metadata = |value: String| {
            value
                .parse()
                .map_err(|_| Status::invalid_argument(format!("{value:?} is not ASCII metadata")))
        };
        request
            .metadata_mut()
            .insert(IDEMPOTENCY_KEY, metadata(self.key(step))?);
        request
            .metadata_mut()
            .insert(CORRELATION_ID, metadata(format!("load-{}", self.id))?);
        Ok(request)
    }
}

/// A failed call as an error that says which call and how.
pub fn call_failed(call: &str, status: &Status) -> anyhow::Error {
    anyhow::anyhow!(
        "{call} failed: {} {}",
        code_name(status.code()),
        status.message()
    )
}

pub async fn channel(service: &str, url: &str, connect_now: bool) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("--{service}-url {url:?} is not a URL"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if connect_now {
        endpoint.connect().await.with_context(|| {
            format!(
                "cannot reach the {service} service at {url} (is the platform up? `deploy/local/platform.sh up` starts it)"
            )
        })
    } else {
        Ok(endpoint.connect_lazy())
    }
}

/// Connects to the campaign and tracking services now (and to commission and payment now too
/// when `workflow` needs them), so an unreachable platform fails before anything is written.
pub async fn connect(urls: &ServiceUrls, workflow: bool) -> anyhow::Result<Clients> {
    Ok(Clients {
        campaign: CampaignServiceClient::new(channel("campaign", &urls.campaign, true).await?),
        tracking: TrackingServiceClient::new(channel("tracking", &urls.tracking, true).await?),
        commission: CommissionServiceClient::new(
            channel("commission", &urls.commission, workflow).await?,
        ),
        payment: PaymentServiceClient::new(channel("payment", &urls.payment, workflow).await?),
    })
}

/// Creates the load's campaign number `n`; returns its id.
pub async fn create_campaign(
    clients: &Clients,
    args: &LoadArgs,
    run: &Run,
    retry: RetryPolicy,
    n: usize,
) -> anyhow::Result<String> {
    let message = CreateCampaignRequest {
        advertiser_id: Uuid::now_v7().to_string(),
        name: format!("load {} #{n}", run.id),
        description: "created by `platform load`".into(),
        commission_rate_bps: args.commission_rate_bps,
        budget: Some(Money {
            amount_minor: BUDGET_MINOR,
            currency: args.currency.clone(),
        }),
        tracking: None,
        // no hold: commissions are approved at once, so --workflow can pay the balances out
        hold_period: Some(pbjson_types::Duration {
            seconds: 0,
            nanos: 0,
        }),
    };
    let attempts = retry
        .call(|| {
            let mut client = clients.campaign.clone();
            let step = if n == 0 {
                "campaign".to_owned()
            } else {
                format!("campaign-{n}")
            };
            let request = run.request(message.clone(), &step);
            async move { client.create_campaign(request?).await }
        })
        .await;
    let response = attempts
        .result
        .map_err(|status| call_failed("CreateCampaign", &status))?
        .into_inner();
    response
        .campaign
        .map(|campaign| campaign.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow::anyhow!("CreateCampaign answered without a campaign"))
}

/// `creators` new creators accept every one of the campaigns, `concurrency` at a time; returns
/// their ids.
pub async fn accept(
    clients: &Clients,
    campaign_ids: &[String],
    creators: usize,
    run: &Run,
    retry: RetryPolicy,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let creator_ids: Vec<String> = (0..creators).map(|_| Uuid::new_v4().to_string()).collect();
    let pairs = campaign_ids.iter().enumerate().flat_map(|(c, campaign)| {
        creator_ids
            .iter()
            .enumerate()
            .map(move |(i, creator)| (c, campaign, i, creator))
    });
    futures::stream::iter(pairs)
        .map(|(c, campaign_id, i, creator_id)| async move {
            let message = AcceptCampaignRequest {
                campaign_id: campaign_id.clone(),
                creator_id: creator_id.clone(),
                accepted_terms: true,
            };
            let step = if c == 0 {
                format!("accept-{i}")
            } else {
                format!("accept-{c}-{i}")
            };
            let attempts = retry
                .call(|| {
                    let mut client = clients.campaign.clone();
                    let request = run.request(message.clone(), &step);
                    async move { client.accept_campaign(request?).await }
                })
                .await;
            attempts
                .result
                .map(drop)
                .map_err(|status| call_failed("AcceptCampaign", &status))
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(creator_ids)
}
