//! `suanli demo`: the whole system on a fresh embedded database, driven through the HTTP API.
//!
//! The demo starts the server on `--listen`, then acts as every user over HTTP:
//! - the platform admin loads the eight shipped programmes and registers the national network:
//!   one provider, site and pools per cluster of `data/network.csv`, each provider with its
//!   Ed25519 key;
//! - six enterprises apply; the authorities review (one applicant is refused as ineligible, with
//!   the reason); enterprises order through the placement engine; providers start the orders and
//!   report signed hourly usage for a simulated month (with retries and a forged replay);
//! - the next month's statements are issued and approved.
//!
//! It then prints a summary per programme, the URLs and demo logins, checks the database with
//! `audit verify`, and keeps serving (unless `--no-serve`). The clock is simulated from
//! 2 March 2026, so the figures are the same on every run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use suanli_api::{AppState, Writer};
use suanli_domain::{OrderId, ProviderId, Uscc};
use suanli_placement::network::clusters;
use suanli_service::access::{hex, usage_signing_bytes};
use suanli_service::calendar::{format_timestamp, shanghai_midnight};
use suanli_service::model::UsageInput;
use suanli_service::{Actor, ManualClock, Role, Service};
use suanli_store::{SqliteStore, Storage, StoreError};

use crate::demo_telemetry::{self, DemoPool};

/// The shipped programme files, built into the binary so the demo runs from any directory.
pub(crate) const PROGRAMS: [&str; 8] = [
    include_str!("../../../programs/shanghai-compute.toml"),
    include_str!("../../../programs/shanghai-data.toml"),
    include_str!("../../../programs/beijing.toml"),
    include_str!("../../../programs/chengdu.toml"),
    include_str!("../../../programs/shandong.toml"),
    include_str!("../../../programs/shenzhen.toml"),
    include_str!("../../../programs/ningbo.toml"),
    include_str!("../../../programs/henan.toml"),
];

/// Demo logins: (name, password, role). Printed at the end; only their hashes are stored.
const LOGINS: [(&str, &str, &str); 3] = [
    ("admin", "suanli-demo-admin", "admin"),
    ("shanghai", "suanli-demo-authority", "authority-admin:ath-1"),
    ("auditor", "suanli-demo-auditor", "auditor"),
];

/// A small JSON client over HTTP that turns any error answer into an error naming its code.
pub(crate) struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {token}");
        let mut response = if method == "GET" {
            self.agent.get(&url).header("authorization", &auth).call()?
        } else {
            let mut request =
                self.agent.post(&url).header("authorization", &auth).header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send(body.unwrap_or(json!({})).to_string())?
        };
        let status = response.status().as_u16();
        let value: Value = serde_json::from_str(&response.body_mut().read_to_string()?).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {}: {}", value["error"]["code"], value["error"]["message"]);
        }
        Ok(value)
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.call("GET", path, token, None, &[])
    }

    fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        self.call("POST", path, token, Some(body), &[])
    }

    /// A machine token for `role`, issued by the admin.
    fn token(&self, admin: &str, role: &str) -> anyhow::Result<String> {
        let ttl = suanli_service::access::TOKEN_TTL_MAX_S;
        Ok(self.post("/api/v1/tokens", admin, json!({ "role": role, "expires_in_s": ttl }))?["token"]
            .as_str()
            .context("a token")?
            .to_owned())
    }
}

fn text(value: &Value) -> anyhow::Result<String> {
    value.as_str().map(str::to_owned).context("a string in the answer")
}

/// A demo enterprise: serial, name, region, kind, headcount, revenue ¥, research project,
/// programme key, amount ¥ asked.
type DemoEnterprise =
    (&'static str, &'static str, &'static str, &'static str, u32, i64, &'static str, &'static str, i64);

const ENTERPRISES: [DemoEnterprise; 6] = [
    ("MA1FL001", "Pudong Model Lab", "310115", "sme", 120, 12_000_000, "", "shanghai-compute", 2_000_000),
    ("MA1FL002", "Tiny Start-up", "310115", "startup", 8, 800_000, "", "shanghai-compute", 1_000_000),
    (
        "MA1FL003",
        "Zhangjiang Vision",
        "310115",
        "startup",
        40,
        3_000_000,
        "STCSM multimodal project",
        "shanghai-compute",
        1_500_000,
    ),
    ("MA1FL004", "Haidian Speech", "110108", "sme", 200, 30_000_000, "", "beijing-compute", 2_000_000),
    (
        "MA1FL005",
        "Chengdu AI Institute",
        "510100",
        "research_institute",
        300,
        5_000_000,
        "Sichuan LLM project",
        "chengdu-compute",
        3_000_000,
    ),
    ("MA1FL006", "Nanshan Robotics", "440300", "sme", 150, 20_000_000, "", "shenzhen-compute", 1_500_000),
];

pub fn run(database: &str, listen: &str, serve: bool) -> anyhow::Result<ExitCode> {
    let postgres = crate::database::is_postgres(database);
    let shown = if postgres {
        suanli_store::redact(database)
    } else {
        let path = crate::database::sqlite_path(database)?;
        replace_earlier_demo(&path)?;
        path.display().to_string()
    };
    let start = shanghai_midnight(2026, 3, 2).expect("a valid date") + 9 * 3600;
    let clock = ManualClock::new(start);
    let mut service = Service::open_database(database, Arc::new(clock.clone()))?;
    // PostgreSQL data is never dropped: the demo needs an empty database there.
    anyhow::ensure!(
        service.durable().log_count() == 0,
        "--database: {shown} already holds a suanli deployment; the demo on PostgreSQL needs an empty database \
         (DROP DATABASE and CREATE DATABASE it again if it held only an earlier demo)"
    );
    // Bootstrap: the admin's login exists before the server does; everything else goes over HTTP.
    let bootstrap = Actor::parse(DEMO_ACTOR)?;
    let (admin_name, admin_password, _) = LOGINS[0];
    service.add_user(
        &bootstrap,
        admin_name,
        Role::PlatformAdmin,
        &suanli_api::login::hash_password(admin_password).map_err(anyhow::Error::msg)?,
    )?;
    // The national network is this deployment's registry of hubs (`suanli network import`):
    // sites must name one, and are verified only near one of its clusters.
    service.import_network(&bootstrap, suanli_service::model::NetworkCluster::national())?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The demo's heads: signed at its checkpoints and at its end, published beside its database.
    let (key_path, heads_dir) = if postgres {
        (std::path::PathBuf::from("suanli-demo-signing.key"), std::path::PathBuf::from("suanli-demo-heads"))
    } else {
        crate::database::default_heads(database)
    };
    remove_earlier_heads(&key_path, &heads_dir)?;
    let signer = suanli_service::heads::HeadSigner::open(&key_path, &heads_dir).map_err(anyhow::Error::msg)?;
    service.set_head_signer(signer.clone());
    let (writer, writer_thread) = Writer::start(service);
    let state = AppState::new(writer.clone());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("--listen: cannot listen on {listen}"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(suanli_api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let api =
        // A fresh connection per request: the demo is small, and it never meets a pooled connection
        // the server has just closed.
        Api { base: base.clone(), agent: ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections(0).build().into() };
    println!("Suanli demo on {shown} at {base} (simulated clock from {})\n", format_timestamp(start));

    let login =
        api.call("POST", "/api/v1/login", "", Some(json!({ "name": admin_name, "password": admin_password })), &[])?;
    // The login's token lasts 12 hours and the demo's clock runs through months: the admin
    // works with a machine token it issues itself.
    let admin = api.token(&text(&login["token"])?, "admin")?;

    println!("1. The admin loads the eight programmes and opens them");
    for source in PROGRAMS {
        let program = api.post("/api/v1/programs", &admin, json!({ "toml": source }))?;
        api.post(&format!("/api/v1/programs/{}/open", text(&program["id"])?), &admin, json!({}))?;
    }
    let programs = api.get("/api/v1/programs", &admin)?;
    println!("   {} programmes open, {} authorities\n", programs["total"], 6);
    let program_key = |id: &str| -> String {
        programs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"] == id)
            .map(|p| p["terms"]["key"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    for (name, password, role) in &LOGINS[1..] {
        // The authority and auditor logins are made by the admin over the service's user list.
        let phc = suanli_api::login::hash_password(password).map_err(anyhow::Error::msg)?;
        let (name, role) = (name.to_string(), Role::parse(role)?);
        runtime.block_on(writer.call(move |s| s.add_user(&Actor::of(Role::PlatformAdmin), &name, role, &phc)))??;
    }

    println!("2. The national network: one provider, site and pools per cluster of data/network.csv");
    let mut providers: Vec<(ProviderId, String, SigningKey)> = Vec::new();
    let mut demo_pools: Vec<DemoPool> = Vec::new();
    for (index, cluster) in clusters().iter().enumerate() {
        let uscc = Uscc::with_check_characters(&format!("91{}MA2NW{:03}", cluster_region(&cluster.id), index + 1))?;
        let operator = match cluster.operator {
            suanli_placement::Operator::Government => "government",
            suanli_placement::Operator::State => "state_owned",
            suanli_placement::Operator::Commercial => "commercial",
        };
        let provider = api.post(
            "/api/v1/providers",
            &admin,
            json!({ "uscc": uscc.to_string(), "name": format!("{} operator", cluster.name), "operator": operator }),
        )?;
        let id = ProviderId::parse(&text(&provider["id"])?)?;
        let token = api.token(&admin, &format!("provider:{id}"))?;
        let key = SigningKey::from_bytes(&[index as u8 + 1; 32]);
        api.post(
            &format!("/api/v1/providers/{id}/key"),
            &token,
            json!({ "public_key_hex": hex(key.verifying_key().as_bytes()) }),
        )?;
        let site = api.post(
            &format!("/api/v1/providers/{id}/sites"),
            &token,
            json!({ "name": cluster.name, "hub": cluster.hub, "region": cluster_region(&cluster.id), "latitude": cluster.lat, "longitude": cluster.lon,
                    "power_price_fen_per_kwh": (cluster.power_price_cny_kwh * 100.0).round() as i64, "pue": cluster.pue_cap }),
        )?;
        let site_id = text(&site["id"])?;
        // The platform checks the provider's papers: only then do the site's operator and region
        // count for a programme's provider rule.
        api.post(&format!("/api/v1/sites/{site_id}/verify"), &admin, json!({}))?;
        let network = suanli_placement::network::default_problem();
        for pool in network.pools.iter().filter(|p| network.sites[p.site].id == cluster.id) {
            let made = api.post(
                &format!("/api/v1/sites/{site_id}/pools"),
                &token,
                json!({ "chip": pool.chip, "gpus": pool.gpus_free, "domestic": pool.domestic, "price_fen_per_gpu_hour": pool.price_fen_per_gpu_hour }),
            )?;
            demo_pools.push(DemoPool {
                provider: index,
                id: suanli_domain::PoolId::parse(&text(&made["id"])?)?,
                gpus: pool.gpus_free,
                base_bp: (network.sites[pool.site].utilization * 10_000.0).round() as u32,
            });
        }
        providers.push((id, token, key));
    }
    let pools = api.get("/api/v1/pools?limit=500", &admin)?;
    println!("   {} providers, {} pools", providers.len(), pools["total"]);
    // The week before: each pool's monitoring reports its busy GPUs every hour.
    let now = clock_now(&clock);
    let week = (now - 168 * 3_600, now);
    let sent = demo_telemetry::send(&api, &providers, &demo_pools, week, i64::MAX, &[])?;
    println!("   a week of hourly utilization from every pool: {sent} samples\n");

    println!("3. Six enterprises apply; the authorities review");
    let mut holders: Vec<(String, String, String)> = Vec::new(); // (enterprise, token, voucher)
    for (serial, name, region, kind, headcount, revenue, research, program, amount) in ENTERPRISES {
        let uscc = Uscc::with_check_characters(&format!("91{region}{serial}"))?;
        let research: Vec<&str> = if research.is_empty() { vec![] } else { vec![research] };
        let enterprise = api.post(
            "/api/v1/enterprises",
            &admin,
            json!({ "uscc": uscc.to_string(), "name": name, "region": region, "kind": kind, "headcount": headcount,
                    "revenue_fen": revenue * 100, "research_projects": research }),
        )?;
        let id = text(&enterprise["id"])?;
        let token = api.token(&admin, &format!("enterprise:{id}"))?;
        let application = api.post(
            "/api/v1/applications",
            &token,
            json!({ "enterprise": id, "program": program, "amount_fen": amount * 100 }),
        )?;
        let app = text(&application["id"])?;
        clock.advance(600);
        api.post(&format!("/api/v1/applications/{app}/submit"), &token, json!({}))?;
        let shown = api.get(&format!("/api/v1/applications/{app}"), &admin)?;
        let failed: Vec<String> = shown["eligibility"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["passed"] == false)
            .map(|v| format!("{}: {}", v["rule"].as_str().unwrap_or(""), v["reason"].as_str().unwrap_or("")))
            .collect();
        let authority = text(&shown["application"]["program"]).map(|p| program_authority(&programs, &p))?;
        let reviewer = api.token(&admin, &format!("authority-reviewer:{authority}"))?;
        if failed.is_empty() {
            let approved = api.post(
                &format!("/api/v1/applications/{app}/approve"),
                &reviewer,
                json!({ "amount_fen": amount * 100 }),
            )?;
            let voucher = text(&approved["voucher"])?;
            println!("   {name} ({id}) → {program}: approved {}, {voucher}", money(&json!(amount * 100)));
            holders.push((id, token, voucher));
        } else {
            api.post(&format!("/api/v1/applications/{app}/reject"), &reviewer, json!({ "reason": failed.join("; ") }))?;
            println!("   {name} ({id}) → {program}: rejected, {}", failed.join("; "));
        }
    }
    println!();

    println!("4. Orders through the placement engine, and through the scheduling loop; providers start them");
    let mut orders: Vec<(OrderId, String, usize, u32, u32)> = Vec::new(); // (order, enterprise token, provider index, gpus, hours)
    let started = clock_now(&clock);
    // Each enterprise's fine-tuning waits for a round of the scheduling loop, its data in the
    // enterprise's nearest hub.
    let mut requests: Vec<(String, String, u32, u32)> = Vec::new(); // (request, enterprise token, gpus, hours)
    for (enterprise, token, voucher) in &holders {
        let (gpus, hours) = (8u32, 120u32);
        let request = api.post(
            "/api/v1/requests",
            token,
            json!({ "enterprise": enterprise, "voucher": voucher, "gpus": gpus, "hours": hours, "purpose": "fine_tuning",
                    "origin": { "hub": "Yangtze River Delta", "data_gb": 200 } }),
        );
        if let Ok(request) = request {
            requests.push((text(&request["id"])?, token.clone(), gpus, hours));
        }
    }
    for (n, (enterprise, token, voucher)) in holders.iter().enumerate() {
        for (gpus, hours, purpose) in [(32u32, 200u32, "training")] {
            let quote = api.post(
                "/api/v1/orders/quote",
                token,
                json!({ "enterprise": enterprise, "voucher": voucher, "gpus": gpus, "hours": hours, "purpose": purpose }),
            );
            let Ok(quote) = quote else { continue };
            let order = api.post("/api/v1/orders", token, json!({ "enterprise": enterprise, "voucher": voucher, "gpus": gpus, "hours": hours, "purpose": purpose }))?;
            let id = OrderId::parse(&text(&order["id"])?)?;
            let provider = ProviderId::parse(&text(&order["provider"])?)?;
            let p = providers.iter().position(|(pid, _, _)| *pid == provider).context("the order's provider")?;
            api.post(&format!("/api/v1/orders/{id}/start"), &providers[p].1, json!({}))?;
            if n < 2 {
                println!(
                    "   {id}: {gpus} GPUs × {hours} h on {} (list {}, voucher share {})",
                    quote["chosen"]["pool"].as_str().unwrap_or(""),
                    money(&quote["chosen"]["list_cost_fen"]),
                    money(&quote["chosen"]["voucher_share_fen"])
                );
            }
            orders.push((id, token.clone(), p, gpus, hours));
        }
    }
    let round = api.post("/api/v1/rounds", &admin, json!({}))?;
    println!(
        "   a round of the scheduling loop: {} requests placed together, {} refused, gap {:.2}%; the under-used-site credit weighed {} and egress {}",
        round["placed"].as_array().map_or(0, Vec::len),
        round["refused"].as_array().map_or(0, Vec::len),
        round["gap_bp"].as_f64().unwrap_or(0.0) / 100.0,
        money(&round["underused_credit_fen"]),
        money(&round["egress_fen"])
    );
    for (request, token, gpus, hours) in &requests {
        let decided = api.get(&format!("/api/v1/requests/{request}"), token)?;
        let Some(order) = decided["decision"]["order"].as_str() else { continue };
        let id = OrderId::parse(order)?;
        let shown = api.get(&format!("/api/v1/orders/{id}"), token)?;
        let provider = ProviderId::parse(&text(&shown["provider"])?)?;
        let p = providers.iter().position(|(pid, _, _)| *pid == provider).context("the order's provider")?;
        api.post(&format!("/api/v1/orders/{id}/start"), &providers[p].1, json!({}))?;
        orders.push((id, token.clone(), p, *gpus, *hours));
    }
    println!("   {} orders running\n", orders.len());

    println!("5. A month of signed hourly usage from the providers, and each pool's utilization");
    let hours_max = orders.iter().map(|o| o.4).max().unwrap_or(0);
    let placed: Vec<(OrderId, u32, u32)> = orders.iter().map(|o| (o.0, o.3, o.4)).collect();
    let running = demo_telemetry::running(&api, &admin, &placed)?;
    // Telemetry is taken up to 7 days late, so it is sent as the clock moves: half, then the rest.
    let end = started + i64::from(hours_max) * 3600 + 60;
    let middle = started + (end - started) / 2;
    let mut sent = 0;
    for (until, from) in [(middle, week.1), (end, middle)] {
        clock.set(until);
        sent += demo_telemetry::send(&api, &providers, &demo_pools, (from, until), started, &running)?;
    }
    println!("   {sent} utilization samples while the orders ran");
    let mut recorded = 0;
    let mut duplicates = 0;
    for (order, _, p, gpus, hours) in &orders {
        let (provider, token, key) = &providers[*p];
        let records: Vec<UsageInput> = (0..i64::from(*hours))
            .map(|h| UsageInput {
                id: format!("{order}-h{h}"),
                order: *order,
                gpu_seconds: i64::from(*gpus) * 3600 * (85 + (h * 7) % 15) / 100,
                period_start_s: started + h * 3600,
                period_end_s: started + (h + 1) * 3600,
            })
            .collect();
        for send in [records.as_slice(), &records[..records.len().min(5)]] {
            let answer = signed_usage(&api, token, key, *provider, send)?;
            for result in answer["results"].as_array().into_iter().flatten() {
                match result["status"].as_str() {
                    Some("ok") => recorded += 1,
                    Some("exists") => duplicates += 1,
                    _ => {}
                }
            }
        }
    }
    // A replay of a recorded id with another body, and a batch with a forged signature.
    let (order, _, p, gpus, _) = &orders[0];
    let (provider, token, key) = &providers[*p];
    let forged = UsageInput {
        id: format!("{order}-h0"),
        order: *order,
        gpu_seconds: i64::from(*gpus),
        period_start_s: started,
        period_end_s: started + 3600,
    };
    let replay = signed_usage(&api, token, key, *provider, std::slice::from_ref(&forged))?;
    let wrong_key = SigningKey::from_bytes(&[99; 32]);
    let forgery = signed_usage(&api, token, &wrong_key, *provider, std::slice::from_ref(&forged)).err();
    println!("   recorded {recorded}, retries answered `exists` {duplicates}");
    println!("   a replay with another body: {}", replay["results"][0]["code"].as_str().unwrap_or("?"));
    println!("   a forged signature: {}\n", forgery.map(|e| e.to_string()).unwrap_or_else(|| "accepted?!".into()));
    for (order, token, p, _, _) in &orders {
        let _ = token;
        api.post(&format!("/api/v1/orders/{order}/complete"), &providers[*p].1, json!({}))?;
    }

    println!("6. April: statements per provider and programme, approved by the authorities");
    clock.set(shanghai_midnight(2026, 4, 2).expect("a valid date") + 10 * 3600);
    let mut statements = 0;
    for (provider, _, _) in &providers {
        for program in programs["items"].as_array().into_iter().flatten() {
            let program_id = text(&program["id"])?;
            let issued = api.post(
                "/api/v1/statements",
                &admin,
                json!({ "provider": provider.to_string(), "program": program_id, "month": "2026-03" }),
            );
            if let Ok(statement) = issued {
                let authority = program_authority(&programs, &program_id);
                let authority_token = api.token(&admin, &format!("authority-admin:{authority}"))?;
                api.post(
                    &format!("/api/v1/statements/{}/approve", text(&statement["id"])?),
                    &authority_token,
                    json!({}),
                )?;
                statements += 1;
            }
        }
    }
    println!("   {statements} statements approved\n");

    println!("Summary");
    let programs = api.get("/api/v1/programs", &admin)?;
    println!("   {:<18} {:>18} {:>16} {:>16} {:>16}", "programme", "budget", "issued", "spent", "settled");
    for program in programs["items"].as_array().into_iter().flatten() {
        println!(
            "   {:<18} {:>18} {:>16} {:>16} {:>16}",
            program_key(program["id"].as_str().unwrap_or("")),
            money(&program["terms"]["budget_fen"]),
            money(&program["issued_fen"]),
            money(&program["spent_fen"]),
            money(&program["settled_fen"])
        );
    }
    let (mut gpu_seconds, mut voucher, mut enterprise) = (0i64, 0i64, 0i64);
    for (order, token, _, _, _) in &orders {
        let shown = api.get(&format!("/api/v1/orders/{order}"), token)?;
        gpu_seconds += shown["gpu_seconds"].as_i64().unwrap_or(0);
        voucher += shown["voucher_paid_fen"].as_i64().unwrap_or(0);
        enterprise += shown["enterprise_paid_fen"].as_i64().unwrap_or(0);
    }
    println!(
        "   {} orders, {:.0} GPU-hours; voucher share {}, enterprise share {}",
        orders.len(),
        gpu_seconds as f64 / 3600.0,
        money(&json!(voucher)),
        money(&json!(enterprise))
    );
    // An enterprise and a provider of the first order log in too, so every role's pages show work.
    let first_order = api.get("/api/v1/orders/ord-1", &admin)?;
    let party_logins = [
        ("company", "suanli-demo-enterprise", format!("enterprise:{}", text(&first_order["enterprise"])?)),
        ("provider", "suanli-demo-provider", format!("provider:{}", text(&first_order["provider"])?)),
    ];
    for (name, password, role) in &party_logins {
        let phc = suanli_api::login::hash_password(password).map_err(anyhow::Error::msg)?;
        let (name, role) = (name.to_string(), Role::parse(role)?);
        runtime.block_on(writer.call(move |s| s.add_user(&Actor::of(Role::PlatformAdmin), &name, role, &phc)))??;
    }
    println!("\nConsole: {base}/  (Simplified Chinese; English one click away)");
    println!("URLs: {base}/healthz  {base}/metrics  {base}/api/v1/programs  {base}/api/v1/audit/log");
    println!("Logins (the console, or POST {base}/api/v1/login with name and password):");
    let logins = LOGINS.iter().map(|(n, p, r)| (*n, *p, r.to_string())).chain(party_logins.iter().cloned());
    for (name, password, role) in logins {
        println!("   {name:<9} {password:<24} {role}");
    }
    let head = api.post("/api/v1/heads", &admin, json!({}))?;
    println!(
        "\nSigned head of {} entries, Merkle root {}, published to {} (key {})",
        head["log_size"],
        text(&head["log_root"])?,
        heads_dir.display(),
        signer.public_key_hex()
    );
    println!("\nsuanli audit verify --database {shown} --heads {}", heads_dir.display());
    // The audit takes the database by itself (on PostgreSQL it takes the writer's lock), so the
    // server stops first, and serves again afterwards over the same database.
    let _ = stop.send(());
    runtime.block_on(server)??;
    drop(writer);
    writer_thread.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    let code = crate::audit::verify_against(database, Some(crate::audit::Heads { dir: &heads_dir, public_key: None }))?
        .print(false)?;
    if serve && code == ExitCode::SUCCESS {
        // The simulated month is over: the served demo's clock moves on from its last instant, so
        // usage can be posted to it and vouchers expire.
        let service =
            Service::open_database(database, Arc::new(suanli_service::RunningClock::from(clock_now(&clock))))?;
        let mut service = service;
        service.set_head_signer(signer);
        let (writer, writer_thread) = Writer::start(service);
        let state = AppState::new(writer);
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("--listen: cannot listen on {listen} again"))?;
            println!("\nserving at http://{}; Ctrl-C to stop", listener.local_addr()?);
            suanli_api::serve(listener, state, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            anyhow::Ok(())
        })?;
        drop(runtime);
        writer_thread.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    }
    Ok(code)
}

fn clock_now(clock: &ManualClock) -> i64 {
    use suanli_service::Clock;
    clock.now_s()
}

fn money(value: &Value) -> String {
    suanli_domain::Fen::new(value.as_i64().unwrap_or(0)).to_string()
}

/// The authority of a programme, from the programme list.
fn program_authority(programs: &Value, program: &str) -> String {
    programs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["id"] == program)
        .and_then(|p| p["authority"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// The GB/T 2260 code of a cluster's province (the data file names provinces in English).
pub(crate) fn cluster_region(cluster: &str) -> &'static str {
    match cluster {
        "zjk" => "130700",
        "yrd" => "310000",
        "wuhu" => "340200",
        "sg" => "440200",
        "tf" => "510100",
        "cq" => "500000",
        "ga" => "520100",
        "hlge" => "150100",
        "qy" => "621000",
        _ => "640500",
    }
}

fn signed_usage(
    api: &Api,
    token: &str,
    key: &SigningKey,
    provider: ProviderId,
    records: &[UsageInput],
) -> anyhow::Result<Value> {
    let signature = suanli_wire::sign(key, &usage_signing_bytes(provider, records));
    let batch = suanli_wire::UsageBatch { records: records.iter().map(suanli_wire::UsageRecord::of).collect() };
    api.call(
        "POST",
        &format!("/api/v1/providers/{provider}/usage"),
        token,
        Some(serde_json::to_value(&batch)?),
        &[(suanli_wire::SIGNATURE_HEADER, &signature)],
    )
}

/// Removes the heads and key of an earlier demo: they signed another log. Only a directory that
/// holds nothing but heads and a public key is removed.
fn remove_earlier_heads(key: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let only_heads = std::fs::read_dir(dir)?.all(|entry| {
            entry.is_ok_and(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name == "public-key" || (name.starts_with("head-") && name.ends_with(".json"))
            })
        });
        anyhow::ensure!(only_heads, "{} holds files other than signed heads; remove it or move it", dir.display());
        std::fs::remove_dir_all(dir).with_context(|| format!("removing the earlier demo's heads {}", dir.display()))?;
    }
    if key.exists() {
        std::fs::remove_file(key).with_context(|| format!("removing the earlier demo's key {}", key.display()))?;
    }
    Ok(())
}

/// Who writes a demo database's first audit-log entry: how the demo knows a database it made.
const DEMO_ACTOR: &str = "operator:demo";

/// Removes the database at `path` if the demo made it (its first audit-log entry is the demo's
/// bootstrap, written by [`DEMO_ACTOR`]), so the demo can run again; refuses any other file,
/// including a suanli database holding anything else.
fn replace_earlier_demo(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut store = match SqliteStore::open_reader(path) {
        Ok(store) => store,
        Err(error @ (StoreError::NotSuanli { .. } | StoreError::Open { .. } | StoreError::Missing { .. })) => {
            return Err(error).context("--database names a file that is not a suanli database; choose another path");
        }
        Err(error) => return Err(error.into()),
    };
    let first = store.log_after(0, 1)?;
    drop(store);
    let made_by_demo = first.first().is_some_and(|entry| entry.actor == DEMO_ACTOR && entry.action == "user.created");
    anyhow::ensure!(
        made_by_demo,
        "--database: {} is a suanli database the demo did not make; the demo replaces only its own databases, \
         choose another path",
        path.display()
    );
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        if Path::new(&file).exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing the earlier demo database {file}"))?;
        }
    }
    Ok(())
}
