//! Ledger integration tests, through the public surface only.

mod properties;
mod rules;

use suanli_ledger::{
    Account, AccountFlags, Event, Ledger, NewAccount, Outcome, Reject, Transfer, TransferFlags, state_hash,
};

pub const LEDGER: u32 = 156; // ISO 4217 numeric code of CNY.
pub const CODE: u16 = 1;

pub fn account(id: u128, flags: AccountFlags) -> Event {
    Event::CreateAccount(NewAccount { id, ledger: LEDGER, code: CODE, flags, user_data: 0 })
}

pub fn transfer(id: u128, debit: u128, credit: u128, amount: i64) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: LEDGER,
        code: CODE,
        ..Transfer::default()
    }
}

pub fn pending(id: u128, debit: u128, credit: u128, amount: i64, timeout_s: u32) -> Transfer {
    Transfer { flags: TransferFlags::PENDING, timeout_s, ..transfer(id, debit, credit, amount) }
}

pub fn post(id: u128, pending_id: u128, amount: i64) -> Transfer {
    Transfer { id, pending_id, amount, flags: TransferFlags::POST_PENDING, ..Transfer::default() }
}

pub fn void(id: u128, pending_id: u128) -> Transfer {
    Transfer { id, pending_id, flags: TransferFlags::VOID_PENDING, ..Transfer::default() }
}

/// A ledger with an unlimited source (1), a budget that cannot go below zero (2) funded with
/// 1,000 fen, and a plain sink (3).
pub fn funded() -> Ledger {
    let mut ledger = Ledger::new();
    let events = [
        account(1, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        account(2, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(3, AccountFlags::empty()),
        Event::CreateTransfer(transfer(100, 1, 2, 1_000)),
    ];
    let result = ledger.apply(1_000, &events).unwrap();
    assert!(result.outcomes.iter().all(|o| matches!(o, Outcome::Ok(_))), "{:?}", result.outcomes);
    ledger
}

pub fn apply_one(ledger: &mut Ledger, now_ns: u64, t: Transfer) -> Outcome {
    ledger.apply(now_ns, &[Event::CreateTransfer(t)]).unwrap().outcomes[0]
}

/// The money of a ledger: every account with its balances, and every transfer, by id.
pub fn money(ledger: &Ledger) -> (Vec<Account>, Vec<Transfer>) {
    let mut accounts: Vec<Account> = ledger.accounts().copied().collect();
    accounts.sort_by_key(|a| a.id);
    let mut transfers: Vec<Transfer> = ledger.transfers().copied().collect();
    transfers.sort_by_key(|t| t.id);
    (accounts, transfers)
}

pub fn balances(ledger: &Ledger, id: u128) -> [i64; 4] {
    let a = ledger.account(id).unwrap();
    [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted]
}

pub fn rejected(outcome: Outcome) -> Reject {
    match outcome {
        Outcome::Rejected(reject) => reject,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn state_hash_differs_when_money_differs() {
    let mut a = funded();
    let b = funded();
    assert_eq!(state_hash(&a), state_hash(&b));
    apply_one(&mut a, 2_000, transfer(101, 2, 3, 1));
    assert_ne!(state_hash(&a), state_hash(&b));
}
