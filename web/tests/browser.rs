//! The dashboard in a real browser: a headless Chromium, driven through chromedriver
//! (WebDriver), against a dashboard mounted under `/admin` on 127.0.0.1 over a seeded
//! memory storage. It filters the job list from the form, retries a discarded job from
//! its page (accepting the confirmation dialog), and watches the auto-refresh show a
//! change made behind the page's back without reloading it.
//!
//! Needs `chromedriver` and Chromium (Debian: `apt-get install chromium chromium-driver`).
//! Without chromedriver the test says it was skipped and passes, unless
//! `HAUL_REQUIRE_BROWSER` is set (as CI does), when it fails. `HAUL_CHROMEDRIVER` and
//! `HAUL_CHROMIUM` name the two programs when they are elsewhere than on the `PATH` and
//! `/usr/bin/chromium`. With `HAUL_SCREENSHOTS_DIR` set, it saves a PNG of each page
//! there.
//!
//! Every wait polls the page until a deadline (generous, for a loaded machine): nothing
//! sleeps a fixed time hoping the browser got there.
#![cfg(unix)]

use std::{
    env, fs,
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator, wd::Capabilities};
use haul::{
    Admin, JobId, JobOutcome, JobState, MemoryStorage, NewJob, Storage,
    storage::{
        ClaimParams, EnqueueParams, LeadershipParams, PeriodicUpdate, Report, ReportParams, ThroughputSample,
        WorkerBeat,
    },
};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// Set: a missing chromedriver fails the test instead of skipping it.
const REQUIRE_VAR: &str = "HAUL_REQUIRE_BROWSER";
/// A directory to save a screenshot of each page into.
const SCREENSHOTS_VAR: &str = "HAUL_SCREENSHOTS_DIR";
/// The chromedriver program (default: `chromedriver` on the `PATH`, then `/usr/bin`).
const CHROMEDRIVER_VAR: &str = "HAUL_CHROMEDRIVER";
/// The Chromium program (default: `/usr/bin/chromium` when present, else chromedriver's
/// own search).
const CHROMIUM_VAR: &str = "HAUL_CHROMIUM";
/// How to get both programs, for the messages.
const INSTALL_HINT: &str = "install Chromium and its WebDriver (Debian: `apt-get install -y --no-install-recommends \
                            chromium chromium-driver`), or set HAUL_CHROMEDRIVER to a chromedriver program";

/// The longest any one wait on the browser may take (the browser's start, a page load,
/// an element appearing): far above what it takes on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long to wait between two looks at the page.
const POLL: Duration = Duration::from_millis(50);
/// The dashboard's auto-refresh period in this test.
const REFRESH: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_browser() {
    let Some(driver_program) = find_chromedriver() else {
        if env::var_os(REQUIRE_VAR).is_some() {
            panic!("chromedriver was not found and {REQUIRE_VAR} is set: {INSTALL_HINT}");
        }
        // Straight to the process's stderr, past the test harness's capture, so the skip
        // shows in a passing run.
        let _ = writeln!(
            std::io::stderr(),
            "browser test skipped: chromedriver was not found ({INSTALL_HINT}; set {REQUIRE_VAR} to make this a \
             failure)"
        );
        return;
    };
    let started = Instant::now();

    let storage = Arc::new(MemoryStorage::new());
    let seeded = seed(&storage).await;
    let base = serve_dashboard(&storage).await;
    let driver = Chromedriver::start(&driver_program);
    let browser = Browser::open(&driver).await;
    let c = &browser.client;

    // Overview: one row per queue.
    c.goto(&base).await.expect("the overview loads");
    wait_for_element(c, r#"table#queues tr[data-queue="mail"]"#).await;
    wait_for_element(c, r#"table#queues tr[data-queue="reports"]"#).await;
    browser.screenshot("01-overview").await;

    // The job list, filtered from its form to the discarded jobs of `mail`.
    navigate(c, "the job list", async || click(c, "a#nav-jobs").await).await;
    navigate(c, "the filtered job list", async || {
        let form = c.find(Locator::Css("form#job-filter")).await.map_err(|e| e.to_string())?;
        let state = form.find(Locator::Css("select[name=state]")).await.map_err(|e| e.to_string())?;
        state.select_by_value("discarded").await.map_err(|e| e.to_string())?;
        let queue = form.find(Locator::Css("input[name=queue]")).await.map_err(|e| e.to_string())?;
        queue.clear().await.map_err(|e| e.to_string())?;
        queue.send_keys("mail").await.map_err(|e| e.to_string())?;
        // The auto-refresh replaces the form unless one of its fields has the focus (the
        // text field has it now): check that it did not between the two fields.
        let state = state.prop("value").await.map_err(|e| e.to_string())?;
        let queue = queue.prop("value").await.map_err(|e| e.to_string())?;
        if state.as_deref() != Some("discarded") || queue.as_deref() != Some("mail") {
            return Err(format!("the form was reset to state {state:?}, queue {queue:?}"));
        }
        form.find(Locator::Css("button#apply-filter"))
            .await
            .map_err(|e| e.to_string())?
            .click()
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let url = c.current_url().await.expect("the URL is readable");
    let query: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert!(
        query.contains(&("state".into(), "discarded".into())) && query.contains(&("queue".into(), "mail".into())),
        "the filter form leads to the filtered list, not to {url}"
    );
    let mut listed = eventually("the discarded jobs of `mail` in table#jobs", async || {
        let rows = job_rows(c).await?;
        if rows.len() == seeded.discarded_mail.len() { Ok(rows) } else { Err(format!("{} rows: {rows:?}", rows.len())) }
    })
    .await;
    for (id, state) in &listed {
        assert_eq!(state, "discarded", "row {id} of the list filtered to discarded");
    }
    listed.sort();
    let mut expected: Vec<String> = seeded.discarded_mail.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(listed.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), expected, "the listed jobs");
    browser.screenshot("02-jobs-discarded").await;

    // One of them: its page, then a retry from it.
    let job = seeded.discarded_mail[0];
    navigate(c, "the job's page", async || click(c, &format!(r#"tr.job[data-id="{job}"] a.job-link"#)).await).await;
    wait_for_text(c, "span#job-state", "discarded").await;
    let errors = c.find_all(Locator::Css("ol#job-errors li")).await.expect("the error list is readable");
    assert_eq!(errors.len(), 2, "one error per failed attempt");
    browser.screenshot("03-job-discarded").await;

    navigate(c, "the retry's answer", async || click(c, "button#retry-button").await).await;
    wait_for_text(c, "span#job-state", "available").await;
    let stored = storage.get(job).await.expect("get succeeds").expect("the job is stored");
    assert_eq!(stored.state, JobState::Available, "the retried job in storage");
    browser.screenshot("04-job-retried").await;

    // Auto-refresh: a change behind the page's back shows without a reload.
    assert!(
        c.find(Locator::Css("body[data-refresh-ms]")).await.is_ok(),
        "the page announces its refresh period on <body data-refresh-ms>"
    );
    c.execute("window.hauls_browser_test_marker = 'still here';", vec![]).await.expect("the marker is set");
    storage.cancel(job, None).await.expect("the job is cancelled behind the page's back");
    wait_for_text(c, "span#job-state", "cancelled").await;
    let marker = c.execute("return window.hauls_browser_test_marker;", vec![]).await.expect("the marker is readable");
    assert_eq!(marker, json!("still here"), "the page refreshed its content without reloading");

    // The other pages.
    navigate(c, "the workers page", async || click(c, "a#nav-workers").await).await;
    wait_for_text_containing(c, "main#content", "worker-a").await;
    browser.screenshot("05-workers").await;
    navigate(c, "the periodic page", async || click(c, "a#nav-periodic").await).await;
    wait_for_text_containing(c, "main#content", "nightly_report").await;
    browser.screenshot("06-periodic").await;

    browser.close().await;
    drop(driver);
    let _ = writeln!(std::io::stderr(), "browser test passed in {:.1} s", started.elapsed().as_secs_f64());
}

/// What [`seed`] stored that the test looks for.
struct Seeded {
    /// The discarded jobs of queue `mail` (each failed twice).
    discarded_mail: Vec<JobId>,
}

/// Fills `storage`: in `mail`, discarded, completed and available jobs; in `reports`, one
/// discarded (which the `mail` filter must leave out), completed and available jobs;
/// a live worker and its leadership, a schedule, and an hour of throughput.
async fn seed(storage: &MemoryStorage) -> Seeded {
    let errors = ["SMTP 451: try again later", "SMTP 550: mailbox unavailable"];
    let discarded_mail =
        enqueue(storage, "mail", "send_welcome_email", 3, 2, |n| json!({ "to": format!("user{n}@example.com") })).await;
    for error in errors {
        fail_all(storage, "mail", &discarded_mail, error).await;
        storage.promote_due(Some(Utc::now() + chrono::Duration::minutes(1))).await.expect("promote_due succeeds");
    }
    let completed_mail = enqueue(storage, "mail", "send_digest", 4, 20, |n| json!({ "digest": n })).await;
    complete_all(storage, "mail", &completed_mail).await;

    let discarded_reports =
        enqueue(storage, "reports", "build_report", 1, 1, |n| json!({ "report": n, "format": "pdf" })).await;
    fail_all(storage, "reports", &discarded_reports, "template `monthly` not found").await;
    let completed_reports = enqueue(storage, "reports", "build_report", 2, 20, |n| json!({ "report": n })).await;
    complete_all(storage, "reports", &completed_reports).await;

    enqueue(storage, "mail", "send_welcome_email", 5, 20, |n| json!({ "to": format!("new{n}@example.com") })).await;
    enqueue(storage, "reports", "build_report", 3, 20, |n| json!({ "report": 100 + n })).await;

    let now = Utc::now();
    storage
        .beat_worker(
            WorkerBeat::new("worker-a", now - chrono::Duration::minutes(42), Duration::from_secs(3600))
                .process("app-1", 4242)
                .serving(vec!["mail".into(), "reports".into()], 8)
                .held(2),
        )
        .await
        .expect("beat_worker succeeds");
    storage
        .acquire_leadership(LeadershipParams::new("worker-a", Duration::from_secs(3600)))
        .await
        .expect("acquire_leadership succeeds");
    let today_at_3 = now.date_naive().and_hms_opt(3, 0, 0).expect("03:00 is a time").and_utc();
    let last_tick = if today_at_3 <= now { today_at_3 } else { today_at_3 - chrono::Duration::days(1) };
    storage
        .save_periodic(
            PeriodicUpdate::new("nightly_report", "0 3 * * *")
                .last_tick(last_tick)
                .next_tick(last_tick + chrono::Duration::days(1)),
        )
        .await
        .expect("save_periodic succeeds");
    let samples = (1..=60)
        .flat_map(|minutes_ago: i64| {
            let at = now - chrono::Duration::minutes(minutes_ago);
            let wave = u64::try_from((minutes_ago * 7) % 23).unwrap_or(0);
            [ThroughputSample::new("mail", at, 20 + wave, wave / 5), ThroughputSample::new("reports", at, 3, 0)]
        })
        .collect();
    storage.record_throughput(samples, None).await.expect("record_throughput succeeds");

    Seeded { discarded_mail }
}

/// Enqueues `count` jobs of `kind` on `queue` with `max_attempts`, arguments made by
/// `args` from the job's number.
async fn enqueue(
    storage: &MemoryStorage,
    queue: &str,
    kind: &str,
    count: usize,
    max_attempts: u32,
    args: impl Fn(usize) -> Value,
) -> Vec<JobId> {
    let jobs = (0..count).map(|n| NewJob::new(kind, args(n)).queue(queue).max_attempts(max_attempts)).collect();
    storage.enqueue(EnqueueParams::new(jobs)).await.expect("enqueue succeeds").ids
}

/// Claims every available job of `queue` (which must be exactly `jobs`) and reports
/// `outcome` for each.
async fn report_all(storage: &MemoryStorage, queue: &str, jobs: &[JobId], outcome: JobOutcome) {
    let claimed = storage.claim(ClaimParams::new([queue], 100).worker_id("worker-a")).await.expect("claim succeeds");
    let mut claimed_ids: Vec<JobId> = claimed.iter().map(|job| job.id).collect();
    let mut wanted = jobs.to_vec();
    claimed_ids.sort();
    wanted.sort();
    assert_eq!(claimed_ids, wanted, "the claim on `{queue}` takes the jobs just seeded");
    let reports = claimed
        .iter()
        .map(|job| Report { claim: job.claim().expect("a claimed job has a claim"), outcome: outcome.clone() })
        .collect();
    let outcome = storage.report(ReportParams::new(reports)).await.expect("report succeeds");
    assert_eq!(outcome.applied.len(), jobs.len(), "every report applies");
}

/// One failed attempt for each of `jobs`, the only available jobs of `queue`.
async fn fail_all(storage: &MemoryStorage, queue: &str, jobs: &[JobId], error: &str) {
    let outcome = JobOutcome::Failed { error: error.to_owned(), retry_in: Duration::ZERO };
    report_all(storage, queue, jobs, outcome).await;
}

/// Completes `jobs`, the only available jobs of `queue`.
async fn complete_all(storage: &MemoryStorage, queue: &str, jobs: &[JobId]) {
    report_all(storage, queue, jobs, JobOutcome::Completed).await;
}

/// Serves the dashboard over `storage` under `/admin` on a free port of 127.0.0.1, with
/// a short refresh period; returns the overview's URL.
async fn serve_dashboard(storage: &Arc<MemoryStorage>) -> String {
    let admin: Arc<dyn Admin> = Arc::clone(storage) as Arc<dyn Admin>;
    let dashboard = haul_web::Dashboard::new(admin).refresh_interval(REFRESH);
    let app = axum::Router::new().nest("/admin", dashboard.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port is free");
    let address = listener.local_addr().expect("the listener has an address");
    // Ends with the test's runtime.
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/admin")
}

/// The chromedriver program: `HAUL_CHROMEDRIVER`, else `chromedriver` on the `PATH`,
/// else `/usr/bin/chromedriver`.
fn find_chromedriver() -> Option<PathBuf> {
    if let Some(program) = env::var_os(CHROMEDRIVER_VAR) {
        let program = PathBuf::from(program);
        return program.is_file().then_some(program);
    }
    let on_path = env::var_os("PATH")
        .map(|path| env::split_paths(&path).map(|dir| dir.join("chromedriver")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().chain([PathBuf::from("/usr/bin/chromedriver")]).find(|program| program.is_file())
}

/// A chromedriver process of this test, in a process group of its own with the browser it
/// starts. Dropping it (also when the test panics) kills that group and removes the
/// browser's profile; on a panic it first prints the end of chromedriver's log.
struct Chromedriver {
    child: Child,
    port: u16,
    /// Holds the browser's profile (`profile/`) and `chromedriver.log`.
    dir: PathBuf,
}

impl Chromedriver {
    /// Starts `program` on a port it picks itself (`--port=0`, then read from the line it
    /// prints once it listens: no window between choosing a free port and binding it).
    fn start(program: &Path) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = env::temp_dir().join(format!("haul-browser-test-{}-{nanos}", std::process::id()));
        fs::create_dir_all(dir.join("profile")).expect("the browser's profile directory is created");
        let mut child = Command::new(program)
            .arg("--port=0")
            .arg(format!("--log-path={}", dir.join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("chromedriver ({}) does not start: {error}; {INSTALL_HINT}", program.display())
            });
        let stdout = child.stdout.take().expect("chromedriver's stdout is piped");
        // Reads the port, then keeps draining the pipe so chromedriver never blocks on it.
        let (port_tx, port_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split_once("started successfully on port ")
                    .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
            }
        });
        let mut driver = Self { child, port: 0, dir };
        match port_rx.recv_timeout(DEADLINE) {
            Ok(port) => driver.port = port,
            Err(_) => panic!("chromedriver did not say which port it listens on within {DEADLINE:?}"),
        }
        driver
    }

    /// The WebDriver endpoint.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        if thread::panicking()
            && let Ok(log) = fs::read_to_string(self.dir.join("chromedriver.log"))
        {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("the end of chromedriver's log:");
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
        // The group is chromedriver's own (process_group(0)): its id is chromedriver's pid,
        // and the browser processes chromedriver started are in it.
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A WebDriver session with a headless Chromium.
struct Browser {
    client: Client,
    screenshots: Option<PathBuf>,
}

impl Browser {
    /// Opens a session on `driver`. The flags keep Chromium from reaching out to the
    /// network (on a machine without it, blocked connections otherwise hang it), and
    /// `unhandledPromptBehavior: ignore` leaves a `confirm()` open for the test to accept.
    async fn open(driver: &Chromedriver) -> Self {
        let mut options = json!({
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", driver.dir.join("profile").display()),
            ],
        });
        let chromium = env::var_os(CHROMIUM_VAR)
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|path| path.is_file()));
        if let Some(chromium) = chromium {
            options["binary"] = json!(chromium.display().to_string());
        }
        let mut capabilities = Capabilities::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        capabilities.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let connect =
            async { ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&driver.url()).await };
        let client = match tokio::time::timeout(DEADLINE * 2, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => panic!("chromedriver could not start Chromium: {error}; {INSTALL_HINT}"),
            Err(_) => panic!("chromedriver did not start Chromium within {:?}", DEADLINE * 2),
        };
        let screenshots = env::var_os(SCREENSHOTS_VAR).map(PathBuf::from);
        if let Some(dir) = &screenshots {
            fs::create_dir_all(dir).expect("the screenshots directory is created");
        }
        Self { client, screenshots }
    }

    /// Saves a PNG of the window as `<name>.png` when screenshots are asked for.
    async fn screenshot(&self, name: &str) {
        let Some(dir) = &self.screenshots else { return };
        let png = self.client.screenshot().await.expect("the browser takes a screenshot");
        let path = dir.join(format!("{name}.png"));
        fs::write(&path, png).unwrap_or_else(|error| panic!("{} cannot be written: {error}", path.display()));
    }

    /// Ends the session, which closes Chromium.
    async fn close(self) {
        self.client.close().await.expect("the WebDriver session ends");
    }
}

/// Runs `probe` until it answers `Ok`, at most [`DEADLINE`]; then fails the test with
/// `what` and the probe's last answer.
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Finds the element `css`, then clicks it. The caller retries: the auto-refresh may
/// replace the element between the two.
async fn click(c: &Client, css: &str) -> Result<(), String> {
    let element = c.find(Locator::Css(css)).await.map_err(|error| format!("{css}: {error}"))?;
    element.click().await.map_err(|error| format!("clicking {css}: {error}"))
}

/// Waits until an element matches `css`.
async fn wait_for_element(c: &Client, css: &str) {
    eventually(css, async || c.find(Locator::Css(css)).await.map(drop).map_err(|error| error.to_string())).await;
}

/// The trimmed text of the element `css`.
async fn text_of(c: &Client, css: &str) -> Result<String, String> {
    let element = c.find(Locator::Css(css)).await.map_err(|error| error.to_string())?;
    let text = element.text().await.map_err(|error| error.to_string())?;
    Ok(text.trim().to_owned())
}

/// Waits until the element `css` reads `expected`.
async fn wait_for_text(c: &Client, css: &str, expected: &str) {
    eventually(&format!("{css} to read {expected:?}"), async || match text_of(c, css).await? {
        text if text == expected => Ok(()),
        text => Err(format!("{text:?}")),
    })
    .await;
}

/// Waits until the element `css` contains `expected`.
async fn wait_for_text_containing(c: &Client, css: &str, expected: &str) {
    eventually(&format!("{css} to contain {expected:?}"), async || match text_of(c, css).await? {
        text if text.contains(expected) => Ok(()),
        text => Err(format!("{text:?}")),
    })
    .await;
}

/// The rows of `table#jobs`: each `tr.job`'s `data-id` and the text of its `td.state`.
async fn job_rows(c: &Client) -> Result<Vec<(String, String)>, String> {
    let mut rows = Vec::new();
    for row in c.find_all(Locator::Css("table#jobs tr.job")).await.map_err(|error| error.to_string())? {
        let id = row.attr("data-id").await.map_err(|error| error.to_string())?.ok_or("a row without data-id")?;
        let state = row.find(Locator::Css("td.state")).await.map_err(|error| format!("row {id}: {error}"))?;
        let state = state.text().await.map_err(|error| error.to_string())?;
        rows.push((id, state.trim().to_owned()));
    }
    Ok(rows)
}

/// Marks the current document, so that [`is_new_document`] tells when another replaced
/// it (a navigation), as opposed to the auto-refresh changing it in place.
async fn mark_document(c: &Client) {
    eventually("the document to take a marker", async || {
        c.execute("window.hauls_browser_test_document = true;", vec![]).await.map(drop).map_err(|e| e.to_string())
    })
    .await;
}

/// Whether the document marked by [`mark_document`] was replaced by another that has
/// loaded.
async fn is_new_document(c: &Client) -> Result<bool, String> {
    let script = "return window.hauls_browser_test_document === undefined && document.readyState === 'complete';";
    let answer = c.execute(script, vec![]).await.map_err(|error| error.to_string())?;
    Ok(answer == json!(true))
}

/// Runs `action` (retried until it succeeds: the auto-refresh may replace the elements
/// it uses between finding and clicking them) and waits until it has led to a new
/// document, called `what`, accepting the `confirm()` dialog the page may open before a
/// destructive action.
async fn navigate(c: &Client, what: &str, mut action: impl AsyncFnMut() -> Result<(), String>) {
    mark_document(c).await;
    eventually(&format!("the action that opens {what}"), async || action().await).await;
    eventually(&format!("{what} to load"), async || {
        if c.get_alert_text().await.is_ok() {
            c.accept_alert().await.map_err(|error| format!("accepting the dialog: {error}"))?;
        }
        match is_new_document(c).await? {
            true => Ok(()),
            false => Err("still the previous document".to_owned()),
        }
    })
    .await;
}
