//! `sts:GetCallerIdentity`, which SDK helpers, infrastructure tools and
//! test suites call to learn the account before building ARNs. The caller
//! is the access key that signed the request (or `anonymous` when the
//! listener takes unsigned requests); the account is the configured one.

use serde_json::json;

use super::error::{AwsError, Dialect};
use super::query::Xml;

pub const DIALECT: Dialect =
    Dialect { namespace: "com.amazonaws.sts", xmlns: "https://sts.amazonaws.com/doc/2011-06-15/" };

/// The JSON protocol's target prefix.
pub const JSON_PREFIX: &str = "AWSSecurityTokenServiceV20110615.";

/// Who is calling.
pub struct Identity<'a> {
    pub account: &'a str,
    /// The access key, if the request was signed.
    pub access_key: Option<&'a str>,
}

impl Identity<'_> {
    fn user(&self) -> &str {
        self.access_key.unwrap_or("anonymous")
    }

    fn arn(&self) -> String {
        format!("arn:aws:iam::{}:user/{}", self.account, self.user())
    }

    pub fn to_xml(&self, request_id: &str) -> String {
        let mut x = Xml::default();
        x.raw(&format!("<GetCallerIdentityResponse xmlns=\"{}\">", DIALECT.xmlns));
        x.open("GetCallerIdentityResult")
            .text("Arn", &self.arn())
            .text("UserId", self.user())
            .text("Account", self.account)
            .close("GetCallerIdentityResult");
        x.open("ResponseMetadata").text("RequestId", request_id).close("ResponseMetadata");
        x.raw("</GetCallerIdentityResponse>");
        x.finish()
    }

    pub fn to_json(&self) -> String {
        json!({ "Account": self.account, "Arn": self.arn(), "UserId": self.user() }).to_string()
    }
}

/// Any STS action other than `GetCallerIdentity`.
pub fn unsupported(action: &str) -> AwsError {
    AwsError::sender("InvalidAction", format!("gatehouse answers only GetCallerIdentity, not {action}."))
}
