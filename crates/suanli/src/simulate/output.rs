//! A simulation's variants side by side: a table, CSV (one row per variant, and one per variant
//! and month), and an SVG chart (budget burn by month, and the western hubs' load).

use std::fmt::Write;

use suanli_domain::Fen;

use super::Run;
use super::world::VariantResult;

/// The figures compared, in order: a name and each variant's value as text.
fn rows(run: &Run) -> Vec<(&'static str, Vec<String>)> {
    let pct = |bp: u32| format!("{}.{:02}%", bp / 100, bp % 100);
    let opt_pct = |bp: Option<u32>| bp.map_or_else(|| "—".to_owned(), pct);
    let each = |f: &dyn Fn(&VariantResult) -> String| run.variants.iter().map(f).collect::<Vec<_>>();
    let mut rows = common_rows(&each, &pct, &opt_pct);
    if run.variants.iter().any(|v| v.market.is_some()) {
        let market = |f: &dyn Fn(&super::world::MarketResult) -> String| {
            each(&|v: &VariantResult| v.market.as_ref().map_or_else(|| "—".to_owned(), f))
        };
        rows.push(("trades between hub nodes", market(&|m| format!("{} in {} clearings", m.trades, m.clearings))));
        rows.push(("GPU-hours bought between hubs", market(&|m| format!("{:.0}", m.gpu_hours))));
        rows.push((
            "mean clearing price",
            market(&|m| m.mean_price_fen_per_gpu_hour().map_or_else(|| "—".to_owned(), |f| Fen::new(f).to_string())),
        ));
        rows.push((
            "welfare of the LP optimum",
            market(&|m| {
                if m.lp_welfare_fen > 0 {
                    format!(
                        "{:.2}% (worst day's gap {})",
                        m.welfare_fen as f64 * 100.0 / m.lp_welfare_fen as f64,
                        pct(m.gap_bp_max)
                    )
                } else {
                    "—".to_owned()
                }
            }),
        ));
    }
    rows
}

type Each<'a> = dyn Fn(&dyn Fn(&VariantResult) -> String) -> Vec<String> + 'a;

fn common_rows(
    each: &Each,
    pct: &dyn Fn(u32) -> String,
    opt_pct: &dyn Fn(Option<u32>) -> String,
) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("enterprises approved", each(&|v| format!("{} of {}", v.approved, v.enterprises))),
        ("orders placed", each(&|v| v.orders.to_string())),
        ("orders refused", each(&|v| v.orders_refused.to_string())),
        ("GPU-hours used", each(&|v| format!("{:.0}", v.gpu_hours))),
        ("subsidy spent", each(&|v| Fen::new(v.months.last().map_or(0, |m| m.spent_fen)).to_string())),
        (
            "subsidy per GPU-hour",
            each(&|v| {
                v.outcome
                    .as_ref()
                    .and_then(|o| o.usage.voucher_fen_per_gpu_hour)
                    .map_or_else(|| "—".to_owned(), |f| Fen::new(f).to_string())
            }),
        ),
        ("price cut", each(&|v| opt_pct(v.outcome.as_ref().and_then(|o| o.cost_cut_bp)))),
        ("domestic-chip share", each(&|v| opt_pct(v.outcome.as_ref().and_then(|o| o.domestic_share_bp)))),
        ("GPU-hours in the west", each(&|v| pct(v.west_share_bp))),
        (
            "western load before → after",
            each(&|v| format!("{} → {}", pct(v.west_load_before_bp), pct(v.west_load_after_bp))),
        ),
        (
            "eastern load before → after",
            each(&|v| format!("{} → {}", pct(v.east_load_before_bp), pct(v.east_load_after_bp))),
        ),
        (
            "load effect (DiD, points)",
            each(&|v| {
                v.outcome.as_ref().and_then(|o| o.load.as_ref()).and_then(|l| l.did.as_ref()).map_or_else(
                    || "—".to_owned(),
                    |d| match (d.low, d.high) {
                        (Some(low), Some(high)) => format!("{:+.1} [{low:+.1}, {high:+.1}]", d.estimate),
                        _ => format!("{:+.1}", d.estimate),
                    },
                )
            }),
        ),
        (
            "vouchers unused",
            each(&|v| {
                v.outcome
                    .as_ref()
                    .map_or_else(|| "—".to_owned(), |o| format!("{} of {}", o.vouchers.unused, o.vouchers.issued))
            }),
        ),
        (
            "Gini of the subsidy",
            each(&|v| {
                v.outcome.as_ref().and_then(|o| o.served.gini).map_or_else(|| "—".to_owned(), |g| format!("{g:.3}"))
            }),
        ),
        (
            "lottery additionality per firm",
            each(&|v| {
                let rounds = v.outcome.as_ref().map(|o| o.lottery.as_slice()).unwrap_or_default();
                let (drawn, control, n): (f64, f64, usize) = rounds
                    .iter()
                    .filter_map(|r| r.bought.as_ref())
                    .fold((0.0, 0.0, 0), |(a, b, n), e| (a + e.treated_mean, b + e.control_mean, n + 1));
                if n == 0 { "—".to_owned() } else { Fen::new(((drawn - control) / n as f64) as i64).to_string() }
            }),
        ),
    ]
}

pub fn table(run: &Run) -> String {
    let mut header = vec![format!("{} (seed {}, {} months)", run.scenario, run.seed, run.months)];
    header.extend(run.variants.iter().map(|v| v.name.clone()));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = crate::service_cli::table(&header);
    for (name, values) in rows(run) {
        let mut row = vec![name.to_owned()];
        row.extend(values);
        t.add_row(row);
    }
    format!("{}\n\n{t}\n\n{} variants in {:.1} s", run.question, run.variants.len(), run.seconds)
}

fn field(text: &str) -> String {
    if text.contains([',', '"']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// One row per variant, in fen, GPU-hours and basis points.
pub fn csv(run: &Run) -> String {
    let mut out = String::from(
        "variant,enterprises,approved,orders,orders_refused,usage_records,gpu_hours,spent_fen,voucher_fen_per_gpu_hour,\
         domestic_share_bp,west_share_bp,west_load_before_bp,west_load_after_bp,east_load_before_bp,east_load_after_bp,\
         did_points,did_low,did_high,vouchers_issued,vouchers_unused,gini,state_hash\n",
    );
    for v in &run.variants {
        let o = v.outcome.as_ref();
        let did = o.and_then(|o| o.load.as_ref()).and_then(|l| l.did.as_ref());
        let num = |x: Option<f64>| x.map_or_else(String::new, |x| format!("{x:.4}"));
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            field(&v.name),
            v.enterprises,
            v.approved,
            v.orders,
            v.orders_refused,
            v.usage_records,
            v.gpu_hours,
            v.months.last().map_or(0, |m| m.spent_fen),
            o.and_then(|o| o.usage.voucher_fen_per_gpu_hour).map_or_else(String::new, |x| x.to_string()),
            o.and_then(|o| o.domestic_share_bp).map_or_else(String::new, |x| x.to_string()),
            v.west_share_bp,
            v.west_load_before_bp,
            v.west_load_after_bp,
            v.east_load_before_bp,
            v.east_load_after_bp,
            num(did.map(|d| d.estimate)),
            num(did.and_then(|d| d.low)),
            num(did.and_then(|d| d.high)),
            o.map_or(0, |o| o.vouchers.issued),
            o.map_or(0, |o| o.vouchers.unused),
            num(o.and_then(|o| o.served.gini)),
            v.state_hash,
        );
    }
    out
}

/// One row per variant and month.
pub fn months_csv(run: &Run) -> String {
    let mut out = String::from("variant,month,spent_fen,orders,gpu_hours,west_load_bp,east_load_bp\n");
    for v in &run.variants {
        for m in &v.months {
            let _ = writeln!(
                out,
                "{},{},{},{},{:.1},{},{}",
                field(&v.name),
                m.month,
                m.spent_fen,
                m.orders,
                m.gpu_hours,
                m.west_load_bp,
                m.east_load_bp
            );
        }
    }
    out
}

/// What a panel plots of each month.
type MonthValue = fn(&super::world::Month) -> f64;

const COLOURS: [&str; 6] = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#57606a"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Two panels: the subsidy spent by month (cumulative), and the western hubs' load by month,
/// one line per variant.
pub fn svg(run: &Run) -> String {
    let (width, height, pad) = (760.0, 300.0, 48.0);
    let months = run.variants.iter().map(|v| v.months.len()).max().unwrap_or(1).max(2);
    let x = |i: usize| pad + (width / 2.0 - pad * 1.5) * i as f64 / (months - 1) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <title>{}</title>\n",
        escape(&run.question)
    );
    let panels: [(&str, f64, MonthValue); 2] = [
        ("subsidy spent (¥, cumulative)", 0.0, |m| m.spent_fen as f64 / 100.0),
        ("western hubs' load (%)", width / 2.0, |m| f64::from(m.west_load_bp) / 100.0),
    ];
    for (title, left, value) in &panels {
        let max = run.variants.iter().flat_map(|v| v.months.iter().map(value)).fold(1e-9, f64::max) * 1.1;
        let y = |v: f64| height - pad - (height - 2.0 * pad) * v / max;
        let _ = writeln!(out, "<text x=\"{}\" y=\"20\" font-weight=\"bold\">{}</text>", left + pad, escape(title));
        let _ = writeln!(
            out,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#888\"/><line x1=\"{0}\" y1=\"{3}\" x2=\"{0}\" y2=\"{1}\" stroke=\"#888\"/>",
            left + pad,
            height - pad,
            left + x(months - 1),
            pad
        );
        let _ =
            writeln!(out, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max:.0}</text>", left + pad - 4.0, pad + 4.0);
        for (i, v) in run.variants.iter().enumerate() {
            let points: Vec<String> =
                v.months.iter().enumerate().map(|(k, m)| format!("{:.1},{:.1}", left + x(k), y(value(m)))).collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
                COLOURS[i % COLOURS.len()],
                points.join(" "),
                escape(&v.name)
            );
        }
        if let (Some(first), Some(last)) = (run.variants[0].months.first(), run.variants[0].months.last()) {
            let _ = writeln!(out, "<text x=\"{}\" y=\"{}\">{}</text>", left + pad, height - pad + 16.0, first.month);
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                left + x(months - 1),
                height - pad + 16.0,
                last.month
            );
        }
    }
    for (i, v) in run.variants.iter().enumerate() {
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            pad + 150.0 * i as f64,
            height - 16.0,
            COLOURS[i % COLOURS.len()],
            pad + 150.0 * i as f64 + 14.0,
            height - 7.0,
            escape(&v.name)
        );
    }
    out.push_str("</svg>\n");
    out
}
