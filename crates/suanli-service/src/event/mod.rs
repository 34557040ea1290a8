//! The closed set of state changes. Each is one audit-log entry: the entry's `action` and `object`
//! come from the event, its `body` is the event as JSON, and replaying the bodies in order
//! rebuilds the service's state exactly.

use serde::{Deserialize, Serialize};
use suanli_domain::{ApplicationId, Fen, OrderId, ProgramId, ProviderId, RequestId, SiteId, StatementId, VoucherId};

mod schema;

pub use schema::{
    NewApplication, NewEnterprise, NewOrder, NewPool, NewProgram, NewProvider, NewSite, NewStatement, NewToken,
    NewVoucher,
};

use crate::access::User;
use crate::model::{Anomaly, Authority, NetworkCluster, OrderState, Ownership, UsageInput, UsageRecord};

/// The schema version of the bodies this release writes (see [`schema`]). A body without `"v"`
/// is version 1.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    AuthorityCreated {
        authority: Authority,
    },
    ProgramLoaded {
        program: Box<NewProgram>,
    },
    ProgramOpened {
        program: ProgramId,
        funded_fen: Fen,
    },
    /// A draft's terms replaced (same key, same authority).
    ProgramAmended {
        program: ProgramId,
        terms: Box<crate::model::ProgramTerms>,
    },
    ProgramClosed {
        program: ProgramId,
    },
    /// A lottery round's seed committed: its SHA-256, before the round closes.
    LotteryCommitted {
        program: ProgramId,
        round: u32,
        seed_sha256: String,
        closes_at_s: i64,
    },
    /// The seed revealed and the draw made from it; the approvals of those drawn and the
    /// rejections of the others follow in the same commit.
    LotteryDrawn {
        program: ProgramId,
        round: u32,
        seed: String,
        participants: Vec<(ApplicationId, Fen)>,
        budget_fen: Fen,
        drawn: Vec<ApplicationId>,
    },
    ProgramFinished {
        program: ProgramId,
        returned_fen: Fen,
    },
    EnterpriseRegistered {
        enterprise: Box<NewEnterprise>,
    },
    ApplicationCreated {
        application: Box<NewApplication>,
    },
    ApplicationSubmitted {
        application: ApplicationId,
    },
    ApplicationApproved {
        application: ApplicationId,
        voucher: Box<NewVoucher>,
    },
    ApplicationRejected {
        application: ApplicationId,
        reason: String,
    },
    ApplicationWithdrawn {
        application: ApplicationId,
    },
    ProviderRegistered {
        provider: NewProvider,
    },
    SiteAdded {
        site: Box<NewSite>,
    },
    SiteVerified {
        site: SiteId,
    },
    /// The deployment's registry of hubs and clusters, replaced whole.
    NetworkImported {
        clusters: Vec<NetworkCluster>,
    },
    PoolAdded {
        pool: NewPool,
    },
    /// A pool's size and list price for orders placed from now on (orders keep their quote).
    PoolChanged {
        pool: suanli_domain::PoolId,
        gpu_count: u32,
        price_fen_per_gpu_hour: Fen,
    },
    /// No new order on the pool; the orders on it run to their end.
    PoolRetired {
        pool: suanli_domain::PoolId,
    },
    /// An order submitted to the scheduling loop: it waits for the next round.
    RequestSubmitted {
        request: Box<crate::requests::OrderRequest>,
    },
    RequestWithdrawn {
        request: RequestId,
    },
    /// A round of the scheduling loop decided this request (the order it placed, if it placed
    /// one, is recorded before, in the same commit): one entry per request, so each party's
    /// proofs show its own decisions only.
    RequestDecided {
        request: RequestId,
        round: u64,
        gap_bp: u32,
        decision: Box<crate::requests::Decision>,
    },
    /// A provider offers GPUs of a pool to the market between hub nodes.
    OfferPosted {
        offer: Box<crate::market::CapacityOffer>,
    },
    /// The offer's unsold GPUs leave the market.
    OfferWithdrawn {
        offer: suanli_domain::OfferId,
    },
    /// A clearing of the market: its prices, trades and welfare (the orders it placed and the
    /// requests it decided are recorded before, in the same commit).
    MarketCleared {
        clearing: Box<crate::market::Clearing>,
    },
    OrderPlaced {
        order: Box<NewOrder>,
    },
    OrderStarted {
        order: OrderId,
    },
    OrderExtended {
        order: OrderId,
        hours: u32,
        hold_fen: Fen,
    },
    OrderEnded {
        order: OrderId,
        state: OrderState,
        released_fen: Fen,
        returned_fen: Fen,
    },
    /// An order's hold released to its voucher while the order goes on (its voucher was revoked).
    /// One entry per order, so a revocation releases any number of orders and each order's
    /// history shows its release.
    OrderHoldReleased {
        order: OrderId,
        voucher: VoucherId,
        released_fen: Fen,
    },
    /// Orders that ended long enough ago (see [`crate::service::ARCHIVE_AFTER_S`]) leave the
    /// writer's memory; storage keeps each as it was, in the same commit.
    OrdersArchived {
        orders: Vec<OrderId>,
    },
    /// Approved statements' lines leave memory: storage keeps each line, in the same commit; the
    /// state keeps their sums (see [`crate::model::SettledKey`]).
    StatementsArchived {
        statements: Vec<StatementId>,
    },
    /// Tokens that expired a week ago or more leave memory (they can never work again; their
    /// issuance stays in the log).
    TokensPurged {
        tokens: Vec<u64>,
    },
    UsageRecorded {
        record: Box<UsageRecord>,
    },
    UsageRefused {
        provider: ProviderId,
        input: UsageInput,
        code: String,
        message: String,
    },
    VoucherSuspended {
        voucher: VoucherId,
        reason: String,
    },
    VoucherReinstated {
        voucher: VoucherId,
    },
    VoucherRevoked {
        voucher: VoucherId,
        reason: String,
        released: Vec<(OrderId, Fen)>,
        returned_fen: Fen,
    },
    VoucherExpired {
        voucher: VoucherId,
        returned_fen: Fen,
    },
    StatementIssued {
        statement: Box<NewStatement>,
    },
    StatementApproved {
        statement: StatementId,
    },
    AnomalyFlagged {
        anomaly: Anomaly,
    },
    ProviderKeyRegistered {
        provider: ProviderId,
        public_key_hex: String,
    },
    /// `party` is an enterprise (`ent-N`) or a provider (`prv-N`).
    OwnershipDeclared {
        party: String,
        ownership: Ownership,
    },
    TokenIssued {
        token: NewToken,
    },
    TokenRevoked {
        token: u64,
    },
    UserCreated {
        user: User,
    },
    /// The person can no longer log in; the sessions it had are revoked in the same entry's
    /// change (`token_revoked` entries beside it).
    UserDisabled {
        name: String,
    },
    UserEnabled {
        name: String,
    },
    /// A new password (its argon2 hash); the sessions the person had are revoked beside it.
    UserPasswordSet {
        name: String,
        password_phc: String,
    },
}

/// How a body of the current version begins: the version first, then the event's own JSON.
const BODY_PREFIX: &str = "{\"v\":2,";

impl Event {
    /// The audit log body: `{"v":2,"event":…,…}`.
    pub fn to_body(&self) -> String {
        let json = serde_json::to_string(self).expect("events serialize");
        debug_assert!(json.starts_with('{') && json.len() > 2);
        let mut body = String::with_capacity(json.len() + BODY_PREFIX.len());
        body.push_str(BODY_PREFIX);
        body.push_str(&json[1..]);
        body
    }

    /// Reads a body of any version this release knows; a newer version is refused by name, so an
    /// older release never misreads a log a newer one wrote.
    pub fn from_body(body: &str) -> Result<Event, String> {
        if let Some(rest) = body.strip_prefix(BODY_PREFIX) {
            let mut json = String::with_capacity(rest.len() + 1);
            json.push('{');
            json.push_str(rest);
            return serde_json::from_str(&json).map_err(|e| e.to_string());
        }
        if body.starts_with("{\"v\":") {
            let version: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
            return Err(format!(
                "the body is of event schema version {}; this release reads versions 1 to {SCHEMA_VERSION}",
                version["v"]
            ));
        }
        serde_json::from_str(body).map_err(|e| e.to_string())
    }

    /// The audit log's `action`: `noun.verb`.
    pub fn action(&self) -> &'static str {
        match self {
            Event::AuthorityCreated { .. } => "authority.created",
            Event::ProgramLoaded { .. } => "program.loaded",
            Event::ProgramOpened { .. } => "program.opened",
            Event::ProgramAmended { .. } => "program.amended",
            Event::ProgramClosed { .. } => "program.closed",
            Event::LotteryCommitted { .. } => "lottery.committed",
            Event::LotteryDrawn { .. } => "lottery.drawn",
            Event::ProgramFinished { .. } => "program.finished",
            Event::EnterpriseRegistered { .. } => "enterprise.registered",
            Event::ApplicationCreated { .. } => "application.created",
            Event::ApplicationSubmitted { .. } => "application.submitted",
            Event::ApplicationApproved { .. } => "application.approved",
            Event::ApplicationRejected { .. } => "application.rejected",
            Event::ApplicationWithdrawn { .. } => "application.withdrawn",
            Event::ProviderRegistered { .. } => "provider.registered",
            Event::SiteAdded { .. } => "site.added",
            Event::SiteVerified { .. } => "site.verified",
            Event::NetworkImported { .. } => "network.imported",
            Event::PoolAdded { .. } => "pool.added",
            Event::PoolChanged { .. } => "pool.changed",
            Event::PoolRetired { .. } => "pool.retired",
            Event::RequestSubmitted { .. } => "request.submitted",
            Event::RequestWithdrawn { .. } => "request.withdrawn",
            Event::RequestDecided { .. } => "request.decided",
            Event::OfferPosted { .. } => "offer.posted",
            Event::OfferWithdrawn { .. } => "offer.withdrawn",
            Event::MarketCleared { .. } => "market.cleared",
            Event::OrderPlaced { .. } => "order.placed",
            Event::OrderStarted { .. } => "order.started",
            Event::OrderExtended { .. } => "order.extended",
            Event::OrderEnded { .. } => "order.ended",
            Event::OrderHoldReleased { .. } => "order.hold_released",
            Event::OrdersArchived { .. } => "orders.archived",
            Event::TokensPurged { .. } => "tokens.purged",
            Event::StatementsArchived { .. } => "statements.archived",
            Event::UsageRecorded { .. } => "usage.recorded",
            Event::UsageRefused { .. } => "usage.refused",
            Event::VoucherSuspended { .. } => "voucher.suspended",
            Event::VoucherReinstated { .. } => "voucher.reinstated",
            Event::VoucherRevoked { .. } => "voucher.revoked",
            Event::VoucherExpired { .. } => "voucher.expired",
            Event::StatementIssued { .. } => "statement.issued",
            Event::StatementApproved { .. } => "statement.approved",
            Event::AnomalyFlagged { .. } => "anomaly.flagged",
            Event::ProviderKeyRegistered { .. } => "provider.key_registered",
            Event::OwnershipDeclared { .. } => "ownership.declared",
            Event::TokenIssued { .. } => "token.issued",
            Event::TokenRevoked { .. } => "token.revoked",
            Event::UserCreated { .. } => "user.created",
            Event::UserDisabled { .. } => "user.disabled",
            Event::UserEnabled { .. } => "user.enabled",
            Event::UserPasswordSet { .. } => "user.password_set",
        }
    }

    /// The audit log's `object`: the id of what changed.
    pub fn object(&self) -> String {
        match self {
            Event::AuthorityCreated { authority } => authority.id.to_string(),
            Event::ProgramLoaded { program } => program.id.to_string(),
            Event::ProgramOpened { program, .. }
            | Event::ProgramAmended { program, .. }
            | Event::ProgramClosed { program }
            | Event::LotteryCommitted { program, .. }
            | Event::LotteryDrawn { program, .. }
            | Event::ProgramFinished { program, .. } => program.to_string(),
            Event::EnterpriseRegistered { enterprise } => enterprise.id.to_string(),
            Event::ApplicationCreated { application } => application.id.to_string(),
            Event::ApplicationSubmitted { application }
            | Event::ApplicationApproved { application, .. }
            | Event::ApplicationRejected { application, .. }
            | Event::ApplicationWithdrawn { application } => application.to_string(),
            Event::ProviderRegistered { provider } => provider.id.to_string(),
            Event::SiteAdded { site } => site.id.to_string(),
            Event::SiteVerified { site } => site.to_string(),
            Event::NetworkImported { .. } => "network".to_owned(),
            Event::PoolAdded { pool } => pool.id.to_string(),
            Event::PoolChanged { pool, .. } | Event::PoolRetired { pool } => pool.to_string(),
            Event::RequestSubmitted { request } => request.id.to_string(),
            Event::RequestWithdrawn { request } => request.to_string(),
            Event::RequestDecided { request, .. } => request.to_string(),
            Event::OfferPosted { offer } => offer.id.to_string(),
            Event::OfferWithdrawn { offer } => offer.to_string(),
            Event::MarketCleared { clearing } => format!("clearing-{}", clearing.clearing),
            Event::OrderPlaced { order } => order.id.to_string(),
            Event::OrderStarted { order }
            | Event::OrderExtended { order, .. }
            | Event::OrderEnded { order, .. }
            | Event::OrderHoldReleased { order, .. } => order.to_string(),
            Event::OrdersArchived { .. } => "orders".to_owned(),
            Event::TokensPurged { .. } => "tokens".to_owned(),
            Event::StatementsArchived { .. } => "statements".to_owned(),
            Event::UsageRecorded { record } => format!("usage:{}:{}", record.provider, record.input.id),
            Event::UsageRefused { provider, input, .. } => format!("usage:{provider}:{}", input.id),
            Event::VoucherSuspended { voucher, .. }
            | Event::VoucherReinstated { voucher }
            | Event::VoucherRevoked { voucher, .. }
            | Event::VoucherExpired { voucher, .. } => voucher.to_string(),
            Event::StatementIssued { statement } => statement.id.to_string(),
            Event::StatementApproved { statement } => statement.to_string(),
            Event::AnomalyFlagged { anomaly } => anomaly.object.clone(),
            Event::ProviderKeyRegistered { provider, .. } => provider.to_string(),
            Event::OwnershipDeclared { party, .. } => party.clone(),
            Event::TokenIssued { token } => format!("token-{}", token.id),
            Event::TokenRevoked { token } => format!("token-{token}"),
            Event::UserCreated { user } => format!("user:{}", user.name),
            Event::UserDisabled { name } | Event::UserEnabled { name } | Event::UserPasswordSet { name, .. } => {
                format!("user:{name}")
            }
        }
    }

    /// Every object this entry touched: its own `object` first, then the others it changed or
    /// names (the voucher an approval issued, the order a usage record drew on, the orders a
    /// revocation released...), so one object's history is every entry that touched it.
    pub fn objects(&self) -> Vec<String> {
        let mut objects = vec![self.object()];
        let mut also = |id: String| {
            if !objects.contains(&id) {
                objects.push(id);
            }
        };
        match self {
            Event::ProgramLoaded { program } => also(program.authority.to_string()),
            Event::ApplicationCreated { application } => {
                also(application.enterprise.to_string());
                also(application.program.to_string());
            }
            Event::ApplicationApproved { voucher, .. } => {
                also(voucher.id.to_string());
                also(voucher.enterprise.to_string());
                also(voucher.program.to_string());
            }
            Event::SiteAdded { site } => also(site.spec.provider.to_string()),
            Event::PoolAdded { pool } => also(pool.site.to_string()),
            Event::OrderPlaced { order } => {
                also(order.voucher.to_string());
                also(order.enterprise.to_string());
                also(order.provider.to_string());
                also(order.pool.to_string());
                also(order.program.to_string());
            }
            Event::OrderHoldReleased { voucher, .. } => also(voucher.to_string()),
            Event::RequestSubmitted { request } => {
                also(request.enterprise.to_string());
                also(request.voucher.to_string());
            }
            Event::RequestDecided { decision, .. } => {
                if let Some(order) = decision.order {
                    also(order.to_string());
                }
            }
            Event::OfferPosted { offer } => {
                also(offer.provider.to_string());
                also(offer.pool.to_string());
            }
            Event::MarketCleared { clearing } => {
                for trade in &clearing.trades {
                    also(trade.offer.to_string());
                    also(trade.request.to_string());
                    also(trade.order.to_string());
                }
            }
            Event::UsageRecorded { record } => {
                also(record.input.order.to_string());
                also(record.provider.to_string());
            }
            Event::UsageRefused { provider, input, .. } => {
                also(input.order.to_string());
                also(provider.to_string());
            }
            Event::VoucherRevoked { released, .. } => {
                for (order, _) in released {
                    also(order.to_string());
                }
            }
            Event::StatementIssued { statement } => {
                also(statement.provider.to_string());
                also(statement.program.to_string());
            }
            _ => {}
        }
        objects
    }

    /// The anomaly this entry records, if it records one: a flagged anomaly, or a usage record
    /// refused for a reason that depends on the state (kept, so its id stays failed).
    pub fn anomaly(&self, time_s: i64) -> Option<Anomaly> {
        match self {
            Event::AnomalyFlagged { anomaly } => Some(anomaly.clone()),
            Event::UsageRefused { provider, input, code, message } => Some(Anomaly {
                time_s,
                kind: code.clone(),
                object: format!("usage:{provider}:{}", input.id),
                detail: message.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One body of every kind of event, as this release writes them.
    const SCHEMA_V2: &str = include_str!("../../tests/fixtures/event-schema-v2.jsonl");

    /// A number per kind; not compiling when a kind is added is the point: add its body to the
    /// fixture, then here.
    fn kind(event: &Event) -> usize {
        match event {
            Event::AuthorityCreated { .. } => 0,
            Event::ProgramLoaded { .. } => 1,
            Event::ProgramOpened { .. } => 2,
            Event::ProgramClosed { .. } => 3,
            Event::ProgramFinished { .. } => 4,
            Event::EnterpriseRegistered { .. } => 5,
            Event::ApplicationCreated { .. } => 6,
            Event::ApplicationSubmitted { .. } => 7,
            Event::ApplicationApproved { .. } => 8,
            Event::ApplicationRejected { .. } => 9,
            Event::ApplicationWithdrawn { .. } => 10,
            Event::ProviderRegistered { .. } => 11,
            Event::SiteAdded { .. } => 12,
            Event::SiteVerified { .. } => 13,
            Event::NetworkImported { .. } => 14,
            Event::PoolAdded { .. } => 15,
            Event::OrderPlaced { .. } => 16,
            Event::OrderStarted { .. } => 17,
            Event::OrderExtended { .. } => 18,
            Event::OrderEnded { .. } => 19,
            Event::OrderHoldReleased { .. } => 20,
            Event::UsageRecorded { .. } => 21,
            Event::UsageRefused { .. } => 22,
            Event::VoucherSuspended { .. } => 23,
            Event::VoucherReinstated { .. } => 24,
            Event::VoucherRevoked { .. } => 25,
            Event::VoucherExpired { .. } => 26,
            Event::StatementIssued { .. } => 27,
            Event::StatementApproved { .. } => 28,
            Event::AnomalyFlagged { .. } => 29,
            Event::ProviderKeyRegistered { .. } => 30,
            Event::OwnershipDeclared { .. } => 31,
            Event::TokenIssued { .. } => 32,
            Event::TokenRevoked { .. } => 33,
            Event::UserCreated { .. } => 34,
            Event::PoolChanged { .. } => 35,
            Event::PoolRetired { .. } => 36,
            Event::UserDisabled { .. } => 37,
            Event::UserEnabled { .. } => 38,
            Event::UserPasswordSet { .. } => 39,
            Event::ProgramAmended { .. } => 40,
            Event::LotteryCommitted { .. } => 41,
            Event::LotteryDrawn { .. } => 42,
            Event::OrdersArchived { .. } => 43,
            Event::TokensPurged { .. } => 44,
            Event::StatementsArchived { .. } => 45,
            Event::RequestSubmitted { .. } => 46,
            Event::RequestWithdrawn { .. } => 47,
            Event::RequestDecided { .. } => 48,
            Event::OfferPosted { .. } => 49,
            Event::OfferWithdrawn { .. } => 50,
            Event::MarketCleared { .. } => 51,
        }
    }

    #[test]
    fn schema_is_frozen() {
        let mut seen = [false; 52];
        for line in SCHEMA_V2.lines() {
            let event = Event::from_body(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(event.to_body(), line, "the serialized form of {} changed", event.action());
            seen[kind(&event)] = true;
        }
        assert!(seen.iter().all(|s| *s), "every kind of event has a body in the fixture: {seen:?}");
    }

    /// A version-1 body: the event with its payload replaced by the read model it made.
    fn version_one(event: &Event, field: &str, model: serde_json::Value) -> String {
        let mut value = serde_json::to_value(event).expect("events serialize");
        value[field] = model;
        assert!(value.get("v").is_none());
        value.to_string()
    }

    #[test]
    fn version_one_bodies_decode_to_the_same_objects() {
        let mut checked = 0;
        for line in SCHEMA_V2.lines() {
            let event = Event::from_body(line).expect("fixture bodies decode");
            let old = match &event {
                Event::ProgramLoaded { program } => {
                    version_one(&event, "program", serde_json::to_value(program.to_model()).unwrap())
                }
                Event::EnterpriseRegistered { enterprise } => {
                    version_one(&event, "enterprise", serde_json::to_value(enterprise.to_model()).unwrap())
                }
                Event::ApplicationCreated { application } => {
                    version_one(&event, "application", serde_json::to_value(application.to_model()).unwrap())
                }
                Event::ApplicationApproved { voucher, .. } => {
                    version_one(&event, "voucher", serde_json::to_value(voucher.to_model()).unwrap())
                }
                Event::ProviderRegistered { provider } => {
                    version_one(&event, "provider", serde_json::to_value(provider.to_model()).unwrap())
                }
                Event::SiteAdded { site } => {
                    version_one(&event, "site", serde_json::to_value(site.to_model()).unwrap())
                }
                Event::PoolAdded { pool } => {
                    version_one(&event, "pool", serde_json::to_value(pool.to_model()).unwrap())
                }
                Event::OrderPlaced { order } => {
                    version_one(&event, "order", serde_json::to_value(order.to_model()).unwrap())
                }
                Event::StatementIssued { statement } => {
                    version_one(&event, "statement", serde_json::to_value(statement.to_model()).unwrap())
                }
                Event::TokenIssued { token } => {
                    version_one(&event, "token", serde_json::to_value(token.to_model()).unwrap())
                }
                _ => continue,
            };
            assert_ne!(old, line);
            assert_eq!(Event::from_body(&old).as_ref(), Ok(&event), "{old}");
            checked += 1;
        }
        assert_eq!(checked, 10);
    }

    #[test]
    fn a_newer_version_is_refused_by_name() {
        let error = Event::from_body(r#"{"v":3,"event":"program_closed","program":"prg-1"}"#).unwrap_err();
        assert!(error.contains("version 3"), "{error}");
        assert!(Event::from_body(r#"{"event":"program_closed","program":"prg-1"}"#).is_ok());
    }
}
