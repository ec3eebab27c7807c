//! Queue-depth alarms: what CloudWatch gives SQS users, built in.
//!
//! Each alarm watches one measure of one queue (visible, in-flight and
//! delayed messages, the oldest message's age, or arrivals in its
//! dead-letter queue over the last minute), evaluated every second. The
//! state changes (OK → ALARM, ALARM → OK) only once the condition has
//! held, or stopped holding, for the alarm's whole `for` period: a value
//! that crosses and comes back within it changes nothing. Each change is
//! published to the alarm's topics as a JSON message shaped like
//! CloudWatch's SNS alarm notifications.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{envelope, now_ms, Message, Notifier};
use crate::queue::storage::Storage;

/// How often alarms are evaluated.
pub const EVERY: Duration = Duration::from_secs(1);
/// The window `dead_letter` counts arrivals over.
const ARRIVALS_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    Visible,
    InFlight,
    Delayed,
    OldestAge,
    DeadLetter,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Visible => "visible",
            Measure::InFlight => "in_flight",
            Measure::Delayed => "delayed",
            Measure::OldestAge => "oldest_age",
            Measure::DeadLetter => "dead_letter",
        }
    }

    /// CloudWatch's name for the measure (AWS/SQS namespace).
    fn cloudwatch(self) -> &'static str {
        match self {
            Measure::Visible => "ApproximateNumberOfMessagesVisible",
            Measure::InFlight => "ApproximateNumberOfMessagesNotVisible",
            Measure::Delayed => "ApproximateNumberOfMessagesDelayed",
            Measure::OldestAge => "ApproximateAgeOfOldestMessage",
            Measure::DeadLetter => "NumberOfMessagesSent",
        }
    }
}

/// An alarm as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmSpec {
    pub name: String,
    pub queue: String,
    pub measure: Measure,
    /// Fires above the threshold (else below).
    pub above: bool,
    pub threshold: f64,
    /// How long the condition must hold (or stop holding) to change state.
    pub hold: Duration,
    /// Topic names told of each change.
    pub notify: Vec<String>,
}

/// An alarm's state as metrics show it.
#[derive(Clone, Debug)]
pub struct AlarmStatus {
    pub name: String,
    pub queue: String,
    pub firing: bool,
    pub value: f64,
}

/// One alarm being watched.
#[derive(Debug)]
pub(super) struct Watch {
    spec: AlarmSpec,
    firing: bool,
    /// Since when the condition has disagreed with the state.
    since: Option<Instant>,
    value: f64,
    /// Samples of the dead-letter counter, oldest first.
    arrivals: VecDeque<(Instant, u64)>,
}

impl Watch {
    pub(super) fn new(spec: AlarmSpec) -> Self {
        Watch { spec, firing: false, since: None, value: 0.0, arrivals: VecDeque::new() }
    }

    pub(super) fn spec(&self) -> &AlarmSpec {
        &self.spec
    }

    pub(super) fn status(&self) -> AlarmStatus {
        AlarmStatus {
            name: self.spec.name.clone(),
            queue: self.spec.queue.clone(),
            firing: self.firing,
            value: self.value,
        }
    }

    /// Takes a new value; `Some(firing)` when the state changes.
    fn observe(&mut self, value: f64, now: Instant) -> Option<bool> {
        self.value = value;
        let breach = if self.spec.above { value > self.spec.threshold } else { value < self.spec.threshold };
        if breach == self.firing {
            self.since = None;
            return None;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) < self.spec.hold {
            return None;
        }
        self.firing = breach;
        self.since = None;
        Some(breach)
    }

    /// Arrivals in the dead-letter queue over the window, from the source
    /// queue's running count of messages moved there.
    fn arrivals(&mut self, moved: u64, now: Instant) -> f64 {
        self.arrivals.push_back((now, moved));
        while self.arrivals.len() > 1 && now.duration_since(self.arrivals[1].0) >= ARRIVALS_WINDOW {
            self.arrivals.pop_front();
        }
        let oldest = self.arrivals.front().map_or(moved, |(_, n)| *n);
        moved.saturating_sub(oldest) as f64
    }
}

/// Evaluates every alarm once a second until the notifier stops.
pub(super) async fn run<S: Storage>(n: Arc<Notifier<S>>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let mut watches = n.alarms.lock().await;
        for w in watches.iter_mut() {
            let Some(value) = measure(&n, w).await else { continue };
            if let Some(firing) = w.observe(value, Instant::now()) {
                announce(&n, w, firing).await;
            }
        }
        let statuses = watches.iter().map(Watch::status).collect();
        *n.alarm_statuses.lock().unwrap_or_else(|e| e.into_inner()) = statuses;
    }
}

/// The alarm's measure now; `None` if its queue is gone or unreadable.
async fn measure<S: Storage>(n: &Notifier<S>, w: &mut Watch) -> Option<f64> {
    let q = n.queues.queue(&w.spec.queue).ok()?;
    if w.spec.measure == Measure::DeadLetter {
        let moved = q.stats.moved_to_dead_letter.load(std::sync::atomic::Ordering::Relaxed);
        return Some(w.arrivals(moved, Instant::now()));
    }
    let c = n.queues.counts(&q).await.ok()?;
    Some(match w.spec.measure {
        Measure::Visible => c.visible as f64,
        Measure::InFlight => c.in_flight as f64,
        Measure::Delayed => c.delayed as f64,
        Measure::OldestAge => c.oldest_sent_ms.map_or(0.0, |t| ((now_ms() - t).max(0) / 1000) as f64),
        Measure::DeadLetter => 0.0,
    })
}

/// Publishes a state change to the alarm's topics.
async fn announce<S: Storage>(n: &Notifier<S>, w: &Watch, firing: bool) {
    let spec = &w.spec;
    let (new, old) = if firing { ("ALARM", "OK") } else { ("OK", "ALARM") };
    let account = &n.queues.account().id;
    let region = &n.queues.account().region;
    let comparison = if spec.above { "GreaterThanThreshold" } else { "LessThanThreshold" };
    let reason = format!(
        "Threshold Crossed: {} of queue {} was {} ({} the threshold {}) for {} s.",
        spec.measure.name(),
        spec.queue,
        w.value,
        if firing == spec.above { "above" } else { "not above" },
        spec.threshold,
        spec.hold.as_secs()
    );
    let time = envelope::iso_timestamp(now_ms());
    let body = json!({
        "AlarmName": spec.name,
        "AlarmDescription": null,
        "AWSAccountId": account,
        "NewStateValue": new,
        "NewStateReason": reason,
        "StateChangeTime": time,
        "Region": region,
        "AlarmArn": format!("arn:aws:cloudwatch:{region}:{account}:alarm:{}", spec.name),
        "OldStateValue": old,
        "Trigger": {
            "MetricName": spec.measure.cloudwatch(),
            "Namespace": "AWS/SQS",
            "Statistic": "MAXIMUM",
            "Dimensions": [{ "name": "QueueName", "value": spec.queue }],
            "Period": EVERY.as_secs(),
            "EvaluationPeriods": (spec.hold.as_secs() / EVERY.as_secs()).max(1),
            "ComparisonOperator": comparison,
            "Threshold": spec.threshold,
        },
        "Queue": spec.queue,
        "Metric": spec.measure.name(),
        "Value": w.value,
    });
    tracing::warn!(alarm = %spec.name, queue = %spec.queue, value = w.value, state = new, "alarm state changed");
    for topic in &spec.notify {
        let Ok(t) = n.topic_named(topic) else { continue };
        let msg = Message {
            body: body.to_string(),
            subject: Some(format!("{new}: \"{}\" in {region}", spec.name)),
            group_id: t.fifo().then(|| spec.name.clone()),
            dedup_id: t.fifo().then(|| format!("{}-{new}-{time}", spec.name)),
            ..Message::default()
        };
        if let Err(e) = n.publish(&t, msg).await {
            tracing::error!(alarm = %spec.name, topic = %topic, error = %e, "alarm notification not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(above: bool, threshold: f64, hold: u64) -> Watch {
        Watch::new(AlarmSpec {
            name: "a".into(),
            queue: "q".into(),
            measure: Measure::Visible,
            above,
            threshold,
            hold: Duration::from_secs(hold),
            notify: vec![],
        })
    }

    #[test]
    fn a_change_needs_the_condition_for_the_whole_period() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = watch(true, 10.0, 5);
        assert_eq!(w.observe(11.0, at(0)), None);
        assert_eq!(w.observe(12.0, at(3)), None);
        // Back under before the period ends: nothing, and the clock restarts.
        assert_eq!(w.observe(9.0, at(4)), None);
        assert_eq!(w.observe(11.0, at(6)), None);
        assert_eq!(w.observe(11.0, at(10)), None);
        assert_eq!(w.observe(11.0, at(11)), Some(true));
        assert_eq!(w.observe(50.0, at(12)), None);
        // Recovery needs the whole period too.
        assert_eq!(w.observe(0.0, at(13)), None);
        assert_eq!(w.observe(0.0, at(18)), Some(false));
    }

    #[test]
    fn below_alarms_and_zero_periods_fire_at_once() {
        let now = Instant::now();
        let mut w = watch(false, 1.0, 0);
        assert_eq!(w.observe(0.0, now), Some(true));
        assert_eq!(w.observe(1.0, now), Some(false));
    }

    #[test]
    fn dead_letter_arrivals_count_over_the_last_minute() {
        let t0 = Instant::now();
        let mut w = watch(true, 0.0, 0);
        assert_eq!(w.arrivals(5, t0), 0.0);
        assert_eq!(w.arrivals(7, t0 + Duration::from_secs(10)), 2.0);
        // The baseline is the newest sample a minute old or older.
        assert_eq!(w.arrivals(9, t0 + Duration::from_secs(65)), 4.0);
        assert_eq!(w.arrivals(9, t0 + Duration::from_secs(200)), 0.0);
    }
}
