//! Reading a connection URL: haul's own query parameters (`prefix`, the timeouts,
//! `allow_eviction`, `migrate`) come out of the URL and into a [`RedisConfig`]; what
//! remains is handed to the `redis` crate as it was written (user, password, database,
//! `protocol`, `#insecure`). `redis+cluster://host1:port1,host2:port2` (and
//! `rediss+cluster://`) names the nodes of a Redis Cluster.
//!
//! The table of every parameter is in the documentation of `haul::connect`.

use std::{borrow::Cow, fmt, time::Duration};

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

/// What to do about a URL that looks like it holds a reserved character written as it
/// is in its user or password (the URL itself is then never shown).
const PERCENT_ENCODE: &str = "percent-encode reserved characters in the user and password (`@` as %40, `/` as %2F, \
                              `?` as %3F, `#` as %23, `%` as %25)";

/// The servers a URL names, each as a URL for the `redis` crate (without haul's
/// parameters). `Debug` shows each URL with `***` for its password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Servers {
    /// One server.
    One(String),
    /// The nodes of a Redis Cluster, all with the same user, password, protocol and TLS.
    Cluster(Vec<String>),
}

impl fmt::Debug for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(url) => f.debug_tuple("One").field(&redacted(url)).finish(),
            Self::Cluster(nodes) => {
                f.debug_tuple("Cluster").field(&nodes.iter().map(|node| redacted(node)).collect::<Vec<_>>()).finish()
            }
        }
    }
}

/// A driver URL as `Debug` shows it: `***` in place of the password, whether in the
/// user info or in a `pass` parameter (of a Unix socket URL).
fn redacted(url: &str) -> String {
    let Ok(mut url) = Url::parse(url) else {
        return "<a URL that does not parse, not shown>".to_owned();
    };
    if url.password().is_some() {
        // Cannot fail: the URL has a password, so it has a host.
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if name == "pass" { "***".to_owned() } else { value.into_owned() };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

/// A URL taken apart: where to connect, and the settings its query carries. Never
/// logged; its `Debug` (through [`Servers`]'s) shows no password.
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
/// [`Error::InvalidArgument`] naming it (and never showing a password: an unknown
/// parameter is not named when the query holds an `@`, which may end a password
/// written with a reserved character, and an `@` after the host is refused unshown).
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
    // Neither the database number nor the fragment (`insecure`) the driver reads holds
    // an `@`: one there ends a password that holds a `/` or `#` written as it is, and the
    // host and port before it are the start of the user info.
    let tcp = matches!(parsed.scheme(), "redis" | "rediss" | "valkey" | "valkeys");
    if parsed.fragment().is_some_and(|fragment| fragment.contains('@')) || (tcp && parsed.path().contains('@')) {
        return Err(invalid(format!(
            "the Redis URL has an `@` after its host, as if its password held a reserved character written as it \
             is (the URL is not shown: it may hold a password); {PERCENT_ENCODE}"
        )));
    }
    let (settings, driver_query) = split_query(parsed.query().unwrap_or(""), driver_parameters)?;
    parsed.set_query(driver_query.as_deref());
    Ok(RedisUrl { servers: Servers::One(parsed.into()), settings })
}

/// Parses a cluster URL (`rest` is what follows `://`). Its user info is everything
/// before its last `@`: no parameter value haul or the driver reads can hold an `@`, so
/// a password needs no encoding, and an `@` anywhere else must be written `%40`. No
/// error shows the user info.
fn parse_cluster(scheme: &str, rest: &str) -> Result<RedisUrl> {
    let (user_info, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    parse_cluster_parts(scheme, user_info, after)
}

/// A cluster URL cut in two: `user_info` (before its last `@`, if any) and what follows,
/// `host1:port1,host2:port2[/][?query][#fragment]`. No error shows `user_info`.
fn parse_cluster_parts(scheme: &str, user_info: Option<&str>, after: &str) -> Result<RedisUrl> {
    let (rest, fragment) = match after.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (after, None),
    };
    if fragment.is_some_and(|fragment| fragment.contains('@')) {
        // Only `insecure` means anything there: an `@` is in the user info.
        return Err(not_a_redis_url(format!("the Redis Cluster URL has an `@` in its fragment; {PERCENT_ENCODE}")));
    }
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(path, "" | "0") {
        return Err(invalid(
            "a Redis Cluster has only database 0: a redis+cluster:// URL takes no database path".to_owned(),
        ));
    }
    let (settings, driver_query) = split_query(query, &DRIVER_TCP_PARAMETERS)?;
    let mut tail = String::from("/");
    if let Some(query) = &driver_query {
        tail.push('?');
        tail.push_str(query);
    }
    if let Some(fragment) = fragment {
        tail.push('#');
        tail.push_str(fragment);
    }
    let user_info = user_info.map(|user_info| format!("{}@", encode_user_info(user_info)));
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(invalid(format!(
                "the Redis Cluster URL has an empty node in `{hosts}` (expected {scheme}+cluster://host1:port1,host2:port2)"
            )));
        }
        if !is_host_and_port(host) {
            return Err(not_a_redis_url(format!(
                "node `{host}` of the Redis Cluster URL is not a host and port (expected \
                 {scheme}+cluster://host1:port1,host2:port2)"
            )));
        }
        let node = format!("{scheme}://{}{host}{tail}", user_info.as_deref().unwrap_or(""));
        // Checked here so that a bad node is named (the host only: no password).
        if let Err(error) = Url::parse(&node) {
            return Err(if Url::parse(&format!("{scheme}://{host}{tail}")).is_ok() {
                not_a_redis_url(format!(
                    "the user and password of the Redis Cluster URL do not parse: {error} (they are not shown); \
                     {PERCENT_ENCODE}"
                ))
            } else {
                not_a_redis_url(format!("node `{host}` of the Redis Cluster URL does not parse: {error}"))
            });
        }
        nodes.push(node);
    }
    Ok(RedisUrl { servers: Servers::Cluster(nodes), settings })
}

/// The user info of a cluster URL as each node URL holds it: with the characters that
/// would end it (`@`, `/`, `?`, `#`) percent-encoded, the rest as it was written.
fn encode_user_info(user_info: &str) -> String {
    let mut encoded = String::with_capacity(user_info.len());
    for character in user_info.chars() {
        match character {
            '@' => encoded.push_str("%40"),
            '/' => encoded.push_str("%2F"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            other => encoded.push(other),
        }
    }
    encoded
}

/// Whether `node` is `host[:port]`: a name or IPv4 address (letters, digits, `-`, `.`,
/// `_`, `~`, `%`) or a bracketed IPv6 address, and digits for the port.
fn is_host_and_port(node: &str) -> bool {
    let (host_ok, port) = match node.strip_prefix('[') {
        Some(bracketed) => {
            let Some((address, port)) = bracketed.split_once(']') else {
                return false;
            };
            (!address.is_empty() && address.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')), port)
        }
        None => {
            let (host, port) = node.split_at(node.find(':').unwrap_or(node.len()));
            (
                !host.is_empty()
                    && host.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%')),
                port,
            )
        }
    };
    host_ok
        && (port.is_empty() || port.strip_prefix(':').is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit())))
}

/// Splits a URL query into haul's settings and the query the driver reads (`None`
/// when empty), refusing any other parameter.
fn split_query(query: &str, driver_parameters: &[&str]) -> Result<(UrlSettings, Option<String>)> {
    // An `@` written as it is in the query may end a password that holds a `?`: the
    // text before it is then part of the password, and no parameter name is shown.
    let may_hold_password = query.contains('@');
    let mut settings = UrlSettings::default();
    let mut driver = form_urlencoded::Serializer::new(String::new());
    let mut passed = 0;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if settings.read(&name, &value)? {
            continue;
        }
        if !driver_parameters.contains(&name.as_ref()) {
            return Err(unknown_parameter(&name, driver_parameters, may_hold_password));
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

/// The error for an unknown parameter `name`, which it does not show if it holds an
/// `@` or `may_hold_password`.
fn unknown_parameter(name: &str, driver_parameters: &[&str], may_hold_password: bool) -> Error {
    let known = format!(
        "the known parameters are {} (haul's) and {} (the redis driver's)",
        HAUL_PARAMETERS.join(", "),
        driver_parameters.join(", "),
    );
    if may_hold_password || name.contains('@') {
        return invalid(format!(
            "unknown parameter in the Redis URL, with an `@` in the query: the URL looks like it has an unencoded \
             reserved character in its password (the parameter is not shown: it may be part of it); \
             {PERCENT_ENCODE}, and write an `@` in a parameter as %40; {known}"
        ));
    }
    invalid(format!("unknown parameter `{name}` in the Redis URL; {known}"))
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

    /// The password the driver reads from `node`.
    fn password_of(node: &str) -> Option<String> {
        let info = redis::IntoConnectionInfo::into_connection_info(node).expect("the driver reads it");
        info.redis_settings().password().map(str::to_owned)
    }

    fn cluster_nodes(url: &str) -> Vec<String> {
        match parse(url) {
            Ok(RedisUrl { servers: Servers::Cluster(nodes), .. }) => nodes,
            other => panic!("{url}: {other:?}"),
        }
    }

    /// The error of `url`, as its `Display` and `Debug` show it.
    fn error_text(url: &str) -> String {
        let error = parse(url).expect_err(url);
        format!("{error} {error:?}")
    }

    #[test]
    fn a_cluster_password_with_reserved_characters_written_as_they_are_is_read_whole() {
        for (url, password) in [
            ("redis+cluster://u:s3cr#et@h:7000,h2:7001", "s3cr#et"),
            ("redis+cluster://u:s3cr?et@h:7000,h2:7001/?prefix=p#insecure", "s3cr?et"),
            ("redis+cluster://u:1234?et@h:7000,h2:7001", "1234?et"),
            ("redis+cluster://u:s3/cr@h:7000,h2:7001/", "s3/cr"),
            ("redis+cluster://u:p@ss@h:7000,h2:7001", "p@ss"),
            ("redis+cluster://u:p@s?s#w/d@h:7000,h2:7001?protocol=resp3", "p@s?s#w/d"),
            ("redis+cluster://u:p%40ss@h:7000,h2:7001", "p@ss"),
        ] {
            let nodes = cluster_nodes(url);
            assert_eq!(nodes.len(), 2, "{url}");
            for (node, host) in nodes.iter().zip(["h:7000", "h2:7001"]) {
                assert!(node.contains(&format!("@{host}/")), "{url}: {node}");
                assert_eq!(password_of(node).as_deref(), Some(password), "{url}: {node}");
            }
        }
    }

    #[test]
    fn the_user_info_of_a_cluster_url_ends_at_its_last_at_sign() {
        // An `@` in a parameter is read as the end of the user info (the rule is simple
        // to state; no valid parameter value holds an `@`): the nodes are then wrong,
        // and nothing before that `@` is shown.
        let parsed = parse("redis+cluster://u:pw@h1:7000,h2:7001/?prefix=a@b").expect("one node, `b`");
        assert!(matches!(&parsed.servers, Servers::Cluster(nodes) if nodes.len() == 1 && nodes[0].ends_with("@b/")));
        assert!(!format!("{parsed:?}").contains("pw"));
        assert_eq!(cluster_nodes("redis+cluster://u:pw@h1:7000,h2:7001/?prefix=a%40b").len(), 2);
    }

    #[test]
    fn a_bad_cluster_url_never_shows_its_password() {
        for url in [
            "redis+cluster://u:s3cr3t?9@h:7000,,h2:7001",
            "redis+cluster://u:s3cr3t#9@h:7000/5",
            "redis+cluster://u:s3cr3t/9@h:7000?prefx=1",
            "redis+cluster://u:s3cr3t?9@h:7000?prefix=a&prefix=b",
            "redis+cluster://u:s3cr3t?9@h:7000?response_timeout=never",
            "redis+cluster://u:s3cr3t?9@",
            "redis+cluster://u:s3cr3t#9@h:7000#x@",
            "redis+cluster://u:9876?s3cr3t@h:7000,,h2:7001",
            "redis+cluster://u:9876#s3cr3t@h:7000 h2:7001",
        ] {
            let text = error_text(url);
            assert!(!text.contains("s3cr3t") && !text.contains("9876"), "{text}");
        }
    }

    #[test]
    fn a_bad_cluster_url_names_what_is_wrong() {
        assert!(error_text("redis+cluster://u:pw@h1:7000,h 2:7001").contains("node `h 2:7001`"));
        assert!(error_text("redis+cluster://u:pw@h1:x").contains("node `h1:x`"));
        assert!(error_text("redis+cluster://u:pw@h1:7000?prefx=1").contains("`prefx`"));
    }

    #[test]
    fn a_single_server_url_with_an_unencoded_password_is_refused_without_showing_it() {
        for url in [
            "redis://u:9876?s3cr3t@h",
            "redis://u:9876?s3cr3t&x=y@h",
            "redis://u:9876?s3cr3t=x@h/?prefix=p",
            "redis://u:9876#s3cr3t@h",
            "redis://u:9876/s3cr3t@h",
            "rediss://u:9876?s3cr3t@h:6380/#insecure",
        ] {
            let text = error_text(url);
            assert!(!text.contains("s3cr3t") && !text.contains("9876"), "{text}");
            assert!(text.contains("percent-encode reserved characters in the user and password"), "{text}");
        }
        let text = error_text("redis://h/?prefix=a@b&prefx=c");
        assert!(!text.contains("prefx") && text.contains("write an `@` in a parameter as %40"), "{text}");
    }

    #[test]
    fn debug_shows_no_password() {
        let parsed = parse("redis://user:s3cr3t@h:6380/3?prefix=p&protocol=resp3").expect("a valid URL");
        let debug = format!("{parsed:?} {:?}", parsed.servers);
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("redis://user:***@h:6380/3?protocol=resp3") && debug.contains("\"p\""), "{debug}");

        let parsed = parse("redis+unix:///run/redis.sock?db=2&pass=s3cr3t").expect("a valid URL");
        let debug = format!("{parsed:?} {:?}", parsed.servers);
        assert!(!debug.contains("s3cr3t") && debug.contains("pass=***"), "{debug}");

        let parsed = parse("rediss+cluster://u:s3cr3t@h1:7000,h2:7001#insecure").expect("a valid URL");
        let debug = format!("{parsed:?} {:?}", parsed.servers);
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("rediss://u:***@h1:7000/#insecure") && debug.contains("h2:7001"), "{debug}");
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
