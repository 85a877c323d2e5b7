//! Prometheus metrics, recorded through the `metrics` facade and rendered by
//! `metrics-exporter-prometheus` at `/metrics`. The names (all `netia_…`, durations in seconds
//! per Prometheus' base-unit convention) are described in [`describe`]; `deploy/grafana-netia.json`
//! charts them. One recorder per process: a process running several nodes (the tests) shares it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::AnyPool;
use tokio::sync::watch;

use crate::store::EventStore;

/// Histogram buckets for durations, in seconds: 1 ms to 30 s.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Histogram buckets for counts (appends per database write).
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// How often lag and backlog gauges are sampled (and histograms' upkeep runs).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The process' Prometheus recorder, installed as the global `metrics` recorder on first use. If
/// another recorder was installed first (an embedding program's), this one renders nothing.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("netia_store_write_batch_appends".into()), SIZES));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: /metrics shows nothing");
        }
        describe();
        handle
    })
}

/// The metrics in Prometheus text format (version 0.0.4).
pub fn render() -> String {
    handle().render()
}

/// Every metric's name, unit and meaning (Prometheus `# HELP`).
fn describe() {
    let s = Unit::Seconds;
    describe_counter!(
        "netia_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        "netia_http_request_duration_seconds",
        s,
        "Time to answer an HTTP request, by method, route template and status."
    );
    describe_gauge!("netia_sockets_open", "WebSocket connections open on this node.");
    describe_gauge!(
        "netia_socket_topics_joined",
        "Channel topics joined by this node's sockets (one per socket and topic)."
    );
    describe_histogram!(
        "netia_store_append_duration_seconds",
        s,
        "Time to append events to one stream, from the call to the commit, by backend."
    );
    describe_histogram!(
        "netia_store_write_batch_appends",
        "Appends committed together by one database write (PostgreSQL group commit)."
    );
    describe_gauge!(
        "netia_follower_lag_events",
        "Events in the log after a follower's checkpoint, by follower and kind (projection, relay, consumer)."
    );
    describe_gauge!(
        "netia_follower_lag_seconds",
        s,
        "Age of the oldest event a follower has not handled yet (0 when caught up)."
    );
    describe_counter!(
        "netia_relay_published_total",
        "Events the relay published to RabbitMQ with the broker's confirm."
    );
    describe_counter!(
        "netia_consumer_handled_total",
        "Deliveries a consumer handled, by consumer."
    );
    describe_counter!(
        "netia_consumer_duplicates_total",
        "Redeliveries a consumer skipped (handled before), by consumer."
    );
    describe_counter!(
        "netia_consumer_retried_total",
        "Deliveries that failed and will be tried again, by consumer."
    );
    describe_counter!(
        "netia_consumer_parked_total",
        "Deliveries a consumer gave up on (parked), by consumer."
    );
    describe_histogram!(
        "netia_consumer_duration_seconds",
        s,
        "Time a consumer took over one delivery, by consumer and outcome."
    );
    describe_histogram!(
        "netia_llm_request_duration_seconds",
        s,
        "Time of one chat-completion call, by outcome."
    );
    describe_counter!(
        "netia_llm_tokens_total",
        "Tokens the model reported, by kind (prompt, completion)."
    );
    describe_counter!(
        "netia_llm_failures_total",
        "Chat-completion calls that failed, by reason."
    );
    describe_counter!(
        "netia_scheduler_runs_total",
        "Scheduled jobs run, by job kind and outcome."
    );
    describe_gauge!(
        "netia_scheduler_due_jobs",
        "Scheduled jobs due now or overdue and not done."
    );
    describe_gauge!(
        "netia_task_up",
        "Whether a supervised background task runs (1) or waits to restart (0)."
    );
    describe_counter!(
        "netia_task_restarts_total",
        "Restarts of a supervised background task after a failure."
    );
}

/// Every [`SAMPLE_EVERY`] until `stop`: the followers' lag and the scheduler's backlog as gauges,
/// and the histograms' upkeep. A failed sample is logged and tried again next time.
pub async fn sample(store: Arc<dyn EventStore>, db: AnyPool, mut stop: watch::Receiver<bool>) {
    loop {
        handle().run_upkeep();
        match crate::status::followers(&store, &db, false).await {
            Ok(followers) => {
                for f in followers {
                    let labels = [("follower", f.name), ("kind", f.kind.to_owned())];
                    gauge!("netia_follower_lag_events", &labels).set(f.lag_events as f64);
                    gauge!("netia_follower_lag_seconds", &labels).set(f.lag_seconds);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: the followers' lag could not be read"),
        }
        match crate::status::due_jobs(&db).await {
            Ok(due) => gauge!("netia_scheduler_due_jobs").set(due as f64),
            Err(e) => tracing::warn!(error = %e, "metrics: the scheduler's backlog could not be read"),
        }
        if crate::backoff::sleep_or_stop(&mut stop, SAMPLE_EVERY).await {
            return;
        }
    }
}
