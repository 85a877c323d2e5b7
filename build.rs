//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the migration directories at
//! compile time, and cargo does not otherwise watch them (the build script sqlx's documentation
//! gives for this, as `sqlx migrate build-script` writes it).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
