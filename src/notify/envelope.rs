//! The JSON documents SNS delivers: notifications and subscription
//! confirmations, with their signatures.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use super::signing::Signer;
use crate::queue::message::Attributes;

/// What a notification says, before it is signed.
pub struct Notice<'a> {
    pub kind: Kind,
    pub message_id: &'a str,
    pub topic_arn: &'a str,
    pub subject: Option<&'a str>,
    pub message: &'a str,
    pub timestamp: &'a str,
    /// Confirmations: the token and the URL that confirms.
    pub token: Option<&'a str>,
    pub subscribe_url: Option<&'a str>,
    /// Notifications: the URL that unsubscribes the receiver.
    pub unsubscribe_url: Option<&'a str>,
    pub attributes: &'a Attributes,
    /// FIFO topics.
    pub sequence_number: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Notification => "Notification",
            Kind::SubscriptionConfirmation => "SubscriptionConfirmation",
            Kind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

/// The envelope, in SNS's member order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<'a> {
    #[serde(rename = "Type")]
    kind: &'static str,
    message_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<&'a str>,
    topic_arn: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    message: &'a str,
    #[serde(rename = "SubscribeURL", skip_serializing_if = "Option::is_none")]
    subscribe_url: Option<&'a str>,
    timestamp: &'a str,
    signature_version: &'static str,
    signature: &'a str,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: &'a str,
    #[serde(rename = "UnsubscribeURL", skip_serializing_if = "Option::is_none")]
    unsubscribe_url: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    message_attributes: BTreeMap<&'a str, Attribute<'a>>,
}

#[derive(Serialize)]
struct Attribute<'a> {
    #[serde(rename = "Type")]
    data_type: &'a str,
    #[serde(rename = "Value")]
    value: String,
}

impl Notice<'_> {
    /// The text SNS signs: each signed member's name and value on their own
    /// lines, in a fixed order.
    pub fn canonical_text(&self) -> String {
        let mut fields: Vec<(&str, &str)> = vec![("Message", self.message), ("MessageId", self.message_id)];
        match self.kind {
            Kind::Notification => {
                if let Some(s) = self.subject {
                    fields.push(("Subject", s));
                }
            }
            Kind::SubscriptionConfirmation | Kind::UnsubscribeConfirmation => {
                fields.push(("SubscribeURL", self.subscribe_url.unwrap_or("")));
            }
        }
        fields.push(("Timestamp", self.timestamp));
        if self.kind != Kind::Notification {
            fields.push(("Token", self.token.unwrap_or("")));
        }
        fields.push(("TopicArn", self.topic_arn));
        fields.push(("Type", self.kind.as_str()));
        let mut out = String::new();
        for (k, v) in fields {
            out.push_str(k);
            out.push('\n');
            out.push_str(v);
            out.push('\n');
        }
        out
    }

    /// The signed JSON document.
    pub fn to_json(&self, signer: &Signer, signing_cert_url: &str) -> String {
        self.to_json_signed(&self.signature(signer), signing_cert_url)
    }

    /// The signature of this notice. It covers neither the unsubscribe
    /// URL nor the attributes, so one signature serves every subscriber
    /// of a message ([`to_json_signed`](Self::to_json_signed)).
    pub fn signature(&self, signer: &Signer) -> String {
        signer.sign(self.canonical_text().as_bytes())
    }

    /// The JSON document carrying `signature`.
    pub fn to_json_signed(&self, signature: &str, signing_cert_url: &str) -> String {
        let message_attributes = self
            .attributes
            .iter()
            .map(|(name, a)| {
                let value = match (&a.string_value, &a.binary_value) {
                    (Some(s), _) => s.clone(),
                    (None, Some(b)) => base64::engine::general_purpose::STANDARD.encode(b),
                    (None, None) => String::new(),
                };
                (name.as_str(), Attribute { data_type: &a.data_type, value })
            })
            .collect();
        let envelope = Envelope {
            kind: self.kind.as_str(),
            message_id: self.message_id,
            token: self.token,
            sequence_number: self.sequence_number,
            topic_arn: self.topic_arn,
            subject: self.subject,
            message: self.message,
            subscribe_url: self.subscribe_url,
            timestamp: self.timestamp,
            signature_version: "2",
            signature,
            signing_cert_url,
            unsubscribe_url: self.unsubscribe_url,
            message_attributes,
        };
        serde_json::to_string(&envelope).unwrap_or_default()
    }
}

/// `2026-12-02T06:10:00.123Z` for milliseconds since the Unix epoch.
pub fn iso_timestamp(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_with_milliseconds() {
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_timestamp(1_796_193_000_123), "2026-12-02T06:30:00.123Z");
    }

    #[test]
    fn the_canonical_text_orders_the_signed_members() {
        let attributes = Attributes::new();
        let mut n = Notice {
            kind: Kind::Notification,
            message_id: "m",
            topic_arn: "arn",
            subject: Some("s"),
            message: "hello",
            timestamp: "t",
            token: None,
            subscribe_url: None,
            unsubscribe_url: Some("u"),
            attributes: &attributes,
            sequence_number: None,
        };
        assert_eq!(
            n.canonical_text(),
            "Message\nhello\nMessageId\nm\nSubject\ns\nTimestamp\nt\nTopicArn\narn\nType\nNotification\n"
        );
        n.kind = Kind::SubscriptionConfirmation;
        n.token = Some("tok");
        n.subscribe_url = Some("url");
        assert_eq!(
            n.canonical_text(),
            "Message\nhello\nMessageId\nm\nSubscribeURL\nurl\nTimestamp\nt\nToken\ntok\nTopicArn\narn\nType\nSubscriptionConfirmation\n"
        );
    }
}
