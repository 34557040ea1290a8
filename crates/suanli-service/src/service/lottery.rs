//! Lottery rounds of a programme that allocates by lottery (`crate::lottery` has the draw and
//! how anyone redoes it).

use super::*;
use crate::lottery::{draw, seed_sha256};
use crate::model::{Allocation, LotteryRound};

/// The longest seed taken.
const SEED_CHARS_MAX: usize = 200;

impl Service {
    /// Commits a round's seed by its SHA-256 (64 hex characters) before the round closes at
    /// `closes_at_s`: applications submitted before then take part, and the draw comes after.
    pub fn commit_lottery(
        &mut self,
        actor: &Actor,
        program: ProgramId,
        seed_sha256_hex: &str,
        closes_at_s: i64,
    ) -> Result<u32> {
        let seed_sha256_hex = &seed_sha256_hex.trim().to_ascii_lowercase();
        if seed_sha256_hex.len() != 64
            || !seed_sha256_hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ServiceError::field("seed_sha256", "must be 64 hex characters (a SHA-256)"));
        }
        let p = self.program(program)?;
        if p.terms.allocation != Allocation::Lottery {
            return Err(ServiceError::new(
                ErrorCode::LotteryState,
                format!(
                    "program: {program} allocates first come, first served; its file would say allocation = \"lottery\""
                ),
            ));
        }
        if p.state != ProgramState::Open {
            return Err(ServiceError::new(
                ErrorCode::ProgramState,
                format!("program: {program} is {:?}; a round is committed while it is open", p.state),
            ));
        }
        if let Some(open) = p.lotteries.iter().find(|r| r.drawn_at_s.is_none()) {
            return Err(ServiceError::new(
                ErrorCode::LotteryState,
                format!("program: round {} of {program} is committed and not drawn yet", open.round),
            ));
        }
        let now = self.now_s();
        if closes_at_s <= now {
            return Err(ServiceError::field(
                "closes_at",
                format!("{} has passed: a seed is committed before its round closes", format_timestamp(closes_at_s)),
            ));
        }
        let round = p.lotteries.len() as u32 + 1;
        let mut change = self.begin();
        let event = Event::LotteryCommitted { program, round, seed_sha256: seed_sha256_hex.to_owned(), closes_at_s };
        self.record(&mut change, event, now);
        self.commit(actor, now, change)?;
        Ok(round)
    }

    /// Reveals the open round's seed and draws: checked against the commitment, the eligible
    /// applications submitted before the close ranked by the seed, those that fit in the budget
    /// approved for the amount they asked, the others rejected as the control group, in one
    /// commit.
    pub fn draw_lottery(&mut self, actor: &Actor, program: ProgramId, seed: &str) -> Result<LotteryRound> {
        if seed.is_empty() || seed.chars().count() > SEED_CHARS_MAX || seed.chars().any(char::is_control) {
            return Err(ServiceError::field(
                "seed",
                format!("must be 1 to {SEED_CHARS_MAX} characters, none a control"),
            ));
        }
        let p = self.program(program)?.clone();
        let Some(open) = p.lotteries.iter().find(|r| r.drawn_at_s.is_none()).cloned() else {
            return Err(ServiceError::new(
                ErrorCode::LotteryState,
                format!("program: {program} has no committed round to draw; commit a seed first"),
            ));
        };
        let now = self.now_s();
        if now < open.closes_at_s {
            return Err(ServiceError::new(
                ErrorCode::LotteryState,
                format!("round {} closes at {}; it is drawn after", open.round, format_timestamp(open.closes_at_s)),
            ));
        }
        if seed_sha256(seed) != open.seed_sha256 {
            return Err(ServiceError::new(
                ErrorCode::LotterySeedMismatch,
                format!("seed: its SHA-256 is not the {} committed for round {}", open.seed_sha256, open.round),
            ));
        }
        let participants: Vec<(ApplicationId, Fen)> = self
            .submitted_applications(program)
            .filter(|a| a.submitted_at_s.is_some_and(|at| at < open.closes_at_s))
            .filter(|a| self.blocked_reason(a, &p).is_none())
            .map(|a| (a.id, a.requested_fen))
            .collect();
        let budget = p.budget_remaining_fen;
        let drawn = draw(seed, &participants, budget);
        let mut change = self.begin();
        let event = Event::LotteryDrawn {
            program,
            round: open.round,
            seed: seed.to_owned(),
            participants: participants.clone(),
            budget_fen: budget,
            drawn: drawn.clone(),
        };
        self.record(&mut change, event, now);
        for id in &drawn {
            let application = self.application(*id)?.clone();
            let current = self.program(program)?.clone();
            let amount = application.requested_fen;
            if let Err(error) = self.check_approval(&application, &current, amount, None) {
                self.forget(&change);
                return Err(error);
            }
            self.issue_into(&mut change, &application, &current, amount, None, now);
        }
        for (id, _) in participants.iter().filter(|(id, _)| !drawn.contains(id)) {
            let reason = format!("not drawn in lottery round {} of {program}: in its control group", open.round);
            self.record(&mut change, Event::ApplicationRejected { application: *id, reason }, now);
        }
        self.commit(actor, now, change)?;
        Ok(self.program(program)?.lotteries.last().cloned().expect("the round just drawn"))
    }
}
