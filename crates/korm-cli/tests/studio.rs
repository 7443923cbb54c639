//! `korm studio` over HTTP: the built binary started as a child on real pools (a SQLite file
//! with a local depot, and PostgreSQL beside it), spoken to with a plain HTTP/1.1 client over
//! a TCP stream: the token and cookie, the Host check, the pages, escaping of hostile values,
//! secrets that never leave, read-only refusal, edits and stale edits, files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use korm::{Encrypted, Unique};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[path = "support/http.rs"]
mod http;
#[path = "../../korm/tests/support/mod.rs"]
mod support;

const KEY: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const SSN: &str = "078-05-1120-cleartext";
const HOSTILE: &str = "<script>alert(1)</script>";
const HOSTILE_KEY: &str = "<img src=x onerror=alert(2)>";
/// A depot file name can hold no space or `/`, but `<`, `>`, `"`, `'` and `&`.
const HOSTILE_FILE: &str = "<img\"src=x'onerror=alert(3)>&.txt";
const README: &str = "Invoices of the quarry.\nLine <two> & more.\n";
/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    make: String,
    year: i64,
    meta: Value,
    ssn: Encrypted<String>,
    vin: Unique<String>,
}

fn install_key() {
    korm::crypto::install(korm::crypto::KeyRing::new(
        korm::crypto::EncryptionKey::from_hex(KEY).expect("key"),
    ));
}

/// A running `korm studio`, killed when dropped.
struct Running {
    child: Child,
    /// The rest of its stdout, after the line it printed.
    stdout: BufReader<std::process::ChildStdout>,
    port: u16,
    token: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `korm studio ARGS` and reads the one line it prints.
fn start(args: &[&str], env: &[(&str, &str)], with_key: bool) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_korm"));
    command
        .arg("studio")
        .args(args)
        .env_remove("KORM_ENV")
        .env_remove("KORM_ENCRYPTION_KEY")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if with_key {
        command.env("KORM_ENCRYPTION_KEY", KEY);
    }
    let mut child = command.spawn().expect("start korm studio");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("read the studio's line");
    let url = line
        .trim()
        .strip_prefix("korm studio: http://127.0.0.1:")
        .unwrap_or_else(|| panic!("the studio printed {line:?}"));
    let (port, token) = url.split_once("/?token=").expect("url with a token");
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    Running {
        port: port.parse().expect("port"),
        token: token.to_owned(),
        child,
        stdout,
    }
}

/// A response.
/// One request to the studio on `port` (a POST's body is a form), the response read whole.
fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Response {
    let mut headers = headers.to_vec();
    if method == "POST" {
        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
    }
    http::request(
        &format!("127.0.0.1:{port}"),
        method,
        target,
        &headers,
        body.as_bytes(),
    )
    .expect("an HTTP response")
}

/// A browser that entered the studio: its cookie, sent with every request.
struct Session<'a> {
    studio: &'a Running,
    cookie: String,
    /// Every page body seen, to check a secret never appears in any.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Session<'_> {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.studio.port)
    }

    fn get(&self, target: &str) -> http::Response {
        let host = self.host();
        let resp = request(
            self.studio.port,
            "GET",
            target,
            &[("Host", &host), ("Cookie", &self.cookie)],
            "",
        );
        self.seen.borrow_mut().push(resp.text());
        resp
    }

    /// A page that must answer 200.
    fn page(&self, target: &str) -> String {
        let resp = self.get(target);
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
        resp.text()
    }

    fn post(&self, target: &str, form: &[(&str, &str)]) -> http::Response {
        let host = self.host();
        let origin = format!("http://{host}");
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        let resp = request(
            self.studio.port,
            "POST",
            target,
            &[
                ("Host", &host),
                ("Cookie", &self.cookie),
                ("Origin", &origin),
            ],
            &body.join("&"),
        );
        self.seen.borrow_mut().push(resp.text());
        resp
    }
}

/// Enters with the token: a 303 to the URL without it, and the cookie.
fn enter(studio: &Running) -> Session<'_> {
    let host = format!("127.0.0.1:{}", studio.port);
    let resp = request(
        studio.port,
        "GET",
        &format!("/?token={}", studio.token),
        &[("Host", &host)],
        "",
    );
    assert_eq!(resp.status, 303, "{}", resp.text());
    assert_eq!(resp.header("location"), Some("/"));
    let cookie = resp.header("set-cookie").expect("a cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_owned();
    assert_eq!(
        pair,
        format!("korm_studio_{}={}", studio.port, studio.token)
    );
    Session {
        studio,
        cookie: pair,
        seen: Default::default(),
    }
}

// Percent-encodes a query or form value.
use http::encode as enc;

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Every `<a class="CLASS" href="...">TEXT</a>`: the href and the text, unescaped.
fn links(html: &str, class: &str) -> Vec<(String, String)> {
    let marker = format!(r#"<a class="{class}" href=""#);
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&marker) {
        rest = &rest[at + marker.len()..];
        let end = rest.find('"').expect("href end");
        let href = unescape(&rest[..end]);
        let text_start = rest.find('>').expect("tag end") + 1;
        let text_end = rest.find("</a>").expect("a end");
        out.push((href, unescape(&rest[text_start..text_end])));
        rest = &rest[text_end..];
    }
    out
}

/// The `id="ID"` element's `href`, if there is one.
fn href_of(html: &str, id: &str) -> Option<String> {
    let marker = format!(r#"id="{id}" href=""#);
    let at = html.find(&marker)? + marker.len();
    let end = html[at..].find('"')?;
    Some(unescape(&html[at..at + end]))
}

/// The value of the hidden input `name`, or the text of the textarea `name`.
fn form_value(html: &str, name: &str) -> String {
    let input = format!(r#"name="{name}" value=""#);
    if let Some(at) = html.find(&input) {
        let at = at + input.len();
        let end = html[at..].find('"').expect("value end");
        return unescape(&html[at..at + end]);
    }
    let textarea = format!(r#"<textarea name="{name}""#);
    let at = html.find(&textarea).expect("textarea");
    let start = at + html[at..].find('>').expect("tag end") + 1;
    let end = start + html[start..].find("</textarea>").expect("textarea end");
    unescape(&html[start..end])
}

fn span_count(html: &str) -> u64 {
    let marker = r#"<span id="count">"#;
    let at = html.find(marker).expect("span#count") + marker.len();
    let end = html[at..].find('<').expect("end");
    html[at..at + end].parse().expect("a number")
}

/// Writes `n` cars (one with hostile text) into `layer`; returns their RNs and years.
async fn cars(pool: &korm::Pool, layer: &str, n: i64) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for i in 0..n {
        let year = 1990 + (i * 7) % 35;
        let meta = if i == 0 {
            json!({ "tier": HOSTILE, HOSTILE_KEY: "hostile key", "invoice": "[rn][depot::files]:notes:readme.txt" })
        } else {
            json!({ "tier": if i % 3 == 0 { "gold" } else { "silver" } })
        };
        let item = korm::item::<Car>(pool)
            .from_data(
                format!("[rn][from::{layer}]:cars:suv:*")
                    .parse()
                    .expect("rn"),
                Car {
                    make: format!("Make {i:03}"),
                    year,
                    meta,
                    ssn: Encrypted::new(SSN.into()),
                    vin: Unique::new(format!("VIN-{layer}-{i}-{}", uuid::Uuid::new_v4().simple())),
                },
            )
            .expect("floating")
            .create()
            .await
            .expect("create");
        out.push((item.rn().to_string(), year));
    }
    out
}

/// A SQLite file with 120 cars and a depot folder with a text file and a hostile name.
struct Fixture {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    files: std::path::PathBuf,
    cars: Vec<(String, i64)>,
}

async fn fixture() -> Fixture {
    install_key();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cars.sqlite");
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("notes")).expect("depot folder");
    std::fs::write(files.join("notes").join("readme.txt"), README).expect("readme");
    std::fs::write(files.join("notes").join(HOSTILE_FILE), "hostile").expect("hostile file");
    std::fs::write(files.join("pixel.png"), PNG).expect("image");
    // korm's own files in the depot: a backup holding a password hash.
    std::fs::create_dir_all(files.join("__korm_backups__").join("cardb")).expect("backups");
    std::fs::write(
        files
            .join("__korm_backups__")
            .join("cardb")
            .join("backup.ndjson"),
        r#"{"password":"$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA"}"#,
    )
    .expect("backup file");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&file))
        .open()
        .await
        .expect("open");
    let cars = cars(&pool, "cardb", 120).await;
    pool.close().await;
    Fixture {
        _dir: dir,
        file,
        files,
        cars,
    }
}

impl Fixture {
    fn args(&self) -> Vec<String> {
        vec![
            "--layer".into(),
            format!("cardb=sqlite:{}", self.file.display()),
            "--depot".into(),
            format!("files={}", self.files.display()),
        ]
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

async fn stored(file: &std::path::Path, rn: &str) -> Option<Map<String, Value>> {
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(file))
        .open()
        .await
        .expect("open");
    let found = korm::item::<Map<String, Value>>(&pool)
        .load(rn.parse().expect("rn"))
        .get()
        .await;
    pool.close().await;
    match found {
        Ok(item) => Some(item.into_data()),
        Err(korm::Error::NotFound { .. }) => None,
        Err(e) => panic!("load {rn}: {e}"),
    }
}

#[tokio::test]
async fn the_token_the_cookie_and_the_host_guard_every_page() {
    let fx = fixture().await;
    let studio = start(&strs(&fx.args()), &[], true);
    let host = format!("127.0.0.1:{}", studio.port);
    let port = studio.port;
    // No token, no cookie.
    let resp = request(port, "GET", "/", &[("Host", &host)], "");
    assert_eq!(resp.status, 403);
    assert!(!resp.text().contains(&studio.token));
    // A wrong token, a wrong cookie.
    let wrong = "0".repeat(64);
    let resp = request(
        port,
        "GET",
        &format!("/?token={wrong}"),
        &[("Host", &host)],
        "",
    );
    assert_eq!(resp.status, 403);
    assert!(resp.header("set-cookie").is_none());
    let cookie = format!("korm_studio_{port}={wrong}");
    let resp = request(
        port,
        "GET",
        "/",
        &[("Host", &host), ("Cookie", &cookie)],
        "",
    );
    assert_eq!(resp.status, 403);
    // The token: a cookie and a redirect without it; the cookie then opens every page.
    let session = enter(&studio);
    let page = session.page("/");
    assert!(page.contains("<title>korm studio"), "{page}");
    // Another Host (DNS rebinding), even with the cookie.
    for bad in [
        "evil.example",
        "evil.example:80",
        &format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let resp = request(
            port,
            "GET",
            "/",
            &[("Host", bad), ("Cookie", &session.cookie)],
            "",
        );
        assert_eq!(resp.status, 403, "{bad}");
    }
    let resp = request(
        port,
        "GET",
        "/",
        &[
            ("Host", &format!("localhost:{port}")),
            ("Cookie", &session.cookie),
        ],
        "",
    );
    assert_eq!(resp.status, 200);
    // The token in a deeper URL keeps the rest of it.
    let rn = enc("[rn][from::cardb]:cars:suv:*");
    let resp = request(
        port,
        "GET",
        &format!("/collection?rn={rn}&token={}", studio.token),
        &[("Host", &host)],
        "",
    );
    assert_eq!(resp.status, 303);
    assert_eq!(
        resp.header("location"),
        Some(format!("/collection?rn={rn}").as_str())
    );
    // A POST from another site is refused before anything else.
    let resp = request(
        port,
        "POST",
        "/item/delete?rn=x",
        &[
            ("Host", &host),
            ("Cookie", &session.cookie),
            ("Origin", "http://evil.example"),
        ],
        "loaded=x",
    );
    assert_eq!(resp.status, 403);
}

#[tokio::test]
async fn pages_show_the_pool_page_a_collection_and_escape_hostile_values() {
    let fx = fixture().await;
    let studio = start(&strs(&fx.args()), &[], true);
    let session = enter(&studio);

    // The pool page: layers, depots, the collection and its row count, columns and kinds.
    let page = session.page("/");
    assert!(page.contains(r#"<table id="collections">"#), "{page}");
    let collections = links(&page, "collection");
    assert_eq!(
        collections,
        [(
            "/collection?rn=%5Brn%5D%5Bfrom%3A%3Acardb%5D%3Acars%3Asuv%3A%2A".to_owned(),
            "[rn][from::cardb]:cars:suv:*".to_owned()
        )]
    );
    assert!(page.contains(r#"<td class="rows">120</td>"#), "{page}");
    assert!(
        page.contains(r#"<span class="col">ssn</span> <span class="kind">encrypted</span>"#),
        "{page}"
    );
    assert!(page.contains(r#"<section id="layers">"#) && page.contains(r#"<section id="depots">"#));
    assert_eq!(
        links(&page, "depot"),
        [("/depot?name=files".to_owned(), "files".to_owned())]
    );
    assert!(
        page.contains(r#"<svg id="refs""#)
            && page.contains(r#"<g class="node" data-collection="[rn][from::cardb]:cars:suv:*">"#)
    );

    assert!(
        page.contains(r#"<span class="col unique">vin</span>"#),
        "{page}"
    );
    // Hostile parameters come back as text.
    let resp = session.get(&format!(
        "/collection?rn={}&filter={}",
        enc(HOSTILE),
        enc(HOSTILE)
    ));
    assert_eq!(resp.status, 400);
    assert!(
        !resp.text().contains(HOSTILE) && resp.text().contains("&lt;script&gt;"),
        "{}",
        resp.text()
    );
    let resp = session.get(&format!("/item?rn={}", enc(HOSTILE)));
    assert_eq!(resp.status, 400);
    assert!(!resp.text().contains(HOSTILE), "{}", resp.text());
    // The collection: a filter, a sort, the count, and paging that reaches every item once.
    let collection = &collections[0].0;
    let all = session.page(collection);
    assert_eq!(span_count(&all), 120);
    let filter = "year > 2010 and meta.tier != \"gold\"";
    let sort = "-year";
    let expected: BTreeSet<String> = fx
        .cars
        .iter()
        .enumerate()
        .filter(|(i, (_, year))| *year > 2010 && i % 3 != 0)
        .map(|(_, (rn, _))| rn.rsplit(':').next().expect("id").to_owned())
        .collect();
    let years: BTreeMap<String, i64> = fx
        .cars
        .iter()
        .map(|(rn, y)| (rn.rsplit(':').next().expect("id").to_owned(), *y))
        .collect();
    let mut url = format!("{collection}&filter={}&sort={}", enc(filter), enc(sort));
    let first = session.page(&url);
    assert_eq!(span_count(&first) as usize, expected.len());
    assert!(first.contains(r#"<form id="filter""#) && first.contains(r#"<button id="apply""#));
    // The header links sort by each column (the current one flips).
    let sorts = links(&first, "sort");
    assert!(
        sorts
            .iter()
            .any(|(href, text)| text == "year" && href.ends_with("&sort=year")),
        "{sorts:?}"
    );
    assert!(
        sorts
            .iter()
            .any(|(href, text)| text == "make" && href.ends_with("&sort=make")),
        "{sorts:?}"
    );
    // Encrypted values can not be sorted: no link.
    assert!(!sorts.iter().any(|(_, text)| text == "ssn"), "{sorts:?}");
    assert!(first.contains(r#"<th class="encrypted-column">ssn</th>"#));
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = session.page(&url);
        pages += 1;
        assert!(href_of(&page, "first").is_some());
        for (href, id) in links(&page, "item") {
            assert!(href.starts_with("/item?rn="), "{href}");
            seen.push(id);
        }
        match href_of(&page, "next") {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, expected.len().div_ceil(50).max(1));
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an item shown twice");
    assert_eq!(unique, expected);
    let ordered: Vec<i64> = seen.iter().map(|id| years[id]).collect();
    assert!(ordered.windows(2).all(|w| w[0] >= w[1]), "{ordered:?}");
    // A filter with a mistake: the page says where, and keeps the form.
    let resp = session.get(&format!("{collection}&filter={}", enc("year > gold")));
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("at character 8") && resp.text().contains(r#"id="filter""#));

    // The hostile item: its text and its key shown as text, never as markup.
    let hostile = &fx.cars[0].0;
    let page = session.page(&format!("/item?rn={}", enc(hostile)));
    assert!(
        page.contains(&format!(r#"<h1 id="rn">{hostile}</h1>"#)),
        "{page}"
    );
    assert!(
        !page.contains(HOSTILE) && !page.contains(HOSTILE_KEY),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{page}"
    );
    assert!(
        page.contains(r#"<tr class="field"><td class="name">make</td>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<tr class="field unique"><td class="name">vin</td>"#),
        "{page}"
    );
    // The secret: named, never shown, on every page seen.
    assert!(
        page.contains(r#"<span class="encrypted">&lt;encrypted&gt;</span>"#),
        "{page}"
    );
    // The depot RN in the data links to the file.
    let files = links(&page, "file");
    assert_eq!(files.len(), 1, "{page}");
    let readme = session.page(&files[0].0);
    assert!(
        readme.contains(
            r#"<pre id="text">Invoices of the quarry.
Line &lt;two&gt; &amp; more.
</pre>"#
        ),
        "{readme}"
    );
    let download = href_of(&readme, "download").expect("a#download");
    let raw = session.get(&download);
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, README.as_bytes());
    assert!(
        raw.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment"))
    );
    assert!(
        raw.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );

    // The depot listing: folders, then files; the hostile name escaped everywhere.
    let depot = session.page("/depot?name=files");
    let entries = links(&depot, "entry folder");
    assert_eq!(
        entries,
        [(
            "/depot?name=files&prefix=notes".to_owned(),
            "notes/".to_owned()
        )]
    );
    // An image: previewed inline from its raw URL, served as its type.
    let pixel = links(&depot, "entry file");
    assert_eq!(pixel.len(), 1);
    assert_eq!(pixel[0].1, "pixel.png");
    let page = session.page(&pixel[0].0);
    let marker = r#"<img id="preview" src=""#;
    let at = page.find(marker).expect("img#preview") + marker.len();
    let src = unescape(&page[at..at + page[at..].find('"').expect("src end")]);
    assert!(
        src.starts_with("/file/raw?rn=") && src.ends_with("&inline=1"),
        "{src}"
    );
    let image = session.get(&src);
    assert_eq!(image.status, 200);
    assert_eq!(image.body, PNG);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert!(
        image
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("inline"))
    );
    assert!(
        image
            .header("content-security-policy")
            .is_some_and(|c| c.contains("sandbox"))
    );
    let notes = session.page(&entries[0].0);
    assert!(notes.contains(r#"<ul id="entries">"#));
    let names: Vec<String> = links(&notes, "entry file")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(names, [HOSTILE_FILE, "readme.txt"]);
    // korm's own files (backups, the WAL) are neither listed (the root listing above shows
    // only `notes/`) nor served, whatever the URL asks for.
    let backup = "[rn][depot::files]:__korm_backups__:cardb:backup.ndjson";
    for path in [
        "/depot?name=files&prefix=__korm_backups__".to_owned(),
        "/depot?name=files&prefix=__korm_backups__/cardb".to_owned(),
        format!("/file?rn={}", enc(backup)),
        format!("/file/raw?rn={}", enc(backup)),
    ] {
        let resp = session.get(&path);
        assert_eq!(resp.status, 400, "{path}");
        let text = resp.text();
        assert!(
            !text.contains("argon2id") && !text.contains("entry file"),
            "{path}: {text}"
        );
    }
    assert!(!notes.contains("<img\""), "{notes}");
    let hostile_file = links(&notes, "entry file")[0].0.clone();
    let page = session.page(&hostile_file);
    assert!(!page.contains("<img\""), "{page}");
    let raw = session.get(&href_of(&page, "download").expect("download"));
    assert_eq!(raw.body, b"hostile");
    let disposition = raw.header("content-disposition").expect("disposition");
    assert!(
        !disposition.contains('<') && !disposition.contains("\"src"),
        "{disposition}"
    );

    // Read-only: a POST is refused, and nothing changed.
    let before = stored(&fx.file, hostile).await;
    let resp = session.post(
        &format!("/item?rn={}", enc(hostile)),
        &[("data", r#"{"make": "changed"}"#), ("loaded", "x")],
    );
    assert_eq!(resp.status, 403);
    assert!(
        resp.text()
            .contains("read-only (start it with --allow-writes)")
    );
    let resp = session.post(
        &format!("/item/delete?rn={}", enc(hostile)),
        &[("loaded", "x")],
    );
    assert_eq!(resp.status, 403);
    assert_eq!(stored(&fx.file, hostile).await, before);
    assert!(!page.contains(r#"<form id="edit""#));

    for body in session.seen.borrow().iter() {
        assert!(!body.contains(SSN), "the secret in a page: {body}");
        assert!(!body.contains(&studio.token), "the token in a page");
    }
}

#[tokio::test]
async fn reveal_needs_the_flag_and_the_key() {
    let fx = fixture().await;
    let car = enc(&fx.cars[1].0);
    let mut args = fx.args();
    args.push("--allow-reveal".into());
    let revealing = start(&strs(&args), &[], true);
    let page = enter(&revealing).page(&format!("/item?rn={car}"));
    assert!(
        page.contains(&format!(
            r#"<span class="revealed" title="decrypted"><span class="str">{SSN}</span></span>"#
        )),
        "{page}"
    );
    drop(revealing);
    // Without the key: hidden, and the page says why.
    let keyless = start(&strs(&args), &[], false);
    let page = enter(&keyless).page(&format!("/item?rn={car}"));
    assert!(
        !page.contains(SSN) && page.contains("KORM_ENCRYPTION_KEY is not set"),
        "{page}"
    );
    assert!(page.contains(r#"<span class="encrypted">&lt;encrypted&gt;</span>"#));
}

#[tokio::test]
async fn with_writes_an_edit_lands_and_a_stale_one_is_a_conflict() {
    let fx = fixture().await;
    let mut args = fx.args();
    args.push("--allow-writes".into());
    let studio = start(&strs(&args), &[], true);
    let session = enter(&studio);
    let rn = &fx.cars[2].0;
    let target = format!("/item?rn={}", enc(rn));
    let page = session.page(&target);
    assert!(page.contains(r#"<form id="edit""#) && page.contains(r#"<form id="delete""#));
    let loaded = form_value(&page, "loaded");
    let data = form_value(&page, "data");
    assert!(
        !data.contains(SSN) && data.contains("<encrypted>"),
        "{data}"
    );
    let mut edited: Map<String, Value> = serde_json::from_str(&data).expect("json");
    edited.insert("make".into(), json!("Edited"));
    edited.remove("meta");
    let edited = serde_json::to_string(&edited).expect("json");
    let resp = session.post(&target, &[("data", &edited), ("loaded", &loaded)]);
    assert_eq!(resp.status, 303, "{}", resp.text());
    let now = stored(&fx.file, rn).await.expect("stored");
    assert_eq!(now["make"], "Edited");
    assert_eq!(
        now.get("meta").unwrap_or(&Value::Null),
        &Value::Null,
        "a field taken out is emptied"
    );
    // The encrypted field kept its envelope.
    assert_eq!(now["ssn"]["__ENCRYPTED__"], true);

    // The same form again: stale, a Conflict page, nothing written.
    let mut again: Map<String, Value> = serde_json::from_str(&data).expect("json");
    again.insert("make".into(), json!("Stale"));
    let again = serde_json::to_string(&again).expect("json");
    let resp = session.post(&target, &[("data", &again), ("loaded", &loaded)]);
    assert_eq!(resp.status, 409);
    assert!(resp.text().contains("Conflict"), "{}", resp.text());
    assert_eq!(
        stored(&fx.file, rn).await.expect("stored")["make"],
        "Edited"
    );
    let resp = session.post(
        &format!("/item/delete?rn={}", enc(rn)),
        &[("loaded", &loaded)],
    );
    assert_eq!(resp.status, 409);
    assert!(stored(&fx.file, rn).await.is_some());

    // An encrypted field can not be written in the clear.
    let page = session.page(&target);
    let fresh = form_value(&page, "loaded");
    let mut clear: Map<String, Value> =
        serde_json::from_str(&form_value(&page, "data")).expect("json");
    clear.insert("ssn".into(), json!("in the clear"));
    let clear = serde_json::to_string(&clear).expect("json");
    let resp = session.post(&target, &[("data", &clear), ("loaded", &fresh)]);
    assert_eq!(resp.status, 400);
    assert_eq!(
        stored(&fx.file, rn).await.expect("stored")["ssn"]["__ENCRYPTED__"],
        true
    );

    // Nor where the item holds no value: the column stores encrypted values.
    let other = &fx.cars[3].0;
    let mut emptied: Map<String, Value> = stored(&fx.file, other).await.expect("stored");
    emptied.insert("ssn".into(), Value::Null);
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&fx.file))
        .open()
        .await
        .expect("open");
    korm::item::<Map<String, Value>>(&pool)
        .load(other.parse().expect("rn"))
        .get()
        .await
        .expect("load")
        .replace(emptied)
        .commit()
        .await
        .expect("empty the ssn");
    pool.close().await;
    let other_target = format!("/item?rn={}", enc(other));
    let page = session.page(&other_target);
    let mut clear: Map<String, Value> =
        serde_json::from_str(&form_value(&page, "data")).expect("json");
    assert_eq!(clear["ssn"], Value::Null);
    clear.insert("ssn".into(), json!("in the clear"));
    let clear = serde_json::to_string(&clear).expect("json");
    let resp = session.post(
        &other_target,
        &[("data", &clear), ("loaded", &form_value(&page, "loaded"))],
    );
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(
        stored(&fx.file, other).await.expect("stored")["ssn"],
        Value::Null
    );

    // A fresh delete lands.
    let resp = session.post(
        &format!("/item/delete?rn={}", enc(rn)),
        &[("loaded", &fresh)],
    );
    assert_eq!(resp.status, 303, "{}", resp.text());
    assert!(stored(&fx.file, rn).await.is_none());
    for body in session.seen.borrow().iter() {
        assert!(!body.contains(SSN), "the secret in a page: {body}");
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Person {
    name: String,
}

/// A car in SQLite whose owner lives in a database on `server`: the link crosses them.
async fn a_car_in_sqlite_links_its_owner_on(server: support::Server) {
    install_key();
    let Some(db) = support::create(server).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cars.sqlite");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&file))
        .layer("owners", korm::layers::from_url(&db.url).expect("url"))
        .open()
        .await
        .expect("open");
    let owner = korm::item::<Person>(&pool)
        .from_data(
            "[rn][from::owners]:users:people:*".parse().expect("rn"),
            Person {
                name: "Fred <Flintstone>".into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("owner");
    let owner_rn = owner.rn().to_string();
    let car = korm::item::<Value>(&pool)
        .from_data(
            "[rn][from::cardb]:cars:suv:*".parse().expect("rn"),
            json!({ "make": "Bedrock", "owner": owner_rn }),
        )
        .expect("floating")
        .create()
        .await
        .expect("car");
    let car_rn = car.rn().to_string();
    pool.close().await;

    let layer = format!("cardb=sqlite:{}", file.display());
    let studio = start(
        &[
            "--layer",
            &layer,
            "--layer",
            "owners=env:KORM_STUDIO_TEST_DB",
        ],
        &[("KORM_STUDIO_TEST_DB", db.url.as_str())],
        true,
    );
    let session = enter(&studio);
    let home = session.page("/");
    let collections: Vec<String> = links(&home, "collection")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        collections,
        [
            "[rn][from::cardb]:cars:suv:*",
            "[rn][from::owners]:users:people:*"
        ]
    );
    // The graph: one arrow, from the cars to the people.
    assert_eq!(home.matches(r#"<line class="edge""#).count(), 1, "{home}");
    assert!(
        home.contains("cardb cars:suv → owners users:people"),
        "{home}"
    );
    assert!(
        home.contains(r#"<line class="edge" data-from="[rn][from::cardb]:cars:suv:*" data-to="[rn][from::owners]:users:people:*""#),
        "{home}"
    );

    let page = session.page(&format!("/item?rn={}", enc(&car_rn)));
    let rns = links(&page, "rn");
    assert_eq!(
        rns,
        [(format!("/item?rn={}", enc(&owner_rn)), owner_rn.clone())]
    );
    let owner_page = session.page(&rns[0].0);
    assert!(
        owner_page.contains(&format!(r#"<h1 id="rn">{owner_rn}</h1>"#)),
        "{owner_page}"
    );
    assert!(
        owner_page.contains("Fred &lt;Flintstone&gt;"),
        "{owner_page}"
    );
    // An RN without its layer: found in the layer that has its collection.
    let bare = owner.rn().without_layer().to_string();
    assert!(!bare.contains("[from::"), "{bare}");
    let page = session.page(&format!("/item?rn={}", enc(&bare)));
    assert!(page.contains("Fred &lt;Flintstone&gt;"), "{page}");
    drop(studio);
    drop(db);
}

#[tokio::test]
async fn the_backups_page_lists_and_verifies_and_names_a_damaged_backup() {
    let fx = fixture().await;
    let backups = fx._dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("backups folder");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&fx.file))
        .depot("backups", korm::depots::local(&backups))
        .open()
        .await
        .expect("open");
    let taken = korm::backup::Backups::new(&pool, "backups")
        .expect("backups")
        .now("cardb")
        .await
        .expect("backup");
    pool.close().await;
    let key = taken.key.as_str().to_owned();

    let mut args = fx.args();
    args.extend([
        "--depot".into(),
        format!("backups={}", backups.display()),
        "--backups".into(),
        "backups".into(),
    ]);
    let studio = start(&strs(&args), &[], true);
    let session = enter(&studio);
    let page = session.page("/backups");
    assert!(page.contains(&format!("<td>{key}</td>")), "{page}");
    let verify = links(&page, "verify");
    assert_eq!(
        verify,
        [(
            format!("/backups?verify={}", enc(&key)),
            "verify".to_owned()
        )]
    );
    let page = session.page(&verify[0].0);
    assert!(
        page.contains(r#"<p class="ok" id="verified">ok "#) && page.contains("120 rows"),
        "{page}"
    );
    // The restore dry run: what replacing the layer with the backup would change, after one
    // car was deleted, one edited and one added; nothing is written.
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&fx.file))
        .open()
        .await
        .expect("open");
    let items = korm::item::<Map<String, Value>>(&pool);
    let deleted = fx.cars[5].0.clone();
    items
        .load(deleted.parse().expect("rn"))
        .get()
        .await
        .expect("load")
        .delete()
        .await
        .expect("delete");
    items
        .load(fx.cars[6].0.parse().expect("rn"))
        .get()
        .await
        .expect("load")
        .update(|d| {
            d.insert("make".into(), json!("Changed"));
        })
        .commit()
        .await
        .expect("commit");
    cars(&pool, "cardb", 1).await;
    pool.close().await;
    let dry_run = links(&page, "dry-run");
    assert_eq!(dry_run.len(), 1);
    let page = session.page(&dry_run[0].0);
    assert!(
        page.contains(r#"<tr class="dry-run"><td>cars:suv</td><td>120</td><td>120</td><td class="add">1</td><td class="change">1</td><td class="remove">1</td></tr>"#),
        "{page}"
    );
    assert!(
        stored(&fx.file, &deleted).await.is_none(),
        "the dry run wrote nothing"
    );
    // A flipped byte: the page says the backup is damaged.
    let file = backups.join(&key);
    let mut bytes = std::fs::read(&file).expect("backup file");
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&file, bytes).expect("damage");
    let page = session.page(&verify[0].0);
    assert!(
        page.contains(r#"<p class="error" id="verified">"#) && page.contains("damaged"),
        "{page}"
    );
    for body in session.seen.borrow().iter() {
        assert!(!body.contains(SSN), "the secret in a page: {body}");
    }
}

#[tokio::test]
async fn the_wal_page_lists_done_records_and_flags_a_tampered_one() {
    install_key();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cars.sqlite");
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).expect("wal folder");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&file))
        .depot("wal", korm::depots::local(&wal))
        .with_wal(
            "wal",
            korm::WalOptions::new("orders").with_retention(korm::WalRetention::Keep),
        )
        .open()
        .await
        .expect("open");
    cars(&pool, "cardb", 2).await;
    pool.close().await;
    // A done record copied into pending/ with one value changed: it fails its MAC check.
    let namespace = wal.join("__korm_wal__").join("orders");
    let pool_dir = std::fs::read_dir(&namespace)
        .expect("pools")
        .next()
        .expect("a pool")
        .expect("entry")
        .path();
    let mut done: Vec<_> = std::fs::read_dir(pool_dir.join("done"))
        .expect("done")
        .map(|e| e.expect("entry").path())
        .collect();
    done.sort();
    assert_eq!(done.len(), 2, "{done:?}");
    let text = std::fs::read_to_string(&done[0]).expect("record");
    let tampered = text.replacen("Make 00", "Make 99", 1);
    assert_ne!(text, tampered);
    let id = done[0]
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(pool_dir.join("pending")).expect("pending folder");
    std::fs::write(
        pool_dir.join("pending").join(format!("{id}.json")),
        tampered,
    )
    .expect("tamper");

    let layer = format!("cardb=sqlite:{}", file.display());
    let wal_dir = wal.display().to_string();
    let studio = start(
        &[
            "--layer",
            &layer,
            "--wal-dir",
            &wal_dir,
            "--wal-namespace",
            "orders",
        ],
        &[],
        true,
    );
    let session = enter(&studio);
    let home = session.page("/");
    assert!(home.contains(r#"<a href="/wal">WAL</a>"#), "{home}");
    let page = session.page("/wal");
    assert!(
        page.contains(r#"<p class="error" id="wal-status">refused"#),
        "{page}"
    );
    let refused = page
        .split(r#"<table id="refused">"#)
        .nth(1)
        .expect("table#refused");
    assert!(
        refused.contains(&format!("<td>{id}</td>")) && refused.contains("MAC"),
        "{refused}"
    );
    assert!(
        page.contains("<h2>Pending (0)</h2>") && page.contains("<h2>Done (2)</h2>"),
        "{page}"
    );
    assert_eq!(
        page.matches(r#"<tr class="record done">"#).count(),
        2,
        "{page}"
    );
    assert!(!page.contains(SSN), "{page}");
}

#[tokio::test]
async fn sigterm_ends_the_studio_cleanly_after_its_one_line() {
    let fx = fixture().await;
    let mut studio = start(&strs(&fx.args()), &[], true);
    assert_eq!(enter(&studio).get("/").status, 200);
    let killed = Command::new("kill")
        .args(["-TERM", &studio.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = studio.child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    studio.stdout.read_to_string(&mut rest).expect("stdout");
    assert_eq!(rest, "", "one line on stdout, nothing more");
}

#[tokio::test]
async fn a_car_in_sqlite_links_its_owner_in_postgres() {
    a_car_in_sqlite_links_its_owner_on(support::Server::Postgres).await;
}

#[tokio::test]
async fn a_car_in_sqlite_links_its_owner_in_mariadb() {
    a_car_in_sqlite_links_its_owner_on(support::Server::MySql).await;
}

#[tokio::test]
async fn one_sqlite_file_by_the_sqlite_flag() {
    let fx = fixture().await;
    let file = fx.file.display().to_string();
    let studio = start(&["--sqlite", &file], &[], true);
    let session = enter(&studio);
    let home = session.page("/");
    let collections = links(&home, "collection");
    assert_eq!(collections.len(), 1, "{home}");
    let page = session.page(&collections[0].0);
    assert_eq!(span_count(&page), 120);
    let items = links(&page, "item");
    assert_eq!(items.len(), 50);
    // Exactly one full page: no link to an empty next page.
    let fifty = session.page(&format!(
        "{}&filter={}",
        collections[0].0,
        enc(r#"make < "Make 050""#)
    ));
    assert_eq!(span_count(&fifty), 50);
    assert_eq!(links(&fifty, "item").len(), 50);
    assert!(href_of(&fifty, "next").is_none(), "no next page");
    // The file is the only layer: the item opens whatever layer its RN names.
    let item = session.page(&items[0].0);
    assert!(item.contains(r#"<table id="fields">"#), "{item}");
    let stored = format!("/item?rn={}", enc(&fx.cars[0].0));
    assert!(session.page(&stored).contains("Make 000"));
}

#[tokio::test]
async fn files_are_never_served_as_html_or_svg_and_pages_carry_their_headers() {
    let fx = fixture().await;
    let web = fx.files.join("web");
    std::fs::create_dir_all(&web).expect("folder");
    std::fs::write(
        web.join("page.html"),
        "<html><script>alert(4)</script></html>",
    )
    .expect("html");
    std::fs::write(
        web.join("pic.svg"),
        r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(5)"/>"#,
    )
    .expect("svg");
    let mut args = fx.args();
    args.push("--allow-writes".into());
    let studio = start(&strs(&args), &[], true);
    let session = enter(&studio);
    let page = session.get("/");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    let csp = page.header("content-security-policy").expect("csp");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    for name in ["page.html", "pic.svg"] {
        let rn = format!("[rn][depot::files]:web:{name}");
        let file_page = session.page(&format!("/file?rn={}", enc(&rn)));
        assert!(file_page.contains(r#"<pre id="text">"#), "{file_page}");
        assert!(!file_page.contains("<script>") && !file_page.contains("<svg xmlns"));
        for inline in ["", "&inline=1"] {
            let raw = session.get(&format!("/file/raw?rn={}{inline}", enc(&rn)));
            assert_eq!(raw.status, 200);
            let kind = raw.header("content-type").expect("type");
            assert!(
                kind.starts_with("text/plain") || kind == "application/octet-stream",
                "{name}: {kind}"
            );
            assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
            assert!(
                raw.header("content-security-policy")
                    .is_some_and(|c| c.contains("sandbox"))
            );
        }
    }
    // A write from a page with an opaque origin (Origin: null) is refused; nothing changes.
    let rn = &fx.cars[4].0;
    let target = format!("/item?rn={}", enc(rn));
    let form = session.page(&target);
    let loaded = form_value(&form, "loaded");
    let host = format!("127.0.0.1:{}", studio.port);
    let body = format!("loaded={}", enc(&loaded));
    // And so is one another site of this host (another loopback port) sends.
    for header in [("Origin", "null"), ("Sec-Fetch-Site", "same-site")] {
        let resp = request(
            studio.port,
            "POST",
            &format!("/item/delete?rn={}", enc(rn)),
            &[("Host", &host), ("Cookie", &session.cookie), header],
            &body,
        );
        assert_eq!(resp.status, 403, "{header:?}");
    }
    assert!(stored(&fx.file, rn).await.is_some());
}
