//! `suanli market`: the market between hub nodes. Providers offer capacity; a clearing (a round
//! of the scheduling loop, then the bids it left waiting matched to the open offers) runs on the
//! server every `clearing_interval_seconds`, or here at once.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use suanli_domain::{Fen, OfferId, PoolId, ProviderId};
use suanli_service::OfferInput;
use suanli_service::calendar::{format_timestamp, parse_timestamp};
use suanli_service::market::Clearing;

use crate::Common;
use crate::service_cli::{Reply, run, table, to_json};

#[derive(Subcommand)]
pub enum MarketCommand {
    /// Offer GPUs of a provider's pool (at a verified site) for a window, at no less than a
    /// reserve price per GPU-hour.
    Offer {
        /// The provider (prv-N).
        #[arg(long)]
        provider: String,
        /// One of its pools (pol-N).
        #[arg(long)]
        pool: String,
        /// How many of the pool's GPUs are offered.
        #[arg(long)]
        gpus: u32,
        /// When the window opens (RFC 3339) [default: now].
        #[arg(long)]
        opens_at: Option<String>,
        /// When it closes (RFC 3339), at most 31 days after it opens.
        #[arg(long)]
        closes_at: String,
        /// The least the provider takes per GPU-hour, in fen.
        #[arg(long)]
        reserve_fen_per_gpu_hour: i64,
    },
    /// List the offers with their state now.
    Offers,
    /// Withdraw an open or upcoming offer: its unsold GPUs leave the market.
    Withdraw {
        /// The offer (off-N).
        offer: String,
    },
    /// Clear the market now: a round, then the waiting bids matched to the open offers.
    Clear,
    /// The latest clearings, newest first: prices, trades and welfare against the LP optimum.
    Clearings,
}

fn time(flag: &str, text: &str) -> anyhow::Result<i64> {
    parse_timestamp(text).with_context(|| format!("{flag}: {text:?} must be an RFC 3339 time"))
}

fn clearing_text(c: &Clearing) -> String {
    if c.clearing == 0 {
        return format!("nothing to clear ({} bids; no open offer or no bid)", c.bids);
    }
    let mut text = format!(
        "clearing {} at {}: {} bids, {} trades; welfare {} fen against the LP relaxation's {} fen (gap {:.2}%)\n",
        c.clearing,
        format_timestamp(c.cleared_at_s),
        c.bids,
        c.trades.len(),
        c.welfare_fen,
        c.lp_welfare_fen,
        f64::from(c.gap_bp) / 100.0
    );
    for p in &c.prices {
        text.push_str(&format!(
            "{}: {} of {} GPUs sold; each trade pays {}/GPU-hour plus {} per GPU\n",
            p.offer, p.gpus_sold, p.gpus_offered, p.reserve_fen_per_gpu_hour, p.gpu_price_fen
        ));
    }
    for t in &c.trades {
        text.push_str(&format!(
            "{} → {} ({}): {} GPUs × {} h at {}/GPU-hour = {}, {} owes {}{}\n",
            t.request,
            t.order,
            t.offer,
            t.gpus,
            t.hours,
            t.price_fen_per_gpu_hour,
            t.paid_fen,
            t.buyer_region,
            t.seller_region,
            if t.capped { " (capped at the bid)" } else { "" }
        ));
    }
    text
}

pub fn market(common: &Common, command: MarketCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        MarketCommand::Offer { provider, pool, gpus, opens_at, closes_at, reserve_fen_per_gpu_hour } => {
            let provider = ProviderId::parse(&provider).context("--provider")?;
            let pool = PoolId::parse(&pool).context("--pool")?;
            let input = OfferInput {
                pool,
                gpus,
                opens_at_s: opens_at.as_deref().map(|t| time("--opens-at", t)).transpose()?.unwrap_or(service.now_s()),
                closes_at_s: time("--closes-at", &closes_at)?,
                reserve_fen_per_gpu_hour: Fen::new(reserve_fen_per_gpu_hour),
            };
            let id = service.post_offer(actor, provider, &input)?;
            let o = service.offer(id)?;
            let text = format!(
                "{id}: {} GPUs of {} from {} to {} at no less than {}/GPU-hour",
                o.gpus,
                o.pool,
                format_timestamp(o.opens_at_s),
                format_timestamp(o.closes_at_s),
                o.reserve_fen_per_gpu_hour
            );
            Ok(Reply::new(to_json(o), text))
        }
        MarketCommand::Offers => {
            let now = service.now_s();
            let offers: Vec<_> = service.state().offers.values().cloned().collect();
            let mut t =
                table(&["id", "provider", "pool", "region", "GPUs", "sold", "opens", "closes", "reserve", "state"]);
            for o in &offers {
                t.add_row(vec![
                    o.id.to_string(),
                    o.provider.to_string(),
                    o.pool.to_string(),
                    o.region.to_string(),
                    o.gpus.to_string(),
                    o.gpus_sold.to_string(),
                    format_timestamp(o.opens_at_s),
                    format_timestamp(o.closes_at_s),
                    o.reserve_fen_per_gpu_hour.to_string(),
                    o.state_at(now).as_str().to_owned(),
                ]);
            }
            Ok(Reply::new(to_json(&offers), t.to_string()))
        }
        MarketCommand::Withdraw { offer } => {
            let id = OfferId::parse(&offer).context("offer")?;
            service.withdraw_offer(actor, id)?;
            Ok(Reply::new(to_json(service.offer(id)?), format!("{id} withdrawn")))
        }
        MarketCommand::Clear => {
            let (round, clearing) = service.run_clearing(actor)?;
            let json = serde_json::json!({ "round": to_json(&round), "clearing": to_json(&clearing) });
            let text = format!(
                "round first: {} placed, {} refused, {} still waiting\n{}",
                round.placed.len(),
                round.refused.len(),
                round.still_waiting,
                clearing_text(&clearing)
            );
            Ok(Reply::new(json, text))
        }
        MarketCommand::Clearings => {
            let clearings: Vec<Clearing> = service.clearings().cloned().collect();
            let text = if clearings.is_empty() {
                "no clearing yet".to_owned()
            } else {
                clearings.iter().map(clearing_text).collect::<Vec<_>>().join("\n")
            };
            Ok(Reply::new(to_json(&clearings), text))
        }
    })
}
