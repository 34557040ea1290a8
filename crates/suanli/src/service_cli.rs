//! The service commands: programmes, enterprises, applications, vouchers, providers, orders,
//! usage, expiry and statements, each a thin layer over one `Service` call.
//!
//! Every command takes `--database` (default `suanli.db`, or `SUANLI_DATABASE`), `--actor` (who
//! the audit log records; `SUANLI_ACTOR`), `--json` for scripts, and `--now` to run as if at
//! another time (drills and tests; `SUANLI_NOW`). Tables go to stdout; with `--json`, one JSON
//! document does, errors included (`{"error": {"code", "message"}}`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use suanli_domain::{
    ApplicantKind, ApplicationId, EnterpriseId, Fen, OrderId, PoolId, ProviderId, RegionCode, SiteId, StatementId,
    Uscc, VoucherId,
};
use suanli_service::calendar::{YearMonth, format_timestamp, parse_timestamp};
use suanli_service::model::{OperatorKind, Purpose};
use suanli_service::{
    Actor, Clock, EnterpriseInput, ErrorCode, PoolInput, PoolRequest, Service, ServiceError, SiteSpec, SystemClock,
};

use crate::usage_import;

pub use crate::service_args::*;

/// Options every service command takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The database: `PATH`, `sqlite://PATH` or `postgres://…`; created on first use [default:
    /// the configuration file's `database` (./suanli.toml or SUANLI_CONFIG), else suanli.db].
    #[arg(long, global = true, env = "SUANLI_DATABASE")]
    pub database: Option<String>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Who acts, as recorded in the audit log: operator, auditor, operator:NAME,
    /// authority:ath-N, enterprise:ent-N or provider:prv-N.
    #[arg(long, global = true, env = "SUANLI_ACTOR", default_value = "operator")]
    pub actor: String,
    /// Run as if the time were this RFC 3339 instant (for drills and tests); a server's clock
    /// starts there and moves on in real time.
    #[arg(long, global = true, env = "SUANLI_NOW")]
    pub now: Option<String>,
}

/// A command's answer: JSON for `--json`, text otherwise.
pub struct Reply {
    json: Value,
    text: String,
}

impl Reply {
    pub fn new(json: Value, text: impl Into<String>) -> Reply {
        Reply { json, text: text.into() }
    }
}

impl Common {
    /// The database: the flag or `SUANLI_DATABASE`, else the configuration file's `database`
    /// (`SUANLI_CONFIG`, or `./suanli.toml`), else `suanli.db`.
    pub fn database(&self) -> anyhow::Result<String> {
        if let Some(database) = &self.database {
            return Ok(database.clone());
        }
        let config = crate::config::load(None, &crate::config::Config::default())?;
        Ok(config.database.unwrap_or_else(|| "suanli.db".into()))
    }
}

/// The service on the command's database, with the scheduling settings and placement weights of
/// the configuration (as `serve` has them).
pub fn open(common: &Common) -> anyhow::Result<Service> {
    let (rounds, placement) = crate::config::load(None, &crate::config::Config::default())?.scheduling()?;
    let mut service = Service::open_database(&common.database()?, clock(common)?)?;
    service.set_round_settings(rounds);
    service.set_placement_policy(placement);
    Ok(service)
}

/// The clock a command runs on: `--now`, or the system's.
fn clock(common: &Common) -> anyhow::Result<Arc<dyn Clock>> {
    Ok(match &common.now {
        Some(text) => {
            let now = parse_timestamp(text).with_context(|| {
                format!("--now: {text:?} is not an RFC 3339 time such as 2026-10-01T09:00:00+08:00")
            })?;
            // Starts at `--now` and moves on from there, so a server started in the past runs.
            Arc::new(suanli_service::RunningClock::from(now))
        }
        None => Arc::new(SystemClock),
    })
}

/// Runs `command` against the service and prints its reply (or its error) as asked.
pub fn run(
    common: &Common,
    command: impl FnOnce(&mut Service, &Actor) -> Result<Reply, anyhow::Error>,
) -> anyhow::Result<ExitCode> {
    let outcome = Actor::parse(&common.actor).map_err(anyhow::Error::from).and_then(|actor| {
        match open(common) {
            Ok(mut service) => command(&mut service, &actor),
            // A server holds the database: read beside it; a change answers why it cannot be made.
            Err(locked)
                if locked.downcast_ref::<ServiceError>().is_some_and(|e| e.code == ErrorCode::DatabaseLocked) =>
            {
                let mut reader = Service::open_reader(&common.database()?, clock(common)?)?;
                command(&mut reader, &actor).map_err(|error| match error.downcast_ref::<ServiceError>() {
                    Some(e) if e.code == ErrorCode::DatabaseLocked => locked,
                    _ => error,
                })
            }
            Err(error) => Err(error),
        }
    });
    match outcome {
        Ok(reply) => {
            if common.json {
                let mut json = reply.json;
                suanli_api::times::rewrite(&mut json);
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else if !reply.text.is_empty() {
                println!("{}", reply.text.trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let (code, message) = match error.downcast_ref::<ServiceError>() {
                Some(service_error) => (service_error.code.as_str().to_owned(), service_error.message.clone()),
                None => ("invalid_input".to_owned(), format!("{error:#}")),
            };
            if common.json {
                println!("{}", serde_json::to_string_pretty(&json!({"error": {"code": code, "message": message}}))?);
            } else {
                eprintln!("error[{code}]: {message}");
            }
            Ok(ExitCode::from(2))
        }
    }
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header.iter().copied());
    table
}

fn yuan(field: &str, text: &str) -> anyhow::Result<Fen> {
    Fen::parse_positive(text).with_context(|| format!("--{field}"))
}

fn parse_id<T>(field: &str, text: &str, parse: fn(&str) -> Result<T, suanli_domain::IdError>) -> anyhow::Result<T> {
    parse(text).with_context(|| field.to_owned())
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("service records serialize")
}

fn purpose(text: &str) -> anyhow::Result<Purpose> {
    Purpose::parse(text)
        .with_context(|| format!("--purpose: must be training, inference, fine_tuning or data, got {text:?}"))
}

fn operator(text: &str) -> anyhow::Result<OperatorKind> {
    OperatorKind::parse(text)
        .with_context(|| format!("--operator: must be government, state_owned or commercial, got {text:?}"))
}

pub fn program(common: &Common, command: ProgramCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        ProgramCommand::Load { files } => {
            anyhow::ensure!(!files.is_empty(), "name at least one programme file");
            let mut loaded = Vec::new();
            for file in &files {
                let source = read_limited(file, suanli_service::program_file::PROGRAM_FILE_BYTES_MAX)?;
                let id = service.load_program(actor, &source).with_context(|| file.display().to_string())?;
                loaded.push((file.display().to_string(), id, service.program(id)?.terms.key.clone()));
            }
            let text = loaded
                .iter()
                .map(|(file, id, key)| format!("loaded {id} {key} from {file}"))
                .collect::<Vec<_>>()
                .join("\n");
            let json = json!(
                loaded.iter().map(|(file, id, key)| json!({"file": file, "id": id, "key": key})).collect::<Vec<_>>()
            );
            Ok(Reply::new(json, text))
        }
        ProgramCommand::List => {
            let programs: Vec<_> = service.state().programs.values().collect();
            let mut t =
                table(&["id", "key", "authority", "state", "budget", "rate", "issued", "spent", "left in budget"]);
            for p in &programs {
                t.add_row(vec![
                    p.id.to_string(),
                    p.terms.key.clone(),
                    p.terms.authority_region.to_string(),
                    format!("{:?}", p.state).to_lowercase(),
                    p.terms.budget_fen.to_string(),
                    p.terms.subsidy_rate_bp.to_string(),
                    p.issued_fen.to_string(),
                    p.spent_fen.to_string(),
                    p.budget_remaining_fen.to_string(),
                ]);
            }
            Ok(Reply::new(to_json(&programs), t.to_string()))
        }
        ProgramCommand::Show { program } => {
            let p = service.program(service.find_program(&program)?)?;
            let terms = &p.terms;
            let mut text = format!(
                "{} {} ({})\nauthority       {} {}\nbudget          {} (left {}, issued {}, spent {}, returned {}, settled {})\n\
                 subsidy rate    {}{}\ncaps            {} per enterprise{}\nvalidity        {} days\n\
                 applications    {} to {}\napplicants      {}\npurposes        {}\nproviders       {}\nstacking        {}\n",
                p.id,
                terms.name,
                format!("{:?}", p.state).to_lowercase(),
                terms.authority_region,
                terms.authority_name,
                terms.budget_fen,
                p.budget_remaining_fen,
                p.issued_fen,
                p.spent_fen,
                p.returned_fen,
                p.settled_fen,
                terms.subsidy_rate_bp,
                terms.domestic_chip_rate_bp.map(|r| format!(", {r} on domestic chips")).unwrap_or_default(),
                terms.enterprise_cap_fen,
                terms.annual_cap_fen.map(|c| format!(", {c} a year")).unwrap_or_default(),
                terms.voucher_validity_days,
                format_timestamp(terms.applications_open_s),
                format_timestamp(terms.applications_close_s),
                terms.applicant_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                terms.purposes.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                terms.providers,
                terms.stacking,
            );
            for rule in &terms.eligibility {
                text.push_str(&format!("rule            {}: {}\n", rule.name, rule.rule));
            }
            Ok(Reply::new(to_json(p), text))
        }
        ProgramCommand::Open { program } => {
            let id = service.find_program(&program)?;
            service.open_program(actor, id)?;
            let p = service.program(id)?;
            Ok(Reply::new(to_json(p), format!("{id} is open; budget {} funded", p.budget_remaining_fen)))
        }
        ProgramCommand::Close { program } => {
            let id = service.find_program(&program)?;
            service.close_program(actor, id)?;
            Ok(Reply::new(json!({"id": id}), format!("{id} is closed to new applications")))
        }
        ProgramCommand::Finish { program } => {
            let id = service.find_program(&program)?;
            let returned = service.finish_program(actor, id)?;
            Ok(Reply::new(
                json!({"id": id, "returned_fen": returned}),
                format!("{id} is finished; {returned} returned to the appropriation"),
            ))
        }
    })
}

fn read_limited(path: &Path, bytes_max: usize) -> anyhow::Result<String> {
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(metadata.len() <= bytes_max as u64, "{} is larger than {bytes_max} bytes", path.display());
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn enterprise(common: &Common, command: EnterpriseCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        EnterpriseCommand::Register(args) => {
            let uscc = Uscc::parse(&args.uscc).context("--uscc")?;
            let region = match &args.region {
                Some(text) => RegionCode::parse(text).context("--region")?,
                None => uscc.region(),
            };
            let kind = ApplicantKind::parse(&args.kind).context("--kind")?;
            let revenue_fen = Fen::parse(&args.revenue).context("--revenue")?;
            anyhow::ensure!(revenue_fen >= Fen::ZERO, "--revenue: must not be negative");
            let related_parties = args
                .related_parties
                .iter()
                .map(|text| Uscc::parse(text).context("--related-party"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let input = EnterpriseInput {
                uscc,
                name: args.name,
                region,
                kind,
                headcount: args.headcount,
                revenue_fen,
                research_projects: args.research_projects,
                related_parties,
            };
            let id = service.register_enterprise(actor, input)?;
            Ok(Reply::new(to_json(service.enterprise(id)?), format!("registered {id} ({uscc})")))
        }
        EnterpriseCommand::List => {
            let all: Vec<_> = service.state().enterprises.values().collect();
            let mut t =
                table(&["id", "uscc", "name", "region", "kind", "headcount", "revenue", "research", "paid itself"]);
            for e in &all {
                t.add_row(vec![
                    e.id.to_string(),
                    e.uscc.to_string(),
                    e.name.clone(),
                    e.region.to_string(),
                    e.kind.to_string(),
                    e.headcount.to_string(),
                    e.revenue_fen.to_string(),
                    e.research_projects.len().to_string(),
                    e.paid_fen.to_string(),
                ]);
            }
            Ok(Reply::new(to_json(&all), t.to_string()))
        }
        EnterpriseCommand::Show { enterprise } => {
            let e = service.enterprise(parse_id("enterprise", &enterprise, EnterpriseId::parse)?)?;
            let text = format!(
                "{} {} ({})\nregion {}  kind {}  headcount {}  revenue {}\nresearch projects: {}\nrelated parties: {}",
                e.id,
                e.name,
                e.uscc,
                e.region,
                e.kind,
                e.headcount,
                e.revenue_fen,
                e.research_projects.join("; "),
                e.related_parties.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(", ")
            );
            Ok(Reply::new(to_json(e), text))
        }
    })
}

pub fn application(common: &Common, command: ApplicationCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        ApplicationCommand::Create { enterprise, program, amount, note } => {
            let enterprise = parse_id("--enterprise", &enterprise, EnterpriseId::parse)?;
            let program = service.find_program(&program)?;
            let id = service.create_application(actor, enterprise, program, yuan("amount", &amount)?, &note)?;
            Ok(Reply::new(to_json(service.application(id)?), format!("created {id} (draft)")))
        }
        ApplicationCommand::Submit { application } => {
            let id = parse_id("application", &application, ApplicationId::parse)?;
            service.submit_application(actor, id)?;
            let a = service.application(id)?;
            let verdicts = service.eligibility(a.enterprise, a.program)?;
            let text = format!("{id} submitted\n{}", verdict_lines(&verdicts));
            Ok(Reply::new(json!({"application": to_json(a), "eligibility": verdicts_json(&verdicts)}), text))
        }
        ApplicationCommand::Approve { application, amount, rate_bp } => {
            let id = parse_id("application", &application, ApplicationId::parse)?;
            let rate = rate_bp.map(suanli_domain::RateBp::new).transpose().context("--rate-bp")?;
            let voucher = service.approve_application_at(actor, id, yuan("amount", &amount)?, rate)?;
            let v = service.voucher(voucher)?;
            Ok(Reply::new(
                to_json(v),
                format!(
                    "{id} approved: issued {voucher} of {} to {}, valid until {}",
                    v.face_value_fen,
                    v.enterprise,
                    format_timestamp(v.expires_at_s)
                ),
            ))
        }
        ApplicationCommand::Reject { application, reason } => {
            let id = parse_id("application", &application, ApplicationId::parse)?;
            service.reject_application(actor, id, &reason)?;
            Ok(Reply::new(to_json(service.application(id)?), format!("{id} rejected: {reason}")))
        }
        ApplicationCommand::Withdraw { application } => {
            let id = parse_id("application", &application, ApplicationId::parse)?;
            service.withdraw_application(actor, id)?;
            Ok(Reply::new(to_json(service.application(id)?), format!("{id} withdrawn")))
        }
        ApplicationCommand::List { program } => {
            let program = program.map(|p| service.find_program(&p)).transpose()?;
            let mut all: Vec<_> =
                service.state().applications.values().filter(|a| program.is_none_or(|p| a.program == p)).collect();
            all.sort_by_key(|a| (a.program, a.submitted_at_s.unwrap_or(i64::MAX), a.id));
            let mut t = table(&[
                "id",
                "programme",
                "enterprise",
                "requested",
                "state",
                "submitted",
                "approved",
                "voucher",
                "reason",
            ]);
            for a in &all {
                t.add_row(vec![
                    a.id.to_string(),
                    a.program.to_string(),
                    a.enterprise.to_string(),
                    a.requested_fen.to_string(),
                    format!("{:?}", a.state).to_lowercase(),
                    a.submitted_at_s.map(format_timestamp).unwrap_or_default(),
                    a.approved_fen.map(|f| f.to_string()).unwrap_or_default(),
                    a.voucher.map(|v| v.to_string()).unwrap_or_default(),
                    a.reason.clone().unwrap_or_default(),
                ]);
            }
            Ok(Reply::new(to_json(&all), t.to_string()))
        }
        ApplicationCommand::Show { application } => {
            let a = service.application(parse_id("application", &application, ApplicationId::parse)?)?;
            let verdicts = service.eligibility(a.enterprise, a.program)?;
            let text = format!(
                "{} by {} to {}: {} requested, {:?}{}\n{}",
                a.id,
                a.enterprise,
                a.program,
                a.requested_fen,
                a.state,
                a.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
                verdict_lines(&verdicts)
            );
            Ok(Reply::new(json!({"application": to_json(a), "eligibility": verdicts_json(&verdicts)}), text))
        }
    })
}

fn verdict_lines(verdicts: &[(String, suanli_domain::Verdict)]) -> String {
    verdicts
        .iter()
        .map(|(name, v)| format!("  {} {name}: {}", if v.passed { "pass" } else { "FAIL" }, v.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

fn verdicts_json(verdicts: &[(String, suanli_domain::Verdict)]) -> Value {
    json!(
        verdicts
            .iter()
            .map(|(name, v)| json!({"rule": name, "passed": v.passed, "reason": v.reason}))
            .collect::<Vec<_>>()
    )
}

pub fn voucher(common: &Common, command: VoucherCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        VoucherCommand::List => {
            let all: Vec<_> = service.state().vouchers.values().collect();
            let mut t = table(&[
                "id",
                "enterprise",
                "programme",
                "face value",
                "available",
                "held",
                "spent",
                "returned",
                "state",
                "expires",
            ]);
            for v in &all {
                t.add_row(vec![
                    v.id.to_string(),
                    v.enterprise.to_string(),
                    v.program.to_string(),
                    v.face_value_fen.to_string(),
                    v.available_fen.to_string(),
                    v.held_fen.to_string(),
                    v.spent_fen.to_string(),
                    v.returned_fen.to_string(),
                    v.state_name().to_owned(),
                    format_timestamp(v.expires_at_s),
                ]);
            }
            Ok(Reply::new(to_json(&all), t.to_string()))
        }
        VoucherCommand::Show { voucher } => {
            let v = service.voucher(parse_id("voucher", &voucher, VoucherId::parse)?)?;
            let text = format!(
                "{} of {} in {} ({})\nface value {}  available {}  held {}  spent {}  returned {}\nissued {}  expires {}",
                v.id,
                v.enterprise,
                v.program,
                v.state_name(),
                v.face_value_fen,
                v.available_fen,
                v.held_fen,
                v.spent_fen,
                v.returned_fen,
                format_timestamp(v.issued_at_s),
                format_timestamp(v.expires_at_s)
            );
            Ok(Reply::new(to_json(v), text))
        }
        VoucherCommand::Suspend { voucher, reason } => {
            let id = parse_id("voucher", &voucher, VoucherId::parse)?;
            service.suspend_voucher(actor, id, &reason)?;
            Ok(Reply::new(to_json(service.voucher(id)?), format!("{id} suspended: {reason}")))
        }
        VoucherCommand::Reinstate { voucher } => {
            let id = parse_id("voucher", &voucher, VoucherId::parse)?;
            service.reinstate_voucher(actor, id)?;
            Ok(Reply::new(to_json(service.voucher(id)?), format!("{id} reinstated")))
        }
        VoucherCommand::Revoke { voucher, reason } => {
            let id = parse_id("voucher", &voucher, VoucherId::parse)?;
            let returned = service.revoke_voucher(actor, id, &reason)?;
            Ok(Reply::new(to_json(service.voucher(id)?), format!("{id} revoked; {returned} returned to the budget")))
        }
        VoucherCommand::Sweep => {
            let report = service.sweep(actor)?;
            let text =
                format!("{} voucher(s) expired; {} returned to budgets", report.expired.len(), report.returned_fen);
            Ok(Reply::new(to_json(&report), text))
        }
    })
}

pub fn provider(common: &Common, command: ProviderCommand) -> anyhow::Result<ExitCode> {
    if let ProviderCommand::Keygen { out } = &command {
        return crate::usage_publish::keygen(out, common.json);
    }
    run(common, |service, actor| match command {
        ProviderCommand::Keygen { .. } => unreachable!("answered above"),
        ProviderCommand::SetKey { provider, public_key } => {
            let provider = parse_id("--provider", &provider, ProviderId::parse)?;
            service.register_provider_key(actor, provider, &public_key)?;
            Ok(Reply::new(
                json!({ "provider": provider, "public_key": public_key }),
                format!("{provider} signs with {public_key}"),
            ))
        }
        ProviderCommand::Register { uscc, name, operator: kind } => {
            let uscc = Uscc::parse(&uscc).context("--uscc")?;
            let id = service.register_provider(actor, uscc, &name, operator(&kind)?)?;
            Ok(Reply::new(to_json(&service.state().providers[&id]), format!("registered {id} ({uscc})")))
        }
        ProviderCommand::AddSite {
            provider,
            name,
            hub,
            region,
            latitude,
            longitude,
            operator: kind,
            power_price,
            pue,
        } => {
            let provider = parse_id("--provider", &provider, ProviderId::parse)?;
            let default_operator = service.state().providers.get(&provider).map(|p| p.operator);
            let operator = match kind {
                Some(text) => operator(&text)?,
                None => default_operator.ok_or_else(|| ServiceError::not_found(provider))?,
            };
            let power_price =
                power_price.map(|text| Fen::parse_positive(&text).context("--power-price")).transpose()?;
            let input = SiteSpec {
                provider,
                name,
                hub,
                region: RegionCode::parse(&region).context("--region")?,
                latitude,
                longitude,
                operator,
                power_price_fen_per_kwh: power_price,
                pue,
            };
            let id = service.add_site(actor, input)?;
            Ok(Reply::new(to_json(&service.state().sites[&id]), format!("added {id}")))
        }
        ProviderCommand::VerifySite { site } => {
            let id = parse_id("--site", &site, SiteId::parse)?;
            service.verify_site(actor, id)?;
            Ok(Reply::new(to_json(&service.state().sites[&id]), format!("{id} verified")))
        }
        ProviderCommand::AddPool { site, chip, gpus, price, domestic } => {
            // Without --domestic the registry's flag is taken; with it, the registry must agree.
            let registered = suanli_service::chips::find(&chip).is_some_and(|c| c.domestic);
            let input = PoolInput {
                site: parse_id("--site", &site, SiteId::parse)?,
                chip,
                gpu_count: gpus,
                domestic: domestic || registered,
                price_fen_per_gpu_hour: yuan("price", &price)?,
            };
            let id = service.add_pool(actor, input)?;
            Ok(Reply::new(to_json(&service.state().pools[&id]), format!("added {id}")))
        }
        ProviderCommand::List => {
            let state = service.state();
            let mut t = table(&[
                "provider",
                "operator",
                "site",
                "hub",
                "region",
                "pool",
                "chip",
                "GPUs (reserved)",
                "domestic",
                "price / GPU-hour",
            ]);
            for pool in state.pools.values() {
                let site = &state.sites[&pool.site];
                let provider = &state.providers[&site.spec.provider];
                t.add_row(vec![
                    format!("{} {}", provider.id, provider.name),
                    site.spec.operator.as_str().to_owned(),
                    format!("{} {}", site.id, site.spec.name),
                    site.spec.hub.clone(),
                    site.spec.region.to_string(),
                    pool.id.to_string(),
                    pool.chip.clone(),
                    format!("{} ({})", pool.gpu_count, pool.gpus_reserved),
                    if pool.domestic { "yes" } else { "no" }.to_owned(),
                    pool.price_fen_per_gpu_hour.to_string(),
                ]);
            }
            let json = json!({"providers": to_json(&state.providers.values().collect::<Vec<_>>()),
                "sites": to_json(&state.sites.values().collect::<Vec<_>>()),
                "pools": to_json(&state.pools.values().collect::<Vec<_>>())});
            Ok(Reply::new(json, t.to_string()))
        }
    })
}

/// The order as asked, and the pool if one was pinned.
fn order_request(args: &OrderArgs) -> anyhow::Result<(PoolRequest, Option<PoolId>)> {
    let request = PoolRequest {
        enterprise: parse_id("--enterprise", &args.enterprise, EnterpriseId::parse)?,
        voucher: parse_id("--voucher", &args.voucher, VoucherId::parse)?,
        chip: args.chip.clone(),
        gpu_count: args.gpus,
        hours: args.hours,
        purpose: purpose(&args.purpose)?,
        needs: suanli_service::Needs {
            work: args.work.as_deref().map(work).transpose()?,
            origin_hub: args.origin_hub.clone(),
            data_gb: args.data_gb,
            rtt_ms_max: args.rtt_ms_max,
        },
    };
    let pool = args.pool.as_deref().map(|text| parse_id("--pool", text, PoolId::parse)).transpose()?;
    Ok((request, pool))
}

/// `--work CLASS=HOURS`.
fn work(text: &str) -> anyhow::Result<suanli_service::Work> {
    let (class, hours) = text.split_once('=').ok_or_else(|| anyhow::anyhow!("--work: must be CLASS=HOURS"))?;
    let reference_gpu_hours =
        hours.trim().parse().map_err(|_| anyhow::anyhow!("--work: {hours:?} is not a whole number of hours"))?;
    Ok(suanli_service::Work { class: class.trim().to_owned(), reference_gpu_hours })
}

fn quote_text(q: &suanli_service::model::Quote) -> String {
    format!(
        "{} × GPU for {} h on {} at {}/GPU-hour\nlist price       {}\nvoucher pays     {} ({}){}\nenterprise pays  {}",
        q.gpu_count,
        q.hours,
        q.pool,
        q.price_fen_per_gpu_hour,
        q.list_cost_fen,
        q.voucher_share_fen,
        q.rate_bp,
        q.limited_by.as_ref().map(|l| format!(", limited by {l}")).unwrap_or_default(),
        q.enterprise_share_fen
    )
}

pub fn order(common: &Common, command: OrderCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        OrderCommand::Quote(args) => match order_request(&args)? {
            (request, Some(pool)) => {
                let quote = service.quote(&service.pinned(&request, pool)?)?;
                Ok(Reply::new(to_json(&quote), quote_text(&quote)))
            }
            (request, None) => {
                let choice = service.choose_pool(&request)?;
                let mut text = format!("best: {}\n", quote_text(&choice.chosen));
                if let Some(tier) = &choice.tier {
                    text.push_str(&format!("served at tier {tier}\n"));
                }
                for why in &choice.escalated {
                    text.push_str(&format!("not served lower: {why}\n"));
                }
                if choice.underused_credit_fen != 0 || choice.domestic_credit_fen != 0 {
                    text.push_str(&format!(
                        "policy credits behind the choice: under-used site {} fen, domestic chip {} fen\n",
                        choice.underused_credit_fen, choice.domestic_credit_fen
                    ));
                }
                for alternative in &choice.alternatives {
                    text.push_str(&format!(
                        "alternative {}: list {}, voucher {}, enterprise {}\n",
                        alternative.pool,
                        alternative.list_cost_fen,
                        alternative.voucher_share_fen,
                        alternative.enterprise_share_fen
                    ));
                }
                for (pool, why) in &choice.excluded {
                    text.push_str(&format!("not {pool}: {why}\n"));
                }
                Ok(Reply::new(to_json(&choice), text))
            }
        },
        OrderCommand::Place(args) => {
            let id = match order_request(&args)? {
                (request, Some(pool)) => {
                    let input = service.pinned(&request, pool)?;
                    service.place_order_for(actor, input, None, request.needs.work.clone())?
                }
                (request, None) => service.place_order_anywhere(actor, &request)?,
            };
            let o = service.order(id)?;
            let mut text =
                format!("placed {id}: price locked, {} held on {}\n{}", o.hold_fen, o.voucher, quote_text(&o.quote));
            for flag in &o.flags {
                text.push_str(&format!("\nFLAG {flag}"));
            }
            Ok(Reply::new(to_json(o), text))
        }
        OrderCommand::Submit { order, wait_s, limit_fen_per_gpu_hour } => {
            let (request, pool) = order_request(&order)?;
            anyhow::ensure!(
                pool.is_none(),
                "--pool: the scheduling loop chooses the pool; place a pinned order instead"
            );
            let id = service.submit_bid(actor, &request, wait_s, limit_fen_per_gpu_hour.map(Fen::new))?;
            let r = service.request(id)?;
            Ok(Reply::new(
                to_json(r),
                format!("{id} waiting for the next round (until {})", format_timestamp(r.expires_at_s)),
            ))
        }
        OrderCommand::Round => {
            let report = service.run_round(actor)?;
            let mut text = if report.round == 0 {
                format!("no request decided; {} waiting", report.still_waiting)
            } else {
                format!(
                    "round {}: {} placed, {} refused, {} still waiting; gap {:.2}% in {} ms
list cost {}, under-used credit {} fen, domestic credit {} fen, egress {} fen",
                    report.round,
                    report.placed.len(),
                    report.refused.len(),
                    report.still_waiting,
                    f64::from(report.gap_bp) / 100.0,
                    report.solve_ms,
                    report.list_cost_fen,
                    report.underused_credit_fen,
                    report.domestic_credit_fen,
                    report.egress_fen
                )
            };
            for (request, order) in &report.placed {
                text.push_str(&format!("\n{request} → {order}"));
            }
            for (request, reason) in &report.refused {
                text.push_str(&format!("\n{request} refused: {reason}"));
            }
            Ok(Reply::new(to_json(&report), text))
        }
        OrderCommand::Requests => {
            let requests: Vec<_> = service.state().requests.values().cloned().collect();
            let mut t =
                table(&["id", "enterprise", "voucher", "GPUs × h", "state", "order", "pool", "list cost", "reason"]);
            for r in &requests {
                let decision = r.decision.as_ref();
                t.add_row(vec![
                    r.id.to_string(),
                    r.enterprise.to_string(),
                    r.voucher.to_string(),
                    format!("{} × {}", r.gpu_count, r.hours),
                    r.state.as_str().to_owned(),
                    decision.and_then(|d| d.order).map(|o| o.to_string()).unwrap_or_default(),
                    decision.and_then(|d| d.pool).map(|p| p.to_string()).unwrap_or_default(),
                    decision.filter(|d| d.order.is_some()).map(|d| d.list_cost_fen.to_string()).unwrap_or_default(),
                    decision.and_then(|d| d.reason.clone()).unwrap_or_default(),
                ]);
            }
            Ok(Reply::new(to_json(&requests), t.to_string()))
        }
        OrderCommand::Request { request } => {
            let id = parse_id("request", &request, suanli_domain::RequestId::parse)?;
            let r = service.request(id)?;
            let mut text = format!(
                "{} ({}) by {} with {}: {} × GPU for {} h, submitted {}, waits until {}",
                r.id,
                r.state.as_str(),
                r.enterprise,
                r.voucher,
                r.gpu_count,
                r.hours,
                format_timestamp(r.submitted_at_s),
                format_timestamp(r.expires_at_s)
            );
            if let Some(d) = &r.decision {
                text.push_str(&format!("\nround {} at {}", d.round, format_timestamp(d.decided_at_s)));
                if let (Some(order), Some(pool), Some(hours)) = (d.order, d.pool, d.hours) {
                    text.push_str(&format!(
                        ": {order} on {pool} for {hours} h, list cost {}; under-used credit {} fen, domestic credit {} fen, egress {} fen",
                        d.list_cost_fen, d.underused_credit_fen, d.domestic_credit_fen, d.egress_fen
                    ));
                }
                if let Some(reason) = &d.reason {
                    text.push_str(&format!(": refused, {reason}"));
                }
                if let Some(tier) = &d.tier {
                    text.push_str(&format!("\nserved at tier {tier}"));
                }
                for why in &d.escalated {
                    text.push_str(&format!("\nnot served lower: {why}"));
                }
            }
            Ok(Reply::new(to_json(r), text))
        }
        OrderCommand::Withdraw { request } => {
            let id = parse_id("request", &request, suanli_domain::RequestId::parse)?;
            service.withdraw_request(actor, id)?;
            Ok(Reply::new(to_json(service.request(id)?), format!("{id} withdrawn")))
        }
        OrderCommand::Start { order } => {
            let id = parse_id("order", &order, OrderId::parse)?;
            service.start_order(actor, id)?;
            Ok(Reply::new(to_json(service.order(id)?), format!("{id} running")))
        }
        OrderCommand::Complete { order } => {
            let id = parse_id("order", &order, OrderId::parse)?;
            let released = service.complete_order(actor, id)?;
            Ok(Reply::new(to_json(service.order(id)?), format!("{id} completed; {released} of its hold released")))
        }
        OrderCommand::Cancel { order } => {
            let id = parse_id("order", &order, OrderId::parse)?;
            let released = service.cancel_order(actor, id)?;
            Ok(Reply::new(to_json(service.order(id)?), format!("{id} cancelled; {released} released")))
        }
        OrderCommand::Extend { order, hours } => {
            let id = parse_id("order", &order, OrderId::parse)?;
            let held = service.extend_order(actor, id, hours)?;
            let o = service.order(id)?;
            Ok(Reply::new(
                to_json(o),
                format!("{id} extended by {hours} h to {} h; {held} more held", o.hours_ordered()),
            ))
        }
        OrderCommand::List => {
            // Every order, in memory and archived, a page at a time.
            let mut reader = service.log_reader()?;
            let query = suanli_service::OrderQuery::default();
            let mut all = Vec::new();
            loop {
                let page = service.orders_page(&query, all.len() as u64, 1_000, &mut reader)?;
                let done = page.orders.is_empty() || all.len() + page.orders.len() >= page.total as usize;
                all.extend(page.orders);
                if done {
                    break;
                }
            }
            let mut t = table(&[
                "id",
                "enterprise",
                "voucher",
                "pool",
                "GPUs × h",
                "state",
                "hold left",
                "records",
                "cost",
                "voucher paid",
                "enterprise paid",
            ]);
            for o in &all {
                t.add_row(vec![
                    o.id.to_string(),
                    o.enterprise.to_string(),
                    o.voucher.to_string(),
                    o.pool.to_string(),
                    format!("{} × {}", o.quote.gpu_count, o.quote.hours),
                    format!("{:?}", o.state).to_lowercase(),
                    o.hold_remaining_fen.to_string(),
                    o.usage_records.to_string(),
                    o.cost_fen.to_string(),
                    o.voucher_paid_fen.to_string(),
                    o.enterprise_paid_fen.to_string(),
                ]);
            }
            Ok(Reply::new(to_json(&all), t.to_string()))
        }
        OrderCommand::Show { order } => {
            let id = parse_id("order", &order, OrderId::parse)?;
            let o = &service.find_order(id, &mut service.log_reader()?)?;
            let text = format!(
                "{} ({:?}) by {} with {}\n{}\nhold {} (left {})\nusage: {} records, {} GPU-seconds, cost {}, voucher paid {}, enterprise paid {}",
                o.id,
                o.state,
                o.enterprise,
                o.voucher,
                quote_text(&o.quote),
                o.hold_fen,
                o.hold_remaining_fen,
                o.usage_records,
                o.gpu_seconds,
                o.cost_fen,
                o.voucher_paid_fen,
                o.enterprise_paid_fen
            );
            Ok(Reply::new(to_json(o), text))
        }
    })
}

pub fn usage(common: &Common, command: UsageCommand) -> anyhow::Result<ExitCode> {
    match &command {
        UsageCommand::Publish(options) => return crate::usage_publish::publish(options, common.json),
        UsageCommand::Send(options) => return crate::usage_send::send(options, common.json),
        UsageCommand::Import { .. } => {}
    }
    run(common, |service, actor| match command {
        UsageCommand::Publish(_) | UsageCommand::Send(_) => unreachable!("answered above"),
        UsageCommand::Import { provider, file, batch } => {
            let provider = parse_id("--provider", &provider, ProviderId::parse)?;
            let summary = usage_import::import(service, actor, provider, &file, batch, !common.json)?;
            let text = summary.text();
            Ok(Reply::new(to_json(&summary), text))
        }
    })
}

pub fn statement(common: &Common, command: StatementCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        StatementCommand::Issue { provider, program, month } => {
            let provider = parse_id("--provider", &provider, ProviderId::parse)?;
            let program = service.find_program(&program)?;
            let month =
                YearMonth::parse(&month).with_context(|| format!("--month: expected YYYY-MM, got {month:?}"))?;
            let id = service.issue_statement(actor, provider, program, month)?;
            let s = &service.state().statements[&id];
            Ok(Reply::new(to_json(s), statement_text(s)))
        }
        StatementCommand::Approve { statement } => {
            let id = parse_id("statement", &statement, StatementId::parse)?;
            service.approve_statement(actor, id)?;
            let s = &service.state().statements[&id];
            Ok(Reply::new(to_json(s), format!("{id} approved: {} moved to settlement", s.voucher_total_fen)))
        }
        StatementCommand::List => {
            let all: Vec<_> = service.state().statements.values().collect();
            let mut t = table(&[
                "id",
                "provider",
                "programme",
                "month",
                "orders",
                "cost",
                "voucher total",
                "enterprise total",
                "state",
            ]);
            for s in &all {
                t.add_row(vec![
                    s.id.to_string(),
                    s.provider.to_string(),
                    s.program.to_string(),
                    s.month.clone(),
                    // An approved statement's lines leave memory for the database.
                    if s.lines.is_empty() { "stored".to_owned() } else { s.lines.len().to_string() },
                    s.cost_fen.to_string(),
                    s.voucher_total_fen.to_string(),
                    s.enterprise_total_fen.to_string(),
                    format!("{:?}", s.state).to_lowercase(),
                ]);
            }
            Ok(Reply::new(to_json(&all), t.to_string()))
        }
        StatementCommand::Show { statement } => {
            let id = parse_id("statement", &statement, StatementId::parse)?;
            let s = service.statement_with_lines(id, &mut service.log_reader()?)?;
            Ok(Reply::new(to_json(&s), statement_text(&s)))
        }
    })
}

fn statement_text(s: &suanli_service::model::Statement) -> String {
    let mut t =
        table(&["order", "enterprise", "pool", "records", "GPU-hours", "cost", "voucher part", "enterprise part"]);
    for line in &s.lines {
        t.add_row(vec![
            line.order.to_string(),
            line.enterprise.to_string(),
            line.pool.to_string(),
            line.usage_records.to_string(),
            format!("{:.2}", line.gpu_seconds as f64 / 3600.0),
            line.cost_fen.to_string(),
            line.voucher_part_fen.to_string(),
            line.enterprise_part_fen.to_string(),
        ]);
    }
    format!(
        "Settlement statement {} ({:?})\nprovider {}  programme {}  month {}\n{t}\ncost {}  enterprise shares {}\nvoucher total {}\n大写 {}",
        s.id,
        s.state,
        s.provider,
        s.program,
        s.month,
        s.cost_fen,
        s.enterprise_total_fen,
        s.voucher_total_fen,
        s.voucher_total_uppercase
    )
}
