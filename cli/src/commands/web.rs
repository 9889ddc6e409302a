//! `haul web`: serves the dashboard (haul-web) over the storage until Ctrl-C.

use std::{future::Future, sync::Arc};

use haul::Storage;
use haul_web::{Auth, Dashboard, WebError};
use tokio::net::TcpListener;

use crate::{Exit, Io, args::WebArgs, error::CliError};

/// Serves the dashboard on `args.bind` until `shutdown` completes, after printing the
/// URL it serves at. An unsafe address (not loopback, no auth) is bad usage; an address
/// that cannot be bound, or a server that fails, is a failure.
pub(super) async fn run(
    storage: Arc<dyn Storage>,
    io: &mut Io<'_>,
    json: bool,
    args: &WebArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Exit, CliError> {
    let auth = match (&args.token, &args.basic) {
        (Some(token), _) => Auth::Token(token.clone()),
        (None, Some(basic)) => {
            let (user, password) =
                crate::args::parse_basic(basic).map_err(|error| CliError::Usage(format!("--basic: {error}")))?;
            Auth::Basic { user, password }
        }
        (None, None) => Auth::None,
    };
    let dashboard = Dashboard::new(storage).read_only(args.read_only).auth(auth);
    if let Err(error) = dashboard.check_bind(args.bind) {
        return Err(CliError::Usage(error.to_string()));
    }
    let listener = match TcpListener::bind(args.bind).await {
        Ok(listener) => listener,
        Err(source) => return failed(io, &WebError::Bind { addr: args.bind, source }),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return failed(io, &WebError::Serve(error)),
    };
    let url = format!("http://{addr}/");
    if json {
        io.json_line(&serde_json::json!({ "url": url, "read_only": args.read_only, "token": args.token.is_some() }))?;
        io.err_line("press Ctrl-C to stop")?;
    } else {
        let mut note = format!("serving the haul dashboard at {url}");
        if args.read_only {
            note.push_str(" (read-only)");
        }
        if args.token.is_some() {
            note.push_str("; open it once with ?token=<token> in the URL");
        }
        io.out_line(&note)?;
        io.out_line("press Ctrl-C to stop")?;
    }
    io.flush()?;
    match haul_web::serve_until(dashboard, listener, shutdown).await {
        Ok(()) => Ok(Exit::Success),
        Err(error) => failed(io, &error),
    }
}

/// Reports a server failure and ends with [`Exit::Failure`].
fn failed(io: &mut Io<'_>, error: &WebError) -> Result<Exit, CliError> {
    io.err_line(&format!("error: {error}"))?;
    Ok(Exit::Failure)
}

#[cfg(test)]
mod tests {
    use haul::MemoryStorage;

    use super::*;

    fn args(bind: &str) -> WebArgs {
        WebArgs { bind: bind.parse().unwrap(), read_only: false, token: None, basic: None }
    }

    async fn serve(args: &WebArgs) -> (Result<Exit, CliError>, String, String) {
        serve_as(args, false).await
    }

    async fn serve_as(args: &WebArgs, json: bool) -> (Result<Exit, CliError>, String, String) {
        let (mut out, mut err, mut input) = (Vec::new(), Vec::new(), std::io::empty());
        let mut input = std::io::BufReader::new(&mut input);
        let outcome = {
            let mut io = Io::new(&mut out, &mut err, &mut input);
            run(Arc::new(MemoryStorage::new()), &mut io, json, args, async {}).await
        };
        (outcome, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[tokio::test]
    async fn it_prints_the_url_then_serves_until_told_to_stop() {
        let (outcome, out, _) = serve(&args("127.0.0.1:0")).await;
        assert!(matches!(outcome, Ok(Exit::Success)));
        assert!(out.starts_with("serving the haul dashboard at http://127.0.0.1:"), "{out}");
    }

    #[tokio::test]
    async fn with_json_it_prints_one_json_object_and_its_note_on_stderr() {
        let (outcome, out, err) = serve_as(&args("127.0.0.1:0"), true).await;
        assert!(matches!(outcome, Ok(Exit::Success)));
        let lines: Vec<serde_json::Value> = out.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(lines[0]["url"].as_str().is_some_and(|url| url.starts_with("http://127.0.0.1:")), "{out}");
        assert_eq!((&lines[0]["read_only"], &lines[0]["token"]), (&false.into(), &false.into()));
        assert_eq!(err, "press Ctrl-C to stop\n");
    }

    #[tokio::test]
    async fn a_public_address_without_auth_is_bad_usage() {
        let (outcome, out, _) = serve(&args("0.0.0.0:0")).await;
        let Err(error) = outcome else { panic!("refused") };
        assert_eq!(error.exit(), Exit::Usage);
        assert!(error.to_string().contains("--token"), "{error}");
        assert!(out.is_empty());
        let mut locked = args("0.0.0.0:0");
        locked.basic = Some("ops:pw".into());
        assert!(matches!(serve(&locked).await.0, Ok(Exit::Success)));
    }
}
