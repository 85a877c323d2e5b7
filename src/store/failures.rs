//! What a store failure means to a caller: "try again" (503), the caller's input (400), a rule
//! (422) — found anywhere in an error's `source()` chain, through whatever wraps it.

use std::error::Error;

use super::StoreError;

/// Whether `e` or any of its sources satisfies `found`.
fn in_chain(e: &(dyn Error + 'static), found: impl Fn(&(dyn Error + 'static)) -> bool) -> bool {
    std::iter::successors(Some(e), |&e| e.source()).any(found)
}

/// Whether `e` says the database cannot be used right now, so that the same request may succeed
/// later: I/O and TLS failures, a pool that timed out or closed, and PostgreSQL's connection
/// exceptions (SQLSTATE class `08`), `too_many_connections` (`53300`), `admin_shutdown` (`57P01`),
/// `crash_shutdown` (`57P02`) and `cannot_connect_now` (`57P03`) — the codes of the PostgreSQL
/// manual, appendix A "PostgreSQL Error Codes".
pub fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "53300" | "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether `e` or any of its sources is [`StoreError::SubjectErased`]: a rule refused the write
/// (HTTP 422), not a failure.
pub fn subject_erased_in(e: &(dyn Error + 'static)) -> bool {
    in_chain(e, |e| {
        matches!(e.downcast_ref::<StoreError>(), Some(StoreError::SubjectErased(_)))
    })
}

/// Whether `e` or any of its sources is PostgreSQL refusing a text it cannot store: SQLSTATE
/// `22021` (`character_not_in_repertoire`, "invalid byte sequence for encoding \"UTF8\": 0x00": a
/// NUL in `text`) or `22P05` (`untranslatable_character`: `\u0000` in `jsonb`). Rust strings and
/// SQLite hold U+0000, PostgreSQL's text types do not, so such a value is the caller's input
/// (nothing Netia writes contains it): a client error, where a field's own check missed it.
pub fn unstorable_text_in(e: &(dyn Error + 'static)) -> bool {
    in_chain(e, |e| match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.code().is_some_and(|code| matches!(&*code, "22021" | "22P05")),
        _ => false,
    })
}

/// Whether `e` or any of its sources is the database being unavailable ([`database_unavailable`])
/// or the store saying so ([`StoreError::Unavailable`], [`StoreError::TaskDown`],
/// [`StoreError::OutcomeUnknown`]): a failure to answer "try again" (HTTP 503), not an internal
/// error.
pub fn unavailable_in(e: &(dyn Error + 'static)) -> bool {
    in_chain(e, |e| {
        e.downcast_ref::<sqlx::Error>().is_some_and(database_unavailable)
            || matches!(
                e.downcast_ref::<StoreError>(),
                Some(StoreError::Unavailable(_) | StoreError::TaskDown(_) | StoreError::OutcomeUnknown(_))
            )
    })
}
