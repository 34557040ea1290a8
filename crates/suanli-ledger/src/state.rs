//! The ledger state machine.
//!
//! [`Ledger::apply`] takes a batch of events and the clock's reading, and answers one outcome per
//! event plus the [`Changes`] that storage must persist. It is deterministic: the same batches
//! with the same clock readings always give the same outcomes, changes and state hash. It owns
//! its state alone, so there are no locks: callers put a queue in front of it.
//!
//! Each event is applied in place and its mutations are written to an undo log; when an event of
//! a linked chain fails, the log rolls the whole chain back. Invariants are asserted as state
//! changes (balance limits of every account touched) and after every batch (total debits equal
//! total credits, pending and posted alike).

use std::collections::BTreeSet;

/// Hash maps keyed by client-chosen ids use foldhash, seeded at random per process: several times
/// faster than SipHash on 128-bit keys while still resisting chosen-key collisions.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::types::{
    Account, AccountFlags, Event, Expiry, FailedId, NewAccount, Outcome, PendingStatus, Receipt, Reject, Transfer,
    TransferFlags,
};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Limits on what one batch may hold.
pub const BATCH_EVENTS_MAX: usize = 8_190;

/// The whole state of a ledger.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    accounts: HashMap<u128, Account>,
    transfers: HashMap<u128, Transfer>,
    pending: HashMap<u128, PendingStatus>,
    /// Pending transfers with a timeout, by the instant they expire.
    expiry_queue: BTreeSet<(u64, u128)>,
    failed: HashMap<u128, FailedId>,
    last_timestamp: u64,
    totals: Totals,
    /// Transfers ever created, and the largest transfer or failed id ever seen: with history in
    /// storage, a new id above the largest is new without looking anything up.
    transfers_total: u64,
    id_max: u128,
    /// Whether settled transfers are forgotten after their batch is stored ([`Ledger::forget_settled`]):
    /// then `transfers` holds only pending transfers and the ones [`Ledger::remember`] brought back
    /// for a batch, and the caller looks up older ids in storage first ([`Ledger::history_needed`]).
    forgetting: bool,
    /// Transfers in memory that are not pending, to forget after the batch is stored.
    settled_recent: Vec<u128>,
    /// How to take back the newest batch, kept until the next one: storage may refuse to commit
    /// it, and memory must then return to what storage holds without a rebuild.
    last_batch: Option<BatchUndo>,
}

/// Everything the newest batch changed, in the order it changed it.
#[derive(Clone, Debug, Default)]
struct BatchUndo {
    undo: Vec<Undo>,
    totals: Totals,
    last_timestamp: u64,
    id_max: u128,
}

/// Sums over all accounts, kept as the ledger runs so that "the books balance" is checked after
/// every batch in constant time. `i128` because a sum over many `i64` balances can exceed `i64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    debits_pending: i128,
    debits_posted: i128,
    credits_pending: i128,
    credits_posted: i128,
}

/// What one batch changed, for storage to persist in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The batch's first timestamp, for ordering and for the journal.
    pub timestamp_first: u64,
    pub timestamp_last: u64,
    /// New accounts as created (zero balances).
    pub accounts_created: Vec<Account>,
    /// New transfers as stored.
    pub transfers_created: Vec<Transfer>,
    /// Pending transfers the ledger voided because their timeout passed.
    pub expired: Vec<Expiry>,
    /// Ids that failed for the first time in this batch.
    pub failed: Vec<FailedId>,
    /// Final state of every account this batch changed, created ones included, by id.
    pub accounts_after: Vec<Account>,
}

/// The answer to a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub outcomes: Vec<Outcome>,
    pub changes: Changes,
}

/// Why a batch as a whole was refused, before any event was looked at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("a batch holds at most {BATCH_EVENTS_MAX} events, got {0}")]
    TooManyEvents(usize),
    #[error("the ledger clock cannot advance past {0}")]
    ClockExhausted(u64),
}

/// A broken invariant: the ledger's state is not one its rules can produce.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ledger invariant violated: {0}")]
pub struct InvariantViolation(pub String);

#[derive(Clone, Debug)]
enum Undo {
    FailedRecorded(u128),
    AccountCreated(u128),
    TransferCreated(u128),
    Balances(u128, [i64; 4]),
    PendingStatus(u128, PendingStatus),
    ExpiryQueued(u64, u128),
    ExpiryRemoved(u64, u128),
}

/// Per-batch scratch: the undo log of the open chain and what the batch changed.
struct BatchScratch {
    undo: Vec<Undo>,
    /// The undo entries of every chain that stayed, for [`Ledger::revert_last_batch`].
    batch_undo: Vec<Undo>,
    changes: Changes,
    touched: Vec<u128>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A ledger with room for this many accounts and transfers before any map grows. Growing a
    /// map of millions of transfers rehashes it in one go and faults in fresh pages, a pause in
    /// the middle of a batch; sizing up front, as TigerBeetle does, keeps batch latency even.
    pub fn with_capacity(accounts: usize, transfers: usize) -> Ledger {
        Ledger {
            accounts: HashMap::with_capacity_and_hasher(accounts, Default::default()),
            transfers: HashMap::with_capacity_and_hasher(transfers, Default::default()),
            ..Ledger::default()
        }
    }

    pub fn account(&self, id: u128) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn transfer(&self, id: u128) -> Option<&Transfer> {
        self.transfers.get(&id)
    }

    pub fn pending_status(&self, id: u128) -> Option<PendingStatus> {
        self.pending.get(&id).copied()
    }

    pub fn failed(&self, id: u128) -> Option<&FailedId> {
        self.failed.get(&id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers.values()
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    pub fn transfer_count(&self) -> usize {
        self.transfers.len()
    }

    pub fn last_timestamp(&self) -> u64 {
        self.last_timestamp
    }

    /// Applies one batch at clock reading `now_ns`. Timestamps are `max(now_ns, last + 1)` and
    /// then one more for every expiry and event, so they are unique and increasing even if the
    /// clock stands still or steps back.
    pub fn apply(&mut self, now_ns: u64, events: &[Event]) -> Result<BatchResult, BatchError> {
        if events.len() > BATCH_EVENTS_MAX {
            return Err(BatchError::TooManyEvents(events.len()));
        }
        let first = now_ns.max(self.last_timestamp + 1);
        // Every expiry and event takes one timestamp; refuse up front rather than run out midway.
        let expiries_max = self.expiry_queue.len() as u64;
        if first.checked_add(events.len() as u64 + expiries_max).is_none() {
            return Err(BatchError::ClockExhausted(self.last_timestamp));
        }
        let (totals_before, last_timestamp_before, id_max_before) = (self.totals, self.last_timestamp, self.id_max);
        self.last_batch = None;
        let mut scratch = BatchScratch {
            undo: Vec::new(),
            batch_undo: Vec::new(),
            changes: Changes { timestamp_first: first, ..Changes::default() },
            touched: Vec::new(),
        };
        let mut timestamp = first;
        self.expire_pending(first, &mut timestamp, &mut scratch);

        let mut outcomes: Vec<Outcome> = Vec::with_capacity(events.len());
        let mut chain_start: Option<usize> = None;
        let mut chain_failed = false;
        let mut totals_saved = self.totals;
        let mut lengths_saved = (0, 0);
        for (index, event) in events.iter().enumerate() {
            if chain_start.is_none() {
                chain_start = Some(index);
                chain_failed = false;
                totals_saved = self.totals;
                lengths_saved = (scratch.changes.accounts_created.len(), scratch.changes.transfers_created.len());
                debug_assert!(scratch.undo.is_empty());
            }
            let chain_open_at_end = index + 1 == events.len() && event.is_linked();
            let outcome = if chain_failed {
                Outcome::Rejected(Reject::LinkedEventFailed)
            } else if chain_open_at_end {
                Outcome::Rejected(Reject::LinkedEventChainOpen)
            } else {
                let outcome = match event {
                    Event::CreateAccount(account) => self.create_account(account, timestamp, &mut scratch),
                    Event::CreateTransfer(transfer) => self.create_transfer(transfer, timestamp, &mut scratch),
                };
                if matches!(outcome, Outcome::Ok(_)) {
                    timestamp += 1;
                }
                outcome
            };
            if let Outcome::Rejected(reject) = outcome
                && !chain_failed
            {
                chain_failed = true;
                let start = chain_start.expect("set above");
                // Earlier events of the chain are undone and answer that a linked event failed.
                for earlier in &mut outcomes[start..] {
                    *earlier = Outcome::Rejected(Reject::LinkedEventFailed);
                }
                self.roll_back(&mut scratch, totals_saved, lengths_saved);
                // Only an unused id becomes failed: a used one keeps its first outcome.
                let id = event.id();
                let unused = !self.transfers.contains_key(&id) && !self.failed.contains_key(&id);
                if reject.marks_id_failed() && unused && matches!(event, Event::CreateTransfer(_)) {
                    let failed = FailedId { id, reason: reject, timestamp };
                    self.failed.insert(failed.id, failed);
                    self.id_max = self.id_max.max(failed.id);
                    scratch.batch_undo.push(Undo::FailedRecorded(failed.id));
                    scratch.changes.failed.push(failed);
                    timestamp += 1;
                }
            }
            outcomes.push(outcome);
            if !event.is_linked() || chain_open_at_end {
                chain_start = None;
                scratch.batch_undo.append(&mut scratch.undo);
            }
        }
        debug_assert!(chain_start.is_none());

        self.last_timestamp = timestamp - 1;
        scratch.changes.timestamp_last = self.last_timestamp;
        scratch.touched.sort_unstable();
        scratch.touched.dedup();
        scratch.changes.accounts_after =
            scratch.touched.iter().filter_map(|id| self.accounts.get(id)).copied().collect();
        self.assert_batch_invariants(&scratch.changes);
        self.last_batch = Some(BatchUndo {
            undo: scratch.batch_undo,
            totals: totals_before,
            last_timestamp: last_timestamp_before,
            id_max: id_max_before,
        });
        Ok(BatchResult { outcomes, changes: scratch.changes })
    }

    /// Takes back the newest batch, leaving the ledger exactly as it was before it (the state hash
    /// equal). For a batch that storage refused to commit. Answers false when there is no batch to
    /// take back (none applied, or already taken back).
    pub fn revert_last_batch(&mut self) -> bool {
        let Some(mut batch) = self.last_batch.take() else {
            return false;
        };
        self.undo_all(&mut batch.undo);
        self.totals = batch.totals;
        self.last_timestamp = batch.last_timestamp;
        self.id_max = batch.id_max;
        true
    }

    /// Forgets every settled transfer (not pending) since the last call: its batch is stored, so
    /// memory need not keep it. From the first call on the ledger expects [`Ledger::remember`] to
    /// bring back, before each batch, the stored transfers that [`Ledger::history_needed`] names.
    pub fn forget_settled(&mut self) {
        if !self.forgetting {
            self.forgetting = true;
            self.settled_recent.clear();
            self.transfers.retain(|_, t| t.flags.contains(TransferFlags::PENDING));
            self.transfers.shrink_to_fit();
            return;
        }
        for id in self.settled_recent.drain(..) {
            if self.transfers.get(&id).is_some_and(|t| !t.flags.contains(TransferFlags::PENDING)) {
                self.transfers.remove(&id);
            }
        }
        self.last_batch = None;
    }

    /// The ids a batch refers to that only storage can tell about: transfer ids (and pending ids
    /// they resolve) no greater than the largest id seen, neither in memory nor failed. Empty
    /// unless settled transfers are being forgotten.
    pub fn history_needed(&self, events: &[Event]) -> Vec<u128> {
        if !self.forgetting {
            return Vec::new();
        }
        let unknown = |id: u128| {
            id != 0 && id <= self.id_max && !self.transfers.contains_key(&id) && !self.failed.contains_key(&id)
        };
        let mut ids: Vec<u128> = events
            .iter()
            .filter_map(|event| match event {
                Event::CreateTransfer(t) => Some(t),
                Event::CreateAccount(_) => None,
            })
            .flat_map(|t| [t.id, if t.flags.resolves_pending() { t.pending_id } else { 0 }])
            .filter(|&id| unknown(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Brings stored transfers back for the next batch (they are forgotten again after it).
    pub fn remember(&mut self, transfers: impl IntoIterator<Item = Transfer>) {
        for transfer in transfers {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.transfers.entry(transfer.id) {
                slot.insert(transfer);
                if !transfer.flags.contains(TransferFlags::PENDING) {
                    self.settled_recent.push(transfer.id);
                }
            }
        }
    }

    /// Transfers ever created.
    pub fn transfers_total(&self) -> u64 {
        self.transfers_total
    }

    /// Voids every pending transfer whose timeout is at or before `now`.
    fn expire_pending(&mut self, now: u64, timestamp: &mut u64, scratch: &mut BatchScratch) {
        while let Some(&(expires_at, id)) = self.expiry_queue.first() {
            if expires_at > now {
                break;
            }
            self.expiry_queue.pop_first();
            scratch.undo.push(Undo::ExpiryRemoved(expires_at, id));
            let pending = self.transfers[&id];
            assert_eq!(self.pending.insert(id, PendingStatus::Expired), Some(PendingStatus::Pending));
            scratch.undo.push(Undo::PendingStatus(id, PendingStatus::Pending));
            self.release_pending(&pending, scratch);
            scratch.changes.expired.push(Expiry { pending_id: id, timestamp: *timestamp });
            *timestamp += 1;
        }
        // Expiry is not part of any chain and is never rolled back with one; only a refused
        // commit takes it back, with the whole batch.
        scratch.batch_undo.append(&mut scratch.undo);
    }

    fn create_account(&mut self, new: &NewAccount, timestamp: u64, scratch: &mut BatchScratch) -> Outcome {
        if new.flags.has_unknown_bits() {
            return Outcome::Rejected(Reject::ReservedFlag);
        }
        if new.id == 0 {
            return Outcome::Rejected(Reject::IdMustNotBeZero);
        }
        if new.id == u128::MAX {
            return Outcome::Rejected(Reject::IdMustNotBeIntMax);
        }
        let both_limits =
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS.union(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS);
        if new.flags.contains(both_limits) {
            return Outcome::Rejected(Reject::FlagsAreMutuallyExclusive);
        }
        if new.ledger == 0 {
            return Outcome::Rejected(Reject::LedgerMustNotBeZero);
        }
        if new.code == 0 {
            return Outcome::Rejected(Reject::CodeMustNotBeZero);
        }
        if let Some(existing) = self.accounts.get(&new.id) {
            let same = existing.ledger == new.ledger
                && existing.code == new.code
                && existing.flags.without_linked() == new.flags.without_linked()
                && existing.user_data == new.user_data;
            return if same {
                Outcome::Exists(Receipt { timestamp: existing.timestamp, amount: 0 })
            } else {
                Outcome::Rejected(Reject::ExistsWithDifferentFields)
            };
        }
        let account = Account {
            id: new.id,
            ledger: new.ledger,
            code: new.code,
            flags: new.flags.without_linked(),
            user_data: new.user_data,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            timestamp,
        };
        self.accounts.insert(account.id, account);
        scratch.undo.push(Undo::AccountCreated(account.id));
        scratch.changes.accounts_created.push(account);
        scratch.touched.push(account.id);
        Outcome::Ok(Receipt { timestamp, amount: 0 })
    }

    fn create_transfer(&mut self, submitted: &Transfer, timestamp: u64, scratch: &mut BatchScratch) -> Outcome {
        match self.validate_transfer(submitted, timestamp) {
            Ok(stored) => {
                self.commit_transfer(stored, scratch);
                Outcome::Ok(Receipt { timestamp, amount: stored.amount })
            }
            Err(Found::Exists(existing)) => {
                Outcome::Exists(Receipt { timestamp: existing.timestamp, amount: existing.amount })
            }
            Err(Found::Rejected(reject)) => Outcome::Rejected(reject),
        }
    }

    /// Checks a submitted transfer against the rules and the state, in a fixed order, and
    /// returns the transfer as it would be stored. Changes nothing.
    fn validate_transfer(&self, t: &Transfer, timestamp: u64) -> Result<Transfer, Found> {
        use Reject as R;
        let flags = t.flags;
        let reject = |r: Reject| Err(Found::Rejected(r));
        if t.timestamp != 0 {
            return reject(R::TimestampMustBeZero);
        }
        if flags.has_unknown_bits() {
            return reject(R::ReservedFlag);
        }
        if t.id == 0 {
            return reject(R::IdMustNotBeZero);
        }
        if t.id == u128::MAX {
            return reject(R::IdMustNotBeIntMax);
        }
        let phase_flags = [TransferFlags::PENDING, TransferFlags::POST_PENDING, TransferFlags::VOID_PENDING];
        if phase_flags.iter().filter(|&&flag| flags.contains(flag)).count() > 1 {
            return reject(R::FlagsAreMutuallyExclusive);
        }
        if flags.resolves_pending() {
            return self.validate_resolution(t, timestamp);
        }
        if t.debit_account_id == 0 {
            return reject(R::DebitAccountIdMustNotBeZero);
        }
        if t.debit_account_id == u128::MAX {
            return reject(R::DebitAccountIdMustNotBeIntMax);
        }
        if t.credit_account_id == 0 {
            return reject(R::CreditAccountIdMustNotBeZero);
        }
        if t.credit_account_id == u128::MAX {
            return reject(R::CreditAccountIdMustNotBeIntMax);
        }
        if t.debit_account_id == t.credit_account_id {
            return reject(R::AccountsMustBeDifferent);
        }
        if t.pending_id != 0 {
            return reject(R::PendingIdMustBeZero);
        }
        let is_pending = flags.contains(TransferFlags::PENDING);
        if t.timeout_s != 0 && !is_pending {
            return reject(R::TimeoutReservedForPendingTransfer);
        }
        if t.amount <= 0 {
            return reject(R::AmountMustBePositive);
        }
        if t.ledger == 0 {
            return reject(R::LedgerMustNotBeZero);
        }
        if t.code == 0 {
            return reject(R::CodeMustNotBeZero);
        }
        self.check_not_seen(t)?;
        let Some(dr) = self.accounts.get(&t.debit_account_id) else { return reject(R::DebitAccountNotFound) };
        let Some(cr) = self.accounts.get(&t.credit_account_id) else { return reject(R::CreditAccountNotFound) };
        if dr.ledger != cr.ledger {
            return reject(R::AccountsMustHaveTheSameLedger);
        }
        if t.ledger != dr.ledger {
            return reject(R::TransferMustHaveTheSameLedgerAsAccounts);
        }
        let amount = t.amount;
        let (debit_field, credit_field, debit_overflow, credit_overflow) = if is_pending {
            (dr.debits_pending, cr.credits_pending, R::OverflowsDebitsPending, R::OverflowsCreditsPending)
        } else {
            (dr.debits_posted, cr.credits_posted, R::OverflowsDebitsPosted, R::OverflowsCreditsPosted)
        };
        if debit_field.checked_add(amount).is_none() {
            return reject(debit_overflow);
        }
        if credit_field.checked_add(amount).is_none() {
            return reject(credit_overflow);
        }
        // Pending plus posted must fit too, so that posting a hold can never overflow later.
        let dr_total = dr.debits_pending.checked_add(dr.debits_posted).and_then(|d| d.checked_add(amount));
        if dr_total.is_none() {
            return reject(R::OverflowsDebits);
        }
        let cr_total = cr.credits_pending.checked_add(cr.credits_posted).and_then(|c| c.checked_add(amount));
        if cr_total.is_none() {
            return reject(R::OverflowsCredits);
        }
        if t.timeout_s != 0 && timestamp.checked_add(u64::from(t.timeout_s) * NANOS_PER_SECOND).is_none() {
            return reject(R::OverflowsTimeout);
        }
        if dr.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && dr_total.expect("checked") > dr.credits_posted
        {
            return reject(R::ExceedsCredits);
        }
        if cr.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && cr_total.expect("checked") > cr.debits_posted
        {
            return reject(R::ExceedsDebits);
        }
        Ok(Transfer { timestamp, flags: flags.without_linked(), ..*t })
    }

    /// The rules for a post or void of a pending transfer.
    fn validate_resolution(&self, t: &Transfer, timestamp: u64) -> Result<Transfer, Found> {
        use Reject as R;
        let reject = |r: Reject| Err(Found::Rejected(r));
        if t.pending_id == 0 {
            return reject(R::PendingIdMustNotBeZero);
        }
        if t.pending_id == u128::MAX {
            return reject(R::PendingIdMustNotBeIntMax);
        }
        if t.pending_id == t.id {
            return reject(R::PendingIdMustBeDifferent);
        }
        if t.timeout_s != 0 {
            return reject(R::TimeoutReservedForPendingTransfer);
        }
        if t.amount < 0 {
            return reject(R::AmountMustNotBeNegative);
        }
        self.check_not_seen(t)?;
        let Some(pending) = self.transfers.get(&t.pending_id) else { return reject(R::PendingTransferNotFound) };
        if !pending.flags.contains(TransferFlags::PENDING) {
            return reject(R::PendingTransferNotPending);
        }
        if t.debit_account_id != 0 && t.debit_account_id != pending.debit_account_id {
            return reject(R::PendingTransferHasDifferentDebitAccountId);
        }
        if t.credit_account_id != 0 && t.credit_account_id != pending.credit_account_id {
            return reject(R::PendingTransferHasDifferentCreditAccountId);
        }
        if t.ledger != 0 && t.ledger != pending.ledger {
            return reject(R::PendingTransferHasDifferentLedger);
        }
        if t.code != 0 && t.code != pending.code {
            return reject(R::PendingTransferHasDifferentCode);
        }
        let is_post = t.flags.contains(TransferFlags::POST_PENDING);
        let amount = match (is_post, t.amount) {
            (true, 0) => pending.amount,
            (true, amount) if amount > pending.amount => return reject(R::ExceedsPendingTransferAmount),
            (true, amount) => amount,
            (false, 0) => pending.amount,
            (false, amount) if amount == pending.amount => amount,
            (false, _) => return reject(R::PendingTransferHasDifferentAmount),
        };
        match self.pending[&t.pending_id] {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return reject(R::PendingTransferAlreadyPosted),
            PendingStatus::Voided => return reject(R::PendingTransferAlreadyVoided),
            PendingStatus::Expired => return reject(R::PendingTransferExpired),
        }
        if let Some(expires_at) = expiry_instant(pending)
            && expires_at <= timestamp
        {
            return reject(R::PendingTransferExpired);
        }
        if is_post {
            let dr = &self.accounts[&pending.debit_account_id];
            let cr = &self.accounts[&pending.credit_account_id];
            if dr.debits_posted.checked_add(amount).is_none() {
                return reject(R::OverflowsDebitsPosted);
            }
            if cr.credits_posted.checked_add(amount).is_none() {
                return reject(R::OverflowsCreditsPosted);
            }
        }
        Ok(Transfer {
            debit_account_id: pending.debit_account_id,
            credit_account_id: pending.credit_account_id,
            amount,
            ledger: pending.ledger,
            code: pending.code,
            flags: t.flags.without_linked(),
            timestamp,
            ..*t
        })
    }

    /// Answers `exists`, `exists_with_different_fields` or `id_already_failed` for a used id.
    fn check_not_seen(&self, t: &Transfer) -> Result<(), Found> {
        if let Some(existing) = self.transfers.get(&t.id) {
            return Err(if same_transfer(t, existing) {
                Found::Exists(*existing)
            } else {
                Found::Rejected(Reject::ExistsWithDifferentFields)
            });
        }
        if self.failed.contains_key(&t.id) {
            return Err(Found::Rejected(Reject::IdAlreadyFailed));
        }
        Ok(())
    }

    fn commit_transfer(&mut self, t: Transfer, scratch: &mut BatchScratch) {
        self.transfers.insert(t.id, t);
        self.transfers_total += 1;
        self.id_max = self.id_max.max(t.id);
        if self.forgetting && !t.flags.contains(TransferFlags::PENDING) {
            self.settled_recent.push(t.id);
        }
        scratch.undo.push(Undo::TransferCreated(t.id));
        scratch.changes.transfers_created.push(t);
        if t.flags.contains(TransferFlags::PENDING) {
            self.pending.insert(t.id, PendingStatus::Pending);
            if let Some(expires_at) = expiry_instant(&t) {
                self.expiry_queue.insert((expires_at, t.id));
                scratch.undo.push(Undo::ExpiryQueued(expires_at, t.id));
            }
            self.adjust(t.debit_account_id, t.credit_account_id, [t.amount, 0, t.amount, 0], scratch);
        } else if t.flags.resolves_pending() {
            let pending = self.transfers[&t.pending_id];
            let status = if t.flags.contains(TransferFlags::POST_PENDING) {
                PendingStatus::Posted
            } else {
                PendingStatus::Voided
            };
            let old = self.pending.insert(t.pending_id, status).expect("a pending transfer has a status");
            scratch.undo.push(Undo::PendingStatus(t.pending_id, old));
            if let Some(expires_at) = expiry_instant(&pending) {
                self.expiry_queue.remove(&(expires_at, pending.id));
                scratch.undo.push(Undo::ExpiryRemoved(expires_at, pending.id));
            }
            self.release_pending(&pending, scratch);
            if status == PendingStatus::Posted {
                self.adjust(t.debit_account_id, t.credit_account_id, [0, t.amount, 0, t.amount], scratch);
            }
        } else {
            self.adjust(t.debit_account_id, t.credit_account_id, [0, t.amount, 0, t.amount], scratch);
        }
    }

    fn release_pending(&mut self, pending: &Transfer, scratch: &mut BatchScratch) {
        let amount = -pending.amount;
        self.adjust(pending.debit_account_id, pending.credit_account_id, [amount, 0, amount, 0], scratch);
    }

    /// Adds `[debits_pending, debits_posted, credits_pending, credits_posted]` deltas to the
    /// debit account's debits and the credit account's credits. Validation has already proved
    /// that nothing overflows and no limit breaks; both are asserted again here.
    fn adjust(&mut self, debit_id: u128, credit_id: u128, delta: [i64; 4], scratch: &mut BatchScratch) {
        let [debits_pending, debits_posted, credits_pending, credits_posted] = delta;
        for (id, pending, posted, is_debit) in
            [(debit_id, debits_pending, debits_posted, true), (credit_id, credits_pending, credits_posted, false)]
        {
            let account = self.accounts.get_mut(&id).expect("validated account exists");
            scratch.undo.push(Undo::Balances(id, balances(account)));
            scratch.touched.push(id);
            let (pending_field, posted_field) = if is_debit {
                (&mut account.debits_pending, &mut account.debits_posted)
            } else {
                (&mut account.credits_pending, &mut account.credits_posted)
            };
            *pending_field = pending_field.checked_add(pending).expect("validated: pending does not overflow");
            *posted_field = posted_field.checked_add(posted).expect("validated: posted does not overflow");
            assert!(*pending_field >= 0 && *posted_field >= 0, "a balance went negative on account {id:#x}");
            assert!(account.within_limits(), "a balance limit broke on account {id:#x}");
        }
        self.totals.debits_pending += i128::from(debits_pending);
        self.totals.debits_posted += i128::from(debits_posted);
        self.totals.credits_pending += i128::from(credits_pending);
        self.totals.credits_posted += i128::from(credits_posted);
    }

    fn roll_back(&mut self, scratch: &mut BatchScratch, totals: Totals, lengths: (usize, usize)) {
        self.undo_all(&mut scratch.undo);
        self.totals = totals;
        scratch.changes.accounts_created.truncate(lengths.0);
        scratch.changes.transfers_created.truncate(lengths.1);
    }

    /// Undoes `undo` from its newest entry back.
    fn undo_all(&mut self, undo: &mut Vec<Undo>) {
        while let Some(undo) = undo.pop() {
            match undo {
                Undo::FailedRecorded(id) => {
                    self.failed.remove(&id);
                }
                Undo::AccountCreated(id) => {
                    self.accounts.remove(&id);
                }
                Undo::TransferCreated(id) => {
                    self.transfers.remove(&id);
                    self.pending.remove(&id);
                    self.transfers_total -= 1;
                }
                Undo::Balances(id, [dp, dpo, cp, cpo]) => {
                    let account = self.accounts.get_mut(&id).expect("undo runs in reverse, so the account exists");
                    (account.debits_pending, account.debits_posted) = (dp, dpo);
                    (account.credits_pending, account.credits_posted) = (cp, cpo);
                }
                Undo::PendingStatus(id, status) => {
                    self.pending.insert(id, status);
                }
                Undo::ExpiryQueued(at, id) => {
                    self.expiry_queue.remove(&(at, id));
                }
                Undo::ExpiryRemoved(at, id) => {
                    self.expiry_queue.insert((at, id));
                }
            }
        }
    }

    /// The constant-time checks after every batch: the books balance, pending and posted alike,
    /// and every changed account is non-negative and within its limits.
    fn assert_batch_invariants(&self, changes: &Changes) {
        assert_eq!(self.totals.debits_posted, self.totals.credits_posted, "posted debits and credits differ");
        assert_eq!(self.totals.debits_pending, self.totals.credits_pending, "pending debits and credits differ");
        for account in &changes.accounts_after {
            assert!(balances(account).iter().all(|&b| b >= 0), "negative balance on account {:#x}", account.id);
            assert!(account.within_limits(), "balance limit broken on account {:#x}", account.id);
        }
    }

    /// Every invariant, checked from scratch over the whole state (linear time): balances
    /// re-derived from the transfers equal the accounts', the books balance, no balance is
    /// negative, every limit holds, every pending status agrees with the transfers that resolve
    /// it, and no id is both a transfer and a failure.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        if self.forgetting {
            // Settled transfers live in storage only: balances cannot be re-derived here (the
            // audit does it from the rows); everything else is checked.
            return self.check_balances_alone();
        }
        let fail = |message: String| Err(InvariantViolation(message));
        let mut derived: HashMap<u128, [i128; 4]> = self.accounts.keys().map(|&id| (id, [0; 4])).collect();
        let mut resolved: HashMap<u128, PendingStatus> = HashMap::default();
        for t in self.transfers.values() {
            if !derived.contains_key(&t.debit_account_id) || !derived.contains_key(&t.credit_account_id) {
                return fail(format!("transfer {:#x} names an account that does not exist", t.id));
            }
            if t.amount < 0 || (t.amount == 0 && !t.flags.resolves_pending()) {
                return fail(format!("transfer {:#x} has amount {}", t.id, t.amount));
            }
            let amount = i128::from(t.amount);
            if t.flags.contains(TransferFlags::PENDING) {
                // A hold counts as pending unless it expired; a posted or voided hold is counted
                // here and taken off again by the transfer that resolved it.
                let Some(&status) = self.pending.get(&t.id) else {
                    return fail(format!("pending transfer {:#x} has no status", t.id));
                };
                if status != PendingStatus::Expired {
                    derived.get_mut(&t.debit_account_id).expect("checked")[0] += amount;
                    derived.get_mut(&t.credit_account_id).expect("checked")[2] += amount;
                }
            } else if t.flags.resolves_pending() {
                let Some(pending) = self.transfers.get(&t.pending_id) else {
                    return fail(format!("transfer {:#x} resolves a transfer that does not exist", t.id));
                };
                let status = if t.flags.contains(TransferFlags::POST_PENDING) {
                    PendingStatus::Posted
                } else {
                    PendingStatus::Voided
                };
                if resolved.insert(t.pending_id, status).is_some() {
                    return fail(format!("pending transfer {:#x} is resolved twice", t.pending_id));
                }
                if t.amount > pending.amount {
                    return fail(format!("transfer {:#x} posts more than its pending transfer held", t.id));
                }
                let held = i128::from(pending.amount);
                derived.get_mut(&pending.debit_account_id).expect("checked")[0] -= held;
                derived.get_mut(&pending.credit_account_id).expect("checked")[2] -= held;
                if status == PendingStatus::Posted {
                    derived.get_mut(&t.debit_account_id).expect("checked")[1] += amount;
                    derived.get_mut(&t.credit_account_id).expect("checked")[3] += amount;
                }
            } else {
                derived.get_mut(&t.debit_account_id).expect("checked")[1] += amount;
                derived.get_mut(&t.credit_account_id).expect("checked")[3] += amount;
            }
        }
        for (&id, &status) in &self.pending {
            let expected = resolved.get(&id).copied().unwrap_or(if status == PendingStatus::Expired {
                PendingStatus::Expired
            } else {
                PendingStatus::Pending
            });
            if status != expected {
                return fail(format!(
                    "pending transfer {id:#x} has status {status:?} but its transfers say {expected:?}"
                ));
            }
        }
        for account in self.accounts.values() {
            let stored = balances(account).map(i128::from);
            if derived[&account.id] != stored {
                return fail(format!(
                    "account {:#x} holds {stored:?} but its transfers give {:?}",
                    account.id, derived[&account.id]
                ));
            }
        }
        self.check_balances_alone()
    }

    /// Rebuilds a ledger from what storage holds, then checks every invariant, so a damaged
    /// store is refused instead of served.
    pub fn restore(
        accounts: Vec<Account>,
        transfers: Vec<Transfer>,
        expired: Vec<Expiry>,
        failed: Vec<FailedId>,
        last_timestamp: u64,
    ) -> Result<Ledger, InvariantViolation> {
        let ledger = Ledger::assemble(accounts, transfers, expired, failed, last_timestamp)?;
        ledger.check_invariants()?;
        Ok(ledger)
    }

    /// Rebuilds a ledger that keeps settled transfers in storage only: from every account (with
    /// its stored balances), the transfers that are or resolve holds, expiries and failures, and
    /// the count and largest id of all transfers. Checks every invariant that needs no settled
    /// transfer (the audit re-derives balances from all of them).
    pub fn restore_forgetting(
        accounts: Vec<Account>,
        holds: Vec<Transfer>,
        expired: Vec<Expiry>,
        failed: Vec<FailedId>,
        last_timestamp: u64,
        transfers_total: u64,
        transfer_id_max: u128,
    ) -> Result<Ledger, InvariantViolation> {
        let mut ledger = Ledger::assemble(accounts, holds, expired, failed, last_timestamp)?;
        ledger.forgetting = true;
        ledger.transfers.retain(|_, t| t.flags.contains(TransferFlags::PENDING));
        ledger.transfers_total = transfers_total;
        ledger.id_max = ledger.id_max.max(transfer_id_max);
        ledger.check_invariants()?;
        Ok(ledger)
    }

    fn assemble(
        accounts: Vec<Account>,
        transfers: Vec<Transfer>,
        expired: Vec<Expiry>,
        failed: Vec<FailedId>,
        last_timestamp: u64,
    ) -> Result<Ledger, InvariantViolation> {
        let mut ledger = Ledger { last_timestamp, ..Ledger::with_capacity(accounts.len(), transfers.len()) };
        for account in accounts {
            ledger.totals.debits_pending += i128::from(account.debits_pending);
            ledger.totals.debits_posted += i128::from(account.debits_posted);
            ledger.totals.credits_pending += i128::from(account.credits_pending);
            ledger.totals.credits_posted += i128::from(account.credits_posted);
            ledger.accounts.insert(account.id, account);
        }
        for transfer in &transfers {
            if transfer.flags.contains(TransferFlags::PENDING) {
                ledger.pending.insert(transfer.id, PendingStatus::Pending);
            }
        }
        for transfer in &transfers {
            if transfer.flags.resolves_pending() {
                let status = if transfer.flags.contains(TransferFlags::POST_PENDING) {
                    PendingStatus::Posted
                } else {
                    PendingStatus::Voided
                };
                ledger.pending.insert(transfer.pending_id, status);
            }
        }
        for expiry in expired {
            ledger.pending.insert(expiry.pending_id, PendingStatus::Expired);
        }
        ledger.transfers_total = transfers.len() as u64;
        for transfer in transfers {
            ledger.id_max = ledger.id_max.max(transfer.id);
            ledger.transfers.insert(transfer.id, transfer);
        }
        for (&id, &status) in &ledger.pending {
            if status == PendingStatus::Pending
                && let Some(expires_at) = ledger.transfers.get(&id).and_then(expiry_instant)
            {
                ledger.expiry_queue.insert((expires_at, id));
            }
        }
        ledger.failed = failed.into_iter().map(|f| (f.id, f)).collect();
        ledger.id_max = ledger.failed.keys().copied().fold(ledger.id_max, u128::max);
        let newest = ledger
            .accounts
            .values()
            .map(|a| a.timestamp)
            .chain(ledger.transfers.values().map(|t| t.timestamp))
            .chain(ledger.failed.values().map(|f| f.timestamp))
            .max()
            .unwrap_or(0);
        if newest > last_timestamp {
            return Err(InvariantViolation(format!(
                "a record has timestamp {newest}, after the clock's {last_timestamp}"
            )));
        }
        Ok(ledger)
    }

    /// The checks that need no settled transfer: no negative balance, every limit holds, the
    /// books balance and agree with the running totals, no id both a transfer and a failure.
    fn check_balances_alone(&self) -> Result<(), InvariantViolation> {
        let fail = |message: String| Err(InvariantViolation(message));
        let mut totals = [0i128; 4];
        for account in self.accounts.values() {
            let stored = balances(account).map(i128::from);
            if stored.iter().any(|&b| b < 0) {
                return fail(format!("account {:#x} has a negative balance", account.id));
            }
            if !account.within_limits() {
                return fail(format!("account {:#x} breaks its balance limit", account.id));
            }
            for (total, value) in totals.iter_mut().zip(stored) {
                *total += value;
            }
        }
        if totals[0] != totals[2] || totals[1] != totals[3] {
            return fail(format!("the books do not balance: debits {:?}, credits {:?}", &totals[..2], &totals[2..]));
        }
        let kept = Totals {
            debits_pending: totals[0],
            debits_posted: totals[1],
            credits_pending: totals[2],
            credits_posted: totals[3],
        };
        if kept != self.totals {
            return fail("running totals differ from the sum over accounts".into());
        }
        if let Some(id) = self.failed.keys().find(|id| self.transfers.contains_key(id)) {
            return fail(format!("id {id:#x} is both a transfer and a failure"));
        }
        Ok(())
    }

    /// Pending statuses, for hashing and inspection.
    pub fn pending_statuses(&self) -> impl Iterator<Item = (u128, PendingStatus)> + '_ {
        self.pending.iter().map(|(&id, &status)| (id, status))
    }

    pub fn failed_ids(&self) -> impl Iterator<Item = &FailedId> {
        self.failed.values()
    }
}

enum Found {
    Exists(Transfer),
    Rejected(Reject),
}

fn balances(account: &Account) -> [i64; 4] {
    [account.debits_pending, account.debits_posted, account.credits_pending, account.credits_posted]
}

fn expiry_instant(transfer: &Transfer) -> Option<u64> {
    (transfer.timeout_s != 0).then(|| transfer.timestamp + u64::from(transfer.timeout_s) * NANOS_PER_SECOND)
}

/// Whether a resubmitted transfer is the same as the stored one. A post or void may leave the
/// accounts, ledger, code and amount zero ("as the pending transfer"), so a zero there matches
/// what was filled in; everything else must be equal.
fn same_transfer(submitted: &Transfer, stored: &Transfer) -> bool {
    let resolves = submitted.flags.resolves_pending();
    let matches = |given: u128, kept: u128| given == kept || (resolves && given == 0);
    submitted.flags.without_linked() == stored.flags
        && submitted.pending_id == stored.pending_id
        && submitted.timeout_s == stored.timeout_s
        && submitted.user_data == stored.user_data
        && matches(submitted.debit_account_id, stored.debit_account_id)
        && matches(submitted.credit_account_id, stored.credit_account_id)
        && matches(u128::from(submitted.ledger), u128::from(stored.ledger))
        && matches(u128::from(submitted.code), u128::from(stored.code))
        && (submitted.amount == stored.amount || (resolves && submitted.amount == 0))
}
