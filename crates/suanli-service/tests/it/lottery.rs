//! A programme that allocates by lottery: the seed committed before the round closes, refused
//! when revealed wrong, the draw redone from the audit log alone, and the control group's
//! purchases set against those drawn in the outcome report.

use suanli_domain::{ApplicantKind, Fen};
use suanli_service::event::Event;
use suanli_service::lottery::{check_round, draw, rounds_from_events, seed_sha256};
use suanli_service::model::{ApplicationState, OperatorKind, Purpose, UsageInput};
use suanli_service::{ErrorCode, OrderInput};

use crate::{SHANGHAI_LIKE, World, op};

const SEED: &str = "drawn in public on 2026-03-02";

#[test]
fn a_lottery_round_is_committed_drawn_and_redone_from_the_log() {
    let mut w = World::start();
    let source = SHANGHAI_LIKE.replace("voucher_validity_days", "allocation = \"lottery\"\nvoucher_validity_days");
    let program = w.program(&source);
    // Ten applications of ¥1,000,000 each for a ¥5,000,000 budget: five can be drawn.
    let mut applications = Vec::new();
    for n in 1..=10 {
        let enterprise = w.enterprise(n, 9_000_000, ApplicantKind::Sme, &[]);
        let amount = Fen::from_yuan(1_000_000).unwrap();
        let app = w.service.create_application(&op(), enterprise, program, amount, "").unwrap();
        w.service.submit_application(&op(), app).unwrap();
        applications.push((app, enterprise));
    }
    let refused = w.service.approve_application(&op(), applications[0].0, Fen::from_yuan(1).unwrap()).unwrap_err();
    assert_eq!(refused.code, ErrorCode::ApplicationState, "{refused}");
    assert_eq!(w.service.draw_lottery(&op(), program, SEED).unwrap_err().code, ErrorCode::LotteryState);

    let now = w.service.now_s();
    let closes = now + 86_400;
    assert_eq!(w.service.commit_lottery(&op(), program, &seed_sha256(SEED), closes).unwrap(), 1);
    let again = w.service.commit_lottery(&op(), program, &seed_sha256("x"), closes).unwrap_err();
    assert_eq!(again.code, ErrorCode::LotteryState, "one round open at a time");
    let bad = w.service.commit_lottery(&op(), program, "ABC", closes).unwrap_err();
    assert!(bad.message.starts_with("seed_sha256"), "{bad}");
    let early = w.service.draw_lottery(&op(), program, SEED).unwrap_err();
    assert!(early.code == ErrorCode::LotteryState && early.message.contains("closes at"), "{early}");

    w.clock.set(closes);
    let before = w.fingerprint();
    let wrong = w.service.draw_lottery(&op(), program, "another seed").unwrap_err();
    assert_eq!(wrong.code, ErrorCode::LotterySeedMismatch, "{wrong}");
    assert_eq!(w.fingerprint(), before, "a refused reveal changes nothing");

    let round = w.service.draw_lottery(&op(), program, SEED).unwrap();
    assert_eq!((round.participants.len(), round.drawn.len()), (10, 5));
    assert_eq!(round.drawn, draw(SEED, &round.participants, Fen::from_yuan(5_000_000).unwrap()));
    let state = w.service.state();
    for (app, _) in &applications {
        let a = &state.applications[app];
        match round.drawn.contains(app) {
            true => assert_eq!(
                (a.state, a.approved_fen),
                (ApplicationState::Approved, Some(Fen::from_yuan(1_000_000).unwrap()))
            ),
            false => {
                assert_eq!(a.state, ApplicationState::Rejected);
                assert!(a.reason.as_deref().unwrap_or("").contains("control group"), "{a:?}");
            }
        }
    }
    assert_eq!(state.programs[&program].budget_remaining_fen, Fen::ZERO);

    // Anyone with the log redoes the draw: the commitment came first, the seed matches it, and
    // the draw from the seed is the one made.
    let mut reader = w.service.log_reader().unwrap();
    let (entries, _) = reader.page(0, 1_000).unwrap();
    let events: Vec<(i64, Event)> = entries.iter().map(|e| (e.time_s, Event::from_body(&e.body).unwrap())).collect();
    let committed_at = entries.iter().position(|e| e.action == "lottery.committed").unwrap();
    let drawn_at = entries.iter().position(|e| e.action == "lottery.drawn").unwrap();
    assert!(committed_at < drawn_at);
    let rounds = rounds_from_events(events.iter().map(|(t, e)| (*t, e)));
    assert_eq!(rounds, vec![round.clone()]);
    assert_eq!(check_round(&rounds[0]), Ok(()));
    let mut forged = rounds[0].clone();
    forged.seed = Some("another seed".into());
    assert!(check_round(&forged).is_err(), "a reveal with another seed is refused by the check too");

    // Those drawn buy compute (1 GPU for 2 hours at ¥10: ¥20 each); the control group buys
    // nothing on the platform. Additionality: 2,000 fen per enterprise, with no spread.
    let (provider, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    for app in &round.drawn {
        let start = w.service.now_s();
        let a = w.service.state().applications[app].clone();
        let input = OrderInput {
            enterprise: a.enterprise,
            voucher: a.voucher.unwrap(),
            pool,
            chip: None,
            gpu_count: 1,
            hours: 10,
            purpose: Purpose::Training,
        };
        let order = w.service.place_order(&op(), input).unwrap();
        w.service.start_order(&op(), order).unwrap();
        w.clock.set(start + 3 * 3_600);
        let usage: Vec<UsageInput> = (0..2)
            .map(|h| UsageInput {
                id: format!("{order}-{h}"),
                order,
                gpu_seconds: 3_600,
                period_start_s: start + h * 3_600,
                period_end_s: start + (h + 1) * 3_600,
            })
            .collect();
        let answers = w.service.record_usage(&op(), provider, &usage).unwrap();
        assert!(
            answers.iter().all(|a| matches!(a, suanli_service::model::UsageOutcome::Recorded { .. })),
            "{answers:?}"
        );
    }
    let outcome = w.service.outcome(program).unwrap();
    let r = &outcome.lottery[0];
    assert_eq!((r.participants, r.drawn, r.not_drawn, r.verified), (10, 5, 5, true));
    let bought = r.bought.as_ref().unwrap();
    assert_eq!((bought.treated_mean, bought.control_mean, bought.estimate), (2_000.0, 0.0, 2_000.0));
    assert_eq!((bought.low, bought.high, bought.df), (Some(2_000.0), Some(2_000.0), Some(8.0)));
}
