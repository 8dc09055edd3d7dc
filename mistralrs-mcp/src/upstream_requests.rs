//! Requests an upstream sends the gateway during a forwarded call:
//! `sampling/createMessage`, `elicitation/create` and `roots/list`, answered by
//! the client whose call it is (on that call's stream) when the client declared
//! the capability, else by the gateway: sampling by a served model, elicitation
//! declined, no roots. Each upstream's `sampling`, `elicitation` and `roots`
//! settings say what is declared to it at all.
// Sampling and roots are deprecated by SEP-2577 (2026-07-28); upstreams still ask.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mistralrs_core::metrics::{SourceLabel, UpstreamRequestLabels, metrics};
use rmcp::ErrorData as McpError;
use rmcp::RoleClient;
use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientResult, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, ElicitationAction, ElicitationCapability, FormElicitationCapability,
    GetExtensions, ListRootsRequest, ListRootsResult, RootsCapabilities, SamplingCapability,
    ServerRequest, UrlElicitationCapability,
};
use rmcp::service::{
    InboundStreamOrigin, OriginatingRequestId, PeerRequestOptions, RequestContext, ServiceError,
};

use mistralrs_core::sync::Mutex;
use rmcp::model::{CustomNotification, ServerNotification};
use rmcp::{Peer, RoleServer};

use crate::callers::{Caller, Callers};
use crate::config::{RelayPolicy, SamplingPolicy};
use crate::sampling::LocalSampler;

/// Who answers one upstream's requests, and what it is told the gateway can do.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamRequests {
    pub(crate) server: String,
    pub(crate) callers: Arc<Callers>,
    pub(crate) sampling: SamplingPolicy,
    pub(crate) elicitation: RelayPolicy,
    pub(crate) roots: RelayPolicy,
    /// A served model, for sampling no client answers.
    pub(crate) sampler: Option<Arc<dyn LocalSampler>>,
    /// How long a client has to answer (the upstream's call timeout).
    pub(crate) timeout: Duration,
    /// The clients that accepted a URL-mode elicitation, by its id, until
    /// the upstream says it is complete.
    pub(crate) url_elicitations: Arc<Mutex<HashMap<String, Peer<RoleServer>>>>,
}

/// URL-mode elicitations awaiting their completion notice, at most; past it
/// new ones are not remembered (their completion is not relayed).
const MAX_OPEN_URL_ELICITATIONS: usize = 1024;

/// The method of the completion notice of a URL-mode elicitation.
const ELICITATION_COMPLETE: &str = "notifications/elicitation/complete";

impl UpstreamRequests {
    /// The capabilities declared to the upstream: only what can be answered.
    pub(crate) fn capabilities(&self) -> ClientCapabilities {
        let mut capabilities = ClientCapabilities::default();
        let can_sample = match self.sampling {
            SamplingPolicy::Deny => false,
            SamplingPolicy::Local => self.sampler.is_some(),
            SamplingPolicy::Client => true,
        };
        if can_sample {
            capabilities.sampling = Some(SamplingCapability::default());
        }
        if self.elicitation == RelayPolicy::Client {
            capabilities.elicitation = Some(
                ElicitationCapability::new()
                    .with_form(FormElicitationCapability::default())
                    .with_url(UrlElicitationCapability::new()),
            );
        }
        if self.roots == RelayPolicy::Client {
            capabilities.roots = Some(RootsCapabilities::default());
        }
        capabilities
    }

    /// `sampling/createMessage`: the calling client if it samples, else a served model.
    pub(crate) async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: &RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        const METHOD: &str = "sampling/createMessage";
        let client = match self.sampling {
            SamplingPolicy::Deny => None,
            SamplingPolicy::Local => None,
            SamplingPolicy::Client => self
                .callers
                .caller_of(context.extensions.get::<InboundStreamOrigin>())
                .await
                .filter(|caller| can_sample(caller.capabilities().as_ref(), &params)),
        };
        if let Some(caller) = client {
            let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
            let answer = self
                .relay(&caller, context, request, METHOD, |answer| match answer {
                    ClientResult::CreateMessageResult(result) => Some(*result),
                    _ => None,
                })
                .await;
            if answer.is_ok() {
                metrics()
                    .tool_sampling
                    .get(&SourceLabel { source: "client" })
                    .inc();
            }
            return answer;
        }
        match (&self.sampler, self.sampling) {
            (Some(sampler), SamplingPolicy::Local | SamplingPolicy::Client) => {
                let answer = sampler.create_message(&self.server, params).await;
                self.count(METHOD, if answer.is_ok() { "model" } else { "error" });
                answer
            }
            _ => {
                self.count(METHOD, "error");
                Err(McpError::method_not_found::<
                    rmcp::model::CreateMessageRequestMethod,
                >())
            }
        }
    }

    /// `elicitation/create`: the calling client if it takes the mode, else declined.
    pub(crate) async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: &RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        const METHOD: &str = "elicitation/create";
        let url = matches!(params, ElicitRequestParams::UrlElicitationParams { .. });
        let client = match self.elicitation {
            RelayPolicy::Deny => None,
            RelayPolicy::Client => self
                .callers
                .caller_of(context.extensions.get::<InboundStreamOrigin>())
                .await
                .filter(|caller| can_elicit(caller.capabilities().as_ref(), url)),
        };
        let url_id = match &params {
            ElicitRequestParams::UrlElicitationParams { elicitation_id, .. } => {
                Some(elicitation_id.clone()).filter(|id| !id.is_empty())
            }
            _ => None,
        };
        match client {
            Some(caller) => {
                let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
                let answer = self
                    .relay(&caller, context, request, METHOD, |answer| match answer {
                        ClientResult::ElicitResult(result) => Some(result),
                        _ => None,
                    })
                    .await;
                let accepted = answer
                    .as_ref()
                    .is_ok_and(|a| a.action == ElicitationAction::Accept);
                if let (Some(id), true) = (url_id, accepted) {
                    let mut open = self.url_elicitations.lock();
                    if open.len() < MAX_OPEN_URL_ELICITATIONS {
                        open.insert(id, caller.peer.clone());
                    }
                }
                answer
            }
            None => {
                self.count(METHOD, "gateway");
                Ok(ElicitResult::new(ElicitationAction::Decline))
            }
        }
    }

    /// An upstream's `notifications/elicitation/complete`: to the client that
    /// accepted that URL-mode elicitation, once.
    pub(crate) async fn elicitation_complete(&self, notification: CustomNotification) {
        let id = notification
            .params
            .as_ref()
            .and_then(|p| p.get("elicitationId"))
            .and_then(|id| id.as_str());
        let Some(peer) = id.and_then(|id| self.url_elicitations.lock().remove(id)) else {
            return;
        };
        let notice = CustomNotification::new(ELICITATION_COMPLETE, notification.params);
        // A client that went away just misses it.
        let _ = peer
            .send_notification(ServerNotification::CustomNotification(notice))
            .await;
    }

    /// Whether `notification` is a URL-mode elicitation's completion notice.
    pub(crate) fn is_elicitation_complete(notification: &CustomNotification) -> bool {
        notification.method == ELICITATION_COMPLETE
    }

    /// `roots/list`: the calling client's roots if it has any, else none.
    pub(crate) async fn list_roots(
        &self,
        context: &RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        const METHOD: &str = "roots/list";
        let client = match self.roots {
            RelayPolicy::Deny => None,
            RelayPolicy::Client => self
                .callers
                .caller_of(context.extensions.get::<InboundStreamOrigin>())
                .await
                .filter(|caller| caller.capabilities().is_some_and(|c| c.roots.is_some())),
        };
        match client {
            Some(caller) => {
                let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
                self.relay(&caller, context, request, METHOD, |answer| match answer {
                    ClientResult::ListRootsResult(result) => Some(result),
                    _ => None,
                })
                .await
            }
            None => {
                self.count(METHOD, "gateway");
                Ok(ListRootsResult::default())
            }
        }
    }

    /// Sends `request` (the `upstream`'s) to `caller` on its call's stream (or
    /// in its next round, for a client without a session) and waits for the
    /// answer: at most the upstream's timeout, not past the
    /// call's end or the upstream's withdrawal (the client is then told the
    /// request is cancelled), nor past the client's session. The client's own
    /// error goes upstream as it is.
    async fn ask(
        &self,
        caller: &Caller,
        upstream: &RequestContext<RoleClient>,
        mut request: ServerRequest,
        method: &'static str,
    ) -> Result<ClientResult, McpError> {
        if let Some(rounds) = &caller.rounds {
            return rounds
                .ask(request, method, self.timeout, &upstream.ct, &caller.cancel)
                .await;
        }
        async {
            let gone = caller.cancel.is_cancelled() || caller.session_closed.is_cancelled();
            if gone || caller.peer.is_transport_closed() {
                return Err(McpError::internal_error(
                    format!("{method}: the client that made the call is gone"),
                    None,
                ));
            }
            if let Some(originating) = &caller.request {
                request
                    .extensions_mut()
                    .insert(OriginatingRequestId(originating.clone()));
            }
            let options = PeerRequestOptions::with_timeout(self.timeout);
            // rmcp marks a request sent from within a request handler with
            // that request's id (a task-local), which here is the upstream's
            // request on the other connection: send from a task of its own,
            // so that only the caller's marker applies.
            let peer = caller.peer.clone();
            let handle =
                tokio::spawn(async move { peer.send_request_with_option(request, options).await })
                    .await
                    .map_err(|e| McpError::internal_error(format!("{method}: {e}"), None))?
                    .map_err(|e| client_failed(method, e))?;
            let (id, peer) = (handle.id.clone(), handle.peer.clone());
            tokio::select! {
                answer = handle.await_response() => answer.map_err(|e| client_failed(method, e)),
                () = caller.session_closed.cancelled() => Err(McpError::internal_error(
                    format!("{method}: the client's session ended before it answered"),
                    None,
                )),
                () = caller.cancel.cancelled() => {
                    let reason = Some("the call it was part of ended".to_owned());
                    let _ = peer.notify_cancelled(CancelledNotificationParam::new(Some(id), reason)).await;
                    Err(McpError::internal_error(
                        format!("{method}: the call ended before the client answered"),
                        None,
                    ))
                }
                () = upstream.ct.cancelled() => {
                    let reason = Some("the server that asked withdrew the request".to_owned());
                    let _ = peer.notify_cancelled(CancelledNotificationParam::new(Some(id), reason)).await;
                    Err(McpError::internal_error(format!("{method}: withdrawn"), None))
                }
            }
        }
        .await
    }

    /// Asks `caller` and takes its answer if `unpack` finds the expected
    /// kind in it; counts the outcome.
    async fn relay<T>(
        &self,
        caller: &Caller,
        upstream: &RequestContext<RoleClient>,
        request: ServerRequest,
        method: &'static str,
        unpack: impl FnOnce(ClientResult) -> Option<T>,
    ) -> Result<T, McpError> {
        let answer = self
            .ask(caller, upstream, request, method)
            .await
            .and_then(|answer| {
                unpack(answer).ok_or_else(|| {
                    McpError::internal_error(
                        format!("{method}: the client answered with a result of another kind"),
                        None,
                    )
                })
            });
        self.count(method, if answer.is_ok() { "client" } else { "error" });
        answer
    }

    fn count(&self, method: &'static str, answered_by: &'static str) {
        metrics()
            .mcp_upstream_requests
            .get(&UpstreamRequestLabels {
                server: self.server.as_str(),
                method,
                answered_by,
            })
            .inc();
    }
}

/// Whether a client with `capabilities` can answer `params` (tools in a
/// sampling request need the `sampling.tools` capability).
fn can_sample(
    capabilities: Option<&ClientCapabilities>,
    params: &CreateMessageRequestParams,
) -> bool {
    let Some(sampling) = capabilities.and_then(|c| c.sampling.as_ref()) else {
        return false;
    };
    let wants_tools = params.tools.is_some() || params.tool_choice.is_some();
    !wants_tools || sampling.tools.is_some()
}

/// Whether a client with `capabilities` takes elicitation in URL mode (`url`)
/// or form mode; an empty `elicitation` capability means form mode only.
fn can_elicit(capabilities: Option<&ClientCapabilities>, url: bool) -> bool {
    let Some(elicitation) = capabilities.and_then(|c| c.elicitation.as_ref()) else {
        return false;
    };
    if url {
        elicitation.url.is_some()
    } else {
        elicitation.form.is_some() || elicitation.url.is_none()
    }
}

/// A client's failure to answer, as the upstream sees it: the client's own
/// JSON-RPC error as it is, anything else (a malformed answer, a timeout, a
/// closed session) as an internal error naming it.
fn client_failed(method: &str, error: ServiceError) -> McpError {
    match error {
        ServiceError::McpError(error) => error,
        other => McpError::internal_error(format!("{method}: the client's answer: {other}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_elicitation(form: bool, url: bool) -> ClientCapabilities {
        let mut elicitation = ElicitationCapability::new();
        if form {
            elicitation = elicitation.with_form(FormElicitationCapability::default());
        }
        if url {
            elicitation = elicitation.with_url(UrlElicitationCapability::new());
        }
        let mut capabilities = ClientCapabilities::default();
        capabilities.elicitation = Some(elicitation);
        capabilities
    }

    #[test]
    fn elicitation_modes_follow_the_declared_capability() {
        let empty = with_elicitation(false, false);
        assert!(can_elicit(Some(&empty), false), "{{}} means form mode");
        assert!(!can_elicit(Some(&empty), true));
        let url_only = with_elicitation(false, true);
        assert!(!can_elicit(Some(&url_only), false));
        assert!(can_elicit(Some(&url_only), true));
        let both = with_elicitation(true, true);
        assert!(can_elicit(Some(&both), false) && can_elicit(Some(&both), true));
        assert!(!can_elicit(Some(&ClientCapabilities::default()), false));
        assert!(!can_elicit(None, false));
    }
}
