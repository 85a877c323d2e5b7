//! The `netia` binary: parse the CLI, load settings, start logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use netia::cli::{Cli, Command};
use netia::settings::Settings;
use netia::startup::{Application, open_store};
use netia::telemetry;

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
    }
}
