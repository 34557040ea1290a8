//! `Serialize` and `Deserialize` for the value types (feature `serde`).
//!
//! Each type is written in its display-free canonical spelling: money as an integer count of fen,
//! rates as integer basis points, codes and ids as their text. Reading goes through the parsing
//! constructor, so a stored or submitted value is checked exactly like one typed at the CLI.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    ApplicantKind, ApplicationId, AuthorityId, EnterpriseId, Fen, OfferId, OrderId, PoolId, ProgramId, ProviderId,
    RateBp, RegionCode, RequestId, SiteId, StatementId, Uscc, VoucherId,
};

impl Serialize for Fen {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.fen())
    }
}

impl<'de> Deserialize<'de> for Fen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fen, D::Error> {
        i64::deserialize(deserializer).map(Fen::new)
    }
}

impl Serialize for RateBp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.basis_points())
    }
}

impl<'de> Deserialize<'de> for RateBp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RateBp, D::Error> {
        RateBp::new(i64::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

macro_rules! via_text {
    ($($name:ty => $parse:expr),* $(,)?) => {$(
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = String::deserialize(deserializer)?;
                $parse(&text).map_err(D::Error::custom)
            }
        }
    )*};
}

via_text! {
    RegionCode => RegionCode::parse,
    Uscc => Uscc::parse,
    ApplicantKind => ApplicantKind::parse,
    AuthorityId => AuthorityId::parse,
    ProgramId => ProgramId::parse,
    EnterpriseId => EnterpriseId::parse,
    ApplicationId => ApplicationId::parse,
    VoucherId => VoucherId::parse,
    ProviderId => ProviderId::parse,
    SiteId => SiteId::parse,
    PoolId => PoolId::parse,
    OrderId => OrderId::parse,
    RequestId => RequestId::parse,
    OfferId => OfferId::parse,
    StatementId => StatementId::parse,
}
