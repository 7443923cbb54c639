//! Headless Chromium driven through chromedriver's W3C WebDriver protocol: just the commands
//! the studio's browser tests use (open a URL, find by CSS, click, read text and attributes,
//! run a script, take a screenshot).
//!
//! Hand-written over [`super::http`] rather than a WebDriver crate: fantoccini without TLS
//! still brings 30 crates (a second `http`, `cookie`, `time`, ICU 1.x) for these few JSON
//! requests to a loopback port.
//!
//! The binaries are Debian's `chromium` and `chromium-driver` packages (`scripts/test`
//! installs them), or `KORM_TEST_CHROMIUM` and `KORM_TEST_CHROMEDRIVER`. A missing
//! chromedriver fails the test under `scripts/test` (`KORM_TEST_RUN=1`); under a plain
//! `cargo test` it prints a loud skip line instead, as the database tests do.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

#[path = "http.rs"]
pub mod http;

/// How long a page, an element or chromedriver itself may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// The key W3C WebDriver gives an element reference under.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child on a port of its own with one headless Chromium session; both end
/// when this drops.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    authority: String,
    session: String,
    /// What chromedriver has printed, for the failure messages.
    log: Arc<Mutex<String>>,
}

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session
    /// (1280x900), or returns `None` (after a loud skip line) when chromedriver is not
    /// installed outside `scripts/test`.
    ///
    /// # Panics
    /// When chromedriver is missing under `KORM_TEST_RUN`, or does not start, or refuses the
    /// session (its output is in the message).
    pub fn start() -> Option<Browser> {
        let driver_path = binary("KORM_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("KORM_TEST_CHROMIUM", "/usr/bin/chromium");
        for (what, path) in [("chromedriver", &driver_path), ("chromium", &chromium)] {
            if !path.exists() {
                let message = format!(
                    "{what} is not at {} (Debian's chromium and chromium-driver packages; \
                     scripts/test installs them, or set KORM_TEST_CHROMEDRIVER and \
                     KORM_TEST_CHROMIUM)",
                    path.display()
                );
                if std::env::var_os("KORM_TEST_RUN").is_some() {
                    panic!("{message}");
                }
                eprintln!("\n!!!! SKIPPED: {message}\n");
                return None;
            }
        }
        // Port 0: chromedriver picks a free port and says which, so two tests never race for one.
        let mut driver = Command::new(&driver_path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_path.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = driver.stdout.take().expect("chromedriver's stdout");
        let lines = log.clone();
        // The reader keeps draining after the port line: a full pipe would stall chromedriver.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
                let mut log = lines.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let port = match port_rx.recv_timeout(PATIENCE) {
            Ok(port) => port,
            Err(_) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!(
                    "chromedriver did not say its port within {PATIENCE:?}; it printed:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        let mut browser = Browser {
            driver,
            authority: format!("127.0.0.1:{port}"),
            session: String::new(),
            log,
        };
        browser.await_ready();
        let session = browser.command(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--window-size=1280,900",
                    ],
                },
            }}}),
        );
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a new session without an id: {session}"))
            .to_owned();
        Some(browser)
    }

    /// Waits for chromedriver's `/status` to say it is ready.
    fn await_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = http::request(&self.authority, "GET", "/status", &[], b"")
                .ok()
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver at {} is not ready after {PATIENCE:?}; it printed:\n{}",
                self.authority,
                self.log.lock().unwrap_or_else(|e| e.into_inner())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one WebDriver command and returns its `value`; an error answer panics with
    /// chromedriver's error and message.
    #[track_caller]
    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    /// [`Browser::command`], with the error given back as text.
    fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let response = http::request(
            &self.authority,
            method,
            path,
            &[("Content-Type", "application/json; charset=utf-8")],
            &body,
        )
        .map_err(|e| format!("chromedriver at {}: {e}", self.authority))?;
        let answer: Value = serde_json::from_slice(&response.body)
            .map_err(|e| format!("a reply that is not JSON ({e}): {}", response.text()))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if response.status != 200 {
            return Err(format!(
                "{} {}: {}",
                response.status, value["error"], value["message"]
            ));
        }
        Ok(value)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for it to load.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.command("POST", &self.session_path("/url"), json!({ "url": url }));
        self.await_loaded();
    }

    /// The URL of the page shown.
    #[track_caller]
    pub fn url(&self) -> String {
        let value = self.command("GET", &self.session_path("/url"), Value::Null);
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The page's title.
    #[track_caller]
    pub fn title(&self) -> String {
        let value = self.command("GET", &self.session_path("/title"), Value::Null);
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The page's HTML as the browser holds it now.
    #[track_caller]
    pub fn source(&self) -> String {
        let value = self.command("GET", &self.session_path("/source"), Value::Null);
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body: `return ...`) in the page with `args`; its result.
    #[track_caller]
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            &self.session_path("/execute/sync"),
            json!({ "script": script, "args": args }),
        )
    }

    /// Waits until `script` returns `true` in the page.
    #[track_caller]
    pub fn await_true(&self, what: &str, script: &str) {
        let started = Instant::now();
        while self.execute(script, json!([])) != true {
            assert!(
                started.elapsed() < PATIENCE,
                "{what}: not so after {PATIENCE:?} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn await_loaded(&self) {
        self.await_true(
            "the page is loaded",
            "return document.readyState === 'complete'",
        );
    }

    /// Every element matching CSS `selector`, in document order (none is no error).
    #[track_caller]
    pub fn find_all(&self, selector: &str) -> Vec<Element<'_>> {
        let value = self.command(
            "POST",
            &self.session_path("/elements"),
            json!({ "using": "css selector", "value": selector }),
        );
        self.elements(value)
    }

    /// The first element matching CSS `selector`; none panics, naming it and the page.
    #[track_caller]
    pub fn find(&self, selector: &str) -> Element<'_> {
        self.find_all(selector)
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "no element matches {selector:?} on {}:\n{}",
                    self.url(),
                    self.source()
                )
            })
    }

    fn elements(&self, value: Value) -> Vec<Element<'_>> {
        value
            .as_array()
            .map(|found| {
                found
                    .iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|id| Element {
                        browser: self,
                        id: id.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets every cookie of the page's site (the studio's login).
    #[track_caller]
    pub fn delete_cookies(&self) {
        self.command("DELETE", &self.session_path("/cookie"), Value::Null);
    }

    /// Saves a PNG of the window to `path` (its folder is made).
    #[track_caller]
    pub fn screenshot(&self, path: &Path) {
        let value = self.command("GET", &self.session_path("/screenshot"), Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("a screenshot that is not base64: {e}"));
        assert!(
            png.starts_with(b"\x89PNG"),
            "a screenshot that is not a PNG"
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_command("DELETE", &self.session_path(""), Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the page it was found on.
#[derive(Debug)]
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl<'b> Element<'b> {
    fn path(&self, rest: &str) -> String {
        self.browser
            .session_path(&format!("/element/{}{rest}", self.id))
    }

    /// Its rendered text (what a user sees, trimmed by the browser).
    #[track_caller]
    pub fn text(&self) -> String {
        let value = self
            .browser
            .command("GET", &self.path("/text"), Value::Null);
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Its attribute `name`, or `None` when it has none.
    #[track_caller]
    pub fn attr(&self, name: &str) -> Option<String> {
        let value = self.browser.command(
            "GET",
            &self.path(&format!("/attribute/{name}")),
            Value::Null,
        );
        value.as_str().map(str::to_owned)
    }

    /// Its DOM property `name` (`href` gives the absolute URL).
    #[track_caller]
    pub fn property(&self, name: &str) -> Value {
        self.browser
            .command("GET", &self.path(&format!("/property/{name}")), Value::Null)
    }

    /// Every element inside it matching CSS `selector`.
    #[track_caller]
    pub fn find_all(&self, selector: &str) -> Vec<Element<'b>> {
        let value = self.browser.command(
            "POST",
            &self.path("/elements"),
            json!({ "using": "css selector", "value": selector }),
        );
        self.browser.elements(value)
    }

    /// The first element inside it matching CSS `selector`; none panics.
    #[track_caller]
    pub fn find(&self, selector: &str) -> Element<'b> {
        self.find_all(selector)
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "no {selector:?} inside {:?} on {}",
                    self.text(),
                    self.browser.url()
                )
            })
    }

    /// Clicks it.
    #[track_caller]
    pub fn click(&self) {
        self.browser
            .command("POST", &self.path("/click"), json!({}));
    }

    /// Types `text` into it (an input or a textarea), after what it holds.
    #[track_caller]
    pub fn type_text(&self, text: &str) {
        self.browser
            .command("POST", &self.path("/value"), json!({ "text": text }));
    }

    /// Empties it (an input or a textarea).
    #[track_caller]
    pub fn clear(&self) {
        self.browser
            .command("POST", &self.path("/clear"), json!({}));
    }

    /// Clicks it and waits for the new page it leads to (a form's submit button, even when
    /// the answer's URL is the page's own) to load.
    #[track_caller]
    pub fn click_to_new_page(&self) {
        let browser = self.browser;
        // A mark on the old document: gone once another has replaced it.
        browser.execute("window.__kormOldPage = true", json!([]));
        self.click();
        browser.await_true(
            "a new page has loaded",
            "return window.__kormOldPage === undefined && document.readyState === 'complete'",
        );
    }

    /// Clicks it and waits until the page shown has a URL for which `arrived` holds, and
    /// has loaded (a form's submit button).
    #[track_caller]
    pub fn click_until(&self, arrived: impl Fn(&str) -> bool) {
        let browser = self.browser;
        self.click();
        let started = Instant::now();
        while !arrived(&browser.url()) {
            assert!(
                started.elapsed() < PATIENCE,
                "the click led to {}, not where expected",
                browser.url()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        browser.await_loaded();
    }

    /// Clicks a link and waits for the page it leads to (its `href`) to load.
    #[track_caller]
    pub fn follow(&self) {
        let target = self.property("href");
        let target = target
            .as_str()
            .unwrap_or_else(|| panic!("{:?} is not a link", self.text()))
            .to_owned();
        let browser = self.browser;
        self.click();
        let started = Instant::now();
        while browser.url() != target {
            assert!(
                started.elapsed() < PATIENCE,
                "the click went to {} instead of {target}",
                browser.url()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        browser.await_loaded();
    }
}
