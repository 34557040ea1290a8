//! The console in a real browser: headless Chromium driven over WebDriver (chromedriver), the way
//! a programme officer and an enterprise use it. Runs when `SUANLI_TEST_CHROMEDRIVER` names the
//! chromedriver binary (`.ci/run` installs Debian's chromium and chromium-driver and sets it);
//! skipped with a note otherwise.

use serde_json::{Value, json};
use suanli_service::model::VoucherState;
use suanli_service::{Actor, Clock, Role};

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
        self.submit_login(name, password);
    }

    /// Fills the login form shown and waits for the session: the cookie is set by the answer to
    /// the post, so nothing may go on before it.
    fn submit_login(&self, name: &str, password: &str) {
        self.type_into("input[name=name]", name);
        self.type_into("input[name=password]", password);
        self.click("form.card button[type=submit]");
        let url = self.url_when(|u| !u.contains("/login"));
        assert!(!url.contains("/login"), "{name} logs in: {}", self.source());
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

/// The words a flow looks for, in the language it is clicked through in.
struct Words {
    lang: &'static str,
    not_found: &'static str,
    csrf: &'static str,
    valid_code: &'static str,
    registered: &'static str,
    submitted: &'static str,
    approved: &'static str,
    placed: &'static str,
    usage_result: &'static str,
    issued: &'static str,
    statement_approved: &'static str,
    audit_passed: &'static str,
}

const CHINESE: Words = Words {
    lang: "zh",
    not_found: "找不到该页面或对象",
    csrf: "表单已过期",
    valid_code: "代码有效",
    registered: "注册成功",
    submitted: "申请已提交",
    approved: "申请已通过",
    placed: "订单已下达",
    usage_result: "算力券支付",
    issued: "结算单已出具",
    statement_approved: "结算单已确认",
    audit_passed: "审计通过",
};

const ENGLISH: Words = Words {
    lang: "en",
    not_found: "No such page or object",
    csrf: "This form has expired",
    valid_code: "Valid code",
    registered: "Registered",
    submitted: "Application submitted",
    approved: "Application approved",
    placed: "Order placed",
    usage_result: "Paid by voucher",
    issued: "Statement issued",
    statement_approved: "Statement approved",
    audit_passed: "The audit passed",
};

impl Browser {
    /// Logs in from the login page (the session of the last role is logged out first).
    fn log_in_as(&self, app: &TestApp, name: &str, password: &str) {
        self.open(&format!("{}/login", app.base));
        self.submit_login(name, password);
    }

    fn execute(&self, script: &str) {
        self.send("POST", &self.at("/execute/sync"), Some(json!({ "script": script, "args": [] })));
    }

    fn log_out(&self) {
        self.click("button.link");
        self.url_when(|u| u.contains("/login"));
    }

    /// Waits for the page to hold `text`, or fails showing the page.
    fn expect(&self, text: &str) -> String {
        let page = self.source_when(|p| p.contains(text));
        assert!(page.contains(text), "expected {text:?} at {}: {page}", self.url());
        page
    }
}

fn add_user(app: &TestApp, name: &'static str, role: Role) {
    let phc = suanli_api::login::hash_password("flow password").unwrap();
    app.runtime.block_on(app.writer.call(move |s| s.add_user(&Actor::server(), name, role, &phc))).unwrap().unwrap();
}

/// One whole programme flow clicked through in one language: an enterprise registers and
/// applies, the authority approves, the enterprise quotes and places an order, the provider
/// starts it and its usage arrives (signed, over the API), the provider sees each record, the
/// authority issues and approves the month's statement, the auditor runs the audit.
fn programme_flow(app: &TestApp, chromedriver: &str, words: &Words, n: u32, month: u8) {
    let lang = words.lang;
    let shot = |browser: &Browser, page: &str| browser.screenshot(&format!("flow-{lang}-{page}.png"));
    let browser = Browser::start(chromedriver);
    browser.open(&format!("{}/lang/{lang}?next=/register", app.base));

    // The enterprise registers; its USCC is checked by the server as it is typed.
    let uscc = super::uscc("310115", 500 + n);
    let code = uscc.to_string();
    browser.type_into("#uscc", &code[..17]);
    browser.expect("class=\"fail\"");
    browser.type_into("#uscc", &code[17..]);
    browser.expect(words.valid_code);
    browser.type_into("input[name=name]", &format!("Flow Lab {lang}"));
    browser.type_into("input[name=headcount]", "12");
    browser.type_into("input[name=revenue]", "9000000");
    browser.type_into("input[name=username]", &format!("flow-{lang}"));
    browser.type_into("input[name=password]", "flow password");
    shot(&browser, "register");
    browser.click("form.card button[type=submit]");
    browser.expect(words.registered);
    let enterprise = *app.writer.view().state().enterprise_by_uscc.get(&uscc).expect("registered");

    // A form whose token was tampered with changes nothing.
    browser.expect("action=\"/apply/prg-1\"");
    browser.execute("document.querySelector(\"form[action='/apply/prg-1'] input[name=form_token]\").value = 'forged'");
    browser.type_into("form[action='/apply/prg-1'] input[name=amount]", "50000");
    browser.click("form[action='/apply/prg-1'] button");
    browser.expect(words.csrf);
    assert!(app.writer.view().state().applications.values().all(|a| a.enterprise != enterprise));
    // It applies to the open programme.
    browser.open(&format!("{}/apply", app.base));
    browser.expect("action=\"/apply/prg-1\"");
    browser.type_into("form[action='/apply/prg-1'] input[name=amount]", "50000");
    shot(&browser, "apply");
    browser.click("form[action='/apply/prg-1'] button");
    browser.expect(words.submitted);
    browser.log_out();
    let application = app
        .writer
        .view()
        .state()
        .applications
        .values()
        .find(|a| a.enterprise == enterprise)
        .map(|a| a.id)
        .expect("an application");

    // The authority approves it.
    browser.log_in_as(app, "officer", "flow password");
    browser.open(&format!("{}/applications", app.base));
    shot(&browser, "applications");
    browser.click(&format!("form[action='/applications/{application}/approve'] button"));
    browser.expect(words.approved);
    browser.log_out();

    // The enterprise quotes, sees where the work would run, and places the order.
    browser.log_in_as(app, &format!("flow-{lang}"), "flow password");
    browser.open(&format!("{}/quote", app.base));
    browser.type_into("input[name=gpus]", "4");
    browser.type_into("input[name=hours]", "10");
    browser.click("form.card button[type=submit]");
    let page = browser.expect("id=\"place\"");
    assert!(page.contains("svg") && page.contains("class=\"chosen\""), "the quote draws its map: {page}");
    shot(&browser, "quote");
    browser.click("#place");
    browser.expect(words.placed);
    // Another enterprise's order is not there for it.
    browser.open(&format!("{}/orders/{}", app.base, app.orders[0]));
    browser.expect(words.not_found);
    browser.log_out();
    let order =
        app.writer.view().state().orders.values().find(|o| o.enterprise == enterprise).cloned().expect("an order");
    let provider = app.providers.iter().position(|p| *p == order.provider).expect("a test provider");

    // The provider starts it; the usage arrives from its machine, signed; the provider sees it.
    browser.log_in_as(app, if provider == 0 { "provider-a" } else { "provider-b" }, "flow password");
    browser.open(&format!("{}/orders/{}", app.base, order.id));
    browser.click("#order-start");
    browser.expect("id=\"order-complete\"");
    let start = app.clock.now_s();
    app.clock.set(start + 2 * 3600);
    let records: Vec<suanli_api::UsageRecord> = (0..2)
        .map(|h| suanli_api::UsageRecord {
            id: format!("flow-{lang}-{h}"),
            order: order.id.to_string(),
            gpu_seconds: 4 * 3600,
            period_start: suanli_service::calendar::format_timestamp(start + h * 3600),
            period_end: suanli_service::calendar::format_timestamp(start + (h + 1) * 3600),
        })
        .collect();
    let token = if provider == 0 { "provider" } else { "other_provider" };
    let (status, body) = app.send_usage(token, provider, provider, &records);
    assert_eq!(status, 200, "{body}");
    browser.open(&format!("{}/orders/{}", app.base, order.id));
    let page = browser.expect(words.usage_result);
    assert!(page.contains(&format!("flow-{lang}-0")) && page.contains(&format!("flow-{lang}-1")), "{page}");
    shot(&browser, "provider-order");
    browser.log_out();

    // Next month the authority issues the provider's statement for this one and approves it.
    app.clock.set(suanli_service::calendar::shanghai_midnight(2026, month + 1, 2).unwrap());
    browser.log_in_as(app, "officer", "flow password");
    browser.open(&format!("{}/statements", app.base));
    browser.find(&format!("select[name=provider] option[value='{}']", order.provider));
    browser.click(&format!("select[name=provider] option[value='{}']", order.provider));
    browser.click("#issue-statement");
    browser.expect(words.issued);
    let statement = app
        .writer
        .view()
        .state()
        .statements
        .values()
        .find(|s| s.provider == order.provider && s.month == format!("2026-{month:02}"))
        .map(|s| s.id)
        .expect("the statement");
    shot(&browser, "statements");
    browser.click(&format!("form[action='/statements/{statement}/approve'] button"));
    browser.expect(words.statement_approved);
    browser.log_out();

    // The auditor runs the audit.
    browser.log_in_as(app, "inspector", "flow password");
    browser.open(&format!("{}/audit", app.base));
    browser.click("#run-audit");
    browser.expect(words.audit_passed);
    shot(&browser, "audit");
}

#[test]
fn a_whole_programme_is_clicked_through_in_both_languages() {
    let Ok(chromedriver) = std::env::var("SUANLI_TEST_CHROMEDRIVER") else {
        eprintln!("SUANLI_TEST_CHROMEDRIVER is not set: the browser test is skipped (.ci/run sets it)");
        return;
    };
    let app = TestApp::start();
    let authority = app.writer.view().state().programs.values().next().unwrap().authority;
    add_user(&app, "officer", Role::AuthorityAdmin(authority));
    add_user(&app, "provider-a", Role::Provider(app.providers[0]));
    add_user(&app, "provider-b", Role::Provider(app.providers[1]));
    add_user(&app, "inspector", Role::Auditor);
    // April in Chinese, May in English: each month's statement is issued once.
    programme_flow(&app, &chromedriver, &CHINESE, 1, 4);
    programme_flow(&app, &chromedriver, &ENGLISH, 2, 5);
}
