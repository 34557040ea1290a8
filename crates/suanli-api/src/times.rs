//! Times in the API's JSON. The stored records count instants in Unix seconds (`placed_at_s`);
//! the API writes every instant in RFC 3339, Asia/Shanghai (`"placed_at":
//! "2026-03-01T10:00:00+08:00"`), under the name without `_s`. Durations keep their seconds
//! (`expires_in_s`). One rule, [`instant_name`], applied to every JSON answer under `/api/v1/`
//! (the [`layer`]), to the CLI's `--json`, and to the answer schemas of the OpenAPI document, so
//! the three cannot disagree. An audit-log entry's `body` is the evidence as it was hashed and is
//! never rewritten.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use suanli_service::calendar::format_timestamp;

/// The instants named otherwise than `*_at_s` or `time_s`.
const INSTANTS: &[&str] = &["applications_open_s", "applications_close_s", "began_s", "pivot_s", "usage_until_s"];

/// The API's name for `key` when it names an instant in seconds.
pub fn instant_name(key: &str) -> Option<String> {
    if key == "time_s" {
        return Some("time".into());
    }
    if key.ends_with("_at_s") || INSTANTS.contains(&key) {
        return key.strip_suffix("_s").map(str::to_owned);
    }
    None
}

/// Rewrites every instant of `value` (not inside an audit entry's `body`) as RFC 3339.
pub fn rewrite(value: &mut Value) {
    match value {
        Value::Object(object) => rewrite_object(object),
        Value::Array(values) => values.iter_mut().for_each(rewrite),
        _ => {}
    }
}

fn rewrite_object(object: &mut Map<String, Value>) {
    let instants: Vec<(String, String)> = object
        .iter()
        .filter(|(_, v)| v.is_i64() || v.is_null())
        .filter_map(|(k, _)| instant_name(k).map(|name| (k.clone(), name)))
        .collect();
    for (key, name) in instants {
        if let Some(seconds) = object.remove(&key) {
            let text = seconds.as_i64().map_or(Value::Null, |s| Value::String(format_timestamp(s)));
            object.insert(name, text);
        }
    }
    for (key, inner) in object.iter_mut() {
        if key != "body" {
            rewrite(inner);
        }
    }
}

/// The same rule on a JSON Schema: an integer property that names an instant becomes an RFC 3339
/// string under the API's name (nullable when it was), in `properties` and `required`.
pub fn rewrite_schema(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = object.get_mut("properties") {
                let instants: Vec<(String, String)> = properties
                    .iter()
                    .filter(|(_, v)| v["type"] == "integer")
                    .filter_map(|(k, _)| instant_name(k).map(|name| (k.clone(), name)))
                    .collect();
                for (key, name) in &instants {
                    if let Some(old) = properties.remove(key) {
                        let mut new = json!({ "type": "string", "format": "date-time" });
                        if old["nullable"] == true {
                            new["nullable"] = json!(true);
                        }
                        if let Some(description) = old.get("description") {
                            new["description"] = description.clone();
                        }
                        properties.insert(name.clone(), new);
                    }
                }
                if let Some(Value::Array(required)) = object.get_mut("required") {
                    for entry in required.iter_mut() {
                        if let Some((_, name)) = instants.iter().find(|(key, _)| entry == key) {
                            *entry = Value::String(name.clone());
                        }
                    }
                }
            }
            object.values_mut().for_each(rewrite_schema);
        }
        Value::Array(values) => values.iter_mut().for_each(rewrite_schema),
        _ => {}
    }
}

/// The layer that writes the instants of every JSON answer under `/api/v1/` as RFC 3339.
pub async fn layer(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/v1/");
    let response = next.run(request).await;
    let json = response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !api || !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Answers are bounded by their pages; this bounds them again.
    let Ok(bytes) = axum::body::to_bytes(body, 256 * 1024 * 1024).await else {
        return crate::ApiError::from(suanli_service::ServiceError::new(
            suanli_service::ErrorCode::Internal,
            "an answer could not be read back",
        ))
        .into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    rewrite(&mut value);
    parts.headers.remove(CONTENT_LENGTH);
    let body = serde_json::to_vec(&value).unwrap_or_else(|_| bytes.to_vec());
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_renamed_and_written_in_rfc3339_durations_and_bodies_are_not() {
        let mut value = json!({
            "placed_at_s": 1_772_330_400, "started_at_s": null, "expires_in_s": 60, "time_s": 0,
            "usage_until_s": 1_772_330_400, "items": [{ "issued_at_s": 1_772_330_400 }],
            "body": { "time_s": 5 },
        });
        rewrite(&mut value);
        assert_eq!(
            value,
            json!({
                "placed_at": "2026-03-01T10:00:00+08:00", "started_at": null, "expires_in_s": 60,
                "time": "1970-01-01T08:00:00+08:00", "usage_until": "2026-03-01T10:00:00+08:00",
                "items": [{ "issued_at": "2026-03-01T10:00:00+08:00" }], "body": { "time_s": 5 },
            })
        );
        let mut schema = json!({ "properties": { "placed_at_s": { "type": "integer" }, "ended_at_s": {
            "type": "integer", "nullable": true }, "gpu_seconds": { "type": "integer" } }, "required": ["placed_at_s"] });
        rewrite_schema(&mut schema);
        assert_eq!(schema["properties"]["placed_at"], json!({ "type": "string", "format": "date-time" }));
        assert_eq!(schema["properties"]["ended_at"]["nullable"], true);
        assert_eq!(schema["required"], json!(["placed_at"]));
        assert!(schema["properties"]["gpu_seconds"].is_object());
    }
}
