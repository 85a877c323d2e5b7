//! Names on RabbitMQ: every exchange and queue carries the deployment's prefix (`AMQP_PREFIX`).

/// The deployment prefix of exchange and queue names when `AMQP_PREFIX` and the database name say
/// nothing else.
pub const DEFAULT_PREFIX: &str = "netia";

/// The topic exchange every committed event of the deployment `prefix` is published to:
/// `<prefix>.events`. Deployments sharing a RabbitMQ vhost use different prefixes, so that none
/// consumes another's events.
pub fn exchange(prefix: &str) -> String {
    format!("{prefix}.events")
}

/// A deployment prefix: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
pub fn is_prefix(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The default deployment prefix: the database's name (`postgres://…/netia_staging` →
/// `netia_staging`, `sqlite://./data/netia.db` → `netia`), lower-cased, other characters as `_`;
/// `netia` when there is none.
pub fn prefix_of(database_url: &str) -> String {
    let path = database_url.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let name = last
        .strip_suffix(".db")
        .or_else(|| last.strip_suffix(".sqlite"))
        .unwrap_or(last);
    let name: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.contains("memory") || name.chars().all(|c| c == '_') {
        DEFAULT_PREFIX.to_owned()
    } else {
        name
    }
}
