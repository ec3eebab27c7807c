//! Queue attributes: SQS's names, ranges and defaults, parsed from and
//! rendered to the string map the API speaks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::QueueError;

/// Limits and defaults (seconds and bytes), as SQS's.
pub mod limits {
    pub const VISIBILITY_TIMEOUT: u32 = 30;
    pub const MAX_VISIBILITY_TIMEOUT: u32 = 12 * 3600;
    pub const MAX_DELAY: u32 = 900;
    pub const RETENTION: u32 = 4 * 86_400;
    pub const MIN_RETENTION: u32 = 60;
    pub const MAX_RETENTION: u32 = 14 * 86_400;
    pub const MESSAGE_SIZE: u32 = 256 * 1024;
    pub const MIN_MESSAGE_SIZE: u32 = 1024;
    pub const MAX_MESSAGE_SIZE: u32 = 1024 * 1024;
    pub const MAX_WAIT: u32 = 20;
    pub const MAX_RECEIVE_COUNT: u32 = 1000;
}

/// Where a queue's poison messages go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivePolicy {
    /// The dead-letter queue's name (from its ARN).
    pub dead_letter_queue: String,
    pub dead_letter_arn: String,
    pub max_receive_count: u32,
}

/// Which queues may use a queue as their dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedriveAllow {
    AllowAll,
    DenyAll,
    /// Source queue names.
    ByQueue(Vec<String>),
}

/// A queue's settable attributes, typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueAttributes {
    pub visibility_timeout: u32,
    pub delay: u32,
    pub retention: u32,
    pub max_message_size: u32,
    pub receive_wait: u32,
    pub redrive_policy: Option<RedrivePolicy>,
    pub redrive_allow: Option<RedriveAllow>,
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub deduplication_scope: String,
    pub fifo_throughput_limit: String,
    pub policy: Option<String>,
    pub kms_master_key_id: Option<String>,
    pub kms_data_key_reuse_period: u32,
    pub sqs_managed_sse: bool,
}

impl QueueAttributes {
    pub fn defaults(fifo: bool) -> Self {
        Self {
            visibility_timeout: limits::VISIBILITY_TIMEOUT,
            delay: 0,
            retention: limits::RETENTION,
            max_message_size: limits::MESSAGE_SIZE,
            receive_wait: 0,
            redrive_policy: None,
            redrive_allow: None,
            fifo,
            content_based_deduplication: false,
            deduplication_scope: "queue".into(),
            fifo_throughput_limit: "perQueue".into(),
            policy: None,
            kms_master_key_id: None,
            kms_data_key_reuse_period: 300,
            sqs_managed_sse: true,
        }
    }

    /// Applies SQS attribute settings. `creating` allows `FifoQueue`.
    /// `arn_prefix` is `arn:aws:sqs:<region>:<account>:`.
    pub fn apply(
        &mut self,
        settings: &BTreeMap<String, String>,
        creating: bool,
        arn_prefix: &str,
    ) -> Result<(), QueueError> {
        // The queue type decides which other attributes are allowed.
        if let Some(v) = settings.get("FifoQueue") {
            self.apply_one("FifoQueue", v, creating, arn_prefix)?;
        }
        for (name, value) in settings.iter().filter(|(k, _)| *k != "FifoQueue") {
            self.apply_one(name, value, creating, arn_prefix)?;
        }
        Ok(())
    }

    fn apply_one(
        &mut self,
        name: &str,
        value: &str,
        creating: bool,
        arn_prefix: &str,
    ) -> Result<(), QueueError> {
        let bad = || QueueError::InvalidAttributeValue(format!("Invalid value for the parameter {name}."));
        let int = |min: u32, max: u32| -> Result<u32, QueueError> {
            value.trim().parse::<u32>().ok().filter(|v| (min..=max).contains(v)).ok_or_else(|| {
                QueueError::InvalidAttributeValue(format!(
                    "Invalid value for the parameter {name}: {value} (expected {min} to {max})."
                ))
            })
        };
        let boolean = || match value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad()),
        };
        let fifo_only = |fifo: bool| {
            if fifo {
                Ok(())
            } else {
                Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {name}.")))
            }
        };
        match name {
            "VisibilityTimeout" => self.visibility_timeout = int(0, limits::MAX_VISIBILITY_TIMEOUT)?,
            "DelaySeconds" => self.delay = int(0, limits::MAX_DELAY)?,
            "MessageRetentionPeriod" => self.retention = int(limits::MIN_RETENTION, limits::MAX_RETENTION)?,
            "MaximumMessageSize" => {
                self.max_message_size = int(limits::MIN_MESSAGE_SIZE, limits::MAX_MESSAGE_SIZE)?
            }
            "ReceiveMessageWaitTimeSeconds" => self.receive_wait = int(0, limits::MAX_WAIT)?,
            "RedrivePolicy" => {
                self.redrive_policy =
                    if value.trim().is_empty() { None } else { Some(parse_redrive(value, arn_prefix)?) }
            }
            "RedriveAllowPolicy" => {
                self.redrive_allow =
                    if value.trim().is_empty() { None } else { Some(parse_redrive_allow(value, arn_prefix)?) }
            }
            "Policy" => self.policy = (!value.trim().is_empty()).then(|| value.to_owned()),
            "KmsMasterKeyId" => self.kms_master_key_id = (!value.trim().is_empty()).then(|| value.to_owned()),
            "KmsDataKeyReusePeriodSeconds" => self.kms_data_key_reuse_period = int(60, 86_400)?,
            "SqsManagedSseEnabled" => self.sqs_managed_sse = boolean()?,
            "FifoQueue" => {
                let want = boolean()?;
                if !creating && want != self.fifo {
                    return Err(QueueError::InvalidAttributeName(
                        "FifoQueue can only be set when the queue is created.".into(),
                    ));
                }
                self.fifo = want;
            }
            "ContentBasedDeduplication" => {
                fifo_only(self.fifo)?;
                self.content_based_deduplication = boolean()?;
            }
            "DeduplicationScope" => {
                fifo_only(self.fifo)?;
                if !matches!(value, "queue" | "messageGroup") {
                    return Err(bad());
                }
                self.deduplication_scope = value.to_owned();
            }
            "FifoThroughputLimit" => {
                fifo_only(self.fifo)?;
                if !matches!(value, "perQueue" | "perMessageGroupId") {
                    return Err(bad());
                }
                self.fifo_throughput_limit = value.to_owned();
            }
            other => return Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {other}."))),
        }
        Ok(())
    }

    /// The settable attributes as SQS names them.
    pub fn to_map(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert("VisibilityTimeout", self.visibility_timeout.to_string());
        m.insert("DelaySeconds", self.delay.to_string());
        m.insert("MessageRetentionPeriod", self.retention.to_string());
        m.insert("MaximumMessageSize", self.max_message_size.to_string());
        m.insert("ReceiveMessageWaitTimeSeconds", self.receive_wait.to_string());
        m.insert("SqsManagedSseEnabled", self.sqs_managed_sse.to_string());
        if let Some(r) = &self.redrive_policy {
            m.insert(
                "RedrivePolicy",
                serde_json::json!({ "deadLetterTargetArn": r.dead_letter_arn, "maxReceiveCount": r.max_receive_count })
                    .to_string(),
            );
        }
        if let Some(a) = &self.redrive_allow {
            m.insert("RedriveAllowPolicy", render_redrive_allow(a));
        }
        if let Some(p) = &self.policy {
            m.insert("Policy", p.clone());
        }
        if let Some(k) = &self.kms_master_key_id {
            m.insert("KmsMasterKeyId", k.clone());
            m.insert("KmsDataKeyReusePeriodSeconds", self.kms_data_key_reuse_period.to_string());
        }
        if self.fifo {
            m.insert("FifoQueue", "true".into());
            m.insert("ContentBasedDeduplication", self.content_based_deduplication.to_string());
            m.insert("DeduplicationScope", self.deduplication_scope.clone());
            m.insert("FifoThroughputLimit", self.fifo_throughput_limit.clone());
        }
        m
    }
}

/// Names `GetQueueAttributes` knows (besides `All`).
pub const READABLE: &[&str] = &[
    "All",
    "Policy",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "ApproximateNumberOfMessagesDelayed",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "RedriveAllowPolicy",
    "SqsManagedSseEnabled",
];

fn queue_from_arn(arn: &str, arn_prefix: &str) -> Option<String> {
    // arn:aws:sqs:<region>:<account>:<name>; region and account must be ours.
    let name = arn.strip_prefix(arn_prefix)?;
    (!name.is_empty() && !name.contains(':')).then(|| name.to_owned())
}

fn parse_redrive(value: &str, arn_prefix: &str) -> Result<RedrivePolicy, QueueError> {
    let bad = |why: &str| {
        QueueError::InvalidAttributeValue(format!(
            "Value {value} for parameter RedrivePolicy is invalid. Reason: {why}."
        ))
    };
    let v: serde_json::Value =
        serde_json::from_str(value).map_err(|_| bad("Redrive policy is not a valid JSON map"))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn"))?;
    let count = match v.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: maxReceiveCount"))?;
    if !(1..=u64::from(limits::MAX_RECEIVE_COUNT)).contains(&count) {
        return Err(bad("Invalid value for maxReceiveCount: must be between 1 and 1000"));
    }
    let queue = queue_from_arn(arn, arn_prefix)
        .ok_or_else(|| bad("Dead-letter target ARN is not a queue ARN of this account and region"))?;
    Ok(RedrivePolicy {
        dead_letter_queue: queue,
        dead_letter_arn: arn.to_owned(),
        max_receive_count: count as u32,
    })
}

fn parse_redrive_allow(value: &str, arn_prefix: &str) -> Result<RedriveAllow, QueueError> {
    let bad = |why: &str| {
        QueueError::InvalidAttributeValue(format!(
            "Value {value} for parameter RedriveAllowPolicy is invalid. Reason: {why}."
        ))
    };
    let v: serde_json::Value = serde_json::from_str(value).map_err(|_| bad("not a valid JSON map"))?;
    match v.get("redrivePermission").and_then(|p| p.as_str()) {
        Some("allowAll") => Ok(RedriveAllow::AllowAll),
        Some("denyAll") => Ok(RedriveAllow::DenyAll),
        Some("byQueue") => {
            let arns = v
                .get("sourceQueueArns")
                .and_then(|a| a.as_array())
                .ok_or_else(|| bad("byQueue needs sourceQueueArns"))?;
            if arns.is_empty() || arns.len() > 10 {
                return Err(bad("sourceQueueArns must list 1 to 10 queues"));
            }
            let names = arns
                .iter()
                .map(|a| {
                    a.as_str()
                        .and_then(|a| queue_from_arn(a, arn_prefix))
                        .ok_or_else(|| bad("sourceQueueArns must be queue ARNs"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RedriveAllow::ByQueue(names))
        }
        _ => Err(bad("redrivePermission must be allowAll, denyAll or byQueue")),
    }
}

fn render_redrive_allow(a: &RedriveAllow) -> String {
    match a {
        RedriveAllow::AllowAll => r#"{"redrivePermission":"allowAll"}"#.into(),
        RedriveAllow::DenyAll => r#"{"redrivePermission":"denyAll"}"#.into(),
        RedriveAllow::ByQueue(names) => serde_json::json!({
            "redrivePermission": "byQueue",
            "sourceQueueArns": names,
        })
        .to_string(),
    }
}

/// Rewrites `ByQueue` names as ARNs for rendering.
pub fn redrive_allow_with_arns(a: &RedriveAllow, arn_prefix: &str) -> String {
    match a {
        RedriveAllow::ByQueue(names) => serde_json::json!({
            "redrivePermission": "byQueue",
            "sourceQueueArns": names.iter().map(|n| format!("{arn_prefix}{n}")).collect::<Vec<_>>(),
        })
        .to_string(),
        other => render_redrive_allow(other),
    }
}

/// Queue names: 1–80 letters, digits, `-` and `_`; FIFO names end `.fifo`.
pub fn validate_queue_name(name: &str, fifo: bool) -> Result<(), QueueError> {
    let stem = if fifo { name.strip_prefix("").and_then(|n| n.strip_suffix(".fifo")) } else { Some(name) };
    let ok = name.len() <= 80
        && stem.is_some_and(|s| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else if !fifo && name.ends_with(".fifo") {
        Err(QueueError::invalid_parameter(
            "The name of a FIFO queue can only be used with the attribute FifoQueue set to true.",
        ))
    } else if fifo && !name.ends_with(".fifo") {
        Err(QueueError::invalid_parameter("The name of a FIFO queue must end with the .fifo suffix."))
    } else {
        Err(QueueError::invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:sqs:us-east-1:000000000000:";

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ranges_are_enforced() {
        let mut a = QueueAttributes::defaults(false);
        a.apply(&set(&[("VisibilityTimeout", "43200"), ("DelaySeconds", "900")]), false, ARN).unwrap();
        assert_eq!((a.visibility_timeout, a.delay), (43200, 900));
        for (k, v) in [
            ("VisibilityTimeout", "43201"),
            ("DelaySeconds", "901"),
            ("MessageRetentionPeriod", "59"),
            ("MessageRetentionPeriod", "1209601"),
            ("MaximumMessageSize", "1023"),
            ("MaximumMessageSize", "1048577"),
            ("ReceiveMessageWaitTimeSeconds", "21"),
            ("VisibilityTimeout", "abc"),
        ] {
            let err = a.clone().apply(&set(&[(k, v)]), false, ARN).unwrap_err();
            assert!(matches!(err, QueueError::InvalidAttributeValue(_)), "{k}={v}: {err:?}");
        }
        let err = a.clone().apply(&set(&[("Bogus", "1")]), false, ARN).unwrap_err();
        assert!(matches!(err, QueueError::InvalidAttributeName(_)));
    }

    #[test]
    fn redrive_policies_parse_both_count_forms() {
        let mut a = QueueAttributes::defaults(false);
        let p = format!(r#"{{"deadLetterTargetArn":"{ARN}dlq","maxReceiveCount":"3"}}"#);
        a.apply(&set(&[("RedrivePolicy", &p)]), false, ARN).unwrap();
        let r = a.redrive_policy.clone().unwrap();
        assert_eq!((r.dead_letter_queue.as_str(), r.max_receive_count), ("dlq", 3));
        let p = format!(r#"{{"deadLetterTargetArn":"{ARN}dlq","maxReceiveCount":5}}"#);
        a.apply(&set(&[("RedrivePolicy", &p)]), false, ARN).unwrap();
        assert_eq!(a.redrive_policy.as_ref().unwrap().max_receive_count, 5);
        for bad in [
            r#"{"maxReceiveCount":5}"#.to_string(),
            format!(r#"{{"deadLetterTargetArn":"{ARN}dlq","maxReceiveCount":0}}"#),
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:dlq","maxReceiveCount":2}"#.to_string(),
            "not json".to_string(),
        ] {
            assert!(a.clone().apply(&set(&[("RedrivePolicy", &bad)]), false, ARN).is_err(), "{bad}");
        }
    }

    #[test]
    fn fifo_attributes_only_on_fifo_queues_and_fifo_only_at_creation() {
        let mut std = QueueAttributes::defaults(false);
        assert!(std.apply(&set(&[("ContentBasedDeduplication", "true")]), false, ARN).is_err());
        assert!(std.apply(&set(&[("FifoQueue", "true")]), false, ARN).is_err());
        let mut fifo = QueueAttributes::defaults(false);
        fifo.apply(&set(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]), true, ARN).unwrap();
        assert!(fifo.fifo && fifo.content_based_deduplication);
    }

    #[test]
    fn queue_names() {
        assert!(validate_queue_name("orders_v2-x", false).is_ok());
        assert!(validate_queue_name("payments.fifo", true).is_ok());
        assert!(validate_queue_name("payments.fifo", false).is_err());
        assert!(validate_queue_name("payments", true).is_err());
        assert!(validate_queue_name("", false).is_err());
        assert!(validate_queue_name(&"a".repeat(81), false).is_err());
        assert!(validate_queue_name("sp ace", false).is_err());
    }
}
