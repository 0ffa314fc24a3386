//! The API's one error type: every 4xx and 5xx is `application/problem+json`
//! (RFC 9457). A 4xx says precisely what is wrong and where; a 5xx says
//! little to the client and logs everything.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::engine::{self, Problem};
use crate::store;

/// The problem+json media type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An API error, rendered as a problem document.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    errors: Vec<Problem>,
    challenge: bool,
}

/// The body of an error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// Always `about:blank`: the status and title say what kind it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What is wrong, precisely.
    pub detail: String,
    /// For validation failures, every problem with its JSON path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            errors: Vec::new(),
            challenge: false,
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422 listing every problem with its path.
    pub fn invalid(detail: impl Into<String>, errors: Vec<Problem>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
        }
    }

    /// 422 with one problem at `path` (a JSON path such as `$.cron`).
    pub fn at(detail: impl Into<String>, path: &str, message: impl Into<String>) -> Self {
        Self::invalid(
            detail,
            vec![Problem {
                path: path.into(),
                message: message.into(),
            }],
        )
    }

    /// 401 with a `WWW-Authenticate` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self {
            challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, detail)
        }
    }

    /// 500: logs the cause, tells the client little.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed to handle the request; see its logs",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"stephost\""),
            );
        }
        resp
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::AlreadyExists(what) => {
                Self::new(StatusCode::CONFLICT, format!("{what} already exists"))
            }
            store::Error::NoTenant(_) => Self::not_found("the tenant was deleted"),
            store::Error::InvalidCursor(why) => {
                Self::bad_request(format!("query parameter `cursor`: {why}"))
            }
            other => Self::internal(other),
        }
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        use engine::Error as E;
        match e {
            E::WorkflowNotFound(_)
            | E::ExecutionNotFound(_)
            | E::ScheduleNotFound(_)
            | E::BatchNotFound(_)
            | E::DeliveryNotFound(..) => Self::not_found(e.to_string()),
            E::Unprocessable(_) | E::IdempotencyKeyReused => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            E::IdempotencyConflict(..) | E::AlreadyFinished(..) | E::NotAllowed(_) => {
                Self::new(StatusCode::CONFLICT, e.to_string())
            }
            E::Invalid(detail, problems) => Self::invalid(detail, problems),
            E::Busy(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            E::Store(s) => s.into(),
        }
    }
}

/// Turns any error response that is not already a problem document (axum's
/// own rejections, 404 for unknown routes, 405, 413 from the body limit)
/// into one, keeping its status and text.
pub async fn ensure_problem_json(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        match status {
            StatusCode::NOT_FOUND => "no such route".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED => "this route does not accept that method".to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        }
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is larger than this route accepts ({text})")
    } else {
        text
    };
    let mut out = ApiError::new(status, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
