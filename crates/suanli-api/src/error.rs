//! One error shape for every answer that is not a success: an HTTP status, a stable code and a
//! message that names the field. Internal failures are logged and answered without details.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use suanli_service::{ErrorCode, ServiceError};

use crate::writer::Refused;

/// How long a client should wait after a write refused because storage failed.
pub const STORAGE_RETRY_AFTER_S: u32 = 5;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before retrying, for 503.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_s: None }
    }

    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(status, code, message)
    }

    /// 503 with `Retry-After`: the server is busy, nothing was done.
    pub fn overloaded(message: &str) -> ApiError {
        ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message) }
    }

    pub fn body_too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body: larger than {} bytes", crate::BODY_BYTES_MAX),
        )
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "authorization: a valid bearer token is required")
    }

    pub fn unauthenticated_with(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn field(field: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", format!("{field}: {problem}"))
    }

    /// A body that is not the JSON expected: malformed, an unknown field, a wrong type, too large.
    pub fn from_json(rejection: JsonRejection) -> ApiError {
        match rejection {
            JsonRejection::BytesRejection(_) => ApiError::body_too_large(),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_json",
                "content-type: must be application/json",
            ),
            other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", other.body_text()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        let status = match error.code {
            ErrorCode::InvalidField | ErrorCode::ProgramFileInvalid | ErrorCode::AmountOverflow => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::SignatureInvalid => StatusCode::UNAUTHORIZED,
            ErrorCode::DatabaseLocked => StatusCode::SERVICE_UNAVAILABLE,
            // Nothing was stored: the client retries the same request later.
            ErrorCode::StorageUnavailable | ErrorCode::StorageFull => {
                tracing::warn!(code = error.code.as_str(), error = %error.message, "write refused: storage cannot be written");
                return ApiError {
                    retry_after_s: Some(STORAGE_RETRY_AFTER_S),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        error.code.as_str(),
                        "storage cannot be written now; nothing was stored; retry later",
                    )
                };
            }
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::ProgramExists | ErrorCode::UsageRecordConflict => {
                StatusCode::CONFLICT
            }
            ErrorCode::Storage | ErrorCode::Internal => {
                tracing::error!(code = error.code.as_str(), error = %error.message, "internal error");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server failed; it was logged",
                );
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError { status, code: error.code.as_str(), message: error.message, retry_after_s: None }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        let message = match refused {
            Refused::Overloaded => "the writer's queue is full; retry shortly",
            Refused::Stopped => "the server is shutting down; retry shortly",
        };
        ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": { "code": self.code, "message": self.message } }));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        response
    }
}

/// Puts every error answer in the one JSON shape: the framework's own refusals (no such route,
/// a wrong method, a query or path that cannot be read, a body too large or of the wrong type)
/// come as plain text, and are rewritten here with a stable code and their message.
pub async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "invalid_json",
        StatusCode::REQUEST_TIMEOUT => "body_timeout",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        status if status.is_server_error() => "internal_error",
        _ => "invalid_request",
    };
    let allow = response.headers().get("allow").cloned();
    let text = axum::body::to_bytes(response.into_body(), 4_096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::METHOD_NOT_ALLOWED) => "method: this endpoint does not take this method".to_owned(),
        (true, _) => status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    let static_code: &'static str = code;
    let mut answer = ApiError::with_status(status, static_code, message).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert("allow", allow);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_answers_503_with_retry_after() {
        let response = ApiError::from(Refused::Overloaded).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
    }
}
