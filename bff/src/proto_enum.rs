//! Proto enums at the REST edge, taken from the proto crate rather than mirrored by hand: a body
//! writes and reads an enum by its proto value name (`CAMPAIGN_STATUS_ACTIVE`, as proto3 JSON
//! does), and the OpenAPI document lists the values the proto declares, read from the descriptor
//! set the proto crate embeds. A value added to a `.proto` file reaches the REST edge and its
//! document with no change here.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use affiliate_proto::{campaign, commission, notification, payment, tracking, webhook};

/// A prost enum the REST edge carries.
pub trait RestEnum: Copy + Eq + Default + std::fmt::Debug + TryFrom<i32> + 'static {
    /// The enum's fully qualified proto name, e.g. `affiliate.campaign.v1.CampaignStatus`.
    const PROTO_NAME: &'static str;
    /// Its name in the OpenAPI document: the proto name without its package, e.g.
    /// `CampaignStatus`.
    fn schema_name() -> &'static str {
        Self::PROTO_NAME
            .rsplit_once('.')
            .map_or(Self::PROTO_NAME, |(_, name)| name)
    }
    /// Its proto value name (prost's `as_str_name`).
    fn name(self) -> &'static str;
    /// The value of a proto value name (prost's `from_str_name`).
    fn from_name(name: &str) -> Option<Self>;
}

/// Implements [`RestEnum`] for prost enums of the proto crate.
macro_rules! rest_enums {
    ($($proto:ty => $full:literal),+ $(,)?) => {$(
        impl RestEnum for $proto {
            const PROTO_NAME: &'static str = $full;
            fn name(self) -> &'static str {
                self.as_str_name()
            }
            fn from_name(name: &str) -> Option<Self> {
                Self::from_str_name(name)
            }
        }
    )+};
}

rest_enums!(
    campaign::CampaignStatus => "affiliate.campaign.v1.CampaignStatus",
    tracking::TrackingEventKind => "affiliate.tracking.v1.TrackingEventKind",
    tracking::EvidenceKind => "affiliate.tracking.v1.EvidenceKind",
    tracking::ConversionStatus => "affiliate.tracking.v1.ConversionStatus",
    commission::CommissionStatus => "affiliate.commission.v1.CommissionStatus",
    payment::PayoutStatus => "affiliate.payment.v1.PayoutStatus",
    payment::PayoutMethod => "affiliate.payment.v1.PayoutMethod",
    notification::NotificationKind => "affiliate.notification.v1.NotificationKind",
    webhook::DeliveryStatus => "affiliate.webhook.v1.DeliveryStatus",
);

/// A proto enum in a REST body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rest<E>(pub E);

impl<E: RestEnum> Rest<E> {
    /// The REST value of a proto enum number (an unknown number reads as unspecified, 0).
    pub fn from_proto(value: i32) -> Self {
        Self(E::try_from(value).unwrap_or_default())
    }
}

impl<E: RestEnum> Serialize for Rest<E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de, E: RestEnum> Deserialize<'de> for Rest<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<str>::deserialize(deserializer)?;
        E::from_name(&name).map(Self).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown variant `{name}`, expected one of {}",
                value_names(E::PROTO_NAME)
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

impl<E: RestEnum> utoipa::PartialSchema for Rest<E> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(value_names(E::PROTO_NAME).iter().copied()))
            .into()
    }
}

impl<E: RestEnum> utoipa::ToSchema for Rest<E> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(E::schema_name())
    }
}

/// The value names of every enum in the proto crate's descriptor set, by fully qualified name,
/// in declaration order.
fn value_names(full_name: &str) -> &'static [&'static str] {
    static SET: OnceLock<prost_types::FileDescriptorSet> = OnceLock::new();
    static ENUMS: OnceLock<HashMap<String, Vec<&'static str>>> = OnceLock::new();
    let enums = ENUMS.get_or_init(|| {
        let set = SET.get_or_init(|| {
            prost_types::FileDescriptorSet::decode(affiliate_proto::FILE_DESCRIPTOR_SET)
                .unwrap_or_default()
        });
        set.file
            .iter()
            .flat_map(|file| {
                file.enum_type.iter().map(|e| {
                    let values = e.value.iter().map(|v| v.name()).collect();
                    (format!("{}.{}", file.package(), e.name()), values)
                })
            })
            .collect()
    });
    enums.get(full_name).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every enum's values, from the descriptor, are the names prost knows, in number order.
    fn round_trips<E: RestEnum>() {
        let names = value_names(E::PROTO_NAME);
        assert!(
            !names.is_empty(),
            "{} is in the descriptor set",
            E::PROTO_NAME
        );
        for (number, name) in names.iter().enumerate() {
            let value = E::from_name(name).unwrap_or_else(|| panic!("{name}"));
            let number = i32::try_from(number).unwrap();
            assert_eq!(Rest::<E>::from_proto(number), Rest(value), "{name}");
            let json = serde_json::to_string(&Rest(value)).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Rest<E>>(&json).unwrap(), Rest(value));
        }
    }

    #[test]
    fn every_rest_enum_comes_from_the_proto() {
        round_trips::<campaign::CampaignStatus>();
        round_trips::<tracking::TrackingEventKind>();
        round_trips::<tracking::EvidenceKind>();
        round_trips::<tracking::ConversionStatus>();
        round_trips::<commission::CommissionStatus>();
        round_trips::<payment::PayoutStatus>();
        round_trips::<payment::PayoutMethod>();
        round_trips::<notification::NotificationKind>();
        round_trips::<webhook::DeliveryStatus>();
    }

    #[test]
    fn an_unknown_name_or_a_number_is_refused_with_the_names_it_takes() {
        let error = serde_json::from_str::<Rest<payment::PayoutMethod>>(r#""CHEQUE""#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown variant `CHEQUE`"), "{error}");
        assert!(error.contains("`PAYOUT_METHOD_PAYPAL`"), "{error}");
        assert!(serde_json::from_str::<Rest<payment::PayoutMethod>>("2").is_err());
    }
}
