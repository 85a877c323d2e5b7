//! Settings from environment maps: defaults, bounds, and the variable named in each error.

use super::*;

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    Settings::from_map(&pairs.iter().copied().collect())
}

#[test]
fn defaults_use_sqlite_on_localhost_4000() {
    let s = settings(&[]).unwrap();
    assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 4000));
    assert_eq!(s.database_url.expose_secret(), DEFAULT_SQLITE_URL);
    assert!(s.migrate && !s.is_postgres());
}

#[test]
fn each_invalid_value_names_its_variable() {
    let cases = [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_MAX_CONNECTIONS", "0"),
        ("NETIA_MIGRATE", "maybe"),
        ("LOG_FORMAT", "xml"),
        ("HOST", "a b"),
        ("RUST_LOG", "info,[[["),
        ("AMQP_URL", "amqps://guest:secret@host"),
        ("AMQP_URL", "amqp://"),
        ("AMQP_URL", "redis://x"),
        ("BUS_MAX_ATTEMPTS", "0"),
        ("BUS_RETRY_BASE_MS", "5"),
        ("BUS_PREFETCH", "lots"),
        ("LLM_BASE_URL", "ftp://x"),
        ("SMTP_URL", "imap://x"),
        ("ATTACHMENTS_URL", "ftp://files"),
        ("ATTACHMENTS_URL", "file://"),
        ("ATTACHMENTS_URL", "s3://A_B"),
        ("ATTACHMENT_MAX_BYTES", "0"),
        ("ATTACHMENT_MAX_BYTES", "ten"),
        ("ATTACHMENT_MAX_BYTES", "2000000000"),
    ];
    for (var, value) in cases {
        let err = settings(&[(var, value)]).unwrap_err();
        assert_eq!(err.variable, var, "{var}={value}");
        assert!(err.to_string().contains(var));
    }
}

#[test]
fn a_database_url_password_is_never_echoed() {
    let err = settings(&[("DATABASE_URL", "mysql://root:hunter2@db")]).unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn migrations_can_be_turned_off() {
    assert!(!settings(&[("NETIA_MIGRATE", "0")]).unwrap().migrate);
}

#[test]
fn the_secret_key_is_32_bytes_of_base64() {
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    assert!(settings(&[("NETIA_SECRET_KEY", key)]).unwrap().secret_key.is_some());
    assert!(settings(&[]).unwrap().secret_key.is_none());
    let err = settings(&[("NETIA_SECRET_KEY", "c2hvcnQ=")]).unwrap_err();
    assert_eq!(err.variable, "NETIA_SECRET_KEY");
    assert_eq!(err.value, "(hidden)");
}

#[test]
fn the_amqp_prefix_is_the_database_name_unless_set() {
    let of = |url: &str| settings(&[("DATABASE_URL", url)]).unwrap().amqp_prefix;
    assert_eq!(of("postgres://postgres@127.0.0.1:5432/netia"), "netia");
    assert_eq!(of("postgres://u:p@db/Netia.Staging?sslmode=disable"), "netia_staging");
    assert_eq!(of("sqlite://./data/shop.db"), "shop");
    assert_eq!(of("sqlite::memory:"), "netia");
    let set = settings(&[("AMQP_PREFIX", "tenant-7")]).unwrap();
    assert_eq!(set.amqp_prefix, "tenant-7");
    let err = settings(&[("AMQP_PREFIX", "a.b")]).unwrap_err();
    assert_eq!(err.variable, "AMQP_PREFIX");
}

#[test]
fn audit_keys_and_the_owner_url_are_checked() {
    const KEY: &str = "bmV0aWEtdGVzdC1hdWRpdC1rZXktbnVtYmVyLW9uZSE=";
    const OTHER: &str = "bmV0aWEtdGVzdC1hdWRpdC1rZXktbnVtYmVyLXR3byE=";
    let pg = ("DATABASE_URL", "postgres://app@db/netia");
    assert_eq!(settings(&[]).unwrap().audit.chain, netia_events::chain::Chain::Plain);
    let s = settings(&[("AUDIT_KEY", KEY), ("AUDIT_KEY_PREVIOUS", OTHER)]).unwrap();
    assert!(s.audit.chain.key_id().is_some() && s.audit.previous_key.is_some());
    let s = settings(&[pg, ("DATABASE_MIGRATE_URL", "postgres://owner@db/netia")]).unwrap();
    assert!(s.audit.migrate_url.is_some());
    for (pairs, variable) in [
        (vec![("AUDIT_KEY", "c2hvcnQ=")], "AUDIT_KEY"),
        (vec![("AUDIT_KEY_PREVIOUS", KEY)], "AUDIT_KEY_PREVIOUS"),
        (
            vec![("AUDIT_KEY", KEY), ("AUDIT_KEY_PREVIOUS", KEY)],
            "AUDIT_KEY_PREVIOUS",
        ),
        (
            vec![("DATABASE_MIGRATE_URL", "postgres://owner@db/netia")],
            "DATABASE_MIGRATE_URL",
        ),
        (
            vec![pg, ("DATABASE_MIGRATE_URL", "mysql://owner@db")],
            "DATABASE_MIGRATE_URL",
        ),
    ] {
        let err = settings(&pairs).unwrap_err();
        assert_eq!(err.variable, variable, "{pairs:?}");
        assert!(!err.value.contains("bmV0"), "keys are never shown: {err}");
    }
}

#[test]
fn attachments_default_to_a_local_directory_of_10_mib_files() {
    let s = settings(&[]).unwrap();
    assert_eq!(
        s.attachments.location,
        AttachmentLocation::Directory("./data/uploads".into())
    );
    assert_eq!(s.attachments.max_bytes, 10 * 1024 * 1024);
    let s = settings(&[
        ("ATTACHMENTS_URL", "s3://netia-files/eu/uploads/"),
        ("ATTACHMENT_MAX_BYTES", "2048"),
    ])
    .unwrap();
    assert_eq!(
        s.attachments.location,
        AttachmentLocation::S3 {
            bucket: "netia-files".into(),
            prefix: "eu/uploads".into()
        }
    );
    assert_eq!(s.attachments.max_bytes, 2048);
    let s = settings(&[("ATTACHMENTS_URL", "file:///var/lib/netia/files")]).unwrap();
    assert_eq!(
        s.attachments.location,
        AttachmentLocation::Directory("/var/lib/netia/files".into())
    );
}
