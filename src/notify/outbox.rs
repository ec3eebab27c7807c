//! HTTP(S) deliveries, durable: a publish with HTTP(S) subscribers puts
//! one [`Pending`] record into an internal queue before it is
//! acknowledged, and delivery workers take records from there. A pending
//! subscription's confirmation request travels the same way, so it is
//! retried like a message (and survives a restart) until the endpoint
//! answers. A record is
//! deleted only once each of its subscribers has answered 2xx, given up
//! (4xx other than 429: not retried), or had its failed delivery recorded
//! for a later attempt (a new record, delayed by the subscription's retry
//! policy) or handed to its dead-letter queue. A crash at any point
//! delivers again rather than losing: at least once, as SNS.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::envelope::{iso_timestamp, Kind, Notice};
use super::topic::{Protocol, Subscription, Topic};
use super::{now_ms, Deliver, Notifier, NotifyError};
use crate::queue::message::{self, AttributeValue, Attributes};
use crate::queue::storage::Storage;
use crate::queue::{ReceiveRequest, ReceivedMessage, SendRequest};

/// The internal queue's name (after `queue::INTERNAL_PREFIX`).
pub(super) const QUEUE: &str = "sns-deliveries";
/// How long a taken record stays hidden: longer than a delivery's deadline.
const VISIBILITY_SECS: u32 = 60;
/// The longest delay a queue message takes; longer retry delays wait in
/// steps ([`Pending::not_before_ms`]).
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);
/// Delivery loops across all threads (each takes up to ten records at a
/// time and delivers to all of a record's subscribers at once).
pub const LOOPS: usize = 16;

/// One message still owed to some HTTP(S) subscribers of a topic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Pending {
    pub topic: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub message: String,
    /// `MessageStructure=json`'s `http` and `https` bodies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_protocol: BTreeMap<String, String>,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// Subscription ARNs still to deliver to.
    pub subscriptions: Vec<String>,
    /// Attempts made so far for these subscriptions.
    #[serde(default)]
    pub attempts: u32,
    /// Not to be tried before this time (retry delays over 15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// A `SubscriptionConfirmation` carrying this token, for a pending
    /// subscription (rather than a notification for confirmed ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

impl Pending {
    /// The confirmation request of the pending subscription `sub`.
    pub fn confirmation(topic: &Topic, sub: &Subscription, token: &str) -> Pending {
        Pending {
            topic: topic.arn.clone(),
            id: message::uuid_text(fastrand::u128(..)),
            subject: None,
            message: format!(
                "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
                topic.arn
            ),
            per_protocol: BTreeMap::new(),
            timestamp: iso_timestamp(now_ms()),
            attributes: Attributes::new(),
            sequence: None,
            subscriptions: vec![sub.arn().to_owned()],
            attempts: 0,
            not_before_ms: None,
            confirm: Some(token.to_owned()),
        }
    }

    fn kind(&self) -> Kind {
        if self.confirm.is_some() {
            Kind::SubscriptionConfirmation
        } else {
            Kind::Notification
        }
    }

    /// Whether `sub` is one this record is still owed to.
    fn is_for(&self, sub: &Subscription) -> bool {
        match &self.confirm {
            None => sub.record.confirmed,
            Some(token) => !sub.record.confirmed && sub.record.token.as_deref() == Some(token),
        }
    }

    fn body_for(&self, protocol: Protocol) -> &str {
        self.per_protocol.get(protocol.as_str()).map_or(self.message.as_str(), String::as_str)
    }

    /// The record as an outbox message, to be taken in `delay_seconds`.
    pub fn to_request(&self, delay_seconds: u32) -> Result<SendRequest, NotifyError> {
        let body = serde_json::to_string(self).map_err(|e| NotifyError::Internal(e.to_string()))?;
        let delay_seconds = (delay_seconds > 0).then_some(delay_seconds);
        Ok(SendRequest { body, delay_seconds, ..SendRequest::default() })
    }
}

/// Counts of delivery outcomes, for metrics.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Answered 2xx.
    pub delivered: AtomicU64,
    /// Failed and scheduled again.
    pub retried: AtomicU64,
    /// Given up on and sent to the subscription's dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Given up on without a dead-letter queue.
    pub dropped: AtomicU64,
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    /// Not to be retried (a 4xx other than 429).
    Refused(String),
    Failed(String),
}

/// Takes records from the outbox and delivers them until `stop` changes.
pub(super) async fn run<S: Storage>(
    n: Arc<Notifier<S>>,
    deliver: Arc<dyn Deliver>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let take = ReceiveRequest {
        max: Some(10),
        visibility_timeout: Some(VISIBILITY_SECS),
        wait_seconds: Some(20),
        ..ReceiveRequest::default()
    };
    loop {
        let got = tokio::select! {
            _ = stop.changed() => return,
            got = n.queues.receive(&n.outbox, &take) => got,
        };
        match got {
            Ok(records) => {
                let work = records.into_iter().map(|r| handle(&n, &*deliver, r));
                futures_util::future::join_all(work).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take pending deliveries; trying again");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Delivers one record to its subscribers, then deletes it.
async fn handle<S: Storage>(n: &Notifier<S>, deliver: &dyn Deliver, record: ReceivedMessage) {
    let done = match serde_json::from_str::<Pending>(&record.body) {
        Ok(p) => attempt(n, deliver, p).await,
        Err(e) => {
            tracing::error!(error = %e, "an unreadable pending delivery is dropped");
            Ok(())
        }
    };
    match done {
        Ok(()) => {
            if let Err(e) = n.queues.delete(&n.outbox, &[record.receipt_handle]).await {
                tracing::warn!(error = %e, "a finished delivery could not be cleared; it may be delivered again");
            }
        }
        // Left in the outbox: it becomes visible again and is retried.
        Err(e) => tracing::warn!(error = %e, "a delivery's outcome could not be recorded; it will run again"),
    }
}

/// One attempt at every subscriber of `p`; what failed is scheduled again
/// or given up on. `Err`: the outcome could not be recorded.
async fn attempt<S: Storage>(n: &Notifier<S>, deliver: &dyn Deliver, p: Pending) -> Result<(), NotifyError> {
    if let Some(at) = p.not_before_ms.filter(|at| *at > now_ms()) {
        return schedule(n, Pending { not_before_ms: Some(at), ..p }, at - now_ms()).await;
    }
    let Ok(topic) = n.topic(&p.topic) else { return Ok(()) };
    let owed: std::collections::HashSet<&str> = p.subscriptions.iter().map(String::as_str).collect();
    let subs: Vec<Arc<Subscription>> =
        topic.subscriptions.iter().filter(|s| owed.contains(s.arn()) && p.is_for(s)).cloned().collect();
    let payloads = Payloads::new(n, &topic, &p);
    let sends = subs.iter().map(|s| send(s, &topic, &p, &payloads, deliver));
    let outcomes = futures_util::future::join_all(sends).await;
    // Message deliveries are counted; confirmation requests are not.
    let count = |counter: &AtomicU64| {
        if p.confirm.is_none() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Failed subscribers, by the delay before their next attempt.
    let mut again: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (sub, outcome) in subs.iter().zip(outcomes) {
        match outcome {
            Outcome::Delivered => count(&n.stats.delivered),
            Outcome::Refused(why) => give_up(n, &topic, sub, &payloads, &why).await?,
            Outcome::Failed(why) => match sub.delivery.jittered_delay(p.attempts + 1) {
                Some(delay) => {
                    tracing::debug!(subscription = %sub.arn(), error = %why, "delivery failed; retrying");
                    count(&n.stats.retried);
                    again.entry(delay.as_millis() as u64).or_default().push(sub.arn().to_owned());
                }
                None => give_up(n, &topic, sub, &payloads, &why).await?,
            },
        }
    }
    for (delay_ms, subscriptions) in again {
        let next = Pending { subscriptions, attempts: p.attempts + 1, not_before_ms: None, ..p.clone() };
        schedule(n, next, delay_ms as i64).await?;
    }
    Ok(())
}

/// Puts `p` back in the outbox, to be taken in `delay_ms`.
async fn schedule<S: Storage>(n: &Notifier<S>, mut p: Pending, delay_ms: i64) -> Result<(), NotifyError> {
    let delay = Duration::from_millis(delay_ms.max(0) as u64);
    if delay > MAX_QUEUE_DELAY {
        p.not_before_ms = Some(now_ms() + delay_ms);
    }
    // Queue delays are whole seconds: the nearest (retry delays are at least
    // one second, so jitter still spreads longer ones).
    let delay_seconds = ((delay.min(MAX_QUEUE_DELAY).as_millis() + 500) / 1000) as u32;
    n.to_outbox(vec![p.to_request(delay_seconds)?]).await
}

impl<S: Storage> Notifier<S> {
    /// Writes outbox records, durably (publishes, confirmation requests and
    /// retries all enter the outbox here).
    pub(super) async fn to_outbox(&self, records: Vec<SendRequest>) -> Result<(), NotifyError> {
        if records.is_empty() {
            return Ok(());
        }
        for result in self.queues.send(&self.outbox, records).await? {
            result.map_err(|e| NotifyError::Internal(e.to_string()))?;
        }
        Ok(())
    }
}

/// The notice of `p` for one subscriber: a notification with its
/// `UnsubscribeURL`, or a confirmation request with its `SubscribeURL`.
fn notice<'a>(topic: &'a Topic, p: &'a Pending, url: &'a str, protocol: Protocol) -> Notice<'a> {
    let notification = p.confirm.is_none();
    Notice {
        kind: p.kind(),
        message_id: &p.id,
        topic_arn: &topic.arn,
        subject: p.subject.as_deref(),
        message: p.body_for(protocol),
        timestamp: &p.timestamp,
        token: p.confirm.as_deref(),
        subscribe_url: (!notification).then_some(url),
        unsubscribe_url: notification.then_some(url),
        attributes: &p.attributes,
        sequence_number: p.sequence.as_deref(),
    }
}

/// What a record's subscribers are sent: the raw message, or the signed
/// envelope. The envelope is signed and written once per protocol; each
/// subscriber's copy differs only in its `UnsubscribeURL`, spliced in. (A
/// confirmation request goes to one subscriber, with its `SubscribeURL`.)
struct Payloads<'a, S: Storage> {
    n: &'a Notifier<S>,
    topic: &'a Topic,
    p: &'a Pending,
    /// Per protocol, the envelope's text around its unsubscribe URL.
    http: std::sync::OnceLock<(String, String)>,
    https: std::sync::OnceLock<(String, String)>,
}

impl<'a, S: Storage> Payloads<'a, S> {
    fn new(n: &'a Notifier<S>, topic: &'a Topic, p: &'a Pending) -> Self {
        Payloads { n, topic, p, http: Default::default(), https: Default::default() }
    }

    fn for_subscriber(&self, sub: &Subscription) -> String {
        let protocol = sub.record.protocol;
        if let Some(token) = &self.p.confirm {
            let url = self.n.urls.confirm(&self.topic.arn, token);
            let notice = notice(self.topic, self.p, &url, protocol);
            return notice.to_json(self.n.signer(), &self.n.urls.signing_cert());
        }
        if sub.raw {
            return self.p.body_for(protocol).to_owned();
        }
        let cell = if protocol == Protocol::Https { &self.https } else { &self.http };
        let (head, tail) = cell.get_or_init(|| self.template(protocol));
        let mut out = String::with_capacity(head.len() + tail.len() + 200);
        out.push_str(head);
        out.push_str(&self.n.urls.unsubscribe(sub.arn()));
        out.push_str(tail);
        out
    }

    /// The envelope for `protocol` with a unique marker where the
    /// unsubscribe URL goes, cut there. (A URL needs no JSON escaping.)
    fn template(&self, protocol: Protocol) -> (String, String) {
        let marker = format!("{:032x}", fastrand::u128(..));
        let notice = notice(self.topic, self.p, &marker, protocol);
        let text = notice.to_json(self.n.signer(), &self.n.urls.signing_cert());
        match text.split_once(&marker) {
            Some((head, tail)) => (head.to_owned(), tail.to_owned()),
            None => (text, String::new()),
        }
    }
}

async fn send<S: Storage>(
    sub: &Subscription,
    topic: &Topic,
    p: &Pending,
    payloads: &Payloads<'_, S>,
    deliver: &dyn Deliver,
) -> Outcome {
    let mut headers = vec![
        ("x-amz-sns-message-type", p.kind().as_str().to_owned()),
        ("x-amz-sns-message-id", p.id.clone()),
        ("x-amz-sns-topic-arn", topic.arn.clone()),
        ("content-type", "text/plain; charset=UTF-8".to_owned()),
    ];
    if p.confirm.is_none() {
        headers.push(("x-amz-sns-subscription-arn", sub.arn().to_owned()));
        if sub.raw {
            headers.push(("x-amz-sns-rawdelivery", "true".to_owned()));
        }
    }
    let body = payloads.for_subscriber(sub);
    if let Some(throttle) = &sub.throttle {
        throttle.until_ready().await;
    }
    match deliver.post(&sub.record.endpoint, headers, body).await {
        Ok(status) if (200..300).contains(&status) => Outcome::Delivered,
        Ok(status) if (400..500).contains(&status) && status != 429 => {
            Outcome::Refused(format!("HTTP {status}"))
        }
        Ok(status) => Outcome::Failed(format!("HTTP {status}")),
        Err(e) => Outcome::Failed(e),
    }
}

/// A delivery that will not be retried: to the subscription's dead-letter
/// queue, or counted as dropped.
async fn give_up<S: Storage>(
    n: &Notifier<S>,
    topic: &Topic,
    sub: &Subscription,
    payloads: &Payloads<'_, S>,
    why: &str,
) -> Result<(), NotifyError> {
    let p = payloads.p;
    if p.confirm.is_some() {
        tracing::warn!(subscription = %sub.arn(), error = %why, attempts = p.attempts + 1, "subscription confirmation given up; Subscribe again to resend it");
        return Ok(());
    }
    let dlq = sub.dead_letter_arn().and_then(|arn| {
        let name = arn.strip_prefix(&n.queues.account().arn_prefix())?.to_owned();
        n.queues.queue(&name).ok()
    });
    let Some(dlq) = dlq else {
        n.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(subscription = %sub.arn(), error = %why, attempts = p.attempts + 1, "delivery given up; no dead-letter queue, the message is dropped for this subscriber");
        return Ok(());
    };
    let text = |v: &str| AttributeValue {
        data_type: "String".into(),
        string_value: Some(v.to_owned()),
        binary_value: None,
    };
    let attributes: Attributes = [
        ("ErrorCode".to_owned(), text(why)),
        ("TopicArn".to_owned(), text(&topic.arn)),
        ("SubscriptionArn".to_owned(), text(sub.arn())),
    ]
    .into();
    let request = SendRequest {
        body: payloads.for_subscriber(sub),
        attributes,
        sender: Some(topic.arn.clone()),
        group_id: dlq.attributes().fifo.then(|| p.id.clone()),
        dedup_id: dlq
            .attributes()
            .fifo
            .then(|| format!("{}-{}", p.id, sub.arn().rsplit(':').next().unwrap_or(""))),
        ..SendRequest::default()
    };
    let mut sent = n.queues.send(&dlq, vec![request]).await?;
    match sent.pop() {
        Some(Ok(_)) => {
            n.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subscription = %sub.arn(), error = %why, queue = %dlq.name, "delivery given up; sent to the dead-letter queue");
            Ok(())
        }
        Some(Err(e)) => Err(e.into()),
        None => Err(NotifyError::Internal("no result from the dead-letter queue".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::topic::SubscriptionRecord;

    fn sub(confirmed: bool, token: Option<&str>) -> Subscription {
        let record = SubscriptionRecord {
            arn: "arn:aws:sns:us-east-1:000000000000:t:1".into(),
            topic: "t".into(),
            protocol: Protocol::Http,
            endpoint: "http://127.0.0.1:1/hook".into(),
            attributes: BTreeMap::new(),
            confirmed,
            token: token.map(str::to_owned),
            declared: false,
        };
        Subscription::new(record, None).unwrap()
    }

    #[test]
    fn records_written_before_confirmations_were_queued_still_read_as_notifications() {
        let old = r#"{"topic":"arn:aws:sns:us-east-1:000000000000:t","id":"m1","message":"hi",
            "timestamp":"2026-12-01T00:00:00.000Z","subscriptions":["arn:aws:sns:us-east-1:000000000000:t:1"],
            "attempts":2}"#;
        let p: Pending = serde_json::from_str(old).unwrap();
        assert_eq!((p.kind(), p.attempts, p.confirm.as_deref()), (Kind::Notification, 2, None));
        // It reads the same after a trip through the outbox.
        let c: Pending = serde_json::from_str(&p.to_request(0).unwrap().body).unwrap();
        assert_eq!(c.kind(), Kind::Notification);
    }

    #[test]
    fn a_record_is_owed_to_confirmed_subscribers_or_to_the_pending_one_it_confirms() {
        let mut p: Pending = serde_json::from_str(
            r#"{"topic":"t","id":"m","message":"x","timestamp":"t","subscriptions":[]}"#,
        )
        .unwrap();
        let (confirmed, pending) = (sub(true, None), sub(false, Some("tok")));
        assert!(p.is_for(&confirmed) && !p.is_for(&pending));
        p.confirm = Some("tok".into());
        assert_eq!(p.kind(), Kind::SubscriptionConfirmation);
        assert!(!p.is_for(&confirmed) && p.is_for(&pending));
        // A token issued again (or a forged record) confirms nothing else.
        p.confirm = Some("other".into());
        assert!(!p.is_for(&pending));
        let request = p.to_request(3).unwrap();
        assert_eq!(request.delay_seconds, Some(3));
        let back: Pending = serde_json::from_str(&request.body).unwrap();
        assert_eq!(back.confirm.as_deref(), Some("other"));
    }
}
