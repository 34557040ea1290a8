//! The JSON Schema of each value type (feature `serde`), as `serde_impls` writes it: money as an
//! integer count of fen, rates as basis points, ids as `prefix-N`, codes as their text. The
//! schemas are inlined where they are used, with the same words the parsers' errors use.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{
    ApplicantKind, ApplicationId, AuthorityId, EnterpriseId, Fen, OfferId, OrderId, PoolId, ProgramId, ProviderId,
    RateBp, RegionCode, RequestId, SiteId, StatementId, Uscc, VoucherId,
};

macro_rules! schema {
    ($($name:ty => $schema:expr),* $(,)?) => {$(
        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    )*};
}

/// An id: `prefix-N`, N a positive number without leading zeros.
fn id(prefix: &str) -> Schema {
    let pattern = format!("^{prefix}-[1-9][0-9]{{0,18}}$");
    json_schema!({ "type": "string", "pattern": pattern, "example": format!("{prefix}-1") })
}

schema! {
    Fen => json_schema!({ "type": "integer", "format": "int64", "description": "An amount in fen (0.01 yuan)." }),
    RateBp => json_schema!({ "type": "integer", "minimum": 0, "maximum": 10000, "description": "A rate in basis points (10000 is 100%)." }),
    RegionCode => json_schema!({ "type": "string", "pattern": "^[0-9]{6}$", "description": "A GB/T 2260 administrative division code." }),
    Uscc => json_schema!({ "type": "string", "pattern": "^[0-9A-HJ-NPQRTUWXY]{18}$", "description": "A unified social credit code (GB 32100-2015), check character included." }),
    ApplicantKind => json_schema!({ "type": "string", "enum": ["sme", "startup", "research_institute"] }),
    AuthorityId => id(AuthorityId::PREFIX),
    ProgramId => id(ProgramId::PREFIX),
    EnterpriseId => id(EnterpriseId::PREFIX),
    ApplicationId => id(ApplicationId::PREFIX),
    VoucherId => id(VoucherId::PREFIX),
    ProviderId => id(ProviderId::PREFIX),
    SiteId => id(SiteId::PREFIX),
    PoolId => id(PoolId::PREFIX),
    OrderId => id(OrderId::PREFIX),
    RequestId => id(RequestId::PREFIX),
    OfferId => id(OfferId::PREFIX),
    StatementId => id(StatementId::PREFIX),
}
