//! Work the server does on its own, on a timer: the expiry sweep (vouchers whose validity has
//! ended expire and their balances return to the budget) and the monthly statements (every
//! provider's and programme's ended month with usage gets its statement, for the authority to
//! approve). Both go through the writer as the actor `server`, so each lands in the audit log like
//! any other command, and each run is logged.

use std::future::Future;
use std::time::Duration;

use suanli_service::{Actor, ServiceError, SweepReport};

use crate::writer::{Refused, Writer};

/// What one run of the schedule did.
#[derive(Debug)]
pub struct Ran {
    pub sweep: Result<SweepReport, ServiceError>,
    pub statements: Result<Vec<suanli_domain::StatementId>, ServiceError>,
}

/// Runs the scheduled work once, through the writer: the sweep, then the statements (each on its
/// own, so one failing does not stop the other).
pub async fn run_once(writer: &Writer) -> Result<Ran, Refused> {
    let sweep = writer.call(|service| service.sweep(&Actor::server())).await?;
    let statements = writer.call(|service| service.issue_due_statements(&Actor::server())).await?;
    Ok(Ran { sweep, statements })
}

/// Runs the scheduled work at start and then every `every`, until `stopped` resolves or the
/// writer stops. A run the full queue refuses is logged and tried at the next tick.
pub async fn run(writer: Writer, every: Duration, stopped: impl Future<Output = ()>) {
    on_ticks(every, stopped, || async {
        match run_once(&writer).await {
            Ok(ran) => log(&ran),
            Err(Refused::Overloaded) => {
                tracing::warn!(next_in_s = every.as_secs(), "scheduled work deferred: the writer's queue is full")
            }
            Err(Refused::Stopped) => return false,
        }
        true
    })
    .await
}

/// Runs `work` at once and then every `every`, until `stopped` resolves or `work` answers false
/// (the writer stopped). A tick missed while `work` ran is not made up.
async fn on_ticks<F: Future<Output = bool>>(
    every: Duration,
    stopped: impl Future<Output = ()>,
    mut work: impl FnMut() -> F,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        if !work().await {
            return;
        }
    }
}

fn log(ran: &Ran) {
    let failed = |what: &str, error: &ServiceError| {
        tracing::warn!(
            code = error.code.as_str(),
            error = %error.message,
            "scheduled {what} failed; it runs again at the next tick"
        );
    };
    match &ran.sweep {
        Ok(report) => tracing::info!(
            vouchers_expired = report.expired.len(),
            returned_fen = report.returned_fen.fen(),
            "scheduled expiry sweep"
        ),
        Err(error) => failed("expiry sweep", error),
    }
    match &ran.statements {
        Ok(issued) => tracing::info!(
            statements_issued = issued.len(),
            statements = %issued.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            "scheduled statements"
        ),
        Err(error) => failed("statements", error),
    }
}

/// The scheduling loop: a round over every waiting order request every `window`, through the
/// writer as the actor `server`, until `stopped` resolves or the writer stops. A round that
/// decided something is logged with its figures.
pub async fn run_rounds(writer: Writer, window: Duration, stopped: impl Future<Output = ()>) {
    on_ticks(window, stopped, || async {
        match writer.call(|service| service.run_round(&Actor::server())).await {
            Ok(Ok(report)) if report.round > 0 => tracing::info!(
                round = report.round,
                placed = report.placed.len(),
                refused = report.refused.len(),
                still_waiting = report.still_waiting,
                gap_bp = report.gap_bp,
                solve_ms = report.solve_ms,
                list_cost_fen = report.list_cost_fen.fen(),
                underused_credit_fen = report.underused_credit_fen,
                domestic_credit_fen = report.domestic_credit_fen,
                egress_fen = report.egress_fen,
                "scheduling round"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(
                code = error.code.as_str(),
                error = %error.message,
                "scheduling round failed; it runs again at the next window"
            ),
            Err(Refused::Overloaded) => {
                tracing::warn!("scheduling round deferred: the writer's queue is full")
            }
            Err(Refused::Stopped) => return false,
        }
        true
    })
    .await
}

/// The market between hub nodes: a clearing every `interval` (a round of the scheduling loop,
/// then the bids it left waiting matched to the open offers), through the writer as the actor
/// `server`, until `stopped` resolves or the writer stops. A clearing that ran is logged with its
/// figures.
pub async fn run_clearings(writer: Writer, interval: Duration, stopped: impl Future<Output = ()>) {
    on_ticks(interval, stopped, || async {
        match writer.call(|service| service.run_clearing(&Actor::server())).await {
            Ok(Ok((_, clearing))) if clearing.clearing > 0 => tracing::info!(
                clearing = clearing.clearing,
                bids = clearing.bids,
                offers = clearing.prices.len(),
                trades = clearing.trades.len(),
                welfare_fen = clearing.welfare_fen,
                lp_welfare_fen = clearing.lp_welfare_fen,
                gap_bp = clearing.gap_bp,
                "market cleared"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(
                code = error.code.as_str(),
                error = %error.message,
                "clearing failed; it runs again at the next interval"
            ),
            Err(Refused::Overloaded) => tracing::warn!("clearing deferred: the writer's queue is full"),
            Err(Refused::Stopped) => return false,
        }
        true
    })
    .await
}
