//! What SNS actions answer, typed, and its Query XML.

use std::collections::BTreeMap;

use super::error::Error;
use crate::aws::query::Xml;
use crate::notify::Published;

/// One action's answer.
#[derive(Debug)]
pub enum Output {
    /// Only the response metadata.
    Empty,
    /// An empty result element (`TagResource`, `UntagResource`).
    EmptyResult,
    TopicArn(String),
    SubscriptionArn(String),
    Attributes(BTreeMap<String, String>),
    Topics {
        arns: Vec<String>,
        next: Option<String>,
    },
    Subscriptions {
        items: Vec<Summary>,
        next: Option<String>,
    },
    Published(Published),
    Batch(BatchOutput),
    Tags(BTreeMap<String, String>),
}

/// A subscription as the listings show it.
#[derive(Debug)]
pub struct Summary {
    /// `PendingConfirmation` until confirmed.
    pub arn: String,
    pub owner: String,
    pub protocol: String,
    pub endpoint: String,
    pub topic_arn: String,
}

#[derive(Debug, Default)]
pub struct BatchOutput {
    successful: Vec<(String, Published)>,
    failed: Vec<Failed>,
}

#[derive(Debug)]
struct Failed {
    id: String,
    code: &'static str,
    message: String,
    sender_fault: bool,
}

impl BatchOutput {
    pub fn published(&mut self, id: String, p: Published) {
        self.successful.push((id, p));
    }

    pub fn fail(&mut self, id: String, e: &Error) {
        let e = e.to_aws();
        let sender_fault = e.fault == crate::aws::error::Fault::Sender;
        self.failed.push(Failed { id, code: e.code, message: e.message, sender_fault });
    }
}

impl Output {
    /// The `<{action}Response>` document.
    pub fn to_xml(&self, action: &str, request_id: &str) -> String {
        let mut x = Xml::default();
        x.raw(&format!("<{action}Response xmlns=\"{}\">", super::DIALECT.xmlns));
        let result = format!("{action}Result");
        match self {
            Output::Empty => {}
            Output::EmptyResult => {
                x.raw(&format!("<{result}/>"));
            }
            other => {
                x.open(&result);
                other.result(&mut x);
                x.close(&result);
            }
        }
        x.open("ResponseMetadata").text("RequestId", request_id).close("ResponseMetadata");
        x.raw(&format!("</{action}Response>"));
        x.finish()
    }

    fn result(&self, x: &mut Xml) {
        match self {
            Output::Empty | Output::EmptyResult => {}
            Output::TopicArn(arn) => {
                x.text("TopicArn", arn);
            }
            Output::SubscriptionArn(arn) => {
                x.text("SubscriptionArn", arn);
            }
            Output::Attributes(a) => {
                x.open("Attributes");
                for (k, v) in a {
                    x.open("entry").text("key", k).text("value", v).close("entry");
                }
                x.close("Attributes");
            }
            Output::Topics { arns, next } => {
                x.open("Topics");
                for arn in arns {
                    x.open("member").text("TopicArn", arn).close("member");
                }
                x.close("Topics");
                next_token(x, next);
            }
            Output::Subscriptions { items, next } => {
                x.open("Subscriptions");
                for s in items {
                    x.open("member")
                        .text("TopicArn", &s.topic_arn)
                        .text("Protocol", &s.protocol)
                        .text("SubscriptionArn", &s.arn)
                        .text("Owner", &s.owner)
                        .text("Endpoint", &s.endpoint)
                        .close("member");
                }
                x.close("Subscriptions");
                next_token(x, next);
            }
            Output::Published(p) => {
                x.text("MessageId", &p.message_id);
                if let Some(n) = &p.sequence_number {
                    x.text("SequenceNumber", n);
                }
            }
            Output::Batch(b) => {
                x.open("Successful");
                for (id, p) in &b.successful {
                    x.open("member").text("Id", id).text("MessageId", &p.message_id);
                    if let Some(n) = &p.sequence_number {
                        x.text("SequenceNumber", n);
                    }
                    x.close("member");
                }
                x.close("Successful").open("Failed");
                for f in &b.failed {
                    x.open("member")
                        .text("Id", &f.id)
                        .text("Code", f.code)
                        .text("Message", &f.message)
                        .text("SenderFault", if f.sender_fault { "true" } else { "false" })
                        .close("member");
                }
                x.close("Failed");
            }
            Output::Tags(tags) => {
                x.open("Tags");
                for (k, v) in tags {
                    x.open("member").text("Key", k).text("Value", v).close("member");
                }
                x.close("Tags");
            }
        }
    }
}

fn next_token(x: &mut Xml, next: &Option<String>) {
    if let Some(t) = next {
        x.text("NextToken", t);
    }
}
