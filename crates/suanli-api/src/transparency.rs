//! The public record (公示): the latest signed head, on demand a new one, and inclusion proofs,
//! so an enterprise or a provider can check that its own entries are in the published log
//! without reading the log. The proof is RFC 9162's audit path; the head's signature and format
//! are in `docs/signed-heads.md`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanli_domain::{ApplicationId, OrderId, ProgramId, VoucherId};
use suanli_service::access::hex;
use suanli_service::event::Event;
use suanli_service::{Role, ServiceError, View};
use suanli_store::merkle;

use crate::lifecycle::{Grant, LogEntryJson, permit_endpoint};
use crate::{ApiError, AppState, authenticate};

/// `GET /api/v1/heads/latest`: the newest signed head and the key that signs heads. Public.
pub async fn latest(State(state): State<AppState>) -> Result<Response, ApiError> {
    let signer =
        state.writer.heads().ok_or_else(|| ApiError::not_found("heads: this server publishes no signed heads"))?;
    Ok(Json(LatestHead { head: signer.latest(), public_key: signer.public_key_hex() }).into_response())
}

/// The newest signed head (none before the first) and the hex Ed25519 key heads are signed with.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct LatestHead {
    pub head: Option<suanli_service::heads::Head>,
    pub public_key: String,
}

/// Entry `sequence` of the log, its leaf hash and the RFC 9162 audit path to the root of the
/// first `size` entries, with the signed head of that size when there is one.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Proof {
    pub sequence: u64,
    pub size: u64,
    pub leaf_index: u64,
    pub leaf_hash: String,
    pub path: Vec<String>,
    pub root: String,
    pub head: Option<suanli_service::heads::Head>,
    pub entry: LogEntryJson,
}

/// `POST /api/v1/heads`: signs and publishes a head of the log as it is now. Admin.
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    permit_endpoint(role, &[Grant::Admin], "signed heads")?;
    let head = state.writer.call(|s| s.publish_head()).await??;
    Ok(Json(head).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    /// The entry's sequence.
    #[schemars(range(min = 1))]
    sequence: u64,
    /// The tree size to prove against [default: the latest signed head's].
    size: Option<u64>,
}

/// `GET /api/v1/audit/proof?sequence=N[&size=M]`: entry N, its leaf hash, and the audit path
/// to the root of the first M entries, with the signed head of that size when there is one.
/// Admin and auditors for any entry; others for entries that touch their own objects.
pub async fn proof(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ProofQuery>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    let latest = state.writer.heads().and_then(|signer| signer.latest());
    let size = match (query.size, &latest) {
        (Some(size), _) => size,
        (None, Some(head)) => head.log_size,
        (None, None) => return Err(ApiError::field("size", "no head is published yet; name a size")),
    };
    let sequence = query.sequence;
    if sequence == 0 || sequence > size {
        return Err(ApiError::field("sequence", format!("must be between 1 and the tree size {size}")));
    }
    let view = state.writer.view();
    // The entry first, and whether the caller may see it, before any proof is computed.
    let found = state
        .writer
        .read_log(move |reader| {
            let (page, total) = reader.page(sequence - 1, 1)?;
            Ok((page.into_iter().next().filter(|e| e.sequence == sequence), total))
        })
        .await??;
    let (entry, total) = found;
    let entry = match entry {
        Some(entry) if may_see(&view, role, &entry) => entry,
        _ => return Err(ServiceError::not_found(format!("audit-log entry {sequence}")).into()),
    };
    if size > total {
        return Err(ApiError::field("size", format!("the log holds {total} entries, fewer than {size}")));
    }
    let (path, root) = state
        .writer
        .read_log(move |reader| {
            let path = merkle::inclusion_proof(reader, sequence - 1, size)?;
            let root = merkle::root(reader, size)?;
            Ok((path, root))
        })
        .await??;
    let head = latest.filter(|h| h.log_size == size);
    Ok(Json(Proof {
        sequence,
        size,
        leaf_index: sequence - 1,
        leaf_hash: hex(&merkle::leaf_hash(&entry.hash)),
        path: path.iter().map(|h| hex(h)).collect(),
        root: hex(&root),
        head,
        entry: LogEntryJson::from(entry),
    })
    .into_response())
}

/// Whether `role` may see the entry: the platform admin and auditors see all; an enterprise, a
/// provider or an authority sees the entries that touch its own objects.
fn may_see(view: &View, role: Role, entry: &suanli_store::LogEntry) -> bool {
    if matches!(role, Role::PlatformAdmin | Role::Auditor) {
        return true;
    }
    let Ok(event) = Event::from_body(&entry.body) else { return false };
    let order = |object: &str| OrderId::parse(object).ok().and_then(|id| view.order(id).ok());
    event.objects().iter().any(|object| match role {
        Role::Enterprise(me) => {
            object == &me.to_string()
                || order(object).is_some_and(|o| o.enterprise == me)
                || VoucherId::parse(object)
                    .ok()
                    .and_then(|id| view.voucher(id).ok())
                    .is_some_and(|v| v.enterprise == me)
                || ApplicationId::parse(object)
                    .ok()
                    .and_then(|id| view.application(id).ok())
                    .is_some_and(|a| a.enterprise == me)
                || suanli_domain::RequestId::parse(object)
                    .ok()
                    .and_then(|id| view.request(id).ok())
                    .is_some_and(|r| r.enterprise == me)
        }
        Role::Provider(me) => object == &me.to_string() || order(object).is_some_and(|o| o.provider == me),
        Role::AuthorityAdmin(me) | Role::AuthorityReviewer(me) => {
            object == &me.to_string()
                || ProgramId::parse(object).ok().and_then(|id| view.program(id).ok()).is_some_and(|p| p.authority == me)
        }
        _ => false,
    })
}
