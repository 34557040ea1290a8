//! Who sees which orders and statements, and who decides for an authority: the rules the API's
//! lists and the console's pages share.

use suanli_domain::{AuthorityId, ProgramId};
use suanli_service::{OrderQuery, Role, View};

use crate::lifecycle::{Grant, granted};

/// The orders `role` may see, as a query over memory and storage's archive: the platform's
/// overseers see all, an authority its programmes' orders, an enterprise and a provider their own.
pub(crate) fn order_query(role: Role, program: Option<ProgramId>, state: Option<&str>) -> OrderQuery {
    let mut query = OrderQuery { program, state: state.map(str::to_owned), ..OrderQuery::default() };
    match role {
        Role::PlatformAdmin | Role::Auditor => {}
        Role::AuthorityAdmin(a) | Role::AuthorityReviewer(a) => query.authority = Some(a),
        Role::Enterprise(e) => query.enterprise = Some(e),
        Role::Provider(p) => query.provider = Some(p),
    }
    query
}

/// The statements `role` may see, in id order.
pub(crate) fn visible_statements(s: &View, role: Role) -> Vec<&suanli_service::model::Statement> {
    s.state()
        .statements
        .values()
        .filter(|st| {
            let authority = s.state().programs[&st.program].authority;
            granted(role, &[Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Provider(st.provider)])
        })
        .collect()
}

/// Whether `role` may decide applications and issue or approve statements of `authority`'s
/// programmes (reviewers decide applications too).
pub(crate) fn may_review(role: Role, authority: AuthorityId) -> bool {
    granted(role, &[Grant::Admin, Grant::Authority(authority)])
}

/// Whether `role` may suspend, reinstate or revoke vouchers and approve statements of `authority`.
pub(crate) fn may_administer(role: Role, authority: AuthorityId) -> bool {
    granted(role, &[Grant::Admin, Grant::AuthorityAdmin(authority)])
}
