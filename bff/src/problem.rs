//! RFC 9457 `application/problem+json` errors, and the one mapping from gRPC statuses to HTTP.
//!
//! Client errors carry the service's message and, for INVALID_ARGUMENT and OUT_OF_RANGE (money
//! that would not fit 64-bit minor units), its field violations (field paths turned into the
//! JSON names the client sent). FAILED_PRECONDITION carrying a `google.rpc.ErrorInfo` (a request
//! refused by a business rule the client acts on, e.g. `UNKNOWN_CLICK`) is a 422 with the
//! `reason`. Server errors carry a generic message: nothing internal leaks.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt as _;
use utoipa::ToSchema;

pub use service_runtime::errors::code_name;

use crate::auth::AuthError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response body (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The HTTP status phrase.
    pub title: &'static str,
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// The gRPC status code name behind it, e.g. `FAILED_PRECONDITION`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The invalid (or out-of-range) fields, for 400 responses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Why a valid request was refused, for 422 responses: an UPPER_SNAKE code the client
    /// branches on, e.g. `UNKNOWN_CLICK`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "UNKNOWN_CLICK")]
    pub reason: Option<Box<str>>,
    #[serde(skip)]
    retry_after: Option<std::num::NonZeroU32>,
    #[serde(skip)]
    authenticate: bool,
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field as the client named it, e.g. `budget.currency`.
    pub field: String,
    pub description: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code: None,
            errors: Vec::new(),
            reason: None,
            retry_after: None,
            authenticate: false,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail).with_code(Code::InvalidArgument)
    }

    /// A 400 naming one invalid field.
    pub fn invalid_field(field: &str, description: impl Into<String>) -> Self {
        let mut problem = Self::bad_request("the request has invalid fields");
        problem.errors.push(FieldError {
            field: field.to_owned(),
            description: description.into(),
        });
        problem
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail).with_code(Code::PermissionDenied)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail).with_code(Code::NotFound)
    }

    pub fn unauthenticated(error: &AuthError) -> Self {
        let mut problem =
            Self::new(StatusCode::UNAUTHORIZED, error.to_string()).with_code(Code::Unauthenticated);
        problem.authenticate = true;
        problem
    }

    /// A 401 for a server-to-server call whose postback key (or signature) is missing, unknown,
    /// revoked or wrong. No `WWW-Authenticate: Bearer`: these calls carry no token.
    pub fn postback_unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail).with_code(Code::Unauthenticated)
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit exceeded; retry after {retry_after_secs} s"),
        )
        .with_code(Code::ResourceExhausted);
        problem.retry_after =
            std::num::NonZeroU32::new(u32::try_from(retry_after_secs.max(1)).unwrap_or(u32::MAX));
        problem
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request could not be completed; retry later",
        )
        .with_code(Code::Internal)
    }

    /// The field errors renamed where a route's JSON names a field differently from its proto
    /// path (`renames`: (from, to) of whole field paths, e.g. a duration the body carries in
    /// seconds).
    pub fn renaming_fields(mut self, renames: &[(&str, &str)]) -> Self {
        for error in &mut self.errors {
            if let Some((_, to)) = renames.iter().find(|(from, _)| *from == error.field) {
                error.field = (*to).to_owned();
            }
        }
        self
    }

    fn with_code(mut self, code: Code) -> Self {
        self.code = Some(code_name(code));
        self
    }

    /// The problem for a gRPC status a service returned. `service` names it in server errors.
    pub fn from_status(status: &tonic::Status, service: &str) -> Self {
        // A call the BFF's client cancels never gets here (its handler is dropped), so CANCELLED
        // from a service is the connection to it ending under the call (the service went away):
        // transient, as UNAVAILABLE is.
        let code = match status.code() {
            Code::Cancelled => Code::Unavailable,
            code => code,
        };
        // A refusal the client acts on (ErrorInfo's reason): 422, the reason in the body.
        let reason = match code {
            Code::FailedPrecondition => service_runtime::errors::error_reason(status),
            _ => None,
        };
        let http = if reason.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            http_status(code)
        };
        let detail = if http.is_server_error() {
            match code {
                Code::Unavailable => format!("the {service} service is unavailable; retry later"),
                Code::DeadlineExceeded => format!("the {service} service did not answer in time"),
                _ => format!("the {service} service failed; retry later"),
            }
        } else {
            status.message().to_owned()
        };
        let mut problem = Self::new(http, detail).with_code(code);
        problem.reason = reason.map(String::into_boxed_str);
        if matches!(code, Code::InvalidArgument | Code::OutOfRange)
            && let Some(bad_request) = status.get_details_bad_request()
        {
            problem.errors = bad_request
                .field_violations
                .into_iter()
                .map(|v| FieldError {
                    field: json_path(&v.field),
                    description: v.description,
                })
                .collect();
        }
        if code == Code::Unauthenticated {
            problem.authenticate = true;
        }
        problem
    }
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        Self::unauthenticated(&error)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.get()));
        }
        if self.authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

/// The HTTP status of a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // the connection to the service ended under the call (see `Problem::from_status`)
        Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A proto field path (`budget.amount_minor`) as the JSON names it (`budget.amountMinor`).
pub fn json_path(proto_path: &str) -> String {
    proto_path
        .split('.')
        .map(|segment| {
            let mut out = String::with_capacity(segment.len());
            let mut upper = false;
            for c in segment.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.extend(c.to_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    /// Every gRPC code, its HTTP status, and whether the service's message reaches the client.
    const TABLE: [(Code, u16, bool); 17] = [
        (Code::Ok, 200, true),
        // the connection to the service ended under the call: see `from_status`
        (Code::Cancelled, 503, false),
        (Code::Unknown, 500, false),
        (Code::InvalidArgument, 400, true),
        (Code::DeadlineExceeded, 504, false),
        (Code::NotFound, 404, true),
        (Code::AlreadyExists, 409, true),
        (Code::PermissionDenied, 403, true),
        (Code::ResourceExhausted, 429, true),
        (Code::FailedPrecondition, 409, true),
        (Code::Aborted, 409, true),
        (Code::OutOfRange, 400, true),
        (Code::Unimplemented, 501, false),
        (Code::Internal, 500, false),
        (Code::Unavailable, 503, false),
        (Code::DataLoss, 500, false),
        (Code::Unauthenticated, 401, true),
    ];

    #[test]
    fn every_grpc_code_maps_to_its_http_status_and_hides_server_details() {
        for (code, http, shows_message) in TABLE {
            let status = tonic::Status::new(code, "secret detail: db at 10.0.0.7");
            let problem = Problem::from_status(&status, "campaign");
            assert_eq!(problem.status, http, "{code:?}");
            let named = if code == Code::Cancelled {
                Code::Unavailable
            } else {
                code
            };
            assert_eq!(problem.code, Some(code_name(named)), "{code:?}");
            assert_eq!(problem.kind, "about:blank");
            assert_eq!(
                problem.detail.contains("secret detail"),
                shows_message,
                "{code:?}: {}",
                problem.detail
            );
            let response = problem.into_response();
            assert_eq!(response.status().as_u16(), http);
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        }
    }

    #[test]
    fn field_violations_become_errors_with_json_field_names() {
        let details = ErrorDetails::with_bad_request(vec![
            tonic_types::FieldViolation::new("budget.amount_minor", "must be positive"),
            tonic_types::FieldViolation::new("commission_rate_bps", "at most 10000"),
        ]);
        let status =
            tonic::Status::with_error_details(Code::InvalidArgument, "invalid request", details);
        let problem = Problem::from_status(&status, "campaign");
        assert_eq!(problem.status, 400);
        assert_eq!(
            problem.errors,
            vec![
                FieldError {
                    field: "budget.amountMinor".into(),
                    description: "must be positive".into()
                },
                FieldError {
                    field: "commissionRateBps".into(),
                    description: "at most 10000".into()
                },
            ]
        );
    }

    #[test]
    fn a_route_may_rename_fields_its_body_names_differently() {
        let details = ErrorDetails::with_bad_request(vec![
            tonic_types::FieldViolation::new("tracking.attribution_window", "too long"),
            tonic_types::FieldViolation::new("tracking.landing_domains[2]", "not a host"),
        ]);
        let status =
            tonic::Status::with_error_details(Code::InvalidArgument, "invalid request", details);
        let problem = Problem::from_status(&status, "campaign").renaming_fields(&[(
            "tracking.attributionWindow",
            "tracking.attributionWindowSeconds",
        )]);
        let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "tracking.attributionWindowSeconds",
                "tracking.landingDomains[2]"
            ]
        );
    }

    #[test]
    fn out_of_range_money_is_a_400_naming_its_field() {
        let details = ErrorDetails::with_bad_request(vec![tonic_types::FieldViolation::new(
            "amount.amount_minor",
            "the creator's reserved balance would pass the largest amount there can be",
        )]);
        let status = tonic::Status::with_error_details(
            Code::OutOfRange,
            "out of range: amount.amount_minor: ...",
            details,
        );
        let problem = Problem::from_status(&status, "payment");
        assert_eq!((problem.status, problem.code), (400, Some("OUT_OF_RANGE")));
        assert_eq!(
            problem.errors,
            vec![FieldError {
                field: "amount.amountMinor".into(),
                description:
                    "the creator's reserved balance would pass the largest amount there can be"
                        .into()
            }]
        );
    }

    #[test]
    fn a_refusal_with_a_reason_is_a_422_carrying_it_and_without_one_stays_a_409() {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            "UNKNOWN_CLICK",
            "affiliate-platform",
            std::collections::HashMap::new(),
        );
        let status =
            tonic::Status::with_error_details(Code::FailedPrecondition, "no such click", details);
        let problem = Problem::from_status(&status, "tracking");
        assert_eq!(
            (problem.status, problem.code, problem.reason.as_deref()),
            (422, Some("FAILED_PRECONDITION"), Some("UNKNOWN_CLICK"))
        );
        let body = serde_json::to_value(&problem).unwrap();
        assert_eq!(body["reason"], "UNKNOWN_CLICK");
        assert_eq!(body["detail"], "no such click");
        let plain = Problem::from_status(
            &tonic::Status::failed_precondition("the campaign is closed"),
            "campaign",
        );
        assert_eq!((plain.status, plain.reason.as_deref()), (409, None));
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("reason")
                .is_none()
        );
    }

    #[test]
    fn unauthenticated_and_rate_limited_problems_carry_their_headers() {
        let response = Problem::from(AuthError::Expired).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        let response = Problem::too_many_requests(3).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
