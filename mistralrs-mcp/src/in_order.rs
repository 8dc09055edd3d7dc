//! Upstream notifications whose order matters, taken off the transport in the
//! order they arrived.
//!
//! rmcp runs each incoming notification's handler in a task of its own, so
//! eight log messages an upstream sent in order could reach a client shuffled
//! (seen in CI: `notice` before `info`). [`InOrder`] wraps an upstream's
//! transport and takes log messages and resource updates off it in
//! `receive`, which rmcp calls sequentially, onto the forwarder's notice
//! channel (log messages also onto the queue of the call they belong to, if
//! any); progress onto its call's queue ([`crate::call_notices`]), and on to
//! rmcp as well, which resets the call's timeout on progress.

use rmcp::RoleClient;
use std::sync::Arc;

use rmcp::model::{JsonRpcMessage, JsonRpcNotification, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;

use crate::call_notices::CallNoticeRoutes;
use crate::client::{UpstreamEvent, UpstreamNotice};

/// An upstream's transport whose ordered notifications bypass rmcp's handler
/// tasks. A full queue drops what does not fit (a lagging reader misses
/// notifications; the upstream is never held up).
pub(crate) struct InOrder<T> {
    pub(crate) inner: T,
    /// The upstream's name, as the forwarder knows it.
    pub(crate) server: String,
    /// Log messages and resource updates, to the forwarder.
    pub(crate) notices: mpsc::Sender<UpstreamNotice>,
    /// The queues of the upstream's calls in flight.
    pub(crate) call_notices: Arc<CallNoticeRoutes>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for InOrder<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            let JsonRpcMessage::Notification(JsonRpcNotification { notification, .. }) = &message
            else {
                return Some(message);
            };
            let event = match notification {
                #[allow(deprecated)] // logging: deprecated by SEP-2577, still used
                ServerNotification::LoggingMessageNotification(log) => {
                    self.call_notices.route_log(&log.params);
                    UpstreamEvent::Log(log.params.clone())
                }
                ServerNotification::ResourceUpdatedNotification(update) => {
                    UpstreamEvent::ResourceUpdated(update.params.uri.clone())
                }
                ServerNotification::ProgressNotification(progress) => {
                    self.call_notices.route_progress(progress.params.clone());
                    return Some(message);
                }
                _ => return Some(message),
            };
            let _ = self.notices.try_send((self.server.clone(), event));
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
