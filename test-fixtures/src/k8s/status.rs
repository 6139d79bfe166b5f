//! `v1.Status` error bodies, as the API server writes them.

use http::{Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusDetails};

use super::serve::json;

/// A `v1.Status` failure: `{"kind":"Status","apiVersion":"v1","metadata":{},
/// "status":"Failure","message":..,"reason":..,"code":..}`.
pub(crate) fn failure(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<StatusDetails>,
) -> Response<String> {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        details,
        message: Some(message.to_owned()),
        metadata: ListMeta::default(),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
    };
    let body = serde_json::to_string(&status).unwrap_or_default();
    json(code, body)
}

/// 401 `Unauthorized`.
pub(crate) fn unauthorized() -> Response<String> {
    failure(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Unauthorized",
        None,
    )
}

/// 404 for a missing object: `pods "x" not found`, details naming it.
pub(crate) fn not_found(resource: &str, name: &str) -> Response<String> {
    let details = StatusDetails {
        kind: Some(resource.to_owned()),
        name: Some(name.to_owned()),
        ..Default::default()
    };
    let message = format!("{resource} \"{name}\" not found");
    failure(StatusCode::NOT_FOUND, "NotFound", &message, Some(details))
}

/// 404 for a path the server does not serve.
pub(crate) fn no_such_path() -> Response<String> {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(StatusDetails::default()),
    )
}

/// An injected failure with the reason Kubernetes uses for `code`.
pub(crate) fn injected(code: StatusCode) -> Response<String> {
    let reason = match code {
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::GATEWAY_TIMEOUT => "Timeout",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::BAD_REQUEST => "BadRequest",
        _ => "InternalError",
    };
    let message = format!("injected failure ({})", code.as_u16());
    failure(code, reason, &message, None)
}
