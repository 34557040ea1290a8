//! Who sees which orders and statements, and who decides for an authority: the rules the API's
//! lists and the console's pages share.

use suanli_domain::{AuthorityId, ProgramId};
use suanli_service::{Role, View};

use crate::lifecycle::{Grant, granted, state_name};

/// The orders `role` may see, in id order.
pub(crate) fn visible_orders<'a>(
    s: &'a View,
    role: Role,
    program: Option<ProgramId>,
    state: Option<&str>,
) -> Vec<&'a suanli_service::model::Order> {
    s.state()
        .orders
        .values()
        .filter(|o| program.is_none_or(|p| o.program == p))
        .filter(|o| state.is_none_or(|wanted| state_name(&o.state) == wanted))
        .filter(|o| {
            let authority = s.state().programs[&o.program].authority;
            let grants = [
                Grant::Admin,
                Grant::Auditor,
                Grant::Authority(authority),
                Grant::Enterprise(o.enterprise),
                Grant::Provider(o.provider),
            ];
            granted(role, &grants)
        })
        .collect()
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
