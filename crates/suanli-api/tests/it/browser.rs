//! The console in a real browser: headless Chromium driven over WebDriver (chromedriver), the way
//! a programme officer and an enterprise use it. Runs when `SUANLI_TEST_CHROMEDRIVER` names the
//! chromedriver binary (`.ci/run` installs Debian's chromium and chromium-driver and sets it);
//! skipped with a note otherwise.

use serde_json::{Value, json};
use suanli_service::model::VoucherState;
use suanli_service::{Actor, Role};

use super::TestApp;

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: std::process::Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Browser {
    fn start(chromedriver: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver did not answer");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let binary = std::env::var("SUANLI_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let capabilities = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1400,1000", "--lang=zh-CN"],
            "prefs": { "intl.accept_languages": "zh-CN,zh" }
        } } } });
        let mut browser = Browser { driver, base, session: String::new(), agent };
        let created = browser.send("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"].as_str().expect("a WebDriver session").to_owned();
        browser
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        }
        .unwrap();
        let answer: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert!(answer["value"].get("error").is_none(), "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    fn open(&self, url: &str) {
        self.send("POST", &self.at("/url"), Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        let value = self.send("GET", &self.at("/url"), None);
        value.as_str().unwrap_or_else(|| panic!("url: {value}")).to_owned()
    }

    /// The URL once it satisfies `wanted` (a click's navigation may still be under way), or
    /// the last one seen after 10 s.
    fn url_when(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let url = self.url();
            if wanted(&url) || std::time::Instant::now() > deadline {
                return url;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The page once it satisfies `wanted`, or the last one seen after 10 s.
    fn source_when(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let page = self.source();
            if wanted(&page) || std::time::Instant::now() > deadline {
                return page;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn source(&self) -> String {
        self.send("GET", &self.at("/source"), None).as_str().unwrap().to_owned()
    }

    fn find(&self, css: &str) -> String {
        let found = self.send("POST", &self.at("/element"), Some(json!({ "using": "css selector", "value": css })));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: {found} at {}", self.url())).to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.send("POST", &self.at(&format!("/element/{element}/value")), Some(json!({ "text": text })));
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.send("POST", &self.at(&format!("/element/{element}/click")), Some(json!({})));
    }

    fn screenshot(&self, name: &str) {
        let png = self.send("GET", &self.at("/screenshot"), None);
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let bytes = base64_decode(png.as_str().unwrap());
        std::fs::write(&path, bytes).unwrap();
    }

    fn log_in(&self, app: &TestApp, name: &str, password: &str) {
        self.open(&format!("{}/", app.base));
        let url = self.url_when(|u| u.contains("/login"));
        assert!(url.contains("/login"), "a visitor is sent to log in: {url}");
        self.type_into("input[name=name]", name);
        self.type_into("input[name=password]", password);
        self.click("form.card button[type=submit]");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(&format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (the screenshot), in a few lines rather than a crate.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(value(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn an_enterprise_and_an_authority_use_the_console_in_chromium() {
    let Ok(chromedriver) = std::env::var("SUANLI_TEST_CHROMEDRIVER") else {
        eprintln!("SUANLI_TEST_CHROMEDRIVER is not set: the browser test is skipped (.ci/run sets it)");
        return;
    };
    let app = TestApp::start();
    let voucher = app.voucher.to_string();
    let browser = Browser::start(&chromedriver);

    // An enterprise logs in, in Chinese, and lands on its vouchers.
    browser.log_in(&app, "lab", "correct horse");
    let url = browser.url_when(|u| u.ends_with("/vouchers"));
    assert!(url.ends_with("/vouchers"), "{url}");
    let page = browser.source();
    assert!(page.contains("算力券") && page.contains(&voucher), "{page}");
    browser.screenshot("console-enterprise-zh.png");
    // English, one click away.
    browser.click("a.lang");
    let page = browser.source_when(|p| p.contains("Log out"));
    assert!(page.contains("Vouchers") && page.contains("Log out"), "{page}");
    browser.screenshot("console-enterprise-en.png");
    browser.click("button.link");
    let url = browser.url_when(|u| u.contains("/login"));
    assert!(url.contains("/login"), "{url}");
    drop(browser);

    // The authority's admin suspends the voucher with a reason, through the form.
    let authority = app.writer.view().state().programs.values().next().unwrap().authority;
    let phc = suanli_api::login::hash_password("officer password").unwrap();
    app.runtime
        .block_on(
            app.writer.call(move |s| s.add_user(&Actor::server(), "officer", Role::AuthorityAdmin(authority), &phc)),
        )
        .unwrap()
        .unwrap();
    let browser = Browser::start(&chromedriver);
    browser.log_in(&app, "officer", "officer password");
    browser.open(&format!("{}/vouchers", app.base));
    browser.type_into(&format!("form[action='/vouchers/{voucher}/suspend'] input[name=reason]"), "需要补充材料");
    browser.click(&format!("form[action='/vouchers/{voucher}/suspend'] button"));
    let url = browser.url_when(|u| u.ends_with("/vouchers?done=suspended"));
    assert!(url.ends_with("/vouchers?done=suspended"), "{url}");
    let page = browser.source();
    assert!(page.contains("算力券已暂停") && page.contains("需要补充材料"), "{page}");
    assert_eq!(app.writer.view().state().vouchers[&app.voucher].state, VoucherState::Suspended);
    browser.open(&format!("{}/programs/prg-1", app.base));
    assert!(browser.source().contains("<svg"));
    browser.screenshot("console-programme-zh.png");
}
