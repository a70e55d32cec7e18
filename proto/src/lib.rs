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
pub use affiliate::payment::v1 as payment;
pub use affiliate::tracking::v1 as tracking;
