//! The REST bodies, in proto3 JSON style: camelCase names, int64 as strings, enums by their
//! proto names, timestamps in RFC 3339 UTC with `Z`. Requests refuse unknown fields.

use affiliate_proto::{campaign, commission, common, notification, payment, tracking, webhook};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

pub use crate::proto_enum::Rest;
use uuid::Uuid;

/// A timestamp as proto3 JSON writes it: RFC 3339, UTC, `Z`, 0/3/6/9 fractional digits.
pub fn rfc3339(timestamp: Option<pbjson_types::Timestamp>) -> Option<String> {
    let t = timestamp?;
    let nanos = u32::try_from(t.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(t.seconds, nanos)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

pub(crate) fn int64_as_string<S: Serializer>(
    value: &i64,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_string())
}

/// int64 accepted as a JSON string (proto3 JSON) or, leniently, as a number.
fn int64_from_string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(i64),
    }
    match Either::deserialize(deserializer)? {
        Either::Number(n) => Ok(n),
        Either::Text(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom("must be an integer (a string of digits)")),
    }
}

/// An amount in integer minor units of an ISO-4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Money {
    /// Minor units (cents for USD), as a string of digits.
    #[serde(
        serialize_with = "int64_as_string",
        deserialize_with = "int64_from_string_or_number"
    )]
    #[schema(value_type = String, pattern = "^-?[0-9]{1,18}$", example = "5000")]
    pub amount_minor: i64,
    /// ISO-4217 code, upper case.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

impl From<common::Money> for Money {
    fn from(m: common::Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

impl From<Money> for common::Money {
    fn from(m: Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

fn money(m: Option<common::Money>) -> Option<Money> {
    m.map(Money::from)
}

/// A campaign's lifecycle state.
pub type CampaignStatus = Rest<campaign::CampaignStatus>;
/// What the audience did.
pub type TrackingEventKind = Rest<tracking::TrackingEventKind>;
/// What a creator's evidence is.
pub type EvidenceKind = Rest<tracking::EvidenceKind>;
/// Where a reported sale stands.
pub type ConversionStatus = Rest<tracking::ConversionStatus>;
/// A commission's state.
pub type CommissionStatus = Rest<commission::CommissionStatus>;
/// The payout saga's state.
pub type PayoutStatus = Rest<payment::PayoutStatus>;
/// How a payout is paid.
pub type PayoutMethod = Rest<payment::PayoutMethod>;
/// What a notification is about.
pub type NotificationKind = Rest<notification::NotificationKind>;
/// Where a webhook message's delivery to an endpoint stands.
pub type DeliveryStatus = Rest<webhook::DeliveryStatus>;

// ---- requests ----

/// A new campaign.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCampaign {
    /// The owning advertiser; defaults to the caller. Only admins may name another.
    #[serde(default)]
    pub advertiser_id: Option<Uuid>,
    /// Non-empty, at most 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// At most 5000 characters.
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    /// 0..=10000 basis points.
    #[schema(maximum = 10000)]
    pub commission_rate_bps: u32,
    /// Positive, ISO-4217.
    pub budget: Money,
    /// Optional: how the campaign's tracking links behave (see `PUT …/tracking`). Without it
    /// the campaign has no tracking settings until they are set.
    #[serde(default)]
    pub tracking: Option<TrackingSettingsInput>,
    /// Optional: how long its commissions stay pending (a refund may still come) before they
    /// are approved and payable, in whole seconds: 0 (approved at once) to 365 days; absent
    /// means 30 days.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 31_536_000, example = 2_592_000)]
    pub hold_period_seconds: Option<i64>,
}

/// A campaign's tracking settings as a request sets them: the whole settings, replacing the old
/// ones; what is left out takes its default.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrackingSettingsInput {
    /// Where a link without a deep link sends a visitor: an absolute http or https URL without
    /// user info, at most 2048 bytes.
    #[schema(
        pattern = "^https?://[^\\s]+$",
        max_length = 2048,
        example = "https://shop.example.com/spring"
    )]
    pub landing_url: String,
    /// The hosts a deep link may point at besides the landing URL's: `shop.example.com`, or
    /// `*.example.com` for every subdomain. At most 20; stored lower-cased and sorted.
    #[serde(default)]
    #[schema(max_items = 20, example = json!(["*.example.com"]))]
    pub landing_domains: Vec<String>,
    /// The query parameter that carries the click id: 1..=64 of `[A-Za-z0-9_-]`; empty or absent
    /// means `click_id`.
    #[serde(default)]
    #[schema(
        max_length = 64,
        pattern = "^[A-Za-z0-9_-]{0,64}$",
        example = "click_id"
    )]
    pub click_id_param: String,
    /// How long after its click a conversion is still attributed to it, in seconds: 1 s to 400
    /// days; absent means 30 days.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 34_560_000, example = 2_592_000)]
    pub attribution_window_seconds: Option<i64>,
    /// A conversion sooner than this after its click is held as suspected fraud, in seconds: 0 to
    /// 1 day; absent means 10 s.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86_400, example = 10)]
    pub min_click_to_conversion_seconds: Option<i64>,
    /// Where a visitor goes when the link is disabled or the campaign is not active (same rules
    /// as `landingUrl`); empty or absent means a plain page of the platform's.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub fallback_url: String,
}

impl From<TrackingSettingsInput> for campaign::TrackingSettings {
    fn from(t: TrackingSettingsInput) -> Self {
        let seconds = |seconds| pbjson_types::Duration { seconds, nanos: 0 };
        Self {
            landing_url: t.landing_url,
            landing_domains: t.landing_domains,
            click_id_param: t.click_id_param,
            attribution_window: t.attribution_window_seconds.map(seconds),
            min_click_to_conversion: t.min_click_to_conversion_seconds.map(seconds),
            fallback_url: t.fallback_url,
        }
    }
}

/// A campaign's new tracking settings.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateTracking {
    /// The whole new settings, replacing the old ones; `landingUrl` is required.
    pub tracking: TrackingSettingsInput,
}

/// A campaign's new budget.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateBudget {
    /// Positive, in the campaign's currency. A campaign paused because its budget was spent is
    /// resumed by a larger one.
    pub budget: Money,
}

/// A video to attach to a campaign.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddVideo {
    /// An http or https URL.
    #[schema(
        pattern = "^https?://[^\\s]+$",
        example = "https://cdn.example.com/teaser.mp4"
    )]
    pub url: String,
    /// Non-empty, at most 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
}

/// A creator's acceptance of a campaign's terms.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptCampaign {
    pub campaign_id: Uuid,
    /// Must be true.
    pub accepted_terms: bool,
}

/// Evidence of published content.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitEvidence {
    pub campaign_id: Uuid,
    pub kind: EvidenceKind,
    /// An http or https URL.
    #[schema(
        pattern = "^https?://[^\\s]+$",
        example = "https://social.example.com/p/1"
    )]
    pub url: String,
    /// At most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub note: String,
}

/// A view, click or purchase to record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordTrackingEvent {
    pub campaign_id: Uuid,
    pub creator_id: Uuid,
    pub kind: TrackingEventKind,
    /// Required for purchases; must be absent otherwise.
    #[serde(default)]
    pub amount: Option<Money>,
    #[serde(default)]
    pub product_id: String,
    /// When it happened; defaults to now.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A payout request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestPayout {
    /// Positive, ISO-4217.
    pub amount: Money,
    pub method: PayoutMethod,
    /// IBAN for bank transfers, an e-mail address for PayPal. Never returned or logged.
    #[schema(min_length = 1, max_length = 200, example = "DE89370400440532013000")]
    pub account_details: String,
}

/// The most commissions one approval or decline takes.
pub const MAX_DECIDED_COMMISSIONS: usize = 100;

/// Commissions to approve or decline, all or nothing.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecideCommissions {
    /// 1 to 100 distinct ids of pending commissions of the advertiser's campaigns.
    #[schema(value_type = Vec<Uuid>, min_items = 1, max_items = 100)]
    pub commission_ids: Vec<String>,
    /// Why they are declined, shown to the creators: required to decline (1 to 500 characters),
    /// not taken when approving.
    #[serde(default)]
    #[schema(max_length = 500, example = "the order was cancelled")]
    pub reason: String,
    /// The advertiser who owns the campaigns: admins must name one; advertisers act as
    /// themselves.
    pub advertiser_id: Option<Uuid>,
}

/// A creator's free-text labels on a link, to tell placements apart (e.g. the video, the
/// position in it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SubIds {
    /// At most 100 characters, like each of the others.
    #[schema(max_length = 100, example = "video-42")]
    pub sub1: String,
    #[schema(max_length = 100)]
    pub sub2: String,
    #[schema(max_length = 100)]
    pub sub3: String,
    #[schema(max_length = 100)]
    pub sub4: String,
    #[schema(max_length = 100)]
    pub sub5: String,
}

impl From<SubIds> for tracking::SubIds {
    fn from(s: SubIds) -> Self {
        Self {
            sub1: s.sub1,
            sub2: s.sub2,
            sub3: s.sub3,
            sub4: s.sub4,
            sub5: s.sub5,
        }
    }
}

impl From<tracking::SubIds> for SubIds {
    fn from(s: tracking::SubIds) -> Self {
        Self {
            sub1: s.sub1,
            sub2: s.sub2,
            sub3: s.sub3,
            sub4: s.sub4,
            sub5: s.sub5,
        }
    }
}

/// A new tracking link for a campaign the creator accepted (active, with a landing URL).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateLink {
    pub campaign_id: Uuid,
    #[serde(default)]
    pub sub_ids: SubIds,
    /// Optional: where the link sends visitors instead of the landing URL: an absolute http or
    /// https URL on the landing URL's host or one of the campaign's landing domains, at most
    /// 2048 bytes.
    #[serde(default)]
    #[schema(max_length = 2048, example = "https://shop.example.com/products/42")]
    pub deep_link: String,
}

/// A sale reported server to server for a click (authenticated by `X-Postback-Key`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordConversion {
    /// The click id the landing page received (32 hex digits, or a UUID).
    #[schema(example = "0193a9e0000070008000000000000001")]
    pub click_id: String,
    /// Your order id: one conversion per order; a repeat answers the first one. 1..=128
    /// characters, no control characters.
    #[schema(min_length = 1, max_length = 128, example = "order-1001")]
    pub order_id: String,
    /// Positive, in the campaign's currency.
    pub amount: Money,
    /// When the sale happened; defaults to now, at most 5 minutes ahead.
    #[serde(default)]
    pub converted_at: Option<DateTime<Utc>>,
}

/// An advertiser's decision on a held conversion.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewConversion {
    /// True: a purchase (and its commission); false: declined.
    pub approve: bool,
    /// Required to decline (the creator sees it); at most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: String,
}

/// A refund or chargeback of an order you reported (authenticated by `X-Postback-Key`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundConversion {
    /// Your id of this refund, at most 128 characters: a repeat answers the first one. Absent:
    /// the one full refund the order can have.
    #[serde(default)]
    #[schema(max_length = 128, example = "refund-1")]
    pub refund_id: String,
    /// The sale money given back, in the sale's currency; absent: all that is left of the sale.
    #[serde(default)]
    pub amount: Option<Money>,
    /// `refund` (the default) or `chargeback`.
    #[serde(default)]
    #[schema(example = "refund")]
    pub kind: String,
    /// At most 500 characters, shown to the creator.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: String,
}

/// A new webhook endpoint of the caller's.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookEndpoint {
    /// Where the events go: an https URL of a public host (private, loopback and link-local
    /// destinations are refused unless the operator allows them), at most 2048 bytes.
    #[schema(max_length = 2048, example = "https://hooks.example.com/affiliate")]
    pub url: String,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500, example = "order system")]
    pub description: String,
    /// The event types it receives (at most 64, each once, e.g. `commission.approved.v1`);
    /// empty or absent: every type.
    #[serde(default)]
    #[schema(max_items = 64, example = json!(["commission.approved.v1", "payout.completed.v1"]))]
    pub event_types: Vec<String>,
    /// The most messages sent to it per second (a burst of that many, then that rate), 0 to
    /// 10000; 0 or absent: no limit but the platform's concurrency cap.
    #[serde(default)]
    #[schema(maximum = 10000, example = 50)]
    pub rate_limit_per_second: u32,
}

/// Changes to a webhook endpoint: what is present is set, what is absent (or null) stays.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhookEndpoint {
    /// A new URL, under the same rules as at creation.
    #[serde(default)]
    #[schema(max_length = 2048, example = "https://hooks.example.com/affiliate/v2")]
    pub url: Option<String>,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// The event types it receives from now on, replacing the old ones; `[]`: every type.
    #[serde(default)]
    #[schema(max_items = 64, example = json!(["commission.approved.v1"]))]
    pub event_types: Option<Vec<String>>,
    /// False stops its deliveries (its waiting messages wait); true resumes them and resets its
    /// failure count.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A new rate limit in messages per second (0 to 10000); 0 lifts it.
    #[serde(default)]
    #[schema(maximum = 10000)]
    pub rate_limit_per_second: Option<u32>,
}

/// Which failed messages of an endpoint to send again.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverWebhookEndpoint {
    /// Every message that failed at or after this time (RFC 3339) is sent again.
    #[schema(example = "2025-11-24T16:00:00Z")]
    pub since: DateTime<Utc>,
}

// ---- responses ----

/// A creator's tracking link for a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingLink {
    pub id: String,
    /// 10 characters of `[0-9A-Za-z]`.
    pub code: String,
    /// The public link to share: the redirect edge's `/c/{code}`.
    #[schema(example = "https://go.example.com/c/a1B2c3D4e5")]
    pub url: String,
    pub campaign_id: String,
    pub creator_id: String,
    pub sub_ids: SubIds,
    /// Empty: the campaign's landing URL.
    pub deep_link: String,
    /// A disabled link sends visitors to the campaign's fallback and records no click.
    pub disabled: bool,
    pub created_at: Option<String>,
    pub disabled_at: Option<String>,
    /// Aggregate version (int64 as a string): 1 when created, 2 once disabled.
    pub version: String,
    /// In lists: the link's figures over every day (clicks, unique and bot clicks, conversions,
    /// purchases, revenue), from the analytics service; absent when it did not answer in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<crate::routes::analytics::Totals>,
}

impl TrackingLink {
    /// The link in its REST shape; `redirect_base` is the redirect edge's public URL.
    pub fn new(l: tracking::TrackingLink, redirect_base: &str) -> Self {
        Self {
            url: format!("{}/c/{}", redirect_base.trim_end_matches('/'), l.code),
            id: l.id,
            code: l.code,
            campaign_id: l.campaign_id,
            creator_id: l.creator_id,
            sub_ids: l.sub_ids.map(SubIds::from).unwrap_or_default(),
            deep_link: l.deep_link,
            disabled: l.disabled,
            created_at: rfc3339(l.created_at),
            disabled_at: rfc3339(l.disabled_at),
            version: l.version.to_string(),
            figures: None,
        }
    }
}

/// One page of tracking links.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingLinkPage {
    pub links: Vec<TrackingLink>,
    pub next_page_token: String,
}

/// A sale an advertiser reported for a click.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversion {
    pub id: String,
    pub advertiser_id: String,
    pub order_id: String,
    pub click_id: String,
    pub link_id: String,
    pub campaign_id: String,
    pub creator_id: String,
    pub sub_ids: SubIds,
    pub amount: Option<Money>,
    pub converted_at: Option<String>,
    pub recorded_at: Option<String>,
    pub status: ConversionStatus,
    /// The purchase it became; empty while held or once declined.
    pub tracking_event_id: String,
    /// Why a held conversion was held, or why it was declined.
    pub reason: String,
    /// When its click was recorded.
    pub clicked_at: Option<String>,
    /// Minor units of `amount` refunded so far (int64 as a string).
    #[serde(default)]
    pub refunded_minor: String,
}

impl From<tracking::Conversion> for Conversion {
    fn from(c: tracking::Conversion) -> Self {
        Self {
            id: c.id,
            advertiser_id: c.advertiser_id,
            order_id: c.order_id,
            click_id: c.click_id,
            link_id: c.link_id,
            campaign_id: c.campaign_id,
            creator_id: c.creator_id,
            sub_ids: c.sub_ids.map(SubIds::from).unwrap_or_default(),
            amount: money(c.amount),
            converted_at: rfc3339(c.converted_at),
            recorded_at: rfc3339(c.recorded_at),
            status: ConversionStatus::from_proto(c.status),
            tracking_event_id: c.tracking_event_id,
            reason: c.reason,
            clicked_at: rfc3339(c.clicked_at),
            refunded_minor: c.refunded_minor.to_string(),
        }
    }
}

/// The answer to a reported sale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedConversion {
    pub conversion: Conversion,
    /// True when the order was reported before: the first conversion, unchanged (HTTP 200;
    /// a new one is 201).
    pub duplicate: bool,
}

/// A refund or chargeback an advertiser reported for an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub conversion_id: String,
    pub order_id: String,
    /// Your id of the refund; `full` for the one full refund (reported without an id).
    pub refund_id: String,
    pub amount: Option<Money>,
    /// `refund` or `chargeback`.
    pub kind: String,
    pub reason: String,
    pub recorded_at: Option<String>,
}

impl From<tracking::Refund> for Refund {
    fn from(r: tracking::Refund) -> Self {
        Self {
            conversion_id: r.conversion_id,
            order_id: r.order_id,
            refund_id: r.refund_id,
            amount: money(r.amount),
            kind: r.kind,
            reason: r.reason,
            recorded_at: rfc3339(r.recorded_at),
        }
    }
}

/// The answer to a reported refund: the conversion (with what is refunded of it so far) and the
/// refund.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundedConversion {
    pub conversion: Conversion,
    pub refund: Refund,
    /// True when this refund was reported before: the first, unchanged (HTTP 200; a new one is
    /// 201).
    pub duplicate: bool,
}

/// An advertiser's postback key (its secret is shown once, when created).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostbackKey {
    pub id: String,
    pub advertiser_id: String,
    /// The secret's first 8 characters, to tell keys apart.
    #[schema(example = "pbk_AbCd")]
    pub prefix: String,
    pub created_at: Option<String>,
    /// Set once revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<String>,
}

impl From<tracking::PostbackKey> for PostbackKey {
    fn from(k: tracking::PostbackKey) -> Self {
        Self {
            id: k.id,
            advertiser_id: k.advertiser_id,
            prefix: k.prefix,
            created_at: rfc3339(k.created_at),
            revoked_at: rfc3339(k.revoked_at),
        }
    }
}

/// A new postback key and its secret: shown here once, never again.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedPostbackKey {
    pub key: PostbackKey,
    /// `pbk_` and 43 characters of base64url: send it as `X-Postback-Key` (or `key=`), or sign
    /// postbacks with it.
    pub secret: String,
}

impl std::fmt::Debug for CreatedPostbackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPostbackKey")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// An advertiser's postback keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostbackKeyList {
    pub keys: Vec<PostbackKey>,
}

/// An advertiser's offer to creators.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    pub id: String,
    pub advertiser_id: String,
    pub name: String,
    pub description: String,
    pub commission_rate_bps: u32,
    pub budget: Option<Money>,
    pub status: CampaignStatus,
    /// Aggregate version (int64 as a string).
    pub version: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// How its tracking links behave; null until the advertiser sets them.
    pub tracking: Option<TrackingSettings>,
    /// How long its commissions stay pending before they are approved and payable, in seconds
    /// (0: approved at once).
    pub hold_period_seconds: i64,
}

/// A campaign's tracking settings, every default spelled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingSettings {
    /// Where a link without a deep link sends a visitor.
    pub landing_url: String,
    /// The hosts a deep link may point at besides the landing URL's, lower case, sorted.
    pub landing_domains: Vec<String>,
    /// The query parameter that carries the click id to the landing page.
    pub click_id_param: String,
    /// How long after its click a conversion is still attributed to it, in seconds.
    pub attribution_window_seconds: i64,
    /// A conversion sooner than this after its click is held as suspected fraud, in seconds.
    pub min_click_to_conversion_seconds: i64,
    /// Where a visitor goes when the link is disabled or the campaign is not active; empty: a
    /// plain page of the platform's.
    pub fallback_url: String,
}

impl From<campaign::TrackingSettings> for TrackingSettings {
    fn from(t: campaign::TrackingSettings) -> Self {
        Self {
            landing_url: t.landing_url,
            landing_domains: t.landing_domains,
            click_id_param: t.click_id_param,
            attribution_window_seconds: t.attribution_window.map_or(0, |d| d.seconds),
            min_click_to_conversion_seconds: t.min_click_to_conversion.map_or(0, |d| d.seconds),
            fallback_url: t.fallback_url,
        }
    }
}

impl From<campaign::Campaign> for Campaign {
    fn from(c: campaign::Campaign) -> Self {
        Self {
            id: c.id,
            advertiser_id: c.advertiser_id,
            name: c.name,
            description: c.description,
            commission_rate_bps: c.commission_rate_bps,
            budget: money(c.budget),
            status: CampaignStatus::from_proto(c.status),
            version: c.version.to_string(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            tracking: c.tracking.map(TrackingSettings::from),
            // Absent only on campaigns from before holds: none.
            hold_period_seconds: c.hold_period.map_or(0, |d| d.seconds),
        }
    }
}

/// A video attached to a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Video {
    pub id: String,
    pub campaign_id: String,
    pub url: String,
    pub title: String,
    pub added_at: Option<String>,
}

impl From<campaign::Video> for Video {
    fn from(v: campaign::Video) -> Self {
        Self {
            id: v.id,
            campaign_id: v.campaign_id,
            url: v.url,
            title: v.title,
            added_at: rfc3339(v.added_at),
        }
    }
}

/// A campaign with its videos.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignDetail {
    pub campaign: Campaign,
    pub videos: Vec<Video>,
}

/// One page of campaigns.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignPage {
    pub campaigns: Vec<Campaign>,
    /// Empty when there are no more pages.
    pub next_page_token: String,
}

/// A creator's acceptance of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Acceptance {
    pub campaign_id: String,
    pub creator_id: String,
    pub accepted_at: Option<String>,
}

impl From<campaign::Acceptance> for Acceptance {
    fn from(a: campaign::Acceptance) -> Self {
        Self {
            campaign_id: a.campaign_id,
            creator_id: a.creator_id,
            accepted_at: rfc3339(a.accepted_at),
        }
    }
}

/// A view, click or purchase.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingEvent {
    pub id: String,
    pub campaign_id: String,
    pub creator_id: String,
    pub kind: TrackingEventKind,
    pub amount: Option<Money>,
    pub product_id: String,
    pub occurred_at: Option<String>,
    pub recorded_at: Option<String>,
}

impl From<tracking::TrackingEvent> for TrackingEvent {
    fn from(e: tracking::TrackingEvent) -> Self {
        Self {
            id: e.id,
            campaign_id: e.campaign_id,
            creator_id: e.creator_id,
            kind: TrackingEventKind::from_proto(e.kind),
            amount: money(e.amount),
            product_id: e.product_id,
            occurred_at: rfc3339(e.occurred_at),
            recorded_at: rfc3339(e.recorded_at),
        }
    }
}

/// One page of tracking events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingEventPage {
    pub events: Vec<TrackingEvent>,
    pub next_page_token: String,
}

/// Evidence a creator submitted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub id: String,
    pub campaign_id: String,
    pub creator_id: String,
    pub kind: EvidenceKind,
    pub url: String,
    pub note: String,
    pub submitted_at: Option<String>,
}

impl From<tracking::Evidence> for Evidence {
    fn from(e: tracking::Evidence) -> Self {
        Self {
            id: e.id,
            campaign_id: e.campaign_id,
            creator_id: e.creator_id,
            kind: EvidenceKind::from_proto(e.kind),
            url: e.url,
            note: e.note,
            submitted_at: rfc3339(e.submitted_at),
        }
    }
}

/// What a creator earned from one purchase.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Commission {
    pub id: String,
    pub tracking_event_id: String,
    pub campaign_id: String,
    pub creator_id: String,
    pub purchase_amount: Option<Money>,
    pub commission_rate_bps: u32,
    pub amount: Option<Money>,
    pub status: CommissionStatus,
    /// Minor units reserved by payouts in flight (int64 as a string).
    pub reserved_minor: String,
    /// Minor units paid out (int64 as a string).
    pub paid_minor: String,
    pub created_at: Option<String>,
    /// When its hold ends and it is approved (unless decided before).
    pub hold_until: Option<String>,
    /// When it was approved, declined or wholly reversed.
    pub decided_at: Option<String>,
    /// Why the advertiser declined it (empty unless declined).
    pub decline_reason: String,
    /// Minor units of the purchase refunded so far (int64 as a string).
    pub refunded_minor: String,
    /// Minor units of `amount` taken back before they were paid (int64 as a string).
    pub reversed_minor: String,
    /// Minor units of `amount` taken back after they were reserved or paid: a debt netted
    /// against the creator's next payout (int64 as a string).
    pub clawed_back_minor: String,
}

impl From<commission::Commission> for Commission {
    fn from(c: commission::Commission) -> Self {
        Self {
            id: c.id,
            tracking_event_id: c.tracking_event_id,
            campaign_id: c.campaign_id,
            creator_id: c.creator_id,
            purchase_amount: money(c.purchase_amount),
            commission_rate_bps: c.commission_rate_bps,
            amount: money(c.amount),
            status: CommissionStatus::from_proto(c.status),
            reserved_minor: c.reserved_minor.to_string(),
            paid_minor: c.paid_minor.to_string(),
            created_at: rfc3339(c.created_at),
            hold_until: rfc3339(c.hold_until),
            decided_at: rfc3339(c.decided_at),
            decline_reason: c.decline_reason,
            refunded_minor: c.refunded_minor.to_string(),
            reversed_minor: c.reversed_minor.to_string(),
            clawed_back_minor: c.clawed_back_minor.to_string(),
        }
    }
}

/// One page of commissions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommissionPage {
    pub commissions: Vec<Commission>,
    pub next_page_token: String,
}

/// A creator's commissions in one currency (minor units, int64 as strings).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub creator_id: String,
    pub currency: String,
    /// Approved and payable; negative while clawbacks exceed it (a debt netted against the next
    /// payouts).
    pub available_minor: String,
    pub reserved_minor: String,
    pub paid_minor: String,
    /// In their hold: not payable yet.
    pub pending_minor: String,
}

impl From<commission::Balance> for Balance {
    fn from(b: commission::Balance) -> Self {
        Self {
            creator_id: b.creator_id,
            currency: b.currency,
            available_minor: b.available_minor.to_string(),
            reserved_minor: b.reserved_minor.to_string(),
            paid_minor: b.paid_minor.to_string(),
            pending_minor: b.pending_minor.to_string(),
        }
    }
}

/// The commissions an approval or decline decided, in the order asked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecidedCommissions {
    pub commissions: Vec<Commission>,
}

/// A creator's statement of one month, from the commission ledger: one section per currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    pub creator_id: String,
    /// `YYYY-MM` (UTC).
    #[schema(example = "2025-11")]
    pub month: String,
    pub currencies: Vec<CurrencyStatement>,
}

/// A creator's statement of one month in one currency (minor units, int64 as strings). The
/// balance is what the platform owes the creator: pending + available + reserved.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyStatement {
    pub currency: String,
    pub opening_minor: String,
    pub closing_minor: String,
    pub lines: Vec<StatementLine>,
    /// The ledger's balances at the month's end (closing = pending + available + reserved), and
    /// what was paid out by then.
    pub pending_minor: String,
    pub available_minor: String,
    pub reserved_minor: String,
    pub paid_minor: String,
}

impl From<commission::CurrencyStatement> for CurrencyStatement {
    fn from(c: commission::CurrencyStatement) -> Self {
        Self {
            currency: c.currency,
            opening_minor: c.opening_minor.to_string(),
            closing_minor: c.closing_minor.to_string(),
            lines: c.lines.into_iter().map(StatementLine::from).collect(),
            pending_minor: c.pending_minor.to_string(),
            available_minor: c.available_minor.to_string(),
            reserved_minor: c.reserved_minor.to_string(),
            paid_minor: c.paid_minor.to_string(),
        }
    }
}

/// One movement of money between the creator and the outside.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatementLine {
    pub at: Option<String>,
    /// `commission`, `decline`, `reversal`, `clawback` or `payout`.
    #[schema(example = "commission")]
    pub kind: String,
    /// Signed: what the line adds to (or, negative, takes from) the balance (int64 as a string).
    pub amount_minor: String,
    /// The balance after the line (int64 as a string).
    pub balance_minor: String,
    pub commission_id: String,
    pub campaign_id: String,
    pub payout_id: String,
    /// The refund's id, or the decline's reason.
    pub reference: String,
}

impl From<commission::StatementLine> for StatementLine {
    fn from(l: commission::StatementLine) -> Self {
        Self {
            at: rfc3339(l.at),
            kind: l.kind,
            amount_minor: l.amount_minor.to_string(),
            balance_minor: l.balance_minor.to_string(),
            commission_id: l.commission_id,
            campaign_id: l.campaign_id,
            payout_id: l.payout_id,
            reference: l.reference,
        }
    }
}

/// A creator's payout and where its saga stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    pub id: String,
    pub creator_id: String,
    pub amount: Option<Money>,
    pub method: PayoutMethod,
    /// The account, masked; the full details never leave the payment service.
    pub account_masked: String,
    pub status: PayoutStatus,
    pub provider_reference: String,
    pub failure_reason: String,
    /// Aggregate version (int64 as a string).
    pub version: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<payment::Payout> for Payout {
    fn from(p: payment::Payout) -> Self {
        Self {
            id: p.id,
            creator_id: p.creator_id,
            amount: money(p.amount),
            method: PayoutMethod::from_proto(p.method),
            account_masked: p.account_masked,
            status: PayoutStatus::from_proto(p.status),
            provider_reference: p.provider_reference,
            failure_reason: p.failure_reason,
            version: p.version.to_string(),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// One page of payouts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutPage {
    pub payouts: Vec<Payout>,
    pub next_page_token: String,
}

/// A message to one user about something that happened.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: String,
    /// Position in the user's stream, 1, 2, 3, … (int64 as a string); the SSE event id.
    pub sequence: String,
    pub user_id: String,
    pub kind: NotificationKind,
    pub title: String,
    pub body: String,
    pub subject_type: String,
    pub subject_id: String,
    pub correlation_id: String,
    /// Absent while unread.
    pub read_at: Option<String>,
    pub created_at: Option<String>,
}

impl From<notification::Notification> for Notification {
    fn from(n: notification::Notification) -> Self {
        Self {
            id: n.id,
            sequence: n.sequence.to_string(),
            user_id: n.user_id,
            kind: NotificationKind::from_proto(n.kind),
            title: n.title,
            body: n.body,
            subject_type: n.subject_type,
            subject_id: n.subject_id,
            correlation_id: n.correlation_id,
            read_at: rfc3339(n.read_at),
            created_at: rfc3339(n.created_at),
        }
    }
}

/// One page of notifications.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    pub next_page_token: String,
    /// How many of the user's notifications are unread (int64 as a string).
    pub unread_count: String,
}

/// A partner's URL that receives the platform's events about its owner as signed webhooks
/// (Standard Webhooks v1). Its secret is never shown here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    pub id: String,
    /// The advertiser or creator who registered it: it receives events about their own
    /// campaigns, links, commissions and payouts only.
    pub owner_id: String,
    pub url: String,
    pub description: String,
    /// The event types it receives; empty: every type.
    pub event_types: Vec<String>,
    /// A disabled endpoint receives nothing; its waiting messages resume once it is enabled.
    pub enabled: bool,
    /// Why the platform disabled it (410 Gone, or too many failed messages in a row); empty when
    /// enabled or disabled by its owner.
    pub disabled_reason: String,
    /// Messages that failed in a row (every retry spent); a success resets it.
    pub consecutive_failures: i32,
    /// The most messages sent to it per second; 0: no limit.
    pub rate_limit_per_second: u32,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// After a rotation, until when the previous secret still verifies (messages carry both
    /// signatures meanwhile); null when there is none.
    pub previous_secret_expires_at: Option<String>,
}

impl From<webhook::Endpoint> for WebhookEndpoint {
    fn from(e: webhook::Endpoint) -> Self {
        Self {
            id: e.id,
            owner_id: e.owner_id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            consecutive_failures: e.consecutive_failures,
            rate_limit_per_second: e.rate_limit_per_second,
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            previous_secret_expires_at: rfc3339(e.previous_secret_expires_at),
        }
    }
}

/// One page of webhook endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointPage {
    pub endpoints: Vec<WebhookEndpoint>,
    pub next_page_token: String,
}

/// A new webhook endpoint and its signing secret: shown here once, never again.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhookEndpoint {
    pub endpoint: WebhookEndpoint,
    /// `whsec_` and the base64 of 32 random bytes: the key of the messages' HMAC-SHA256
    /// signatures (`webhook-signature`).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

impl std::fmt::Debug for CreatedWebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhookEndpoint")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// An endpoint's new signing secret: shown here once, never again. The previous one keeps
/// signing (messages carry both signatures) until `endpoint.previousSecretExpiresAt`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedWebhookSecret {
    pub endpoint: WebhookEndpoint,
    /// `whsec_` and the base64 of 32 random bytes.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

impl std::fmt::Debug for RotatedWebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedWebhookSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// One message to one endpoint, with its attempts so far.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The message id: the `webhook-id` header, the same on every attempt (and on a resend).
    #[schema(example = "msg_0193a9e0000070008000000000000001")]
    pub message_id: String,
    pub endpoint_id: String,
    #[schema(example = "commission.approved.v1")]
    pub event_type: String,
    /// `aggregate-type/aggregate-id`: messages with the same one reach an endpoint in order.
    pub aggregate: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub created_at: Option<String>,
    /// The message's JSON body exactly as sent (the signed bytes), as a string.
    pub payload: String,
}

impl From<webhook::Delivery> for WebhookDelivery {
    fn from(d: webhook::Delivery) -> Self {
        Self {
            message_id: d.message_id,
            endpoint_id: d.endpoint_id,
            event_type: d.event_type,
            aggregate: d.aggregate,
            status: DeliveryStatus::from_proto(d.status),
            attempts: d.attempts,
            next_attempt_at: rfc3339(d.next_attempt_at),
            created_at: rfc3339(d.created_at),
            payload: d.payload,
        }
    }
}

/// One page of an endpoint's deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryPage {
    pub deliveries: Vec<WebhookDelivery>,
    pub next_page_token: String,
}

/// A message queued for an endpoint (a resend, or a test event): its delivery, pending.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedWebhookDelivery {
    pub delivery: WebhookDelivery,
}

/// One HTTP request of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    pub id: String,
    pub message_id: String,
    pub endpoint_id: String,
    pub attempted_at: Option<String>,
    /// The HTTP status the endpoint answered; 0 when there was no answer (see `error`).
    pub status_code: i32,
    /// How long the request took, in milliseconds (int64 as a string).
    pub latency_ms: String,
    /// The first KiB of the answer's body.
    pub response: String,
    /// Why there was no answer (time-out, refused destination, connection).
    pub error: String,
    /// A 2xx answer in time.
    pub success: bool,
}

impl From<webhook::Attempt> for WebhookAttempt {
    fn from(a: webhook::Attempt) -> Self {
        Self {
            id: a.id,
            message_id: a.message_id,
            endpoint_id: a.endpoint_id,
            attempted_at: rfc3339(a.attempted_at),
            status_code: a.status_code,
            latency_ms: a.latency_ms.to_string(),
            response: a.response,
            error: a.error,
            success: a.success,
        }
    }
}

/// One page of an endpoint's attempts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttemptPage {
    pub attempts: Vec<WebhookAttempt>,
    pub next_page_token: String,
}

/// How many failed messages an endpoint gets again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveredWebhookMessages {
    /// The failed messages queued again (int64 as a string).
    #[schema(example = "3")]
    pub recovered: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_in_utc_with_z() {
        let t = |seconds, nanos| Some(pbjson_types::Timestamp { seconds, nanos });
        assert_eq!(rfc3339(t(0, 0)).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(t(1_764_000_000, 123_000_000)).as_deref(),
            Some("2025-11-24T16:00:00.123Z")
        );
        assert_eq!(rfc3339(None), None);
        assert_eq!(rfc3339(t(0, -1)), None);
    }

    #[test]
    fn money_writes_int64_as_a_string_and_reads_both_forms() {
        let m = Money {
            amount_minor: 9_007_199_254_740_993,
            currency: "USD".into(),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"amountMinor":"9007199254740993","currency":"USD"}"#
        );
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        let number: Money = serde_json::from_str(r#"{"amountMinor":12,"currency":"EUR"}"#).unwrap();
        assert_eq!(number.amount_minor, 12);
        assert!(
            serde_json::from_str::<Money>(r#"{"amountMinor":"1e3","currency":"EUR"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Money>(r#"{"amountMinor":"1","currency":"EUR","x":1}"#).is_err()
        );
    }

    #[test]
    fn tracking_settings_travel_in_whole_seconds() {
        let input: TrackingSettingsInput = serde_json::from_str(
            r#"{"landingUrl":"https://shop.example.com/","attributionWindowSeconds":604800}"#,
        )
        .unwrap();
        let sent = campaign::TrackingSettings::from(input);
        assert_eq!(sent.attribution_window.map(|d| d.seconds), Some(604_800));
        assert_eq!(sent.min_click_to_conversion, None);
        assert_eq!(sent.click_id_param, "");
        assert!(
            serde_json::from_str::<TrackingSettingsInput>(
                r#"{"landingUrl":"https://a.example.com","attributionWindow":"1s"}"#
            )
            .is_err()
        );
        let returned = TrackingSettings::from(campaign::TrackingSettings {
            min_click_to_conversion: Some(pbjson_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
            ..sent
        });
        assert_eq!(
            serde_json::to_value(&returned).unwrap(),
            serde_json::json!({
                "landingUrl": "https://shop.example.com/",
                "landingDomains": [],
                "clickIdParam": "",
                "attributionWindowSeconds": 604_800,
                "minClickToConversionSeconds": 10,
                "fallbackUrl": "",
            })
        );
    }

    #[test]
    fn the_hold_period_travels_in_whole_seconds() {
        let create: CreateCampaign = serde_json::from_str(
            r#"{"name":"Spring","commissionRateBps":1000,
                "budget":{"amountMinor":"100","currency":"EUR"},"holdPeriodSeconds":0}"#,
        )
        .unwrap();
        assert_eq!(create.hold_period_seconds, Some(0));
        let without: CreateCampaign = serde_json::from_str(
            r#"{"name":"Spring","commissionRateBps":1000,
                "budget":{"amountMinor":"100","currency":"EUR"}}"#,
        )
        .unwrap();
        assert_eq!(
            without.hold_period_seconds, None,
            "the service's default applies"
        );
        let shown = |hold_period| {
            let campaign = Campaign::from(campaign::Campaign {
                hold_period,
                ..Default::default()
            });
            serde_json::to_value(campaign).unwrap()["holdPeriodSeconds"].clone()
        };
        let days = 14 * 86_400;
        assert_eq!(
            shown(Some(pbjson_types::Duration {
                seconds: days,
                nanos: 0
            })),
            serde_json::json!(days)
        );
        assert_eq!(
            shown(None),
            serde_json::json!(0),
            "campaigns from before holds"
        );
    }

    #[test]
    fn enums_use_proto_names() {
        let json = serde_json::to_string(&PayoutStatus::from_proto(4)).unwrap();
        assert_eq!(json, r#""PAYOUT_STATUS_COMPLETED""#);
        assert_eq!(
            PayoutStatus::from_proto(99),
            Rest(payment::PayoutStatus::Unspecified)
        );
        let method: PayoutMethod = serde_json::from_str(r#""PAYOUT_METHOD_PAYPAL""#).unwrap();
        assert_eq!(method.0, payment::PayoutMethod::Paypal);
    }
}
