//! Topics and subscriptions as stored, with their attributes and the rules
//! for setting them.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::delivery::{max_receives_per_second, throttle, DeliveryPolicy, Throttle};
use super::error::NotifyError;
use super::filter::{FilterPolicy, Scope};

/// Topic attributes a caller may set (`FifoTopic` only when creating).
const TOPIC_SETTABLE: &[&str] = &[
    "DisplayName",
    "Policy",
    "DeliveryPolicy",
    "SignatureVersion",
    "TracingConfig",
    "KmsMasterKeyId",
    "ContentBasedDeduplication",
    "ArchivePolicy",
    "FifoThroughputScope",
    "DataProtectionPolicy",
];

/// Subscription attributes a caller may set.
const SUBSCRIPTION_SETTABLE: &[&str] =
    &["DeliveryPolicy", "FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy"];

/// A topic as it is persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicRecord {
    pub name: String,
    /// The attributes set on it (not the computed ones).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl TopicRecord {
    pub fn fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }

    pub fn content_based_deduplication(&self) -> bool {
        self.attributes.get("ContentBasedDeduplication").is_some_and(|v| v == "true")
    }
}

/// Checks a topic name: 1–256 letters, digits, hyphens and underscores,
/// plus `.fifo` for FIFO topics.
pub fn validate_topic_name(name: &str, fifo: bool) -> Result<(), NotifyError> {
    let stem = if fifo { name.strip_suffix(".fifo") } else { Some(name) };
    let ok = stem.is_some_and(|s| {
        !s.is_empty()
            && name.len() <= 256
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !ok {
        let what = if fifo { " and end with .fifo" } else { "" };
        return Err(NotifyError::invalid(format!(
            "Invalid parameter: Topic Name: must be 1-256 letters, digits, hyphens and underscores{what}"
        )));
    }
    Ok(())
}

/// Checks topic attributes being set (`creating`: `FifoTopic` allowed).
pub fn validate_topic_attributes(
    attributes: &BTreeMap<String, String>,
    fifo: bool,
    creating: bool,
) -> Result<(), NotifyError> {
    for (name, value) in attributes {
        let bad =
            |why: &str| NotifyError::invalid(format!("Invalid parameter: Attributes Reason: {name}: {why}"));
        match name.as_str() {
            "FifoTopic" if creating => {
                if value.eq_ignore_ascii_case("true") != fifo {
                    return Err(bad("a FIFO topic's name ends with .fifo, and only a FIFO topic's does"));
                }
            }
            "ContentBasedDeduplication" => {
                if !fifo {
                    return Err(bad("only FIFO topics deduplicate"));
                }
                if value != "true" && value != "false" {
                    return Err(bad("must be true or false"));
                }
            }
            "SignatureVersion" if value != "2" => {
                return Err(bad("must be 2: gatehouse signs notifications with SHA256withRSA"))
            }
            "DeliveryPolicy" => {
                DeliveryPolicy::parse_topic(value).map_err(|e| bad(&e))?;
                max_receives_per_second(None, Some(value)).map_err(|e| bad(&e))?;
            }
            n if TOPIC_SETTABLE.contains(&n) => {}
            _ => return Err(NotifyError::invalid(format!("Invalid parameter: AttributeName: {name}"))),
        }
    }
    Ok(())
}

/// How a subscription receives messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Sqs,
    Http,
    Https,
}

impl Protocol {
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "sqs" => Some(Protocol::Sqs),
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sqs => "sqs",
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

/// A subscription as it is persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SubscriptionRecord {
    pub arn: String,
    pub topic: String,
    pub protocol: Protocol,
    pub endpoint: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub confirmed: bool,
    /// The confirmation token, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Declared in `routes.yaml` (kept in step with it).
    #[serde(default)]
    pub declared: bool,
}

/// A subscription, ready to match and deliver.
#[derive(Debug)]
pub struct Subscription {
    pub record: SubscriptionRecord,
    pub raw: bool,
    pub filter: Option<FilterPolicy>,
    pub scope: Scope,
    pub delivery: DeliveryPolicy,
    /// `maxReceivesPerSecond`, and the limiter that keeps to it.
    pub max_receives_per_second: Option<u32>,
    pub throttle: Option<Throttle>,
}

impl Subscription {
    /// Builds a subscription from its record; the attributes were checked
    /// when set (a record that no longer parses keeps its defaults).
    pub fn new(record: SubscriptionRecord, topic_delivery: Option<&str>) -> Result<Self, NotifyError> {
        let a = &record.attributes;
        let raw = a.get("RawMessageDelivery").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let scope = match a.get("FilterPolicyScope") {
            Some(s) => Scope::parse(s).ok_or_else(|| {
                NotifyError::invalid(
                    "Invalid parameter: FilterPolicyScope: must be MessageAttributes or MessageBody",
                )
            })?,
            None => Scope::MessageAttributes,
        };
        let filter = match a.get("FilterPolicy") {
            Some(text) => {
                FilterPolicy::parse(text, scope).map_err(|e| NotifyError::FilterPolicy(e.to_string()))?
            }
            None => None,
        };
        let own = a.get("DeliveryPolicy").map(String::as_str);
        let bad = |e: String| NotifyError::invalid(format!("Invalid parameter: DeliveryPolicy: {e}"));
        let delivery = DeliveryPolicy::effective(own, topic_delivery).map_err(bad)?;
        let max_receives_per_second = max_receives_per_second(own, topic_delivery).map_err(bad)?;
        let throttle = max_receives_per_second.and_then(throttle);
        Ok(Subscription { record, raw, filter, scope, delivery, max_receives_per_second, throttle })
    }

    pub fn arn(&self) -> &str {
        &self.record.arn
    }

    /// The attributes `GetSubscriptionAttributes` answers.
    pub fn attributes(&self, topic_arn: &str, owner: &str) -> BTreeMap<String, String> {
        let r = &self.record;
        let mut out = r.attributes.clone();
        out.insert("SubscriptionArn".into(), r.arn.clone());
        out.insert("TopicArn".into(), topic_arn.to_owned());
        out.insert("Owner".into(), owner.to_owned());
        out.insert("Protocol".into(), r.protocol.as_str().to_owned());
        out.insert("Endpoint".into(), r.endpoint.clone());
        out.insert("PendingConfirmation".into(), (!r.confirmed).to_string());
        out.insert("ConfirmationWasAuthenticated".into(), self.needs_signed_unsubscribe().to_string());
        out.insert("RawMessageDelivery".into(), self.raw.to_string());
        if self.filter.is_some() {
            out.insert("FilterPolicyScope".into(), self.scope.as_str().to_owned());
        }
        if r.protocol != Protocol::Sqs {
            out.insert(
                "EffectiveDeliveryPolicy".into(),
                self.delivery.effective_subscription_text(self.max_receives_per_second),
            );
        }
        out
    }

    /// Queue subscriptions (made by the owner), and endpoints confirmed with
    /// `AuthenticateOnUnsubscribe`, can only be ended by a signed request.
    pub fn needs_signed_unsubscribe(&self) -> bool {
        self.record.protocol == Protocol::Sqs
            || self.record.attributes.get("ConfirmationWasAuthenticated").is_some_and(|v| v == "true")
    }

    /// The dead-letter queue's ARN, from `RedrivePolicy`.
    pub fn dead_letter_arn(&self) -> Option<String> {
        let text = self.record.attributes.get("RedrivePolicy")?;
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        v.get("deadLetterTargetArn")?.as_str().map(str::to_owned)
    }
}

/// Checks subscription attributes being set.
pub fn validate_subscription_attributes(
    attributes: &BTreeMap<String, String>,
    protocol: Protocol,
) -> Result<(), NotifyError> {
    for (name, value) in attributes {
        let bad = |why: &str| NotifyError::invalid(format!("Invalid parameter: {name}: {why}"));
        match name.as_str() {
            "RawMessageDelivery" if value != "true" && value != "false" => {
                return Err(bad("must be true or false"))
            }
            "RedrivePolicy" => {
                let v: serde_json::Value =
                    serde_json::from_str(value).map_err(|_| bad("must be a JSON object"))?;
                if !v.get("deadLetterTargetArn").is_some_and(|a| a.is_string()) {
                    return Err(bad("must name deadLetterTargetArn"));
                }
            }
            "DeliveryPolicy" if protocol == Protocol::Sqs => {
                return Err(bad("delivery policies apply to http and https subscriptions"))
            }
            n if SUBSCRIPTION_SETTABLE.contains(&n) => {}
            _ => return Err(NotifyError::invalid(format!("Invalid parameter: AttributeName: {name}"))),
        }
    }
    Ok(())
}

/// What a FIFO topic remembers between publishes: recent deduplication ids
/// and the last sequence number.
#[derive(Debug, Default)]
pub struct FifoState {
    pub seen: Mutex<super::Seen>,
    pub sequence: AtomicU64,
}

/// A topic, ready to publish to.
#[derive(Debug)]
pub struct Topic {
    pub record: TopicRecord,
    pub arn: String,
    pub subscriptions: Vec<Arc<Subscription>>,
    /// Shared by every snapshot of the topic.
    pub fifo_state: Arc<FifoState>,
    /// Messages published (shared by every snapshot).
    pub published: Arc<AtomicU64>,
}

impl Topic {
    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn fifo(&self) -> bool {
        self.record.fifo()
    }

    /// The attributes `GetTopicAttributes` answers, computed ones included.
    pub fn attributes(&self, owner: &str) -> BTreeMap<String, String> {
        let mut out = self.record.attributes.clone();
        let confirmed = self.subscriptions.iter().filter(|s| s.record.confirmed).count();
        let pending = self.subscriptions.len() - confirmed;
        out.insert("TopicArn".into(), self.arn.clone());
        out.insert("Owner".into(), owner.to_owned());
        out.insert("SubscriptionsConfirmed".into(), confirmed.to_string());
        out.insert("SubscriptionsPending".into(), pending.to_string());
        out.insert("SubscriptionsDeleted".into(), "0".into());
        out.entry("DisplayName".into()).or_default();
        out.insert("SignatureVersion".into(), "2".into());
        out.insert(
            "EffectiveDeliveryPolicy".into(),
            DeliveryPolicy::effective_topic_text(
                self.record.attributes.get("DeliveryPolicy").map(String::as_str),
            ),
        );
        out.entry("Policy".into()).or_insert_with(|| default_policy(&self.arn, owner));
        if self.fifo() {
            out.insert("FifoTopic".into(), "true".into());
            out.entry("ContentBasedDeduplication".into()).or_insert_with(|| "false".into());
        }
        out
    }
}

/// The access policy SNS gives a new topic: the owner may do everything.
fn default_policy(arn: &str, owner: &str) -> String {
    serde_json::json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": { "AWS": "*" },
            "Action": ["SNS:Publish", "SNS:Subscribe", "SNS:GetTopicAttributes", "SNS:SetTopicAttributes",
                       "SNS:DeleteTopic", "SNS:ListSubscriptionsByTopic", "SNS:AddPermission", "SNS:RemovePermission",
                       "SNS:Receive"],
            "Resource": arn,
            "Condition": { "StringEquals": { "AWS:SourceOwner": owner } }
        }]
    })
    .to_string()
}
