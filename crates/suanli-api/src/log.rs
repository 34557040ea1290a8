//! Structured logs: one line per event on standard error, as a JSON object (`ts`, `level`,
//! `msg`, and the event's fields) or as plain text. A few lines of code rather than a logging
//! framework: the API logs its start, its stop, internal errors and, when asked, each request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

static FORMAT: OnceLock<Format> = OnceLock::new();
static REQUESTS: AtomicBool = AtomicBool::new(false);

/// Sets the format (once; later calls are ignored) and whether requests are logged.
pub fn configure(format: Format, requests: bool) {
    let _ = FORMAT.set(format);
    REQUESTS.store(requests, Ordering::Relaxed);
}

pub fn requests_logged() -> bool {
    REQUESTS.load(Ordering::Relaxed)
}

/// Writes one event. `fields` is a JSON object.
pub fn event(level: &str, message: &str, fields: Value) {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let line = match FORMAT.get().copied().unwrap_or(Format::Json) {
        Format::Json => {
            let mut object = json!({ "ts": ts, "level": level, "msg": message });
            if let (Some(target), Value::Object(extra)) = (object.as_object_mut(), fields) {
                target.extend(extra);
            }
            object.to_string()
        }
        Format::Text => format!("{ts:.3} {level} {message} {fields}"),
    };
    eprintln!("{line}");
}
