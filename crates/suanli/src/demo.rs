//! `suanli demo`: the money flows of one voucher programme, step by step, on a fresh embedded
//! database, ending with the audit.
//!
//! This walks the ledger alone (DESIGN.md §4, flows 1–7) with the amounts of a Shanghai-like
//! programme. The programme rules, applications, the HTTP API and the simulated month come with
//! the service layer; until then this is what the binary can show end to end.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use suanli_domain::{Fen, RateBp};
use suanli_ledger::{AccountFlags, Event, NewAccount, Outcome, Transfer, TransferFlags, to_hex};
use suanli_store::{Durable, FsyncMode, SqliteStore, StoreError};

const CNY: u32 = 156;

/// The demo's accounts: (id, name, flags). Budgets and vouchers may not go below zero.
const ACCOUNTS: &[(u128, &str, AccountFlags)] = &[
    (1, "Shanghai appropriation", AccountFlags::empty()),
    (2, "Shanghai compute programme budget", AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
    (10, "voucher: Pudong AI start-up", AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
    (11, "voucher: Qingpu research institute", AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
    (20, "Pudong AI start-up (pays its share)", AccountFlags::empty()),
    (30, "Wuhu cluster receivable (owed to it)", AccountFlags::empty()),
    (40, "settlement", AccountFlags::empty()),
];

struct Walkthrough {
    durable: Durable<SqliteStore>,
    clock_ns: u64,
    next_id: u128,
}

impl Walkthrough {
    fn step(&mut self, title: &str, events: &[Event]) -> anyhow::Result<Vec<Outcome>> {
        self.clock_ns += 3_600_000_000_000; // an hour passes between steps
        let outcomes = self.durable.apply(self.clock_ns, events)?.outcomes;
        let codes: Vec<&str> = outcomes.iter().map(Outcome::code).collect();
        println!("  {title:<68} {}", codes.join(", "));
        Ok(outcomes)
    }

    fn id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    fn transfer(&mut self, debit: u128, credit: u128, amount: Fen, flags: TransferFlags) -> Transfer {
        Transfer {
            id: self.id(),
            debit_account_id: debit,
            credit_account_id: credit,
            amount: amount.fen(),
            ledger: CNY,
            code: 1,
            flags,
            ..Transfer::default()
        }
    }

    fn available(&self, id: u128) -> Fen {
        let account = self.durable.ledger().account(id).expect("demo account exists");
        Fen::new(i64::try_from(account.credit_balance_available()).expect("demo amounts are small"))
    }
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    replace_earlier_demo(path)?;
    let store = SqliteStore::open(path, FsyncMode::Full)?;
    let mut walk = Walkthrough { durable: Durable::open(store)?, clock_ns: 1_767_225_600_000_000_000, next_id: 1_000 };
    let rate = RateBp::new(8_000)?;
    println!("Suanli demo: one voucher programme's money, on {}\n", path.display());

    let accounts: Vec<Event> = ACCOUNTS
        .iter()
        .map(|&(id, _, flags)| Event::CreateAccount(NewAccount { id, ledger: CNY, code: 1, flags, user_data: 0 }))
        .collect();
    walk.step("open the accounts", &accounts)?;

    let budget = Fen::from_yuan(600_000_000)?;
    let fund = walk.transfer(1, 2, budget, TransferFlags::empty());
    walk.step(&format!("1. fund the programme with {budget}"), &[Event::CreateTransfer(fund)])?;

    let face = Fen::from_yuan(1_500_000)?;
    let issue_a = walk.transfer(2, 10, face, TransferFlags::empty());
    let issue_b = walk.transfer(2, 11, face, TransferFlags::empty());
    walk.step(
        &format!("2. issue two vouchers of {face} (budget taken at issue)"),
        &[Event::CreateTransfer(issue_a), Event::CreateTransfer(issue_b)],
    )?;

    // 64 GPUs for 72 hours at ¥25 per GPU-hour.
    let price = Fen::parse("25.00")?;
    let expected = price.checked_mul(64 * 72)?;
    let hold_amount = rate.share_floor(expected);
    let mut hold = walk.transfer(10, 30, hold_amount, TransferFlags::PENDING);
    hold.timeout_s = 30 * 24 * 3_600;
    walk.step(
        &format!("3. place an order: {expected} expected, hold {rate} = {hold_amount}"),
        &[Event::CreateTransfer(hold)],
    )?;

    // Three usage records of 24 hours each. Each is one linked chain: release the hold, post the
    // voucher's part, post the enterprise's part, and hold what is left of the order.
    let mut current_hold = hold;
    let mut voucher_total = Fen::ZERO;
    let mut enterprise_total = Fen::ZERO;
    for day in 1..=3 {
        let cost = price.checked_mul(64 * 24)?;
        let voucher_part = rate.share_floor(cost).min(Fen::new(current_hold.amount));
        let enterprise_part = cost.checked_sub(voucher_part)?;
        let remaining = Fen::new(current_hold.amount).checked_sub(voucher_part)?;
        let linked = TransferFlags::LINKED;
        let release = Transfer {
            id: walk.id(),
            pending_id: current_hold.id,
            flags: TransferFlags::VOID_PENDING.union(linked),
            ..Transfer::default()
        };
        let voucher_leg = walk.transfer(10, 30, voucher_part, linked);
        let enterprise_leg =
            walk.transfer(20, 30, enterprise_part, if remaining > Fen::ZERO { linked } else { TransferFlags::empty() });
        let mut events =
            vec![release, voucher_leg, enterprise_leg].into_iter().map(Event::CreateTransfer).collect::<Vec<_>>();
        if remaining > Fen::ZERO {
            current_hold =
                Transfer { timeout_s: 30 * 24 * 3_600, ..walk.transfer(10, 30, remaining, TransferFlags::PENDING) };
            events.push(Event::CreateTransfer(current_hold));
        }
        walk.step(
            &format!("4. usage day {day}: {cost} = voucher {voucher_part} + enterprise {enterprise_part}"),
            &events,
        )?;
        voucher_total = voucher_total.checked_add(voucher_part)?;
        enterprise_total = enterprise_total.checked_add(enterprise_part)?;
    }
    if walk.durable.ledger().pending_status(current_hold.id) == Some(suanli_ledger::PendingStatus::Pending) {
        let release = Transfer {
            id: walk.id(),
            pending_id: current_hold.id,
            flags: TransferFlags::VOID_PENDING,
            ..Transfer::default()
        };
        walk.step("5. complete the order: release what is left of the hold", &[Event::CreateTransfer(release)])?;
    }

    let overspend = walk.transfer(10, 30, face, TransferFlags::empty());
    walk.step(&format!("   refused: spend {face} more from the first voucher"), &[Event::CreateTransfer(overspend)])?;

    let unspent = walk.available(11);
    let expire = walk.transfer(11, 2, unspent, TransferFlags::empty());
    walk.step(
        &format!("6. the second voucher expires: {unspent} returns to the budget"),
        &[Event::CreateTransfer(expire)],
    )?;

    let receivable = voucher_total.checked_add(enterprise_total)?;
    let settle = walk.transfer(30, 40, receivable, TransferFlags::empty());
    walk.step(
        &format!("7. approve the month's settlement: {receivable} to the provider"),
        &[Event::CreateTransfer(settle)],
    )?;

    println!("\n  {:<40} {:>22} {:>22}", "account", "debits posted", "credits posted");
    for &(id, name, _) in ACCOUNTS {
        let account = walk.durable.ledger().account(id).expect("created above");
        println!(
            "  {name:<40} {:>22} {:>22}",
            Fen::new(account.debits_posted).to_string(),
            Fen::new(account.credits_posted).to_string()
        );
    }
    println!("\n  voucher paid   {voucher_total}  ({})", voucher_total.to_chinese_uppercase());
    println!("  enterprise paid {enterprise_total}  ({})", enterprise_total.to_chinese_uppercase());
    println!("  budget left    {}", walk.available(2));
    let head = walk.durable.journal_head();
    let batches = walk.durable.batch_count();
    drop(walk);

    println!("\nsuanli audit verify --database {}", path.display());
    let code = crate::audit::verify(path)?;
    println!("\n{batches} batches committed; journal head {}", to_hex(&head));
    Ok(code)
}

/// Removes the database at `path` if it is an earlier demo (a suanli database), so the demo can
/// run again; refuses to touch any other file.
fn replace_earlier_demo(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match SqliteStore::open_existing(path) {
        Ok(store) => drop(store),
        Err(error @ (StoreError::NotSuanli { .. } | StoreError::Open { .. } | StoreError::Missing { .. })) => {
            return Err(error).context("--database names a file that is not a suanli database; choose another path");
        }
        Err(error) => return Err(error.into()),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        if Path::new(&file).exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing the earlier demo database {file}"))?;
        }
    }
    Ok(())
}
