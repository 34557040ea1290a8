//! `suanli report`: what each programme's money achieved (`View::outcome`), as tables, `--json`
//! or `--csv`.

use std::process::ExitCode;

use suanli_domain::Fen;
use suanli_service::evaluation::LoadEffect;
use suanli_service::outcome::{Group, Outcome};

use crate::Common;
use crate::service_cli::{Reply, run, table};

fn bp(value: Option<u32>) -> String {
    value.map_or_else(|| "—".to_owned(), |bp| format!("{}.{:02}%", bp / 100, bp % 100))
}

fn per_hour(value: Option<i64>) -> String {
    value.map_or_else(|| "—".to_owned(), |fen| Fen::new(fen).to_string())
}

fn hours(seconds: i64) -> String {
    format!("{:.1}", seconds as f64 / 3600.0)
}

/// Every group of a report under its dimension's name, in the order they are shown.
fn dimensions(o: &Outcome) -> [(&'static str, &[Group]); 6] {
    [
        ("chip", &o.by_chip),
        ("hub", &o.by_hub),
        ("operator", &o.by_operator),
        ("kind", &o.served.by_kind),
        ("region", &o.served.by_region),
        ("size", &o.served.by_size),
    ]
}

fn text(o: &Outcome) -> String {
    let v = &o.vouchers;
    let mut out = format!(
        "{} {} ({})\n\
         budget        funded {}, issued {}, spent {}, settled {}, returned {}\n\
         vouchers      {} issued: {} used, {} partly used, {} unused ({} expired, {} revoked)\n\
         compute       {} GPU-hours subsidized; list cost {}, voucher {}, enterprises {}\n\
         per GPU-hour  {} of subsidy; the price cut {}; on domestic chips {} of GPU-hours\n\
         served        {} enterprises; the top 10 spent {} of the subsidy; Gini {}\n",
        o.program,
        o.name,
        o.key,
        o.funded_fen,
        o.issued_fen,
        o.spent_fen,
        o.settled_fen,
        o.returned_fen,
        v.issued,
        v.used,
        v.partly_used,
        v.unused,
        v.expired,
        v.revoked,
        hours(o.usage.gpu_seconds),
        o.usage.cost_fen,
        o.usage.voucher_fen,
        o.enterprise_fen,
        per_hour(o.usage.voucher_fen_per_gpu_hour),
        bp(o.cost_cut_bp),
        bp(o.domestic_share_bp),
        o.served.enterprises,
        bp(o.served.top10_share_bp),
        o.served.gini.map_or_else(|| "—".to_owned(), |g| format!("{g:.3}")),
    );
    if let Some(load) = &o.load {
        out.push_str(&load_text(load));
    }
    for r in &o.lottery {
        let bought = r.bought.as_ref();
        let fen = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| Fen::new(v.round() as i64).to_string());
        out.push_str(&format!(
            "lottery       round {} ({}): {} drawn of {}; bought per enterprise since: drawn {}, not drawn {}; \
             additionality {} (95% interval {} to {}); redone from its seed: {}\n",
            r.round,
            suanli_service::calendar::format_date(r.drawn_at_s),
            r.drawn,
            r.participants,
            fen(bought.map(|b| b.treated_mean)),
            fen(bought.map(|b| b.control_mean)),
            fen(bought.map(|b| b.estimate)),
            fen(bought.and_then(|b| b.low)),
            fen(bought.and_then(|b| b.high)),
            if r.verified { "the same draw" } else { "A DIFFERENT DRAW" },
        ));
    }
    for (name, groups) in dimensions(o) {
        if groups.is_empty() {
            continue;
        }
        let mut t = table(&[name, "GPU-hours", "list cost", "voucher", "voucher per GPU-hour"]);
        for g in groups {
            t.add_row(vec![
                g.key.clone(),
                hours(g.gpu_seconds),
                g.cost_fen.to_string(),
                g.voucher_fen.to_string(),
                per_hour(g.voucher_fen_per_gpu_hour),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out
}

fn pp(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:+.1}"))
}

/// The sites' load before and after the programme began serving, and the difference in
/// differences.
fn load_text(load: &LoadEffect) -> String {
    let Some(pivot) = load.pivot_s else {
        return "site load    — (the programme has served no site yet)\n".to_owned();
    };
    let mut out = format!(
        "site load     {} days before and after {}; load target {}; subsidized GPU-hours under target {} (of the {} measured)\n",
        load.window_days,
        suanli_service::calendar::format_timestamp(pivot),
        bp(Some(load.target_bp)),
        bp(load.under_target_share_bp),
        bp(load.measured_share_bp),
    );
    match &load.did {
        Some(d) => out.push_str(&format!(
            "effect        {} points (95% interval {} to {}); served sites {} (n = {}), others {} (n = {})\n",
            pp(Some(d.estimate)),
            pp(d.low),
            pp(d.high),
            pp(Some(d.treated_mean)),
            d.treated,
            pp(Some(d.control_mean)),
            d.control,
        )),
        None => out.push_str("effect        — (needs telemetry before and after at served sites and at others)\n"),
    }
    let mut t = table(&["site", "hub", "served", "before", "after", "before its first order", "after"]);
    for site in load.sites.iter().filter(|s| s.before_bp.is_some() || s.after_bp.is_some()) {
        t.add_row(vec![
            format!("{} {}", site.site, site.name),
            site.hub.clone(),
            if site.served { "yes".into() } else { "no".into() },
            bp(site.before_bp),
            bp(site.after_bp),
            bp(site.own_before_bp),
            bp(site.own_after_bp),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    out
}

/// Every figure of every report, one per row (`program,measure,value`), for a spreadsheet to
/// filter or pivot: the JSON document's leaves, named by their path. An element of a list is
/// named by its key (`by_chip.H100.voucher_fen`, `load.sites.sit-3.after_bp`, `lottery.1.drawn`),
/// so a measure keeps its name from one report to the next. Money in fen, time in seconds.
fn csv(outcomes: &[Outcome]) -> anyhow::Result<String> {
    fn field(text: &str) -> String {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    }
    fn leaves(value: &serde_json::Value, path: &str, rows: &mut Vec<(String, String)>) {
        use serde_json::Value;
        let at = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
        match value {
            Value::Object(fields) => fields.iter().for_each(|(name, v)| leaves(v, &at(name), rows)),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    // Named by its key, which is then not repeated as a measure of its own.
                    let mut item = item.clone();
                    let name = ["key", "site", "round"]
                        .iter()
                        .find_map(|k| item.as_object_mut()?.remove(*k))
                        .map_or_else(|| index.to_string(), |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
                    leaves(&item, &at(&name), rows);
                }
            }
            Value::Null => rows.push((path.to_owned(), String::new())),
            Value::String(text) => rows.push((path.to_owned(), text.clone())),
            other => rows.push((path.to_owned(), other.to_string())),
        }
    }
    let mut out = String::from("program,measure,value\n");
    for o in outcomes {
        let mut rows = Vec::new();
        leaves(&serde_json::to_value(o)?, "", &mut rows);
        for (measure, value) in rows {
            out.push_str(&format!("{},{},{}\n", field(&o.key), field(&measure), field(&value)));
        }
    }
    Ok(out)
}

/// The reports of one programme (id or key) or of all.
pub fn report(common: &Common, program: Option<String>, as_csv: bool, window_days: i64) -> anyhow::Result<ExitCode> {
    run(common, |service, _| {
        let ids = match &program {
            Some(text) => vec![service.find_program(text)?],
            None => service.state().programs.keys().copied().collect(),
        };
        let mut reader = service.log_reader()?;
        let outcomes = ids
            .into_iter()
            .map(|id| service.outcome_with_load(id, window_days, &mut reader))
            .collect::<Result<Vec<_>, _>>()?;
        let text = if as_csv { csv(&outcomes)? } else { outcomes.iter().map(text).collect::<Vec<_>>().join("\n") };
        Ok(Reply::new(serde_json::to_value(&outcomes)?, text))
    })
}
