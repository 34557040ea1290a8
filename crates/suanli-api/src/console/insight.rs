//! What the money bought, read from the statements and the month's unsettled lines (memory holds
//! one line per order and month, never the usage records): an enterprise's monthly bill of its
//! own share, and the overseers' network view — spending by month across programmes, GPU-hours
//! by hub and chip, and the load of each site — each chart beside its table and a CSV.

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanli_domain::{AuthorityId, Fen, ProgramId};
use suanli_service::model::{StatementLine, StatementState};
use suanli_service::{Role, View};

use super::chart::Bars;
use super::i18n::{Tr, yuan};
use super::pages::{open, refuse, require};
use super::{Ctx, html};
use crate::{ApiError, AppState};
use std::sync::Arc;
use suanli_domain::EnterpriseId;

/// Where a line stands: on an approved statement, on one waiting, or not yet on any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    Settled,
    Issued,
    Open,
}

impl Standing {
    fn key(self) -> &'static str {
        match self {
            Standing::Settled => "bill.settled",
            Standing::Issued => "bill.issued",
            Standing::Open => "bill.open",
        }
    }
}

type Line = (String, ProgramId, Standing, StatementLine);

/// Every line of `enterprise`'s usage by month (Asia/Shanghai, as statements count them), with
/// where it stands: from memory, and from storage for approved statements whose lines were
/// archived.
async fn enterprise_lines(state: &AppState, enterprise: EnterpriseId) -> Result<(Arc<View>, Vec<Line>), ApiError> {
    let view = state.writer.view();
    let reading = view.clone();
    let archived = state.writer.read_log(move |r| Ok(reading.archived_lines_of(enterprise, r))).await???;
    let s = view.state();
    let mut out = Vec::new();
    for statement in s.statements.values() {
        let standing = if statement.state == StatementState::Approved { Standing::Settled } else { Standing::Issued };
        for line in statement.lines.iter().filter(|l| l.enterprise == enterprise) {
            out.push((statement.month.clone(), statement.program, standing, line.clone()));
        }
    }
    for ((_, p, month), open) in s.unsettled.iter() {
        for line in open.values().filter(|l| l.enterprise == enterprise) {
            out.push((month.to_string(), *p, Standing::Open, line.clone()));
        }
    }
    for (statement, line) in archived {
        if let Some(st) = s.statements.get(&statement) {
            out.push((st.month.clone(), st.program, Standing::Settled, line));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.3.order.cmp(&b.3.order)));
    Ok((view, out))
}

fn gpu_hours(seconds: i64) -> String {
    format!("{:.1}", seconds as f64 / 3600.0)
}

/// A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180); a leading
/// `=`, `+`, `-`, `@`, tab or carriage return is prefixed with `'` so a spreadsheet never runs it as a formula.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

// ------------------------------------------------------------------ the bill

pub struct BillLine {
    pub order: String,
    pub provider: String,
    pub program: String,
    pub records: u32,
    pub gpu_hours: String,
    pub cost: String,
    pub voucher: String,
    pub own: String,
    pub standing: &'static str,
}

pub struct BillMonth {
    pub month: String,
    pub lines: Vec<BillLine>,
    pub cost: String,
    pub voucher: String,
    pub own: String,
    pub own_words: String,
}

#[derive(Template)]
#[template(path = "bill.html")]
struct BillPage {
    ctx: Ctx,
    months: Vec<BillMonth>,
}

/// An enterprise's lines, newest month first, with each month's totals (checked sums).
fn bill(view: &View, tr: Tr, lines: Vec<Line>) -> Vec<BillMonth> {
    let s = view.state();
    let mut months: BTreeMap<String, Vec<(ProgramId, Standing, StatementLine)>> = BTreeMap::new();
    for (month, program, standing, line) in lines {
        months.entry(month).or_default().push((program, standing, line));
    }
    let sum = |lines: &[(ProgramId, Standing, StatementLine)], part: fn(&StatementLine) -> Fen| {
        lines.iter().try_fold(Fen::ZERO, |total, (_, _, l)| total.checked_add(part(l))).unwrap_or(Fen::MAX)
    };
    months
        .into_iter()
        .rev()
        .map(|(month, lines)| {
            let own = sum(&lines, |l| l.enterprise_part_fen);
            BillMonth {
                cost: yuan(sum(&lines, |l| l.cost_fen)),
                voucher: yuan(sum(&lines, |l| l.voucher_part_fen)),
                own: yuan(own),
                own_words: own.to_chinese_uppercase(),
                lines: lines
                    .iter()
                    .map(|(program, standing, l)| {
                        // The pool names the provider, whether or not the order is archived.
                        let site = s.pools.get(&l.pool).and_then(|p| s.sites.get(&p.site));
                        BillLine {
                            order: l.order.to_string(),
                            provider: site
                                .and_then(|site| s.providers.get(&site.spec.provider))
                                .map_or_else(String::new, |p| p.name.clone()),
                            program: s.programs.get(program).map_or_else(String::new, |p| p.terms.name.clone()),
                            records: l.usage_records,
                            gpu_hours: gpu_hours(l.gpu_seconds),
                            cost: yuan(l.cost_fen),
                            voucher: yuan(l.voucher_part_fen),
                            own: yuan(l.enterprise_part_fen),
                            standing: tr.t(standing.key()),
                        }
                    })
                    .collect(),
                month,
            }
        })
        .collect()
}

/// `GET /bill`: the enterprise's monthly bill of its own share.
pub async fn bill_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "bill.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let Role::Enterprise(enterprise) = session.role else {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    };
    let (view, lines) = match enterprise_lines(&state, enterprise).await {
        Ok(found) => found,
        Err(error) => return super::pages::refused(ctx, &error),
    };
    let months = bill(&view, ctx.tr, lines);
    html(StatusCode::OK, &BillPage { ctx, months })
}

/// `GET /bill.csv`: the same lines, in fen, for a spreadsheet.
pub async fn bill_csv(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match require(&state, &headers, &uri) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    let Role::Enterprise(enterprise) = session.role else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let lines = match enterprise_lines(&state, enterprise).await {
        Ok((_, lines)) => lines,
        Err(error) => return error.into_response(),
    };
    let mut csv = String::from("month,order,program,usage_records,gpu_seconds,cost_fen,voucher_fen,own_fen,standing\n");
    for (month, program, standing, line) in lines {
        {
            let standing = match standing {
                Standing::Settled => "settled",
                Standing::Issued => "issued",
                Standing::Open => "open",
            };
            csv.push_str(&format!(
                "{month},{},{program},{},{},{},{},{},{standing}\n",
                line.order,
                line.usage_records,
                line.gpu_seconds,
                line.cost_fen.fen(),
                line.voucher_part_fen.fen(),
                line.enterprise_part_fen.fen()
            ));
        }
    }
    csv_response("bill.csv", csv)
}

// ------------------------------------------------------------------ the network

/// The programmes a role oversees: all for the platform's overseers, its own for an authority.
fn overseen(role: Role) -> Option<Option<AuthorityId>> {
    match role {
        Role::PlatformAdmin | Role::Auditor => Some(None),
        Role::AuthorityAdmin(a) | Role::AuthorityReviewer(a) => Some(Some(a)),
        _ => None,
    }
}

/// The three charts' numbers: spending by month, GPU-hours by hub and chip, site load.
struct Network {
    spend: Vec<(String, i64)>,
    usage: Vec<(String, String, i64)>,
    load: Vec<(String, String, u32, u32)>,
}

fn network(view: &View, authority: Option<AuthorityId>) -> Network {
    let s = view.state();
    let admitted = |p: ProgramId| authority.is_none_or(|a| s.programs.get(&p).is_some_and(|p| p.authority == a));
    let mut spend: BTreeMap<String, i64> = BTreeMap::new();
    let mut usage: BTreeMap<(String, String), i64> = BTreeMap::new();
    for part in view.usage_parts(admitted) {
        let line = part.sums;
        let entry = spend.entry(part.month.to_string()).or_default();
        *entry = entry.saturating_add(line.voucher_part_fen.fen());
        let pool = s.pools.get(&part.pool);
        let hub = pool.and_then(|p| s.sites.get(&p.site)).map_or_else(String::new, |site| site.spec.hub.clone());
        let chip = pool.map_or_else(String::new, |p| p.chip.clone());
        let entry = usage.entry((hub, chip)).or_default();
        *entry = entry.saturating_add(line.gpu_seconds);
    }
    let load = s
        .sites
        .values()
        .map(|site| {
            let (reserved, total) = s
                .pools
                .values()
                .filter(|p| p.site == site.id && p.retired_at_s.is_none())
                .fold((0u32, 0u32), |(r, t), p| (r.saturating_add(p.gpus_reserved), t.saturating_add(p.gpu_count)));
            (site.spec.name.clone(), site.spec.hub.clone(), reserved, total)
        })
        .collect();
    Network {
        spend: spend.into_iter().collect(),
        usage: usage.into_iter().map(|((hub, chip), seconds)| (hub, chip, seconds)).collect(),
        load,
    }
}

#[derive(Template)]
#[template(path = "network.html")]
struct NetworkPage {
    ctx: Ctx,
    spend_chart: String,
    spend: Vec<(String, String)>,
    usage_chart: String,
    usage: Vec<(String, String, String)>,
    load_chart: String,
    load: Vec<(String, String, u32, u32, String)>,
    measured_chart: String,
    measured: Vec<(String, String, String, String)>,
}

/// Each site's measured load (providers' telemetry, all work counted) over the last 7 and 30
/// days, read from storage beside the writer: (site, hub, 7 days, 30 days) in basis points.
async fn measured_load(
    state: &AppState,
    view: &View,
) -> Result<Vec<(String, String, Option<u32>, Option<u32>)>, crate::ApiError> {
    use suanli_store::utilization::{DAY_S, merge};
    let s = view.state();
    let now = view.now_s();
    let sites: Vec<(String, String, Vec<u64>)> = s
        .sites
        .values()
        .map(|site| {
            let pools = s.pools.values().filter(|p| p.site == site.id).map(|p| p.id.get()).collect();
            (site.spec.name.clone(), site.spec.hub.clone(), pools)
        })
        .collect();
    let all: Vec<Vec<u64>> = sites.iter().map(|(_, _, pools)| pools.clone()).collect();
    let series = state
        .writer
        .read_log(move |reader| {
            all.iter()
                .map(|pools| reader.utilization(pools, now - 30 * DAY_S, now + 1, DAY_S).map(|s| merge(&s)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await??;
    let load = |points: &[suanli_store::utilization::Point], from: i64| {
        suanli_store::utilization::load_between(points, from, i64::MAX)
    };
    Ok(sites
        .into_iter()
        .zip(series)
        .map(|((name, hub, _), points)| (name, hub, load(&points, now - 7 * DAY_S), load(&points, now - 30 * DAY_S)))
        .collect())
}

fn percent_of(part: u32, whole: u32) -> i64 {
    if whole == 0 { 0 } else { i64::from(part) * 1_000 / i64::from(whole) }
}

/// `GET /network`: the overseers' charts, scoped as the API scopes programmes.
pub async fn network_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "network.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let Some(authority) = overseen(session.role) else {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    };
    let view = state.writer.view();
    let n = network(&view, authority);
    let measured = match measured_load(&state, &view).await {
        Ok(measured) => measured,
        Err(error) => return super::pages::refused(ctx, &error),
    };
    let tr = ctx.tr;
    let measured_bars: Vec<_> = measured
        .iter()
        .filter_map(|(site, _, week, _)| week.map(|bp| (site.clone(), i64::from(bp), share(Some(bp)))))
        .collect();
    let spend_bars: Vec<_> = n.spend.iter().map(|(m, fen)| (m.clone(), *fen, yuan(Fen::new(*fen)))).collect();
    let usage_bars: Vec<_> =
        n.usage.iter().map(|(hub, chip, s)| (format!("{hub} · {chip}"), *s, gpu_hours(*s))).collect();
    let load_bars: Vec<_> = n
        .load
        .iter()
        .map(|(site, _, r, t)| {
            let permille = percent_of(*r, *t);
            (site.clone(), permille, format!("{:.1}% ({r}/{t})", permille as f64 / 10.0))
        })
        .collect();
    let page = NetworkPage {
        spend_chart: Bars { bars: &spend_bars, title: tr.t("network.spend_title") }.svg(),
        spend: spend_bars.iter().map(|(m, _, shown)| (m.clone(), shown.clone())).collect(),
        usage_chart: Bars { bars: &usage_bars, title: tr.t("network.usage_title") }.svg(),
        usage: n.usage.iter().map(|(hub, chip, s)| (hub.clone(), chip.clone(), gpu_hours(*s))).collect(),
        load_chart: Bars { bars: &load_bars, title: tr.t("network.load_title") }.svg(),
        load: n
            .load
            .iter()
            .zip(&load_bars)
            .map(|((site, hub, r, t), (_, _, shown))| (site.clone(), hub.clone(), *r, *t, shown.clone()))
            .collect(),
        measured_chart: if measured_bars.is_empty() {
            String::new()
        } else {
            Bars { bars: &measured_bars, title: tr.t("network.measured_title") }.svg()
        },
        measured: measured
            .iter()
            .map(|(site, hub, week, month)| (site.clone(), hub.clone(), share(*week), share(*month)))
            .collect(),
        ctx,
    };
    html(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct ChartQuery {
    chart: Option<String>,
}

/// `GET /network.csv?chart=spend|usage|load|measured`: a chart's numbers.
pub async fn network_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ChartQuery>,
) -> Response {
    let session = match require(&state, &headers, &uri) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    let Some(authority) = overseen(session.role) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let n = network(&state.writer.view(), authority);
    match query.chart.as_deref() {
        Some("spend") => {
            let rows: String = n.spend.iter().map(|(m, fen)| format!("{m},{fen}\n")).collect();
            csv_response("spend-by-month.csv", format!("month,voucher_fen\n{rows}"))
        }
        Some("usage") => {
            let rows: String =
                n.usage.iter().map(|(hub, chip, s)| format!("{},{},{s}\n", field(hub), field(chip))).collect();
            csv_response("usage-by-hub-and-chip.csv", format!("hub,chip,gpu_seconds\n{rows}"))
        }
        Some("measured") => {
            let measured = match measured_load(&state, &state.writer.view()).await {
                Ok(measured) => measured,
                Err(error) => return error.into_response(),
            };
            let num = |bp: Option<u32>| bp.map_or_else(String::new, |bp| bp.to_string());
            let rows: String = measured
                .iter()
                .map(|(site, hub, week, month)| {
                    format!("{},{},{},{}\n", field(site), field(hub), num(*week), num(*month))
                })
                .collect();
            csv_response("site-measured-load.csv", format!("site,hub,load_7_days_bp,load_30_days_bp\n{rows}"))
        }
        Some("load") => {
            let rows: String =
                n.load.iter().map(|(site, hub, r, t)| format!("{},{},{r},{t}\n", field(site), field(hub))).collect();
            csv_response("site-load.csv", format!("site,hub,gpus_held,gpus\n{rows}"))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

// ------------------------------------------------------------------ a programme's outcome

pub struct GroupRow {
    pub key: String,
    pub gpu_hours: String,
    pub cost: String,
    pub voucher: String,
    pub per_hour: String,
}

pub struct Dimension {
    pub title: &'static str,
    pub rows: Vec<GroupRow>,
    pub chart: String,
}

/// A site's load before and after the programme began serving.
pub struct SiteLoadRow {
    pub name: String,
    pub hub: String,
    pub served: bool,
    pub before: String,
    pub after: String,
}

/// A lottery round as the page shows it.
pub struct RoundRow {
    pub round: u32,
    pub drawn_at: String,
    pub drawn: u32,
    pub participants: u32,
    pub drawn_bought: String,
    pub control_bought: String,
    pub additionality: String,
    pub verified: bool,
}

#[derive(Template)]
#[template(path = "outcome.html")]
struct OutcomePage {
    ctx: Ctx,
    id: String,
    figures: Vec<(&'static str, String)>,
    vouchers: Vec<(&'static str, u64)>,
    dimensions: Vec<Dimension>,
    /// The comparison of the sites served with the others: figures, a chart, a table.
    load: Vec<(&'static str, String)>,
    load_chart: String,
    sites: Vec<SiteLoadRow>,
    rounds: Vec<RoundRow>,
}

/// An estimate with its interval, in the page's words.
fn estimate(e: Option<&suanli_service::evaluation::Estimate>, unit: impl Fn(f64) -> String) -> String {
    match e {
        None => "—".to_owned(),
        Some(e) => match (e.low, e.high) {
            (Some(low), Some(high)) => format!("{} [{}, {}]", unit(e.estimate), unit(low), unit(high)),
            _ => unit(e.estimate),
        },
    }
}

fn share(bp: Option<u32>) -> String {
    bp.map_or_else(|| "—".to_owned(), |bp| format!("{}.{:02}%", bp / 100, bp % 100))
}

/// `GET /programs/{id}/outcome`: the outcome report, with a chart of the subsidy per GPU-hour
/// beside each table, and `/programs/{id}/outcome.csv`.
pub async fn outcome_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let (session, mut ctx) = match open(&state, &headers, &uri, "outcome.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let o = match crate::report::outcome_with_load(
        &state,
        session.role,
        id,
        suanli_service::evaluation::WINDOW_DAYS_DEFAULT,
    )
    .await
    {
        Ok(o) => o,
        Err(error) => return super::pages::refused(ctx, &error),
    };
    let tr = ctx.tr;
    ctx.title = format!("{} · {}", tr.t("outcome.title"), o.name);
    let points = |v: f64| format!("{v:+.1}");
    let (mut load, mut sites, mut load_bars) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(l) = &o.load {
        load = vec![
            ("outcome.pivot", l.pivot_s.map_or_else(|| "—".to_owned(), super::i18n::when)),
            ("outcome.window", l.window_days.to_string()),
            ("outcome.did", estimate(l.did.as_ref(), points)),
            ("outcome.served_change", l.did.as_ref().map_or_else(|| "—".to_owned(), |d| points(d.treated_mean))),
            ("outcome.others_change", l.did.as_ref().map_or_else(|| "—".to_owned(), |d| points(d.control_mean))),
            ("outcome.under_target", share(l.under_target_share_bp)),
        ];
        for site in l.sites.iter().filter(|s| s.before_bp.is_some() || s.after_bp.is_some()) {
            let change = i64::from(site.after_bp.unwrap_or(0)) - i64::from(site.before_bp.unwrap_or(0));
            load_bars.push((site.name.clone(), change.max(0), format!("{:+.1}", change as f64 / 100.0)));
            sites.push(SiteLoadRow {
                name: site.name.clone(),
                hub: site.hub.clone(),
                served: site.served,
                before: share(site.before_bp),
                after: share(site.after_bp),
            });
        }
    }
    let load_chart = if load_bars.is_empty() {
        String::new()
    } else {
        Bars { bars: &load_bars, title: tr.t("outcome.load_change") }.svg()
    };
    let fen = |v: f64| yuan(Fen::new(v.round() as i64));
    let rounds = o
        .lottery
        .iter()
        .map(|r| RoundRow {
            round: r.round,
            drawn_at: super::i18n::when(r.drawn_at_s),
            drawn: r.drawn,
            participants: r.participants,
            drawn_bought: r.bought.as_ref().map_or_else(|| "—".to_owned(), |b| fen(b.treated_mean)),
            control_bought: r.bought.as_ref().map_or_else(|| "—".to_owned(), |b| fen(b.control_mean)),
            additionality: estimate(r.bought.as_ref(), fen),
            verified: r.verified,
        })
        .collect();
    let figures = vec![
        ("program.funded", yuan(o.funded_fen)),
        ("program.issued", yuan(o.issued_fen)),
        ("program.spent", yuan(o.spent_fen)),
        ("program.settled", yuan(o.settled_fen)),
        ("program.returned", yuan(o.returned_fen)),
        ("outcome.gpu_hours", gpu_hours(o.usage.gpu_seconds)),
        ("outcome.per_hour", o.usage.voucher_fen_per_gpu_hour.map_or_else(|| "—".to_owned(), |f| yuan(Fen::new(f)))),
        ("outcome.cost_cut", share(o.cost_cut_bp)),
        ("outcome.domestic", share(o.domestic_share_bp)),
        ("outcome.enterprises", o.served.enterprises.to_string()),
        ("outcome.top10", share(o.served.top10_share_bp)),
        ("outcome.gini", o.served.gini.map_or_else(|| "—".to_owned(), |g| format!("{g:.3}"))),
    ];
    let v = &o.vouchers;
    let vouchers = vec![
        ("outcome.issued", v.issued),
        ("outcome.used", v.used),
        ("outcome.partly_used", v.partly_used),
        ("outcome.unused", v.unused),
        ("state.expired", v.expired),
        ("state.revoked", v.revoked),
    ];
    let dimension = |title: &'static str, groups: &[suanli_service::outcome::Group]| {
        let bars: Vec<_> = groups
            .iter()
            .map(|g| {
                let per = g.voucher_fen_per_gpu_hour.unwrap_or(0);
                (g.key.clone(), per, yuan(Fen::new(per)))
            })
            .collect();
        Dimension {
            title,
            chart: Bars { bars: &bars, title: tr.t(title) }.svg(),
            rows: groups
                .iter()
                .map(|g| GroupRow {
                    key: g.key.clone(),
                    gpu_hours: gpu_hours(g.gpu_seconds),
                    cost: yuan(g.cost_fen),
                    voucher: yuan(g.voucher_fen),
                    per_hour: g.voucher_fen_per_gpu_hour.map_or_else(|| "—".to_owned(), |f| yuan(Fen::new(f))),
                })
                .collect(),
        }
    };
    let dimensions = vec![
        dimension("outcome.by_chip", &o.by_chip),
        dimension("outcome.by_hub", &o.by_hub),
        dimension("outcome.by_operator", &o.by_operator),
        dimension("outcome.by_kind", &o.served.by_kind),
        dimension("outcome.by_region", &o.served.by_region),
        dimension("outcome.by_size", &o.served.by_size),
    ];
    let page =
        OutcomePage { ctx, id: o.program.to_string(), figures, vouchers, dimensions, load, load_chart, sites, rounds };
    html(StatusCode::OK, &page)
}

/// `GET /programs/{id}/outcome.csv`: every group of the report, in fen and seconds.
pub async fn outcome_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let session = match require(&state, &headers, &uri) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    let o = match crate::report::seen_outcome(&state.writer.view(), session.role, &id) {
        Ok(o) => o,
        Err(error) => return crate::ApiError::from(error).into_response(),
    };
    let mut csv = String::from("dimension,key,gpu_seconds,cost_fen,voucher_fen,voucher_fen_per_gpu_hour\n");
    let all = [("all", std::slice::from_ref(&o.usage))];
    let groups = [
        ("chip", o.by_chip.as_slice()),
        ("hub", &o.by_hub),
        ("operator", &o.by_operator),
        ("kind", &o.served.by_kind),
        ("region", &o.served.by_region),
        ("size", &o.served.by_size),
    ];
    for (name, groups) in all.into_iter().chain(groups) {
        for g in groups {
            let key = if name == "all" { "all".to_owned() } else { field(&g.key) };
            let per = g.voucher_fen_per_gpu_hour.map_or_else(String::new, |v| v.to_string());
            csv.push_str(&format!(
                "{name},{key},{},{},{},{per}\n",
                g.gpu_seconds,
                g.cost_fen.fen(),
                g.voucher_fen.fen()
            ));
        }
    }
    csv_response(&format!("{}-outcome.csv", o.key), csv)
}
