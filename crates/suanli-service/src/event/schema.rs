//! What the audit log's creation events carry: the facts decided when an object was made, and
//! nothing the service derives later. These records are the log's schema, apart from the read
//! models in [`crate::model`] (which add running balances and states) and from the API's JSON:
//! a read model may grow a field without changing a byte of what the log holds.
//!
//! Schema versions (`"v"` in a body, [`super::SCHEMA_VERSION`]):
//! - **1** (no `"v"`): creation events carried the whole read model as it was at creation. Its
//!   bodies still decode: every field here has the same name there, and the extra fields (the
//!   states and balances every new object starts with) are ignored.
//! - **2**: the records below.
//!
//! The value types these records embed (`ProgramTerms`, `Quote`, `SiteSpec`, `StatementLine`,
//! `UsageInput`, `Anomaly`, `Ownership`, `NetworkCluster`, `Authority`) are part of the schema
//! too; `event::tests::schema_is_frozen` fails when the serialized form of any event changes.

use serde::{Deserialize, Serialize};
use suanli_domain::{
    ApplicantKind, ApplicationId, AuthorityId, EnterpriseId, Fen, OrderId, PoolId, ProgramId, ProviderId, RegionCode,
    SiteId, StatementId, Uscc, VoucherId,
};

use crate::access::Token;
use crate::model::{
    Application, ApplicationState, Enterprise, OperatorKind, Order, OrderState, Pool, Program, ProgramState,
    ProgramTerms, Provider, Purpose, Quote, Site, SiteSpec, Statement, StatementLine, StatementState, Voucher,
    VoucherState,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewProgram {
    pub id: ProgramId,
    pub authority: AuthorityId,
    pub terms: ProgramTerms,
}

impl NewProgram {
    pub fn to_model(&self) -> Program {
        Program {
            id: self.id,
            authority: self.authority,
            terms: self.terms.clone(),
            state: ProgramState::Draft,
            budget_remaining_fen: Fen::ZERO,
            issued_fen: Fen::ZERO,
            returned_fen: Fen::ZERO,
            spent_fen: Fen::ZERO,
            settled_fen: Fen::ZERO,
            lotteries: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEnterprise {
    pub id: EnterpriseId,
    pub uscc: Uscc,
    pub name: String,
    pub region: RegionCode,
    pub kind: ApplicantKind,
    pub headcount: u32,
    pub revenue_fen: Fen,
    pub research_projects: Vec<String>,
    pub related_parties: Vec<Uscc>,
    pub registered_at_s: i64,
}

impl NewEnterprise {
    pub fn to_model(&self) -> Enterprise {
        Enterprise {
            id: self.id,
            uscc: self.uscc,
            name: self.name.clone(),
            region: self.region,
            kind: self.kind,
            headcount: self.headcount,
            revenue_fen: self.revenue_fen,
            research_projects: self.research_projects.clone(),
            related_parties: self.related_parties.clone(),
            registered_at_s: self.registered_at_s,
            paid_fen: Fen::ZERO,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewApplication {
    pub id: ApplicationId,
    pub enterprise: EnterpriseId,
    pub program: ProgramId,
    pub requested_fen: Fen,
    pub note: String,
    pub created_at_s: i64,
}

impl NewApplication {
    pub fn to_model(&self) -> Application {
        Application {
            id: self.id,
            enterprise: self.enterprise,
            program: self.program,
            requested_fen: self.requested_fen,
            note: self.note.clone(),
            state: ApplicationState::Draft,
            created_at_s: self.created_at_s,
            submitted_at_s: None,
            decided_at_s: None,
            approved_fen: None,
            reason: None,
            voucher: None,
        }
    }
}

/// The voucher an approval issues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewVoucher {
    pub id: VoucherId,
    pub enterprise: EnterpriseId,
    pub program: ProgramId,
    pub application: ApplicationId,
    pub face_value_fen: Fen,
    pub issued_at_s: i64,
    pub expires_at_s: i64,
    /// The rate chosen at approval, when below the programme's maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bp: Option<suanli_domain::RateBp>,
}

impl NewVoucher {
    pub fn to_model(&self) -> Voucher {
        Voucher {
            id: self.id,
            enterprise: self.enterprise,
            program: self.program,
            application: self.application,
            face_value_fen: self.face_value_fen,
            issued_at_s: self.issued_at_s,
            expires_at_s: self.expires_at_s,
            state: VoucherState::Active,
            available_fen: self.face_value_fen,
            held_fen: Fen::ZERO,
            spent_fen: Fen::ZERO,
            returned_fen: Fen::ZERO,
            reason: None,
            rate_bp: self.rate_bp,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewProvider {
    pub id: ProviderId,
    pub uscc: Uscc,
    pub name: String,
    pub operator: OperatorKind,
}

impl NewProvider {
    pub fn to_model(&self) -> Provider {
        Provider {
            id: self.id,
            uscc: self.uscc,
            name: self.name.clone(),
            operator: self.operator,
            public_key_hex: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewSite {
    pub id: SiteId,
    #[serde(flatten)]
    pub spec: SiteSpec,
}

impl NewSite {
    pub fn to_model(&self) -> Site {
        Site { id: self.id, spec: self.spec.clone(), verified_at_s: None }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewPool {
    pub id: PoolId,
    pub site: SiteId,
    /// The chip's registry name.
    pub chip: String,
    pub gpu_count: u32,
    /// From the chip registry.
    pub domestic: bool,
    pub price_fen_per_gpu_hour: Fen,
}

impl NewPool {
    pub fn to_model(&self) -> Pool {
        Pool {
            id: self.id,
            site: self.site,
            chip: self.chip.clone(),
            gpu_count: self.gpu_count,
            domestic: self.domestic,
            price_fen_per_gpu_hour: self.price_fen_per_gpu_hour,
            gpus_reserved: 0,
            retired_at_s: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    pub id: OrderId,
    pub enterprise: EnterpriseId,
    pub voucher: VoucherId,
    pub program: ProgramId,
    pub pool: PoolId,
    pub provider: ProviderId,
    pub purpose: Purpose,
    pub quote: Quote,
    pub placed_at_s: i64,
    /// Moved from the voucher to the order's hold account.
    pub hold_fen: Fen,
    /// Anomalies noticed when it was placed.
    pub flags: Vec<String>,
    /// The request a round of the scheduling loop placed it for, and the work it was bought for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<suanli_domain::RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<crate::service::Work>,
}

impl NewOrder {
    pub fn to_model(&self) -> Order {
        Order {
            id: self.id,
            enterprise: self.enterprise,
            voucher: self.voucher,
            program: self.program,
            pool: self.pool,
            provider: self.provider,
            purpose: self.purpose,
            quote: self.quote.clone(),
            state: OrderState::Placed,
            placed_at_s: self.placed_at_s,
            started_at_s: None,
            ended_at_s: None,
            hold_fen: self.hold_fen,
            hold_remaining_fen: self.hold_fen,
            gpu_seconds: 0,
            usage_until_s: None,
            cost_fen: Fen::ZERO,
            voucher_paid_fen: Fen::ZERO,
            enterprise_paid_fen: Fen::ZERO,
            usage_records: 0,
            flags: self.flags.clone(),
            request: self.request,
            work: self.work.clone(),
            extended_hours: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewStatement {
    pub id: StatementId,
    pub provider: ProviderId,
    pub program: ProgramId,
    /// `2026-10`: usage recorded in this Asia/Shanghai month.
    pub month: String,
    pub lines: Vec<StatementLine>,
    pub cost_fen: Fen,
    pub voucher_total_fen: Fen,
    pub enterprise_total_fen: Fen,
    /// The voucher total in words (人民币大写), as issued.
    pub voucher_total_uppercase: String,
    pub issued_at_s: i64,
}

impl NewStatement {
    pub fn to_model(&self) -> Statement {
        Statement {
            id: self.id,
            provider: self.provider,
            program: self.program,
            month: self.month.clone(),
            lines: self.lines.clone(),
            cost_fen: self.cost_fen,
            voucher_total_fen: self.voucher_total_fen,
            enterprise_total_fen: self.enterprise_total_fen,
            voucher_total_uppercase: self.voucher_total_uppercase.clone(),
            state: StatementState::Issued,
            issued_at_s: self.issued_at_s,
            approved_at_s: None,
        }
    }
}

/// An API token as issued: only the SHA-256 of its secret is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewToken {
    pub id: u64,
    pub secret_sha256_hex: String,
    pub role: String,
    pub issued_at_s: i64,
    /// Tokens issued before expiries existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_s: Option<i64>,
    /// The person a login token was issued to (machine tokens have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl NewToken {
    pub fn to_model(&self) -> Token {
        Token {
            id: self.id,
            secret_sha256_hex: self.secret_sha256_hex.clone(),
            role: self.role.clone(),
            issued_at_s: self.issued_at_s,
            revoked: false,
            expires_at_s: self.expires_at_s,
            user: self.user.clone(),
        }
    }
}
