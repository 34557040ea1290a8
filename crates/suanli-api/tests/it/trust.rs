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
    let request = format!(
        "GET /api/v1/orders/%FF%FE HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
    );
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
    for operation in suanli_api::operations::operations().iter().filter(|o| !o.is_public()) {
        let (method, route) = (operation.method.as_str(), operation.path);
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
            .replace("{token}", "x")
            .replace("{name}", "x");
        let (status, answer) = app.request(method, &path, None, &[], Some("{not json".into()));
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_shape(&path, status, &answer, "unauthenticated");
    }
    let (status, answer) = app.request("GET", "/api/v1/programs?limit=many", None, &[], None);
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthenticated")), "{answer}");
    // The scheme's name is case-insensitive; another scheme is no token.
    let token = &app.tokens["admin"];
    let (status, answer) =
        app.request("POST", "/api/v1/heads", None, &[("authorization", format!("bearer {token}"))], None);
    assert_ne!(status, 401, "{answer}");
    let (status, _) = app.request("POST", "/api/v1/heads", None, &[("authorization", format!("Basic {token}"))], None);
    assert_eq!(status, 401);
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

/// An independent check of an RFC 9162 inclusion proof, written from the RFC (§2.1.3.2), not
/// from the server's code.
fn rfc9162_root_from_path(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let node = |l: &[u8; 32], r: &[u8; 32]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    };
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if sn == 0 {
            return None;
        }
        if fn_ % 2 == 1 || fn_ == sn {
            r = node(p, &r);
            while fn_ % 2 == 0 && fn_ != 0 {
                fn_ /= 2;
                sn /= 2;
            }
        } else {
            r = node(&r, p);
        }
        fn_ /= 2;
        sn /= 2;
    }
    (sn == 0).then_some(r)
}

fn unhex32(text: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

/// The public record: an enterprise checks that its own entry is in the log the platform signed,
/// without reading the log; another enterprise cannot get that entry.
#[test]
fn an_enterprise_proves_its_entry_is_in_the_signed_log() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use sha2::{Digest, Sha256};
    let app = TestApp::start();
    let (status, head) = app.request("POST", "/api/v1/heads", Some("admin"), &[], Some("{}".into()));
    assert_eq!(status, 200, "{head}");
    let (status, latest) = app.request("GET", "/api/v1/heads/latest", None, &[], None);
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["head"], head);
    // Entry 4 registered ent-1.
    let (status, proof) = app.request("GET", "/api/v1/audit/proof?sequence=4", Some("enterprise"), &[], None);
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["entry"]["action"], "enterprise.registered");
    assert_eq!(proof["size"], head["log_size"]);
    let mut leaf = Sha256::new();
    leaf.update([0u8]);
    leaf.update(unhex32(proof["entry"]["hash"].as_str().unwrap()));
    let leaf: [u8; 32] = leaf.finalize().into();
    let path: Vec<[u8; 32]> = proof["path"].as_array().unwrap().iter().map(|h| unhex32(h.as_str().unwrap())).collect();
    let size = head["log_size"].as_u64().unwrap();
    let root = rfc9162_root_from_path(3, size, leaf, &path).expect("a well-formed path");
    assert_eq!(root, unhex32(head["log_root"].as_str().unwrap()), "the entry is under the signed root");
    // A path for another leaf does not prove this one.
    assert_ne!(rfc9162_root_from_path(4, size, leaf, &path), Some(root));
    // The head's signature, checked from the documented bytes with the published key.
    let key = VerifyingKey::from_bytes(&unhex32(latest["public_key"].as_str().unwrap())).unwrap();
    let field = |name: &str| match &head[name] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let signed = format!(
        "suanli-signed-head-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        field("log_size"),
        field("log_root"),
        field("log_head"),
        field("journal_batches"),
        field("journal_head"),
        field("state_hash"),
        field("time"),
        field("key_id")
    );
    let signature: Vec<u8> = {
        let text = head["signature"].as_str().unwrap();
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    };
    let signature = Signature::from_bytes(&signature.try_into().unwrap());
    key.verify(signed.as_bytes(), &signature).expect("the head is signed by the platform's key");
    // Another enterprise learns nothing about it.
    let (status, answer) = app.request("GET", "/api/v1/audit/proof?sequence=4", Some("other_enterprise"), &[], None);
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
}

/// Forged signatures and conflicting replays are kept as anomalies, listed for auditors (paged
/// from storage on both backends).
fn forged_signatures_and_conflicting_replays_are_kept_as_evidence() {
    let app = TestApp::start();
    let record = app.record("evidence-1", 0, 10, 60);
    let (status, answer) = app.send_usage("provider", 0, 1, std::slice::from_ref(&record));
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("signature_invalid")), "{answer}");
    let (status, answer) = app.send_usage("provider", 0, 0, std::slice::from_ref(&record));
    assert_eq!(status, 200, "{answer}");
    let mut replay = record.clone();
    replay.gpu_seconds -= 1;
    let (status, answer) = app.send_usage("provider", 0, 0, &[replay]);
    assert_eq!(answer["results"][0]["code"], "usage_record_conflict", "{status} {answer}");
    let (status, list) = app.request("GET", "/api/v1/anomalies", Some("auditor"), &[], None);
    assert_eq!(status, 200, "{list}");
    let kinds: Vec<&str> = list["items"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"signature_invalid") && kinds.contains(&"usage_record_conflict"), "{kinds:?}");
    let (_, conflicts) = app.request("GET", "/api/v1/anomalies?kind=usage_record_conflict", Some("admin"), &[], None);
    assert_eq!(conflicts["total"], 1, "{conflicts}");
    assert!(conflicts["items"][0]["detail"].as_str().unwrap().contains("replayed as"), "{conflicts}");
    let (status, _) = app.request("GET", "/api/v1/anomalies", Some("provider"), &[], None);
    assert_eq!(status, 403);
}

suanli_store::conformance!(forged_signatures_and_conflicting_replays_are_kept_as_evidence,);

/// Guesses sent all at once get no more tries than guesses sent one by one: each attempt is
/// counted before its password is checked.
#[test]
fn concurrent_guesses_cannot_slip_past_the_limit() {
    let app = TestApp::start();
    let url = format!("{}/api/v1/login", app.base);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let agent = app.agent.clone();
                let url = url.clone();
                scope.spawn(move || {
                    agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(json!({ "name": "lab", "password": "guess" }).to_string())
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 20, "{statuses:?}");
    assert!(checked <= suanli_api::login::FAILURES_PER_NAME_MAX as usize, "{checked} passwords were checked");
}
