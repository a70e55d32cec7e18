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
}

impl Kind {
    const ALL: [Self; 9] = [
        Self::CampaignCreated,
        Self::CampaignStatusChanged,
        Self::CampaignAccepted,
        Self::EvidenceSubmitted,
        Self::CommissionEarned,
        Self::PayoutRequested,
        Self::PayoutCompleted,
        Self::PayoutFailed,
        Self::PayoutRejected,
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
    Payout {
        stage: PayoutStage,
        payout_id: Uuid,
        creator_id: Uuid,
        amount: Money,
        failure_reason: String,
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
            | Self::CommissionEarned { campaign_id, .. } => Some(Need::Required(*campaign_id)),
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

/// The campaign a required-campaign fact is about was not known (its events have not arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCampaign(pub Uuid);

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
        Fact::Nothing => Vec::new(),
    };
    drafts.sort_by_key(|d| d.user_id);
    Ok(drafts)
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
    fn other_events_tell_nobody() {
        assert_eq!(derive(&Fact::Nothing, None), Ok(Vec::new()));
    }
}
