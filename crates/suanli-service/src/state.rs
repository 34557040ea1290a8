//! The service's state in memory, changed only by applying [`Event`]s.
//!
//! `apply` is the one place state changes, used both when a command commits and when the audit
//! log is replayed at start-up, so what was decided and what is rebuilt cannot differ. It never
//! fails: every check happened before the event was made. The asserts guard that promise.
//!
//! The maps are persistent (`imbl`): cloning a `State` takes constant time and shares every node,
//! and a change copies only the path it touches. The writer keeps the state as of the last commit
//! beside the one a command is changing, so a refused commit returns to it at once, and readers
//! get their own copy after every commit without waiting for the writer.
//!
//! What grows with history and is only looked up by id (the usage records, for idempotency) is
//! not here: it lives in [`UsageBook`], beside the state.

use imbl::{OrdMap as BTreeMap, Vector};

use crate::occupancy::{self, Occupancy};

use suanli_domain::{
    ApplicationId, AuthorityId, EnterpriseId, Fen, OrderId, PoolId, ProgramId, ProviderId, RegionCode, RequestId,
    SiteId, StatementId, Uscc, VoucherId,
};

use crate::market::{CapacityOffer, Clearing};
use crate::requests::{OrderRequest, RequestState};

use crate::access::{Token, User};
use crate::calendar::{YearMonth, shanghai_year};
use crate::event::Event;
use crate::model::{
    Anomaly, Application, ApplicationState, Authority, Enterprise, LineSums, NetworkCluster, Order, OrderState,
    Ownership, Pool, Program, ProgramState, Provider, SettledKey, Site, Statement, StatementLine, StatementState,
    UsageInput, UsageRecord, Voucher, VoucherState,
};

/// What happened to a usage record id, as storage keeps it for retries: the body's facts (to tell
/// a retry from a conflicting reuse of the id) and the first answer. Compact, since one is kept
/// for every id ever sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UsageEntry {
    /// Facts, cost, voucher part, enterprise part.
    #[serde(rename = "r")]
    Recorded(UsageFacts, Fen, Fen, Fen),
    /// Facts, code, message.
    #[serde(rename = "x")]
    Refused(UsageFacts, String, String),
}

impl UsageEntry {
    /// What the record said, whatever its result.
    pub fn facts(&self) -> UsageFacts {
        match self {
            UsageEntry::Recorded(facts, ..) | UsageEntry::Refused(facts, ..) => *facts,
        }
    }
}

/// What a usage record said, besides its id: order, GPU-seconds, period start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageFacts(pub OrderId, pub i64, pub i64, pub i64);

impl UsageFacts {
    pub fn of(input: &UsageInput) -> UsageFacts {
        UsageFacts(input.order, input.gpu_seconds, input.period_start_s, input.period_end_s)
    }
}

type ImHashMap<K, V> = imbl::HashMap<K, V>;

/// How many of the newest anomalies the state keeps in memory: anomalies grow with what callers
/// send (forged batches, refused records), so memory keeps only the newest.
pub const ANOMALIES_IN_MEMORY: usize = 1_000;

#[derive(Clone, Debug, Default)]
pub struct State {
    pub authorities: BTreeMap<AuthorityId, Authority>,
    pub programs: BTreeMap<ProgramId, Program>,
    pub enterprises: BTreeMap<EnterpriseId, Enterprise>,
    pub applications: BTreeMap<ApplicationId, Application>,
    pub vouchers: BTreeMap<VoucherId, Voucher>,
    pub providers: BTreeMap<ProviderId, Provider>,
    pub sites: BTreeMap<SiteId, Site>,
    pub pools: BTreeMap<PoolId, Pool>,
    /// The orders not archived: open ones, and ended ones still taking late usage records.
    pub orders: BTreeMap<OrderId, Order>,
    /// How many orders were archived (they live in storage; ids run on past them).
    pub orders_archived: u64,
    /// When each programme's first order at each site was placed (the outcome report's
    /// before-and-after pivot; kept here since orders leave memory).
    pub orders_began: BTreeMap<(ProgramId, SiteId), i64>,
    /// Statements; an approved one's lines leave memory for storage (its lines are then empty
    /// and their sums are in `settled`).
    pub statements: BTreeMap<StatementId, Statement>,
    /// The lines of archived statements, summed by programme, month, pool and the enterprise's
    /// group.
    pub settled: BTreeMap<SettledKey, LineSums>,
    /// The newest anomalies (at most [`ANOMALIES_IN_MEMORY`]); every one is in the log.
    pub anomalies: Vector<Anomaly>,
    /// Voucher parts received per enterprise, programme and Asia/Shanghai calendar year.
    pub annual_used: ImHashMap<(EnterpriseId, ProgramId, i32), Fen>,
    /// Usage not yet on a statement, per provider, programme and month of recording, per order.
    pub unsettled: BTreeMap<(ProviderId, ProgramId, YearMonth), BTreeMap<OrderId, StatementLine>>,
    pub authority_by_region: ImHashMap<RegionCode, AuthorityId>,
    pub program_by_key: ImHashMap<String, ProgramId>,
    pub enterprise_by_uscc: ImHashMap<Uscc, EnterpriseId>,
    /// Each programme's applications submitted and not decided (an index: first come, first
    /// served and the lottery look at them).
    pub submitted: ImHashMap<ProgramId, imbl::OrdSet<ApplicationId>>,
    /// Each enterprise's vouchers (an index: the caps and the stacking rule look at them).
    pub vouchers_by_enterprise: ImHashMap<EnterpriseId, Vector<VoucherId>>,
    pub provider_by_uscc: ImHashMap<Uscc, ProviderId>,
    pub usage_recorded: u64,
    pub usage_refused: u64,
    /// Voucher parts recorded per provider and programme, and enterprise parts per provider: what
    /// the provider's ledger accounts must have received (checked by `check_books`).
    pub voucher_parts_fen: BTreeMap<(ProviderId, ProgramId), i128>,
    pub enterprise_parts_fen: BTreeMap<ProviderId, i128>,
    pub tokens: BTreeMap<u64, Token>,
    /// How many expired tokens were purged from memory (ids go on past them).
    pub tokens_purged: u64,
    /// Live (unrevoked) tokens by the SHA-256 of their secret, in hex.
    pub token_by_hash: ImHashMap<String, u64>,
    pub users: BTreeMap<String, User>,
    /// The GPUs each open order's usage occupies over time (dropped when the order ends).
    pub occupancy: BTreeMap<OrderId, Occupancy>,
    /// Declared control of enterprises and providers, by party id (`ent-N`, `prv-N`).
    pub ownership: BTreeMap<String, Ownership>,
    /// The imported registry of hubs and clusters (empty until imported).
    pub network: Vector<NetworkCluster>,
    /// Orders submitted to the scheduling loop: waiting, and decided.
    pub requests: BTreeMap<RequestId, OrderRequest>,
    /// The scheduling loop's rounds that decided anything.
    pub rounds: u64,
    /// How many requests each enterprise has waiting (an index, rebuilt from `requests`).
    pub requests_waiting: ImHashMap<EnterpriseId, u32>,
    /// Capacity offered to the market between hub nodes.
    pub offers: BTreeMap<suanli_domain::OfferId, CapacityOffer>,
    /// The latest clearings of the market, oldest first (at most [`CLEARINGS_KEPT`]; every one
    /// stays in the audit log), and how many there have been.
    pub clearings: Vector<Clearing>,
    pub clearings_done: u64,
    /// Each region's trade balance: the usage its sites delivered on orders bought through
    /// clearings less the usage its programmes' traded orders took, in fen (mirrors the
    /// `RegionTrade` ledger accounts).
    pub region_trade_fen: BTreeMap<RegionCode, i128>,
    /// The orders bought through clearings, with their buying and selling regions: each usage
    /// record of one is booked between the two (dropped when the order is archived).
    pub traded_orders: BTreeMap<OrderId, (RegionCode, RegionCode)>,
}

/// How many clearings the state keeps for reading.
pub const CLEARINGS_KEPT: usize = 1_000;

/// One request of `enterprise` no longer waiting.
fn unwait(waiting: &mut ImHashMap<EnterpriseId, u32>, enterprise: EnterpriseId) {
    if let Some(count) = waiting.get_mut(&enterprise) {
        *count -= 1;
        if *count == 0 {
            waiting.remove(&enterprise);
        }
    }
}

fn next<K: Ord, V>(map: &BTreeMap<K, V>) -> u64 {
    map.len() as u64 + 1
}

impl State {
    pub fn next_authority(&self) -> AuthorityId {
        AuthorityId::new(next(&self.authorities)).expect("positive")
    }
    pub fn next_program(&self) -> ProgramId {
        ProgramId::new(next(&self.programs)).expect("positive")
    }
    pub fn next_enterprise(&self) -> EnterpriseId {
        EnterpriseId::new(next(&self.enterprises)).expect("positive")
    }
    pub fn next_application(&self) -> ApplicationId {
        ApplicationId::new(next(&self.applications)).expect("positive")
    }
    pub fn next_voucher(&self) -> VoucherId {
        VoucherId::new(next(&self.vouchers)).expect("positive")
    }
    pub fn next_provider(&self) -> ProviderId {
        ProviderId::new(next(&self.providers)).expect("positive")
    }
    pub fn next_site(&self) -> SiteId {
        SiteId::new(next(&self.sites)).expect("positive")
    }
    pub fn next_offer(&self) -> suanli_domain::OfferId {
        suanli_domain::OfferId::new(next(&self.offers)).expect("positive")
    }
    pub fn next_request(&self) -> RequestId {
        RequestId::new(next(&self.requests)).expect("positive")
    }
    pub fn next_pool(&self) -> PoolId {
        PoolId::new(next(&self.pools)).expect("positive")
    }
    pub fn next_order(&self) -> OrderId {
        OrderId::new(self.orders.len() as u64 + self.orders_archived + 1).expect("positive")
    }
    pub fn next_statement(&self) -> StatementId {
        StatementId::new(next(&self.statements)).expect("positive")
    }

    pub fn annual_used(&self, enterprise: EnterpriseId, program: ProgramId, time_s: i64) -> Fen {
        self.annual_used.get(&(enterprise, program, shanghai_year(time_s))).copied().unwrap_or(Fen::ZERO)
    }

    /// Applies one event at `time_s`. Never fails; panics only if the event contradicts the state,
    /// which would mean a bug in the checks that made it.
    pub fn apply(&mut self, event: &Event, time_s: i64) {
        match event {
            Event::AuthorityCreated { authority } => {
                self.authority_by_region.insert(authority.region, authority.id);
                insert_new(&mut self.authorities, authority.id, authority.clone());
            }
            Event::ProgramLoaded { program } => {
                self.program_by_key.insert(program.terms.key.clone(), program.id);
                insert_new(&mut self.programs, program.id, program.to_model());
            }
            Event::ProgramOpened { program, funded_fen } => {
                let program = self.programs.get_mut(program).expect("program exists");
                assert_eq!(program.state, ProgramState::Draft);
                program.state = ProgramState::Open;
                program.budget_remaining_fen = add(program.budget_remaining_fen, *funded_fen);
            }
            Event::ProgramClosed { program } => {
                let program = self.programs.get_mut(program).expect("program exists");
                assert_eq!(program.state, ProgramState::Open);
                program.state = ProgramState::Closed;
            }
            Event::ProgramFinished { program, returned_fen } => {
                let program = self.programs.get_mut(program).expect("program exists");
                program.state = ProgramState::Finished;
                program.budget_remaining_fen = sub(program.budget_remaining_fen, *returned_fen);
            }
            Event::EnterpriseRegistered { enterprise } => {
                self.enterprise_by_uscc.insert(enterprise.uscc, enterprise.id);
                insert_new(&mut self.enterprises, enterprise.id, enterprise.to_model());
            }
            Event::ApplicationCreated { application } => {
                insert_new(&mut self.applications, application.id, application.to_model());
            }
            Event::ApplicationSubmitted { application } => {
                let application = self.applications.get_mut(application).expect("application exists");
                assert_eq!(application.state, ApplicationState::Draft);
                application.state = ApplicationState::Submitted;
                application.submitted_at_s = Some(time_s);
                let (program, id) = (application.program, application.id);
                self.submitted.entry(program).or_default().insert(id);
            }
            Event::ApplicationApproved { application, voucher } => {
                let application = self.applications.get_mut(application).expect("application exists");
                assert_eq!(application.state, ApplicationState::Submitted);
                application.state = ApplicationState::Approved;
                application.decided_at_s = Some(time_s);
                let (program, id) = (application.program, application.id);
                if let Some(set) = self.submitted.get_mut(&program) {
                    set.remove(&id);
                }
                application.approved_fen = Some(voucher.face_value_fen);
                application.voucher = Some(voucher.id);
                let program = self.programs.get_mut(&voucher.program).expect("program exists");
                program.budget_remaining_fen = sub(program.budget_remaining_fen, voucher.face_value_fen);
                program.issued_fen = add(program.issued_fen, voucher.face_value_fen);
                insert_new(&mut self.vouchers, voucher.id, voucher.to_model());
                self.vouchers_by_enterprise.entry(voucher.enterprise).or_default().push_back(voucher.id);
            }
            Event::ApplicationRejected { application, reason } => {
                let application = self.applications.get_mut(application).expect("application exists");
                assert_eq!(application.state, ApplicationState::Submitted);
                application.state = ApplicationState::Rejected;
                application.decided_at_s = Some(time_s);
                application.reason = Some(reason.clone());
                let (program, id) = (application.program, application.id);
                if let Some(set) = self.submitted.get_mut(&program) {
                    set.remove(&id);
                }
            }
            Event::ApplicationWithdrawn { application } => {
                let application = self.applications.get_mut(application).expect("application exists");
                application.state = ApplicationState::Withdrawn;
                application.decided_at_s = Some(time_s);
                let (program, id) = (application.program, application.id);
                if let Some(set) = self.submitted.get_mut(&program) {
                    set.remove(&id);
                }
            }
            Event::ProviderRegistered { provider } => {
                self.provider_by_uscc.insert(provider.uscc, provider.id);
                insert_new(&mut self.providers, provider.id, provider.to_model());
            }
            Event::SiteAdded { site } => insert_new(&mut self.sites, site.id, site.to_model()),
            Event::PoolAdded { pool } => insert_new(&mut self.pools, pool.id, pool.to_model()),
            Event::RequestSubmitted { request } => {
                assert_eq!(request.state, RequestState::Waiting);
                *self.requests_waiting.entry(request.enterprise).or_default() += 1;
                insert_new(&mut self.requests, request.id, (**request).clone());
            }
            Event::RequestWithdrawn { request } => {
                let request = self.requests.get_mut(request).expect("request exists");
                assert_eq!(request.state, RequestState::Waiting);
                request.state = RequestState::Withdrawn;
                unwait(&mut self.requests_waiting, request.enterprise);
            }
            Event::RequestDecided { request, round, decision, .. } => {
                self.rounds = self.rounds.max(*round);
                let request = self.requests.get_mut(request).expect("request exists");
                assert_eq!(request.state, RequestState::Waiting);
                assert!(matches!(decision.state, RequestState::Placed | RequestState::Refused));
                request.state = decision.state;
                request.decision = Some((**decision).clone());
                unwait(&mut self.requests_waiting, request.enterprise);
            }
            Event::OfferPosted { offer } => insert_new(&mut self.offers, offer.id, (**offer).clone()),
            Event::OfferWithdrawn { offer } => {
                let offer = self.offers.get_mut(offer).expect("offer exists");
                assert!(offer.withdrawn_at_s.is_none());
                offer.withdrawn_at_s = Some(time_s);
            }
            Event::MarketCleared { clearing } => {
                assert_eq!(clearing.clearing, self.clearings_done + 1, "clearings are numbered in turn");
                self.clearings_done = clearing.clearing;
                for trade in &clearing.trades {
                    let offer = self.offers.get_mut(&trade.offer).expect("offer exists");
                    offer.gpus_sold += trade.gpus;
                    assert!(offer.gpus_sold <= offer.gpus, "a clearing sells no more than offered");
                    self.region_trade_fen.entry(trade.buyer_region).or_default();
                    self.region_trade_fen.entry(trade.seller_region).or_default();
                    self.traded_orders.insert(trade.order, (trade.buyer_region, trade.seller_region));
                }
                self.clearings.push_back((**clearing).clone());
                if self.clearings.len() > CLEARINGS_KEPT {
                    self.clearings.pop_front();
                }
            }
            Event::OrderPlaced { order } => {
                let pool = self.pools.get_mut(&order.pool).expect("pool exists");
                pool.gpus_reserved += order.quote.gpu_count;
                assert!(pool.gpus_reserved <= pool.gpu_count, "placement checked capacity");
                let voucher = self.vouchers.get_mut(&order.voucher).expect("voucher exists");
                voucher.available_fen = sub(voucher.available_fen, order.hold_fen);
                voucher.held_fen = add(voucher.held_fen, order.hold_fen);
                let began = self.orders_began.entry((order.program, pool.site)).or_insert(order.placed_at_s);
                *began = (*began).min(order.placed_at_s);
                insert_new(&mut self.orders, order.id, order.to_model());
            }
            Event::OrdersArchived { orders } => {
                for id in orders {
                    let order = self.orders.remove(id).expect("order exists");
                    assert!(order.ended_at_s.is_some() && order.hold_remaining_fen == Fen::ZERO);
                    self.occupancy.remove(id);
                    self.traded_orders.remove(id);
                    self.orders_archived += 1;
                }
            }
            Event::OrderStarted { order } => {
                let order = self.orders.get_mut(order).expect("order exists");
                assert_eq!(order.state, OrderState::Placed);
                order.state = OrderState::Running;
                order.started_at_s = Some(time_s);
            }
            Event::OrderExtended { order, hours, hold_fen } => {
                let order = self.orders.get_mut(order).expect("order exists");
                assert!(matches!(order.state, OrderState::Placed | OrderState::Running));
                order.extended_hours += hours;
                order.hold_fen = add(order.hold_fen, *hold_fen);
                order.hold_remaining_fen = add(order.hold_remaining_fen, *hold_fen);
                let voucher = self.vouchers.get_mut(&order.voucher).expect("voucher exists");
                voucher.available_fen = sub(voucher.available_fen, *hold_fen);
                voucher.held_fen = add(voucher.held_fen, *hold_fen);
            }
            Event::OrderEnded { order, state, released_fen, returned_fen } => {
                let order = self.orders.get_mut(order).expect("order exists");
                assert!(matches!(order.state, OrderState::Placed | OrderState::Running));
                assert_eq!(*released_fen, order.hold_remaining_fen);
                order.state = *state;
                order.ended_at_s = Some(time_s);
                order.hold_remaining_fen = Fen::ZERO;
                // Late records of the run are still checked against the rest; the order's
                // occupancy is summarized small (it only ever overstates) to bound memory.
                if let Some(occupancy) = self.occupancy.get_mut(&order.id) {
                    occupancy.compact(occupancy::ENDED_BREAKPOINTS_MAX);
                }
                let pool = self.pools.get_mut(&order.pool).expect("pool exists");
                pool.gpus_reserved -= order.quote.gpu_count;
                let voucher = self.vouchers.get_mut(&order.voucher).expect("voucher exists");
                voucher.held_fen = sub(voucher.held_fen, *released_fen);
                voucher.available_fen = sub(add(voucher.available_fen, *released_fen), *returned_fen);
                voucher.returned_fen = add(voucher.returned_fen, *returned_fen);
                let program = self.programs.get_mut(&voucher.program).expect("program exists");
                program.budget_remaining_fen = add(program.budget_remaining_fen, *returned_fen);
                program.returned_fen = add(program.returned_fen, *returned_fen);
            }
            Event::OrderHoldReleased { order, voucher, released_fen } => {
                let order = self.orders.get_mut(order).expect("order exists");
                assert_eq!(order.voucher, *voucher);
                assert_eq!(order.hold_remaining_fen, *released_fen);
                order.hold_remaining_fen = Fen::ZERO;
                let voucher = self.vouchers.get_mut(voucher).expect("voucher exists");
                voucher.held_fen = sub(voucher.held_fen, *released_fen);
                voucher.available_fen = add(voucher.available_fen, *released_fen);
            }
            Event::SiteVerified { site } => {
                let site = self.sites.get_mut(site).expect("site exists");
                assert!(site.verified_at_s.is_none());
                site.verified_at_s = Some(time_s);
            }
            Event::UsageRecorded { record } => self.apply_usage(record, time_s),
            Event::UsageRefused { .. } => {
                self.usage_refused += 1;
                self.remember_anomaly(event, time_s);
            }
            Event::VoucherSuspended { voucher, reason } => {
                let voucher = self.vouchers.get_mut(voucher).expect("voucher exists");
                assert_eq!(voucher.state, VoucherState::Active);
                voucher.state = VoucherState::Suspended;
                voucher.reason = Some(reason.clone());
            }
            Event::VoucherReinstated { voucher } => {
                let voucher = self.vouchers.get_mut(voucher).expect("voucher exists");
                assert_eq!(voucher.state, VoucherState::Suspended);
                voucher.state = VoucherState::Active;
                voucher.reason = None;
            }
            Event::VoucherRevoked { voucher, reason, released, returned_fen } => {
                for (order, amount) in released {
                    let order = self.orders.get_mut(order).expect("order exists");
                    assert_eq!(order.hold_remaining_fen, *amount);
                    order.hold_remaining_fen = Fen::ZERO;
                }
                let released_total = released.iter().map(|(_, amount)| *amount).fold(Fen::ZERO, add);
                let record = self.vouchers.get_mut(voucher).expect("voucher exists");
                record.state = VoucherState::Revoked;
                record.reason = Some(reason.clone());
                self.return_voucher_balance(*voucher, released_total, *returned_fen);
            }
            Event::VoucherExpired { voucher, returned_fen } => {
                self.vouchers.get_mut(voucher).expect("voucher exists").state = VoucherState::Expired;
                self.return_voucher_balance(*voucher, Fen::ZERO, *returned_fen);
            }
            Event::StatementIssued { statement } => {
                let month = YearMonth::parse(&statement.month).expect("statements carry a valid month");
                self.unsettled.remove(&(statement.provider, statement.program, month));
                insert_new(&mut self.statements, statement.id, statement.to_model());
            }
            Event::StatementApproved { statement } => {
                let statement = self.statements.get_mut(statement).expect("statement exists");
                assert_eq!(statement.state, StatementState::Issued);
                statement.state = StatementState::Approved;
                statement.approved_at_s = Some(time_s);
                let program = self.programs.get_mut(&statement.program).expect("program exists");
                program.settled_fen = add(program.settled_fen, statement.voucher_total_fen);
            }
            Event::AnomalyFlagged { .. } => self.remember_anomaly(event, time_s),
            Event::ProviderKeyRegistered { provider, public_key_hex } => {
                self.providers.get_mut(provider).expect("provider exists").public_key_hex =
                    Some(public_key_hex.clone());
            }
            Event::NetworkImported { clusters } => self.network = clusters.iter().cloned().collect(),
            Event::OwnershipDeclared { party, ownership } => {
                self.ownership.insert(party.clone(), ownership.clone());
            }
            Event::TokenIssued { token } => {
                self.token_by_hash.insert(token.secret_sha256_hex.clone(), token.id);
                let previous = self.tokens.insert(token.id, token.to_model());
                assert!(previous.is_none(), "token ids are assigned once");
            }
            Event::UserCreated { user } => {
                let previous = self.users.insert(user.name.clone(), user.clone());
                assert!(previous.is_none(), "user names are unique");
            }
            Event::StatementsArchived { statements } => {
                for id in statements {
                    let statement = self.statements.get_mut(id).expect("statement exists");
                    assert_eq!(statement.state, StatementState::Approved);
                    let month = YearMonth::parse(&statement.month).expect("a statement's month is valid");
                    for line in std::mem::take(&mut statement.lines) {
                        let enterprise = &self.enterprises[&line.enterprise];
                        let key = SettledKey {
                            program: statement.program,
                            month: (month.year, month.month),
                            pool: line.pool,
                            kind: enterprise.kind,
                            province: enterprise.region.province(),
                            size_band: crate::model::size_band(enterprise.headcount),
                        };
                        self.settled.entry(key).or_default().add(&LineSums::of(&line));
                    }
                }
            }
            Event::TokensPurged { tokens } => {
                for id in tokens {
                    let token = self.tokens.remove(id).expect("token exists");
                    assert!(token.expires_at_s.is_some_and(|e| e <= time_s), "only expired tokens are purged");
                    if self.token_by_hash.get(&token.secret_sha256_hex) == Some(id) {
                        self.token_by_hash.remove(&token.secret_sha256_hex);
                    }
                    self.tokens_purged += 1;
                }
            }
            Event::TokenRevoked { token } => {
                let token = self.tokens.get_mut(token).expect("token exists");
                token.revoked = true;
                self.token_by_hash.remove(&token.secret_sha256_hex);
            }
            Event::PoolChanged { pool, gpu_count, price_fen_per_gpu_hour } => {
                let pool = self.pools.get_mut(pool).expect("pool exists");
                assert!(*gpu_count >= pool.gpus_reserved, "a pool is never made smaller than its orders");
                pool.gpu_count = *gpu_count;
                pool.price_fen_per_gpu_hour = *price_fen_per_gpu_hour;
            }
            Event::ProgramAmended { program, terms } => {
                let program = self.programs.get_mut(program).expect("program exists");
                assert_eq!(program.state, ProgramState::Draft, "only a draft is amended");
                program.terms = (**terms).clone();
            }
            Event::LotteryCommitted { program, round, seed_sha256, closes_at_s } => {
                let program = self.programs.get_mut(program).expect("program exists");
                assert!(program.lotteries.iter().all(|r| r.drawn_at_s.is_some()), "one round open at a time");
                assert_eq!(*round as usize, program.lotteries.len() + 1);
                program.lotteries.push(crate::model::LotteryRound::committed(
                    *round,
                    seed_sha256,
                    time_s,
                    *closes_at_s,
                ));
            }
            Event::LotteryDrawn { program, round, seed, participants, budget_fen, drawn } => {
                let program = self.programs.get_mut(program).expect("program exists");
                let open = program.lotteries.last_mut().expect("a committed round");
                assert!(open.round == *round && open.drawn_at_s.is_none());
                open.record_draw(time_s, seed, participants, *budget_fen, drawn);
            }
            Event::PoolRetired { pool } => {
                self.pools.get_mut(pool).expect("pool exists").retired_at_s = Some(time_s);
            }
            Event::UserDisabled { name } => self.users.get_mut(name).expect("user exists").disabled = true,
            Event::UserEnabled { name } => self.users.get_mut(name).expect("user exists").disabled = false,
            Event::UserPasswordSet { name, password_phc } => {
                self.users.get_mut(name).expect("user exists").password_phc = password_phc.clone();
            }
        }
    }

    /// Adds holds released by a revocation back to the voucher, then moves its whole available
    /// balance to its programme's budget.
    /// Keeps the newest [`ANOMALIES_IN_MEMORY`] anomalies at hand; all of them are in the log,
    /// where the API and the CLI page through them.
    fn remember_anomaly(&mut self, event: &Event, time_s: i64) {
        if let Some(anomaly) = event.anomaly(time_s) {
            self.anomalies.push_back(anomaly);
            while self.anomalies.len() > ANOMALIES_IN_MEMORY {
                self.anomalies.pop_front();
            }
        }
    }

    fn return_voucher_balance(&mut self, voucher: VoucherId, released: Fen, returned: Fen) {
        let voucher = self.vouchers.get_mut(&voucher).expect("voucher exists");
        voucher.held_fen = sub(voucher.held_fen, released);
        voucher.available_fen = add(voucher.available_fen, released);
        assert_eq!(voucher.available_fen, returned, "the whole available balance returns to the budget");
        voucher.available_fen = Fen::ZERO;
        voucher.returned_fen = add(voucher.returned_fen, returned);
        let program = self.programs.get_mut(&voucher.program).expect("program exists");
        program.budget_remaining_fen = add(program.budget_remaining_fen, returned);
        program.returned_fen = add(program.returned_fen, returned);
    }

    fn apply_usage(&mut self, record: &UsageRecord, time_s: i64) {
        let order = self.orders.get_mut(&record.input.order).expect("order exists");
        order.gpu_seconds += record.input.gpu_seconds;
        let input = &record.input;
        self.occupancy.entry(order.id).or_default().add(
            input.period_start_s,
            input.period_end_s,
            occupancy::rate(input.gpu_seconds, input.period_start_s, input.period_end_s),
        );
        order.usage_until_s =
            Some(order.usage_until_s.map_or(record.input.period_end_s, |u| u.max(record.input.period_end_s)));
        order.cost_fen = add(order.cost_fen, record.cost_fen);
        if let Some(&(buyer, seller)) = self.traded_orders.get(&order.id) {
            let cost = i128::from(record.cost_fen.fen());
            *self.region_trade_fen.entry(buyer).or_default() -= cost;
            *self.region_trade_fen.entry(seller).or_default() += cost;
        }
        order.voucher_paid_fen = add(order.voucher_paid_fen, record.voucher_part_fen);
        order.enterprise_paid_fen = add(order.enterprise_paid_fen, record.enterprise_part_fen);
        order.hold_remaining_fen = sub(order.hold_remaining_fen, record.voucher_part_fen);
        assert!(order.hold_remaining_fen >= Fen::ZERO, "a voucher part never exceeds the hold");
        order.usage_records += 1;
        let (enterprise, voucher_id, pool) = (order.enterprise, order.voucher, order.pool);
        let voucher = self.vouchers.get_mut(&voucher_id).expect("voucher exists");
        voucher.held_fen = sub(voucher.held_fen, record.voucher_part_fen);
        voucher.spent_fen = add(voucher.spent_fen, record.voucher_part_fen);
        assert!(voucher.spent_fen <= voucher.face_value_fen, "voucher parts never exceed the face value");
        let program = self.programs.get_mut(&record.program).expect("program exists");
        program.spent_fen = add(program.spent_fen, record.voucher_part_fen);
        let enterprise_record = self.enterprises.get_mut(&enterprise).expect("enterprise exists");
        enterprise_record.paid_fen = add(enterprise_record.paid_fen, record.enterprise_part_fen);
        let used = self.annual_used.entry((enterprise, record.program, shanghai_year(time_s))).or_default();
        *used = add(*used, record.voucher_part_fen);
        let line = self
            .unsettled
            .entry((record.provider, record.program, YearMonth::of(time_s)))
            .or_default()
            .entry(record.input.order)
            .or_insert(StatementLine {
                order: record.input.order,
                enterprise,
                pool,
                usage_records: 0,
                gpu_seconds: 0,
                cost_fen: Fen::ZERO,
                voucher_part_fen: Fen::ZERO,
                enterprise_part_fen: Fen::ZERO,
            });
        line.usage_records += 1;
        line.gpu_seconds += record.input.gpu_seconds;
        line.cost_fen = add(line.cost_fen, record.cost_fen);
        line.voucher_part_fen = add(line.voucher_part_fen, record.voucher_part_fen);
        line.enterprise_part_fen = add(line.enterprise_part_fen, record.enterprise_part_fen);
        *self.voucher_parts_fen.entry((record.provider, record.program)).or_default() +=
            i128::from(record.voucher_part_fen.fen());
        *self.enterprise_parts_fen.entry(record.provider).or_default() += i128::from(record.enterprise_part_fen.fen());
        self.usage_recorded += 1;
    }
}

/// The usage decision an event carries, if any: its key and what a retry must answer. The
/// decisions live in storage (`usage_ids`), written with the log entry that made them.
pub fn usage_decision(event: &Event) -> Option<((ProviderId, String), UsageEntry)> {
    match event {
        Event::UsageRecorded { record } => {
            let entry = UsageEntry::Recorded(
                UsageFacts::of(&record.input),
                record.cost_fen,
                record.voucher_part_fen,
                record.enterprise_part_fen,
            );
            Some(((record.provider, record.input.id.clone()), entry))
        }
        Event::UsageRefused { provider, input, code, message } => Some((
            (*provider, input.id.clone()),
            UsageEntry::Refused(UsageFacts::of(input), code.clone(), message.clone()),
        )),
        _ => None,
    }
}

fn insert_new<K: Ord + Clone + std::fmt::Debug, V: Clone>(map: &mut BTreeMap<K, V>, key: K, value: V) {
    let previous = map.insert(key, value);
    assert!(previous.is_none(), "ids are assigned once");
}

/// Sums that the checks already bounded (see `Service::check_totals`); an overflow here is a bug,
/// not an input error.
pub(crate) fn add(a: Fen, b: Fen) -> Fen {
    a.checked_add(b).expect("checked before the event was made")
}

pub(crate) fn sub(a: Fen, b: Fen) -> Fen {
    a.checked_sub(b).expect("checked before the event was made")
}

/// The version of the checkpoint format written by [`State::to_checkpoint`].
/// Version 2 added the orders' occupancy; a version-1 checkpoint still loads (each open order's
/// used period counts as fully occupied, which may refuse a late record but never admits one too
/// many) and the audit compares it in its own version. Version 3 added when each programme
/// began at each site (`orders_began`, derived from the orders in an older checkpoint, which
/// holds all of them) and the count of archived orders.
pub const CHECKPOINT_VERSION: u32 = 3;

/// An order's occupancy as a checkpoint keeps it: (breakpoint, level) pairs.
type Steps = Vec<(i64, i64)>;

/// The state as a checkpoint keeps it: every object once, in id order, and the sums; the lookup
/// indexes are rebuilt from the objects. A schema of its own (versioned), apart from the events
/// and the API's JSON.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    version: u32,
    authorities: Vec<Authority>,
    programs: Vec<Program>,
    enterprises: Vec<Enterprise>,
    applications: Vec<Application>,
    vouchers: Vec<Voucher>,
    providers: Vec<Provider>,
    sites: Vec<Site>,
    pools: Vec<Pool>,
    orders: Vec<Order>,
    statements: Vec<Statement>,
    anomalies: Vec<Anomaly>,
    annual_used: Vec<(EnterpriseId, ProgramId, i32, Fen)>,
    /// Per provider, programme and month ("2026-03"): the lines of the orders not yet on a statement.
    unsettled: Vec<(ProviderId, ProgramId, String, Vec<StatementLine>)>,
    usage_recorded: u64,
    usage_refused: u64,
    voucher_parts_fen: Vec<(ProviderId, ProgramId, i128)>,
    enterprise_parts_fen: Vec<(ProviderId, i128)>,
    tokens: Vec<Token>,
    users: Vec<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    occupancy: Option<Vec<(OrderId, Steps)>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ownership: Vec<(String, Ownership)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    network: Vec<NetworkCluster>,
    #[serde(default, skip_serializing_if = "is_zero")]
    orders_archived: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    tokens_purged: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    settled: Vec<(SettledKey, LineSums)>,
    /// Absent from a checkpoint written before orders were archived (it holds every order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    orders_began: Option<Vec<(ProgramId, SiteId, i64)>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    requests: Vec<OrderRequest>,
    #[serde(default, skip_serializing_if = "is_zero")]
    rounds: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offers: Vec<CapacityOffer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clearings: Vec<Clearing>,
    #[serde(default, skip_serializing_if = "is_zero")]
    clearings_done: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    region_trade_fen: Vec<(RegionCode, i128)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    traded_orders: Vec<(OrderId, RegionCode, RegionCode)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl State {
    /// The state as checkpoint JSON. Equal states give equal text (every collection is in id
    /// order), so the audit compares a checkpoint with a replay by text.
    pub fn to_checkpoint(&self) -> String {
        self.to_checkpoint_as(CHECKPOINT_VERSION)
    }

    /// The checkpoint text without the occupancies (derived data: a cache of the usage records
    /// of open orders, rebuilt conservatively from a version-1 checkpoint), for comparing a
    /// stored checkpoint with a replay.
    pub fn comparable_checkpoint(&self) -> String {
        State::comparable(&self.to_checkpoint())
    }

    /// A checkpoint's text with its occupancies and version left out.
    pub fn comparable(text: &str) -> String {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(mut fields)) => {
                fields.remove("occupancy");
                fields.remove("version");
                serde_json::Value::Object(fields).to_string()
            }
            _ => text.to_owned(),
        }
    }

    /// The state as a checkpoint of `version` would have kept it (the audit compares an older
    /// checkpoint in its own terms).
    pub fn to_checkpoint_as(&self, version: u32) -> String {
        let saved = Saved {
            version,
            authorities: self.authorities.values().cloned().collect(),
            programs: self.programs.values().cloned().collect(),
            enterprises: self.enterprises.values().cloned().collect(),
            applications: self.applications.values().cloned().collect(),
            vouchers: self.vouchers.values().cloned().collect(),
            providers: self.providers.values().cloned().collect(),
            sites: self.sites.values().cloned().collect(),
            pools: self.pools.values().cloned().collect(),
            orders: self.orders.values().cloned().collect(),
            statements: self.statements.values().cloned().collect(),
            anomalies: self.anomalies.iter().cloned().collect(),
            annual_used: {
                let mut used: Vec<_> = self.annual_used.iter().map(|(&(e, p, y), &f)| (e, p, y, f)).collect();
                used.sort_unstable_by_key(|&(e, p, y, _)| (e, p, y));
                used
            },
            unsettled: self
                .unsettled
                .iter()
                .map(|(&(provider, program, month), lines)| {
                    (provider, program, month.to_string(), lines.values().cloned().collect())
                })
                .collect(),
            usage_recorded: self.usage_recorded,
            usage_refused: self.usage_refused,
            voucher_parts_fen: self.voucher_parts_fen.iter().map(|(&(p, g), &t)| (p, g, t)).collect(),
            enterprise_parts_fen: self.enterprise_parts_fen.iter().map(|(&p, &t)| (p, t)).collect(),
            tokens: self.tokens.values().cloned().collect(),
            users: self.users.values().cloned().collect(),
            occupancy: (version >= 2).then(|| self.occupancy.iter().map(|(order, o)| (*order, o.steps())).collect()),
            ownership: self.ownership.iter().map(|(party, o)| (party.clone(), o.clone())).collect(),
            network: self.network.iter().cloned().collect(),
            orders_archived: self.orders_archived,
            tokens_purged: self.tokens_purged,
            settled: self.settled.iter().map(|(k, v)| (*k, *v)).collect(),
            orders_began: (version >= 3).then(|| self.orders_began.iter().map(|(&(p, s), &t)| (p, s, t)).collect()),
            requests: self.requests.values().cloned().collect(),
            rounds: self.rounds,
            offers: self.offers.values().cloned().collect(),
            clearings: self.clearings.iter().cloned().collect(),
            clearings_done: self.clearings_done,
            region_trade_fen: self.region_trade_fen.iter().map(|(&r, &f)| (r, f)).collect(),
            traded_orders: self.traded_orders.iter().map(|(&o, &(b, s))| (o, b, s)).collect(),
        };
        serde_json::to_string(&saved).expect("the state serializes")
    }

    /// Reads a checkpoint written by [`State::to_checkpoint`].
    pub fn from_checkpoint(text: &str) -> Result<State, String> {
        let saved: Saved = serde_json::from_str(text).map_err(|e| format!("the checkpoint cannot be read: {e}"))?;
        if !(1..=CHECKPOINT_VERSION).contains(&saved.version) {
            return Err(format!("checkpoint version {} is not {CHECKPOINT_VERSION}", saved.version));
        }
        let mut state = State::default();
        for authority in saved.authorities {
            state.authority_by_region.insert(authority.region, authority.id);
            state.authorities.insert(authority.id, authority);
        }
        for program in saved.programs {
            state.program_by_key.insert(program.terms.key.clone(), program.id);
            state.programs.insert(program.id, program);
        }
        for enterprise in saved.enterprises {
            state.enterprise_by_uscc.insert(enterprise.uscc, enterprise.id);
            state.enterprises.insert(enterprise.id, enterprise);
        }
        state.applications = saved.applications.into_iter().map(|a| (a.id, a)).collect();
        for a in state.applications.values().filter(|a| a.state == ApplicationState::Submitted) {
            state.submitted.entry(a.program).or_default().insert(a.id);
        }
        state.vouchers = saved.vouchers.into_iter().map(|v| (v.id, v)).collect();
        for voucher in state.vouchers.values() {
            state.vouchers_by_enterprise.entry(voucher.enterprise).or_default().push_back(voucher.id);
        }
        for provider in saved.providers {
            state.provider_by_uscc.insert(provider.uscc, provider.id);
            state.providers.insert(provider.id, provider);
        }
        state.sites = saved.sites.into_iter().map(|s| (s.id, s)).collect();
        state.pools = saved.pools.into_iter().map(|p| (p.id, p)).collect();
        state.orders = saved.orders.into_iter().map(|o| (o.id, o)).collect();
        state.orders_archived = saved.orders_archived;
        state.tokens_purged = saved.tokens_purged;
        state.settled = saved.settled.into_iter().collect();
        state.orders_began = match saved.orders_began {
            Some(kept) => kept.into_iter().map(|(p, s, t)| ((p, s), t)).collect(),
            None => {
                let mut began = BTreeMap::new();
                for o in state.orders.values() {
                    let site =
                        state.pools.get(&o.pool).ok_or_else(|| format!("checkpoint: {} has no pool", o.id))?.site;
                    let first = began.entry((o.program, site)).or_insert(o.placed_at_s);
                    *first = (*first).min(o.placed_at_s);
                }
                began
            }
        };
        state.statements = saved.statements.into_iter().map(|s| (s.id, s)).collect();
        state.anomalies = saved.anomalies.into_iter().collect();
        state.annual_used = saved.annual_used.into_iter().map(|(e, p, y, f)| ((e, p, y), f)).collect();
        for (provider, program, month, lines) in saved.unsettled {
            let month = YearMonth::parse(&month).ok_or_else(|| format!("checkpoint: month {month:?}"))?;
            state.unsettled.insert((provider, program, month), lines.into_iter().map(|l| (l.order, l)).collect());
        }
        state.usage_recorded = saved.usage_recorded;
        state.usage_refused = saved.usage_refused;
        state.voucher_parts_fen = saved.voucher_parts_fen.into_iter().map(|(p, g, t)| ((p, g), t)).collect();
        state.enterprise_parts_fen = saved.enterprise_parts_fen.into_iter().collect();
        for token in saved.tokens {
            if !token.revoked {
                state.token_by_hash.insert(token.secret_sha256_hex.clone(), token.id);
            }
            state.tokens.insert(token.id, token);
        }
        state.users = saved.users.into_iter().map(|u| (u.name.clone(), u)).collect();
        state.ownership = saved.ownership.into_iter().collect();
        state.network = saved.network.into_iter().collect();
        state.requests = saved.requests.into_iter().map(|r| (r.id, r)).collect();
        for r in state.requests.values().filter(|r| r.state == RequestState::Waiting) {
            *state.requests_waiting.entry(r.enterprise).or_default() += 1;
        }
        state.rounds = saved.rounds;
        state.offers = saved.offers.into_iter().map(|o| (o.id, o)).collect();
        state.clearings = saved.clearings.into_iter().collect();
        state.clearings_done = saved.clearings_done;
        state.region_trade_fen = saved.region_trade_fen.into_iter().collect();
        state.traded_orders = saved.traded_orders.into_iter().map(|(o, b, s)| (o, (b, s))).collect();
        state.occupancy = match saved.occupancy {
            Some(kept) => kept.into_iter().map(|(order, steps)| (order, Occupancy::from_steps(steps))).collect(),
            None => state
                .orders
                .values()
                .filter(|o| o.ended_at_s.is_none())
                .filter_map(|o| {
                    let (started, until) = (o.started_at_s?, o.usage_until_s?);
                    let level = i64::from(o.quote.gpu_count) * occupancy::MICRO;
                    Some((o.id, Occupancy::full(started, until, level)))
                })
                .collect(),
        };
        Ok(state)
    }
}
