//! The `netia` binary: parse the CLI, load settings, start logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use netia::audit;
use netia::cli::{
    AttachmentsAction, AuditAction, BusAction, Cli, Command, ParkedAction, ProjectionsAction, ReplayTarget, ReportKind,
};
use netia::projector::group::ProjectorGroup;
use netia::projector::{self, Projector};
use netia::settings::Settings;
use netia::startup::{Application, open_store};
use netia::telemetry;
use secrecy::ExposeSecret;

/// mimalloc instead of glibc's malloc: the server allocates and frees many small buffers per message
/// (frames, JSON values, rows), and glibc's arenas spent a fifth of its CPU on that under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("netia: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format, &settings.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netia: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("netia: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings.clone()).await?;
            tracing::info!(
                "netia listening on http://{}:{} ({})",
                settings.host,
                app.port(),
                if settings.is_postgres() { "PostgreSQL" } else { "SQLite" }
            );
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Migrate => {
            open_store(&settings, true).await?;
            Ok(())
        }
        Command::SeedDemo {
            events,
            conversations,
            seed,
        } => {
            let store = open_store(&settings, settings.migrate).await?;
            let conversations = conversations.unwrap_or((events / 100).max(1));
            let report = netia::seed::seed_demo(store, events as usize, conversations as usize, seed).await?;
            println!(
                "seeded account {}: {} events over {} conversations in {:.1} s ({:.0} events/s)",
                report.account_id,
                report.events,
                report.conversations,
                report.seconds,
                report.events as f64 / report.seconds.max(1e-9)
            );
            Ok(())
        }
        Command::Project => {
            let store = open_store(&settings, settings.migrate).await?;
            let pool =
                projector::read_model_pool(settings.database_url.expose_secret(), settings.database_max_connections)
                    .await?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let projectors = projector::projections()
                .into_iter()
                .map(|projection| Projector::new(store.clone(), pool.clone(), projection))
                .collect();
            let group = ProjectorGroup::new(
                store.clone(),
                pool.clone(),
                settings.database_url.expose_secret(),
                projectors,
            );
            group.setup().await?;
            let task = tokio::spawn(group.run(stopped));
            tracing::info!("projectors running; Ctrl-C stops them");
            tokio::signal::ctrl_c().await?;
            let _ = stop.send(true);
            let _ = task.await;
            Ok(())
        }
        Command::Projections {
            action: ProjectionsAction::Status { json },
        } => {
            let store = open_store(&settings, settings.migrate).await?;
            let pool = projector::read_model_pool(settings.database_url.expose_secret(), 2).await?;
            let report = projector::status(&store, &pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{:<16} {:>9} {:>22} {:>12} {:>10}",
                    "projection", "version", "checkpoint", "lag events", "lag s"
                );
                for p in report {
                    let at = p.checkpoint.position;
                    // `1→2`: the stored tables are version 1's; version 2 is being built in the shadow.
                    let version = match p.stored_version {
                        Some(stored) if stored != p.version => format!("{stored}→{}", p.version),
                        _ => p.version.to_string(),
                    };
                    println!(
                        "{:<16} {version:>9} {at:>22} {:>12} {:>10.1}",
                        p.name, p.lag_events, p.lag_seconds
                    );
                }
            }
            Ok(())
        }
        Command::Projections {
            action: ProjectionsAction::Rebuild { names, batch },
        } => {
            let store = open_store(&settings, settings.migrate).await?;
            let all = projector::projections();
            let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
            if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
                anyhow::bail!("unknown projection {unknown:?}; known: {}", known.join(", "));
            }
            let options = netia::rebuild::RebuildOptions {
                batch: batch as usize,
                max_batches: None,
                progress: true,
            };
            let chosen: Vec<_> = all
                .into_iter()
                .filter(|p| names.is_empty() || names.iter().any(|n| n == p.name()))
                .collect();
            let chosen_names: Vec<&str> = chosen.iter().map(|p| p.name()).collect();
            let chosen_names = chosen_names.join(", ");
            // One pass over the log for all of them.
            match netia::rebuild::rebuild_all(store.clone(), settings.database_url.expose_secret(), chosen, &options)
                .await?
            {
                netia::rebuild::RebuildOutcome::Swapped { events, seconds } => println!(
                    "{chosen_names}: rebuilt from {events} events in one pass in {seconds:.1} s ({:.0} events/s) and swapped in",
                    events as f64 / seconds.max(1e-9)
                ),
                netia::rebuild::RebuildOutcome::Interrupted { at } => {
                    println!(
                        "{chosen_names}: interrupted at position {}; run again to resume",
                        at.position
                    )
                }
            }
            Ok(())
        }
        Command::Replay {
            target: ReplayTarget::Conversation { id, as_of, json },
        } => {
            let store = open_store(&settings, settings.migrate).await?;
            let replay = audit::replay_conversation(store.as_ref(), id, as_of).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&replay)?);
            } else {
                print!("{}", render_replay(&replay));
            }
            Ok(())
        }
        Command::Attachments {
            action:
                AttachmentsAction::Orphans {
                    older_than_hours,
                    delete,
                    json,
                },
        } => orphans(&settings, older_than_hours, delete, json).await,
        Command::Gdpr { action } => netia::gdpr::run(&settings, action).await,
        Command::Bus {
            action: BusAction::Parked { action },
        } => parked(&settings, action).await,
        Command::Report {
            report:
                ReportKind::Ai {
                    account,
                    from,
                    to,
                    json,
                },
        } => report_ai(&settings, account, from, to, json).await,
        Command::Status { json } => {
            let store = open_store(&settings, settings.migrate).await?;
            let pool = projector::read_model_pool(settings.database_url.expose_secret(), 2).await?;
            let status = netia::status::status(&store, &pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", netia::status::render(&status));
            }
            Ok(())
        }
        Command::Audit {
            action: AuditAction::Verify { stream, anchor, json },
        } => audit_verify(&settings, stream, anchor, json).await,
        Command::Audit {
            action: AuditAction::Rekey { anchor },
        } => {
            match audit::rekey::rekey(&settings, anchor.as_deref()).await? {
                Some(r) => println!(
                    "relinked {} events in {} streams: {} -> {}",
                    r.events, r.streams, r.from, r.to
                ),
                None => println!("the log is already linked with AUDIT_KEY; nothing to do"),
            }
            Ok(())
        }
        Command::Audit {
            action: AuditAction::Anchor { file },
        } => {
            let store = open_store(&settings, settings.migrate).await?;
            let anchor = match audit::anchor::anchor(store.as_ref()).await? {
                Ok(anchor) => anchor,
                Err(report) => {
                    for (stream, link) in &report.broken {
                        println!("BROKEN {stream} at version {}: {}", link.version, link.reason);
                    }
                    anyhow::bail!(
                        "{} stream(s) failed verification; nothing anchored",
                        report.broken.len()
                    )
                }
            };
            match file {
                Some(path) => {
                    audit::anchor::append(&path, &anchor)?;
                    println!(
                        "anchored {} streams at log position {}: Merkle root {} (appended to {})",
                        anchor.streams,
                        anchor.log_position,
                        anchor.merkle_root,
                        path.display()
                    );
                }
                None => println!("{}", serde_json::to_string(&anchor)?),
            }
            Ok(())
        }
    }
}

/// `netia attachments orphans`: files no message names, stored at least `hours` ago.
async fn orphans(settings: &Settings, hours: u32, delete: bool, json: bool) -> anyhow::Result<()> {
    use netia::app::attachments::{AttachmentStore, delete_orphans, orphans};
    let pool = projector::read_model_pool(settings.database_url.expose_secret(), 2).await?;
    let files = AttachmentStore::open(&settings.attachments)?;
    let before = chrono::Utc::now() - chrono::Duration::hours(i64::from(hours));
    let found = orphans(&pool, &files, before).await?;
    if delete {
        delete_orphans(&files, &found).await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        for o in &found {
            println!("{}  {} bytes  stored {}", o.key, o.size, o.stored_at.to_rfc3339());
        }
        let done = if delete {
            "deleted"
        } else {
            "found (--delete removes them)"
        };
        println!("{} orphaned file(s) {done}", found.len());
    }
    Ok(())
}

/// `netia bus parked …`: list, show, replay or drop parked deliveries.
async fn parked(settings: &Settings, action: ParkedAction) -> anyhow::Result<()> {
    use netia::bus::parked;
    let store = open_store(settings, settings.migrate).await?;
    let pool = projector::read_model_pool(settings.database_url.expose_secret(), 2).await?;
    match action {
        ParkedAction::List { consumer, json } => {
            let list = parked::list(&pool, consumer.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for p in &list {
                    println!(
                        "{:<16} {}  {} attempt(s)  parked {}  {}",
                        p.consumer, p.event_id, p.attempts, p.parked_at, p.error
                    );
                }
                println!("{} parked", list.len());
            }
            Ok(())
        }
        ParkedAction::Show { consumer, event_id } => {
            let Some(found) = parked::get(&pool, &consumer, event_id).await? else {
                anyhow::bail!("{consumer} has no parked delivery of event {event_id}");
            };
            let event = store.read_event(event_id).await?;
            let shown = serde_json::json!({
                "parked": found,
                "event": event.map(|e| serde_json::json!({
                    "stream": format!("{}:{}", e.stream_type, e.stream_id), "version": e.version,
                    "type": e.event_type, "recorded_at": e.recorded_at, "payload": e.payload,
                    "metadata": e.metadata,
                })),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
        ParkedAction::Replay { consumer, event_id } => {
            let sealer = netia::secrets::sealer_of(settings)?;
            let (consumers, _) = netia::startup::effects(settings, &store, &pool, None, &sealer)?;
            let outcome = parked::replay(&pool, store.as_ref(), &consumers, &consumer, event_id).await?;
            match outcome {
                netia::bus::Outcome::Duplicate => println!("{consumer} had handled {event_id} already; unparked"),
                _ => println!("{consumer} handled {event_id}; unparked"),
            }
            Ok(())
        }
        ParkedAction::Drop { consumer, event_id } => {
            if !parked::drop_parked(&pool, &consumer, event_id).await? {
                anyhow::bail!("{consumer} has no parked delivery of event {event_id}");
            }
            println!("dropped {consumer} {event_id}");
            Ok(())
        }
    }
}

fn render_replay(replay: &audit::Replay) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let instant = replay.as_of.map_or_else(|| "now".to_owned(), |t| t.to_rfc3339());
    let _ = writeln!(out, "conversation {} as of {instant}", replay.conversation_id);
    for e in &replay.events {
        let actor = match &e.actor {
            Some(netia_events::Actor::Agent { user_id }) => format!("agent:{user_id}"),
            Some(netia_events::Actor::Customer { customer_id }) => format!("customer:{customer_id}"),
            Some(netia_events::Actor::Bot) => "bot".to_owned(),
            Some(netia_events::Actor::System { component }) => format!("system:{component}"),
            None => "unknown".to_owned(),
        };
        let _ = writeln!(
            out,
            "  v{:<4} {}  {actor:<46} {:<24} {}",
            e.version,
            netia_events::chain::format_time(e.at),
            e.event_type,
            e.summary
        );
        let short = |id: Option<uuid::Uuid>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
        let _ = writeln!(
            out,
            "         event {}  caused by {}  chain {}",
            e.event_id,
            short(e.causation_id),
            short(e.correlation_id)
        );
    }
    let s = &replay.state;
    let assignee = s.assignee.map_or_else(|| "none".to_owned(), |u| u.to_string());
    let _ = writeln!(
        out,
        "state: {}{} · priority {} · assignee {assignee} · tags [{}] · {} messages{} · version {}",
        s.status,
        s.snoozed_until
            .map(|t| format!(" until {}", t.to_rfc3339()))
            .unwrap_or_default(),
        s.priority,
        s.tags.join(", "),
        s.messages,
        if s.archived { " · archived" } else { "" },
        s.version
    );
    out
}

/// `netia report ai`: one report per account, as text or as a JSON array of `{account_id, report}`.
async fn report_ai(
    settings: &Settings,
    account: Option<netia_events::AccountId>,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    json: bool,
) -> anyhow::Result<()> {
    let to = to.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = from.unwrap_or(to - chrono::Duration::days(29));
    netia::report::check_range(from, to).map_err(anyhow::Error::msg)?;
    let store = open_store(settings, settings.migrate).await?;
    let pool = projector::read_model_pool(settings.database_url.expose_secret(), 2).await?;
    let status = projector::status(&store, &pool).await?;
    if let Some(behind) = status.iter().find(|p| p.name == "ai_outcomes" && p.lag_events > 0) {
        eprintln!(
            "note: ai_outcomes is {} events behind the log (run `netia serve` or `netia project` to catch up)",
            behind.lag_events
        );
    }
    let mut conn = pool.acquire().await?;
    let accounts = match account {
        Some(account) => vec![account],
        None => netia::report::accounts_with_conversations(&mut conn, from, to).await?,
    };
    let mut reports = Vec::new();
    for account in accounts {
        let report = netia::report::ai_report(&mut conn, account, from, to).await?;
        if !json {
            print!("{}", netia::report::render_ai_report(account, &report));
        }
        reports.push(serde_json::json!({ "account_id": account, "report": report }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.is_empty() {
        println!("no conversations opened from {from} to {to}");
    }
    Ok(())
}

/// `netia audit verify [--stream S] [--anchor FILE] [--json]`: exit 1 if any link or anchor is broken.
async fn audit_verify(
    settings: &Settings,
    stream: Option<netia_events::StreamRef>,
    anchor: Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let store = open_store(settings, settings.migrate).await?;
    let (report, anchors) = match anchor {
        Some(path) => {
            let anchors = audit::anchor::read(&path)?;
            let (report, check) = audit::anchor::verify(store.as_ref(), &anchors).await?;
            (report, Some(check))
        }
        None => (audit::verify(store.as_ref(), stream).await?, None),
    };
    if json {
        let out = serde_json::json!({
            "streams": report.streams, "events": report.events, "broken": report.broken, "anchors": anchors,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (stream, link) in &report.broken {
            println!("BROKEN {stream} at version {}: {}", link.version, link.reason);
        }
        println!(
            "{} streams, {} events checked; {} broken",
            report.streams,
            report.events,
            report.broken.len()
        );
        if let Some(check) = &anchors {
            for b in &check.broken {
                let place = match (&b.stream, b.version) {
                    (Some(stream), Some(version)) => format!("{stream} at version {version}"),
                    _ => "the anchor itself".to_owned(),
                };
                println!("ANCHOR {} BROKEN {place}: {}", b.anchored_at, b.reason);
            }
            println!(
                "{} anchors, {} anchored heads checked; {} broken",
                check.anchors,
                check.heads,
                check.broken.len()
            );
            if check.other_chain > 0 {
                println!(
                    "{} anchor(s) of the chain before a rekey: roots checked, heads not compared",
                    check.other_chain
                );
            }
        }
    }
    let anchor_breaks = anchors.as_ref().map_or(0, |c| c.broken.len());
    if report.broken.is_empty() && anchor_breaks == 0 {
        Ok(())
    } else {
        anyhow::bail!(
            "{} stream(s) and {anchor_breaks} anchored head(s) failed verification",
            report.broken.len()
        )
    }
}
