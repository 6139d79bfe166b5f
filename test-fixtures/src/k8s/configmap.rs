//! ConfigMaps in the fake kube-apiserver: `GET` and `PATCH` of
//! `/api/v1/namespaces/<ns>/configmaps/<name>`, with the patch semantics of
//! a real API server for the types it accepts.
//!
//! - `application/merge-patch+json`: RFC 7386 JSON merge patch (objects
//!   merge key by key, `null` deletes, anything else replaces);
//! - `application/strategic-merge-patch+json`: for a ConfigMap (no lists
//!   with merge keys) the same as a merge patch;
//! - other types (JSON patch, server-side apply): 415, which this fake
//!   does not implement.
//!
//! A missing ConfigMap is a 404 `configmaps "<name>" not found`, never
//! created by a patch. Every successful patch bumps
//! `metadata.resourceVersion`; a patch that changes `metadata.name` or
//! `metadata.namespace`, or leaves a `data` value that is not a string, is
//! refused as the real server does (400 / 422).

use http::{Response, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use super::status;

/// The JSON merge patch content type.
pub const MERGE_PATCH: &str = "application/merge-patch+json";
/// The strategic merge patch content type.
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// Applies an RFC 7386 merge `patch` to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Patches `current` (the stored ConfigMap `name`) with `body` of
/// `content_type`; returns the new object or the error response.
pub(crate) fn patch(
    current: &ConfigMap,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<ConfigMap, Box<Response<String>>> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media != MERGE_PATCH && media != STRATEGIC_MERGE_PATCH {
        let message = format!("the body of the request was in an unknown format - accepted media types include: {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH} (this fake)");
        return Err(Box::new(status::failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &message,
            None,
        )));
    }
    let patch: Value = serde_json::from_slice(body).map_err(|e| {
        let message = format!("error decoding patch: {e}");
        Box::new(status::failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &message,
            None,
        ))
    })?;
    let mut object = serde_json::to_value(current).map_err(|e| {
        Box::new(status::failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &e.to_string(),
            None,
        ))
    })?;
    merge_patch(&mut object, &patch);
    let mut updated: ConfigMap = serde_json::from_value(object).map_err(|e| {
        let message = format!("ConfigMap {name:?} is invalid: {e}");
        Box::new(status::failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &message,
            None,
        ))
    })?;
    if updated.metadata.name != current.metadata.name
        || updated.metadata.namespace != current.metadata.namespace
    {
        let message = "the name and namespace of the object cannot be changed by a patch";
        return Err(Box::new(status::failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            message,
            None,
        )));
    }
    let version = current
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    updated.metadata.resource_version = Some((version + 1).to_string());
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc7386_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": ["b"]});
        merge_patch(&mut t, &json!({"a": "c"}));
        assert_eq!(t, json!({"a": "c"}));
        let mut t = json!({"e": null});
        merge_patch(&mut t, &json!({"a": 1}));
        assert_eq!(t, json!({"e": null, "a": 1}));
        let mut t = json!(["a"]);
        merge_patch(&mut t, &json!({"a": {"bb": {"ccc": null}}}));
        assert_eq!(t, json!({"a": {"bb": {}}}));
    }

    fn config_map() -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "spire-bundle", "namespace": "spire", "resourceVersion": "7"},
            "data": {"other": "kept"}
        }))
        .unwrap()
    }

    #[test]
    fn patch_sets_one_key_and_bumps_the_version() {
        let body = br#"{"data":{"bundle.crt":"PEM"}}"#;
        let cm = patch(&config_map(), "spire-bundle", MERGE_PATCH, body).unwrap();
        let data = cm.data.unwrap();
        assert_eq!(data["bundle.crt"], "PEM");
        assert_eq!(data["other"], "kept");
        assert_eq!(cm.metadata.resource_version.as_deref(), Some("8"));
    }

    #[test]
    fn patch_refuses_other_types_renames_and_non_strings() {
        let body = br#"[{"op":"add","path":"/data/x","value":"y"}]"#;
        let err = patch(&config_map(), "x", "application/json-patch+json", body).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body = br#"{"metadata":{"name":"other"}}"#;
        let err = patch(&config_map(), "x", STRATEGIC_MERGE_PATCH, body).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let body = br#"{"data":{"x":1}}"#;
        let err = patch(&config_map(), "x", MERGE_PATCH, body).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
