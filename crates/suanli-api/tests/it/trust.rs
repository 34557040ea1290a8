//! What an attacker tries first: answers without a token, routes and methods that do not exist,
//! unreadable requests, and guessing passwords. Every answer comes in the one error shape.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use suanli_service::ServiceError;

use crate::TestApp;

fn raw(app: &TestApp, request: &[u8]) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
}

fn assert_shape(what: &str, status: u16, answer: &Value, code: &str) {
    assert_eq!(answer["error"]["code"].as_str(), Some(code), "{what}: {status} {answer}");
    assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {answer}");
}

#[test]
fn every_error_comes_in_the_json_shape() {
    let app = TestApp::start();
    let admin = app.tokens["admin"].clone();
    let (status, answer) = app.request("GET", "/no/such/page", None, &[], None);
    assert_eq!(status, 404);
    assert_shape("an unknown route", status, &answer, "not_found");
    let (status, answer) = app.request("GET", "/api/v1/sweep", Some("admin"), &[], None);
    assert_eq!(status, 405);
    assert_shape("a wrong method", status, &answer, "method_not_allowed");
    let (status, answer) = app.request("GET", "/api/v1/programs?limit=many", Some("admin"), &[], None);
    assert_eq!(status, 400);
    assert_shape("a bad query string", status, &answer, "invalid_request");
    let request = format!("GET /api/v1/orders/%FF%FE HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n");
    let (status, head, answer) = raw(&app, request.as_bytes());
    assert!((400..500).contains(&status), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(answer["error"]["code"].is_string(), "invalid UTF-8 in a path: {answer}");
    let huge = "x".repeat(suanli_api::BODY_BYTES_MAX + 10);
    let (status, answer) = app.request("POST", "/api/v1/sweep", Some("admin"), &[], Some(huge));
    assert_eq!(status, 413);
    assert_shape("an oversized body on a body-less endpoint", status, &answer, "body_too_large");
}

/// A caller without a token is told 401 whatever else is wrong with its request: a bad body, an
/// unreadable id, an unknown action. Nothing about the request is checked first.
#[test]
fn no_token_means_401_before_anything_is_checked() {
    let app = TestApp::start();
    for (method, route, _) in suanli_api::ROUTES {
        let path = route
            .replace("{program}", "not-an-id!")
            .replace("{action}", "frobnicate")
            .replace("{enterprise}", "x")
            .replace("{application}", "x")
            .replace("{voucher}", "x")
            .replace("{provider}", "x")
            .replace("{site}", "x")
            .replace("{order}", "x")
            .replace("{statement}", "x")
            .replace("{token}", "x");
        let (status, answer) = app.request(method, &path, None, &[], Some("{not json".into()));
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_shape(&path, status, &answer, "unauthenticated");
    }
    let (status, answer) = app.request("GET", "/api/v1/programs?limit=many", None, &[], None);
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthenticated")), "{answer}");
}

#[test]
fn wrong_passwords_are_throttled_per_name_and_kept_as_an_anomaly() {
    let app = TestApp::start();
    let login = |name: &str, password: &str| {
        let mut response = app
            .agent
            .post(&format!("{}/api/v1/login", app.base))
            .header("content-type", "application/json")
            .send(json!({ "name": name, "password": password }).to_string())
            .unwrap();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        (status, body, retry)
    };
    for _ in 0..suanli_api::login::FAILURES_PER_NAME_MAX {
        let (status, answer, _) = login("lab", "wrong");
        assert_eq!(status, 401, "{answer}");
    }
    // Locked: even the right password is refused, with when to come back.
    let (status, answer, retry) = login("lab", "correct horse");
    assert_eq!((status, answer["error"]["code"].as_str()), (429, Some("too_many_attempts")), "{answer}");
    let seconds: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(seconds > 0 && seconds <= suanli_api::login::LOCKOUT.as_secs());
    let anomalies = app
        .runtime
        .block_on(app.writer.call(|s| {
            Ok::<_, ServiceError>(s.state().anomalies.iter().filter(|a| a.kind == "login_throttled").count())
        }))
        .unwrap()
        .unwrap();
    assert!(anomalies >= 1, "the lockout is kept as evidence");
}
