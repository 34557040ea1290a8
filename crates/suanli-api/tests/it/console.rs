//! The web console over real HTTP: login and session cookie, languages, each role's scope, forms
//! guarded by the session's form token, escaping, and logout revoking the session.

use suanli_domain::{EnterpriseId, Fen, StatementId};
use suanli_service::Actor;
use suanli_service::model::{StatementState, VoucherState};

use super::TestApp;

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    cookies: Vec<String>,
    content_type: String,
    pub(crate) body: String,
}

pub(crate) fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .build()
        .into();
    let url = format!("{}{path}", app.base);
    let mut response = match method {
        "GET" => {
            let mut request = agent.get(&url);
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.call().unwrap()
        }
        _ => {
            let mut request = agent.post(&url).header("content-type", "application/x-www-form-urlencoded");
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send(form.unwrap_or("").to_owned()).unwrap()
        }
    };
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let location = header("location");
    let content_type = header("content-type").unwrap_or_default();
    let cookies = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    Answer { status, location, cookies, content_type, body }
}

pub(crate) fn session(app: &TestApp, who: &str) -> String {
    format!("suanli_session={}", app.tokens[who])
}

/// The form token a page of this session carries.
pub(crate) fn form_token(page: &str) -> String {
    let at = page.find("name=\"form_token\" value=\"").expect("the page has a form") + 25;
    page[at..at + 32].to_owned()
}

/// Posts the login form as a browser does: the login page first, for its visitor cookie and
/// token, then the form with both.
fn log_in(app: &TestApp, form: &str) -> Answer {
    let page = call(app, "GET", "/login", None, &[], None);
    let cookie = page.cookies.iter().find(|c| c.starts_with("suanli_visitor=")).expect("a visitor cookie");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let body = format!("form_token={}&{form}", form_token(&page.body));
    call(app, "POST", "/login", Some(&cookie), &[], Some(&body))
}

#[test]
fn a_visitor_is_sent_to_log_in_and_a_login_sets_a_strict_session_cookie() {
    let app = TestApp::start();
    let home = call(&app, "GET", "/", None, &[], None);
    assert_eq!((home.status, home.location.as_deref()), (303, Some("/login?next=/")));
    let page = call(&app, "GET", "/login", None, &[], None);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains("lang=\"zh-CN\"") && page.body.contains("登录"), "Chinese by default");

    let wrong = log_in(&app, "name=lab&password=wrong&next=/vouchers");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("用户名或密码错误"), "{}", wrong.body);
    assert!(wrong.cookies.iter().all(|c| !c.starts_with("suanli_session=")));

    let done = log_in(&app, "name=lab&password=correct+horse&next=/vouchers");
    assert_eq!((done.status, done.location.as_deref()), (303, Some("/vouchers")));
    let cookie = done.cookies.iter().find(|c| c.starts_with("suanli_session=sl_")).expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let vouchers = call(&app, "GET", "/vouchers", Some(pair), &[], None);
    assert_eq!(vouchers.status, 200);
    assert!(vouchers.body.contains(&app.voucher.to_string()));

    // A login never sends anyone off the site.
    let away = log_in(&app, "name=lab&password=correct+horse&next=//evil.example/");
    assert_eq!(away.location.as_deref(), Some("/"));
    let tab = log_in(&app, "name=lab&password=correct+horse&next=/%09/evil.example/");
    assert_eq!(tab.location.as_deref(), Some("/"), "a tab the browser would drop is refused too");
    // A login posted by another site (no visitor cookie or token) logs no one in.
    let forged = call(&app, "POST", "/login", None, &[], Some("name=lab&password=correct+horse&next=/"));
    assert_eq!(forged.status, 403);
    assert!(forged.cookies.iter().all(|c| !c.starts_with("suanli_session=")));
}

#[test]
fn english_is_one_click_away_and_follows_the_browser() {
    let app = TestApp::start();
    let cookie = session(&app, "authority");
    let english = call(&app, "GET", "/programs", Some(&cookie), &[("accept-language", "en-GB,en;q=0.9")], None);
    assert!(english.body.contains("lang=\"en\"") && english.body.contains("Voucher programmes"), "{}", english.body);
    let switch = call(&app, "GET", "/lang/en?next=/programs", None, &[], None);
    assert_eq!((switch.status, switch.location.as_deref()), (303, Some("/programs")));
    let chosen = switch.cookies.iter().find(|c| c.starts_with("suanli_lang=en")).expect("a language cookie");
    let both = format!("{cookie}; {}", chosen.split(';').next().unwrap());
    let page = call(&app, "GET", "/programs", Some(&both), &[("accept-language", "zh-CN")], None);
    assert!(page.body.contains("Voucher programmes"), "the choice beats the browser");
    let chinese = call(&app, "GET", "/programs", Some(&cookie), &[], None);
    assert!(chinese.body.contains("算力券项目"));
    assert!(chinese.body.contains("¥"), "amounts in yuan");
}

#[test]
fn each_role_sees_only_its_own() {
    let app = TestApp::start();
    let voucher = app.voucher.to_string();
    let page = |who: &str, path: &str| call(&app, "GET", path, Some(&session(&app, who)), &[], None);
    assert!(page("enterprise", "/vouchers").body.contains(&voucher));
    let other = page("other_enterprise", "/vouchers");
    assert_eq!(other.status, 200);
    assert!(!other.body.contains(&voucher) && other.body.contains("没有可显示的算力券"));
    assert!(!page("other_authority", "/vouchers").body.contains(&voucher));
    assert_eq!(page("provider", "/vouchers").status, 403);
    assert_eq!(page("enterprise", "/audit").status, 403);
    assert_eq!(page("enterprise", "/statements").status, 403);
    let order = app.orders[1].to_string();
    assert!(!page("provider", "/orders").body.contains(&format!("id=\"{order}\"")), "another provider's order");
    assert!(page("other_provider", "/orders").body.contains(&format!("id=\"{order}\"")));
    let audit = page("auditor", "/audit");
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains("class=\"hash\"") && audit.body.contains("program.loaded"));
    // A session that is not a live token is sent to log in.
    let stale = call(&app, "GET", "/orders", Some("suanli_session=sl_nothing"), &[], None);
    assert_eq!(stale.status, 303);
}

#[test]
fn forms_need_the_session_form_token_and_obey_the_api_rules() {
    let app = TestApp::start();
    let statement = StatementId::new(1).unwrap();
    let authority = session(&app, "authority");
    let page = call(&app, "GET", "/statements", Some(&authority), &[], None);
    assert!(page.body.contains("人民币大写"));
    let token = form_token(&page.body);
    let path = format!("/statements/{statement}/approve");

    // Without the form token (another site's page posting in the user's name): refused, unchanged.
    let forged = call(&app, "POST", &path, Some(&authority), &[], Some("form_token=00000000000000000000000000000000"));
    assert_eq!(forged.status, 403);
    let state = |app: &TestApp| app.writer.view().state().statements[&statement].state;
    assert_eq!(state(&app), StatementState::Issued);

    // A reviewer may not approve statements, even with its own valid token.
    let reviewer = session(&app, "reviewer");
    let reviewer_token = form_token(&call(&app, "GET", "/statements", Some(&reviewer), &[], None).body);
    let refused = call(&app, "POST", &path, Some(&reviewer), &[], Some(&format!("form_token={reviewer_token}")));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(state(&app), StatementState::Issued);

    let done = call(&app, "POST", &path, Some(&authority), &[], Some(&format!("form_token={token}")));
    assert_eq!((done.status, done.location.as_deref()), (303, Some("/statements?done=statement_approved")));
    assert_eq!(state(&app), StatementState::Approved);
    let after = call(&app, "GET", "/statements?done=statement_approved", Some(&authority), &[], None);
    assert!(after.body.contains("结算单已确认"));
}

#[test]
fn what_people_type_is_shown_escaped_and_a_refusal_names_its_reason() {
    let app = TestApp::start();
    let authority = session(&app, "authority");
    let token = form_token(&call(&app, "GET", "/vouchers", Some(&authority), &[], None).body);
    let path = format!("/vouchers/{}/suspend", app.voucher);
    let reason = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let done = call(&app, "POST", &path, Some(&authority), &[], Some(&format!("form_token={token}&reason={reason}")));
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(app.writer.view().state().vouchers[&app.voucher].state, VoucherState::Suspended);
    let page = call(&app, "GET", "/vouchers", Some(&authority), &[], None);
    assert!(page.body.contains("&#60;script&#62;alert(1)") || page.body.contains("&lt;script&gt;alert(1)"));
    assert!(!page.body.contains("<script>"));
    // Suspending again is refused by the service, and the page says why.
    let again = call(&app, "POST", &path, Some(&authority), &[], Some(&format!("form_token={token}&reason=x")));
    assert!(again.status >= 400 && again.body.contains("class=\"error\""), "{}", again.body);

    // An application rejected through its form, with the reason.
    let enterprise = EnterpriseId::new(1).unwrap();
    let application = app
        .runtime
        .block_on(app.writer.call(move |s| {
            let program = s.find_program("shanghai-compute")?;
            let id = s.create_application(&Actor::server(), enterprise, program, Fen::from_yuan(1_000).unwrap(), "")?;
            s.submit_application(&Actor::server(), id).map(|_| id)
        }))
        .unwrap()
        .expect("a second application is drafted and submitted");
    {
        let page = call(&app, "GET", "/applications", Some(&authority), &[], None);
        assert!(page.body.contains(&format!("/applications/{application}/reject")));
        let token = form_token(&page.body);
        let bad = call(
            &app,
            "POST",
            &format!("/applications/{application}/approve"),
            Some(&authority),
            &[],
            Some(&format!("form_token={token}&amount=abc")),
        );
        assert_eq!(bad.status, 400);
        let rejected = call(
            &app,
            "POST",
            &format!("/applications/{application}/reject"),
            Some(&authority),
            &[],
            Some(&format!("form_token={token}&reason=not+enough+detail")),
        );
        assert_eq!(rejected.status, 303, "{}", rejected.body);
        let view = app.writer.view();
        let decided = &view.state().applications[&application];
        assert_eq!(decided.reason.as_deref(), Some("not enough detail"));
    }
}

#[test]
fn a_programme_dashboard_draws_its_burn_with_a_table_and_csv() {
    let app = TestApp::start();
    let cookie = session(&app, "enterprise");
    let page = call(&app, "GET", "/programs/shanghai-compute", Some(&cookie), &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg") && page.body.contains("<polyline"), "{}", page.body);
    assert!(page.body.contains("2026-03"));
    let csv = call(&app, "GET", "/programs/prg-1/spend.csv", Some(&cookie), &[], None);
    assert!(csv.content_type.starts_with("text/csv"));
    assert!(csv.body.starts_with("month,spent_fen,spent_to_date_fen,settled_fen\n2026-03,"), "{}", csv.body);
    let missing = call(&app, "GET", "/programs/prg-999", Some(&cookie), &[], None);
    assert_eq!(missing.status, 404);
    assert!(missing.content_type.starts_with("text/html"));
}

#[test]
fn logging_out_revokes_the_session() {
    let app = TestApp::start();
    let done = log_in(&app, "name=lab&password=correct+horse");
    let pair = done.cookies[0].split(';').next().unwrap().to_owned();
    let page = call(&app, "GET", "/orders", Some(&pair), &[], None);
    let token = form_token(&page.body);
    let out = call(&app, "POST", "/logout", Some(&pair), &[], Some(&format!("form_token={token}")));
    assert_eq!((out.status, out.location.as_deref()), (303, Some("/login")));
    assert!(out.cookies.iter().any(|c| c.contains("Max-Age=0")));
    assert_eq!(call(&app, "GET", "/orders", Some(&pair), &[], None).status, 303, "the token is revoked");
}

#[test]
fn an_enterprise_checks_its_eligibility_and_applies_from_the_console() {
    let app = TestApp::start();
    let cookie = session(&app, "enterprise");
    let page = call(&app, "GET", "/apply", Some(&cookie), &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("action=\"/apply/prg-1\"") && page.body.contains("符合"), "{}", page.body);
    let token = form_token(&page.body);
    let before = app.writer.view().state().applications.len();
    let bad = call(&app, "POST", "/apply/prg-1", Some(&cookie), &[], Some(&format!("form_token={token}&amount=-5")));
    assert_eq!(bad.status, 400);
    assert_eq!(app.writer.view().state().applications.len(), before, "a refused form changes nothing");
    let done = call(
        &app,
        "POST",
        "/apply/prg-1",
        Some(&cookie),
        &[],
        Some(&format!("form_token={token}&amount=1000.50&note=GPU+time")),
    );
    assert_eq!((done.status, done.location.as_deref()), (303, Some("/applications?done=submitted")), "{}", done.body);
    let view = app.writer.view();
    let newest = view.state().applications.values().next_back().unwrap();
    assert_eq!((newest.requested_fen, newest.note.as_str()), (Fen::new(1_000_50), "GPU time"));
    assert_eq!(newest.state, suanli_service::model::ApplicationState::Submitted);
    assert_eq!(call(&app, "GET", "/apply", Some(&session(&app, "provider")), &[], None).status, 403);
}

#[test]
fn anomalies_are_shown_newest_first_to_those_who_oversee() {
    let app = TestApp::start();
    for n in 0..3 {
        app.runtime
            .block_on(
                app.writer
                    .call(move |s| s.flag_anomaly(&Actor::server(), "test_kind", "ord-1", &format!("detail {n}"))),
            )
            .unwrap()
            .unwrap();
    }
    let page = call(&app, "GET", "/anomalies", Some(&session(&app, "auditor")), &[], None);
    assert_eq!(page.status, 200);
    let (newest, oldest) = (page.body.find("detail 2").unwrap(), page.body.find("detail 0").unwrap());
    assert!(newest < oldest, "newest first");
    assert_eq!(call(&app, "GET", "/anomalies", Some(&session(&app, "enterprise")), &[], None).status, 403);
    let other = call(&app, "GET", "/anomalies", Some(&session(&app, "other_authority")), &[], None);
    assert_eq!(other.status, 200);
    assert!(!other.body.contains("detail 0"), "another authority's programme");
}

#[test]
fn lists_are_drawn_a_page_at_a_time() {
    let app = TestApp::start();
    let cookie = session(&app, "admin");
    let first = call(&app, "GET", "/orders", Some(&cookie), &[], None);
    assert!(first.body.contains("1–2 / 2") && !first.body.contains("rel=\"next\""), "{}", first.body);
    let beyond = call(&app, "GET", "/orders?page=7", Some(&cookie), &[], None);
    assert_eq!(beyond.status, 200);
    assert!(beyond.body.contains("0 / 2") && beyond.body.contains("href=\"/orders?page=0\""), "{}", beyond.body);
    let odd = call(&app, "GET", "/orders?page=abc", Some(&cookie), &[], None);
    assert!(odd.body.contains("1–2 / 2"));
}

/// A visitor's registration form: its cookie pair and its form token.
fn visitor(app: &TestApp) -> (String, String) {
    let page = call(app, "GET", "/register", None, &[], None);
    assert_eq!(page.status, 200);
    let cookie = page.cookies.iter().find(|c| c.starts_with("suanli_visitor=")).expect("a visitor cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    (cookie.split(';').next().unwrap().to_owned(), form_token(&page.body))
}

fn counts(app: &TestApp) -> (usize, usize) {
    let view = app.writer.view();
    (view.state().enterprises.len(), view.state().users.len())
}

#[test]
fn registration_checks_every_field_and_writes_nothing_when_refused() {
    let app = TestApp::start();
    let (cookie, token) = visitor(&app);
    let good = super::uscc("310115", 77).to_string();
    let form = |uscc: &str, username: &str, password: &str, token: &str| {
        format!(
            "form_token={token}&uscc={uscc}&name=Lab+77&kind=sme&headcount=9&revenue=9000000&research_projects=&username={username}&password={password}"
        )
    };
    let before = counts(&app);
    let post = |cookie: Option<&str>, body: &str| call(&app, "POST", "/register", cookie, &[], Some(body));

    // Without the visitor's cookie, or with another token, the form is refused.
    assert_eq!(post(None, &form(&good, "lab77", "long+enough+1", &token)).status, 403);
    assert_eq!(
        post(Some(&cookie), &form(&good, "lab77", "long+enough+1", "0123456789abcdef0123456789abcdef")).status,
        403
    );
    // Each bad field is named with its reason, in the reader's language.
    let mut wrong = good.clone();
    wrong.replace_range(17.., if good.ends_with('0') { "1" } else { "0" });
    let refused = post(Some(&cookie), &form(&wrong, "lab77", "long+enough+1", &token));
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("统一社会信用代码") && refused.body.contains("第 18 位校验码应为"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(&format!("value=\"{wrong}\"")), "the form keeps what was typed");
    let short = post(Some(&cookie), &form(&good, "lab77", "short", &token));
    assert_eq!(short.status, 400);
    assert!(short.body.contains("密码应为 10–256 个字符") && !short.body.contains("value=\"short\""));
    let name = post(Some(&cookie), &form(&good, "Lab+77", "long+enough+1", &token));
    assert!(name.status == 400 && name.body.contains("登录用户名"), "{}", name.body);
    // A login name or a USCC already taken: refused before anything is written.
    let taken = post(Some(&cookie), &form(&good, "lab", "long+enough+1", &token));
    assert_eq!(taken.status, 409, "{}", taken.body);
    let registered = super::uscc("310115", 1).to_string();
    assert_eq!(post(Some(&cookie), &form(&registered, "lab78", "long+enough+1", &token)).status, 409);
    assert_eq!(counts(&app), before, "no refused registration wrote anything");

    // A good one registers the enterprise and its login, and logs it in.
    let done = post(Some(&cookie), &form(&good, "lab77", "long+enough+1", &token));
    assert_eq!((done.status, done.location.as_deref()), (303, Some("/apply?done=registered")), "{}", done.body);
    assert_eq!(counts(&app), (before.0 + 1, before.1 + 1));
    let session = done.cookies.iter().find(|c| c.starts_with("suanli_session=sl_")).expect("logged in");
    let apply = call(&app, "GET", "/apply?done=registered", Some(session.split(';').next().unwrap()), &[], None);
    assert!(
        apply.status == 200 && apply.body.contains("注册成功") && apply.body.contains("Shanghai"),
        "{}",
        apply.body
    );
    let enterprise = app.writer.view().state().enterprise_by_uscc[&super::uscc("310115", 77)];
    let log = app.runtime.block_on(app.writer.log_page(0, 1000)).unwrap().unwrap().0;
    assert!(log.iter().any(|e| e.action == "enterprise.registered" && e.actor == "visitor"), "kept as a visitor's act");
    assert!(app.writer.view().state().users["lab77"].role == suanli_service::Role::Enterprise(enterprise).to_string());
}

#[test]
fn the_uscc_is_checked_as_it_is_typed() {
    let app = TestApp::start();
    let good = super::uscc("310115", 77).to_string();
    let check = |value: &str, language: &str| {
        let answer =
            call(&app, "GET", &format!("/register/uscc?value={value}"), None, &[("accept-language", language)], None);
        assert_eq!(answer.status, 200);
        serde_json::from_str::<serde_json::Value>(&answer.body).unwrap()
    };
    let verdict = check(&good, "zh-CN");
    assert_eq!(verdict["ok"], true);
    assert!(verdict["message"].as_str().unwrap().contains("浦东新区"), "{verdict}");
    let verdict = check(&good[..10], "en");
    assert_eq!(verdict["ok"], false);
    assert_eq!(verdict["message"], "a Unified Social Credit Code has 18 characters, got 10");
    let verdict = check("91310115OOOOOOOOOO", "zh");
    assert!(verdict["message"].as_str().unwrap().contains("第 9 位"), "{verdict}");
}

#[test]
fn a_quote_shows_where_the_work_runs_and_places_the_order_it_quoted() {
    let app = TestApp::start();
    let cookie = session(&app, "enterprise");
    let voucher = app.voucher.to_string();
    let path = format!("/quote?voucher={voucher}&chip=&gpus=4&hours=10&purpose=training");
    let page = call(&app, "GET", &path, Some(&cookie), &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg") && page.body.contains("class=\"chosen\""), "{}", page.body);
    assert!(page.body.contains("和林格尔集群") && page.body.contains("¥576.00"), "clusters and the voucher share");
    let bad = call(
        &app,
        "GET",
        &format!("/quote?voucher={voucher}&gpus=0&hours=10&purpose=training"),
        Some(&cookie),
        &[],
        None,
    );
    assert!(bad.body.contains("GPU 数量应为正整数") && !bad.body.contains("id=\"place\""));

    let token = form_token(&page.body);
    let pool = {
        let at = page.body.find("name=\"pool\" value=\"").unwrap() + 19;
        page.body[at..].split('"').next().unwrap().to_owned()
    };
    let form = format!("pool={pool}&voucher={voucher}&chip=&gpus=4&hours=10&purpose=training");
    let orders = app.writer.view().state().orders.len();
    // Another role, or a post without the session's token, places nothing.
    let authority = call(
        &app,
        "POST",
        "/quote/place",
        Some(&session(&app, "authority")),
        &[],
        Some(&format!("form_token={token}&{form}")),
    );
    assert_eq!(authority.status, 403);
    assert_eq!(
        call(&app, "POST", "/quote/place", Some(&cookie), &[], Some(&format!("form_token=x&{form}"))).status,
        403
    );
    assert_eq!(app.writer.view().state().orders.len(), orders);
    let placed = call(&app, "POST", "/quote/place", Some(&cookie), &[], Some(&format!("form_token={token}&{form}")));
    assert_eq!(placed.status, 303, "{}", placed.body);
    let view = app.writer.view();
    let order = view.state().orders.values().max_by_key(|o| o.id).unwrap();
    assert_eq!(placed.location, Some(format!("/orders/{}?done=placed", order.id)));
    assert_eq!((order.pool.to_string(), order.quote.gpu_count, order.quote.hours), (pool, 4, 10));
}

#[test]
fn a_quoted_order_submitted_to_the_scheduling_loop_is_seen_waiting_then_placed_or_withdrawn() {
    let app = TestApp::start();
    let cookie = session(&app, "enterprise");
    let voucher = app.voucher.to_string();
    let page = call(
        &app,
        "GET",
        &format!("/quote?voucher={voucher}&chip=&gpus=2&hours=3&purpose=training"),
        Some(&cookie),
        &[],
        None,
    );
    assert!(page.body.contains("id=\"submit-request\""), "{}", page.body);
    let token = form_token(&page.body);
    let form = format!("form_token={token}&voucher={voucher}&chip=&gpus=2&hours=3&purpose=training");
    // Another role submits nothing.
    let authority = call(&app, "POST", "/quote/submit", Some(&session(&app, "authority")), &[], Some(&form));
    assert_eq!(authority.status, 403);
    assert!(app.writer.view().state().requests.is_empty());
    // A limit that is not an amount is refused, nothing submitted.
    let bad = call(&app, "POST", "/quote/submit", Some(&cookie), &[], Some(&format!("{form}&limit_yuan=lots")));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(app.writer.view().state().requests.is_empty());
    for limit in ["", "&limit_yuan=20.50"] {
        let submitted = call(&app, "POST", "/quote/submit", Some(&cookie), &[], Some(&format!("{form}{limit}")));
        assert_eq!(submitted.status, 303, "{}", submitted.body);
        assert!(submitted.location.unwrap().starts_with("/requests?done=request_submitted"));
    }
    let limits: Vec<_> =
        app.writer.view().state().requests.values().map(|r| r.limit_fen_per_gpu_hour.map(|f| f.fen())).collect();
    assert_eq!(limits, [None, Some(2_050)], "the second is a bid for the market");
    let list = call(&app, "GET", "/requests", Some(&cookie), &[], None);
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("req-1") && list.body.contains("req-2") && list.body.contains("排队中"),
        "{}",
        list.body
    );
    // The other enterprise sees neither; a provider has no such page in its bar.
    let other = call(&app, "GET", "/requests", Some(&session(&app, "other_enterprise")), &[], None);
    assert!(!other.body.contains("req-1"), "{}", other.body);
    // The enterprise withdraws one; a round places the other.
    let withdrawn =
        call(&app, "POST", "/requests/req-2/withdraw", Some(&cookie), &[], Some(&format!("form_token={token}")));
    assert_eq!(withdrawn.status, 303, "{}", withdrawn.body);
    let foreign = call(
        &app,
        "POST",
        "/requests/req-1/withdraw",
        Some(&session(&app, "other_enterprise")),
        &[],
        Some(&format!("form_token={}", form_token(&other.body))),
    );
    assert_eq!(foreign.status, 404, "{}", foreign.body);
    let round =
        app.runtime.block_on(app.writer.call(|s| s.run_round(&suanli_service::Actor::server()))).unwrap().unwrap();
    assert_eq!(round.placed.len(), 1, "{round:?}");
    let list = call(&app, "GET", "/requests?lang=en", Some(&cookie), &[], None);
    let order = round.placed[0].1.to_string();
    assert!(list.body.contains(&format!("href=\"/orders/{order}\"")) && list.body.contains("已撤回"), "{}", list.body);
}

#[test]
fn an_order_page_shows_its_usage_to_its_scope_and_its_actions_to_their_roles() {
    let app = TestApp::start();
    let order = app.orders[0].to_string();
    let page = |who: &str| call(&app, "GET", &format!("/orders/{order}"), Some(&session(&app, who)), &[], None);
    // Two more records, the later one sent first and named to sort first: listed by their periods.
    let records = [app.record("a-later", 0, 30, 60), app.record("z-sooner", 0, 20, 60)];
    let (status, body) = app.send_usage("provider", 0, 0, &records);
    assert_eq!(status, 200, "{body}");
    let seen = page("provider");
    assert_eq!(seen.status, 200);
    let (sooner, later) = (seen.body.find("z-sooner").unwrap(), seen.body.find("a-later").unwrap());
    assert!(seen.body.find("fixture").unwrap() < sooner && sooner < later, "in time order");
    assert!(
        seen.body.contains("fixture") && seen.body.contains("算力券支付"),
        "the usage with its result: {}",
        seen.body
    );
    assert!(seen.body.contains("id=\"order-complete\""));
    assert_eq!(page("enterprise").status, 200);
    assert_eq!(page("auditor").status, 200);
    assert_eq!(page("other_provider").status, 404);
    assert_eq!(page("other_enterprise").status, 404);
    assert_eq!(page("other_authority").status, 404);

    let cookie = session(&app, "enterprise");
    let token = form_token(&page("enterprise").body);
    let post = |who: &str, action: &str, token: &str| {
        call(
            &app,
            "POST",
            &format!("/orders/{order}/{action}"),
            Some(&session(&app, who)),
            &[],
            Some(&format!("form_token={token}")),
        )
    };
    assert_eq!(
        call(&app, "POST", &format!("/orders/{order}/complete"), Some(&cookie), &[], Some("form_token=x")).status,
        403
    );
    assert_eq!(post("enterprise", "start", &token).status, 403, "an enterprise does not start an order");
    assert_eq!(post("enterprise", "launch", &token).status, 404);
    let state = || app.writer.view().state().orders[&app.orders[0]].state;
    assert_eq!(state(), suanli_service::model::OrderState::Running);
    let done = post("enterprise", "complete", &token);
    assert_eq!(done.location, Some(format!("/orders/{order}?done=order_complete")), "{}", done.body);
    assert_eq!(state(), suanli_service::model::OrderState::Completed);
}

#[test]
fn the_auditor_runs_the_audit_from_the_console() {
    let app = TestApp::start();
    let page = call(&app, "GET", "/audit", Some(&session(&app, "auditor")), &[], None);
    let token = form_token(&page.body);
    let run =
        call(&app, "POST", "/audit/run", Some(&session(&app, "auditor")), &[], Some(&format!("form_token={token}")));
    assert_eq!(run.status, 200);
    assert!(run.body.contains("审计通过") && run.body.contains("审计日志条目"), "{}", run.body);
    assert_eq!(
        call(&app, "POST", "/audit/run", Some(&session(&app, "auditor")), &[], Some("form_token=x")).status,
        403
    );
    let enterprise = session(&app, "enterprise");
    let token = form_token(&call(&app, "GET", "/vouchers", Some(&enterprise), &[], None).body);
    let refused = call(&app, "POST", "/audit/run", Some(&enterprise), &[], Some(&format!("form_token={token}")));
    assert_eq!(refused.status, 403);
}

#[test]
fn a_provider_keeps_its_pools_and_the_admin_its_people_from_the_console() {
    let app = TestApp::start();
    let provider = session(&app, "provider");
    let sites = call(&app, "GET", "/sites", Some(&provider), &[], None);
    assert_eq!(sites.status, 200);
    assert!(sites.body.contains("id=\"pol-1\"") && !sites.body.contains("id=\"pol-2\""), "only its own pools");
    let token = form_token(&sites.body);
    let change = call(
        &app,
        "POST",
        "/pools/pol-1/change",
        Some(&provider),
        &[],
        Some(&format!("form_token={token}&gpus=80&price=19.50")),
    );
    assert_eq!(change.location.as_deref(), Some("/sites?done=pool_changed"), "{}", change.body);
    let pool = |id: &str| app.writer.view().state().pools.values().find(|p| p.id.to_string() == id).cloned().unwrap();
    assert_eq!((pool("pol-1").gpu_count, pool("pol-1").price_fen_per_gpu_hour.fen()), (80, 1_950));
    // Another provider's pool, a bad price, a missing form token: refused, nothing changed.
    assert_eq!(
        call(&app, "POST", "/pools/pol-2/change", Some(&provider), &[], Some(&format!("form_token={token}&gpus=1")))
            .status,
        403
    );
    assert_eq!(
        call(&app, "POST", "/pools/pol-1/change", Some(&provider), &[], Some(&format!("form_token={token}&price=abc")))
            .status,
        400
    );
    assert_eq!(call(&app, "POST", "/pools/pol-1/retire", Some(&provider), &[], Some("form_token=x")).status, 403);
    assert_eq!(pool("pol-2").gpu_count, 64);
    let retire = call(&app, "POST", "/pools/pol-1/retire", Some(&provider), &[], Some(&format!("form_token={token}")));
    assert_eq!(retire.status, 303);
    assert!(pool("pol-1").retired_at_s.is_some());
    assert_eq!(call(&app, "GET", "/sites", Some(&session(&app, "enterprise")), &[], None).status, 403);

    let admin = session(&app, "admin");
    let users = call(&app, "GET", "/users", Some(&admin), &[], None);
    assert!(users.status == 200 && users.body.contains("id=\"user-lab\"") && !users.body.contains("argon2"));
    let token = form_token(&users.body);
    let added = call(
        &app,
        "POST",
        "/users",
        Some(&admin),
        &[],
        Some(&format!("form_token={token}&name=inspector&role=auditor&password=long+enough+1")),
    );
    assert_eq!(added.location.as_deref(), Some("/users?done=user_added"), "{}", added.body);
    assert_eq!(app.writer.view().state().users["inspector"].role, "auditor");
    let disabled = call(&app, "POST", "/users/lab/disable", Some(&admin), &[], Some(&format!("form_token={token}")));
    assert_eq!(disabled.status, 303);
    assert!(app.writer.view().state().users["lab"].disabled);
    let login = log_in(&app, "name=lab&password=correct+horse&next=/");
    assert_eq!(login.status, 401, "a disabled person cannot log in");
    assert_eq!(call(&app, "GET", "/users", Some(&session(&app, "auditor")), &[], None).status, 403);

    let tokens = call(&app, "GET", "/tokens", Some(&admin), &[], None);
    assert!(tokens.status == 200 && tokens.body.contains("token-1") && !tokens.body.contains("secret-"));
    let revoked = call(&app, "POST", "/tokens/2/revoke", Some(&admin), &[], Some(&format!("form_token={token}")));
    assert_eq!(revoked.location.as_deref(), Some("/tokens?done=token_revoked"));
    assert!(app.writer.view().state().tokens[&2].revoked);
    let health = call(&app, "GET", "/health", Some(&admin), &[], None);
    assert!(health.status == 200 && health.body.contains("存储可写"), "{}", health.body);
    assert_eq!(call(&app, "GET", "/health", Some(&session(&app, "enterprise")), &[], None).status, 403);
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[test]
fn a_programme_is_written_previewed_saved_and_opened_from_the_console() {
    let app = TestApp::start();
    let admin = session(&app, "admin");
    let page = call(&app, "GET", "/programs/new", Some(&admin), &[], None);
    assert!(page.status == 200 && page.body.contains("<textarea"), "{}", page.body);
    let token = form_token(&page.body);
    let file = include_str!("../../../../programs/shanghai-compute.toml")
        .replace("shanghai-compute", "shanghai-pilot")
        .replace("revenue_fen >= 5000000_00", "revenue_fen >= 50000000_00");
    let post = |cookie: &str, body: String| call(&app, "POST", "/programs/editor", Some(cookie), &[], Some(&body));
    let preview = post(&admin, format!("form_token={token}&program=&intent=preview&toml={}", encode(&file)));
    assert_eq!(preview.status, 200);
    assert!(preview.body.contains("检查通过") && preview.body.contains("id=\"rule-counts\""), "{}", preview.body);
    assert!(preview.body.contains("0 / 2"), "the strict rule admits neither enterprise: {}", preview.body);
    let programs = app.writer.view().state().programs.len();
    let bad = post(
        &admin,
        format!("form_token={token}&program=&intent=save&toml={}", encode(&file.replace("8000", "80000"))),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("subsidy_rate_bp"), "the field is named: {}", bad.body);
    assert_eq!(post(&admin, format!("form_token=x&program=&intent=save&toml={}", encode(&file))).status, 403);
    assert_eq!(app.writer.view().state().programs.len(), programs, "nothing refused was written");
    let saved = post(&admin, format!("form_token={token}&program=&intent=save&toml={}", encode(&file)));
    assert_eq!(saved.status, 303, "{}", saved.body);
    let id = app.writer.view().find_program("shanghai-pilot").unwrap();
    assert_eq!(saved.location, Some(format!("/programs/{id}?done=program_saved")));

    // Beijing's admin edits its own draft and opens it; not Shanghai's.
    let beijing = session(&app, "other_authority");
    assert_eq!(call(&app, "GET", &format!("/programs/{id}/edit"), Some(&beijing), &[], None).status, 403);
    assert_eq!(call(&app, "GET", "/programs/new", Some(&beijing), &[], None).status, 403);
    let draft = app.writer.view().find_program("beijing-compute").unwrap();
    let edit = call(&app, "GET", &format!("/programs/{draft}/edit"), Some(&beijing), &[], None);
    assert!(edit.status == 200 && edit.body.contains("beijing-compute"), "{}", edit.body);
    let token = form_token(&edit.body);
    let amended = suanli_service::program_file::to_toml(&app.writer.view().program(draft).unwrap().terms)
        .replace("voucher_validity_days = 365", "voucher_validity_days = 180");
    let saved = post(&beijing, format!("form_token={token}&program={draft}&intent=save&toml={}", encode(&amended)));
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(app.writer.view().program(draft).unwrap().terms.voucher_validity_days, 180);
    let opened = call(
        &app,
        "POST",
        &format!("/programs/{draft}/state/open"),
        Some(&beijing),
        &[],
        Some(&format!("form_token={token}")),
    );
    assert_eq!(opened.location, Some(format!("/programs/{draft}?done=program_open")));
    assert_eq!(app.writer.view().program(draft).unwrap().state, suanli_service::model::ProgramState::Open);
    assert_eq!(call(&app, "GET", &format!("/programs/{draft}/edit"), Some(&beijing), &[], None).status, 409);
}

#[test]
fn an_enterprise_reads_its_monthly_bill_and_overseers_the_network_charts() {
    let app = TestApp::start();
    let statement = app.writer.view().state().statements.values().next().cloned().unwrap();
    let line = &statement.lines[0];
    let bill = call(&app, "GET", "/bill", Some(&session(&app, "enterprise")), &[], None);
    assert_eq!(bill.status, 200);
    assert!(bill.body.contains("id=\"month-2026-03\"") && bill.body.contains("结算单待确认"), "{}", bill.body);
    assert!(bill.body.contains(&line.enterprise_part_fen.to_chinese_uppercase()), "the own share in words");
    let csv = call(&app, "GET", "/bill.csv", Some(&session(&app, "enterprise")), &[], None);
    assert!(csv.content_type.starts_with("text/csv"));
    assert!(
        csv.body.contains(&format!("2026-03,{},", line.order))
            && csv.body.ends_with(&format!(",{},issued\n", line.enterprise_part_fen.fen())),
        "{}",
        csv.body
    );
    let other = call(&app, "GET", "/bill", Some(&session(&app, "other_enterprise")), &[], None);
    assert!(other.status == 200 && !other.body.contains("month-2026-03"));
    assert_eq!(call(&app, "GET", "/bill", Some(&session(&app, "provider")), &[], None).status, 403);

    let network = call(&app, "GET", "/network", Some(&session(&app, "authority")), &[], None);
    assert_eq!(network.status, 200);
    assert!(network.body.matches("<svg").count() == 3 && network.body.contains("H · H100"), "{}", network.body);
    let usage = call(&app, "GET", "/network.csv?chart=usage", Some(&session(&app, "authority")), &[], None);
    assert_eq!(usage.body, format!("hub,chip,gpu_seconds\nH,H100,{}\n", line.gpu_seconds));
    let load = call(&app, "GET", "/network.csv?chart=load", Some(&session(&app, "auditor")), &[], None);
    assert_eq!(load.body, "site,hub,gpus_held,gpus\nS,H,8,64\nS,H,8,64\n");
    let foreign = call(&app, "GET", "/network.csv?chart=spend", Some(&session(&app, "other_authority")), &[], None);
    assert_eq!(foreign.body, "month,voucher_fen\n", "another authority's spending is not shown");
    assert_eq!(call(&app, "GET", "/network", Some(&session(&app, "enterprise")), &[], None).status, 403);
    assert_eq!(call(&app, "GET", "/network.csv?chart=x", Some(&session(&app, "admin")), &[], None).status, 404);

    // Approved, then its lines archived: the bill reads them back from storage, the charts from
    // their sums.
    let id = statement.id;
    let archived = app
        .runtime
        .block_on(app.writer.call(move |s| {
            s.approve_statement(&suanli_service::Actor::operator(), id)?;
            s.archive_statements(&suanli_service::Actor::operator())
        }))
        .unwrap()
        .unwrap();
    assert_eq!(archived, 1);
    assert!(app.writer.view().state().statements[&id].lines.is_empty());
    let csv = call(&app, "GET", "/bill.csv", Some(&session(&app, "enterprise")), &[], None);
    assert!(
        csv.body.contains(&format!("2026-03,{},", line.order))
            && csv.body.ends_with(&format!(",{},settled\n", line.enterprise_part_fen.fen())),
        "{}",
        csv.body
    );
    let bill = call(&app, "GET", "/bill", Some(&session(&app, "enterprise")), &[], None);
    assert!(bill.body.contains(&line.enterprise_part_fen.to_chinese_uppercase()), "{}", bill.body);
    let usage = call(&app, "GET", "/network.csv?chart=usage", Some(&session(&app, "authority")), &[], None);
    assert_eq!(usage.body, format!("hub,chip,gpu_seconds\nH,H100,{}\n", line.gpu_seconds));
    let spend = call(&app, "GET", "/network.csv?chart=spend", Some(&session(&app, "authority")), &[], None);
    assert_eq!(spend.body, format!("month,voucher_fen\n2026-03,{}\n", line.voucher_part_fen.fen()));
}

#[test]
fn behind_tls_every_console_cookie_is_secure() {
    let app = TestApp::start();
    // A second server over the same writer, as `serve --secure-cookies` runs it.
    let state = suanli_api::AppState { secure_cookies: true, ..suanli_api::AppState::new(app.writer.clone()) };
    let listener = app.runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = suanli_api::edge::Limits::default();
    app.runtime.spawn(suanli_api::edge::serve(listener, suanli_api::router(state), limits, std::future::pending()));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let cookies = |response: &ureq::http::Response<ureq::Body>| -> Vec<String> {
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    };
    let login = agent
        .post(&format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send("name=lab&password=correct+horse&next=/")
        .unwrap();
    let lang = agent.get(&format!("{base}/lang/en?next=/")).call().unwrap();
    let register = agent.get(&format!("{base}/register")).call().unwrap();
    let all: Vec<String> = [cookies(&login), cookies(&lang), cookies(&register)].concat();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|c| c.ends_with("; Secure")), "{all:?}");
    // The plain-HTTP test server marks none.
    let plain = call(&app, "GET", "/register", None, &[], None);
    assert!(plain.cookies.iter().all(|c| !c.contains("Secure")));
}

#[test]
fn registrations_from_one_address_are_throttled() {
    let app = TestApp::start();
    let (cookie, token) = visitor(&app);
    let before = counts(&app);
    let statuses: Vec<u16> = (0..=suanli_api::login::REGISTRATIONS_PER_ADDRESS_MAX)
        .map(|_| {
            let body = format!("form_token={token}&uscc=bad&name=x&kind=sme&headcount=1&username=x&password=x");
            call(&app, "POST", "/register", Some(&cookie), &[], Some(&body)).status
        })
        .collect();
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 400), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429));
    let good = super::uscc("310115", 91).to_string();
    let body = format!(
        "form_token={token}&uscc={good}&name=Lab&kind=sme&headcount=1&revenue=0&username=lab91&password=long+enough+1"
    );
    let refused = call(&app, "POST", "/register", Some(&cookie), &[], Some(&body));
    assert!(refused.status == 429 && refused.body.contains("注册过于频繁"), "{}", refused.body);
    assert_eq!(counts(&app), before);
}

#[test]
fn lists_are_filtered_by_programme_and_state() {
    let app = TestApp::start();
    let page = |path: &str| call(&app, "GET", path, Some(&session(&app, "admin")), &[], None);
    let (first, second) = (app.orders[0].to_string(), app.orders[1].to_string());
    let running = page("/orders?state=running");
    assert!(running.body.contains(&format!("id=\"{first}\"")) && running.body.contains(&format!("id=\"{second}\"")));
    assert!(running.body.contains("<option value=\"running\" selected>"), "the choice stays selected");
    let completed = page("/orders?state=completed");
    assert!(!completed.body.contains(&format!("id=\"{first}\"")) && completed.body.contains("没有可显示的订单"));
    let other = page("/vouchers?program=beijing-compute");
    assert!(!other.body.contains(&format!("id=\"{}\"", app.voucher)), "{}", other.body);
    let approved = page("/applications?program=prg-1&state=approved");
    assert!(approved.body.contains("app-1"), "{}", approved.body);
    let bad = page("/orders?state=flying");
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("此列表没有这个状态") && bad.body.contains(&format!("id=\"{first}\"")));
    let alert = &bad.body[bad.body.find("role=\"alert\"").unwrap()..];
    assert!(!alert[..alert.find("</p>").unwrap()].contains("flying"), "a link does not put its words on the page");
    let nowhere = page("/vouchers?program=Your+account+is+closed");
    assert!(nowhere.body.contains("没有这个项目") && !nowhere.body.contains("account is closed"));
    // An enterprise's filter never widens its scope.
    let other = call(&app, "GET", "/orders?state=running", Some(&session(&app, "other_enterprise")), &[], None);
    assert!(!other.body.contains(&format!("id=\"{first}\"")));
}

#[test]
fn an_enterprise_sees_the_caps_it_has_left() {
    let app = TestApp::start();
    let page = call(&app, "GET", "/vouchers", Some(&session(&app, "enterprise")), &[], None);
    let caps = &page.body[page.body.find("id=\"caps\"").expect("a caps table")..];
    // Cap ¥2,000,000, a ¥1,000,000 voucher issued: ¥1,000,000 left; the fixture's subsidy used.
    let spent = app.writer.view().state().vouchers[&app.voucher].spent_fen;
    let left = suanli_domain::Fen::from_yuan(2_000_000).unwrap().checked_sub(spent).unwrap();
    for figure in ["¥2,000,000.00", "¥1,000,000.00"] {
        assert!(caps.contains(figure), "{figure}: {caps}");
    }
    let yuan = suanli_api::console::i18n::yuan;
    assert!(caps.contains(&yuan(spent)) && caps.contains(&yuan(left)), "{caps}");
    let authority = call(&app, "GET", "/vouchers", Some(&session(&app, "authority")), &[], None);
    assert!(!authority.body.contains("id=\"caps\""));
}

#[test]
fn the_outcome_report_is_drawn_for_the_programmes_overseers() {
    let app = TestApp::start();
    let (status, report) = app.request("GET", "/api/v1/programs/prg-1/outcome", Some("authority"), &[], None);
    assert_eq!(status, 200, "{report}");
    let program = app.writer.view().program(app.writer.view().find_program("prg-1").unwrap()).unwrap().clone();
    assert_eq!(report["spent_fen"], program.spent_fen.fen());
    assert_eq!(report["vouchers"]["issued"], 1);
    assert_eq!(report["usage"]["gpu_seconds"], 60, "the fixture's one record");
    assert_eq!(app.request("GET", "/api/v1/programs/prg-1/outcome", Some("enterprise"), &[], None).0, 403);

    let page = call(&app, "GET", "/programs/prg-1/outcome", Some(&session(&app, "reviewer")), &[], None);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("成效报告") && page.body.contains("id=\"outcome-figures\"") && page.body.contains("H100"),
        "{}",
        page.body
    );
    let csv = call(&app, "GET", "/programs/prg-1/outcome.csv", Some(&session(&app, "auditor")), &[], None);
    assert!(csv.body.starts_with("dimension,key,gpu_seconds") && csv.body.contains("\nchip,H100,60,"), "{}", csv.body);
    assert_eq!(
        call(&app, "GET", "/programs/prg-1/outcome", Some(&session(&app, "other_authority")), &[], None).status,
        403
    );
    assert_eq!(
        call(&app, "GET", "/programs/prg-1/outcome.csv", Some(&session(&app, "provider")), &[], None).status,
        403
    );
    let dashboard = call(&app, "GET", "/programs/prg-1", Some(&session(&app, "authority")), &[], None);
    assert!(dashboard.body.contains("id=\"outcome-link\""));
}
