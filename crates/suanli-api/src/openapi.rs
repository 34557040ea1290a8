//! The OpenAPI 3 document, generated from the route tables (`ROUTES`, `PUBLIC_ROUTES`): every
//! operation with its path parameters, its bearer-token requirement, and the shared error shape;
//! and `/api/docs`, a page that lists the operations for people.
//!
//! Request and answer bodies are described in words in each summary, not yet as JSON schemas.

use axum::Json;
use axum::response::Html;
use serde_json::{Value, json};

use crate::{PUBLIC_ROUTES, ROUTES};

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (public, (method, path, summary)) in
        PUBLIC_ROUTES.iter().map(|r| (true, r)).chain(ROUTES.iter().map(|r| (false, r)))
    {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut operation = json!({
            "summary": summary,
            "operationId": format!("{} {}", method.to_lowercase(), path),
            "parameters": parameters,
            "responses": {
                "200": { "description": "Success; a JSON document." },
                "default": { "description": "An error.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        if !public {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        if *method == "POST" && !public {
            operation["requestBody"] =
                json!({ "required": false, "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Suanli API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Computing-power voucher programmes and the compute network they are redeemed on." },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } } }
        }
    })
}

pub async fn document_json() -> Json<Value> {
    Json(document())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub async fn page() -> Html<String> {
    let mut rows = String::new();
    for (method, path, summary) in PUBLIC_ROUTES.iter().chain(ROUTES) {
        rows.push_str(&format!(
            "<tr><td><code>{method}</code></td><td><code>{}</code></td><td>{}</td></tr>\n",
            escape(path),
            escape(summary)
        ));
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Suanli API</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:.3em .8em;vertical-align:top}}\
         tr:nth-child(even){{background:#f4f4f4}}</style></head><body><h1>Suanli API</h1>\
         <p>Send <code>Authorization: Bearer TOKEN</code>; log in at <code>POST /api/v1/login</code>. \
         Errors are <code>{{\"error\": {{\"code\", \"message\"}}}}</code>. The machine-readable document is \
         <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p><table>{rows}</table></body></html>"
    ))
}
