//! The platform's wire types: prost messages, tonic clients and servers, proto3 JSON (pbjson)
//! impls, and the encoded descriptor set for gRPC reflection. Generated from `proto/affiliate/`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every platform proto (and the well-known types they use).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// One protobuf package: its prost and tonic code and its proto3 JSON impls.
macro_rules! package {
    ($package:literal) => {
        pub mod v1 {
            tonic::include_proto!($package);
            include!(concat!(env!("OUT_DIR"), "/", $package, ".serde.rs"));
        }
    };
}

pub mod affiliate {
    pub mod common {
        package!("affiliate.common.v1");
    }
    pub mod campaign {
        package!("affiliate.campaign.v1");
    }
    pub mod tracking {
        package!("affiliate.tracking.v1");
    }
    pub mod commission {
        package!("affiliate.commission.v1");
    }
    pub mod notification {
        package!("affiliate.notification.v1");
    }
    pub mod payment {
        package!("affiliate.payment.v1");
    }
    pub mod analytics {
        package!("affiliate.analytics.v1");
    }
    pub mod webhook {
        package!("affiliate.webhook.v1");
    }
}

pub use affiliate::analytics::v1 as analytics;
pub use affiliate::campaign::v1 as campaign;
pub use affiliate::commission::v1 as commission;
pub use affiliate::common::v1 as common;
pub use affiliate::notification::v1 as notification;
pub use affiliate::payment::v1 as payment;
pub use affiliate::tracking::v1 as tracking;
pub use affiliate::webhook::v1 as webhook;

/// The envelope of a service's command topic: a command (a oneof) with its metadata.
pub trait CommandEnvelope: prost::Message + Default + 'static {
    type Command: Send;
    /// The service whose command topic (`{SERVICE}-commands`) carries this envelope.
    const SERVICE: &'static str;
    /// The envelope of `command` with `metadata`.
    fn wrap(metadata: common::MessageMetadata, command: Self::Command) -> Self;
    /// The metadata and the command it carries.
    fn into_parts(self) -> (Option<common::MessageMetadata>, Option<Self::Command>);
    /// The versioned type name of `command`.
    fn command_type(command: &Self::Command) -> &'static str;
}

/// The envelope of a service's events topic: an event (a oneof) with its metadata.
pub trait EventEnvelope: prost::Message + Default + 'static {
    type Event: Send;
    /// The service whose events topic (`{SERVICE}-events`) carries this envelope.
    const SERVICE: &'static str;
    /// The envelope of `event` with `metadata`.
    fn wrap(metadata: common::MessageMetadata, event: Self::Event) -> Self;
    /// The versioned type name of `event`.
    fn event_type(event: &Self::Event) -> &'static str;
    /// The service's event that its command door refused a command.
    fn command_rejected(rejected: common::CommandRejected) -> Self::Event;
}

/// The versioned type name of every command and event, part of the contract like the messages
/// themselves (the sender sets it, the receiving service's door or feed reads it).
mod message_types {
    use super::affiliate::{campaign, commission, payment, tracking, webhook};
    use super::{CommandEnvelope, EventEnvelope};

    macro_rules! commands {
        ($service:literal, $envelope:ty, $command:ty) => {
            impl CommandEnvelope for $envelope {
                type Command = $command;
                const SERVICE: &'static str = $service;
                fn wrap(metadata: super::common::MessageMetadata, command: $command) -> Self {
                    Self {
                        metadata: Some(metadata),
                        command: Some(command),
                    }
                }
                fn into_parts(self) -> (Option<super::common::MessageMetadata>, Option<$command>) {
                    (self.metadata, self.command)
                }
                fn command_type(command: &$command) -> &'static str {
                    command.message_type()
                }
            }
        };
    }
    macro_rules! events {
        ($service:literal, $envelope:ty, $event:ty) => {
            impl EventEnvelope for $envelope {
                type Event = $event;
                const SERVICE: &'static str = $service;
                fn wrap(metadata: super::common::MessageMetadata, event: $event) -> Self {
                    Self {
                        metadata: Some(metadata),
                        event: Some(event),
                    }
                }
                fn event_type(event: &$event) -> &'static str {
                    event.message_type()
                }
                fn command_rejected(rejected: super::common::CommandRejected) -> $event {
                    <$event>::CommandRejected(rejected)
                }
            }
        };
    }
    events!(
        "campaign",
        campaign::v1::CampaignEvent,
        campaign::v1::campaign_event::Event
    );
    events!(
        "tracking",
        tracking::v1::TrackingEventEnvelope,
        tracking::v1::tracking_event_envelope::Event
    );
    events!(
        "commission",
        commission::v1::CommissionEvent,
        commission::v1::commission_event::Event
    );
    events!(
        "payment",
        payment::v1::PaymentEvent,
        payment::v1::payment_event::Event
    );

    events!(
        "webhook",
        webhook::v1::WebhookEvent,
        webhook::v1::webhook_event::Event
    );

    impl webhook::v1::webhook_event::Event {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::EndpointDisabled(_) => "webhook.endpoint_disabled.v1",
                Self::CommandRejected(_) => "webhook.command_rejected.v1",
            }
        }
    }

    impl campaign::v1::campaign_event::Event {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::CampaignCreated(_) => "campaign.created.v1",
                Self::VideoAdded(_) => "video.added.v1",
                Self::CampaignAccepted(_) => "campaign.accepted.v1",
                Self::CampaignStatusChanged(_) => "campaign.status_changed.v1",
                Self::CommandRejected(_) => "campaign.command_rejected.v1",
                Self::BudgetUpdated(_) => "campaign.budget_updated.v1",
                Self::TrackingUpdated(_) => "campaign.tracking_updated.v1",
            }
        }
    }

    impl tracking::v1::tracking_event_envelope::Event {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::TrackingEventCreated(_) => "tracking_event.created.v1",
                Self::EvidenceSubmitted(_) => "evidence.submitted.v1",
                Self::CommandRejected(_) => "tracking.command_rejected.v1",
                Self::LinkCreated(_) => "link.created.v1",
                Self::LinkDisabled(_) => "link.disabled.v1",
                Self::ClickRecorded(_) => "click.recorded.v1",
                Self::ConversionRecorded(_) => "conversion.recorded.v1",
                Self::ConversionReviewed(_) => "conversion.reviewed.v1",
                Self::ConversionRefunded(_) => "conversion.refunded.v1",
            }
        }
    }

    impl commission::v1::commission_event::Event {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::CommissionCalculated(_) => "commission.calculated.v1",
                Self::CommissionRejected(_) => "commission.rejected.v1",
                Self::CommissionReserved(_) => "commission.reserved.v1",
                Self::CommissionReleased(_) => "commission.released.v1",
                Self::CommissionSettled(_) => "commission.settled.v1",
                Self::CommandRejected(_) => "commission.command_rejected.v1",
                Self::BudgetExhausted(_) => "campaign.budget_exhausted.v1",
                Self::CommissionApproved(_) => "commission.approved.v1",
                Self::CommissionDeclined(_) => "commission.declined.v1",
                Self::CommissionReversed(_) => "commission.reversed.v1",
            }
        }
    }

    impl payment::v1::payment_event::Event {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::PayoutRequested(_) => "payout.requested.v1",
                Self::PaymentProcessed(_) => "payment.processed.v1",
                Self::PaymentFailed(_) => "payment.failed.v1",
                Self::PayoutRejected(_) => "payout.rejected.v1",
                Self::PayoutCompleted(_) => "payout.completed.v1",
                Self::CommandRejected(_) => "payment.command_rejected.v1",
                Self::PayoutProcessing(_) => "payout.processing.v1",
                Self::PayoutFailed(_) => "payout.failed.v1",
            }
        }
    }

    commands!(
        "campaign",
        campaign::v1::CampaignCommand,
        campaign::v1::campaign_command::Command
    );
    commands!(
        "tracking",
        tracking::v1::TrackingCommand,
        tracking::v1::tracking_command::Command
    );
    commands!(
        "commission",
        commission::v1::CommissionCommand,
        commission::v1::commission_command::Command
    );
    commands!(
        "payment",
        payment::v1::PaymentCommand,
        payment::v1::payment_command::Command
    );

    impl campaign::v1::campaign_command::Command {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::CreateCampaign(_) => "campaign.create.command.v1",
                Self::AddVideo(_) => "campaign.add_video.command.v1",
                Self::AcceptCampaign(_) => "campaign.accept.command.v1",
                Self::PauseCampaign(_) => "campaign.pause.command.v1",
                Self::ResumeCampaign(_) => "campaign.resume.command.v1",
                Self::CloseCampaign(_) => "campaign.close.command.v1",
                Self::UpdateBudget(_) => "campaign.update_budget.command.v1",
                Self::UpdateTracking(_) => "campaign.update_tracking.command.v1",
            }
        }
    }

    impl tracking::v1::tracking_command::Command {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::CreateEvent(_) => "tracking.create_event.command.v1",
                Self::SubmitEvidence(_) => "tracking.submit_evidence.command.v1",
                Self::CreateLink(_) => "tracking.create_link.command.v1",
                Self::DisableLink(_) => "tracking.disable_link.command.v1",
                Self::RecordConversion(_) => "tracking.record_conversion.command.v1",
                Self::ReviewConversion(_) => "tracking.review_conversion.command.v1",
                Self::RefundConversion(_) => "tracking.refund_conversion.command.v1",
            }
        }
    }

    impl commission::v1::commission_command::Command {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::Calculate(_) => "commission.calculate.command.v1",
                Self::Reserve(_) => "commission.reserve.command.v1",
                Self::Release(_) => "commission.release.command.v1",
                Self::Settle(_) => "commission.settle.command.v1",
                Self::Approve(_) => "commission.approve.command.v1",
                Self::Decline(_) => "commission.decline.command.v1",
                Self::Reverse(_) => "commission.reverse.command.v1",
            }
        }
    }

    impl payment::v1::payment_command::Command {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::RequestPayout(_) => "payment.request_payout.command.v1",
            }
        }
    }
}
