//! The OpenAPI 3.0 document, made from the table of operations ([`crate::operations`]): each
//! operation with its name, who may call it, its path and query parameters, its signature
//! header, its body and answer as JSON Schemas derived from the handlers' own types, and the one
//! error shape; and `/api/docs`, a page that lists the operations for people.

use std::collections::BTreeMap;

use axum::Json;
use axum::response::Html;
use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use suanli_domain::{
    ApplicationId, EnterpriseId, OrderId, PoolId, ProviderId, RequestId, SiteId, StatementId, VoucherId,
};

use crate::operations::{Answer, Method, Operation, SchemaOf, Who, operations, schema};

/// The schema of each path parameter, by name.
fn path_parameter(name: &str, generator: &mut SchemaGenerator) -> (Schema, &'static str) {
    match name {
        "program" => (schemars::json_schema!({ "type": "string", "minLength": 1 }), "A programme's id (prg-N) or key."),
        "enterprise" => (schema::<EnterpriseId>(generator), "An enterprise's id."),
        "application" => (schema::<ApplicationId>(generator), "An application's id."),
        "voucher" => (schema::<VoucherId>(generator), "A voucher's id."),
        "provider" => (schema::<ProviderId>(generator), "A provider's id."),
        "site" => (schema::<SiteId>(generator), "A site's id."),
        "pool" => (schema::<PoolId>(generator), "A pool's id."),
        "order" => (schema::<OrderId>(generator), "An order's id."),
        "request" => (schema::<RequestId>(generator), "An order request's id."),
        "offer" => (schema::<suanli_domain::OfferId>(generator), "A capacity offer's id."),
        "statement" => (schema::<StatementId>(generator), "A statement's id."),
        "token" => (
            schemars::json_schema!({ "type": "string", "pattern": "^(token-)?[0-9]{1,19}$" }),
            "A token's id (token-N, or N).",
        ),
        _ => (schemars::json_schema!({ "type": "string", "minLength": 1 }), "A person's login name."),
    }
}

/// A schema as OpenAPI 3.0 wants it (nullable, no `$ref` siblings, ...): the generator's
/// transforms, applied to a schema made outside its definitions.
fn finished(generator: &mut SchemaGenerator, mut schema: Schema) -> Value {
    for transform in generator.transforms_mut() {
        transform.transform(&mut schema);
    }
    schema.to_value()
}

/// The query parameters of `query` (only those named in `only`, when it names any).
fn query_parameters(generator: &mut SchemaGenerator, query: SchemaOf, only: &[&str]) -> Vec<Value> {
    let reference = query(generator);
    let name = reference.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(str::to_owned);
    let object = match name {
        Some(name) => generator.definitions().get(&name).cloned().unwrap_or_default(),
        None => reference.to_value(),
    };
    let required: Vec<&str> =
        object["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut parameters = Vec::new();
    for (field, field_schema) in object["properties"].as_object().into_iter().flatten() {
        if !only.is_empty() && !only.contains(&field.as_str()) {
            continue;
        }
        let mut field_schema = field_schema.clone();
        let description = field_schema.as_object_mut().and_then(|s| s.remove("description"));
        let mut field_schema = finished(generator, Schema::try_from(field_schema).unwrap_or_default());
        nullable_as_openapi3(&mut field_schema);
        // A query parameter is absent or a value; it is never null.
        if let Some(s) = field_schema.as_object_mut() {
            s.remove("nullable");
            if let Some(Value::Array(mut all)) = s.remove("allOf")
                && all.len() == 1
            {
                field_schema = all.remove(0);
            }
        }
        let mut parameter = json!({
            "name": field, "in": "query", "required": required.contains(&field.as_str()), "schema": field_schema,
        });
        if let Some(description) = description {
            parameter["description"] = description;
        }
        parameters.push(parameter);
    }
    parameters
}

fn who_words(who: &[Who]) -> String {
    who.iter().map(|w| w.words()).collect::<Vec<_>>().join(", ")
}

fn operation_object(operation: &Operation, requests: &mut SchemaGenerator, answers: &mut SchemaGenerator) -> Value {
    let mut parameters: Vec<Value> = operation
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let (schema, description) = path_parameter(name, requests);
            json!({ "name": name, "in": "path", "required": true, "schema": schema.to_value(), "description": description })
        })
        .collect();
    if let Some((query, only)) = operation.query {
        parameters.extend(query_parameters(requests, query, only));
    }
    if !operation.states.is_empty() {
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "state" && p["in"] == "query") {
            parameter["schema"] = json!({ "type": "string", "enum": operation.states });
        }
    }
    if operation.signed {
        parameters.push(json!({
            "name": "Suanli-Signature", "in": "header", "required": true,
            "description": "The provider's Ed25519 signature over the batch's signing bytes (docs/signing.md), 128 lower-case hex characters.",
            "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{128}$" },
        }));
    }
    let success = match operation.answer {
        Answer::Json(answer) => {
            let schema = answer(answers);
            json!({ "description": "Success.", "content": { "application/json": { "schema": finished(answers, schema) } } })
        }
        Answer::Text(media) => {
            json!({ "description": "Success.", "content": { media: { "schema": { "type": "string" } } } })
        }
    };
    let mut object = json!({
        "operationId": operation.id,
        "summary": operation.summary,
        "description": format!("{} Who may call it: {}.", operation.summary, who_words(operation.who)),
        "tags": [tag(operation.path)],
        "parameters": parameters,
        "responses": {
            "200": success,
            "default": { "description": "An error: a stable code and a message that names the field.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
    });
    if !operation.is_public() {
        object["security"] = json!([{ "bearer": [] }]);
    }
    if let Some((body, required)) = operation.body {
        let schema = body(requests);
        object["requestBody"] = json!({ "required": required, "content": { "application/json": { "schema": finished(requests, schema) } } });
    }
    object
}

/// The group an operation is listed under: the collection its path names.
fn tag(path: &str) -> &str {
    match path.strip_prefix("/api/v1/").and_then(|rest| rest.split('/').next()) {
        Some(collection) => collection,
        None => "platform",
    }
}

pub fn document() -> Value {
    // Bodies are described as they are read, answers as they are written.
    let mut requests = SchemaSettings::openapi3().for_deserialize().into_generator();
    let mut answers = SchemaSettings::openapi3().for_serialize().into_generator();
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for operation in operations() {
        let object = operation_object(operation, &mut requests, &mut answers);
        let method = match operation.method {
            Method::Get => "get",
            Method::Post => "post",
        };
        paths.entry(operation.path).or_default().insert(method.into(), object);
    }
    let mut schemas = requests.take_definitions(true);
    for (name, schema) in answers.take_definitions(true) {
        // Two types under one name, or a type read and written differently, would make the
        // document lie: the table's tests fail here first.
        if let Some(existing) = schemas.get(&name) {
            assert_eq!(existing, &schema, "two schemas named {name}: rename one (#[schemars(rename)])");
        }
        schemas.insert(name, schema);
    }
    schemas.insert(
        "Error".into(),
        json!({ "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message"],
            "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } }),
    );
    let mut document = json!({
        "openapi": "3.0.3",
        "info": { "title": "Suanli API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Computing-power voucher programmes and the compute network they are redeemed on." },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas,
        }
    });
    tuples_as_arrays(&mut document);
    nullable_as_openapi3(&mut document);
    crate::times::rewrite_schema(&mut document);
    document
}

/// An optional reference or enumeration is written `anyOf: [X, {enum: [null], nullable}]`; OpenAPI
/// 3.0 says it `allOf: [X], nullable: true` (a `$ref` takes no siblings), or X with `nullable`.
fn nullable_as_openapi3(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let null = |v: &Value| v["type"] == "null" || (v["enum"] == json!([null]));
            let pair = match object.get("anyOf") {
                Some(Value::Array(kinds)) if kinds.len() == 2 && kinds.iter().filter(|k| null(k)).count() == 1 => {
                    kinds.iter().find(|k| !null(k)).cloned()
                }
                _ => None,
            };
            if let Some(kind) = pair {
                object.remove("anyOf");
                if kind.get("$ref").is_some() {
                    object.insert("allOf".into(), json!([kind]));
                } else if let Value::Object(fields) = kind {
                    for (key, field) in fields {
                        object.entry(key).or_insert(field);
                    }
                }
                object.insert("nullable".into(), Value::Bool(true));
            }
            object.values_mut().for_each(nullable_as_openapi3);
        }
        Value::Array(values) => values.iter_mut().for_each(nullable_as_openapi3),
        _ => {}
    }
}

/// OpenAPI 3.0 has no tuples: a pair (`[application, amount]`) is described as an array of
/// exactly its length whose items are any of the pair's kinds.
fn tuples_as_arrays(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(kinds)) = object.get_mut("items") {
                let mut unique: Vec<Value> = Vec::new();
                for kind in kinds.drain(..) {
                    if !unique.contains(&kind) {
                        unique.push(kind);
                    }
                }
                let items = if unique.len() == 1 { unique.remove(0) } else { json!({ "anyOf": unique }) };
                object.insert("items".into(), items);
            }
            object.values_mut().for_each(tuples_as_arrays);
        }
        Value::Array(values) => values.iter_mut().for_each(tuples_as_arrays),
        _ => {}
    }
}

pub async fn document_json() -> Json<Value> {
    static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(document);
    Json(DOCUMENT.clone())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub async fn page() -> Html<String> {
    let mut rows = String::new();
    for operation in operations() {
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
            operation.method.as_str(),
            escape(operation.path),
            operation.id,
            escape(operation.summary),
            escape(&who_words(operation.who)),
        ));
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Suanli API</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:.3em .8em;vertical-align:top}}\
         tr:nth-child(even){{background:#f4f4f4}}</style></head><body><h1>Suanli API</h1>\
         <p>Send <code>Authorization: Bearer TOKEN</code>; log in at <code>POST /api/v1/login</code>. \
         Errors are <code>{{\"error\": {{\"code\", \"message\"}}}}</code>. The machine-readable document is \
         <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p><table><tr><th>Method</th><th>Path</th>\
         <th>Name</th><th>What it does</th><th>Who may call it</th></tr>{rows}</table></body></html>"
    ))
}
