//! How HTTP(S) deliveries are retried: SNS's delivery policies.
//!
//! A subscription's `DeliveryPolicy` (`{"healthyRetryPolicy": {…}}`)
//! overrides its topic's (`{"http": {"defaultHealthyRetryPolicy": {…}}}`),
//! which overrides SNS's default (3 retries, 20 s apart). A retry policy
//! runs in four phases: retries without delay, retries at the minimum
//! delay, a backoff from the minimum to the maximum delay (`linear`,
//! `arithmetic`, `geometric` or `exponential`), then retries at the maximum
//! delay; each delay gets ±10% jitter so a recovering endpoint is not hit
//! by every retry at once.
//!
//! A `throttlePolicy` (`maxReceivesPerSecond`, the subscription's or the
//! topic's `http.defaultThrottlePolicy`) caps how fast one endpoint is sent
//! to: deliveries beyond it wait their turn ([`Throttle`]).

use std::time::Duration;

use serde_json::{json, Value};

/// SNS's limits on a retry policy.
const MAX_RETRIES: u32 = 100;
const MAX_DELAY_SECS: u32 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    Linear,
    Arithmetic,
    Geometric,
    Exponential,
}

impl Backoff {
    fn parse(text: &str) -> Option<Backoff> {
        match text {
            "linear" => Some(Backoff::Linear),
            "arithmetic" => Some(Backoff::Arithmetic),
            "geometric" => Some(Backoff::Geometric),
            "exponential" => Some(Backoff::Exponential),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Backoff::Linear => "linear",
            Backoff::Arithmetic => "arithmetic",
            Backoff::Geometric => "geometric",
            Backoff::Exponential => "exponential",
        }
    }
}

/// A healthy-endpoint retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub num_retries: u32,
    pub num_no_delay_retries: u32,
    pub min_delay_secs: u32,
    pub max_delay_secs: u32,
    pub num_min_delay_retries: u32,
    pub num_max_delay_retries: u32,
    pub backoff: Backoff,
}

impl Default for DeliveryPolicy {
    /// SNS's default for HTTP(S) endpoints.
    fn default() -> Self {
        DeliveryPolicy {
            num_retries: 3,
            num_no_delay_retries: 0,
            min_delay_secs: 20,
            max_delay_secs: 20,
            num_min_delay_retries: 0,
            num_max_delay_retries: 0,
            backoff: Backoff::Linear,
        }
    }
}

impl DeliveryPolicy {
    /// The policy a subscription runs: its own, else its topic's, else
    /// SNS's default.
    pub fn effective(subscription: Option<&str>, topic: Option<&str>) -> Result<DeliveryPolicy, String> {
        if let Some(text) = subscription {
            if let Some(p) = Self::parse_subscription(text)? {
                return Ok(p);
            }
        }
        match topic {
            Some(text) => Ok(Self::parse_topic(text)?.unwrap_or_default()),
            None => Ok(DeliveryPolicy::default()),
        }
    }

    /// A subscription's policy text: `{"healthyRetryPolicy": {…}, …}`.
    pub fn parse_subscription(text: &str) -> Result<Option<DeliveryPolicy>, String> {
        let v = object(text)?;
        v.get("healthyRetryPolicy").map(retry_policy).transpose()
    }

    /// A topic's policy text: `{"http": {"defaultHealthyRetryPolicy": {…}}}`.
    pub fn parse_topic(text: &str) -> Result<Option<DeliveryPolicy>, String> {
        let v = object(text)?;
        let Some(http) = v.get("http") else { return Ok(None) };
        http.get("defaultHealthyRetryPolicy").map(retry_policy).transpose()
    }

    /// The topic's `EffectiveDeliveryPolicy` attribute.
    pub fn effective_topic_text(topic: Option<&str>) -> String {
        let p = topic.and_then(|t| Self::parse_topic(t).ok().flatten()).unwrap_or_default();
        json!({
            "http": {
                "defaultHealthyRetryPolicy": p.to_json(),
                "disableSubscriptionOverrides": false,
                "defaultRequestPolicy": { "headerContentType": "text/plain; charset=UTF-8" }
            }
        })
        .to_string()
    }

    /// The subscription's `EffectiveDeliveryPolicy` attribute.
    pub fn effective_subscription_text(&self, max_receives_per_second: Option<u32>) -> String {
        let mut v = json!({
            "healthyRetryPolicy": self.to_json(),
            "requestPolicy": { "headerContentType": "text/plain; charset=UTF-8" }
        });
        if let Some(n) = max_receives_per_second {
            v["throttlePolicy"] = json!({ "maxReceivesPerSecond": n });
        }
        v.to_string()
    }

    fn to_json(self) -> Value {
        json!({
            "numRetries": self.num_retries,
            "numNoDelayRetries": self.num_no_delay_retries,
            "minDelayTarget": self.min_delay_secs,
            "maxDelayTarget": self.max_delay_secs,
            "numMinDelayRetries": self.num_min_delay_retries,
            "numMaxDelayRetries": self.num_max_delay_retries,
            "backoffFunction": self.backoff.as_str(),
        })
    }

    /// The delay before retry `n` (1 for the first retry), without jitter;
    /// `None` once the retries are spent.
    pub fn delay(&self, n: u32) -> Option<Duration> {
        if n == 0 || n > self.num_retries {
            return None;
        }
        let (min, max) = (f64::from(self.min_delay_secs), f64::from(self.max_delay_secs));
        let backoff_start = self.num_no_delay_retries + self.num_min_delay_retries;
        let backoff_end = self.num_retries.saturating_sub(self.num_max_delay_retries);
        let secs = if n <= self.num_no_delay_retries {
            0.0
        } else if n <= backoff_start {
            min
        } else if n > backoff_end {
            max
        } else {
            let steps = f64::from((backoff_end - backoff_start).max(1));
            let i = f64::from(n - backoff_start);
            let t = i / steps;
            match self.backoff {
                Backoff::Linear => min + (max - min) * t,
                Backoff::Arithmetic => min + (max - min) * i * (i + 1.0) / (steps * (steps + 1.0)),
                Backoff::Geometric => min.max(1.0) * (max / min.max(1.0)).powf(t),
                Backoff::Exponential => min + (max - min) * (2f64.powf(i) - 1.0) / (2f64.powf(steps) - 1.0),
            }
        };
        Some(Duration::from_secs_f64(secs.clamp(0.0, max.max(0.0))))
    }

    /// [`delay`](Self::delay) with ±10% jitter.
    pub fn jittered_delay(&self, n: u32) -> Option<Duration> {
        self.delay(n).map(|d| d.mul_f64(0.9 + fastrand::f64() * 0.2))
    }
}

/// A subscription's cap on deliveries per second.
pub type Throttle = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::MonotonicClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// The `maxReceivesPerSecond` a subscription runs with: its own
/// `throttlePolicy`, else its topic's `http.defaultThrottlePolicy`.
pub fn max_receives_per_second(
    subscription: Option<&str>,
    topic: Option<&str>,
) -> Result<Option<u32>, String> {
    let read = |policy: Option<&Value>| -> Result<Option<u32>, String> {
        let Some(n) = policy.and_then(|p| p.get("maxReceivesPerSecond")) else { return Ok(None) };
        match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err("maxReceivesPerSecond must be a whole number of at least 1".into()),
        }
    };
    if let Some(text) = subscription {
        if let Some(n) = read(object(text)?.get("throttlePolicy"))? {
            return Ok(Some(n));
        }
    }
    match topic {
        Some(text) => read(object(text)?.get("http").and_then(|h| h.get("defaultThrottlePolicy"))),
        None => Ok(None),
    }
}

/// A limiter letting `per_second` deliveries through each second.
pub fn throttle(per_second: u32) -> Option<Throttle> {
    let quota = governor::Quota::per_second(std::num::NonZeroU32::new(per_second)?);
    Some(governor::RateLimiter::direct_with_clock(quota, governor::clock::MonotonicClock))
}

fn object(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err("must be a JSON object".into()),
    }
}

fn retry_policy(v: &Value) -> Result<DeliveryPolicy, String> {
    let d = DeliveryPolicy::default();
    let num = |key: &str, default: u32| -> Result<u32, String> {
        match v.get(key) {
            None => Ok(default),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{key} must be a whole number")),
        }
    };
    let min = num("minDelayTarget", d.min_delay_secs)?;
    let max = num("maxDelayTarget", d.max_delay_secs.max(min))?;
    let p = DeliveryPolicy {
        num_retries: num("numRetries", d.num_retries)?,
        num_no_delay_retries: num("numNoDelayRetries", 0)?,
        min_delay_secs: min,
        max_delay_secs: max,
        num_min_delay_retries: num("numMinDelayRetries", 0)?,
        num_max_delay_retries: num("numMaxDelayRetries", 0)?,
        backoff: match v.get("backoffFunction") {
            None => Backoff::Linear,
            Some(b) => b
                .as_str()
                .and_then(Backoff::parse)
                .ok_or("backoffFunction must be linear, arithmetic, geometric or exponential")?,
        },
    };
    if p.num_retries > MAX_RETRIES {
        return Err(format!("numRetries must be at most {MAX_RETRIES}"));
    }
    if p.min_delay_secs < 1 || p.min_delay_secs > p.max_delay_secs || p.max_delay_secs > MAX_DELAY_SECS {
        return Err(format!(
            "minDelayTarget must be at least 1 and at most maxDelayTarget, at most {MAX_DELAY_SECS}"
        ));
    }
    if p.num_no_delay_retries + p.num_min_delay_retries + p.num_max_delay_retries > p.num_retries {
        return Err("the phases' retries add up to more than numRetries".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(p: &DeliveryPolicy) -> Vec<f64> {
        (1..=p.num_retries).map(|n| p.delay(n).unwrap().as_secs_f64()).collect()
    }

    #[test]
    fn the_default_retries_three_times_twenty_seconds_apart() {
        let p = DeliveryPolicy::effective(None, None).unwrap();
        assert_eq!(secs(&p), vec![20.0, 20.0, 20.0]);
        assert_eq!(p.delay(4), None);
    }

    #[test]
    fn phases_run_in_order_and_backoff_rises_to_the_maximum() {
        let text = r#"{"healthyRetryPolicy": {"numRetries": 8, "numNoDelayRetries": 1, "numMinDelayRetries": 1,
            "numMaxDelayRetries": 1, "minDelayTarget": 1, "maxDelayTarget": 60, "backoffFunction": "exponential"}}"#;
        let p = DeliveryPolicy::effective(Some(text), None).unwrap();
        let d = secs(&p);
        assert_eq!(d[0], 0.0);
        assert_eq!(d[1], 1.0);
        assert!(d[2..7].windows(2).all(|w| w[0] < w[1]), "{d:?}");
        assert_eq!(d[6], 60.0);
        assert_eq!(d[7], 60.0);
        for b in ["linear", "arithmetic", "geometric"] {
            let text = format!(
                r#"{{"healthyRetryPolicy": {{"numRetries": 5, "minDelayTarget": 2, "maxDelayTarget": 40, "backoffFunction": "{b}"}}}}"#
            );
            let d = secs(&DeliveryPolicy::effective(Some(&text), None).unwrap());
            assert!(d.windows(2).all(|w| w[0] <= w[1]) && d[4] == 40.0 && d[0] >= 2.0, "{b}: {d:?}");
        }
        let j = p.jittered_delay(8).unwrap().as_secs_f64();
        assert!((54.0..=66.0).contains(&j), "{j}");
    }

    #[test]
    fn subscription_overrides_topic_overrides_default() {
        let topic = r#"{"http": {"defaultHealthyRetryPolicy": {"numRetries": 7, "minDelayTarget": 1, "maxDelayTarget": 2}}}"#;
        assert_eq!(DeliveryPolicy::effective(None, Some(topic)).unwrap().num_retries, 7);
        let sub = r#"{"healthyRetryPolicy": {"numRetries": 1, "minDelayTarget": 1, "maxDelayTarget": 1}}"#;
        assert_eq!(DeliveryPolicy::effective(Some(sub), Some(topic)).unwrap().num_retries, 1);
        assert!(DeliveryPolicy::effective_topic_text(Some(topic)).contains("\"numRetries\":7"));
    }

    #[test]
    fn throttle_policies_come_from_the_subscription_or_the_topic() {
        let sub = r#"{"throttlePolicy": {"maxReceivesPerSecond": 5}}"#;
        let topic = r#"{"http": {"defaultThrottlePolicy": {"maxReceivesPerSecond": 9}}}"#;
        assert_eq!(max_receives_per_second(Some(sub), Some(topic)), Ok(Some(5)));
        assert_eq!(max_receives_per_second(None, Some(topic)), Ok(Some(9)));
        assert_eq!(max_receives_per_second(Some("{}"), None), Ok(None));
        assert!(max_receives_per_second(Some(r#"{"throttlePolicy": {"maxReceivesPerSecond": 0}}"#), None)
            .is_err());
        let t = throttle(2).unwrap();
        assert!(t.check().is_ok() && t.check().is_ok() && t.check().is_err());
    }

    #[test]
    fn bad_policies_are_refused() {
        for text in [
            "[]",
            r#"{"healthyRetryPolicy": {"numRetries": 101}}"#,
            r#"{"healthyRetryPolicy": {"minDelayTarget": 30, "maxDelayTarget": 10}}"#,
            r#"{"healthyRetryPolicy": {"maxDelayTarget": 4000}}"#,
            r#"{"healthyRetryPolicy": {"backoffFunction": "random"}}"#,
            r#"{"healthyRetryPolicy": {"numRetries": 2, "numNoDelayRetries": 3}}"#,
            r#"{"healthyRetryPolicy": {"numRetries": "3"}}"#,
        ] {
            assert!(DeliveryPolicy::effective(Some(text), None).is_err(), "{text}");
        }
    }
}
