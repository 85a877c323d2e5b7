//! Use cases that more than one entry point needs, written against the command bus and the read
//! models rather than against HTTP: each takes typed input and returns a typed result or a typed
//! error. (The application layer of DESIGN.md starts here; handlers move in as they are touched.)

pub mod customers;
pub mod team;
