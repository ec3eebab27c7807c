//! Active health checks: one task per target sends `GET <path>` every
//! `interval`. A 2xx or 3xx answer within `timeout` is a success.
//!
//! The first result decides a target's state at once (so `/readyz` can
//! report health as known quickly); after that it takes
//! `unhealthy_threshold` consecutive failures to mark a healthy target
//! unhealthy and `healthy_threshold` consecutive successes to re-admit it.

use std::sync::Weak;

use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;

use super::upstream::{ActiveHealth, UpstreamInner};
use super::UpstreamBody;
use crate::config::HealthCheckConfig;

/// Decides the next state from the current one and the current streaks.
pub(crate) fn next_state(
    current: ActiveHealth,
    ok: bool,
    successes: u32,
    failures: u32,
    check: &HealthCheckConfig,
) -> ActiveHealth {
    match (current, ok) {
        (ActiveHealth::Unknown, true) => ActiveHealth::Healthy,
        (ActiveHealth::Unknown, false) => ActiveHealth::Unhealthy,
        (ActiveHealth::Unhealthy, true) if successes >= check.healthy_threshold => ActiveHealth::Healthy,
        (ActiveHealth::Healthy, false) if failures >= check.unhealthy_threshold => ActiveHealth::Unhealthy,
        (state, _) => state,
    }
}

pub(crate) async fn run(upstream: Weak<UpstreamInner>, index: usize, check: HealthCheckConfig) {
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let Some(up) = upstream.upgrade() else { return };
        let ok = probe(&up, index, &check).await;
        if ok {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        let target = &up.targets[index];
        let before = target.active_health();
        let after = next_state(before, ok, successes, failures, &check);
        if after != before {
            target.set_active_health(after);
            match after {
                ActiveHealth::Healthy => {
                    tracing::info!(upstream = %up.name, target = %target.label, "target is healthy")
                }
                _ => tracing::warn!(upstream = %up.name, target = %target.label, "target is unhealthy"),
            }
        }
        drop(up);
        tokio::time::sleep(check.interval).await;
    }
}

async fn probe(up: &UpstreamInner, index: usize, check: &HealthCheckConfig) -> bool {
    let target = &up.targets[index];
    let uri = Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(check.path.as_str())
        .build();
    let Ok(uri) = uri else { return false };
    let mut req = Request::new(UpstreamBody::empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    req.headers_mut().insert(header::USER_AGENT, HeaderValue::from_static("gatehouse-health-check"));
    let attempt = async {
        let (resp, lease) = up.connector.send(target, req).await.ok()?;
        let ok = resp.status().is_success() || resp.status().is_redirection();
        // Read the (small) body so the connection can be reused.
        if resp.into_body().collect().await.is_ok() {
            if let Some(lease) = lease {
                lease.release();
            }
        }
        Some(ok)
    };
    matches!(tokio::time::timeout(check.timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check() -> HealthCheckConfig {
        HealthCheckConfig {
            path: "/h".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn first_result_decides_then_thresholds_apply() {
        let c = check();
        use ActiveHealth::*;
        assert_eq!(next_state(Unknown, true, 1, 0, &c), Healthy);
        assert_eq!(next_state(Unknown, false, 0, 1, &c), Unhealthy);
        assert_eq!(next_state(Healthy, false, 0, 2, &c), Healthy);
        assert_eq!(next_state(Healthy, false, 0, 3, &c), Unhealthy);
        assert_eq!(next_state(Unhealthy, true, 1, 0, &c), Unhealthy);
        assert_eq!(next_state(Unhealthy, true, 2, 0, &c), Healthy);
    }
}
