//! Random sequences of commands against one programme. After every command the service's state
//! must agree with the ledger everywhere; every refused command must change nothing; and a
//! restart must rebuild exactly the same state from the audit log.

use proptest::prelude::*;
use suanli_domain::{ApplicantKind, ApplicationId, EnterpriseId, Fen, OrderId, PoolId, ProviderId, VoucherId};
use suanli_service::calendar::YearMonth;
use suanli_service::model::{OperatorKind, Purpose, UsageInput};
use suanli_service::{OrderInput, Service, ServiceError};
use suanli_store::FsyncMode;

use crate::{SHANGHAI_LIKE, World, op};

#[derive(Clone, Debug)]
enum Step {
    Apply { enterprise: usize, yuan: i64 },
    Submit { application: usize },
    Approve { application: usize, percent: i64 },
    Reject { application: usize },
    Place { voucher: usize, pool: usize, gpus: u32, hours: u32 },
    Start { order: usize },
    Usage { order: usize, records: usize, load_percent: i64, id_offset: usize },
    Complete { order: usize },
    Cancel { order: usize },
    Suspend { voucher: usize },
    Reinstate { voucher: usize },
    Revoke { voucher: usize },
    Advance { hours: i64 },
    Sweep,
    Statement { provider: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, 1..900_000i64).prop_map(|(enterprise, yuan)| Step::Apply { enterprise, yuan }),
        3 => (0..8usize).prop_map(|application| Step::Submit { application }),
        3 => (0..8usize, 1..=100i64).prop_map(|(application, percent)| Step::Approve { application, percent }),
        1 => (0..8usize).prop_map(|application| Step::Reject { application }),
        3 => (0..6usize, 0..2usize, 1..300u32, 1..200u32).prop_map(|(voucher, pool, gpus, hours)| Step::Place { voucher, pool, gpus, hours }),
        2 => (0..8usize).prop_map(|order| Step::Start { order }),
        4 => (0..8usize, 1..40usize, 50..=110i64, 0..3usize).prop_map(|(order, records, load_percent, id_offset)| Step::Usage { order, records, load_percent, id_offset }),
        1 => (0..8usize).prop_map(|order| Step::Complete { order }),
        1 => (0..8usize).prop_map(|order| Step::Cancel { order }),
        1 => (0..6usize).prop_map(|voucher| Step::Suspend { voucher }),
        1 => (0..6usize).prop_map(|voucher| Step::Reinstate { voucher }),
        1 => (0..6usize).prop_map(|voucher| Step::Revoke { voucher }),
        2 => (1..2_500i64).prop_map(|hours| Step::Advance { hours }),
        1 => Just(Step::Sweep),
        1 => (0..2usize).prop_map(|provider| Step::Statement { provider }),
    ]
}

struct Model {
    w: World,
    enterprises: Vec<EnterpriseId>,
    providers: Vec<ProviderId>,
    pools: Vec<PoolId>,
    program: suanli_domain::ProgramId,
    next_usage: u64,
}

fn pick<T: Copy>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()])
}

impl Model {
    fn new() -> Model {
        let mut w = World::start_with(FsyncMode::Normal);
        let program = w.program(
            &SHANGHAI_LIKE
                .replace("budget_fen = 5_000_000_00", "budget_fen = 1_000_000_00")
                .replace("enterprise_cap_fen = 2_000_000_00", "enterprise_cap_fen = 600_000_00"),
        );
        let enterprises = vec![
            w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]),
            w.enterprise(2, 100_000, ApplicantKind::Startup, &["project"]),
            w.enterprise(3, 100_000, ApplicantKind::Startup, &[]),
        ];
        let (east, east_pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_800);
        let (west, west_pool) = w.provider(2, "640500", OperatorKind::StateOwned, "Ascend-910B", true, 1_200);
        // Start with two vouchers and an order running on each, so short sequences reach usage.
        for (enterprise, pool) in [(enterprises[0], east_pool), (enterprises[1], west_pool)] {
            let app =
                w.service.create_application(&op(), enterprise, program, Fen::from_yuan(300_000).unwrap(), "").unwrap();
            w.service.submit_application(&op(), app).unwrap();
            let voucher = w.service.approve_application(&op(), app, Fen::from_yuan(300_000).unwrap()).unwrap();
            let input = OrderInput {
                enterprise,
                voucher,
                pool,
                chip: None,
                gpu_count: 64,
                hours: 100,
                purpose: Purpose::Training,
            };
            let order = w.service.place_order(&op(), input).unwrap();
            w.service.start_order(&op(), order).unwrap();
        }
        w.clock.advance(3600);
        Model { w, enterprises, providers: vec![east, west], pools: vec![east_pool, west_pool], program, next_usage: 0 }
    }

    fn applications(&self) -> Vec<ApplicationId> {
        self.w.service.state().applications.keys().copied().collect()
    }
    fn vouchers(&self) -> Vec<VoucherId> {
        self.w.service.state().vouchers.keys().copied().collect()
    }
    fn orders(&self) -> Vec<OrderId> {
        self.w.service.state().orders.keys().copied().collect()
    }

    /// Runs one step; a refusal must leave everything as it was.
    fn run(&mut self, step: &Step) {
        let before = self.w.fingerprint();
        let entries = self.w.service.durable().log_count();
        let result: Result<(), ServiceError> = self.apply(step);
        if std::env::var_os("SUANLI_PROPERTY_TRACE").is_some() {
            let written = self.w.service.durable().log_count() - entries;
            eprintln!("{step:?} -> {:?} wrote {written}", result.as_ref().map_err(|e| e.code));
        }
        if let Err(error) = result {
            assert!(!error.is_internal(), "{step:?}: {error}");
            assert_eq!(self.w.fingerprint(), before, "{step:?} was refused ({error}) but changed something");
        }
        assert_eq!(self.w.service.check_books(), Vec::<String>::new(), "after {step:?}");
    }

    fn apply(&mut self, step: &Step) -> Result<(), ServiceError> {
        let (applications, vouchers, orders) = (self.applications(), self.vouchers(), self.orders());
        let s: &mut Service = &mut self.w.service;
        match *step {
            Step::Apply { enterprise, yuan } => s
                .create_application(&op(), self.enterprises[enterprise], self.program, Fen::from_yuan(yuan)?, "")
                .map(|_| ()),
            Step::Submit { application } => {
                let Some(app) = pick(&applications, application) else { return Ok(()) };
                s.submit_application(&op(), app)
            }
            Step::Approve { application, percent } => {
                let Some(app) = pick(&applications, application) else { return Ok(()) };
                let requested = s.application(app)?.requested_fen;
                let amount = Fen::new((requested.fen() * percent / 100).max(1));
                s.approve_application(&op(), app, amount).map(|_| ())
            }
            Step::Reject { application } => {
                let Some(app) = pick(&applications, application) else { return Ok(()) };
                s.reject_application(&op(), app, "property test")
            }
            Step::Place { voucher, pool, gpus, hours } => {
                let Some(voucher) = pick(&vouchers, voucher) else { return Ok(()) };
                let enterprise = s.voucher(voucher)?.enterprise;
                let input = OrderInput {
                    enterprise,
                    voucher,
                    pool: self.pools[pool],
                    chip: None,
                    gpu_count: gpus,
                    hours,
                    purpose: Purpose::Training,
                };
                s.place_order(&op(), input).map(|_| ())
            }
            Step::Start { order } => {
                let Some(order) = pick(&orders, order) else { return Ok(()) };
                s.start_order(&op(), order)
            }
            Step::Usage { order, records, load_percent, id_offset } => {
                let Some(order) = pick(&orders, order) else { return Ok(()) };
                let o = s.order(order)?.clone();
                let Some(started) = o.started_at_s else { return Ok(()) };
                let until = o.ended_at_s.unwrap_or_else(|| s.now_s());
                let from = o.usage_until_s.unwrap_or(started);
                let span = (until - from) / records as i64;
                if span <= 0 {
                    return Ok(());
                }
                // Some ids repeat earlier ones (retries and replays).
                let first = self.next_usage.saturating_sub(id_offset as u64 * 5);
                let inputs: Vec<UsageInput> = (0..records as i64)
                    .map(|i| UsageInput {
                        id: format!("u{}", first + i as u64),
                        order,
                        gpu_seconds: (i64::from(o.quote.gpu_count) * span * load_percent / 100).max(1),
                        period_start_s: from + i * span,
                        period_end_s: from + (i + 1) * span,
                    })
                    .collect();
                self.next_usage = first + records as u64;
                s.record_usage(&op(), o.provider, &inputs).map(|_| ())
            }
            Step::Complete { order } => {
                let Some(order) = pick(&orders, order) else { return Ok(()) };
                s.complete_order(&op(), order).map(|_| ())
            }
            Step::Cancel { order } => {
                let Some(order) = pick(&orders, order) else { return Ok(()) };
                s.cancel_order(&op(), order).map(|_| ())
            }
            Step::Suspend { voucher } => {
                let Some(voucher) = pick(&vouchers, voucher) else { return Ok(()) };
                s.suspend_voucher(&op(), voucher, "property test")
            }
            Step::Reinstate { voucher } => {
                let Some(voucher) = pick(&vouchers, voucher) else { return Ok(()) };
                s.reinstate_voucher(&op(), voucher)
            }
            Step::Revoke { voucher } => {
                let Some(voucher) = pick(&vouchers, voucher) else { return Ok(()) };
                s.revoke_voucher(&op(), voucher, "property test").map(|_| ())
            }
            Step::Advance { hours } => {
                self.w.clock.advance(hours * 3600);
                Ok(())
            }
            Step::Sweep => s.sweep(&op()).map(|_| ()),
            Step::Statement { provider } => {
                let last_month = YearMonth::of(s.now_s() - 32 * 86_400);
                let id = s.issue_statement(&op(), self.providers[provider], self.program, last_month)?;
                s.approve_statement(&op(), id)
            }
        }
    }
}

/// Runs `steps` on a fresh world and checks the books, the programme's money and a restart.
fn check(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    for step in steps {
        model.run(step);
    }
    let program = model.w.service.program(model.program).unwrap().clone();
    // Money in = money out + balances, for the programme.
    let vouchers: Vec<_> = model.w.service.state().vouchers.values().cloned().collect();
    let held: i64 = vouchers.iter().map(|v| v.available_fen.fen() + v.held_fen.fen()).sum();
    prop_assert_eq!(program.budget_remaining_fen.fen() + held + program.spent_fen.fen(), 1_000_000_00);
    let before = model.w.fingerprint();
    model.w.restart();
    prop_assert_eq!(model.w.fingerprint(), before);
    prop_assert_eq!(model.w.service.check_books(), Vec::<String>::new());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_keep_the_books_and_survive_a_restart(steps in proptest::collection::vec(step(), 1..80)) {
        check(&steps)?;
    }
}

proptest! {
    // Fewer cases: each makes a PostgreSQL database.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The same property on PostgreSQL, when `SUANLI_TEST_POSTGRES` is set.
    #[test]
    fn random_commands_keep_the_books_and_survive_a_restart_on_postgres(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        suanli_store::scratch::with_postgres(|| check(&steps)).unwrap_or(Ok(()))?;
    }
}
