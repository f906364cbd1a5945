//! The front end router's state: what its handlers extract.

use std::sync::Arc;

use axum::extract::FromRef;
use countersign_log::http::AdminAuth;

use crate::state::Approvals;

/// The state of the front end's router: the shared [`Approvals`], which handlers extract as
/// `State<Arc<Approvals>>`, and the admin check, which they extract as
/// [`Admin`](countersign_log::http::Admin).
#[derive(Clone, Debug)]
pub struct RouterState(pub Arc<Approvals>);

impl FromRef<RouterState> for Arc<Approvals> {
    fn from_ref(s: &RouterState) -> Arc<Approvals> {
        s.0.clone()
    }
}

impl FromRef<RouterState> for AdminAuth {
    fn from_ref(s: &RouterState) -> AdminAuth {
        s.0.admin.clone()
    }
}
