//! The command line: `netia [serve]`, `netia migrate`, `netia replay …`, `netia audit verify`,
//! `netia bus parked …`, `netia report ai`.

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use netia_events::{AccountId, ConversationId, CustomerId, StreamRef};

#[derive(Debug, Parser)]
#[command(
    name = "netia",
    version,
    about = "Event-sourced customer messaging: live chat, agent inbox, LLM replies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default): HTTP API on HOST:PORT.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Run the projectors alone (no HTTP), following the log until interrupted.
    Project,
    /// Read models: where each projection stands.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Write a realistic demo history (one new account) for trying out read models and benchmarks.
    SeedDemo {
        /// About how many events to write.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        events: u64,
        /// Over how many conversations (default: one per 100 events).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        conversations: Option<u64>,
        /// Seed of the pseudo-random choices, for reproducible histories.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print a stream's events (who, what, when) and its state, from the log alone.
    Replay {
        #[command(subcommand)]
        target: ReplayTarget,
    },
    /// Check the event log's integrity.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Where every follower of the log stands (projections, relay, consumers: checkpoint, lag in
    /// events and seconds, lease holder), the scheduler's backlog and the parked deliveries.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Analytics from the read models.
    Report {
        #[command(subcommand)]
        report: ReportKind,
    },
    /// The bus's consumers: their parked deliveries.
    Bus {
        #[command(subcommand)]
        action: BusAction,
    },
    /// Attachment files in ATTACHMENTS_URL.
    Attachments {
        #[command(subcommand)]
        action: AttachmentsAction,
    },
    /// Personal data (GDPR): erase a customer (art. 17). See docs/adr/0023-crypto-shredding.md.
    Gdpr {
        #[command(subcommand)]
        action: GdprAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum GdprAction {
    /// Destroys the customer's data key (their identity, metadata and conversations' messages read
    /// as [erased] from then on; the log and its chain stay intact), records CustomerErased, and
    /// deletes email originals, attachment files and webhook bodies. Needs NETIA_SECRET_KEY (or
    /// SQLite's key file). A running server's projectors update the read models.
    Erase {
        /// The customer's id (a UUID).
        customer: CustomerId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One-off, with every node stopped: seals the personal fields that existing events still hold
    /// in the clear (written before sealing, or without a key), rewriting them in place and
    /// relinking the chain in one transaction (as the owner: DATABASE_MIGRATE_URL on PostgreSQL).
    /// Nothing changes if the chain does not verify first.
    SealExisting {
        /// Append anchors of the chain before and after the rewrite to this file (ADR 0020), the
        /// record of what was re-anchored.
        #[arg(long)]
        anchor: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AttachmentsAction {
    /// Files that no message names (a crash between storing an upload and posting it leaves one):
    /// listed, or deleted with --delete.
    Orphans {
        /// Only files stored at least this many hours ago (a younger one may be an upload in flight).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=87_600))]
        older_than_hours: u32,
        /// Delete them.
        #[arg(long)]
        delete: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// AI outcomes of the conversations opened in a range of days: how many the bot took part in,
    /// resolved without a human, handed off (and why), reopened within 7 days; the time from a
    /// hand-off to a person's first reply. Read from the `ai_outcomes` projection.
    Ai {
        /// Only this account (default: every account with conversations in the range).
        #[arg(long)]
        account: Option<AccountId>,
        /// First day, YYYY-MM-DD (UTC; default: 29 days before --to).
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Last day, inclusive (UTC; default: today).
        #[arg(long)]
        to: Option<NaiveDate>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BusAction {
    /// Deliveries consumers gave up on after their last attempt.
    Parked {
        #[command(subcommand)]
        action: ParkedAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ParkedAction {
    /// List them, oldest first (consumer, event, attempts, when, last error).
    List {
        /// Only this consumer's (e.g. llm_reply).
        #[arg(long)]
        consumer: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One parked delivery and its event (type, stream, payload).
    Show { consumer: String, event_id: uuid::Uuid },
    /// Run it through its consumer once more (with this node's settings: LLM, SMTP). Handled, it
    /// leaves the list (replaying it again does nothing); failing, it stays with the new error.
    Replay { consumer: String, event_id: uuid::Uuid },
    /// Forget it without running it.
    Drop { consumer: String, event_id: uuid::Uuid },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsAction {
    /// Each projection's checkpoint and how far it is behind the log (events and seconds).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replay the whole log into fresh tables (live ones keep serving), then swap them in.
    /// Interrupted rebuilds resume where they stopped.
    Rebuild {
        /// Projections to rebuild (default: all).
        names: Vec<String>,
        /// Events per transaction (of each projection's shadow). Memory grows with it: ~200 MB at
        /// the default over the demo history (at most three batches held: one being applied by
        /// the slowest shadow, one waiting for it, one being read).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReplayTarget {
    /// A conversation's history and its state at an instant.
    Conversation {
        /// The conversation's id (a UUID).
        id: ConversationId,
        /// Replay only events recorded at or before this RFC 3339 instant, e.g. 2026-11-25T10:00:00Z.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Verify every stream's hash chain (or one stream's); exit status 1 if any link is broken.
    Verify {
        /// Only this stream, as TYPE:ID (e.g. conversation:0193…).
        #[arg(long, value_parser = parse_stream, conflicts_with = "anchor")]
        stream: Option<StreamRef>,
        /// Also check the log against every anchor in this file (written by `audit anchor`): each
        /// anchor's Merkle root matches its heads, and every anchored head is still in the log
        /// with the same link.
        #[arg(long)]
        anchor: Option<std::path::PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify every chain, then record the head of every stream and their Merkle root (JSON, one
    /// line): appended to FILE, or printed. Keep it where the database's owner cannot write.
    Anchor {
        /// Append the anchor to this file (created if missing) instead of printing it.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Relink every stream with HMAC-SHA256 under AUDIT_KEY, once, with every node stopped: from
    /// plain SHA-256, or from AUDIT_KEY_PREVIOUS when rotating. Checks every old link first; a log
    /// that does not verify is left as it was. As the events table's owner (DATABASE_MIGRATE_URL).
    Rekey {
        /// Append an anchor of the old chain before, and one of the new chain after, to this file.
        #[arg(long)]
        anchor: Option<std::path::PathBuf>,
    },
}

fn parse_stream(s: &str) -> Result<StreamRef, String> {
    match s.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Ok(StreamRef::new(kind, id)),
        _ => Err(format!("{s:?} is not TYPE:ID")),
    }
}
