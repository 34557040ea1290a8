//! The closed set of state changes. Each is one audit-log entry: the entry's `action` and `object`
//! come from the event, its `body` is the event as JSON, and replaying the bodies in order
//! rebuilds the service's state exactly.

use serde::{Deserialize, Serialize};
use suanli_domain::{ApplicationId, Fen, OrderId, ProgramId, ProviderId, SiteId, StatementId, VoucherId};

use crate::access::{Token, User};
use crate::model::{
    Anomaly, Application, Authority, Enterprise, NetworkCluster, Order, OrderState, Ownership, Pool, Program, Provider,
    Site, Statement, UsageInput, UsageRecord, Voucher,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    AuthorityCreated {
        authority: Authority,
    },
    ProgramLoaded {
        program: Box<Program>,
    },
    ProgramOpened {
        program: ProgramId,
        funded_fen: Fen,
    },
    ProgramClosed {
        program: ProgramId,
    },
    ProgramFinished {
        program: ProgramId,
        returned_fen: Fen,
    },
    EnterpriseRegistered {
        enterprise: Box<Enterprise>,
    },
    ApplicationCreated {
        application: Box<Application>,
    },
    ApplicationSubmitted {
        application: ApplicationId,
    },
    ApplicationApproved {
        application: ApplicationId,
        voucher: Box<Voucher>,
    },
    ApplicationRejected {
        application: ApplicationId,
        reason: String,
    },
    ApplicationWithdrawn {
        application: ApplicationId,
    },
    ProviderRegistered {
        provider: Provider,
    },
    SiteAdded {
        site: Box<Site>,
    },
    SiteVerified {
        site: SiteId,
    },
    /// The deployment's registry of hubs and clusters, replaced whole.
    NetworkImported {
        clusters: Vec<NetworkCluster>,
    },
    PoolAdded {
        pool: Pool,
    },
    OrderPlaced {
        order: Box<Order>,
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
        statement: Box<Statement>,
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
        token: Token,
    },
    TokenRevoked {
        token: u64,
    },
    UserCreated {
        user: User,
    },
}

impl Event {
    /// The audit log's `action`: `noun.verb`.
    pub fn action(&self) -> &'static str {
        match self {
            Event::AuthorityCreated { .. } => "authority.created",
            Event::ProgramLoaded { .. } => "program.loaded",
            Event::ProgramOpened { .. } => "program.opened",
            Event::ProgramClosed { .. } => "program.closed",
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
            Event::OrderPlaced { .. } => "order.placed",
            Event::OrderStarted { .. } => "order.started",
            Event::OrderExtended { .. } => "order.extended",
            Event::OrderEnded { .. } => "order.ended",
            Event::OrderHoldReleased { .. } => "order.hold_released",
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
        }
    }

    /// The audit log's `object`: the id of what changed.
    pub fn object(&self) -> String {
        match self {
            Event::AuthorityCreated { authority } => authority.id.to_string(),
            Event::ProgramLoaded { program } => program.id.to_string(),
            Event::ProgramOpened { program, .. }
            | Event::ProgramClosed { program }
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
            Event::OrderPlaced { order } => order.id.to_string(),
            Event::OrderStarted { order }
            | Event::OrderExtended { order, .. }
            | Event::OrderEnded { order, .. }
            | Event::OrderHoldReleased { order, .. } => order.to_string(),
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
