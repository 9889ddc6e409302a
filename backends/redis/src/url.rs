//! Reading a connection URL: haul's own query parameters (`prefix`, the timeouts,
//! `allow_eviction`, `migrate`) come out of the URL and into a [`RedisConfig`]; what
//! remains is handed to the `redis` crate as it was written (user, password, database,
//! `protocol`, `#insecure`). `redis+cluster://host1:port1,host2:port2` (and
//! `rediss+cluster://`) names the nodes of a Redis Cluster.
//!
//! The table of every parameter is in the documentation of `haul::connect`.

use std::{borrow::Cow, time::Duration};

use ::url::{Url, form_urlencoded};
use haul_core::{Error, ErrorKind, Result, url_param};

use crate::{BACKEND, RedisConfig};

/// The query parameters haul reads, as the error messages list them.
pub(crate) const HAUL_PARAMETERS: [&str; 5] =
    ["prefix", "response_timeout", "connection_timeout", "allow_eviction", "migrate"];

/// The query parameters the `redis` crate reads from a `redis://` or `rediss://` URL
/// (and which a cluster URL passes to each node).
const DRIVER_TCP_PARAMETERS: [&str; 1] = ["protocol"];

/// The query parameters the `redis` crate reads from a Unix socket URL
/// (`redis+unix:///path`, `unix:///path`).
const DRIVER_UNIX_PARAMETERS: [&str; 4] = ["db", "user", "pass", "protocol"];

/// The URL schemes understood, as the error messages list them.
const SCHEMES: &str = "redis://, rediss://, redis+cluster://, rediss+cluster:// or redis+unix://";

/// The servers a URL names, each as a URL for the `redis` crate (without haul's
/// parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Servers {
    /// One server.
    One(String),
    /// The nodes of a Redis Cluster, all with the same user, password, protocol and TLS.
    Cluster(Vec<String>),
}

/// A URL taken apart: where to connect, and the settings its query carries. Never
/// logged: the driver URLs may hold a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    pub(crate) servers: Servers,
    pub(crate) settings: UrlSettings,
}

/// The haul parameters of a URL, each `None` when the URL does not set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlSettings {
    prefix: Option<String>,
    response_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
    allow_eviction: Option<bool>,
    migrate: Option<bool>,
}

impl UrlSettings {
    /// `config` with the settings of the URL in place of its own.
    pub(crate) fn apply_to(self, mut config: RedisConfig) -> RedisConfig {
        if let Some(prefix) = self.prefix {
            config.prefix = prefix;
        }
        if let Some(timeout) = self.response_timeout {
            config.response_timeout = timeout;
        }
        if let Some(timeout) = self.connection_timeout {
            config.connection_timeout = timeout;
        }
        if let Some(allow) = self.allow_eviction {
            config.allow_eviction = allow;
        }
        if let Some(migrate) = self.migrate {
            config.migrate_on_connect = migrate;
        }
        config
    }

    /// Whether the URL sets none of haul's parameters.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Takes `name=value` if it is one of haul's parameters (`Ok(false)` if it is not).
    fn read(&mut self, name: &str, value: &str) -> Result<bool> {
        match name {
            "prefix" => set_once(&mut self.prefix, name, value.to_owned())?,
            "response_timeout" => set_once(&mut self.response_timeout, name, url_param::duration(name, value)?)?,
            "connection_timeout" => set_once(&mut self.connection_timeout, name, url_param::duration(name, value)?)?,
            "allow_eviction" => set_once(&mut self.allow_eviction, name, url_param::boolean(name, value)?)?,
            "migrate" => set_once(&mut self.migrate, name, url_param::boolean(name, value)?)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Takes a URL apart (see the module docs). A URL that is not a Redis URL is an
/// [`Error::Backend`] of kind [`ErrorKind::Other`], as the driver reports it; a
/// parameter that is unknown, repeated or badly formed is an
/// [`Error::InvalidArgument`] naming it (and never showing a password).
pub(crate) fn parse(url: &str) -> Result<RedisUrl> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(not_a_redis_url(format!("a Redis URL starts with {SCHEMES}")));
    };
    match scheme {
        "redis+cluster" => parse_cluster("redis", rest),
        "rediss+cluster" => parse_cluster("rediss", rest),
        "redis" | "rediss" | "valkey" | "valkeys" => parse_one(url, &DRIVER_TCP_PARAMETERS),
        "redis+unix" | "valkey+unix" | "unix" => parse_one(url, &DRIVER_UNIX_PARAMETERS),
        other => Err(not_a_redis_url(format!("`{other}://` is not a Redis URL (expected {SCHEMES})"))),
    }
}

/// A URL of one server: its query without haul's parameters goes to the driver.
fn parse_one(url: &str, driver_parameters: &[&str]) -> Result<RedisUrl> {
    let mut parsed =
        Url::parse(url).map_err(|error| not_a_redis_url(format!("the Redis URL does not parse: {error}")))?;
    let (settings, driver_query) = split_query(parsed.query().unwrap_or(""), driver_parameters)?;
    parsed.set_query(driver_query.as_deref());
    Ok(RedisUrl { servers: Servers::One(parsed.into()), settings })
}

/// `[user[:password]@]host1:port1,host2:port2[/][?query][#fragment]` after
/// `redis+cluster://` (`scheme` `redis`) or `rediss+cluster://` (`rediss`): one URL per
/// node, each with the user, password, driver parameters and fragment.
fn parse_cluster(scheme: &str, rest: &str) -> Result<RedisUrl> {
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(path, "" | "0") {
        return Err(invalid(
            "a Redis Cluster has only database 0: a redis+cluster:// URL takes no database path".to_owned(),
        ));
    }
    let (user_info, hosts) = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => (Some(user_info), hosts),
        None => (None, authority),
    };
    let (settings, driver_query) = split_query(query, &DRIVER_TCP_PARAMETERS)?;
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(invalid(format!(
                "the Redis Cluster URL has an empty node in `{hosts}` (expected {scheme}+cluster://host1:port1,host2:port2)"
            )));
        }
        let mut node = format!("{scheme}://");
        if let Some(user_info) = user_info {
            node.push_str(user_info);
            node.push('@');
        }
        node.push_str(host);
        node.push('/');
        if let Some(query) = &driver_query {
            node.push('?');
            node.push_str(query);
        }
        if let Some(fragment) = fragment {
            node.push('#');
            node.push_str(fragment);
        }
        // Checked here so that a bad node is named (the host only: no password).
        Url::parse(&node).map_err(|error| {
            not_a_redis_url(format!("node `{host}` of the Redis Cluster URL does not parse: {error}"))
        })?;
        nodes.push(node);
    }
    Ok(RedisUrl { servers: Servers::Cluster(nodes), settings })
}

/// Splits a URL query into haul's settings and the query the driver reads (`None`
/// when empty), refusing any other parameter.
fn split_query(query: &str, driver_parameters: &[&str]) -> Result<(UrlSettings, Option<String>)> {
    let mut settings = UrlSettings::default();
    let mut driver = form_urlencoded::Serializer::new(String::new());
    let mut passed = 0;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if settings.read(&name, &value)? {
            continue;
        }
        if !driver_parameters.contains(&name.as_ref()) {
            return Err(unknown_parameter(&name, driver_parameters));
        }
        driver.append_pair(&name, &value);
        passed += 1;
    }
    Ok((settings, (passed > 0).then(|| driver.finish())))
}

/// Stores the value of a parameter that may appear once.
fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<()> {
    if slot.replace(value).is_some() {
        return Err(invalid(format!("the Redis URL sets `{name}` more than once")));
    }
    Ok(())
}

fn unknown_parameter(name: &str, driver_parameters: &[&str]) -> Error {
    invalid(format!(
        "unknown parameter `{name}` in the Redis URL; the known parameters are {} (haul's) and {} (the redis driver's)",
        HAUL_PARAMETERS.join(", "),
        driver_parameters.join(", "),
    ))
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(Cow::Owned(message))
}

/// A URL the driver would not take either: reported as the driver reports it.
fn not_a_redis_url(message: String) -> Error {
    Error::backend(BACKEND, ErrorKind::Other, message, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(url: &str) -> (String, UrlSettings) {
        match parse(url) {
            Ok(RedisUrl { servers: Servers::One(driver_url), settings }) => (driver_url, settings),
            other => panic!("{url}: {other:?}"),
        }
    }

    fn config_of(url: &str) -> RedisConfig {
        one(url).1.apply_to(RedisConfig::new())
    }

    fn invalid_message(url: &str) -> String {
        match parse(url) {
            Err(Error::InvalidArgument(message)) => message.into_owned(),
            other => panic!("{url}: expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_url_without_parameters_is_passed_as_it_is_with_the_default_config() {
        let (driver_url, settings) = one("redis://127.0.0.1:6379");
        assert_eq!(driver_url, "redis://127.0.0.1:6379");
        assert!(settings.is_empty());
        let config = settings.apply_to(RedisConfig::new());
        assert_eq!(config.prefix, "haul");
        assert_eq!(config.response_timeout, Duration::from_secs(10));
        assert_eq!(config.connection_timeout, Duration::from_secs(5));
        assert!(!config.allow_eviction);
        assert!(!config.migrate_on_connect);
    }

    #[test]
    fn prefix_sets_the_key_prefix() {
        assert_eq!(config_of("redis://h/?prefix=billing").prefix, "billing");
    }

    #[test]
    fn response_timeout_takes_a_duration() {
        assert_eq!(config_of("redis://h/?response_timeout=250ms").response_timeout, Duration::from_millis(250));
    }

    #[test]
    fn connection_timeout_takes_a_duration() {
        assert_eq!(config_of("redis://h/?connection_timeout=2").connection_timeout, Duration::from_secs(2));
    }

    #[test]
    fn allow_eviction_takes_a_boolean() {
        assert!(config_of("redis://h/?allow_eviction=true").allow_eviction);
        assert!(!config_of("redis://h/?allow_eviction=false").allow_eviction);
    }

    #[test]
    fn migrate_takes_a_boolean() {
        assert!(config_of("redis://h/?migrate=true").migrate_on_connect);
        assert!(!config_of("redis://h/?migrate=false").migrate_on_connect);
    }

    #[test]
    fn the_url_overrides_the_config_and_leaves_the_rest_alone() {
        let base = RedisConfig::new().prefix("from_config").response_timeout(Duration::from_secs(1));
        let config = one("redis://h/?prefix=from_url").1.apply_to(base);
        assert_eq!(config.prefix, "from_url");
        assert_eq!(config.response_timeout, Duration::from_secs(1));
    }

    #[test]
    fn a_bad_duration_names_the_parameter_and_the_expected_form() {
        for bad in ["", "0", "0s", "abc", "5 s", "1.5s", "-1", "5d", "s", "99999999999999999999h"] {
            let message = invalid_message(&format!("redis://h/?response_timeout={bad}"));
            assert!(message.contains("`response_timeout="), "{bad}: {message}");
            assert!(message.contains("`500ms`, `5s`, `2m` or `1h`"), "{bad}: {message}");
        }
    }

    #[test]
    fn a_bad_boolean_names_the_parameter_and_the_expected_form() {
        let message = invalid_message("redis://h/?allow_eviction=yes");
        assert!(message.contains("`allow_eviction=yes`") && message.contains("`true` or `false`"), "{message}");
        let message = invalid_message("redis://h/?migrate=1");
        assert!(message.contains("`migrate=1`"), "{message}");
    }

    #[test]
    fn an_unknown_parameter_is_named_with_every_known_one() {
        let message = invalid_message("redis://:secret@h/?prefix=a&prefx=b");
        assert!(message.contains("`prefx`"), "{message}");
        for known in HAUL_PARAMETERS.iter().chain(&DRIVER_TCP_PARAMETERS) {
            assert!(message.contains(known), "{known} missing from {message}");
        }
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert!(invalid_message("redis://h/?prefix=a&prefix=b").contains("`prefix` more than once"));
    }

    #[test]
    fn the_drivers_own_parts_pass_through() {
        let (driver_url, settings) = one("redis://user:p%40ss@h:6380/3?prefix=p&protocol=resp3");
        assert_eq!(driver_url, "redis://user:p%40ss@h:6380/3?protocol=resp3");
        assert_eq!(settings.apply_to(RedisConfig::new()).prefix, "p");
        let info = redis::IntoConnectionInfo::into_connection_info(driver_url.as_str()).expect("the driver reads it");
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().username(), Some("user"));
        assert_eq!(info.redis_settings().password(), Some("p@ss"));
        assert!(info.redis_settings().protocol().supports_resp3());
    }

    #[test]
    fn the_insecure_tls_fragment_passes_through() {
        let (driver_url, _) = one("rediss://h:6380/?prefix=p#insecure");
        assert_eq!(driver_url, "rediss://h:6380/#insecure");
    }

    #[test]
    fn a_unix_socket_url_passes_its_drivers_parameters() {
        let (driver_url, settings) = one("redis+unix:///run/redis.sock?db=2&pass=x&prefix=p");
        assert_eq!(driver_url, "redis+unix:///run/redis.sock?db=2&pass=x");
        assert_eq!(settings.apply_to(RedisConfig::new()).prefix, "p");
        let message = invalid_message("unix:///run/redis.sock?database=2");
        assert!(message.contains("`database`") && message.contains("db, user, pass, protocol"), "{message}");
    }

    #[test]
    fn a_tcp_url_does_not_take_the_unix_parameters() {
        assert!(invalid_message("redis://h/?db=2").contains("`db`"));
    }

    #[test]
    fn a_cluster_url_names_every_node_with_the_shared_parts() {
        let parsed = parse("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/?prefix=y&protocol=resp3")
            .expect("a valid cluster URL");
        assert_eq!(
            parsed.servers,
            Servers::Cluster(vec![
                "redis://u:pw@10.0.0.1:7000/?protocol=resp3".to_owned(),
                "redis://u:pw@10.0.0.2:7001/?protocol=resp3".to_owned(),
                "redis://u:pw@[::1]:7002/?protocol=resp3".to_owned(),
            ])
        );
        assert_eq!(parsed.settings.apply_to(RedisConfig::new()).prefix, "y");
    }

    #[test]
    fn a_tls_cluster_url_makes_tls_node_urls() {
        let parsed = parse("rediss+cluster://h1:7000,h2:7001#insecure").expect("a valid cluster URL");
        assert_eq!(
            parsed.servers,
            Servers::Cluster(vec!["rediss://h1:7000/#insecure".to_owned(), "rediss://h2:7001/#insecure".to_owned()])
        );
        assert!(parsed.settings.is_empty());
    }

    #[test]
    fn a_cluster_url_refuses_an_empty_node_a_database_and_unknown_parameters() {
        assert!(invalid_message("redis+cluster://h1:7000,,h2:7001").contains("empty node"));
        assert!(invalid_message("redis+cluster://h1:7000/2").contains("only database 0"));
        assert!(invalid_message("redis+cluster://h1:7000/?db=1").contains("`db`"));
        assert!(matches!(parse("redis+cluster://h1:7000/0"), Ok(RedisUrl { servers: Servers::Cluster(_), .. })));
    }

    #[test]
    fn a_url_of_another_scheme_is_refused_as_the_driver_refuses_it() {
        for url in ["postgres://localhost/db", "localhost:6379", "redis://[bad/"] {
            let error = parse(url).expect_err(url);
            assert!(
                matches!(error, Error::Backend { backend: "redis", kind: ErrorKind::Other, .. }),
                "{url}: {error:?}"
            );
        }
    }
}
