//! Property tests: random command sequences, invalid ones and retries included, never break an
//! invariant, and replaying the journal into a fresh ledger reproduces the same state hash.

use proptest::prelude::*;
use suanli_ledger::{
    AccountFlags, Event, Expiry, FailedId, Ledger, NewAccount, Outcome, Transfer, TransferFlags, state_hash,
};

use crate::*;

const ACCOUNTS: u128 = 6;

fn account_flags(index: u128) -> AccountFlags {
    match index % 3 {
        0 => AccountFlags::empty(),
        1 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        _ => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
    }
}

/// One random event over a small id space, so that collisions, retries, unknown ids and
/// resolutions of earlier holds happen often.
fn event() -> impl Strategy<Value = Event> {
    let id = 1u128..40;
    // Mostly real accounts; sometimes 0 (invalid) or ACCOUNTS + 1 (unknown until created).
    let account_id = prop_oneof![8 => 1u128..=ACCOUNTS, 1 => Just(0u128), 1 => Just(ACCOUNTS + 1)];
    let amount = prop_oneof![12 => 1i64..2_000, 1 => Just(0), 1 => Just(-1), 1 => Just(i64::MAX)];
    let linked = prop_oneof![5 => Just(false), 1 => Just(true)];
    let code = prop_oneof![10 => Just(CODE), 1 => Just(0u16)];
    (0u8..10, id, account_id.clone(), account_id, amount, 0u32..3, linked, code).prop_map(
        |(kind, id, debit, credit, amount, timeout_s, linked, code)| {
            let linked_flag = if linked { TransferFlags::LINKED } else { TransferFlags::empty() };
            let base = Transfer {
                id,
                debit_account_id: debit,
                credit_account_id: credit,
                amount,
                ledger: LEDGER,
                code,
                ..Transfer::default()
            };
            match kind {
                0 => Event::CreateAccount(NewAccount {
                    id: debit,
                    ledger: LEDGER,
                    code: CODE,
                    flags: account_flags(debit),
                    user_data: u128::from(code == 0),
                }),
                1..=3 => Event::CreateTransfer(Transfer { flags: linked_flag, ..base }),
                4..=6 => Event::CreateTransfer(Transfer {
                    flags: TransferFlags::PENDING.union(linked_flag),
                    timeout_s,
                    ..base
                }),
                7 | 8 => Event::CreateTransfer(Transfer {
                    id: id + 100,
                    pending_id: id,
                    flags: TransferFlags::POST_PENDING.union(linked_flag),
                    amount: if amount > 0 { amount % 700 } else { 0 },
                    ..Transfer::default()
                }),
                _ => Event::CreateTransfer(Transfer {
                    id: id + 200,
                    pending_id: id,
                    flags: TransferFlags::VOID_PENDING.union(linked_flag),
                    ..Transfer::default()
                }),
            }
        },
    )
}

/// Batches with clock readings that mostly advance by a second, sometimes by minutes (so holds
/// expire) and sometimes step back.
fn batches() -> impl Strategy<Value = Vec<(u64, Vec<Event>)>> {
    let step = prop_oneof![Just(1_000_000_000u64), Just(0), Just(200_000_000_000)];
    prop::collection::vec((step, prop::collection::vec(event(), 0..12)), 1..25).prop_map(|steps| {
        let mut now = 0;
        steps
            .into_iter()
            .map(|(step, events)| {
                now += step;
                (now, events)
            })
            .collect()
    })
}

fn genesis() -> Vec<Event> {
    let mut events: Vec<Event> = (1..=ACCOUNTS)
        .map(|id| {
            Event::CreateAccount(NewAccount { id, ledger: LEDGER, code: CODE, flags: account_flags(id), user_data: 0 })
        })
        .collect();
    // Fund the limited accounts from the unlimited ones so that transfers can succeed.
    events.push(Event::CreateTransfer(transfer(1_000, 3, 1, 5_000)));
    events.push(Event::CreateTransfer(transfer(1_001, 6, 4, 5_000)));
    events.push(Event::CreateTransfer(transfer(1_002, 2, 3, 3_000)));
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_batches_keep_every_invariant_and_replay_to_the_same_hash(batches in batches()) {
        let mut ledger = Ledger::new();
        ledger.apply(1, &genesis()).unwrap();
        let mut journal = vec![(1, genesis())];
        let (mut transfers, mut expired, mut failed): (Vec<Transfer>, Vec<Expiry>, Vec<FailedId>) = Default::default();
        let mut accounts_created = Vec::new();
        // Keep what storage would keep, starting with the genesis batch.
        {
            let mut replay = Ledger::new();
            let changes = replay.apply(1, &genesis()).unwrap().changes;
            accounts_created.extend(changes.accounts_created);
            transfers.extend(changes.transfers_created);
        }
        for (now, events) in &batches {
            let before = money(&ledger);
            // A batch that storage refused is taken back exactly: same hash, same invariants.
            let hash_before = state_hash(&ledger);
            ledger.apply(*now, events).unwrap();
            prop_assert!(ledger.revert_last_batch());
            prop_assert!(!ledger.revert_last_batch(), "a batch is taken back once");
            prop_assert_eq!(state_hash(&ledger), hash_before);
            ledger.check_invariants().map_err(|v| TestCaseError::fail(v.to_string()))?;
            let result = ledger.apply(*now, events).unwrap();
            prop_assert_eq!(result.outcomes.len(), events.len());
            ledger.check_invariants().map_err(|v| TestCaseError::fail(v.to_string()))?;
            // Nothing changed unless some event succeeded or a hold expired.
            let applied = result.outcomes.iter().any(|o| matches!(o, Outcome::Ok(_)));
            if !applied && result.changes.expired.is_empty() {
                prop_assert_eq!(money(&ledger), before);
            }
            // Every successful transfer is in the changes exactly once, and nothing else is.
            let ok_transfers = events.iter().zip(&result.outcomes)
                .filter(|(e, o)| matches!(e, Event::CreateTransfer(_)) && matches!(o, Outcome::Ok(_))).count();
            prop_assert_eq!(ok_transfers, result.changes.transfers_created.len());
            accounts_created.extend(result.changes.accounts_created.iter().copied());
            transfers.extend(result.changes.transfers_created.iter().copied());
            expired.extend(result.changes.expired.iter().copied());
            failed.extend(result.changes.failed.iter().copied());
            journal.push((*now, events.clone()));

            // Retry the whole batch, as a client that lost the answer would: every event that
            // succeeded answers `exists` with its first receipt, and every transfer id the batch
            // marked failed answers `id_already_failed`.
            let retry = ledger.apply(*now, events).unwrap();
            ledger.check_invariants().map_err(|v| TestCaseError::fail(v.to_string()))?;
            for ((event, first), again) in events.iter().zip(&result.outcomes).zip(&retry.outcomes) {
                if let Outcome::Ok(receipt) = first {
                    // A later event of the same batch may have reused the id; only the first use counts.
                    let first_use = events.iter().position(|e| e.id() == event.id() && std::mem::discriminant(e) == std::mem::discriminant(event));
                    let is_first_use = first_use.map(|i| std::ptr::eq(&events[i], event)).unwrap_or(false);
                    if is_first_use && !retry_is_chain_member(events, event) {
                        prop_assert_eq!(*again, Outcome::Exists(*receipt), "retry of {:?}", event);
                    }
                }
            }
            for failed in &result.changes.failed {
                let position = events.iter().zip(&result.outcomes).position(|(e, o)| {
                    e.id() == failed.id && matches!(e, Event::CreateTransfer(_)) && *o == Outcome::Rejected(failed.reason)
                });
                if let Some(index) = position && !retry_is_chain_member(events, &events[index]) {
                    prop_assert_eq!(retry.outcomes[index], Outcome::Rejected(suanli_ledger::Reject::IdAlreadyFailed));
                }
            }
            accounts_created.extend(retry.changes.accounts_created.iter().copied());
            transfers.extend(retry.changes.transfers_created.iter().copied());
            expired.extend(retry.changes.expired.iter().copied());
            failed.extend(retry.changes.failed.iter().copied());
            journal.push((*now, events.clone()));
        }
        // Replaying the journal gives the same state, byte for byte.
        let mut replayed = Ledger::new();
        for (now, events) in &journal {
            replayed.apply(*now, events).unwrap();
        }
        prop_assert_eq!(state_hash(&replayed), state_hash(&ledger));
        // Restoring from what storage keeps gives the same state too.
        let accounts: Vec<_> = ledger.accounts().copied().collect();
        let restored = Ledger::restore(accounts, transfers, expired, failed, ledger.last_timestamp())
            .map_err(|v| TestCaseError::fail(v.to_string()))?;
        prop_assert_eq!(state_hash(&restored), state_hash(&ledger));
        prop_assert_eq!(accounts_created.len(), ledger.account_count());
    }
}

/// Whether `event` is part of a linked chain of more than one event in `events`. In a retried
/// chain another member may now fail (an id that was free is now used), which fails the whole
/// chain with `linked_event_failed`, so chain members are checked only through the invariants.
fn retry_is_chain_member(events: &[Event], event: &Event) -> bool {
    let index = events.iter().position(|e| std::ptr::eq(e, event)).expect("event is in the batch");
    event.is_linked() || (index > 0 && events[index - 1].is_linked())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A ledger that forgets settled transfers once their batch is stored, and gets back from
    /// "storage" only the ids `history_needed` names, answers every event exactly as a ledger
    /// that keeps everything, and reaches the same state hash: idempotency stays exact with
    /// history out of memory. Each batch is also retried, so old ids are looked up.
    #[test]
    fn forgetting_settled_transfers_changes_no_answer(batches in batches()) {
        let mut whole = Ledger::new();
        let mut forgetful = Ledger::new();
        let mut stored: std::collections::HashMap<u128, Transfer> = std::collections::HashMap::new();
        let mut settled_before: Vec<u128> = Vec::new();
        let all = std::iter::once((1, genesis())).chain(batches.iter().cloned()).flat_map(|b| [b.clone(), b]);
        for (index, (now, events)) in all.enumerate() {
            let needed = forgetful.history_needed(&events);
            if index % 2 == 1 {
                // The retry of a batch names every settled transfer the batch created: only
                // storage can answer `exists` for them now.
                for id in &settled_before {
                    prop_assert!(needed.contains(id), "{:#x} is looked up", id);
                }
            }
            forgetful.remember(needed.iter().filter_map(|id| stored.get(id).copied()));
            let expected = whole.apply(now, &events).unwrap();
            let got = forgetful.apply(now, &events).unwrap();
            prop_assert_eq!(&got.outcomes, &expected.outcomes);
            prop_assert_eq!(&got.changes, &expected.changes);
            stored.extend(got.changes.transfers_created.iter().map(|t| (t.id, *t)));
            settled_before = got
                .changes
                .transfers_created
                .iter()
                .filter(|t| !t.flags.contains(TransferFlags::PENDING))
                .map(|t| t.id)
                .collect();
            forgetful.forget_settled();
            prop_assert_eq!(state_hash(&forgetful), state_hash(&whole));
            forgetful.check_invariants().map_err(|v| TestCaseError::fail(v.to_string()))?;
            prop_assert!(forgetful.transfers().all(|t| t.flags.contains(TransferFlags::PENDING)));
        }
    }
}
