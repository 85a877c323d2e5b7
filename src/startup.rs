//! Wires settings, store and HTTP server into a runnable application.

use std::net::TcpListener;
use std::sync::Arc;

use std::rc::Rc;

use actix_http::HttpService;
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, fn_factory, fn_service, map_config,
};
use actix_web::dev::{AppConfig, Server};
use actix_web::{App, web};
use anyhow::Context;
use secrecy::ExposeSecret;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Auth;
use crate::http::{self, AppState};
use crate::limits::{Limiter, Limits};
use crate::projector::group::ProjectorGroup;
use crate::projector::{self, Projector};
use crate::realtime::{self, Broadcaster, Hub};
use crate::settings::Settings;
use crate::store::EventStore;
use crate::supervisor::Supervisor;

mod open;
pub use open::{open_store, open_store_unchecked, redact};

pub struct Application {
    port: u16,
    server: Server,
    stop_projectors: watch::Sender<bool>,
    projectors: Vec<JoinHandle<()>>,
    supervisor: Supervisor,
    /// Tells sockets the node is going away.
    shutdown: watch::Sender<bool>,
    shutdown_timeout: std::time::Duration,
    /// The `METRICS_ADDR` listener, if any.
    scrape: Option<Server>,
}

impl Application {
    /// Opens the store named by the settings, then [`Application::start`]s on it.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = open_store(&settings, settings.migrate).await?;
        Self::start(&settings, store).await
    }

    /// Starts the projectors and binds the HTTP server on an open store (port 0 picks a free port,
    /// for tests).
    pub async fn start(settings: &Settings, store: Arc<dyn EventStore>) -> anyhow::Result<Self> {
        // Installed before anything records: what is recorded earlier is lost.
        crate::telemetry::recorder::handle();
        let url = settings.database_url.expose_secret();
        let pool = projector::read_model_pool(url, settings.database_max_connections)
            .await
            .with_context(|| format!("cannot open the read-model database ({})", redact(url)))?;
        let (stop_projectors, _) = watch::channel(false);
        let supervisor = Supervisor::new(stop_projectors.clone());
        let supervise = {
            let supervisor = supervisor.clone();
            move |name: &str, make: crate::supervisor::MakeRun| supervisor.spawn(name, make)
        };
        let mut projectors = Vec::new();
        let names: Vec<&'static str> = projector::projections().iter().map(|p| p.name()).collect();
        let progress = projector::Progress::new(&names);
        let group = {
            let (store, pool, progress, url) = (store.clone(), pool.clone(), progress.clone(), url.to_owned());
            move || {
                let members = projector::projections()
                    .into_iter()
                    .map(|projection| {
                        let sender = progress.sender(projection.name());
                        Projector::new(store.clone(), pool.clone(), projection).with_progress(sender)
                    })
                    .collect();
                ProjectorGroup::new(store.clone(), pool.clone(), &url, members).with_waiting(progress.waiting())
            }
        };
        group().setup().await.context("cannot create read-model tables")?;
        projectors.push(supervise(
            "projectors",
            Box::new(move |stop| Box::pin(group().run(stop))),
        ));
        let (presence_tx, presence_rx) = tokio::sync::mpsc::unbounded_channel();
        let presence_rx = Arc::new(tokio::sync::Mutex::new(presence_rx));
        {
            let bus = crate::command_bus::CommandBus::new(store.clone());
            // Not awaited at shutdown: it ends when the hub (its sender) is gone.
            supervise(
                "presence_log",
                Box::new(move |_| Box::pin(realtime::record_presence(bus.clone(), presence_rx.clone()))),
            );
        }
        let mut hub = Hub::new().with_presence_log(presence_tx);
        let mut cluster = None;
        if let Some(url) = &settings.amqp_url {
            let (link, outgoing) = tokio::sync::mpsc::unbounded_channel();
            hub = hub.with_cluster(link);
            cluster = Some((url.expose_secret().to_owned(), outgoing));
        }
        let hub = web::Data::new(hub);
        if let Some((url, outgoing)) = cluster {
            let (prefix, hub) = (settings.amqp_prefix.clone(), hub.clone().into_inner());
            projectors.push(realtime::cluster::supervised(&supervisor, url, prefix, hub, outgoing));
        }
        let start = store.head().await.ok();
        {
            let (store, pool, hub) = (store.clone(), pool.clone(), hub.clone().into_inner());
            projectors.push(supervise(
                "broadcaster",
                Box::new(move |stop| {
                    // A restart resumes after the last broadcast queued, not at the first start;
                    // with neither known, the broadcaster finds the head itself.
                    let queued = hub.broadcast_position();
                    let resume = match start {
                        Some(start) => Some(start.max(queued)),
                        None if queued != netia_events::Checkpoint::default() => Some(queued),
                        None => None,
                    };
                    Box::pin(Broadcaster::new(store.clone(), pool.clone(), hub.clone()).run(resume, stop))
                }),
            ));
        }
        let sealer = crate::secrets::sealer_of(settings).context("cannot read or create the secret key")?;
        let (consumers, jobs) = effects(settings, &store, &pool, Some(hub.clone().into_inner()), &sealer)?;
        let scheduler = crate::scheduler::Scheduler {
            store: store.clone(),
            db: pool.clone(),
            handlers: jobs,
        };
        projectors.push(supervise(
            "scheduler",
            Box::new(move |stop| Box::pin(scheduler.clone().run(stop))),
        ));
        {
            let (store, db) = (store.clone(), pool.clone());
            projectors.push(supervise(
                "metrics",
                Box::new(move |stop| Box::pin(crate::telemetry::recorder::sample(store.clone(), db.clone(), stop))),
            ));
        }
        {
            let (db, keep) = (pool.clone(), settings.retention);
            projectors.push(supervise(
                "retention",
                Box::new(move |stop| Box::pin(crate::retention::run(db.clone(), keep, stop))),
            ));
        }
        projectors.extend(
            crate::bus::start(
                store.clone(),
                pool.clone(),
                settings.amqp_url.as_ref().map(|u| u.expose_secret().to_owned()),
                &settings.amqp_prefix,
                settings.retry,
                consumers,
                &supervisor,
            )
            .await,
        );
        let auth = Auth::new(pool.clone(), settings.session_ttl_seconds, settings.renew_ttl_seconds);
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(
            AppState::new(store, pool, auth)
                .with_progress(progress)
                .with_sealer(sealer)
                .with_webhooks(settings.webhooks)
                .with_channels(settings)
                .with_attachments(crate::app::attachments::AttachmentStore::open(&settings.attachments)?),
        );
        if settings.demo {
            demo(&state, &settings.host, port).await;
        }
        if let Some(gmail) = &settings.gmail {
            let (app, every) = (state.app.clone(), gmail.sync_interval);
            projectors.push(supervise(
                "gmail-sync",
                Box::new(move |stop| Box::pin(crate::channels::gmail::sync::run(app.clone(), every, stop))),
            ));
        }
        if let Some(addr) = settings.inbound_smtp_addr {
            let domain = settings
                .inbound_email_domain
                .clone()
                .context("INBOUND_SMTP_ADDR needs INBOUND_EMAIL_DOMAIN: the domain whose mail it takes")?;
            crate::channels::email::receiver::start(state.app.clone(), addr, domain)?;
        }
        let limiter = web::Data::from(Arc::new(Limiter::new(Limits {
            per_ip_per_minute: settings.rate_limit_ip_per_minute,
            per_customer_per_minute: settings.rate_limit_customer_per_minute,
            sockets_per_minute: settings.rate_limit_sockets_per_minute,
            frames_per_second: settings.rate_limit_frames_per_second,
            trust_proxy: settings.trust_proxy,
            in_flight: crate::limits::IN_FLIGHT_PER_CONNECTION * settings.database_max_connections as usize,
        })));
        let socket_limiter = limiter.clone().into_inner();
        let app_state = state.clone();
        let app_hub = hub.clone();
        let app_components = web::Data::from(supervisor.components.clone());
        let metrics_access = web::Data::new(http::health::MetricsAccess::new(
            settings.metrics_token.as_ref().map(|t| t.expose_secret()),
            settings.metrics_addr,
        ));
        let scrape = match settings.metrics_addr {
            Some(addr) => Some(metrics_listener(addr)?),
            None => None,
        };
        let app = move || {
            App::new()
                // Innermost: the router sees a HEAD as the GET it answers like.
                .wrap(actix_web::middleware::from_fn(http::head_as_get))
                .wrap(actix_web::middleware::ErrorHandlers::new().handler(
                    actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                    http::method_not_allowed,
                ))
                .wrap(actix_web::middleware::from_fn(http::limits::limit))
                // Outside the rate limits: their checks read the database too.
                .wrap(actix_web::middleware::from_fn(http::in_flight::place))
                .wrap(http::cors())
                .wrap(tracing_actix())
                .wrap(actix_web::middleware::from_fn(http::health::measure))
                .app_data(app_state.clone())
                .app_data(limiter.clone())
                .app_data(app_hub.clone())
                .app_data(app_components.clone())
                .app_data(metrics_access.clone())
                .configure(realtime::routes)
                .configure(http::routes)
        };
        let local = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Sockets are served on this (multi-threaded) runtime, beside the broadcaster.
        let runtime = tokio::runtime::Handle::current();
        let server = actix_server::Server::build()
            // Signals are ours (run_until_stopped): sockets close first, then the listener.
            .disable_signals()
            .shutdown_timeout(settings.shutdown_timeout.as_secs())
            .listen("netia", listener, move || {
                let sockets = Arc::new(realtime::socket::SocketServices {
                    app: state.app.clone(),
                    auth: state.auth.clone(),
                    shutdown: shutdown_rx.clone(),
                    limiter: socket_limiter.clone(),
                });
                let hub = hub.clone();
                let (upgrade_sockets, upgrade_hub) = (sockets.clone(), hub.clone().into_inner());
                let http = HttpService::build()
                    // Small frames (socket pushes, replies) go out at once instead of waiting for Nagle.
                    .tcp_nodelay(true)
                    .local_addr(local)
                    // An upgrade on a kept-alive connection (a proxy's pooled upstream connection).
                    .upgrade(fn_service(move |(request, framed)| {
                        let (sockets, hub) = (upgrade_sockets.clone(), upgrade_hub.clone());
                        async move {
                            Box::pin(realtime::socket::serve_upgrade(request, framed, sockets, hub)).await;
                            Ok::<_, std::convert::Infallible>(())
                        }
                    }))
                    .finish(map_config(
                        app().into_factory().map_err(|e: actix_web::Error| e.error_response()),
                        |_| AppConfig::default(),
                    ))
                    .tcp();
                let runtime = runtime.clone();
                fn_factory(move || {
                    let http = http.new_service(());
                    let (sockets, hub, runtime) = (sockets.clone(), hub.clone(), runtime.clone());
                    async move {
                        let http = Rc::new(http.await?);
                        Ok::<_, ()>(fn_service(move |stream: tokio::net::TcpStream| {
                            let (http, sockets, hub) = (http.clone(), sockets.clone(), hub.clone());
                            let runtime = runtime.clone();
                            async move {
                                // A socket upgrade is served here; everything else by actix.
                                // Both boxed: the task of an idle socket holds only what the socket needs.
                                match realtime::socket::sniff(&stream).await {
                                    Some(head) => {
                                        Box::pin(realtime::socket::serve_on(
                                            &runtime,
                                            stream,
                                            head,
                                            sockets,
                                            hub.into_inner(),
                                        ))
                                        .await;
                                        Ok(())
                                    }
                                    None => Box::pin(http.call(stream)).await,
                                }
                            }
                        }))
                    }
                })
            })?
            .run();
        Ok(Self {
            port,
            server,
            stop_projectors,
            projectors,
            supervisor,
            shutdown,
            shutdown_timeout: settings.shutdown_timeout,
            scrape,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs another background task under this node's supervision (restarted if it fails, shown
    /// by `/health/ready` and `/metrics`), stopped with the node.
    pub fn supervise<F, Fut>(&mut self, name: &str, make: F)
    where
        F: FnMut(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let task = self.supervisor.spawn(name, make);
        self.projectors.push(task);
    }

    /// Serves until SIGTERM or SIGINT, then shuts down within `SHUTDOWN_TIMEOUT`: readiness fails
    /// at once; every socket is closed with 1001 ("going away"), so that its client reconnects to
    /// another node, and new upgrades are refused; the listener stops accepting and in-flight
    /// requests finish; the background tasks stop (consumers end their current delivery or leave
    /// it to be redelivered; projectors and followers keep their checkpoints). Returns once done, or
    /// when the timeout is spent.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            stop_projectors,
            projectors,
            supervisor,
            shutdown,
            shutdown_timeout,
            scrape,
            ..
        } = self;
        let scrape = scrape.map(|server| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        let served = tokio::select! {
            served = &mut server => Some(served),
            signal = stopped_by_signal() => {
                tracing::info!(signal, "shutting down");
                None
            }
        };
        let deadline = tokio::time::Instant::now() + shutdown_timeout;
        supervisor.components.drain();
        let _ = shutdown.send(true);
        let served = match served {
            Some(served) => served,
            None => {
                // The stop is carried out by the server future, which must go on being polled.
                let stopping = handle.stop(true);
                match tokio::time::timeout_at(deadline, async { tokio::join!(stopping, &mut server).1 }).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::warn!("in-flight requests did not finish within SHUTDOWN_TIMEOUT");
                        Ok(())
                    }
                }
            }
        };
        if let Some(scrape) = scrape {
            let _ = tokio::time::timeout_at(deadline, scrape.stop(true)).await;
        }
        let _ = stop_projectors.send(true);
        for task in projectors {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("a background task did not stop within SHUTDOWN_TIMEOUT");
                break;
            }
        }
        served
    }
}

pub use crate::consumers::{Effects, effects};

/// `/metrics` without a token on `addr` (`METRICS_ADDR`), for a scraper on a private network;
/// nothing else is served there.
fn metrics_listener(addr: std::net::SocketAddr) -> anyhow::Result<Server> {
    let server = actix_web::HttpServer::new(move || {
        App::new().route("/metrics", web::get().to(|| async { http::health::render() }))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?
    .run();
    Ok(server)
}

/// Waits for SIGTERM or SIGINT (Ctrl-C); its name.
async fn stopped_by_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// The first start with no configuration creates a demo account and says how to use it (once: a
/// database that already has users is left alone).
async fn demo(state: &AppState, host: &str, port: u16) {
    let users: Result<i64, _> = sqlx::query_scalar("SELECT COUNT(*) FROM auth_credentials")
        .fetch_one(&state.db)
        .await;
    if !matches!(users, Ok(0)) {
        return;
    }
    let Some(password) = crate::auth::random_secret(12) else {
        tracing::warn!("demo account not created: no randomness for its password");
        return;
    };
    let email = "demo@netia.local";
    match http::session::create_account(state, email, "Demo agent".into(), &password, "Demo company".into()).await {
        Ok((account_id, user_id, inbox_id)) => {
            match crate::demo::write_history(&state.bus, state.attachments.as_ref(), account_id, inbox_id, user_id)
                .await
            {
                Ok(n) => tracing::info!(conversations = n, "demo history written"),
                Err(e) => tracing::warn!(error = %e, "demo history not written"),
            }
            let base = format!("http://{}:{port}", if host == "0.0.0.0" { "127.0.0.1" } else { host });
            // Written whole, and a closed stdout (`netia serve | head -3`) is not a reason to stop.
            let login = format!(
                "\nNetia demo (created once, on this first start):\n  dashboard:  {base}/  (sign in as {email} / {password})\n  \
                 demo site:  {base}/demo?accountId={account_id}  (a page with the chat widget)\n\n"
            );
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), login.as_bytes());
        }
        Err(e) => tracing::warn!(error = %e, "demo account not created"),
    }
}

/// Request log lines: method, path (never the query string, which may carry tokens), status, time.
fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%{method}xi %{path}xi %s %Dms")
        .custom_request_replace("method", |req| req.method().to_string())
        .custom_request_replace("path", |req| http::loggable_path(req.path()))
        .log_target("netia::http")
}
