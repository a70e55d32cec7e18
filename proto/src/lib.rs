//! The platform's wire types: prost messages, tonic clients and servers, proto3 JSON (pbjson)
//! impls, and the encoded descriptor set for gRPC reflection. Generated from `proto/affiliate/`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every platform proto (and the well-known types they use).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub mod affiliate {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("affiliate.common.v1");
            include!(concat!(env!("OUT_DIR"), "/affiliate.common.v1.serde.rs"));
        }
    }
    pub mod campaign {
        pub mod v1 {
            tonic::include_proto!("affiliate.campaign.v1");
            include!(concat!(env!("OUT_DIR"), "/affiliate.campaign.v1.serde.rs"));
        }
    }
    pub mod tracking {
        pub mod v1 {
            tonic::include_proto!("affiliate.tracking.v1");
            include!(concat!(env!("OUT_DIR"), "/affiliate.tracking.v1.serde.rs"));
        }
    }
    pub mod commission {
        pub mod v1 {
            tonic::include_proto!("affiliate.commission.v1");
            include!(concat!(
                env!("OUT_DIR"),
                "/affiliate.commission.v1.serde.rs"
            ));
        }
    }
    pub mod notification {
        pub mod v1 {
            tonic::include_proto!("affiliate.notification.v1");
            include!(concat!(
                env!("OUT_DIR"),
                "/affiliate.notification.v1.serde.rs"
            ));
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("affiliate.payment.v1");
            include!(concat!(env!("OUT_DIR"), "/affiliate.payment.v1.serde.rs"));
        }
    }
}

pub use affiliate::campaign::v1 as campaign;
pub use affiliate::commission::v1 as commission;
pub use affiliate::common::v1 as common;
pub use affiliate::notification::v1 as notification;
pub use affiliate::payment::v1 as payment;
pub use affiliate::tracking::v1 as tracking;

/// The versioned type name of every command, part of the contract like the messages themselves
/// (the sender sets it, the receiving service's door reports it).
mod command_types {
    use super::affiliate::{campaign, commission, payment, tracking};

    impl campaign::v1::campaign_command::Command {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::CreateCampaign(_) => "campaign.create.command.v1",
                Self::AddVideo(_) => "campaign.add_video.command.v1",
                Self::AcceptCampaign(_) => "campaign.accept.command.v1",
                Self::PauseCampaign(_) => "campaign.pause.command.v1",
                Self::ResumeCampaign(_) => "campaign.resume.command.v1",
                Self::CloseCampaign(_) => "campaign.close.command.v1",
            }
        }
    }

    impl tracking::v1::tracking_command::Command {
        pub fn message_type(&self) -> &'static str {
            match self {
                Self::CreateEvent(_) => "tracking.create_event.command.v1",
                Self::SubmitEvidence(_) => "tracking.submit_evidence.command.v1",
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
