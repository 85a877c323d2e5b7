//! Netia: the server and CLI around the event store — configuration, startup, HTTP, tailing, commands.

pub mod app;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod bus;
pub mod cli;
pub mod command_bus;
pub mod email;
pub mod http;
pub mod lease;
pub mod limits;
pub mod llm;
pub mod projector;
pub mod realtime;
pub mod rebuild;
pub mod retention;
pub mod scheduler;
pub mod seed;
pub mod settings;
pub mod startup;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod tail;
pub mod telemetry;
pub mod views;
