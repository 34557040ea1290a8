//! One test per rule: each rejection with its code and proof that no money moved, and each
//! two-phase, chain and idempotency behaviour.

use suanli_ledger::{
    AccountFlags, BatchError, Event, Ledger, NewAccount, Outcome, PendingStatus, Receipt, Reject, Transfer,
    TransferFlags,
};

use crate::*;

/// Applies `t` to a funded ledger (with one open hold of 300 fen, id 200, and one posted hold,
/// id 201) and asserts it is refused with `expect` and that no account or transfer changed.
fn check_rejected(t: Transfer, expect: Reject) {
    let mut ledger = funded();
    assert!(matches!(apply_one(&mut ledger, 2_000, pending(200, 2, 3, 300, 0)), Outcome::Ok(_)));
    assert!(matches!(apply_one(&mut ledger, 2_000, pending(201, 2, 3, 100, 0)), Outcome::Ok(_)));
    assert!(matches!(apply_one(&mut ledger, 2_000, post(202, 201, 0)), Outcome::Ok(_)));
    let before = money(&ledger);
    let outcome = apply_one(&mut ledger, 3_000, t);
    assert_eq!(outcome, Outcome::Rejected(expect), "{t:?}");
    assert_eq!(money(&ledger), before, "a rejected transfer changed the money: {t:?}");
    ledger.check_invariants().unwrap();
}

#[test]
fn each_transfer_rejection_changes_nothing() {
    use Reject as R;
    let t = |amount| transfer(300, 2, 3, amount);
    check_rejected(t(601), R::ExceedsCredits); // 1,000 funded, 300 + 100 held or spent
    check_rejected(transfer(300, 3, 1, 1_001), R::ExceedsDebits);
    check_rejected(transfer(300, 9, 3, 1), R::DebitAccountNotFound);
    check_rejected(transfer(300, 2, 9, 1), R::CreditAccountNotFound);
    check_rejected(t(0), R::AmountMustBePositive);
    check_rejected(t(-5), R::AmountMustBePositive);
    check_rejected(transfer(0, 2, 3, 1), R::IdMustNotBeZero);
    check_rejected(transfer(u128::MAX, 2, 3, 1), R::IdMustNotBeIntMax);
    check_rejected(transfer(300, 0, 3, 1), R::DebitAccountIdMustNotBeZero);
    check_rejected(transfer(300, 2, 0, 1), R::CreditAccountIdMustNotBeZero);
    check_rejected(transfer(300, 2, 2, 1), R::AccountsMustBeDifferent);
    check_rejected(Transfer { ledger: 0, ..t(1) }, R::LedgerMustNotBeZero);
    check_rejected(Transfer { code: 0, ..t(1) }, R::CodeMustNotBeZero);
    check_rejected(Transfer { ledger: 840, ..t(1) }, R::TransferMustHaveTheSameLedgerAsAccounts);
    check_rejected(Transfer { timestamp: 5, ..t(1) }, R::TimestampMustBeZero);
    check_rejected(Transfer { flags: TransferFlags::from_bits(1 << 9), ..t(1) }, R::ReservedFlag);
    check_rejected(Transfer { timeout_s: 5, ..t(1) }, R::TimeoutReservedForPendingTransfer);
    check_rejected(Transfer { pending_id: 200, ..t(1) }, R::PendingIdMustBeZero);
    check_rejected(
        Transfer { flags: TransferFlags::PENDING.union(TransferFlags::POST_PENDING), ..t(1) },
        R::FlagsAreMutuallyExclusive,
    );
    // Overflow: a sink that already holds close to i64::MAX cannot take more.
    check_rejected(transfer(300, 1, 3, i64::MAX), R::OverflowsDebitsPosted);
    check_rejected(transfer(300, 3, 2, i64::MAX), R::OverflowsCreditsPosted);
    check_rejected(pending(300, 2, 1, i64::MAX, 0), R::OverflowsDebitsPending);
    check_rejected(pending(300, 1, 3, i64::MAX, 0), R::OverflowsCreditsPending);
    check_rejected(pending(300, 3, 2, i64::MAX, 0), R::OverflowsCredits);
    // Post and void rules.
    check_rejected(post(300, 0, 0), R::PendingIdMustNotBeZero);
    check_rejected(post(300, u128::MAX, 0), R::PendingIdMustNotBeIntMax);
    check_rejected(post(300, 300, 0), R::PendingIdMustBeDifferent);
    check_rejected(post(300, 999, 0), R::PendingTransferNotFound);
    check_rejected(post(300, 100, 0), R::PendingTransferNotPending);
    check_rejected(post(300, 200, 301), R::ExceedsPendingTransferAmount);
    check_rejected(post(300, 200, -1), R::AmountMustNotBeNegative);
    check_rejected(post(300, 201, 0), R::PendingTransferAlreadyPosted);
    check_rejected(Transfer { amount: 299, ..void(300, 200) }, R::PendingTransferHasDifferentAmount);
    check_rejected(Transfer { debit_account_id: 1, ..post(300, 200, 0) }, R::PendingTransferHasDifferentDebitAccountId);
    check_rejected(
        Transfer { credit_account_id: 1, ..post(300, 200, 0) },
        R::PendingTransferHasDifferentCreditAccountId,
    );
    check_rejected(Transfer { ledger: 840, ..post(300, 200, 0) }, R::PendingTransferHasDifferentLedger);
    check_rejected(Transfer { code: 7, ..post(300, 200, 0) }, R::PendingTransferHasDifferentCode);
    check_rejected(Transfer { timeout_s: 1, ..post(300, 200, 0) }, R::TimeoutReservedForPendingTransfer);
    check_rejected(
        Transfer { flags: TransferFlags::POST_PENDING.union(TransferFlags::VOID_PENDING), ..post(300, 200, 0) },
        R::FlagsAreMutuallyExclusive,
    );
    // Re-using an id with different fields.
    check_rejected(Transfer { id: 100, ..t(2) }, R::ExistsWithDifferentFields);
}

#[test]
fn overflow_of_total_debits_and_timeout_are_refused() {
    let mut ledger = Ledger::new();
    ledger.apply(1, &[account(1, AccountFlags::empty()), account(2, AccountFlags::empty())]).unwrap();
    assert!(matches!(apply_one(&mut ledger, 2, pending(10, 1, 2, i64::MAX, 0)), Outcome::Ok(_)));
    let before = money(&ledger);
    // Posted debits alone could take it, but pending plus posted would pass i64::MAX.
    assert_eq!(rejected(apply_one(&mut ledger, 3, transfer(11, 1, 2, 1))), Reject::OverflowsDebits);
    assert_eq!(money(&ledger), before);
    let mut late = Ledger::new();
    late.apply(u64::MAX - 10_000, &[account(1, AccountFlags::empty()), account(2, AccountFlags::empty())]).unwrap();
    assert_eq!(rejected(apply_one(&mut late, 0, pending(12, 1, 2, 1, 60))), Reject::OverflowsTimeout);
}

#[test]
fn each_account_rejection_changes_nothing() {
    use Reject as R;
    let check = |new: NewAccount, expect: Reject| {
        let mut ledger = funded();
        let before = money(&ledger);
        let outcome = ledger.apply(2_000, &[Event::CreateAccount(new)]).unwrap().outcomes[0];
        assert_eq!(outcome, Outcome::Rejected(expect), "{new:?}");
        assert_eq!(money(&ledger), before);
    };
    let base = NewAccount { id: 50, ledger: LEDGER, code: CODE, flags: AccountFlags::empty(), user_data: 0 };
    check(NewAccount { id: 0, ..base }, R::IdMustNotBeZero);
    check(NewAccount { id: u128::MAX, ..base }, R::IdMustNotBeIntMax);
    check(NewAccount { ledger: 0, ..base }, R::LedgerMustNotBeZero);
    check(NewAccount { code: 0, ..base }, R::CodeMustNotBeZero);
    check(NewAccount { flags: AccountFlags::from_bits(1 << 7), ..base }, R::ReservedFlag);
    check(
        NewAccount {
            flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS.union(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
            ..base
        },
        R::FlagsAreMutuallyExclusive,
    );
    check(NewAccount { id: 2, code: 9, ..base }, R::ExistsWithDifferentFields);
}

#[test]
fn partial_post_releases_the_rest() {
    let mut ledger = funded();
    assert!(matches!(apply_one(&mut ledger, 2_000, pending(200, 2, 3, 600, 0)), Outcome::Ok(_)));
    assert_eq!(balances(&ledger, 2), [600, 0, 0, 1_000]);
    assert_eq!(balances(&ledger, 3), [0, 0, 600, 0]);
    // Only 400 may now be spent elsewhere.
    assert_eq!(rejected(apply_one(&mut ledger, 2_100, transfer(201, 2, 3, 401))), Reject::ExceedsCredits);
    let outcome = apply_one(&mut ledger, 2_200, post(202, 200, 250));
    assert!(matches!(outcome, Outcome::Ok(Receipt { amount: 250, .. })), "{outcome:?}");
    assert_eq!(balances(&ledger, 2), [0, 250, 0, 1_000]);
    assert_eq!(balances(&ledger, 3), [0, 0, 0, 250]);
    assert_eq!(ledger.pending_status(200), Some(PendingStatus::Posted));
    let stored = ledger.transfer(202).unwrap();
    assert_eq!((stored.debit_account_id, stored.credit_account_id, stored.amount), (2, 3, 250));
    assert_eq!(rejected(apply_one(&mut ledger, 2_300, void(203, 200))), Reject::PendingTransferAlreadyPosted);
    ledger.check_invariants().unwrap();
}

#[test]
fn void_releases_everything_and_cannot_repeat() {
    let mut ledger = funded();
    apply_one(&mut ledger, 2_000, pending(200, 2, 3, 600, 0));
    assert!(matches!(apply_one(&mut ledger, 2_100, void(201, 200)), Outcome::Ok(Receipt { amount: 600, .. })));
    assert_eq!(balances(&ledger, 2), [0, 0, 0, 1_000]);
    assert_eq!(rejected(apply_one(&mut ledger, 2_200, post(202, 200, 0))), Reject::PendingTransferAlreadyVoided);
    assert_eq!(rejected(apply_one(&mut ledger, 2_200, void(203, 200))), Reject::PendingTransferAlreadyVoided);
}

#[test]
fn a_hold_times_out_at_its_instant_and_not_before() {
    let second = 1_000_000_000;
    let mut ledger = funded();
    let Outcome::Ok(receipt) = apply_one(&mut ledger, 10 * second, pending(200, 2, 3, 600, 60)) else { panic!() };
    ledger.apply(receipt.timestamp + 60 * second - 1, &[]).unwrap();
    assert_eq!(ledger.pending_status(200), Some(PendingStatus::Pending));
    assert_eq!(balances(&ledger, 2), [600, 0, 0, 1_000]);
    let result = ledger.apply(receipt.timestamp + 60 * second, &[]).unwrap();
    assert_eq!(result.changes.expired.len(), 1);
    assert_eq!(ledger.pending_status(200), Some(PendingStatus::Expired));
    assert_eq!(balances(&ledger, 2), [0, 0, 0, 1_000]);
    assert_eq!(rejected(apply_one(&mut ledger, 0, post(201, 200, 0))), Reject::PendingTransferExpired);
    ledger.check_invariants().unwrap();
}

#[test]
fn a_post_in_the_batch_that_crosses_the_timeout_is_refused() {
    let mut ledger = funded();
    let Outcome::Ok(receipt) = apply_one(&mut ledger, 0, pending(200, 2, 3, 600, 1)) else { panic!() };
    // The clock reading is just before expiry, so the sweep leaves it, but the post's own
    // timestamp (one later) is at the expiry instant.
    let events = [Event::CreateTransfer(transfer(201, 1, 3, 1)), Event::CreateTransfer(post(202, 200, 0))];
    let result = ledger.apply(receipt.timestamp + 1_000_000_000 - 1, &events).unwrap();
    assert_eq!(result.outcomes[1], Outcome::Rejected(Reject::PendingTransferExpired));
}

#[test]
fn a_linked_chain_applies_all_or_nothing() {
    let linked = |t: Transfer| Event::CreateTransfer(Transfer { flags: t.flags.union(TransferFlags::LINKED), ..t });
    let mut ledger = funded();
    let before = money(&ledger);
    let events = [
        linked(transfer(200, 2, 3, 500)),
        Event::CreateAccount(NewAccount {
            id: 4,
            ledger: LEDGER,
            code: CODE,
            flags: AccountFlags::LINKED,
            user_data: 0,
        }),
        linked(transfer(201, 3, 4, 100)),
        Event::CreateTransfer(transfer(202, 2, 3, 501)), // 500 + 501 > 1,000: fails, so all fail
        Event::CreateTransfer(transfer(203, 2, 3, 7)),   // a separate chain of one
    ];
    let outcomes = ledger.apply(2_000, &events).unwrap().outcomes;
    let codes: Vec<&str> = outcomes.iter().map(Outcome::code).collect();
    assert_eq!(codes, ["linked_event_failed", "linked_event_failed", "linked_event_failed", "exceeds_credits", "ok"]);
    let (accounts, transfers) = money(&ledger);
    assert_eq!(accounts.len(), before.0.len(), "the account created in the failed chain was undone");
    assert_eq!(transfers.len(), before.1.len() + 1);
    assert_eq!(balances(&ledger, 2), [0, 7, 0, 1_000]);
    // The failed link's own id is failed for good; the others may be retried.
    assert_eq!(ledger.failed(202).map(|f| f.reason), Some(Reject::ExceedsCredits));
    assert!(ledger.failed(200).is_none());
    assert!(matches!(apply_one(&mut ledger, 3_000, transfer(200, 2, 3, 500)), Outcome::Ok(_)));
    ledger.check_invariants().unwrap();
}

#[test]
fn a_chain_left_open_at_the_end_of_a_batch_fails() {
    let mut ledger = funded();
    let before = money(&ledger);
    let open = Transfer { flags: TransferFlags::LINKED, ..transfer(200, 2, 3, 5) };
    let outcomes = ledger
        .apply(2_000, &[Event::CreateTransfer(transfer(199, 2, 3, 1)).linked(), Event::CreateTransfer(open)])
        .unwrap()
        .outcomes;
    assert_eq!(outcomes[0], Outcome::Rejected(Reject::LinkedEventFailed));
    assert_eq!(outcomes[1], Outcome::Rejected(Reject::LinkedEventChainOpen));
    assert_eq!(money(&ledger), before);
}

trait Linked {
    fn linked(self) -> Event;
}
impl Linked for Event {
    fn linked(self) -> Event {
        match self {
            Event::CreateTransfer(t) => {
                Event::CreateTransfer(Transfer { flags: t.flags.union(TransferFlags::LINKED), ..t })
            }
            Event::CreateAccount(a) => {
                Event::CreateAccount(NewAccount { flags: a.flags.union(AccountFlags::LINKED), ..a })
            }
        }
    }
}

#[test]
fn retries_answer_the_first_outcome() {
    let mut ledger = funded();
    let first = apply_one(&mut ledger, 2_000, transfer(200, 2, 3, 40));
    let Outcome::Ok(receipt) = first else { panic!("{first:?}") };
    let before = money(&ledger);
    assert_eq!(apply_one(&mut ledger, 3_000, transfer(200, 2, 3, 40)), Outcome::Exists(receipt));
    assert_eq!(rejected(apply_one(&mut ledger, 3_000, transfer(200, 2, 3, 41))), Reject::ExistsWithDifferentFields);
    assert_eq!(money(&ledger), before);
    // An id that failed stays failed, whatever is sent under it later.
    assert_eq!(rejected(apply_one(&mut ledger, 3_000, transfer(201, 2, 3, 5_000))), Reject::ExceedsCredits);
    assert_eq!(rejected(apply_one(&mut ledger, 3_000, transfer(201, 2, 3, 1))), Reject::IdAlreadyFailed);
    assert!(ledger.transfer(201).is_none());
    // A malformed event changed nothing and depended on nothing: its id stays free.
    assert_eq!(rejected(apply_one(&mut ledger, 3_000, transfer(204, 2, 2, 1))), Reject::AccountsMustBeDifferent);
    assert!(ledger.failed(204).is_none());
    assert!(matches!(apply_one(&mut ledger, 3_000, transfer(204, 2, 3, 1)), Outcome::Ok(_)));
    // A post that named no amount is the same as one that names the amount it posted.
    apply_one(&mut ledger, 3_000, pending(202, 2, 3, 30, 0));
    let Outcome::Ok(posted) = apply_one(&mut ledger, 3_000, post(203, 202, 0)) else { panic!() };
    assert_eq!(apply_one(&mut ledger, 4_000, post(203, 202, 0)), Outcome::Exists(posted));
    assert_eq!(
        apply_one(&mut ledger, 4_000, Transfer { debit_account_id: 2, ..post(203, 202, 30) }),
        Outcome::Exists(posted)
    );
    ledger.check_invariants().unwrap();
}

#[test]
fn timestamps_are_unique_and_increase_even_when_the_clock_steps_back() {
    let mut ledger = funded();
    let a = ledger.apply(50, &[Event::CreateTransfer(transfer(200, 2, 3, 1))]).unwrap().changes;
    let b = ledger.apply(10, &[Event::CreateTransfer(transfer(201, 2, 3, 1))]).unwrap().changes;
    assert!(b.timestamp_first > a.timestamp_last);
    assert!(b.transfers_created[0].timestamp > a.transfers_created[0].timestamp);
}

#[test]
fn an_oversized_batch_is_refused_whole() {
    let mut ledger = funded();
    let before = money(&ledger);
    let events: Vec<Event> = (0..suanli_ledger::BATCH_EVENTS_MAX as u128 + 1)
        .map(|i| Event::CreateTransfer(transfer(1_000 + i, 2, 3, 1)))
        .collect();
    assert_eq!(ledger.apply(2_000, &events), Err(BatchError::TooManyEvents(events.len())));
    assert_eq!(money(&ledger), before);
}
