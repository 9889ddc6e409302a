//! Picking a backend from a URL, configured by the URL's parameters.

use std::sync::Arc;

use haul_core::{Error, Result, Storage};

/// The schemes [`connect`] knows, as its error messages list them.
const SCHEMES: &str = "memory://, postgres://, postgresql://, redis://, rediss://, redis+cluster://, \
                       rediss+cluster:// or redis+unix://";

/// Connects to the storage a URL names, among the backends compiled in, configured by
/// the URL's query parameters: swapping or tuning storage is then a configuration
/// change. Each backend reads its own URL (`PostgresStorage::connect` and
/// `RedisStorage::connect` take the same URLs); this function picks the backend by the
/// scheme and hands the URL over.
///
/// | Scheme | Backend (cargo feature) |
/// |---|---|
/// | `memory://` | in-process `MemoryStorage` (`memory`, default) |
/// | `postgres://`, `postgresql://` | `PostgresStorage` (`postgres`) |
/// | `redis://`, `rediss://` (TLS), `redis+unix://` | `RedisStorage`, one server (`redis`) |
/// | `redis+cluster://`, `rediss+cluster://` (TLS) | `RedisStorage` on a Redis Cluster (`redis`) |
///
/// A parameter a backend does not know, or a value it cannot read, fails with
/// [`Error::InvalidArgument`] naming the parameter (and listing every known one),
/// before anything connects; passwords are never repeated in errors. Durations are a
/// whole number with a unit: `500ms`, `5s`, `2m`, `1h`; a bare number is seconds. Booleans
/// are `true` or `false`. Values are percent-encoded as in any URL.
///
/// # PostgreSQL: `postgres://[user[:password]@]host[:port]/database?…`
///
/// | Parameter | Default | Meaning |
/// |---|---|---|
/// | `schema` | `haul` | Schema holding haul's tables: 1 to 63 lowercase letters, digits and `_`, starting with a letter. |
/// | `max_connections` | `10` | Most connections the pool holds (at least 1). |
/// | `min_connections` | `0` | Connections the pool keeps open when idle (at most `max_connections`). |
/// | `acquire_timeout` | `30s` | How long a call waits for a free connection of the pool; also how long connecting waits for the server to answer. |
/// | `migrate` | `false` | `true`: run the migrations ([`Storage::migrate`]) while connecting. Otherwise no DDL runs: migrate once per deployment. |
/// | `slow_claim` | `1ms` | Server time (plus as much again per 25 jobs claimed) past which a claim's walk of a queue is slow; two in a row make claims resume from the last claimed job for up to 1 s (the backend's README, "Long transactions"). |
/// | `async_claim_commit` | `false` | `true`: each claim commits without waiting for the WAL flush (`synchronous_commit` off for the claim's transaction only), about a millisecond less from an enqueue to its job's start on a loaded server. A server crash within about 600 ms of a claim can then lose it, and the job runs that attempt again under the same attempt number, possibly alongside the first run (the backend's README, "Tuning"). |
/// | `application_name` | none (`PGAPPNAME`) | Name of the connections in `pg_stat_activity`. Read by sqlx, as the parameters below. |
/// | `sslmode` (`ssl-mode`) | `prefer` | `disable`, `allow`, `prefer`, `require`, `verify-ca` or `verify-full`, as libpq's. TLS needs haul-postgres's `tls` feature (on by default). |
/// | `sslrootcert` (`ssl-root-cert`, `ssl-ca`) | system roots | CA certificate file (or PEM) the server's certificate is verified against. |
/// | `sslcert` (`ssl-cert`), `sslkey` (`ssl-key`) | none | Client certificate and key, for servers that ask for one. |
/// | `options` | none (`PGOPTIONS`) | Session settings, as libpq's: `options=-c%20statement_timeout%3D5s`. |
/// | `options[<name>]` | none | One session setting: `options[statement_timeout]=5s`. |
/// | `host`, `hostaddr`, `port`, `dbname`, `user`, `password` | the URL's | Instead of the URL's parts; `host=/run/postgresql` is a Unix socket directory; `hostaddr` is the address dialled while `host` still names the server for TLS (as libpq's). |
/// | `statement-cache-capacity` | `100` | Prepared statements cached per connection. |
///
/// Connecting opens one connection before the pool, so that a server that cannot be
/// reached fails at once with the reason ("Connection refused", an unknown database,
/// a failed password) instead of a pool timeout.
///
/// # Redis: `redis://[user[:password]@]host[:port][/db]?…`
///
/// | Parameter | Default | Meaning |
/// |---|---|---|
/// | `prefix` | `haul` | Namespace of every key: 1 to 100 lowercase letters, digits and `_`, starting with a letter. |
/// | `response_timeout` | `10s` | How long a command waits for its reply. |
/// | `connection_timeout` | `5s` | How long connecting may take, retries included. |
/// | `allow_eviction` | `false` | `true`: connect, with a warning, to a server whose `maxmemory-policy` may evict keys (and lose jobs). |
/// | `migrate` | `false` | `true`: run [`Storage::migrate`] while connecting. |
/// | `protocol` | `resp2` | `resp3` (or `3`) to speak RESP3. Read by the `redis` crate. |
/// | `#insecure` (fragment) | verified | `rediss://…/#insecure`: TLS without verifying the certificate (self-signed test servers only). |
///
/// `rediss://` is Redis over TLS (haul-redis's `tls` feature, on by default), verified
/// against the system's roots. `redis+unix:///path/redis.sock` reaches a Unix socket,
/// and takes the `redis` crate's `db`, `user` and `pass` parameters as well. A server
/// that refuses the connection, that does not speak Redis's protocol, or that answers
/// nothing within `connection_timeout`, fails saying so.
///
/// # Redis Cluster: `redis+cluster://[user[:password]@]host1:port1,host2:port2[/]?…`
///
/// Any of the cluster's nodes, comma-separated (`rediss+cluster://` for TLS); the user,
/// password, `protocol` and `#insecure` apply to every node, and the parameters are
/// those of Redis above. The storage is `RedisStorage::connect_cluster` with those nodes.
/// Everything before the URL's last `@` is the user and password (no parameter value
/// holds an `@`; write one elsewhere as `%40`).
///
/// # Memory: `memory://`
///
/// | Parameter | Default | Meaning |
/// |---|---|---|
/// | `migrate` | `false` | Accepted for symmetry; there is nothing to migrate. |
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> haul::Result<()> {
/// let storage = haul::connect("memory://").await?;
/// assert_eq!(storage.backend_name(), "memory");
/// assert!(haul::connect("memory://?migrate=true").await.is_ok());
/// assert!(matches!(haul::connect("memory://?prefix=x").await, Err(haul::Error::InvalidArgument(_))));
/// assert!(haul::connect("ftp://example.com").await.is_err());
/// # Ok(()) }
/// ```
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> haul::Result<()> {
/// // PostgreSQL: its own schema, a pool of 20, tables created on the way, TLS required.
/// let jobs = haul::connect(
///     "postgres://app:secret@db.internal/app?schema=billing_jobs&max_connections=20&acquire_timeout=5s\
///      &migrate=true&application_name=billing&sslmode=require",
/// )
/// .await?;
/// // Redis over TLS, with a key prefix and a short reply timeout.
/// let jobs = haul::connect("rediss://:secret@cache.internal:6380/?prefix=billing&response_timeout=2s").await?;
/// // A Redis Cluster, through any two of its nodes.
/// let jobs = haul::connect("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/?prefix=billing").await?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn Storage>> {
    let Some((scheme, _)) = url.split_once("://") else {
        // The URL itself is not repeated: it may hold a password.
        return Err(Error::InvalidArgument(
            format!("not a storage URL: it does not start with a scheme (expected {SCHEMES})").into(),
        ));
    };
    let storage = match scheme {
        "memory" => memory(url)?,
        "postgres" | "postgresql" => postgres(url, scheme).await?,
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" | "redis+unix" => redis(url, scheme).await?,
        other => {
            return Err(Error::InvalidArgument(
                format!("unknown storage scheme `{other}://` (expected {SCHEMES})").into(),
            ));
        }
    };
    Ok(storage)
}

/// The in-process storage. Its URL takes only `migrate`, which has nothing to do.
#[cfg(feature = "memory")]
fn memory(url: &str) -> Result<Arc<dyn Storage>> {
    check_memory_parameters(url)?;
    Ok(Arc::new(haul_memory::MemoryStorage::new()))
}

#[cfg(not(feature = "memory"))]
fn memory(url: &str) -> Result<Arc<dyn Storage>> {
    check_memory_parameters(url)?;
    not_available("memory", "memory")
}

/// Refuses any parameter of a `memory://` URL but `migrate=true|false`.
fn check_memory_parameters(url: &str) -> Result<()> {
    let Some((_, query)) = url.split_once('?') else { return Ok(()) };
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "migrate" => {
                haul_core::url_param::boolean(name, value)?;
            }
            _ => {
                return Err(Error::InvalidArgument(
                    format!("unknown parameter `{name}` in the memory:// URL; the only known parameter is migrate")
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// PostgreSQL, configured by the URL (`migrate=true` runs in `PostgresStorage::connect`).
#[cfg(feature = "postgres")]
async fn postgres(url: &str, _scheme: &str) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(haul_postgres::PostgresStorage::connect(url).await?))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str, scheme: &str) -> Result<Arc<dyn Storage>> {
    not_available(scheme, "postgres")
}

/// Redis or a Redis Cluster, configured by the URL (`migrate=true` runs in
/// `RedisStorage::connect`).
#[cfg(feature = "redis")]
async fn redis(url: &str, _scheme: &str) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(haul_redis::RedisStorage::connect(url).await?))
}

#[cfg(not(feature = "redis"))]
async fn redis(_url: &str, scheme: &str) -> Result<Arc<dyn Storage>> {
    not_available(scheme, "redis")
}

#[cfg(not(all(feature = "memory", feature = "postgres", feature = "redis")))]
fn not_available(scheme: &str, feature: &'static str) -> Result<Arc<dyn Storage>> {
    Err(Error::BackendNotAvailable { scheme: scheme.to_owned(), feature })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_url_takes_migrate_and_nothing_else() {
        for url in ["memory://", "memory://?migrate=true", "memory:///?migrate=false", "memory://?"] {
            assert!(check_memory_parameters(url).is_ok(), "{url}");
        }
        let Err(Error::InvalidArgument(message)) = check_memory_parameters("memory://?prefix=x") else {
            panic!("an unknown parameter is refused")
        };
        assert!(message.contains("`prefix`") && message.contains("migrate"), "{message}");
        let Err(Error::InvalidArgument(message)) = check_memory_parameters("memory://?migrate=yes") else {
            panic!("a bad boolean is refused")
        };
        assert!(message.contains("`migrate=yes`"), "{message}");
    }

    #[tokio::test]
    async fn a_url_without_a_scheme_is_refused_without_repeating_it() {
        let Err(error) = connect("user:secret@localhost/db").await else { panic!("not a storage URL") };
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_named_without_the_rest_of_the_url() {
        let Err(error) = connect("mysql://user:secret@localhost/db").await else { panic!("an unknown scheme") };
        let message = error.to_string();
        assert!(message.contains("`mysql://`") && !message.contains("secret"), "{message}");
    }
}
