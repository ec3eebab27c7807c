//! Topics with SNS semantics, on the queue engine.
//!
//! [`Notifier`] owns topics (standard and FIFO), subscriptions (SQS queues
//! and HTTP(S) endpoints), filter policies ([`filter`]) and publishing. A
//! publish fans out to every matching queue subscription before it is
//! acknowledged: when [`Notifier::publish`] returns `Ok`, each of those
//! queues holds the message durably. HTTP(S) deliveries are handed to a
//! [`Deliver`] implementation (the gateway wires one; this module knows
//! nothing of HTTP), retried per [`delivery::DeliveryPolicy`].
//!
//! Topics and subscriptions are persisted ([`store`]); publishers read a
//! snapshot that control-plane changes replace whole, so publishing takes
//! no lock.

pub mod alarms;
pub mod delivery;
pub mod envelope;
pub mod error;
pub mod filter;
pub mod outbox;
mod publish;
pub mod signing;
pub mod store;
pub mod topic;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::queue::message::{self, Attributes};
use crate::queue::storage::Storage;
use crate::queue::{Queue, QueueEngine};
pub use error::NotifyError;
pub use outbox::DeliveryStats;
use signing::Signer;
use store::{State, Store};
use topic::{FifoState, Protocol, Subscription, SubscriptionRecord, Topic, TopicRecord};

/// SNS's limit on a message and its attributes.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;
/// How long a FIFO topic remembers a deduplication id.
const DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// Sends an HTTP(S) request for the topic engine: the gateway's HTTP
/// client, or a test's.
pub trait Deliver: Send + Sync + 'static {
    /// POSTs `body` with `headers` to `url`; the answer's status, or why
    /// there was none.
    fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send + 'static>>;
}

/// Where the AWS listener is reached, for the URLs notifications carry.
#[derive(Clone, Debug)]
pub struct Urls {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
}

impl Urls {
    pub fn signing_cert(&self) -> String {
        format!("{}/{}", self.base, signing_cert_path())
    }

    pub fn unsubscribe(&self, subscription_arn: &str) -> String {
        format!("{}/?Action=Unsubscribe&SubscriptionArn={}", self.base, form(subscription_arn))
    }

    pub fn confirm(&self, topic_arn: &str, token: &str) -> String {
        format!(
            "{}/?Action=ConfirmSubscription&TopicArn={}&Token={}",
            self.base,
            form(topic_arn),
            form(token)
        )
    }
}

/// The subscription attribute recording that unsubscribing needs a
/// signature (`AuthenticateOnUnsubscribe` at confirmation).
const AUTHENTICATED: &str = "ConfirmationWasAuthenticated";

/// The path the signing certificate is served at.
pub fn signing_cert_path() -> &'static str {
    "SimpleNotificationService-gatehouse.pem"
}

fn form(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A message to publish.
#[derive(Clone, Debug, Default)]
pub struct Message {
    pub body: String,
    pub subject: Option<String>,
    pub attributes: Attributes,
    /// FIFO topics.
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    /// `MessageStructure=json`: the body per protocol (`default` required).
    pub per_protocol: Option<BTreeMap<String, String>>,
}

/// What a publish answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub message_id: String,
    /// FIFO topics.
    pub sequence_number: Option<String>,
}

/// A topic and its subscriptions as `routes.yaml` declares them.
#[derive(Clone, Debug)]
pub struct DeclaredTopic {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub subscriptions: Vec<DeclaredSubscription>,
}

#[derive(Clone, Debug)]
pub struct DeclaredSubscription {
    pub protocol: Protocol,
    /// A queue name (sqs) or a URL.
    pub endpoint: String,
    pub attributes: BTreeMap<String, String>,
    /// URL subscriptions the operator vouches for start confirmed.
    pub confirmed: bool,
}

/// What publishers read: every topic, by name.
#[derive(Default)]
struct Registry {
    topics: BTreeMap<String, Arc<Topic>>,
}

/// The topic engine.
pub struct Notifier<S: Storage> {
    queues: Arc<QueueEngine<S>>,
    snapshot: ArcSwap<Registry>,
    /// What is persisted; changed (and saved) under this lock only.
    state: tokio::sync::Mutex<State>,
    store: Store,
    signer: Signer,
    urls: Urls,
    deliver: Option<Arc<dyn Deliver>>,
    /// Where HTTP(S) deliveries wait ([`outbox`]).
    outbox: Arc<Queue>,
    stats: DeliveryStats,
    /// Tells the delivery workers and the alarm evaluator to stop.
    stop: tokio::sync::watch::Sender<bool>,
    alarms: tokio::sync::Mutex<Vec<alarms::Watch>>,
    /// What the last evaluation found, for metrics.
    alarm_statuses: std::sync::Mutex<Vec<alarms::AlarmStatus>>,
}

impl<S: Storage> Notifier<S> {
    /// Opens the topics kept in `dir` (with the queue store) and, given a
    /// way to deliver, starts the HTTP(S) delivery workers.
    pub async fn open(
        queues: Arc<QueueEngine<S>>,
        dir: &Path,
        urls: Urls,
        deliver: Option<Arc<dyn Deliver>>,
    ) -> Result<Arc<Self>, String> {
        let dir = dir.to_owned();
        let (store, state, signer) = tokio::task::spawn_blocking(move || {
            let (store, state) = Store::open(&dir)?;
            Ok::<_, String>((store, state, Signer::load_or_create(&dir)?))
        })
        .await
        .map_err(|e| e.to_string())??;
        let registry = build(&state, &Registry::default(), &queues).map_err(|e| e.to_string())?;
        let settings = BTreeMap::from([
            ("MessageRetentionPeriod".to_owned(), "1209600".to_owned()),
            ("MaximumMessageSize".to_owned(), (1 << 20).to_string()),
        ]);
        let outbox = queues.internal_queue(outbox::QUEUE, &settings).await.map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let notifier = Arc::new(Notifier {
            queues,
            snapshot: ArcSwap::from_pointee(registry),
            state: tokio::sync::Mutex::new(state),
            store,
            signer,
            urls,
            deliver,
            outbox: outbox.clone(),
            stats: DeliveryStats::default(),
            stop,
            alarms: tokio::sync::Mutex::new(Vec::new()),
            alarm_statuses: std::sync::Mutex::new(Vec::new()),
        });
        tokio::spawn(alarms::run(notifier.clone(), stopped));
        Ok(notifier)
    }

    /// Delivers HTTP(S) notifications from the outbox, `loops` at a time,
    /// until the notifier stops. Run it on every thread that should share
    /// the work (the gateway runs it on each data-plane worker); without a
    /// [`Deliver`] it ends at once.
    pub fn deliveries(self: &Arc<Self>, loops: usize) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            let Some(deliver) = this.deliver.clone() else { return };
            let runs =
                (0..loops.max(1)).map(|_| outbox::run(this.clone(), deliver.clone(), this.stop.subscribe()));
            futures_util::future::join_all(runs).await;
        }
    }

    /// Stops the delivery workers (what they hold stays in the outbox).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Replaces the alarms watched. An alarm whose definition did not
    /// change keeps its state.
    pub async fn set_alarms(&self, specs: Vec<alarms::AlarmSpec>) {
        let mut watches = self.alarms.lock().await;
        let mut old: Vec<alarms::Watch> = std::mem::take(&mut *watches);
        for spec in specs {
            match old.iter().position(|w| *w.spec() == spec) {
                Some(i) => watches.push(old.swap_remove(i)),
                None => watches.push(alarms::Watch::new(spec)),
            }
        }
        let statuses = watches.iter().map(alarms::Watch::status).collect();
        *self.alarm_statuses.lock().unwrap_or_else(|e| e.into_inner()) = statuses;
    }

    /// Each alarm's state as last evaluated.
    pub fn alarm_statuses(&self) -> Vec<alarms::AlarmStatus> {
        self.alarm_statuses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts of HTTP(S) delivery outcomes.
    pub fn delivery_stats(&self) -> &DeliveryStats {
        &self.stats
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn urls(&self) -> &Urls {
        &self.urls
    }

    /// `arn:aws:sns:<region>:<account>:<name>`.
    pub fn topic_arn(&self, name: &str) -> String {
        topic_arn(&self.queues, name)
    }

    /// The account id topics belong to.
    pub fn owner(&self) -> &str {
        &self.queues.account().id
    }

    /// The topic an ARN names.
    pub fn topic(&self, arn: &str) -> Result<Arc<Topic>, NotifyError> {
        let name = arn.strip_prefix(&arn_prefix(&self.queues)).ok_or_else(NotifyError::no_topic)?;
        self.topic_named(name)
    }

    pub fn topic_named(&self, name: &str) -> Result<Arc<Topic>, NotifyError> {
        self.snapshot.load().topics.get(name).cloned().ok_or_else(NotifyError::no_topic)
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.snapshot.load().topics.values().cloned().collect()
    }

    /// Every topic's ARN, in name order.
    pub fn list_topics(&self) -> Vec<String> {
        self.snapshot.load().topics.values().map(|t| t.arn.clone()).collect()
    }

    /// The subscriptions of one topic, or of all.
    pub fn subscriptions(&self, topic: Option<&Topic>) -> Vec<Arc<Subscription>> {
        match topic {
            Some(t) => t.subscriptions.clone(),
            None => self.snapshot.load().topics.values().flat_map(|t| t.subscriptions.clone()).collect(),
        }
    }

    pub fn subscription(&self, arn: &str) -> Result<Arc<Subscription>, NotifyError> {
        self.subscriptions(None)
            .into_iter()
            .find(|s| s.arn() == arn)
            .ok_or_else(|| NotifyError::NotFound("Subscription does not exist".into()))
    }

    /// Applies `f` to the persisted state, checks the result builds, saves
    /// it, then lets publishers see it.
    async fn change<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, NotifyError>,
    ) -> Result<T, NotifyError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let out = f(&mut next)?;
        let registry = build(&next, &self.snapshot.load(), &self.queues)?;
        self.store.save(&next).await?;
        *state = next;
        self.snapshot.store(Arc::new(registry));
        Ok(out)
    }

    /// `CreateTopic`: idempotent when the attributes given match the
    /// existing topic's.
    pub async fn create_topic(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<String, NotifyError> {
        let fifo = attributes.get("FifoTopic").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        topic::validate_topic_name(name, fifo || name.ends_with(".fifo"))?;
        topic::validate_topic_attributes(&attributes, name.ends_with(".fifo"), true)?;
        let mut settable = attributes;
        settable.remove("FifoTopic");
        self.change(|state| {
            if let Some(existing) = state.topics.iter_mut().find(|t| t.name == name) {
                let differs = settable.iter().any(|(k, v)| existing.attributes.get(k) != Some(v));
                if differs {
                    return Err(NotifyError::invalid("Invalid parameter: Attributes Reason: Topic already exists with different attributes"));
                }
                existing.tags.extend(tags);
                return Ok(());
            }
            state.topics.push(TopicRecord { name: name.to_owned(), attributes: settable, tags });
            Ok(())
        })
        .await?;
        Ok(self.topic_arn(name))
    }

    /// `DeleteTopic`, with its subscriptions. Deleting a topic that does not
    /// exist succeeds, as in SNS.
    pub async fn delete_topic(&self, arn: &str) -> Result<(), NotifyError> {
        let Ok(topic) = self.topic(arn) else { return Ok(()) };
        let name = topic.name().to_owned();
        self.change(|state| {
            state.topics.retain(|t| t.name != name);
            state.subscriptions.retain(|s| s.topic != name);
            Ok(())
        })
        .await
    }

    /// `SetTopicAttributes` (one attribute).
    pub async fn set_topic_attribute(&self, arn: &str, name: &str, value: &str) -> Result<(), NotifyError> {
        let topic = self.topic(arn)?;
        let one = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        topic::validate_topic_attributes(&one, topic.fifo(), false)?;
        self.edit_topic(&topic, |t| {
            t.attributes.insert(name.to_owned(), value.to_owned());
        })
        .await
    }

    pub async fn tag(&self, arn: &str, tags: BTreeMap<String, String>) -> Result<(), NotifyError> {
        let topic = self.topic(arn)?;
        if topic.record.tags.len() + tags.len() > 50 {
            let merged =
                topic.record.tags.keys().chain(tags.keys()).collect::<std::collections::BTreeSet<_>>();
            if merged.len() > 50 {
                return Err(NotifyError::invalid(
                    "Could not complete request: tag quota of per resource exceeded",
                ));
            }
        }
        self.edit_topic(&topic, |t| t.tags.extend(tags)).await
    }

    pub async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), NotifyError> {
        let topic = self.topic(arn)?;
        self.edit_topic(&topic, |t| t.tags.retain(|k, _| !keys.contains(k))).await
    }

    async fn edit_topic(&self, topic: &Topic, f: impl FnOnce(&mut TopicRecord)) -> Result<(), NotifyError> {
        let name = topic.name().to_owned();
        self.change(|state| {
            let t = state.topics.iter_mut().find(|t| t.name == name).ok_or_else(NotifyError::no_topic)?;
            f(t);
            Ok(())
        })
        .await
    }

    /// `Subscribe`. Subscribing the same endpoint twice answers the same
    /// subscription (and sends a pending one its confirmation again). Queue subscriptions are confirmed at once; HTTP(S)
    /// ones wait for the endpoint to confirm (a confirmation is sent).
    pub async fn subscribe(
        &self,
        topic_arn: &str,
        protocol: Protocol,
        endpoint: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<Arc<Subscription>, NotifyError> {
        let topic = self.topic(topic_arn)?;
        self.check_endpoint(&topic, protocol, endpoint)?;
        topic::validate_subscription_attributes(&attributes, protocol)?;
        let existing = topic
            .subscriptions
            .iter()
            .find(|s| s.record.protocol == protocol && s.record.endpoint == endpoint);
        if let Some(s) = existing {
            let same = attributes.iter().all(|(k, v)| s.record.attributes.get(k) == Some(v));
            if !same {
                return Err(NotifyError::invalid("Invalid parameter: Attributes Reason: Subscription already exists with different attributes"));
            }
            // Subscribing again while pending asks the endpoint again (the
            // first request may not have reached it).
            if !s.record.confirmed {
                self.send_confirmation(&topic, s).await?;
            }
            return Ok(s.clone());
        }
        let confirmed = protocol == Protocol::Sqs;
        let record = SubscriptionRecord {
            arn: format!("{}:{}", topic.arn, message::uuid_text(fastrand::u128(..))),
            topic: topic.name().to_owned(),
            protocol,
            endpoint: endpoint.to_owned(),
            attributes,
            confirmed,
            token: (!confirmed).then(new_token),
            declared: false,
        };
        let arn = record.arn.clone();
        self.change(|state| {
            state.subscriptions.push(record);
            Ok(())
        })
        .await?;
        let sub = self.subscription(&arn)?;
        if !confirmed {
            self.send_confirmation(&topic, &sub).await?;
        }
        Ok(sub)
    }

    fn check_endpoint(&self, topic: &Topic, protocol: Protocol, endpoint: &str) -> Result<(), NotifyError> {
        match protocol {
            Protocol::Sqs => {
                let name = endpoint
                    .strip_prefix(&self.queues.account().arn_prefix())
                    .ok_or_else(|| NotifyError::invalid("Invalid parameter: SQS endpoint ARN"))?;
                let q = self
                    .queues
                    .queue(name)
                    .map_err(|_| NotifyError::invalid("Invalid parameter: SQS endpoint ARN"))?;
                if q.attributes().fifo && !topic.fifo() {
                    return Err(NotifyError::invalid(
                        "Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS Queues can not be subscribed to standard SNS topics",
                    ));
                }
            }
            Protocol::Http | Protocol::Https if topic.fifo() => {
                return Err(NotifyError::invalid(format!(
                    "Invalid parameter: Invalid protocol type: {} (FIFO topics deliver to SQS queues only)",
                    protocol.as_str()
                )));
            }
            Protocol::Http | Protocol::Https => {
                let scheme = format!("{}://", protocol.as_str());
                let ok = endpoint.starts_with(&scheme)
                    && endpoint.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
                if !ok {
                    return Err(NotifyError::invalid(format!(
                        "Invalid parameter: Endpoint must be a {} URL",
                        protocol.as_str()
                    )));
                }
            }
        }
        Ok(())
    }

    /// `ConfirmSubscription` (or a GET of the `SubscribeURL`).
    /// `authenticate_unsubscribe`: the confirmation was signed and asked
    /// (`AuthenticateOnUnsubscribe`) that only signed requests unsubscribe.
    pub async fn confirm(
        &self,
        topic_arn: &str,
        token: &str,
        authenticate_unsubscribe: bool,
    ) -> Result<String, NotifyError> {
        let topic = self.topic(topic_arn)?;
        let sub = topic
            .subscriptions
            .iter()
            .find(|s| s.record.token.as_deref() == Some(token))
            .ok_or_else(|| NotifyError::invalid("Invalid token"))?
            .clone();
        if sub.record.confirmed {
            return Ok(sub.arn().to_owned());
        }
        let arn = sub.arn().to_owned();
        self.change(|state| {
            let s = state
                .subscriptions
                .iter_mut()
                .find(|s| s.arn == arn)
                .ok_or_else(|| NotifyError::invalid("Invalid token"))?;
            s.confirmed = true;
            if authenticate_unsubscribe {
                s.attributes.insert(AUTHENTICATED.to_owned(), "true".to_owned());
            }
            Ok(())
        })
        .await?;
        Ok(arn)
    }

    /// `Unsubscribe`. Unknown subscriptions are refused; `signed: false`
    /// (an unsigned request where signatures are required) is refused for a
    /// queue subscription, or one confirmed with `AuthenticateOnUnsubscribe`.
    pub async fn unsubscribe(&self, arn: &str, signed: bool) -> Result<(), NotifyError> {
        let sub = self.subscription(arn)?;
        if !signed && sub.needs_signed_unsubscribe() {
            return Err(NotifyError::Authorization(
                "Only a signed request can unsubscribe this subscription".into(),
            ));
        }
        self.change(|state| {
            state.subscriptions.retain(|s| s.arn != arn);
            Ok(())
        })
        .await
    }

    /// `SetSubscriptionAttributes` (one attribute).
    pub async fn set_subscription_attribute(
        &self,
        arn: &str,
        name: &str,
        value: &str,
    ) -> Result<(), NotifyError> {
        let sub = self.subscription(arn)?;
        let one = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        topic::validate_subscription_attributes(&one, sub.record.protocol)?;
        self.change(|state| {
            let s = state
                .subscriptions
                .iter_mut()
                .find(|s| s.arn == arn)
                .ok_or_else(|| NotifyError::NotFound("Subscription does not exist".into()))?;
            if value.is_empty() && matches!(name, "FilterPolicy" | "RedrivePolicy" | "DeliveryPolicy") {
                s.attributes.remove(name);
            } else {
                s.attributes.insert(name.to_owned(), value.to_owned());
            }
            Ok(())
        })
        .await
    }

    /// Creates the topics and subscriptions `routes.yaml` declares, and
    /// drops declared subscriptions it no longer lists. Topics and
    /// subscriptions made over the API are left alone. Declared URL
    /// subscriptions still pending (not marked `confirmed`) are sent their
    /// confirmation request, again at each start or reload until confirmed.
    pub async fn declare(&self, declared: &[DeclaredTopic]) -> Result<(), NotifyError> {
        let wanted = self.wanted_subscriptions(declared);
        let topic_prefix = arn_prefix(&self.queues);
        self.change(|state| {
            for d in declared {
                topic::validate_topic_name(&d.name, d.name.ends_with(".fifo"))?;
                match state.topics.iter_mut().find(|t| t.name == d.name) {
                    Some(t) => t.attributes.extend(d.attributes.clone()),
                    None => state.topics.push(TopicRecord {
                        name: d.name.clone(),
                        attributes: d.attributes.clone(),
                        tags: BTreeMap::new(),
                    }),
                }
            }
            state.subscriptions.retain(|s| {
                !s.declared
                    || wanted
                        .iter()
                        .any(|(t, e, w)| *t == s.topic && w.protocol == s.protocol && *e == s.endpoint)
            });
            for (topic, endpoint, s) in &wanted {
                let existing = state
                    .subscriptions
                    .iter_mut()
                    .find(|x| x.topic == *topic && x.protocol == s.protocol && x.endpoint == *endpoint);
                match existing {
                    Some(x) => {
                        let authenticated = x.attributes.remove(AUTHENTICATED);
                        x.attributes = s.attributes.clone();
                        x.attributes.extend(authenticated.map(|v| (AUTHENTICATED.to_owned(), v)));
                        x.declared = true;
                        x.confirmed |= s.confirmed;
                    }
                    None => state.subscriptions.push(SubscriptionRecord {
                        arn: format!("{topic_prefix}{topic}:{}", message::uuid_text(fastrand::u128(..))),
                        topic: topic.clone(),
                        protocol: s.protocol,
                        endpoint: endpoint.clone(),
                        attributes: s.attributes.clone(),
                        confirmed: s.protocol == Protocol::Sqs || s.confirmed,
                        token: (s.protocol != Protocol::Sqs && !s.confirmed).then(new_token),
                        declared: true,
                    }),
                }
            }
            Ok(())
        })
        .await?;
        for topic in self.topics() {
            for sub in topic.subscriptions.iter().filter(|s| s.record.declared && !s.record.confirmed) {
                if let Err(e) = self.send_confirmation(&topic, sub).await {
                    tracing::warn!(subscription = %sub.arn(), error = %e, "cannot send the subscription's confirmation request");
                }
            }
        }
        Ok(())
    }

    /// The declared subscriptions: (topic, endpoint, declaration), queue
    /// names made ARNs.
    fn wanted_subscriptions<'d>(
        &self,
        declared: &'d [DeclaredTopic],
    ) -> Vec<(String, String, &'d DeclaredSubscription)> {
        let prefix = self.queues.account().arn_prefix();
        declared
            .iter()
            .flat_map(|d| d.subscriptions.iter().map(move |s| (d, s)))
            .map(|(d, s)| {
                let endpoint = if s.protocol == Protocol::Sqs {
                    format!("{prefix}{}", s.endpoint)
                } else {
                    s.endpoint.clone()
                };
                (d.name.clone(), endpoint, s)
            })
            .collect()
    }

    /// Sends a pending HTTP(S) subscription its confirmation request:
    /// through the outbox, so it is retried per the subscription's
    /// delivery policy until the endpoint answers.
    async fn send_confirmation(&self, topic: &Topic, sub: &Subscription) -> Result<(), NotifyError> {
        let Some(token) = sub.record.token.as_deref().filter(|_| self.deliver.is_some()) else {
            return Ok(());
        };
        self.to_outbox(vec![outbox::Pending::confirmation(topic, sub, token).to_request(0)?]).await
    }
}

fn arn_prefix<S: Storage>(queues: &QueueEngine<S>) -> String {
    let a = queues.account();
    format!("arn:aws:sns:{}:{}:", a.region, a.id)
}

fn topic_arn<S: Storage>(queues: &QueueEngine<S>, name: &str) -> String {
    format!("{}{name}", arn_prefix(queues))
}

fn new_token() -> String {
    format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The snapshot for `state`, keeping each FIFO topic's memory from `old`.
fn build<S: Storage>(
    state: &State,
    old: &Registry,
    queues: &QueueEngine<S>,
) -> Result<Registry, NotifyError> {
    let mut topics = BTreeMap::new();
    for record in &state.topics {
        let delivery = record.attributes.get("DeliveryPolicy").map(String::as_str);
        let subscriptions = state
            .subscriptions
            .iter()
            .filter(|s| s.topic == record.name)
            .map(|s| Subscription::new(s.clone(), delivery).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let previous = old.topics.get(&record.name);
        let topic = Topic {
            record: record.clone(),
            arn: topic_arn(queues, &record.name),
            subscriptions,
            fifo_state: previous.map_or_else(Default::default, |t| t.fifo_state.clone()),
            published: previous.map_or_else(Default::default, |t| t.published.clone()),
        };
        topics.insert(record.name.clone(), Arc::new(topic));
    }
    Ok(Registry { topics })
}

impl FifoState {
    /// What was published under `dedup_id` within the window, if anything.
    fn recall(&self, dedup_id: &str) -> Option<Published> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.expire(Instant::now());
        seen.by_id.get(dedup_id).cloned()
    }

    fn remember(&self, dedup_id: String, published: Published) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        seen.expire(now);
        seen.order.push_back((now + DEDUP_WINDOW, dedup_id.clone()));
        seen.by_id.insert(dedup_id, published);
    }
}

/// A FIFO topic's recent deduplication ids, oldest first.
#[derive(Debug, Default)]
pub struct Seen {
    by_id: HashMap<String, Published>,
    order: VecDeque<(Instant, String)>,
}

impl Seen {
    fn expire(&mut self, now: Instant) {
        while let Some((until, _)) = self.order.front() {
            if *until > now {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }
}
