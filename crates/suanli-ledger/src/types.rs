//! The ledger's records and the answers it gives.
//!
//! The shapes follow TigerBeetle's accounts and transfers: client-chosen 128-bit ids, a `ledger`
//! number that partitions currencies or books, a `code` saying why, `user_data` linking a record
//! to its cause in the service, and flags. Amounts are `i64` counts of the ledger's minor unit
//! (fen), so every stored number fits a signed 64-bit SQL integer.

/// Flags of an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccountFlags(u16);

impl AccountFlags {
    /// This event and the next one succeed or fail together.
    pub const LINKED: AccountFlags = AccountFlags(1 << 0);
    /// `debits_pending + debits_posted` may never exceed `credits_posted` (an asset that cannot go
    /// below zero: a programme budget, a voucher).
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: AccountFlags = AccountFlags(1 << 1);
    /// `credits_pending + credits_posted` may never exceed `debits_posted`.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: AccountFlags = AccountFlags(1 << 2);
    const KNOWN: u16 = 0b111;

    pub const fn empty() -> AccountFlags {
        AccountFlags(0)
    }
    pub const fn bits(self) -> u16 {
        self.0
    }
    /// Any bits, unknown ones included; the ledger refuses unknown bits with `reserved_flag`.
    pub const fn from_bits(bits: u16) -> AccountFlags {
        AccountFlags(bits)
    }
    pub const fn contains(self, other: AccountFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn union(self, other: AccountFlags) -> AccountFlags {
        AccountFlags(self.0 | other.0)
    }
    pub(crate) const fn has_unknown_bits(self) -> bool {
        self.0 & !Self::KNOWN != 0
    }
    pub(crate) const fn without_linked(self) -> AccountFlags {
        AccountFlags(self.0 & !Self::LINKED.0)
    }
}

/// Flags of a transfer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TransferFlags(u16);

impl TransferFlags {
    /// Whether a transfer is a hold or resolves one (pending, post or void): the transfers a
    /// ledger that forgets settled ones must keep.
    pub fn holds_or_resolves(self) -> bool {
        self.contains(TransferFlags::PENDING) || self.resolves_pending()
    }

    /// This event and the next one succeed or fail together.
    pub const LINKED: TransferFlags = TransferFlags(1 << 0);
    /// A hold: the amount is reserved as pending until posted, voided or timed out.
    pub const PENDING: TransferFlags = TransferFlags(1 << 1);
    /// Posts a pending transfer named by `pending_id`, fully or in part; the rest is released.
    pub const POST_PENDING: TransferFlags = TransferFlags(1 << 2);
    /// Releases a pending transfer named by `pending_id`.
    pub const VOID_PENDING: TransferFlags = TransferFlags(1 << 3);
    const KNOWN: u16 = 0b1111;

    pub const fn empty() -> TransferFlags {
        TransferFlags(0)
    }
    pub const fn bits(self) -> u16 {
        self.0
    }
    pub const fn from_bits(bits: u16) -> TransferFlags {
        TransferFlags(bits)
    }
    pub const fn contains(self, other: TransferFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn union(self, other: TransferFlags) -> TransferFlags {
        TransferFlags(self.0 | other.0)
    }
    pub(crate) const fn has_unknown_bits(self) -> bool {
        self.0 & !Self::KNOWN != 0
    }
    pub(crate) const fn without_linked(self) -> TransferFlags {
        TransferFlags(self.0 & !Self::LINKED.0)
    }
    /// Whether this transfer resolves an earlier pending one.
    pub const fn resolves_pending(self) -> bool {
        self.0 & (Self::POST_PENDING.0 | Self::VOID_PENDING.0) != 0
    }
}

/// What a client asks for when it creates an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NewAccount {
    pub id: u128,
    pub ledger: u32,
    pub code: u16,
    pub flags: AccountFlags,
    pub user_data: u128,
}

/// An account as the ledger holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    pub id: u128,
    pub ledger: u32,
    pub code: u16,
    pub flags: AccountFlags,
    pub user_data: u128,
    pub debits_pending: i64,
    pub debits_posted: i64,
    pub credits_pending: i64,
    pub credits_posted: i64,
    /// When the ledger created it, in the ledger's nanosecond clock; unique across all records.
    pub timestamp: u64,
}

impl Account {
    /// Posted credits less posted debits: what a credit-normal account (a budget, a voucher)
    /// holds. Computed in `i128`, so it cannot overflow.
    pub fn credit_balance_posted(&self) -> i128 {
        i128::from(self.credits_posted) - i128::from(self.debits_posted)
    }

    /// What a credit-normal account can still be debited for: posted credits less posted and
    /// pending debits.
    pub fn credit_balance_available(&self) -> i128 {
        self.credit_balance_posted() - i128::from(self.debits_pending)
    }

    /// Posted debits less posted credits: what a debit-normal account (a receivable) holds.
    pub fn debit_balance_posted(&self) -> i128 {
        -self.credit_balance_posted()
    }

    /// Whether the balance limit named by the account's flags holds.
    pub fn within_limits(&self) -> bool {
        let debits = i128::from(self.debits_pending) + i128::from(self.debits_posted);
        let credits = i128::from(self.credits_pending) + i128::from(self.credits_posted);
        let debits_ok = !self.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            || debits <= i128::from(self.credits_posted);
        let credits_ok = !self.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            || credits <= i128::from(self.debits_posted);
        debits_ok && credits_ok
    }
}

/// A transfer. A client submits one with `timestamp` zero; the ledger stores it with its
/// timestamp set, and for a post or void with the pending transfer's accounts, ledger and code
/// filled in and `amount` set to the amount actually posted or released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transfer {
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    /// Must be positive, except on a post (zero posts the full pending amount) and a void (zero
    /// or the pending amount).
    pub amount: i64,
    /// The pending transfer a post or void resolves; zero otherwise.
    pub pending_id: u128,
    /// Seconds after which a pending transfer is voided by the ledger; zero for never.
    pub timeout_s: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: TransferFlags,
    pub user_data: u128,
    pub timestamp: u64,
}

/// One command in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    CreateAccount(NewAccount),
    CreateTransfer(Transfer),
}

impl Event {
    pub fn id(&self) -> u128 {
        match self {
            Event::CreateAccount(account) => account.id,
            Event::CreateTransfer(transfer) => transfer.id,
        }
    }

    /// Whether this event is linked to the next one.
    pub fn is_linked(&self) -> bool {
        match self {
            Event::CreateAccount(account) => account.flags.contains(AccountFlags::LINKED),
            Event::CreateTransfer(transfer) => transfer.flags.contains(TransferFlags::LINKED),
        }
    }
}

/// What became of a pending transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PendingStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// The ledger released a pending transfer whose timeout passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Expiry {
    pub pending_id: u128,
    pub timestamp: u64,
}

/// A transfer id whose first attempt failed; any later attempt answers `id_already_failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FailedId {
    pub id: u128,
    pub reason: Reject,
    pub timestamp: u64,
}

/// What the ledger did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Ok(Receipt),
    /// Applied earlier with the same fields: the first outcome, unchanged.
    Exists(Receipt),
    /// Refused; nothing changed.
    Rejected(Reject),
}

impl Outcome {
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Exists(_) => "exists",
            Outcome::Rejected(reject) => reject.code(),
        }
    }
}

/// The first outcome of an event: when it was applied and, for a transfer, the amount moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub timestamp: u64,
    pub amount: i64,
}

macro_rules! rejects {
    ($($variant:ident => $code:literal: $message:literal,)*) => {
        /// Why an event was refused. Each has a stable snake_case code for machines and a
        /// sentence naming the field for people.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reject { $($variant,)* }

        impl Reject {
            pub const ALL: &'static [Reject] = &[$(Reject::$variant,)*];

            /// The stable machine-readable code.
            pub const fn code(self) -> &'static str {
                match self { $(Reject::$variant => $code,)* }
            }

            /// A lower-case sentence naming the field at fault.
            pub const fn message(self) -> &'static str {
                match self { $(Reject::$variant => $message,)* }
            }

            pub fn from_code(code: &str) -> Option<Reject> {
                match code { $($code => Some(Reject::$variant),)* _ => None }
            }
        }
    };
}

rejects! {
    LinkedEventFailed => "linked_event_failed": "another event of the linked chain failed",
    LinkedEventChainOpen => "linked_event_chain_open": "the batch ends inside a linked chain (the last event has the linked flag)",
    TimestampMustBeZero => "timestamp_must_be_zero": "timestamp is set by the ledger and must be zero",
    ReservedFlag => "reserved_flag": "flags has a bit the ledger does not define",
    IdMustNotBeZero => "id_must_not_be_zero": "id must not be zero",
    IdMustNotBeIntMax => "id_must_not_be_int_max": "id must not be 2^128-1",
    FlagsAreMutuallyExclusive => "flags_are_mutually_exclusive": "flags combines flags that exclude each other",
    LedgerMustNotBeZero => "ledger_must_not_be_zero": "ledger must not be zero",
    CodeMustNotBeZero => "code_must_not_be_zero": "code must not be zero",
    ExistsWithDifferentFields => "exists_with_different_fields": "id was already used for a record with different fields",
    IdAlreadyFailed => "id_already_failed": "id was already used by an event that failed; a new attempt needs a new id",
    DebitAccountIdMustNotBeZero => "debit_account_id_must_not_be_zero": "debit_account_id must not be zero",
    DebitAccountIdMustNotBeIntMax => "debit_account_id_must_not_be_int_max": "debit_account_id must not be 2^128-1",
    CreditAccountIdMustNotBeZero => "credit_account_id_must_not_be_zero": "credit_account_id must not be zero",
    CreditAccountIdMustNotBeIntMax => "credit_account_id_must_not_be_int_max": "credit_account_id must not be 2^128-1",
    AccountsMustBeDifferent => "accounts_must_be_different": "debit_account_id and credit_account_id must differ",
    PendingIdMustBeZero => "pending_id_must_be_zero": "pending_id must be zero unless the transfer posts or voids a pending transfer",
    PendingIdMustNotBeZero => "pending_id_must_not_be_zero": "pending_id must name the pending transfer to post or void",
    PendingIdMustNotBeIntMax => "pending_id_must_not_be_int_max": "pending_id must not be 2^128-1",
    PendingIdMustBeDifferent => "pending_id_must_be_different": "pending_id must differ from id",
    TimeoutReservedForPendingTransfer => "timeout_reserved_for_pending_transfer": "timeout_s may only be set on a pending transfer",
    AmountMustBePositive => "amount_must_be_positive": "amount must be greater than zero",
    AmountMustNotBeNegative => "amount_must_not_be_negative": "amount of a post or void must not be negative",
    DebitAccountNotFound => "debit_account_not_found": "debit_account_id names no account",
    CreditAccountNotFound => "credit_account_not_found": "credit_account_id names no account",
    AccountsMustHaveTheSameLedger => "accounts_must_have_the_same_ledger": "the debit and credit accounts are on different ledgers",
    TransferMustHaveTheSameLedgerAsAccounts => "transfer_must_have_the_same_ledger_as_accounts": "ledger differs from the accounts' ledger",
    PendingTransferNotFound => "pending_transfer_not_found": "pending_id names no transfer",
    PendingTransferNotPending => "pending_transfer_not_pending": "pending_id names a transfer that is not pending",
    PendingTransferHasDifferentDebitAccountId => "pending_transfer_has_different_debit_account_id": "debit_account_id differs from the pending transfer's",
    PendingTransferHasDifferentCreditAccountId => "pending_transfer_has_different_credit_account_id": "credit_account_id differs from the pending transfer's",
    PendingTransferHasDifferentLedger => "pending_transfer_has_different_ledger": "ledger differs from the pending transfer's",
    PendingTransferHasDifferentCode => "pending_transfer_has_different_code": "code differs from the pending transfer's",
    PendingTransferHasDifferentAmount => "pending_transfer_has_different_amount": "amount of a void must be zero or the pending amount",
    ExceedsPendingTransferAmount => "exceeds_pending_transfer_amount": "amount is more than the pending transfer holds",
    PendingTransferAlreadyPosted => "pending_transfer_already_posted": "pending_id names a transfer that was already posted",
    PendingTransferAlreadyVoided => "pending_transfer_already_voided": "pending_id names a transfer that was already voided",
    PendingTransferExpired => "pending_transfer_expired": "pending_id names a transfer whose timeout has passed",
    OverflowsDebitsPending => "overflows_debits_pending": "amount would overflow the debit account's debits_pending",
    OverflowsCreditsPending => "overflows_credits_pending": "amount would overflow the credit account's credits_pending",
    OverflowsDebitsPosted => "overflows_debits_posted": "amount would overflow the debit account's debits_posted",
    OverflowsCreditsPosted => "overflows_credits_posted": "amount would overflow the credit account's credits_posted",
    OverflowsDebits => "overflows_debits": "amount would overflow the debit account's total debits",
    OverflowsCredits => "overflows_credits": "amount would overflow the credit account's total credits",
    OverflowsTimeout => "overflows_timeout": "timeout_s would overflow the ledger clock",
    ExceedsCredits => "exceeds_credits": "amount would take the debit account's debits past its credits",
    ExceedsDebits => "exceeds_debits": "amount would take the credit account's credits past its debits",
}

impl Reject {
    /// Whether a first attempt that failed this way makes its id failed for good. Only failures
    /// that depend on the ledger's state (an account, a balance, a pending transfer's status) do:
    /// such a retry could succeed later, and then a client could not tell which attempt took
    /// effect. A malformed event changed nothing and depends on nothing, so its id stays free and
    /// the corrected event may use it (TigerBeetle draws the same line).
    pub(crate) const fn marks_id_failed(self) -> bool {
        matches!(
            self,
            Reject::DebitAccountNotFound
                | Reject::CreditAccountNotFound
                | Reject::AccountsMustHaveTheSameLedger
                | Reject::TransferMustHaveTheSameLedgerAsAccounts
                | Reject::PendingTransferNotFound
                | Reject::PendingTransferNotPending
                | Reject::PendingTransferHasDifferentDebitAccountId
                | Reject::PendingTransferHasDifferentCreditAccountId
                | Reject::PendingTransferHasDifferentLedger
                | Reject::PendingTransferHasDifferentCode
                | Reject::PendingTransferHasDifferentAmount
                | Reject::ExceedsPendingTransferAmount
                | Reject::PendingTransferAlreadyPosted
                | Reject::PendingTransferAlreadyVoided
                | Reject::PendingTransferExpired
                | Reject::OverflowsDebitsPending
                | Reject::OverflowsCreditsPending
                | Reject::OverflowsDebitsPosted
                | Reject::OverflowsCreditsPosted
                | Reject::OverflowsDebits
                | Reject::OverflowsCredits
                | Reject::OverflowsTimeout
                | Reject::ExceedsCredits
                | Reject::ExceedsDebits
        )
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}
