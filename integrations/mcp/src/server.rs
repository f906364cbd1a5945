//! The MCP handler: `tools/list` and `tools/call` for the three tools, and the poll loop that
//! waits for a decision. One [`Shared`] state serves every MCP session (stdio has one, HTTP one
//! per client), because the server hands out an approval's tokens once: whichever session
//! collects them keeps the result for the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ElicitRequestParams,
    ElicitationAction, Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{ElicitationMode, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::Value;
use tokio::time::Instant;

use crate::ciba::Countersign;
use crate::outcome::{check_approval, Decision, Status, TokenAnswer};
use crate::tools::{self, BadArguments, BundleSource};

/// Requests remembered at once; the oldest are forgotten past this (a forgotten request can
/// still be asked for with its authorization_details).
const MAX_TRACKED: usize = 10_000;

/// Elicitation ids handed out (ids only need to be unique within the session).
static ELICITATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What this process knows of one request.
struct Tracked {
    /// The authorization_details requested: the token must approve exactly these.
    details: Value,
    /// Seconds between polls (grows by 5 with each slow_down).
    interval: u64,
    /// Earliest time of the next poll.
    next_poll: Instant,
    /// The final answer, once there is one (the tokens are handed out once).
    outcome: Option<Result<Decision, String>>,
}

/// State shared by all sessions.
pub struct Shared {
    cs: Countersign,
    tracked: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Tracked>>>>,
    order: Mutex<VecDeque<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    /// State for the server `cs` talks to.
    pub fn new(cs: Countersign) -> Arc<Self> {
        Arc::new(Shared {
            cs,
            tracked: Mutex::new(HashMap::new()),
            order: Mutex::new(VecDeque::new()),
        })
    }

    fn track(&self, id: &str, t: Tracked) -> Arc<tokio::sync::Mutex<Tracked>> {
        let entry = Arc::new(tokio::sync::Mutex::new(t));
        let mut map = lock(&self.tracked);
        let mut order = lock(&self.order);
        map.insert(id.to_owned(), entry.clone());
        order.push_back(id.to_owned());
        while order.len() > MAX_TRACKED {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        entry
    }

    fn find(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Tracked>>> {
        lock(&self.tracked).get(id).cloned()
    }

    /// Waits up to `wait` for the decision on `id`, polling the token endpoint no faster than
    /// its interval; the answer once decided, `pending` when the wait ends first, and an error
    /// (never an approval) for anything the protocol does not call a decision.
    async fn wait_for(
        &self,
        id: &str,
        entry: Arc<tokio::sync::Mutex<Tracked>>,
        wait: Duration,
    ) -> Result<Decision, String> {
        let deadline = Instant::now() + wait;
        // Another call waiting on the same request holds the lock; this one waits as long as
        // it was asked to, then answers pending.
        let Ok(mut t) = tokio::time::timeout_at(deadline, entry.lock()).await else {
            return Ok(self.pending(id));
        };
        loop {
            if let Some(o) = &t.outcome {
                return o.clone();
            }
            if t.next_poll > deadline {
                return Ok(self.pending(id));
            }
            tokio::time::sleep_until(t.next_poll).await;
            let answer = self.cs.token(id).await;
            t.next_poll = Instant::now() + Duration::from_secs(t.interval);
            let outcome = match answer {
                TokenAnswer::Pending => continue,
                TokenAnswer::SlowDown => {
                    // CIBA Core section 11: slow_down adds 5 seconds to the interval for good.
                    t.interval += 5;
                    t.next_poll = Instant::now() + Duration::from_secs(t.interval);
                    continue;
                }
                // A transport or server failure may pass: nothing is remembered, so a later
                // get_decision polls again.
                TokenAnswer::Failed(why) => {
                    return Err(format!(
                        "not approved: {why}; the request may still be pending (ask again with \
                         get_decision)"
                    ))
                }
                TokenAnswer::Denied => Ok(self.denied(id).await),
                TokenAnswer::Expired => Ok(Decision::bare(
                    Status::Expired,
                    id,
                    "the request expired before it was approved (or before its approval was \
                     collected): do not perform the action; ask again if it is still needed",
                )),
                TokenAnswer::Tokens(response) => self.approved(id, &response, &t.details).await,
            };
            t.outcome = Some(outcome.clone());
            return outcome;
        }
    }

    fn pending(&self, id: &str) -> Decision {
        Decision::bare(
            Status::Pending,
            id,
            "the approver has not decided yet: do not perform the action; call get_decision \
             with this auth_req_id to keep waiting",
        )
    }

    /// A denial, with the statement hash and log index of the denial when its evidence
    /// verifies (best effort: the denial stands either way).
    async fn denied(&self, id: &str) -> Decision {
        let mut d = Decision::bare(
            Status::Denied,
            id,
            "the approver denied the request: do not perform the action",
        );
        d.evidence_url = Some(self.cs.evidence_url(id));
        if let (Ok(bytes), Ok((key, source))) =
            (self.cs.evidence(id).await, self.cs.log_key().await)
        {
            let cfg = self.cs.config();
            let v = crate::evidence::verdict(
                &bytes,
                &key,
                source,
                cfg.rp_id.as_deref(),
                cfg.origin.as_deref(),
            );
            if v["valid"] == Value::Bool(true) && v["decision"] == "deny" {
                d.statement_sha256 = v["statement_sha256"].as_str().map(str::to_owned);
                d.log_index = v["log_index"].as_u64();
            }
        }
        d
    }

    /// An approval, reported only once the access token checks out.
    async fn approved(
        &self,
        id: &str,
        response: &serde_json::Map<String, Value>,
        details: &Value,
    ) -> Result<Decision, String> {
        let token = response
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut jwks = self.cs.jwks(false).await.map_err(|e| {
            format!("not approved: the token's signature could not be checked: {e}")
        })?;
        let known = crate::jwt::kid_of(token).is_some_and(|kid| {
            jwks["keys"]
                .as_array()
                .is_some_and(|ks| ks.iter().any(|k| k["kid"] == kid.as_str()))
        });
        if !known {
            // The token keys may have been rotated since they were cached.
            jwks = self.cs.jwks(true).await.map_err(|e| {
                format!("not approved: the token's signature could not be checked: {e}")
            })?;
        }
        let cfg = self.cs.config();
        let a = check_approval(response, details, &cfg.client_id, &jwks, now_secs())
            .map_err(|e| format!("not approved: {e}"))?;
        tracing::info!(log_index = a.log_index, "approval collected and checked");
        Ok(Decision {
            status: Status::Approved,
            auth_req_id: id.to_owned(),
            statement_sha256: Some(a.statement_sha256),
            log_index: Some(a.log_index),
            access_token: Some(a.access_token),
            evidence_url: Some(self.cs.evidence_url(id)),
            message: "approved: perform exactly the action in authorization_details, once".into(),
        })
    }

    /// Offers the approval page to the MCP client's user by URL-mode elicitation, while the
    /// request waits (the operator said, with `--offer-approval-page`, that this user is the
    /// approver). Best effort: the decision still comes only from the token endpoint.
    fn offer_approval_page(
        self: &Arc<Self>,
        peer: &Peer<RoleServer>,
        binding_message: &str,
        valid_for: Duration,
    ) {
        if !self.cs.config().offer_approval_page
            || !peer
                .supported_elicitation_modes()
                .contains(&ElicitationMode::Url)
        {
            return;
        }
        let (me, peer) = (self.clone(), peer.clone());
        let message = format!(
            "Countersign: an agent asks you to approve \"{binding_message}\". Open the approval \
             page to read the exact action and approve or deny it with your passkey."
        );
        let id = format!(
            "countersign-{}",
            ELICITATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        tokio::spawn(async move {
            let url = match me.cs.approval_page().await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(error = %e, "no approval page to offer");
                    return;
                }
            };
            let params = ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message,
                url,
                elicitation_id: id,
            };
            match peer
                .create_elicitation_with_timeout(params, Some(valid_for))
                .await
            {
                Ok(r) if r.action == ElicitationAction::Accept => {
                    tracing::info!("the user opened the approval page");
                }
                Ok(_) => tracing::info!("the user did not open the approval page"),
                Err(e) => tracing::info!(error = %e, "approval page not offered"),
            }
        });
    }

    async fn request_approval(
        self: &Arc<Self>,
        args: Option<serde_json::Map<String, Value>>,
        peer: &Peer<RoleServer>,
    ) -> CallToolResult {
        let (req, wait) = match tools::request_approval(args) {
            Ok(x) => x,
            Err(BadArguments(e)) => return tool_error(e),
        };
        let auth = match self.cs.bc_authorize(&req).await {
            Ok(a) => a,
            Err(e) => return tool_error(format!("not approved: {e}")),
        };
        tracing::info!(expires_in = auth.expires_in, "approval requested");
        self.offer_approval_page(
            peer,
            &req.binding_message,
            Duration::from_secs(auth.expires_in),
        );
        let entry = self.track(
            &auth.auth_req_id,
            Tracked {
                details: req.authorization_details,
                interval: auth.interval,
                next_poll: Instant::now() + Duration::from_secs(auth.interval),
                outcome: None,
            },
        );
        decision_result(
            self.wait_for(&auth.auth_req_id, entry, Duration::from_secs(wait))
                .await,
        )
    }

    async fn get_decision(&self, args: Option<serde_json::Map<String, Value>>) -> CallToolResult {
        let (id, wait, details) = match tools::get_decision(args) {
            Ok(x) => x,
            Err(BadArguments(e)) => return tool_error(e),
        };
        let entry = match (self.find(&id), details) {
            (Some(e), given) => {
                if let Some(given) = given {
                    let same = {
                        let t = e.lock().await;
                        countersign_verifier::canonical_json(&t.details).ok()
                            == countersign_verifier::canonical_json(&given).ok()
                    };
                    if !same {
                        return tool_error(
                            "not approved: these authorization_details are not the ones this \
                             request asked approval for"
                                .into(),
                        );
                    }
                }
                e
            }
            (None, Some(details)) => self.track(
                &id,
                Tracked {
                    details,
                    interval: 5,
                    next_poll: Instant::now(),
                    outcome: None,
                },
            ),
            (None, None) => {
                return tool_error(
                    "this server process did not make that request (or no longer remembers \
                     it): pass its authorization_details too, so that the token can be checked \
                     against them"
                        .into(),
                )
            }
        };
        decision_result(self.wait_for(&id, entry, Duration::from_secs(wait)).await)
    }

    async fn verify_evidence(
        &self,
        args: Option<serde_json::Map<String, Value>>,
    ) -> CallToolResult {
        let source = match tools::verify_evidence(args) {
            Ok(x) => x,
            Err(BadArguments(e)) => return tool_error(e),
        };
        let bytes = match source {
            BundleSource::Given(b) => b,
            BundleSource::Fetch(id) => match self.cs.evidence(&id).await {
                Ok(b) => b,
                Err(e) => return tool_error(format!("no evidence to verify: {e}")),
            },
        };
        let (key, key_source) = match self.cs.log_key().await {
            Ok(k) => k,
            Err(e) => return tool_error(format!("the log key could not be had: {e}")),
        };
        let cfg = self.cs.config();
        let v = crate::evidence::verdict(
            &bytes,
            &key,
            key_source,
            cfg.rp_id.as_deref(),
            cfg.origin.as_deref(),
        );
        structured(crate::evidence::to_text(&v), v)
    }
}

fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

fn structured(text: String, value: Value) -> CallToolResult {
    let mut r = CallToolResult::structured(value);
    r.content = vec![ContentBlock::text(text)];
    r
}

fn decision_result(d: Result<Decision, String>) -> CallToolResult {
    match d {
        Ok(d) => structured(d.to_text(), d.to_json()),
        Err(e) => tool_error(e),
    }
}

/// One MCP session's handler (cheap: the state is shared).
#[derive(Clone)]
pub struct Handler {
    shared: Arc<Shared>,
    tools: Arc<Vec<Tool>>,
}

impl Handler {
    /// A handler on `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Handler {
            shared,
            tools: Arc::new(tools::list()),
        }
    }
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("countersign-mcp", env!("CARGO_PKG_VERSION"))
                    .with_title("Countersign approvals"),
            )
            .with_instructions(
                "Before a risky action (a payment, a deletion, a deployment, a message sent on \
                 someone's behalf), call request_approval with the exact action as \
                 authorization_details. Perform the action only if the status is approved, and \
                 only that action. pending: call get_decision. denied or expired: do not act.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments;
        let result = match request.name.as_ref() {
            "request_approval" => self.shared.request_approval(args, &context.peer).await,
            "get_decision" => self.shared.get_decision(args).await,
            "verify_evidence" => self.shared.verify_evidence(args).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {:?}", crate::outcome::printable(other)),
                    None,
                ))
            }
        };
        Ok(result.into())
    }
}
