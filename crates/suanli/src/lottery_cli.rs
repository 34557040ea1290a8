//! `suanli lottery`: commit a round's seed, draw it, and redo every round of a programme from the
//! audit log alone (`verify`), as anyone holding a copy of the log can.

use std::process::ExitCode;

use clap::Subcommand;
use suanli_service::calendar::{format_timestamp, parse_timestamp};
use suanli_service::event::Event;
use suanli_service::lottery::{check_round, rounds_from_events, seed_sha256};

use crate::Common;
use crate::service_cli::{Reply, run};

#[derive(Subcommand)]
pub enum LotteryCommand {
    /// Commit a round: the SHA-256 of a seed you keep secret until the draw.
    Commit {
        /// A programme's id or key.
        program: String,
        /// The seed's SHA-256 in hex (`printf %s SEED | sha256sum`); or give --seed to hash it here.
        #[arg(long, required_unless_present = "seed", conflicts_with = "seed")]
        seed_sha256: Option<String>,
        /// The seed itself, hashed here and not stored.
        #[arg(long)]
        seed: Option<String>,
        /// When the round closes (RFC 3339): applications submitted before it take part.
        #[arg(long)]
        closes_at: String,
    },
    /// Reveal the seed after the round closed and draw.
    Draw {
        /// A programme's id or key.
        program: String,
        /// The seed whose SHA-256 was committed.
        #[arg(long)]
        seed: String,
    },
    /// Redo every round of a programme from the audit log: the commitment before the reveal, the
    /// seed against it, the draw from the seed.
    Verify {
        /// A programme's id or key.
        program: String,
    },
}

pub fn lottery(common: &Common, command: LotteryCommand) -> anyhow::Result<ExitCode> {
    match command {
        LotteryCommand::Commit { program, seed_sha256: hash, seed, closes_at } => run(common, |service, actor| {
            let id = service.find_program(&program)?;
            let closes = parse_timestamp(&closes_at)
                .ok_or_else(|| anyhow::anyhow!("--closes-at: {closes_at:?} must be an RFC 3339 time"))?;
            let hash = hash.unwrap_or_else(|| seed_sha256(seed.as_deref().unwrap_or_default()));
            let round = service.commit_lottery(actor, id, &hash, closes)?;
            let text =
                format!("{id} round {round}: seed SHA-256 {hash} committed; closes {}", format_timestamp(closes));
            Ok(Reply::new(serde_json::json!({ "program": id, "round": round, "seed_sha256": hash }), text))
        }),
        LotteryCommand::Draw { program, seed } => run(common, |service, actor| {
            let id = service.find_program(&program)?;
            let round = service.draw_lottery(actor, id, &seed)?;
            let drawn: Vec<String> = round.drawn.iter().map(ToString::to_string).collect();
            let text = format!(
                "{id} round {}: {} of {} drawn ({}); the others are the control group",
                round.round,
                round.drawn.len(),
                round.participants.len(),
                drawn.join(", ")
            );
            Ok(Reply::new(serde_json::to_value(&round)?, text))
        }),
        LotteryCommand::Verify { program } => run(common, |service, _| {
            let id = service.find_program(&program)?;
            let mut reader = service.log_reader()?;
            let mut events = Vec::new();
            let mut after = 0;
            loop {
                let (page, _) = reader.page(after, suanli_store::LOG_PAGE_ENTRIES_MAX)?;
                let Some(last) = page.last() else { break };
                after = last.sequence;
                for entry in page.iter().filter(|e| e.action.starts_with("lottery.") && e.object == id.to_string()) {
                    let event = Event::from_body(&entry.body).map_err(anyhow::Error::msg)?;
                    events.push((entry.time_s, event));
                }
            }
            let rounds = rounds_from_events(events.iter().map(|(t, e)| (*t, e)));
            let mut lines = Vec::new();
            let mut failed = false;
            for round in &rounds {
                match (round.drawn_at_s, check_round(round)) {
                    (None, _) => lines.push(format!("round {}: committed, not drawn yet", round.round)),
                    (Some(_), Ok(())) => lines.push(format!(
                        "round {}: the seed matches the commitment made before; the draw redone gives the same {} of {}",
                        round.round,
                        round.drawn.len(),
                        round.participants.len()
                    )),
                    (Some(_), Err(problem)) => {
                        failed = true;
                        lines.push(problem);
                    }
                }
            }
            if rounds.is_empty() {
                lines.push(format!("{id} has no lottery round in the log"));
            }
            anyhow::ensure!(!failed, "{}", lines.join("\n"));
            Ok(Reply::new(serde_json::json!({ "program": id, "rounds": rounds, "verified": true }), lines.join("\n")))
        }),
    }
}
