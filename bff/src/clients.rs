//! The gRPC clients of the services: one lazily connected channel per service for the life of
//! the process (HTTP/2 multiplexes every request on it; tonic reconnects when it drops), traced:
//! each call is a client span whose context the service continues.

use std::time::Duration;

use affiliate_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use affiliate_proto::campaign::campaign_service_client::CampaignServiceClient;
use affiliate_proto::commission::commission_service_client::CommissionServiceClient;
use affiliate_proto::notification::notification_service_client::NotificationServiceClient;
use affiliate_proto::payment::payment_service_client::PaymentServiceClient;
use affiliate_proto::tracking::tracking_service_client::TrackingServiceClient;
use affiliate_proto::webhook::webhook_service_client::WebhookServiceClient;
use anyhow::Context as _;
use service_runtime::grpc_trace::TracedChannel;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;

use crate::config::ServiceUrls;

#[derive(Debug, Clone)]
pub struct Clients {
    pub campaign: CampaignServiceClient<TracedChannel>,
    pub tracking: TrackingServiceClient<TracedChannel>,
    pub commission: CommissionServiceClient<TracedChannel>,
    pub payment: PaymentServiceClient<TracedChannel>,
    pub notification: NotificationServiceClient<TracedChannel>,
    pub analytics: AnalyticsServiceClient<TracedChannel>,
    pub webhook: WebhookServiceClient<TracedChannel>,
    /// Health clients by service name, in a fixed order.
    pub health: Vec<(&'static str, HealthClient<Channel>)>,
}

fn channel(name: &str, url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("the {name} service URL `{url}` is not a valid URL"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy())
}

impl Clients {
    /// Channels that connect on first use, so the BFF starts even if a service is not up yet.
    pub fn connect_lazy(urls: &ServiceUrls) -> anyhow::Result<Self> {
        let campaign = channel("campaign", &urls.campaign_url)?;
        let tracking = channel("tracking", &urls.tracking_url)?;
        let commission = channel("commission", &urls.commission_url)?;
        let payment = channel("payment", &urls.payment_url)?;
        let notification = channel("notification", &urls.notification_url)?;
        let analytics = channel("analytics", &urls.analytics_url)?;
        let webhook = channel("webhook", &urls.webhook_url)?;
        Ok(Self {
            health: vec![
                ("campaign", HealthClient::new(campaign.clone())),
                ("tracking", HealthClient::new(tracking.clone())),
                ("commission", HealthClient::new(commission.clone())),
                ("payment", HealthClient::new(payment.clone())),
                ("notification", HealthClient::new(notification.clone())),
                ("analytics", HealthClient::new(analytics.clone())),
                ("webhook", HealthClient::new(webhook.clone())),
            ],
            campaign: CampaignServiceClient::new(TracedChannel::new(campaign)),
            tracking: TrackingServiceClient::new(TracedChannel::new(tracking)),
            commission: CommissionServiceClient::new(TracedChannel::new(commission)),
            payment: PaymentServiceClient::new(TracedChannel::new(payment)),
            notification: NotificationServiceClient::new(TracedChannel::new(notification)),
            analytics: AnalyticsServiceClient::new(TracedChannel::new(analytics)),
            webhook: WebhookServiceClient::new(TracedChannel::new(webhook)),
        })
    }
}
