//! Supervision of the node's background tasks (projector group, broadcaster, scheduler, relay,
//! consumers, presence recording, cluster link). Each runs in a task of its own, made anew by its
//! factory; one that panics or returns before the node stops is logged with its error, counted,
//! marked down — `/health/ready` then answers 503 naming it — and restarted after an exponential
//! backoff (0.5 s doubling to 30 s, with jitter; reset after a run of a minute or more).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One run of a supervised task, boxed so that different tasks share one factory type.
pub type Run = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
/// What makes a supervised task's runs (given the stop signal).
pub type MakeRun = Box<dyn FnMut(watch::Receiver<bool>) -> Run + Send>;

/// First pause before a restart.
pub const MIN_RESTART_DELAY: Duration = Duration::from_millis(500);
/// Longest pause before a restart.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A run at least this long resets the backoff: the failure is new, not a loop.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// One supervised task's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentState {
    pub up: bool,
    /// Times it was restarted after a failure.
    pub restarts: u64,
    /// Why it last failed (a panic's message, or "returned before the node stopped").
    pub last_error: Option<String>,
}

/// The supervised tasks of this node, by name, and whether the node is shutting down.
#[derive(Debug, Default)]
pub struct Components {
    inner: Mutex<BTreeMap<String, ComponentState>>,
    draining: std::sync::atomic::AtomicBool,
}

impl Components {
    /// The node is shutting down: readiness fails from now on.
    pub fn drain(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut ComponentState)) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        change(inner.entry(name.to_owned()).or_default());
    }

    /// The components that are down now, with why.
    pub fn down(&self) -> Vec<(String, String)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .iter()
            .filter(|(_, c)| !c.up)
            .map(|(name, c)| (name.clone(), c.last_error.clone().unwrap_or_default()))
            .collect()
    }

    /// Every component's state, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Spawns supervised tasks that all stop when its stop signal turns true, and keeps their
/// [`Components`] state.
#[derive(Clone)]
pub struct Supervisor {
    pub components: Arc<Components>,
    stop: watch::Sender<bool>,
}

impl Supervisor {
    pub fn new(stop: watch::Sender<bool>) -> Self {
        Self {
            components: Arc::default(),
            stop,
        }
    }

    /// Runs `make`'s task as `name` under supervision (see [`supervise`]).
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, make: F) -> JoinHandle<()>
    where
        F: FnMut(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        supervise(self.components.clone(), name, self.stop.subscribe(), make)
    }
}

/// Runs the task `make` builds, as `name`, until `stop` turns true; rebuilds and restarts it
/// (after a backoff) whenever it panics or returns before that. The handle ends once the node
/// stops and the current run has returned.
pub fn supervise<F, Fut>(
    components: Arc<Components>,
    name: impl Into<String>,
    mut stop: watch::Receiver<bool>,
    mut make: F,
) -> JoinHandle<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = name.into();
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(MIN_RESTART_DELAY)
            .with_max_delay(MAX_RESTART_DELAY)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    };
    tokio::spawn(async move {
        let mut delays = backoff();
        loop {
            components.update(&name, |c| c.up = true);
            metrics::gauge!("netia_task_up", "task" => name.clone()).set(1.0);
            let started = Instant::now();
            let outcome = tokio::spawn(make(stop.clone())).await;
            if *stop.borrow() {
                return;
            }
            let why = match outcome {
                Ok(()) => "returned before the node stopped".to_owned(),
                Err(e) if e.is_panic() => {
                    let panic = e.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".to_owned());
                    format!("panicked: {message}")
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= HEALTHY_RUN {
                delays = backoff();
            }
            let delay = delays.next().unwrap_or(MAX_RESTART_DELAY);
            tracing::error!(task = %name, error = %why, retry_in_ms = delay.as_millis() as u64, "background task failed; restarting");
            metrics::gauge!("netia_task_up", "task" => name.clone()).set(0.0);
            metrics::counter!("netia_task_restarts_total", "task" => name.clone()).increment(1);
            components.update(&name, |c| {
                c.up = false;
                c.restarts += 1;
                c.last_error = Some(why);
            });
            if crate::backoff::sleep_or_stop(&mut stop, delay).await {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_marked_down_then_restarted() {
        let components = Arc::new(Components::default());
        let (stop_tx, stop) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = supervise(components.clone(), "flaky", stop, move |mut stop| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run == 0 {
                    panic!("boom");
                }
                let _ = stop.wait_for(|s| *s).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            components.down(),
            vec![("flaky".to_owned(), "panicked: boom".to_owned())]
        );
        tokio::time::sleep(MIN_RESTART_DELAY * 2).await;
        assert!(components.down().is_empty());
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(components.snapshot()["flaky"].restarts, 1);
        stop_tx.send(true).unwrap();
        handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_returns_early_is_restarted_but_not_after_the_stop() {
        let components = Arc::new(Components::default());
        let (stop_tx, stop) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = supervise(components.clone(), "short", stop, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(runs.load(Ordering::SeqCst) >= 2);
        stop_tx.send(true).unwrap();
        handle.await.unwrap();
        let after = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs.load(Ordering::SeqCst), after);
    }
}
