//! The cross-check between the service's state and the ledger.
//!
//! The service keeps balances of its own (a voucher's available money, an order's remaining
//! hold, a programme's budget) to decide quickly; the ledger keeps the authoritative ones. After
//! the audit log is replayed, every mirrored balance must equal its ledger account, every voucher
//! must add up (face value = available + held + spent + returned), and every ledger account must
//! belong to something the state knows. `suanli audit verify` runs this on any database.

use std::collections::{HashMap, HashSet};

use suanli_domain::Fen;
use suanli_ledger::Ledger;

use crate::books::{AccountKind, account_id};
use crate::model::StatementState;
use crate::state::State;

/// Every disagreement between the state and the ledger, in words; empty when they agree.
pub fn check_books(state: &State, ledger: &Ledger) -> Vec<String> {
    let mut problems = Vec::new();
    let mut known = HashSet::new();
    let mut expect = |name: String, id: u128, credit_balance: i128| {
        known.insert(id);
        let actual = ledger.account(id).map(|a| a.credit_balance_posted());
        if actual != Some(credit_balance) {
            problems.push(format!("{name}: the state says {credit_balance} fen, the ledger says {actual:?}"));
        }
    };
    let fen = |f: Fen| i128::from(f.fen());
    let mut funded_by_authority: HashMap<u64, i128> = HashMap::new();
    for program in state.programs.values() {
        let id = program.id.get();
        expect(
            format!("{} budget", program.id),
            account_id(AccountKind::Budget, id, 0),
            fen(program.budget_remaining_fen),
        );
        expect(
            format!("{} settlement", program.id),
            account_id(AccountKind::Settlement, id, 0),
            fen(program.settled_fen),
        );
        // What left the appropriation: the budget plus everything issued, less what went back.
        let net = fen(program.budget_remaining_fen) + fen(program.issued_fen) - fen(program.returned_fen);
        *funded_by_authority.entry(program.authority.get()).or_default() += net;
    }
    for authority in state.authorities.values() {
        let net = funded_by_authority.get(&authority.id.get()).copied().unwrap_or(0);
        expect(
            format!("{} appropriation", authority.id),
            account_id(AccountKind::Appropriation, authority.id.get(), 0),
            -net,
        );
    }
    let mut problems_vouchers = Vec::new();
    for voucher in state.vouchers.values() {
        expect(
            format!("{}", voucher.id),
            account_id(AccountKind::Voucher, voucher.id.get(), 0),
            fen(voucher.available_fen),
        );
        let parts =
            fen(voucher.available_fen) + fen(voucher.held_fen) + fen(voucher.spent_fen) + fen(voucher.returned_fen);
        if parts != fen(voucher.face_value_fen) {
            problems_vouchers.push(format!(
                "{}: available + held + spent + returned = {parts} fen, face value {}",
                voucher.id,
                voucher.face_value_fen.fen()
            ));
        }
        if voucher.spent_fen > voucher.face_value_fen {
            problems_vouchers.push(format!("{}: spent more than its face value", voucher.id));
        }
    }
    let mut receivable: HashMap<(u64, u64), i128> = HashMap::new();
    let mut direct: HashMap<u64, i128> = HashMap::new();
    for ((provider, program), total) in &state.voucher_parts_fen {
        *receivable.entry((provider.get(), program.get())).or_default() += total;
    }
    for (provider, total) in &state.enterprise_parts_fen {
        *direct.entry(provider.get()).or_default() += total;
    }
    for statement in state.statements.values().filter(|s| s.state == StatementState::Approved) {
        *receivable.entry((statement.provider.get(), statement.program.get())).or_default() -=
            fen(statement.voucher_total_fen);
    }
    for order in state.orders.values() {
        expect(
            format!("{} hold", order.id),
            account_id(AccountKind::Hold, order.id.get(), 0),
            fen(order.hold_remaining_fen),
        );
        receivable.entry((order.provider.get(), order.program.get())).or_default();
    }
    for ((provider, program), balance) in receivable {
        expect(
            format!("prv-{provider} receivable for prg-{program}"),
            account_id(AccountKind::ProviderReceivable, provider, program),
            balance,
        );
    }
    for provider in state.providers.values() {
        let balance = direct.get(&provider.id.get()).copied().unwrap_or(0);
        expect(
            format!("{} direct receivable", provider.id),
            account_id(AccountKind::ProviderDirect, provider.id.get(), 0),
            balance,
        );
    }
    for enterprise in state.enterprises.values() {
        expect(
            format!("{} account", enterprise.id),
            account_id(AccountKind::Enterprise, enterprise.id.get(), 0),
            -fen(enterprise.paid_fen),
        );
    }
    // The trade between regions: each region's account mirrors its balance, and every fen one
    // region bought another sold.
    let mut regions_total: i128 = 0;
    for (region, balance) in &state.region_trade_fen {
        expect(
            format!("region {region} trade"),
            account_id(AccountKind::RegionTrade, u64::from(region.code()), 0),
            *balance,
        );
        regions_total += balance;
    }
    if regions_total != 0 {
        problems.push(format!("the regions' trade balances add up to {regions_total} fen, not 0"));
    }
    problems.extend(problems_vouchers);
    // An archived order's hold stays in the ledger, empty.
    let placed = state.orders.len() as u64 + state.orders_archived;
    for account in ledger.accounts() {
        let order = (account.id >> 56) as u64 & ((1 << 56) - 1);
        if account.id >> 112 == AccountKind::Hold as u128
            && !known.contains(&account.id)
            && (1..=placed).contains(&order)
        {
            if account.credit_balance_posted() != 0 {
                problems.push(format!(
                    "ord-{order} is archived but its hold holds {} fen",
                    account.credit_balance_posted()
                ));
            }
            continue;
        }
        if !known.contains(&account.id) {
            problems.push(format!("ledger account {:#x} belongs to nothing the service knows", account.id));
        }
    }
    problems
}
