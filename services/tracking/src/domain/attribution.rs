//! Attribution: a view, click or purchase counts only for a campaign that exists and is active,
//! and a creator who has accepted it, as tracking's copy of the campaigns knows them.

/// A campaign's status in tracking's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    Active,
    Paused,
    Closed,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// What the copy knows of a campaign and one creator: `None` if the campaign is not in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub status: CampaignStatus,
    pub accepted: bool,
}

/// Why an event is not attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unattributed {
    #[error("no such campaign")]
    UnknownCampaign,
    #[error("the campaign is {}: it takes no views, clicks or purchases", .0.as_str())]
    NotActive(CampaignStatus),
    #[error("the creator has not accepted the campaign")]
    NotAccepted,
}

pub fn check_attribution(standing: Option<Standing>) -> Result<(), Unattributed> {
    match standing {
        None => Err(Unattributed::UnknownCampaign),
        Some(Standing { status, .. }) if status != CampaignStatus::Active => {
            Err(Unattributed::NotActive(status))
        }
        Some(Standing {
            accepted: false, ..
        }) => Err(Unattributed::NotAccepted),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_active_campaign_the_creator_accepted_takes_events() {
        let standing = |status, accepted| Some(Standing { status, accepted });
        assert_eq!(
            check_attribution(standing(CampaignStatus::Active, true)),
            Ok(())
        );
        assert_eq!(check_attribution(None), Err(Unattributed::UnknownCampaign));
        assert_eq!(
            check_attribution(standing(CampaignStatus::Active, false)),
            Err(Unattributed::NotAccepted)
        );
        for status in [CampaignStatus::Paused, CampaignStatus::Closed] {
            assert_eq!(
                check_attribution(standing(status, true)),
                Err(Unattributed::NotActive(status))
            );
        }
    }

    #[test]
    fn statuses_round_trip_through_their_text_form() {
        for status in [
            CampaignStatus::Active,
            CampaignStatus::Paused,
            CampaignStatus::Closed,
        ] {
            assert_eq!(CampaignStatus::parse(status.as_str()), Some(status));
        }
    }
}
