//! The PostgreSQL pool and migrations. Every service database carries the platform tables
//! (outbox, idempotency keys; versions below 1000) plus the service's own tables (1000 and up),
//! applied by one migrator so one `_sqlx_migrations` table tells the whole schema history.

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::DatabaseArgs;

/// The platform tables every service database has.
pub static PLATFORM_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects the pool. Fails within the acquire timeout if the database is unreachable. Every
/// connection carries the server-side bounds ([`bounded`]).
pub async fn connect(args: &DatabaseArgs) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = args
        .expose_url()
        .parse()
        .context("parse DATABASE_URL (expected postgres://user:password@host:port/database)")?;
    let options = bounded(
        options,
        args.statement_timeout,
        args.idle_in_transaction_timeout,
    );
    let database = options.get_database().unwrap_or("(default)").to_owned();
    // No ping before each use (sqlx's default): one round trip saved per transaction; a
    // connection the server closed fails its first statement instead, which every caller treats
    // as transient (a consumer retries it, a call answers UNAVAILABLE), and sqlx drops it.
    let pool = PgPoolOptions::new()
        .max_connections(args.max_connections)
        .acquire_timeout(args.acquire_timeout)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "connect to PostgreSQL database `{database}` (is it running? `deploy/local/infra.sh up` starts it)"
            )
        })?;
    Ok(pool)
}

/// The server's own bounds on every session: `statement_timeout` (a statement, or its wait for
/// a lock, is cancelled after it: a lock held by a stuck transaction turns into an error and a
/// retry, never into a consumer waiting for minutes) and `idle_in_transaction_session_timeout`
/// (a session whose transaction idles that long is ended and its locks released). They travel
/// in the startup packet, so they hold from the first statement. A frozen server enforces
/// nothing: the client's own bounds (the pool's acquire time-out, the consumer's batch
/// time-out) cover that case. The services take them from [`DatabaseArgs`]; the relay from its
/// own flags.
pub fn bounded(
    options: PgConnectOptions,
    statement: std::time::Duration,
    idle_in_transaction: std::time::Duration,
) -> PgConnectOptions {
    let ms = |d: std::time::Duration| format!("{}ms", d.as_millis());
    options.options([
        ("statement_timeout", ms(statement)),
        (
            "idle_in_transaction_session_timeout",
            ms(idle_in_transaction),
        ),
    ])
}

/// One migrator holding the platform migrations followed by the service's own.
pub fn migrator(service: &Migrator) -> Migrator {
    let migrations = PLATFORM_MIGRATOR
        .iter()
        .chain(service.iter())
        .cloned()
        .collect();
    Migrator::with_migrations(migrations)
}

/// Applies the platform and service migrations (idempotent; concurrent replicas serialize on
/// sqlx's advisory lock).
pub async fn migrate(pool: &PgPool, service: &Migrator) -> anyhow::Result<()> {
    if let Some(clash) = service.iter().find(|m| m.version < 1000) {
        anyhow::bail!(
            "service migration {} ({}) uses a version below 1000, which is reserved for platform tables",
            clash.version,
            clash.description
        );
    }
    // A migration that rewrites a large table takes longer than a request may: it runs on a
    // connection of its own without the pool's statement timeout, closed afterwards.
    let mut conn = pool
        .acquire()
        .await
        .context("a connection for the migrations")?
        .detach();
    sqlx::query("set statement_timeout = 0")
        .execute(&mut conn)
        .await
        .context("lift the statement timeout for the migrations")?;
    let applied = migrator(service)
        .run(&mut conn)
        .await
        .context("apply database migrations");
    let _ = sqlx::Connection::close(conn).await;
    applied
}

/// Whether a database error is worth retrying (connection trouble, pool exhausted, server
/// shutting down or refusing connections, serialization failure) rather than a bug or bad data.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // The server answered outside the protocol: seen while PostgreSQL was starting up
        // ("unexpected response from SSLRequest: 0x00") and when a connection broke mid-message.
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().as_deref().is_some_and(is_transient_code),
        _ => false,
    }
}

/// Whether a transient database error (see [`is_transient`]) is anywhere in `error`'s chain of
/// causes: errors that went through `anyhow` context on their way up keep their meaning.
pub fn is_transient_cause(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(is_transient)
    })
}

/// Whether a database error is a numeric value out of range (SQLSTATE 22003): an `int8` `+` or
/// a `sum()` cast back to `int8` that overflowed. Never transient: the same data overflows again.
pub fn is_out_of_range(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(NUMERIC_VALUE_OUT_OF_RANGE))
}

/// SQLSTATE `numeric_value_out_of_range`.
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";

/// SQLSTATEs that mean "try again later".
fn is_transient_code(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (too many connections, disk full);
    // 57P01-57P03: admin/crash shutdown, cannot connect now; 40001/40P01: serialization failure,
    // deadlock; 57014 query canceled (the statement time-out: a lock held too long, a server too
    // slow for a while); 25P03 idle-in-transaction time-out; 55000 at connect: "database is not currently accepting connections".
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "40001" | "40P01" | "55000" | "57014" | "25P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_transient_and_bad_data_is_not() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "40001", "40P01", "55000", "57014",
            "25P03",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["23505", "23514", "42P01", "3D000", "22P02"] {
            assert!(!is_transient_code(code), "{code}");
        }
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Protocol(
            "unexpected response from SSLRequest: 0x00".into()
        )));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn a_transient_error_under_context_is_still_transient() {
        use anyhow::Context as _;
        let wrapped = Err::<(), _>(sqlx::Error::PoolTimedOut)
            .context("append outbox rows")
            .context("record the purchase")
            .unwrap_err();
        assert!(is_transient_cause(&wrapped));
        let permanent = Err::<(), _>(sqlx::Error::RowNotFound)
            .context("append outbox rows")
            .unwrap_err();
        assert!(!is_transient_cause(&permanent));
    }
}
