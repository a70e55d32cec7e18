//! The campaign handlers fail with the platform's errors (`service_runtime::errors::Error`, mapped
//! to gRPC once there); a refusal by the domain rules is a failed precondition.

pub use service_runtime::errors::Error;

use crate::domain::Rejection;

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Self {
        Self::Precondition(rejection.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CampaignStatus;

    #[test]
    fn domain_refusals_are_failed_preconditions() {
        for rejection in [
            Rejection::NotAcceptable(CampaignStatus::Paused),
            Rejection::Closed,
        ] {
            let status = tonic::Status::from(Error::from(rejection));
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        }
    }
}
