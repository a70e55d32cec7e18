//! The notification domain, with no I/O: the facts other services' events report, who is told
//! about each, and in which words.

use uuid::Uuid;

use service_runtime::money::display;

/// What a notification tells its user about (`NotificationKind` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CampaignCreated,
    CampaignStatusChanged,
    CampaignAccepted,
    EvidenceSubmitted,
    CommissionEarned,
    PayoutRequested,
    PayoutCompleted,
    PayoutFailed,
    PayoutRejected,
    CommissionApproved,
    CommissionDeclined,
    CommissionReversed,
    WebhookEndpointDisabled,
}

impl Kind {
    const ALL: [Self; 13] = [
        Self::CampaignCreated,
        Self::CampaignStatusChanged,
        Self::CampaignAccepted,
        Self::EvidenceSubmitted,
        Self::CommissionEarned,
        Self::PayoutRequested,
        Self::PayoutCompleted,
        Self::PayoutFailed,
        Self::PayoutRejected,
        Self::CommissionApproved,
        Self::CommissionDeclined,
        Self::CommissionReversed,
        Self::WebhookEndpointDisabled,
    ];

    /// The stored name (the `notifications.kind` check lists them).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CampaignCreated => "campaign_created",
            Self::CampaignStatusChanged => "campaign_status_changed",
            Self::CampaignAccepted => "campaign_accepted",
            Self::EvidenceSubmitted => "evidence_submitted",
            Self::CommissionEarned => "commission_earned",
            Self::PayoutRequested => "payout_requested",
            Self::PayoutCompleted => "payout_completed",
            Self::PayoutFailed => "payout_failed",
            Self::PayoutRejected => "payout_rejected",
            Self::CommissionApproved => "commission_approved",
            Self::CommissionDeclined => "commission_declined",
            Self::CommissionReversed => "commission_reversed",
            Self::WebhookEndpointDisabled => "webhook_endpoint_disabled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What the service keeps of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: Uuid,
    pub advertiser_id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    Active,
    Paused,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display(self.amount_minor, &self.currency))
    }
}

/// Where a payout stands, for the payout events that tell its creator something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutStage {
    Requested,
    Completed,
    Failed,
    Rejected,
}

/// What became of a pending commission after it was calculated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Payable now: its hold ended, or (`early`) the advertiser approved it before.
    Approved { early: bool },
    /// The advertiser declined it, for `reason`.
    Declined { reason: String },
    /// A refund or chargeback of its purchase took (part of) it back: `reversed` before it was
    /// paid, `clawed_back` after it was reserved or paid (netted against the next payout). Either
    /// may be zero.
    Reversed {
        chargeback: bool,
        reason: String,
        reversed: Money,
        clawed_back: Money,
    },
}

/// What a domain event reports, as far as notifications care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    CampaignCreated(Campaign),
    CampaignStatusChanged {
        campaign: Campaign,
        from: CampaignStatus,
        to: CampaignStatus,
    },
    CampaignAccepted {
        campaign_id: Uuid,
        creator_id: Uuid,
    },
    EvidenceSubmitted {
        evidence_id: Uuid,
        campaign_id: Uuid,
        /// "a photo", "a video", "a link" or "evidence".
        what: &'static str,
    },
    CommissionEarned {
        commission_id: Uuid,
        campaign_id: Uuid,
        creator_id: Uuid,
        amount: Money,
    },
    CommissionDecided {
        commission_id: Uuid,
        campaign_id: Uuid,
        creator_id: Uuid,
        /// The commission's whole amount.
        amount: Money,
        decision: Decision,
    },
    Payout {
        stage: PayoutStage,
        payout_id: Uuid,
        creator_id: Uuid,
        amount: Money,
        failure_reason: String,
    },
    /// The webhook service stopped sending to an endpoint (it answered 410 Gone, or its messages
    /// failed too many times in a row); its owner (an advertiser or a creator) is told.
    WebhookEndpointDisabled {
        endpoint_id: Uuid,
        owner_id: Uuid,
        url: String,
        /// Why, in the webhook service's words; may be empty.
        reason: String,
    },
    /// An event that tells nobody anything (views, clicks, reservations, rejections, ...).
    Nothing,
}

/// How much a fact depends on the campaign it is about being known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Its advertiser is addressed, or its name is quoted: the fact waits (is retried) until the
    /// campaign is known. A commission always waits: the commission service computed it from the
    /// campaign's own events, so they arrive here too, and what the creator reads must not depend
    /// on which of two topics was faster.
    Required(Uuid),
}

impl Fact {
    /// The campaign the event carries in full (to keep).
    pub fn campaign(&self) -> Option<&Campaign> {
        match self {
            Self::CampaignCreated(c) | Self::CampaignStatusChanged { campaign: c, .. } => Some(c),
            _ => None,
        }
    }

    /// The stored campaign the notifications need, if any.
    pub fn needs(&self) -> Option<Need> {
        match self {
            Self::CampaignAccepted { campaign_id, .. }
            | Self::EvidenceSubmitted { campaign_id, .. }
            | Self::CommissionEarned { campaign_id, .. }
            | Self::CommissionDecided { campaign_id, .. } => Some(Need::Required(*campaign_id)),
            _ => None,
        }
    }
}

/// A notification before it has an id, a sequence and a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub user_id: Uuid,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub subject_type: &'static str,
    pub subject_id: Uuid,
}

/// Aggregate types, as the publishing services name them.
pub const CAMPAIGN: &str = "campaign";
pub const EVIDENCE: &str = "evidence";
pub const COMMISSION: &str = "commission";
pub const PAYOUT: &str = "payout";
/// The webhook service names it `endpoint`; here it is qualified, next to the others.
pub const WEBHOOK_ENDPOINT: &str = "webhook_endpoint";

/// The campaign a required-campaign fact is about was not known (its events have not arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCampaign(pub Uuid);

/// A URL's scheme and host (and port), without user info, path, query or fragment.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

/// The notifications a fact causes, given the stored campaign it needs (see [`Fact::needs`]),
/// ordered by user id (the order their streams are locked in, so two events never deadlock).
pub fn derive(fact: &Fact, known: Option<&Campaign>) -> Result<Vec<Draft>, UnknownCampaign> {
    let required = |id: Uuid| known.filter(|c| c.id == id).ok_or(UnknownCampaign(id));
    let mut drafts = match fact {
        Fact::CampaignCreated(c) => vec![Draft {
            user_id: c.advertiser_id,
            kind: Kind::CampaignCreated,
            title: "Campaign created".into(),
            body: format!(
                "Your campaign \"{}\" is live: creators can now accept it.",
                c.name
            ),
            subject_type: CAMPAIGN,
            subject_id: c.id,
        }],
        Fact::CampaignStatusChanged { campaign, from, to } => {
            let (title, body) = match (from, to) {
                (_, CampaignStatus::Paused) => ("Campaign paused", "is paused"),
                (CampaignStatus::Paused, CampaignStatus::Active) => {
                    ("Campaign resumed", "is active again")
                }
                (_, CampaignStatus::Active) => ("Campaign active", "is active"),
                (_, CampaignStatus::Closed) => (
                    "Campaign closed",
                    "is closed: it takes no new creators and earns no new commissions",
                ),
            };
            vec![Draft {
                user_id: campaign.advertiser_id,
                kind: Kind::CampaignStatusChanged,
                title: title.into(),
                body: format!("Your campaign \"{}\" {body}.", campaign.name),
                subject_type: CAMPAIGN,
                subject_id: campaign.id,
            }]
        }
        Fact::CampaignAccepted {
            campaign_id,
            creator_id,
        } => {
            let c = required(*campaign_id)?;
            vec![
                Draft {
                    user_id: *creator_id,
                    kind: Kind::CampaignAccepted,
                    title: "Campaign accepted".into(),
                    body: format!(
                        "You joined the campaign \"{}\". Share your link to start earning.",
                        c.name
                    ),
                    subject_type: CAMPAIGN,
                    subject_id: c.id,
                },
                Draft {
                    user_id: c.advertiser_id,
                    kind: Kind::CampaignAccepted,
                    title: "A creator joined your campaign".into(),
                    body: format!("A creator accepted the terms of \"{}\".", c.name),
                    subject_type: CAMPAIGN,
                    subject_id: c.id,
                },
            ]
        }
        Fact::EvidenceSubmitted {
            evidence_id,
            campaign_id,
            what,
        } => {
            let c = required(*campaign_id)?;
            vec![Draft {
                user_id: c.advertiser_id,
                kind: Kind::EvidenceSubmitted,
                title: "New evidence submitted".into(),
                body: format!("A creator submitted {what} as evidence for \"{}\".", c.name),
                subject_type: EVIDENCE,
                subject_id: *evidence_id,
            }]
        }
        Fact::CommissionEarned {
            commission_id,
            campaign_id,
            creator_id,
            amount,
        } => {
            let on = required(*campaign_id)?;
            vec![Draft {
                user_id: *creator_id,
                kind: Kind::CommissionEarned,
                title: "Commission earned".into(),
                body: format!("You earned {amount} from a purchase on \"{}\".", on.name),
                subject_type: COMMISSION,
                subject_id: *commission_id,
            }]
        }
        Fact::CommissionDecided {
            commission_id,
            campaign_id,
            creator_id,
            amount,
            decision,
        } => {
            let on = required(*campaign_id)?;
            let (kind, title, body) = decided(decision, amount, &on.name);
            vec![Draft {
                user_id: *creator_id,
                kind,
                title: title.into(),
                body,
                subject_type: COMMISSION,
                subject_id: *commission_id,
            }]
        }
        Fact::Payout {
            stage,
            payout_id,
            creator_id,
            amount,
            failure_reason,
        } => {
            let because = if failure_reason.is_empty() {
                String::new()
            } else {
                format!(" ({failure_reason})")
            };
            let (kind, title, body) = match stage {
                PayoutStage::Requested => (
                    Kind::PayoutRequested,
                    "Payout requested",
                    format!("We received your request for a payout of {amount}."),
                ),
                PayoutStage::Completed => (
                    Kind::PayoutCompleted,
                    "Payout completed",
                    format!("Your payout of {amount} has been paid."),
                ),
                PayoutStage::Failed => (
                    Kind::PayoutFailed,
                    "Payout failed",
                    format!(
                        "Your payout of {amount} could not be paid{because}. The amount is back in your available balance."
                    ),
                ),
                PayoutStage::Rejected => (
                    Kind::PayoutRejected,
                    "Payout rejected",
                    format!(
                        "Your payout request of {amount} was rejected{because}. Nothing was reserved."
                    ),
                ),
            };
            vec![Draft {
                user_id: *creator_id,
                kind,
                title: title.into(),
                body,
                subject_type: PAYOUT,
                subject_id: *payout_id,
            }]
        }
        Fact::WebhookEndpointDisabled {
            endpoint_id,
            owner_id,
            url,
            reason,
        } => {
            let because = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            // Only the scheme and host: a partner's path or query may hold a token.
            let url = origin(url);
            vec![Draft {
                user_id: *owner_id,
                kind: Kind::WebhookEndpointDisabled,
                title: "Webhook endpoint disabled".into(),
                body: format!(
                    "We stopped sending webhooks to your endpoint {url}{because}. Once it works again, enable it: PATCH /api/v1/webhooks/endpoints/{endpoint_id} with {{\"enabled\": true}}. The messages waiting for it are sent then."
                ),
                subject_type: WEBHOOK_ENDPOINT,
                subject_id: *endpoint_id,
            }]
        }
        Fact::Nothing => Vec::new(),
    };
    drafts.sort_by_key(|d| d.user_id);
    Ok(drafts)
}

/// A commission decision's kind, title and body, for the creator: `amount` is the commission's,
/// `campaign` names the campaign.
fn decided(decision: &Decision, amount: &Money, campaign: &str) -> (Kind, &'static str, String) {
    let because = |reason: &str| {
        if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        }
    };
    match decision {
        Decision::Approved { early: false } => (
            Kind::CommissionApproved,
            "Commission approved",
            format!(
                "Your commission of {amount} on \"{campaign}\" is approved: its hold is over and it is in your available balance."
            ),
        ),
        Decision::Approved { early: true } => (
            Kind::CommissionApproved,
            "Commission approved",
            format!(
                "The advertiser approved your commission of {amount} on \"{campaign}\" before its hold ended: it is in your available balance."
            ),
        ),
        Decision::Declined { reason } => {
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            (
                Kind::CommissionDeclined,
                "Commission declined",
                format!(
                    "The advertiser declined your commission of {amount} on \"{campaign}\"{reason}. It earns nothing."
                ),
            )
        }
        Decision::Reversed {
            chargeback,
            reason,
            reversed,
            clawed_back,
        } => {
            let what = if *chargeback {
                "A chargeback"
            } else {
                "A refund"
            };
            let because = because(reason);
            let (title, body) = match (reversed.amount_minor > 0, clawed_back.amount_minor > 0) {
                (_, true) => {
                    let before = if reversed.amount_minor > 0 {
                        format!(" and {reversed} before it was paid")
                    } else {
                        String::new()
                    };
                    (
                        "Commission clawed back",
                        format!(
                            "{what} of the purchase on \"{campaign}\"{because} took back {clawed_back} of your commission of {amount} after it was paid out or reserved{before}. The {clawed_back} will be deducted from your next payout."
                        ),
                    )
                }
                (true, false) => (
                    "Commission reversed",
                    format!(
                        "{what} of the purchase on \"{campaign}\"{because} took back {reversed} of your commission of {amount} before it was paid."
                    ),
                ),
                (false, false) => (
                    "Commission reversed",
                    format!(
                        "{what} of the purchase on \"{campaign}\"{because} was recorded; it took nothing back from your commission of {amount}."
                    ),
                ),
            };
            (Kind::CommissionReversed, title, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> Campaign {
        Campaign {
            id: Uuid::from_u128(1),
            advertiser_id: Uuid::from_u128(2),
            name: "Summer launch".into(),
        }
    }

    fn money(amount_minor: i64, currency: &str) -> Money {
        Money {
            amount_minor,
            currency: currency.into(),
        }
    }

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("unknown"), None);
    }

    #[test]
    fn an_acceptance_tells_the_creator_and_the_advertiser() {
        let creator = Uuid::from_u128(3);
        let fact = Fact::CampaignAccepted {
            campaign_id: campaign().id,
            creator_id: creator,
        };
        assert_eq!(fact.needs(), Some(Need::Required(campaign().id)));
        let drafts = derive(&fact, Some(&campaign())).unwrap_or_default();
        let users: Vec<Uuid> = drafts.iter().map(|d| d.user_id).collect();
        assert_eq!(
            users,
            [campaign().advertiser_id, creator],
            "ordered by user id"
        );
        assert!(drafts.iter().all(|d| d.kind == Kind::CampaignAccepted));
        assert!(drafts[1].body.contains("\"Summer launch\""));
    }

    #[test]
    fn an_acceptance_of_an_unknown_campaign_waits_for_the_campaign() {
        let fact = Fact::CampaignAccepted {
            campaign_id: Uuid::from_u128(9),
            creator_id: Uuid::from_u128(3),
        };
        assert_eq!(
            derive(&fact, Some(&campaign())),
            Err(UnknownCampaign(Uuid::from_u128(9)))
        );
        assert_eq!(
            derive(&fact, None),
            Err(UnknownCampaign(Uuid::from_u128(9)))
        );
    }

    #[test]
    fn a_commission_quotes_the_amount_in_the_currency_s_minor_unit_and_the_campaign_if_known() {
        let fact = Fact::CommissionEarned {
            commission_id: Uuid::from_u128(4),
            campaign_id: campaign().id,
            creator_id: Uuid::from_u128(3),
            amount: money(250, "USD"),
        };
        let known = derive(&fact, Some(&campaign())).unwrap_or_default();
        assert_eq!(
            known[0].body,
            "You earned 2.50 USD from a purchase on \"Summer launch\"."
        );
        let yen = Fact::CommissionEarned {
            commission_id: Uuid::from_u128(4),
            campaign_id: campaign().id,
            creator_id: Uuid::from_u128(3),
            amount: money(250, "JPY"),
        };
        assert_eq!(
            derive(&yen, None),
            Err(UnknownCampaign(campaign().id)),
            "a commission waits for its campaign"
        );
        let known = derive(&yen, Some(&campaign())).unwrap_or_default();
        assert_eq!(
            (known[0].subject_type, known[0].subject_id),
            (COMMISSION, Uuid::from_u128(4))
        );
    }

    #[test]
    fn a_commission_s_approval_decline_and_reversal_tell_its_creator_with_the_reason() {
        let told = |decision| {
            let fact = Fact::CommissionDecided {
                commission_id: Uuid::from_u128(4),
                campaign_id: campaign().id,
                creator_id: Uuid::from_u128(3),
                amount: money(500, "EUR"),
                decision,
            };
            assert_eq!(fact.needs(), Some(Need::Required(campaign().id)));
            assert_eq!(derive(&fact, None), Err(UnknownCampaign(campaign().id)));
            let mut drafts = derive(&fact, Some(&campaign())).unwrap_or_default();
            assert_eq!(drafts.len(), 1);
            let d = drafts.remove(0);
            assert_eq!(
                (d.user_id, d.subject_type, d.subject_id),
                (Uuid::from_u128(3), COMMISSION, Uuid::from_u128(4))
            );
            (d.kind, d.title, d.body)
        };
        assert_eq!(
            told(Decision::Approved { early: false }),
            (
                Kind::CommissionApproved,
                "Commission approved".into(),
                "Your commission of 5.00 EUR on \"Summer launch\" is approved: its hold is over and it is in your available balance.".into()
            )
        );
        assert!(
            told(Decision::Approved { early: true })
                .2
                .starts_with("The advertiser approved your commission of 5.00 EUR")
        );
        assert_eq!(
            told(Decision::Declined {
                reason: "the order was cancelled".into()
            }),
            (
                Kind::CommissionDeclined,
                "Commission declined".into(),
                "The advertiser declined your commission of 5.00 EUR on \"Summer launch\": the order was cancelled. It earns nothing.".into()
            )
        );
        let reversed = |reversed, clawed_back, chargeback| {
            told(Decision::Reversed {
                chargeback,
                reason: "damaged on arrival".into(),
                reversed: money(reversed, "EUR"),
                clawed_back: money(clawed_back, "EUR"),
            })
        };
        assert_eq!(
            reversed(200, 0, false),
            (
                Kind::CommissionReversed,
                "Commission reversed".into(),
                "A refund of the purchase on \"Summer launch\" (damaged on arrival) took back 2.00 EUR of your commission of 5.00 EUR before it was paid.".into()
            )
        );
        assert_eq!(
            reversed(0, 500, true),
            (
                Kind::CommissionReversed,
                "Commission clawed back".into(),
                "A chargeback of the purchase on \"Summer launch\" (damaged on arrival) took back 5.00 EUR of your commission of 5.00 EUR after it was paid out or reserved. The 5.00 EUR will be deducted from your next payout.".into()
            )
        );
        assert!(
            reversed(200, 300, false)
                .2
                .contains("took back 3.00 EUR of your commission of 5.00 EUR after it was paid out or reserved and 2.00 EUR before it was paid.")
        );
        assert_eq!(reversed(0, 0, false).1, "Commission reversed");
    }

    #[test]
    fn status_changes_are_told_in_words() {
        let change = |from, to| {
            let fact = Fact::CampaignStatusChanged {
                campaign: campaign(),
                from,
                to,
            };
            derive(&fact, None)
                .unwrap_or_default()
                .pop()
                .map(|d| d.title)
                .unwrap_or_default()
        };
        use CampaignStatus::*;
        assert_eq!(change(Active, Paused), "Campaign paused");
        assert_eq!(change(Paused, Active), "Campaign resumed");
        assert_eq!(change(Paused, Closed), "Campaign closed");
    }

    #[test]
    fn payout_stages_tell_the_creator() {
        let payout = |stage, reason: &str| Fact::Payout {
            stage,
            payout_id: Uuid::from_u128(5),
            creator_id: Uuid::from_u128(3),
            amount: money(1500, "KWD"),
            failure_reason: reason.into(),
        };
        let failed =
            derive(&payout(PayoutStage::Failed, "card declined"), None).unwrap_or_default();
        assert_eq!(failed[0].kind, Kind::PayoutFailed);
        assert_eq!(
            failed[0].body,
            "Your payout of 1.500 KWD could not be paid (card declined). The amount is back in your available balance."
        );
        let rejected = derive(&payout(PayoutStage::Rejected, ""), None).unwrap_or_default();
        assert_eq!(
            (
                rejected[0].kind,
                rejected[0].user_id,
                rejected[0].subject_type
            ),
            (Kind::PayoutRejected, Uuid::from_u128(3), PAYOUT)
        );
    }

    #[test]
    fn an_endpoint_is_named_by_its_origin_only_its_path_and_query_may_hold_tokens() {
        assert_eq!(
            origin("https://user:pw@hooks.example.com:8443/services/T0/B0/secret?token=x#f"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(origin("hooks.example.com/x"), "hooks.example.com");
    }

    #[test]
    fn a_disabled_webhook_endpoint_tells_its_owner_why_and_how_to_enable_it_again() {
        let disabled = |reason: &str| Fact::WebhookEndpointDisabled {
            endpoint_id: Uuid::from_u128(6),
            owner_id: Uuid::from_u128(7),
            url: "https://partner.example/hooks".into(),
            reason: reason.into(),
        };
        let fact = disabled("the endpoint answered 410 Gone");
        assert_eq!(fact.needs(), None, "it needs no campaign");
        let drafts = derive(&fact, None).unwrap_or_default();
        assert_eq!(
            drafts,
            [Draft {
                user_id: Uuid::from_u128(7),
                kind: Kind::WebhookEndpointDisabled,
                title: "Webhook endpoint disabled".into(),
                body: "We stopped sending webhooks to your endpoint https://partner.example: the endpoint answered 410 Gone. Once it works again, enable it: PATCH /api/v1/webhooks/endpoints/00000000-0000-0000-0000-000000000006 with {\"enabled\": true}. The messages waiting for it are sent then.".into(),
                subject_type: WEBHOOK_ENDPOINT,
                subject_id: Uuid::from_u128(6),
            }]
        );
        let unexplained = derive(&disabled(""), Some(&campaign())).unwrap_or_default();
        assert!(
            unexplained[0].body.starts_with(
                "We stopped sending webhooks to your endpoint https://partner.example. Once"
            ),
            "{}",
            unexplained[0].body
        );
    }

    #[test]
    fn other_events_tell_nobody() {
        assert_eq!(derive(&Fact::Nothing, None), Ok(Vec::new()));
    }
}
