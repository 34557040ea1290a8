//! A verifiable lottery for an oversubscribed round (`allocation = "lottery"`).
//!
//! The authority commits to a seed by its SHA-256 before the round closes (`lottery.committed`
//! in the audit log). After the round closes, it reveals the seed; the service checks it against
//! the commitment, takes the eligible applications submitted before the close (each with the
//! amount it asks), and ranks them by `SHA-256("suanli-lottery-v1\0" ‖ seed ‖ "\0" ‖ id)`,
//! smallest first. In that order each is drawn if its amount fits in the budget still left;
//! the rest are not drawn (`lottery.drawn` records the seed, the participants, the budget and
//! the drawn). Those drawn are approved and the others rejected in the same commit: they are
//! the control group. Anyone holding the log redoes the draw with [`check_round`]: the seed's
//! hash must be the one committed before, and the draw must come out the same.

use sha2::{Digest, Sha256};
use suanli_domain::{ApplicationId, Fen};

use crate::access::hex;
use crate::model::LotteryRound;

/// The hex SHA-256 of a seed's UTF-8 bytes: what is committed.
pub fn seed_sha256(seed: &str) -> String {
    hex(&Sha256::digest(seed.as_bytes()))
}

fn rank(seed: &str, application: ApplicationId) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"suanli-lottery-v1\0");
    hasher.update(seed.as_bytes());
    hasher.update(b"\0");
    hasher.update(application.to_string().as_bytes());
    hasher.finalize().into()
}

/// The draw: participants in the seed's order, each drawn if its amount fits in what is left of
/// `budget`. Answers the drawn, in the order drawn.
pub fn draw(seed: &str, participants: &[(ApplicationId, Fen)], budget: Fen) -> Vec<ApplicationId> {
    let mut ranked: Vec<([u8; 32], ApplicationId, Fen)> =
        participants.iter().map(|(id, amount)| (rank(seed, *id), *id, *amount)).collect();
    ranked.sort_unstable();
    let mut left = budget.fen();
    let mut drawn = Vec::new();
    for (_, id, amount) in ranked {
        if amount.fen() <= left {
            left -= amount.fen();
            drawn.push(id);
        }
    }
    drawn
}

/// Redoes a drawn round from what the log holds: the revealed seed against the commitment, and
/// the draw against the one recorded. `Ok` for a round not drawn yet.
pub fn check_round(round: &LotteryRound) -> Result<(), String> {
    let (Some(seed), Some(budget)) = (&round.seed, round.budget_fen) else { return Ok(()) };
    if seed_sha256(seed) != round.seed_sha256 {
        return Err(format!(
            "round {}: the seed revealed hashes to {}, not the {} committed",
            round.round,
            seed_sha256(seed),
            round.seed_sha256
        ));
    }
    let again = draw(seed, &round.participants, budget);
    if again != round.drawn {
        return Err(format!(
            "round {}: the draw redone from the seed gives {again:?}, the log says {:?}",
            round.round, round.drawn
        ));
    }
    Ok(())
}

/// Rebuilds a programme's lottery rounds from its log's events, in order.
pub fn rounds_from_events<'a>(events: impl IntoIterator<Item = (i64, &'a crate::event::Event)>) -> Vec<LotteryRound> {
    use crate::event::Event;
    let mut rounds: Vec<LotteryRound> = Vec::new();
    for (time_s, event) in events {
        match event {
            Event::LotteryCommitted { round, seed_sha256, closes_at_s, .. } => {
                rounds.push(LotteryRound::committed(*round, seed_sha256, time_s, *closes_at_s));
            }
            Event::LotteryDrawn { round, seed, participants, budget_fen, drawn, .. } => {
                if let Some(open) = rounds.iter_mut().find(|r| r.round == *round) {
                    open.record_draw(time_s, seed, participants, *budget_fen, drawn);
                }
            }
            _ => {}
        }
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(n: u64) -> ApplicationId {
        ApplicationId::new(n).unwrap()
    }

    #[test]
    fn the_draw_follows_the_seed_and_the_budget() {
        let participants: Vec<(ApplicationId, Fen)> = (1..=6).map(|n| (app(n), Fen::new(100))).collect();
        let drawn = draw("seed-a", &participants, Fen::new(300));
        assert_eq!(drawn.len(), 3);
        assert_eq!(drawn, draw("seed-a", &participants, Fen::new(300)), "the same seed, the same draw");
        assert_ne!(drawn, draw("seed-b", &participants, Fen::new(300)), "another seed, another draw");
        // Order of the participants does not matter, only the seed.
        let mut reversed = participants.clone();
        reversed.reverse();
        assert_eq!(drawn, draw("seed-a", &reversed, Fen::new(300)));
        // A large request that does not fit is passed over; smaller ones after it still fit.
        let mixed = [(app(1), Fen::new(250)), (app(2), Fen::new(100)), (app(3), Fen::new(100))];
        let drawn = draw("x", &mixed, Fen::new(200));
        assert!(drawn.iter().all(|id| *id != app(1)) && drawn.len() == 2, "{drawn:?}");
    }

    #[test]
    fn a_round_is_checked_against_its_commitment_and_its_draw() {
        let participants: Vec<(ApplicationId, Fen)> = (1..=4).map(|n| (app(n), Fen::new(100))).collect();
        let mut round = LotteryRound {
            round: 1,
            seed_sha256: seed_sha256("s3cret"),
            committed_at_s: 0,
            closes_at_s: 10,
            drawn_at_s: Some(20),
            seed: Some("s3cret".into()),
            drawn: draw("s3cret", &participants, Fen::new(200)),
            participants,
            budget_fen: Some(Fen::new(200)),
        };
        assert_eq!(check_round(&round), Ok(()));
        round.drawn.reverse();
        assert!(check_round(&round).unwrap_err().contains("the draw redone"));
        round.seed = Some("other".into());
        assert!(check_round(&round).unwrap_err().contains("not the"));
    }
}
