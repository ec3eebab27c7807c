//! Publishing through the gateway to a topic: a route with `topic:` turns
//! each request into a notification, as [`super::publish`] describes, and
//! answers once every subscribed queue holds it.

use std::sync::Arc;

use http::Response;

use super::publish::{published, read_text, Fields, PublishError};
use crate::body::GatewayBody;
use crate::config::MessageMapping;
use crate::exchange::Exchange;
use crate::notify::{Message, Notifier, MAX_MESSAGE_BYTES};
use crate::queue::storage::Storage;

/// Publishes requests to one topic.
pub struct TopicPublisher<S: Storage> {
    pub notifier: Arc<Notifier<S>>,
    pub topic: String,
    pub mapping: MessageMapping,
}

impl<S: Storage> TopicPublisher<S> {
    pub async fn publish(&self, ex: Exchange) -> Result<Response<GatewayBody>, PublishError> {
        let topic = self.notifier.topic_named(&self.topic).map_err(PublishError::Topic)?;
        let claims = ex.claims;
        let target = format!("topic `{}`", self.topic);
        let (parts, body) = read_text(ex.request, MAX_MESSAGE_BYTES as u64, target).await?;
        let fields = Fields::of(&self.mapping, &parts.headers, claims.as_deref(), topic.fifo());
        let message = Message {
            body,
            subject: fields.subject,
            attributes: fields.attributes,
            group_id: fields.group_id,
            dedup_id: fields.dedup_id,
            per_protocol: None,
        };
        let p = self.notifier.publish(&topic, message).await.map_err(PublishError::Topic)?;
        Ok(published(&p.message_id, p.sequence_number.as_deref()))
    }
}
