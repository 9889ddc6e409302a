//! Reading a connection URL: haul's own query parameters (`schema`, the pool's size
//! and acquire timeout, `migrate`) come out of the URL and into a [`PostgresConfig`];
//! the parameters sqlx reads (libpq's: `sslmode`, `application_name`, `options`, …)
//! are handed to sqlx as they were written; any other parameter is refused, since
//! sqlx would only log it and go on.
//!
//! The table of every parameter is in the documentation of `haul::connect`.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use ::url::Url;
use haul_core::{Error, ErrorKind, Result, url_param};
use sqlx::postgres::PgConnectOptions;

use crate::{BACKEND, PostgresConfig, error::map_sqlx_error};

/// The query parameters haul reads, as the error messages list them.
pub(crate) const HAUL_PARAMETERS: [&str; 7] =
    ["schema", "max_connections", "min_connections", "acquire_timeout", "migrate", "slow_claim", "async_claim_commit"];

/// The query parameters sqlx 0.9 reads from a PostgreSQL URL (`sqlx-postgres`'s
/// `options/parse.rs`), as the error messages list them; `options[<name>]` stands for
/// any name.
pub(crate) const DRIVER_PARAMETERS: [&str; 19] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "options[<name>]",
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
];

/// What to do about a URL that looks like it holds a reserved character written as it
/// is in its user or password (the URL itself is then never shown).
const PERCENT_ENCODE: &str = "percent-encode reserved characters in the user and password (`@` as %40, `/` as %2F, \
                              `?` as %3F, `#` as %23, `%` as %25)";

/// A URL taken apart: how sqlx connects, and the settings its query carries. Never
/// logged; its `Debug` shows where it connects but not the password (that of
/// [`PgConnectOptions`] shows it).
pub(crate) struct PostgresUrl {
    pub(crate) connect_options: PgConnectOptions,
    pub(crate) settings: UrlSettings,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.connect_options;
        f.debug_struct("PostgresUrl")
            .field("host", &options.get_host())
            .field("port", &options.get_port())
            .field("socket", &options.get_socket())
            .field("username", &options.get_username())
            .field("password", &"<redacted>")
            .field("database", &options.get_database())
            .field("ssl_mode", &options.get_ssl_mode())
            .field("application_name", &options.get_application_name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The haul parameters of a URL, each `None` when the URL does not set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlSettings {
    schema: Option<String>,
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    acquire_timeout: Option<Duration>,
    migrate: Option<bool>,
    slow_claim: Option<Duration>,
    async_claim_commit: Option<bool>,
}

impl UrlSettings {
    /// `config` with the settings of the URL in place of its own.
    pub(crate) fn apply_to(self, mut config: PostgresConfig) -> PostgresConfig {
        if let Some(schema) = self.schema {
            config = config.schema(schema);
        }
        if let Some(max) = self.max_connections {
            config = config.max_connections(max);
        }
        if let Some(min) = self.min_connections {
            config = config.min_connections(min);
        }
        if let Some(timeout) = self.acquire_timeout {
            config = config.acquire_timeout(timeout);
        }
        if let Some(migrate) = self.migrate {
            config = config.migrate_on_connect(migrate);
        }
        if let Some(time) = self.slow_claim {
            config = config.slow_claim(time);
        }
        if let Some(enabled) = self.async_claim_commit {
            config = config.async_claim_commit(enabled);
        }
        config
    }

    /// Takes `name=value` if it is one of haul's parameters (`Ok(false)` if it is not).
    fn read(&mut self, name: &str, value: &str) -> Result<bool> {
        match name {
            "schema" => set_once(&mut self.schema, name, value.to_owned())?,
            "max_connections" => set_once(&mut self.max_connections, name, parse_count(name, value)?)?,
            "min_connections" => set_once(&mut self.min_connections, name, parse_count(name, value)?)?,
            "acquire_timeout" => set_once(&mut self.acquire_timeout, name, url_param::duration(name, value)?)?,
            "migrate" => set_once(&mut self.migrate, name, url_param::boolean(name, value)?)?,
            "slow_claim" => set_once(&mut self.slow_claim, name, url_param::duration(name, value)?)?,
            "async_claim_commit" => set_once(&mut self.async_claim_commit, name, url_param::boolean(name, value)?)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Takes a URL apart (see the module docs). A URL that is not a PostgreSQL URL, or
/// that sqlx cannot read, is an [`Error::Backend`] of kind [`ErrorKind::Other`]; a
/// parameter that is unknown, repeated or badly formed is an
/// [`Error::InvalidArgument`] naming it (and never showing a password: an unknown
/// parameter is not named when the query holds an `@`, which may end a password
/// written with a reserved character, and an `@` after the host is refused unshown).
pub(crate) fn parse(url: &str) -> Result<PostgresUrl> {
    let mut parsed = Url::parse(url).map_err(|error| {
        not_a_postgres_url(format!("the PostgreSQL URL does not parse: {error} (expected postgres://…)"))
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(not_a_postgres_url(format!(
            "`{}://` is not a PostgreSQL URL (expected postgres:// or postgresql://)",
            parsed.scheme()
        )));
    }
    // An `@` in the path (the database) or the fragment (which sqlx ignores) ends a
    // password that holds a `/` or `#` written as it is: the host and port before it are
    // the start of the user info. A database name with an `@` is written %40.
    if parsed.path().contains('@') || parsed.fragment().is_some_and(|fragment| fragment.contains('@')) {
        return Err(invalid(format!(
            "the PostgreSQL URL has an `@` after its host, as if its password held a reserved character written as \
             it is (the URL is not shown: it may hold a password); {PERCENT_ENCODE}, and write an `@` in the \
             database name as %40"
        )));
    }
    // An `@` written as it is in the query may end a password that holds a `?`: the
    // text before it is then part of the password, and no parameter name is shown.
    let may_hold_password = parsed.query().is_some_and(|query| query.contains('@'));
    let mut settings = UrlSettings::default();
    let mut driver_pairs = Vec::new();
    for (name, value) in parsed.query_pairs() {
        if settings.read(&name, &value)? {
            continue;
        }
        if !is_driver_parameter(&name) {
            return Err(unknown_parameter(&name, may_hold_password));
        }
        driver_pairs.push((name.into_owned(), value.into_owned()));
    }
    parsed.set_query(None);
    if !driver_pairs.is_empty() {
        parsed.query_pairs_mut().extend_pairs(driver_pairs);
    }
    let connect_options = PgConnectOptions::from_str(parsed.as_str()).map_err(map_sqlx_error)?;
    Ok(PostgresUrl { connect_options, settings })
}

/// The error for an unknown parameter `name`, which it does not show if it holds an
/// `@` or `may_hold_password`.
fn unknown_parameter(name: &str, may_hold_password: bool) -> Error {
    let known = format!(
        "the known parameters are {} (haul's) and {} (sqlx's, as libpq reads them)",
        HAUL_PARAMETERS.join(", "),
        DRIVER_PARAMETERS.join(", "),
    );
    if may_hold_password || name.contains('@') {
        return invalid(format!(
            "unknown parameter in the PostgreSQL URL, with an `@` in the query: the URL looks like it has an \
             unencoded reserved character in its password (the parameter is not shown: it may be part of it); \
             {PERCENT_ENCODE}, and write an `@` in a parameter as %40; {known}"
        ));
    }
    invalid(format!("unknown parameter `{name}` in the PostgreSQL URL; {known}"))
}

/// Whether sqlx reads the parameter `name`.
fn is_driver_parameter(name: &str) -> bool {
    let indexed_option = name.strip_prefix("options[").is_some_and(|rest| rest.len() > 1 && rest.ends_with(']'));
    indexed_option || (DRIVER_PARAMETERS.contains(&name) && name != "options[<name>]")
}

/// Stores the value of a parameter that may appear once.
fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<()> {
    if slot.replace(value).is_some() {
        return Err(invalid(format!("the PostgreSQL URL sets `{name}` more than once")));
    }
    Ok(())
}

/// Reads a number of connections.
fn parse_count(name: &str, value: &str) -> Result<u32> {
    value
        .parse::<u32>()
        .map_err(|_| invalid(format!("`{name}={value}` is not a number of connections: expected a whole number")))
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(Cow::Owned(message))
}

/// A URL sqlx would not take either: reported as sqlx's configuration errors are.
fn not_a_postgres_url(message: String) -> Error {
    Error::backend(BACKEND, ErrorKind::Other, message, None)
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgSslMode;

    use super::*;

    fn parsed(url: &str) -> PostgresUrl {
        parse(url).unwrap_or_else(|error| panic!("{url}: {error:?}"))
    }

    fn config_of(url: &str) -> PostgresConfig {
        parsed(url).settings.apply_to(PostgresConfig::new())
    }

    fn invalid_message(url: &str) -> String {
        match parse(url) {
            Err(Error::InvalidArgument(message)) => message.into_owned(),
            other => panic!("{url}: expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_url_without_parameters_gives_the_default_config() {
        let url = parsed("postgres://app@db.example:6543/jobs");
        assert_eq!(url.settings, UrlSettings::default());
        assert_eq!(url.settings.apply_to(PostgresConfig::new()), PostgresConfig::new());
        assert_eq!(url.connect_options.get_host(), "db.example");
        assert_eq!(url.connect_options.get_port(), 6543);
        assert_eq!(url.connect_options.get_username(), "app");
        assert_eq!(url.connect_options.get_database(), Some("jobs"));
    }

    #[test]
    fn both_schemes_are_postgresql() {
        assert_eq!(parsed("postgresql://h/db").connect_options.get_host(), "h");
    }

    #[test]
    fn schema_sets_the_schema() {
        assert_eq!(config_of("postgres://h/db?schema=billing").schema_name(), "billing");
    }

    #[test]
    fn max_and_min_connections_size_the_pool() {
        let config = config_of("postgres://h/db?max_connections=3&min_connections=1");
        assert_eq!(config.pool_options().get_max_connections(), 3);
        assert_eq!(config.pool_options().get_min_connections(), 1);
    }

    #[test]
    fn acquire_timeout_takes_a_duration() {
        let config = config_of("postgres://h/db?acquire_timeout=1500ms");
        assert_eq!(config.pool_options().get_acquire_timeout(), Duration::from_millis(1500));
        assert_eq!(config_of("postgres://h/db?acquire_timeout=2m").connect_timeout(), Duration::from_secs(120));
        assert_eq!(config_of("postgres://h/db?acquire_timeout=7").connect_timeout(), Duration::from_secs(7));
        assert_eq!(config_of("postgres://h/db?acquire_timeout=1h").connect_timeout(), Duration::from_secs(3600));
    }

    #[test]
    fn slow_claim_takes_a_duration() {
        assert_eq!(config_of("postgres://h/db").slow_claim_time(), crate::config::DEFAULT_SLOW_CLAIM);
        assert_eq!(config_of("postgres://h/db?slow_claim=20ms").slow_claim_time(), Duration::from_millis(20));
        assert!(invalid_message("postgres://h/db?slow_claim=fast").contains("slow_claim"));
    }

    #[test]
    fn async_claim_commit_takes_a_boolean() {
        assert!(!config_of("postgres://h/db").async_claim_commits());
        assert!(config_of("postgres://h/db?async_claim_commit=true").async_claim_commits());
        assert!(!config_of("postgres://h/db?async_claim_commit=false").async_claim_commits());
        assert!(invalid_message("postgres://h/db?async_claim_commit=maybe").contains("async_claim_commit"));
    }

    #[test]
    fn migrate_takes_a_boolean() {
        assert!(config_of("postgres://h/db?migrate=true").migrates_on_connect());
        assert!(!config_of("postgres://h/db?migrate=false").migrates_on_connect());
        assert!(!config_of("postgres://h/db").migrates_on_connect());
    }

    #[test]
    fn the_url_overrides_the_config_and_leaves_the_rest_alone() {
        let base = PostgresConfig::new().schema("from_config").max_connections(4);
        let config = parsed("postgres://h/db?schema=from_url").settings.apply_to(base);
        assert_eq!(config.schema_name(), "from_url");
        assert_eq!(config.pool_options().get_max_connections(), 4);
    }

    #[test]
    fn sqlxs_own_parameters_reach_sqlx() {
        let url = parsed(
            "postgres://u:secret@h/db?schema=s&application_name=billing%20worker&sslmode=require\
             &options=-c%20statement_timeout%3D5s&options[lock_timeout]=2s&statement-cache-capacity=50&port=6000",
        );
        let options = &url.connect_options;
        assert_eq!(options.get_application_name(), Some("billing worker"));
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Require));
        assert_eq!(options.get_port(), 6000);
        let session = options.get_options().unwrap_or_default();
        assert!(session.contains("-c statement_timeout=5s"), "{session}");
        assert!(session.contains("lock_timeout=2s"), "{session}");
        assert_eq!(url.settings.apply_to(PostgresConfig::new()).schema_name(), "s");
    }

    #[test]
    fn host_user_password_and_dbname_parameters_reach_sqlx() {
        let url = parsed("postgres:///?host=/run/postgresql&user=app&password=pw&dbname=jobs&hostaddr=127.0.0.1");
        assert_eq!(url.connect_options.get_username(), "app");
        assert_eq!(url.connect_options.get_database(), Some("jobs"));
        // sqlx 0.9.1 keeps `hostaddr` apart from the host (a socket directory here); it
        // has no getter for it, but writes it back into the URL.
        assert_eq!(url.connect_options.get_socket(), Some(&std::path::PathBuf::from("/run/postgresql")));
        let written = sqlx::ConnectOptions::to_url_lossy(&url.connect_options);
        assert!(written.query_pairs().any(|(name, value)| name == "hostaddr" && value == "127.0.0.1"), "{written}");
    }

    #[test]
    fn a_bad_value_of_sqlxs_parameters_is_refused_by_sqlx() {
        let error = parse("postgres://h/db?sslmode=sometimes").expect_err("an unknown sslmode");
        assert!(matches!(error, Error::Backend { backend: "postgres", kind: ErrorKind::Other, .. }), "{error:?}");
    }

    #[test]
    fn an_unknown_parameter_is_named_with_every_known_one_and_no_password() {
        let message = invalid_message("postgres://u:hunter2@h/db?schema=s&search_path=x&password=hunter2");
        assert!(message.contains("`search_path`"), "{message}");
        for known in HAUL_PARAMETERS.iter().chain(&DRIVER_PARAMETERS) {
            assert!(message.contains(known), "{known} missing from {message}");
        }
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn an_options_parameter_needs_a_name_between_brackets() {
        assert!(invalid_message("postgres://h/db?options[]=x").contains("`options[]`"));
        assert!(invalid_message("postgres://h/db?options[x=y").contains("`options[x`"));
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert!(invalid_message("postgres://h/db?schema=a&schema=b").contains("`schema` more than once"));
    }

    #[test]
    fn a_bad_number_of_connections_names_the_parameter() {
        for bad in ["", "-1", "ten", "1.5"] {
            let message = invalid_message(&format!("postgres://h/db?max_connections={bad}"));
            assert!(message.contains(&format!("`max_connections={bad}`")), "{message}");
        }
        assert!(invalid_message("postgres://h/db?min_connections=x").contains("`min_connections=x`"));
    }

    #[test]
    fn a_bad_duration_names_the_parameter_and_the_expected_form() {
        for bad in ["", "0", "0ms", "soon", "1.5s", "5 s", "3d", "99999999999999999999h"] {
            let message = invalid_message(&format!("postgres://h/db?acquire_timeout={bad}"));
            assert!(message.contains("`acquire_timeout="), "{bad}: {message}");
            assert!(message.contains("`500ms`, `5s`, `2m` or `1h`"), "{bad}: {message}");
        }
    }

    #[test]
    fn a_bad_boolean_names_the_parameter_and_the_expected_form() {
        let message = invalid_message("postgres://h/db?migrate=yes");
        assert!(message.contains("`migrate=yes`") && message.contains("`true` or `false`"), "{message}");
    }

    /// The error of `url`, as its `Display` and `Debug` show it.
    fn error_text(url: &str) -> String {
        match parse(url) {
            Err(error) => format!("{error} {error:?}"),
            Ok(parsed) => panic!("{url}: expected an error, got {parsed:?}"),
        }
    }

    #[test]
    fn a_url_with_an_unencoded_password_is_refused_without_showing_it() {
        for url in [
            "postgres://u:9876?s3cr3t@h/db",
            "postgres://u:9876?s3cr3t&x=y@h/db",
            "postgres://u:9876?s3cr3t=x@h/db?schema=s",
            "postgres://u:9876#s3cr3t@h/db",
            "postgres://u:9876/s3cr3t@h/db",
            "postgresql://u:9876?s3cr3t@h",
        ] {
            let text = error_text(url);
            assert!(!text.contains("s3cr3t") && !text.contains("9876"), "{text}");
            assert!(text.contains("percent-encode reserved characters in the user and password"), "{text}");
        }
        // An `@` in a value is allowed, but no unknown name is shown beside it.
        assert_eq!(parsed("postgres://h/db?user=app@server").connect_options.get_username(), "app@server");
        let text = error_text("postgres://h/db?user=app@server&serach_path=x");
        assert!(!text.contains("serach_path") && text.contains("write an `@` in a parameter as %40"), "{text}");
        assert_eq!(parsed("postgres://h/my%40db").connect_options.get_database(), Some("my@db"));
    }

    #[test]
    fn debug_shows_no_password() {
        let url = parsed("postgres://app:s3cr3t@db.example:6543/jobs?schema=billing&application_name=w");
        let debug = format!("{url:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        for shown in ["db.example", "6543", "app", "jobs", "billing", "<redacted>"] {
            assert!(debug.contains(shown), "{shown} missing from {debug}");
        }
        let debug = format!("{:?}", parsed("postgres:///jobs?host=/run/postgresql&user=app&password=s3cr3t"));
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn a_url_of_another_scheme_is_refused() {
        for url in ["redis://h:6379", "h:5432/db", "postgres://[bad/db"] {
            let error = parse(url).expect_err(url);
            assert!(matches!(error, Error::Backend { backend: "postgres", kind: ErrorKind::Other, .. }), "{error:?}");
        }
    }
}
