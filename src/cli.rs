//! The command line: `netia [serve]`, `netia migrate`.

use clap::{Parser, Subcommand};

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
}
