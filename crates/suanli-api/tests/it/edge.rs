//! Limits at the edge, tried with raw sockets as a slow or greedy client would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use suanli_api::edge::Limits;
use suanli_service::ServiceError;

use crate::TestApp;

fn short_limits() -> Limits {
    Limits { connections_max: 8, header_read_ms: 500, body_read_ms: 500, body_reads_max: 4 }
}

fn connect(app: &TestApp) -> TcpStream {
    let stream = TcpStream::connect(app.base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

/// Reads until the server closes the connection (or 5 s pass); answers what arrived and whether
/// the connection was closed.
fn read_until_closed(stream: &mut TcpStream) -> (String, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&received).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
        }
    }
}

#[test]
fn a_client_that_sends_its_headers_slowly_is_dropped() {
    let app = TestApp::start_with_limits(suanli_api::writer::QUEUE_JOBS_MAX, short_limits());
    let mut stream = connect(&app);
    let started = Instant::now();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (_, closed) = read_until_closed(&mut stream);
    assert!(closed, "the connection is closed");
    assert!(started.elapsed() < Duration::from_secs(3), "within the header limit, took {:?}", started.elapsed());
}

#[test]
fn a_client_that_sends_its_body_slowly_gets_408_in_the_error_shape() {
    let app = TestApp::start_with_limits(suanli_api::writer::QUEUE_JOBS_MAX, short_limits());
    let mut stream = connect(&app);
    let started = Instant::now();
    stream
        .write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"na")
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[test]
fn a_full_queue_is_answered_503_before_the_body_is_read() {
    let app = TestApp::start_with_limits(1, short_limits());
    let release = app.hold_writer();
    // The writer is busy; jobs fill the queue of one behind it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.writer.is_full() {
        assert!(Instant::now() < deadline, "the queue fills");
        let filler = app.writer.clone();
        app.runtime.spawn(async move {
            let _ = filler.call(|_| Ok::<_, ServiceError>(())).await;
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stream = connect(&app);
    let started = Instant::now();
    // Headers announce a body that is never sent: the answer must not wait for it.
    let head = format!(
        "POST /api/v1/providers/prv-1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        app.tokens["provider"]
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("\"code\":\"overloaded\""), "{answer}");
    assert!(started.elapsed() < Duration::from_millis(400), "before the body limit: {:?}", started.elapsed());
    release.send(()).unwrap();
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let limits = Limits { connections_max: 2, header_read_ms: 5_000, ..short_limits() };
    let app = TestApp::start_with_limits(suanli_api::writer::QUEUE_JOBS_MAX, limits);
    // Two connections in the middle of their headers hold both places.
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&app)).collect();
    for stream in &mut held {
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut third = connect(&app);
    let started = Instant::now();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_closed(&mut third);
    assert!(closed && answer.is_empty(), "closed without an answer: {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // Once one lets go, a new connection is served.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = connect(&app);
    fourth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (answer, _) = read_until_closed(&mut fourth);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
