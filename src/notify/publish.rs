//! Publishing: a message (or a batch of them) checked, deduplicated on
//! FIFO topics, matched against each subscription's filter, and written to
//! every matching queue and to the outbox of HTTP(S) deliveries before the
//! publish is acknowledged.
//!
//! A batch costs one queue write per subscribed queue, not one per message
//! and queue: the messages bound for a queue go to it together (in order,
//! which keeps a FIFO topic's group order in a FIFO queue), and a body
//! every raw subscriber receives is digested once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::envelope::{self, Kind, Notice};
use super::topic::{Protocol, Subscription, Topic};
use super::{filter, now_ms, outbox, Message, Notifier, NotifyError, Published, MAX_MESSAGE_BYTES};
use crate::queue::message::{self, Attributes};
use crate::queue::storage::Storage;
use crate::queue::{QueueError, SendRequest};

/// A message accepted for delivery.
struct Accepted {
    msg: Message,
    published: Published,
    timestamp: String,
    /// FIFO topics: the deduplication id.
    dedup: Option<String>,
}

impl<S: Storage> Notifier<S> {
    /// Publishes `msg` to `topic`. When this returns `Ok`, every matching
    /// queue subscription holds the message durably, and the outbox holds
    /// it for the HTTP(S) ones.
    pub async fn publish(&self, topic: &Topic, msg: Message) -> Result<Published, NotifyError> {
        self.publish_batch(topic, vec![msg])
            .await
            .pop()
            .unwrap_or_else(|| Err(NotifyError::Internal("no result".into())))
    }

    /// Publishes several messages, in order; one result per message. A
    /// failure to store fails every message not already published.
    pub async fn publish_batch(
        &self,
        topic: &Topic,
        msgs: Vec<Message>,
    ) -> Vec<Result<Published, NotifyError>> {
        let mut results: Vec<Option<Result<Published, NotifyError>>> = Vec::with_capacity(msgs.len());
        let mut accepted: Vec<(usize, Accepted)> = Vec::new();
        // Deduplication ids first seen in this batch, to the index that has
        // it; repeats within the batch get their first's answer.
        let mut in_batch: HashMap<String, usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        for (i, msg) in msgs.into_iter().enumerate() {
            match self.accept(topic, msg) {
                Err(e) => results.push(Some(Err(e))),
                Ok(Err(previous)) => results.push(Some(Ok(previous))),
                Ok(Ok(a)) => match a.dedup.as_ref().and_then(|d| in_batch.get(d)) {
                    Some(&first) => {
                        repeats.push((i, first));
                        results.push(None);
                    }
                    None => {
                        if let Some(d) = &a.dedup {
                            in_batch.insert(d.clone(), i);
                        }
                        results.push(None);
                        accepted.push((i, a));
                    }
                },
            }
        }
        let stored = self.deliver_all(topic, &accepted).await;
        for (i, a) in accepted {
            results[i] = Some(match &stored {
                Ok(()) => {
                    if let Some(d) = a.dedup {
                        topic.fifo_state.remember(d, a.published.clone());
                    }
                    topic.published.fetch_add(1, Ordering::Relaxed);
                    Ok(a.published)
                }
                Err(e) => Err(e.clone()),
            });
        }
        for (i, first) in repeats {
            results[i] = results[first].clone();
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(NotifyError::Internal("no result".into()))))
            .collect()
    }

    /// Checks one message and gives it an id: `Ok(Err(previous))` for a
    /// duplicate within a FIFO topic's window.
    fn accept(&self, topic: &Topic, msg: Message) -> Result<Result<Accepted, Published>, NotifyError> {
        validate(topic, &msg)?;
        let dedup = if topic.fifo() { Some(dedup_id(topic, &msg)?) } else { None };
        if let Some(previous) = dedup.as_deref().and_then(|d| topic.fifo_state.recall(d)) {
            return Ok(Err(previous));
        }
        let sequence_number = topic
            .fifo()
            .then(|| format!("{:020}", topic.fifo_state.sequence.fetch_add(1, Ordering::Relaxed) + 1));
        let published = Published { message_id: message::uuid_text(fastrand::u128(..)), sequence_number };
        Ok(Ok(Accepted { msg, published, timestamp: envelope::iso_timestamp(now_ms()), dedup }))
    }

    /// Writes the accepted messages to every matching queue and to the
    /// outbox, all at once; `Ok` when everything is stored.
    async fn deliver_all(&self, topic: &Topic, accepted: &[(usize, Accepted)]) -> Result<(), NotifyError> {
        if accepted.is_empty() {
            return Ok(());
        }
        // Per queue subscription, its requests; per message, its HTTP(S) subscribers.
        let mut to_queues: Vec<(&Arc<Subscription>, Vec<SendRequest>)> = topic
            .subscriptions
            .iter()
            .filter(|s| s.record.confirmed && s.record.protocol == Protocol::Sqs)
            .map(|s| (s, Vec::new()))
            .collect();
        let mut pending = Vec::new();
        for (_, a) in accepted {
            let body = OnceJson::new(&a.msg.body);
            let mut signature = None;
            let mut raw_md5 = None;
            for (sub, requests) in &mut to_queues {
                if matches(sub, &a.msg, &body) {
                    requests.push(self.queue_request(topic, sub, a, &mut signature, &mut raw_md5));
                }
            }
            let urls: Vec<&Arc<Subscription>> = topic
                .subscriptions
                .iter()
                .filter(|s| {
                    s.record.confirmed && s.record.protocol != Protocol::Sqs && matches(s, &a.msg, &body)
                })
                .collect();
            if !urls.is_empty() {
                pending.push(self.pending(topic, &urls, a)?);
            }
        }
        let sends = to_queues.into_iter().filter(|(_, r)| !r.is_empty()).map(|(s, r)| self.to_queue(s, r));
        let outbox = self.to_outbox(pending);
        let (queued, outboxed) =
            futures_util::future::join(futures_util::future::join_all(sends), outbox).await;
        queued.into_iter().collect::<Result<Vec<()>, NotifyError>>()?;
        outboxed
    }

    /// The request that delivers `a` to one queue subscription: the raw
    /// body (digested once for every raw subscriber) or the envelope
    /// (signed once for every enveloped one).
    fn queue_request(
        &self,
        topic: &Topic,
        sub: &Subscription,
        a: &Accepted,
        signature: &mut Option<String>,
        raw_md5: &mut Option<[u8; 16]>,
    ) -> SendRequest {
        let (body, attributes, body_md5) = if sub.raw {
            let text = body_for(&a.msg, "sqs");
            let md5 = *raw_md5.get_or_insert_with(|| message::md5(text.as_bytes()));
            (text.to_owned(), a.msg.attributes.clone(), Some(md5))
        } else {
            let notice = self.notice(topic, a, "sqs");
            let signature = signature.get_or_insert_with(|| notice.signature(&self.signer));
            let unsubscribe = self.urls.unsubscribe(sub.arn());
            let notice = Notice { unsubscribe_url: Some(&unsubscribe), ..notice };
            (notice.to_json_signed(signature, &self.urls.signing_cert()), Attributes::new(), None)
        };
        SendRequest {
            body,
            body_md5,
            attributes,
            group_id: a.msg.group_id.clone(),
            dedup_id: a.dedup.clone(),
            sender: Some(topic.arn.clone()),
            ..SendRequest::default()
        }
    }

    /// The notification of `a` as `protocol`'s subscribers get it.
    fn notice<'a>(&self, topic: &'a Topic, a: &'a Accepted, protocol: &str) -> Notice<'a> {
        Notice {
            kind: Kind::Notification,
            message_id: &a.published.message_id,
            topic_arn: &topic.arn,
            subject: a.msg.subject.as_deref(),
            message: body_for(&a.msg, protocol),
            timestamp: &a.timestamp,
            token: None,
            subscribe_url: None,
            unsubscribe_url: None,
            attributes: &a.msg.attributes,
            sequence_number: a.published.sequence_number.as_deref(),
        }
    }

    /// Writes a subscription's requests to its queue. A queue that is gone,
    /// or that refuses a message (one smaller than a topic's messages, say),
    /// drops it with a warning; a storage failure fails the publish.
    async fn to_queue(&self, sub: &Subscription, mut requests: Vec<SendRequest>) -> Result<(), NotifyError> {
        let name = sub.record.endpoint.rsplit(':').next().unwrap_or("");
        let Ok(q) = self.queues.queue(name) else {
            tracing::warn!(subscription = %sub.arn(), queue = %name, "a subscribed queue no longer exists; the message is dropped for it");
            return Ok(());
        };
        if !q.attributes().fifo {
            for r in &mut requests {
                r.group_id = None;
                r.dedup_id = None;
            }
        }
        for result in self.queues.send(&q, requests).await? {
            match result {
                Ok(_) => {}
                Err(QueueError::Internal(e)) => return Err(NotifyError::Internal(e)),
                Err(e) => {
                    tracing::warn!(subscription = %sub.arn(), error = %e, "the subscribed queue refused a message")
                }
            }
        }
        Ok(())
    }

    /// The outbox record of `a` for its HTTP(S) subscribers.
    fn pending(
        &self,
        topic: &Topic,
        subs: &[&Arc<Subscription>],
        a: &Accepted,
    ) -> Result<SendRequest, NotifyError> {
        let per_protocol = a
            .msg
            .per_protocol
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() == "http" || k.as_str() == "https")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let record = outbox::Pending {
            topic: topic.arn.clone(),
            id: a.published.message_id.clone(),
            subject: a.msg.subject.clone(),
            message: body_for(&a.msg, "default").to_owned(),
            per_protocol,
            timestamp: a.timestamp.clone(),
            attributes: a.msg.attributes.clone(),
            sequence: a.published.sequence_number.clone(),
            subscriptions: subs.iter().map(|s| s.arn().to_owned()).collect(),
            attempts: 0,
            not_before_ms: None,
            confirm: None,
        };
        record.to_request(0)
    }
}

/// A message's checks before anything is delivered.
fn validate(topic: &Topic, msg: &Message) -> Result<(), NotifyError> {
    if msg.body.is_empty() {
        return Err(NotifyError::invalid("Invalid parameter: Empty message"));
    }
    let attr_size =
        message::validate_attributes(&msg.attributes).map_err(|e| NotifyError::invalid(e.to_string()))?;
    if msg.body.len() + attr_size > MAX_MESSAGE_BYTES {
        return Err(NotifyError::invalid("Invalid parameter: Message too long"));
    }
    if let Some(s) = &msg.subject {
        let printable = s.chars().all(|c| c.is_ascii() && !c.is_ascii_control());
        if s.is_empty() || s.len() > 100 || !printable {
            return Err(NotifyError::invalid(
                "Invalid parameter: Subject must be 1-100 printable ASCII characters, without line breaks",
            ));
        }
    }
    if !topic.fifo() && msg.dedup_id.is_some() {
        return Err(NotifyError::invalid(
            "Invalid parameter: The request includes MessageDeduplicationId parameter that is not valid for this topic type",
        ));
    }
    if topic.fifo() {
        let group = msg.group_id.as_deref().ok_or_else(|| {
            NotifyError::invalid(
                "Invalid parameter: The MessageGroupId parameter is required for FIFO topics",
            )
        })?;
        check_token("MessageGroupId", group)?;
    }
    Ok(())
}

fn check_token(name: &str, value: &str) -> Result<(), NotifyError> {
    let ok = !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(NotifyError::InvalidFifo(format!(
            "Invalid parameter: {name} must be 1-128 printable ASCII characters"
        )));
    }
    Ok(())
}

/// A FIFO publish's deduplication id: given, or the body's SHA-256 when
/// the topic deduplicates by content.
fn dedup_id(topic: &Topic, msg: &Message) -> Result<String, NotifyError> {
    match &msg.dedup_id {
        Some(id) => {
            check_token("MessageDeduplicationId", id)?;
            Ok(id.clone())
        }
        None if topic.record.content_based_deduplication() => Ok(message::hex(&Sha256::digest(msg.body.as_bytes()))),
        None => Err(NotifyError::InvalidFifo(
            "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
        )),
    }
}

/// The body a protocol receives (`MessageStructure=json` picks it).
pub(super) fn body_for<'m>(msg: &'m Message, protocol: &str) -> &'m str {
    match &msg.per_protocol {
        Some(map) => {
            map.get(protocol).or_else(|| map.get("default")).map_or(msg.body.as_str(), String::as_str)
        }
        None => &msg.body,
    }
}

/// A message body parsed as JSON at most once, when a body-scoped filter
/// policy first needs it.
struct OnceJson<'a> {
    text: &'a str,
    parsed: std::sync::OnceLock<serde_json::Value>,
}

impl<'a> OnceJson<'a> {
    fn new(text: &'a str) -> Self {
        OnceJson { text, parsed: std::sync::OnceLock::new() }
    }

    fn get(&self) -> &serde_json::Value {
        self.parsed.get_or_init(|| serde_json::from_str(self.text).unwrap_or(serde_json::Value::Null))
    }
}

fn matches(sub: &Subscription, msg: &Message, body: &OnceJson<'_>) -> bool {
    match (&sub.filter, sub.scope) {
        (None, _) => true,
        (Some(p), filter::Scope::MessageAttributes) => p.matches_attributes(&msg.attributes),
        (Some(p), filter::Scope::MessageBody) => p.matches_body(body.get()),
    }
}
