//! How the service's money maps onto ledger accounts and transfers.
//!
//! Account ids are derived from what they belong to, `kind << 112 | a << 56 | b`, so the service
//! never needs a lookup table and an auditor can read an id. Transfer ids are derived from the
//! audit-log entry that caused them, `sequence << 8 | leg`, and carry that sequence in
//! `user_data`, so every ledger transfer points back to the entry that explains it.
//!
//! The accounts (all in ledger 156, the ISO 4217 number of CNY):
//! - appropriation, per authority: the source of every programme's money;
//! - budget, per programme (may not go below zero);
//! - voucher, per voucher (may not go below zero);
//! - hold, per order: the voucher money reserved for that order (may not go below zero), so each
//!   usage record can draw on it and the ledger itself refuses a draw beyond the hold;
//! - enterprise, per enterprise: what the enterprise pays providers itself;
//! - provider receivable, per provider and programme: voucher money owed to the provider;
//! - provider direct, per provider: what enterprises owe the provider for their own shares;
//! - settlement, per programme: voucher money approved for payment on a statement.

use suanli_ledger::{AccountFlags, Event, NewAccount, Transfer, TransferFlags};

pub const LEDGER_CNY: u32 = 156;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum AccountKind {
    Appropriation = 10,
    Budget = 20,
    Voucher = 30,
    Hold = 40,
    Enterprise = 50,
    ProviderReceivable = 60,
    ProviderDirect = 61,
    Settlement = 70,
    /// A region's trade with the rest of the network (`crate::market`): credited with the usage
    /// its sites delivered on orders bought through clearings, debited with the usage its
    /// programmes' traded orders took. By GB/T 2260 province code.
    RegionTrade = 80,
}

impl AccountKind {
    fn flags(self) -> AccountFlags {
        match self {
            AccountKind::Budget | AccountKind::Voucher | AccountKind::Hold => {
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
            }
            _ => AccountFlags::empty(),
        }
    }
}

/// Why money moved; the transfer's `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum TransferKind {
    Fund = 1,
    Issue = 2,
    Hold = 3,
    UsageVoucherPart = 4,
    UsageEnterprisePart = 5,
    Release = 6,
    ReturnToBudget = 7,
    Settle = 8,
    ReturnToAppropriation = 9,
    /// Usage of an order bought between hub nodes: the buying region owes the selling region its
    /// cost.
    InterRegion = 10,
}

pub fn account_id(kind: AccountKind, a: u64, b: u64) -> u128 {
    debug_assert!(a < 1 << 56 && b < 1 << 56, "object numbers fit 56 bits");
    (u128::from(kind as u16) << 112) | (u128::from(a) << 56) | u128::from(b)
}

pub fn create_account(kind: AccountKind, a: u64, b: u64) -> Event {
    Event::CreateAccount(NewAccount {
        id: account_id(kind, a, b),
        ledger: LEDGER_CNY,
        code: kind as u16,
        flags: kind.flags(),
        user_data: 0,
    })
}

/// A single-phase transfer, leg `leg` of the change logged as entry `sequence`.
pub fn transfer(sequence: u64, leg: u8, kind: TransferKind, debit: u128, credit: u128, amount: i64) -> Event {
    assert!(amount > 0, "the service never asks the ledger for an empty transfer");
    Event::CreateTransfer(Transfer {
        id: (u128::from(sequence) << 8) | u128::from(leg),
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        pending_id: 0,
        timeout_s: 0,
        ledger: LEDGER_CNY,
        code: kind as u16,
        flags: TransferFlags::empty(),
        user_data: u128::from(sequence),
        timestamp: 0,
    })
}

/// Marks a group of events as one all-or-nothing chain: every event but the last is `LINKED`.
pub fn link(events: &mut [Event]) {
    let Some((_, init)) = events.split_last_mut() else { return };
    for event in init {
        match event {
            Event::CreateAccount(account) => account.flags = account.flags.union(AccountFlags::LINKED),
            Event::CreateTransfer(transfer) => transfer.flags = transfer.flags.union(TransferFlags::LINKED),
        }
    }
}

/// A hold's remainder going back to its voucher (an order ending, a revocation).
pub fn release(sequence: u64, leg: u8, order: u64, voucher: u64, amount: i64) -> Event {
    transfer(
        sequence,
        leg,
        TransferKind::Release,
        account_id(AccountKind::Hold, order, 0),
        account_id(AccountKind::Voucher, voucher, 0),
        amount,
    )
}

/// A voucher's balance going back to its programme's budget (expiry, revocation, a closed voucher).
pub fn return_to_budget(sequence: u64, leg: u8, voucher: u64, program: u64, amount: i64) -> Event {
    transfer(
        sequence,
        leg,
        TransferKind::ReturnToBudget,
        account_id(AccountKind::Voucher, voucher, 0),
        account_id(AccountKind::Budget, program, 0),
        amount,
    )
}
