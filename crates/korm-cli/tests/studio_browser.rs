//! `korm studio` in headless Chromium, clicked through as a user would: cars in a SQLite
//! file, their owners in a PostgreSQL database (fresh, dropped afterwards), a local depot
//! holding a car's invoice (text) and photo (PNG). The pool page and its reference graph, a
//! collection paged to its end and filtered, a car's owner in the other database, the file
//! previews (from the car and from the depot's listing), a hostile name that must stay text,
//! the login cookie, and with `--allow-writes` an edit and a stale edit made in the form, as a
//! browser sends them (its own Origin and cookie).
//!
//! The screenshots of the main pages are saved under `target/studio-screenshots/` (pool.png,
//! collection.png, item.png, owner.png, file.png, image.png): the README's picture, and a look
//! at what the tests saw.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use korm::{DepotFile, Ref, Unique};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[path = "../../korm/tests/support/mod.rs"]
mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use webdriver::{Browser, http};

#[derive(Debug, Serialize, Deserialize)]
struct Owner {
    name: String,
    email: Unique<String>,
    city: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    name: String,
    year: i64,
    owner: Ref<Owner>,
    invoice: Option<DepotFile>,
    photo: Option<DepotFile>,
}

const CARS: &str = "[rn][from::cardb]:cars:suv:*";
const OWNERS: &str = "[rn][from::userdb]:users:people:*";
const HOSTILE: &str = "<script>window.__pwned=1</script>";
const INVOICE: &str = "Invoice 2024-117: one Citroen C4, blue, 41 brontosaurus burgers";
const PHOTO: &[u8] = include_bytes!("fixtures/car.png");
/// Plain cars beside the one with files and the hostile one: 122 in all, three pages of 50.
const PLAIN_CARS: usize = 120;

/// A running `korm studio` child, killed when this drops.
#[derive(Debug)]
struct Studio {
    child: Child,
    /// The URL it printed, token included.
    url: String,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

impl Studio {
    fn start(args: &[String], env: &[(&str, &str)]) -> Studio {
        let mut child = Command::new(env!("CARGO_BIN_EXE_korm"))
            .arg("studio")
            .args(args)
            .env_remove("KORM_ENV")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start korm studio");
        let stdout = child.stdout.take().expect("stdout");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = line_tx.send(line);
        });
        let line = match line_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("korm studio printed no URL within a minute");
            }
        };
        let url = line
            .trim_end()
            .strip_prefix("korm studio: ")
            .unwrap_or_else(|| panic!("korm studio's first line is not its URL: {line:?}"))
            .to_owned();
        let (base, token) = url
            .split_once("/?token=")
            .unwrap_or_else(|| panic!("no token in {url:?}"));
        assert!(base.starts_with("http://127.0.0.1:"), "{url}");
        assert!(
            token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "the token is 32 random bytes in hex: {url}"
        );
        let base = base.to_owned();
        Studio { child, url, base }
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pools, the studio over them and a browser logged into it. Field order is drop order:
/// the browser and the studio end before the database is dropped.
struct Fixture {
    browser: Browser,
    studio: Studio,
    /// The RNs of every car, by item id.
    cars: Vec<(String, String)>,
    /// The car with the invoice and the photo.
    papers: String,
    hostile: String,
    /// How many cars are from after 2020.
    newer_than_2020: usize,
    fred: String,
    /// The cars' SQLite file and the depot's folder, to look behind the studio's back.
    cars_file: PathBuf,
    files: PathBuf,
    _db: support::TestDatabase,
    _dir: tempfile::TempDir,
}

/// The year of plain car number `i`: 1990 to 2024, round and round.
fn plain_year(i: usize) -> i64 {
    1990 + (i % 35) as i64
}

/// An item's id (the RN's last segment) and its RN.
fn id_and_rn(rn: String) -> (String, String) {
    let id = rn.rsplit(':').next().expect("an id").to_owned();
    (id, rn)
}

/// Where the screenshots go: `target/studio-screenshots/` beside the `korm` binary's profile
/// folder, so `CARGO_TARGET_DIR` and `--target-dir` are followed.
fn screenshot_path(name: &str) -> PathBuf {
    let korm = PathBuf::from(env!("CARGO_BIN_EXE_korm"));
    let target = korm
        .parent()
        .and_then(|profile| profile.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("studio-screenshots").join(name)
}

/// Makes the pools, starts the studio and a browser and logs in with the printed URL;
/// `None` when chromedriver or PostgreSQL is missing outside `scripts/test` (skipped loudly).
async fn fixture() -> Option<Fixture> {
    fixture_with(&[]).await
}

/// [`fixture`], with more arguments for `korm studio` (`--allow-writes`).
async fn fixture_with(more: &[&str]) -> Option<Fixture> {
    let db = support::create(support::Server::Postgres).await?;
    let browser = Browser::start()?;
    let dir = tempfile::tempdir().expect("dir");
    let cars_file = dir.path().join("cars.sqlite");
    let files = dir.path().join("files");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&cars_file))
        .layer("userdb", korm::layers::postgres(&db.url))
        .depot("files", korm::depots::local(&files))
        .open()
        .await
        .expect("open the pool");
    let owners = korm::item::<Owner>(&pool);
    let mut people = Vec::new();
    for (name, city) in [
        ("Fred Flintstone", "Bedrock"),
        ("Wilma Slaghoople", "Rockvegas"),
    ] {
        let email = format!("{}@bedrock.example", name.split(' ').next().unwrap_or(name));
        let owner = owners
            .from_data(
                OWNERS.parse().expect("rn"),
                Owner {
                    name: name.into(),
                    email: Unique::new(email.to_lowercase()),
                    city: city.into(),
                },
            )
            .expect("owner")
            .create()
            .await
            .expect("create an owner");
        people.push(owner);
    }
    let car = |name: String, year: i64, owner: usize| {
        korm::item::<Car>(&pool).from_data(
            CARS.parse().expect("rn"),
            Car {
                name,
                year,
                owner: Ref::new(people[owner % 2].rn().clone()),
                invoice: None,
                photo: None,
            },
        )
    };
    let mut tx = korm::tx(&pool);
    let handles = tx.create_all(
        (0..PLAIN_CARS).map(|i| car(format!("Car number {i}"), plain_year(i), i).expect("a car")),
    );
    let mut done = tx.persist().await.expect("create the cars");
    let mut cars: Vec<(String, String)> = done
        .take_all(handles)
        .expect("the cars")
        .iter()
        .map(|c| id_and_rn(c.rn().to_string()))
        .collect();
    let mut papers = car("Citroen C4 with papers".into(), 2015, 0).expect("a car");
    papers.data_mut().invoice = Some(
        korm::depots::file(
            "[rn][depot::files]:invoices:fred:c4.txt"
                .parse()
                .expect("rn"),
            INVOICE,
        )
        .expect("file")
        .into(),
    );
    papers.data_mut().photo = Some(
        korm::depots::file(
            "[rn][depot::files]:photos:fred:c4.png".parse().expect("rn"),
            PHOTO,
        )
        .expect("file")
        .into(),
    );
    let papers = papers.create().await.expect("create the car with files");
    let hostile = car(HOSTILE.into(), 2023, 1)
        .expect("a car")
        .create()
        .await
        .expect("create the hostile car");
    for special in [&papers, &hostile] {
        cars.push(id_and_rn(special.rn().to_string()));
    }
    let (papers, hostile) = (papers.rn().to_string(), hostile.rn().to_string());
    let fred = people[0].rn().to_string();
    pool.close().await;

    // The PostgreSQL URL through a variable, as the help advises (never on a command line).
    let mut args = vec![
        "--layer".to_owned(),
        format!("cardb=sqlite:{}", cars_file.display()),
        "--layer".to_owned(),
        "userdb=env:KORM_STUDIO_TEST_PG".to_owned(),
        "--depot".to_owned(),
        format!("files={}", files.display()),
    ];
    args.extend(more.iter().map(|a| a.to_string()));
    let studio = Studio::start(&args, &[("KORM_STUDIO_TEST_PG", db.url.as_str())]);
    // The token URL sets the cookie and sends the browser on to the pool page.
    browser.goto(&studio.url);
    assert_eq!(
        browser.url(),
        format!("{}/", studio.base),
        "the token left the URL"
    );
    assert!(
        browser.title().starts_with("korm studio"),
        "{}",
        browser.title()
    );
    Some(Fixture {
        browser,
        studio,
        cars,
        papers,
        hostile,
        fred,
        cars_file,
        files,
        // The hostile car is from 2023, the one with papers from 2015.
        newer_than_2020: (0..PLAIN_CARS).filter(|i| plain_year(*i) > 2020).count() + 1,
        _db: db,
        _dir: dir,
    })
}

impl Fixture {
    fn open(&self, path_and_query: &str) {
        self.browser
            .goto(&format!("{}{path_and_query}", self.studio.base));
    }

    /// Opens an item's page without the login: refused, and nothing of the item shows.
    fn open_item_refused(&self, rn: &str) {
        self.open(&format!("/item?rn={}", http::encode(rn)));
        assert_eq!(self.browser.find("h1").text(), "Forbidden");
        assert!(self.browser.find_all("table#fields").is_empty());
    }

    fn open_item(&self, rn: &str) {
        self.open(&format!("/item?rn={}", http::encode(rn)));
        assert_eq!(self.browser.find("h1#rn").text(), rn);
    }

    /// From the pool page to the cars collection, by its link.
    fn open_cars(&self) {
        self.open("/");
        let link = self
            .browser
            .find_all("table#collections a.collection")
            .into_iter()
            .find(|a| a.text() == CARS)
            .unwrap_or_else(|| panic!("no link to {CARS} on {}", self.browser.source()));
        link.follow();
    }

    /// The value cell of the item page's field `name`.
    fn field(&self, name: &str) -> webdriver::Element<'_> {
        self.browser
            .find_all("table#fields tr.field")
            .into_iter()
            .find(|row| row.find("td.name").text() == name)
            .unwrap_or_else(|| panic!("no field {name} on {}", self.browser.source()))
    }

    /// The cars' pool, opened beside the studio's.
    async fn cars_pool(&self) -> korm::Pool {
        korm::pool()
            .layer("cardb", korm::layers::sqlite(&self.cars_file))
            .depot("files", korm::depots::local(&self.files))
            .open()
            .await
            .expect("open the cars' pool")
    }

    /// The year stored for the car at `rn`, read with korm, not through the studio.
    async fn stored_year(&self, rn: &str) -> i64 {
        let pool = self.cars_pool().await;
        let car = korm::item::<Car>(&pool)
            .load(rn.parse().expect("rn"))
            .get()
            .await
            .expect("load the car");
        pool.close().await;
        car.data().year
    }

    fn pwned(&self) -> serde_json::Value {
        self.browser
            .execute("return typeof window.__pwned", json!([]))
    }
}

#[tokio::test]
async fn the_pool_page_lists_collections_and_draws_the_reference_graph() {
    let Some(f) = fixture().await else { return };
    let b = &f.browser;
    assert!(b.find("nav#nav a#home").property("href").is_string());
    let collections: Vec<String> = b
        .find_all("table#collections a.collection")
        .iter()
        .map(|a| a.text())
        .collect();
    for expected in [CARS, OWNERS] {
        assert!(
            collections.iter().any(|c| c == expected),
            "{expected} in {collections:?}"
        );
    }
    let layers = b.find("section#layers").text();
    assert!(
        layers.contains("cardb") && layers.contains("userdb"),
        "{layers}"
    );
    assert!(
        !layers.contains("postgres://"),
        "a layer's URL is never shown: {layers}"
    );
    let depots: Vec<String> = b
        .find_all("section#depots a.depot")
        .iter()
        .map(|a| a.text())
        .collect();
    assert!(depots.iter().any(|d| d.contains("files")), "{depots:?}");

    // The graph: a node per collection, an edge from the cars to their owners.
    let nodes: Vec<Option<String>> = b
        .find_all("svg#refs g.node")
        .iter()
        .map(|g| g.attr("data-collection"))
        .collect();
    for expected in [CARS, OWNERS] {
        assert!(
            nodes.iter().any(|n| n.as_deref() == Some(expected)),
            "a node for {expected} in {nodes:?}"
        );
    }
    let edges: Vec<(Option<String>, Option<String>)> = b
        .find_all("svg#refs .edge")
        .iter()
        .map(|e| (e.attr("data-from"), e.attr("data-to")))
        .collect();
    assert!(
        edges
            .iter()
            .any(|(from, to)| from.as_deref() == Some(CARS) && to.as_deref() == Some(OWNERS)),
        "an edge from the cars to the owners in {edges:?}"
    );
    b.screenshot(&screenshot_path("pool.png"));
}

#[tokio::test]
async fn a_collection_pages_through_every_item_exactly_once() {
    let Some(f) = fixture().await else { return };
    let b = &f.browser;
    f.open_cars();
    assert_eq!(b.find("span#count").text(), f.cars.len().to_string());
    assert!(
        b.find("form#filter input[name=filter]")
            .attr("name")
            .is_some()
    );
    b.screenshot(&screenshot_path("collection.png"));
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        let ids: Vec<String> = b
            .find_all("table#items tr.item a.item")
            .iter()
            .map(|a| a.text())
            .collect();
        assert!(
            !ids.is_empty() && ids.len() <= 50,
            "page {pages} shows {} items",
            ids.len()
        );
        seen.extend(ids);
        if pages > 1 {
            assert!(
                !b.find_all("a#first").is_empty(),
                "page {pages} links back to the first"
            );
        }
        let next = b.find_all("a#next");
        let Some(next) = next.first() else { break };
        assert!(pages < 10, "the pages never end");
        next.follow();
    }
    assert_eq!(pages, 3, "122 items at 50 a page");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an item shown twice: {seen:?}");
    let expected: BTreeSet<&String> = f.cars.iter().map(|(id, _)| id).collect();
    assert_eq!(unique, expected, "every car, and nothing else");
    assert_eq!(
        f.pwned(),
        "undefined",
        "the hostile name ran on a collection page"
    );
    b.find("a#first").follow();
    assert_eq!(b.find_all("table#items tr.item").len(), 50);

    // The CLI's filter grammar in the form, and a sort: the newest cars, newest first.
    b.find("form#filter input[name=filter]")
        .type_text("year > 2020");
    b.find("form#filter input[name=sort]").type_text("-year");
    b.find("form#filter button#apply")
        .click_until(|url| url.contains("filter=") && url.contains("sort="));
    assert_eq!(b.find("span#count").text(), f.newer_than_2020.to_string());
    let year = b
        .find_all("table#items th")
        .iter()
        .position(|th| th.find_all("a.sort").iter().any(|a| a.text() == "year"))
        .expect("a year column");
    let header = b.find_all("table#items th")[year].text();
    assert!(header.ends_with('▼'), "marked as sorted down: {header}");
    let years: Vec<i64> = b
        .find_all("table#items tr.item")
        .iter()
        .map(|row| row.find_all("td")[year].text().parse().expect("a year"))
        .collect();
    assert_eq!(years.len(), f.newer_than_2020);
    assert!(years.iter().all(|y| *y > 2020), "{years:?}");
    assert!(
        years.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {years:?}"
    );
}

#[tokio::test]
async fn a_car_links_to_its_owner_in_another_database() {
    let Some(f) = fixture().await else { return };
    let b = &f.browser;
    f.open_cars();
    let first = b.find("table#items tr.item a.item");
    let id = first.text();
    first.follow();
    let (_, rn) = f
        .cars
        .iter()
        .find(|(car, _)| *car == id)
        .unwrap_or_else(|| panic!("{id} is not one of the cars"));
    assert_eq!(&b.find("h1#rn").text(), rn);
    assert!(
        f.field("year")
            .find("td.value")
            .text()
            .parse::<i64>()
            .is_ok()
    );

    // The owner lives in PostgreSQL; the link opens it there.
    let owner = f.field("owner").find("td.value a.rn");
    assert!(
        owner
            .attr("href")
            .is_some_and(|h| h.starts_with("/item?rn=")),
        "{:?}",
        owner.attr("href")
    );
    owner.follow();
    let owner_rn = b.find("h1#rn").text();
    assert!(
        owner_rn.starts_with("[rn][from::userdb]:users:people:"),
        "{owner_rn}"
    );
    let name = f.field("name").find("td.value").text();
    assert!(
        ["Fred Flintstone", "Wilma Slaghoople"].contains(&name.as_str()),
        "{name}"
    );
    let email = f.field("email");
    assert!(
        email
            .attr("class")
            .is_some_and(|c| c.split(' ').any(|c| c == "unique")),
        "the unique field is marked"
    );
    assert!(email.find("td.value").text().ends_with("@bedrock.example"));
    b.screenshot(&screenshot_path("owner.png"));

    // Fred, by his RN: the car with papers is his.
    f.open_item(&f.papers);
    b.screenshot(&screenshot_path("item.png"));
    f.field("owner").find("td.value a.rn").follow();
    assert_eq!(b.find("h1#rn").text(), f.fred);
    assert_eq!(f.field("city").find("td.value").text(), "Bedrock");
}

#[tokio::test]
async fn a_car_file_previews_as_text_and_image() {
    let Some(f) = fixture().await else { return };
    let b = &f.browser;
    f.open_item(&f.papers);
    let invoice = f.field("invoice").find("td.value a.file");
    assert!(
        invoice
            .attr("href")
            .is_some_and(|h| h.starts_with("/file?rn=")),
        "{:?}",
        invoice.attr("href")
    );
    invoice.follow();
    assert_eq!(b.find("pre#text").text(), INVOICE);
    assert!(
        b.find("a#download")
            .attr("href")
            .is_some_and(|h| h.contains("/file/raw?rn="))
    );
    b.screenshot(&screenshot_path("file.png"));

    f.open_item(&f.papers);
    f.field("photo").find("td.value a.file").follow();
    b.find("img#preview");
    b.await_true(
        "the preview has loaded",
        "return document.querySelector('img#preview').complete",
    );
    let size = b.execute(
        "const img = document.querySelector('img#preview'); \
         return [img.naturalWidth, img.naturalHeight]",
        json!([]),
    );
    assert_eq!(size, json!([24, 16]), "the PNG's own size: it was decoded");
    b.screenshot(&screenshot_path("image.png"));

    // The same invoice from the depot's listing, folder by folder.
    f.open("/");
    let depot = b
        .find_all("section#depots a.depot")
        .into_iter()
        .find(|a| a.text() == "files")
        .expect("a link to the files depot");
    depot.follow();
    for entry in ["invoices/", "fred/", "c4.txt"] {
        let entries: Vec<_> = b.find_all("ul#entries a.entry");
        let names: Vec<String> = entries.iter().map(|a| a.text()).collect();
        let at = names
            .iter()
            .position(|n| n == entry)
            .unwrap_or_else(|| panic!("{entry} in {names:?}"));
        entries[at].follow();
    }
    assert_eq!(b.find("pre#text").text(), INVOICE);
}

#[tokio::test]
async fn a_hostile_name_shows_as_text_and_never_runs() {
    let Some(f) = fixture().await else { return };
    let b = &f.browser;
    f.open_item(&f.hostile);
    assert_eq!(f.field("name").find("td.value").text(), HOSTILE);
    assert_eq!(f.pwned(), "undefined");
    assert!(
        b.find_all("table#fields script").is_empty(),
        "no script element was made from the value"
    );
    // The collection's pages show the names too.
    f.open_cars();
    loop {
        assert_eq!(f.pwned(), "undefined", "on {}", b.url());
        let next = b.find_all("a#next");
        let Some(next) = next.first() else { break };
        next.follow();
    }
}

/// The harness alone, on a page of its own: when this passes and a studio test fails, the
/// studio is at fault, not the browser.
#[test]
fn headless_chromium_is_driven_and_photographed() {
    let Some(b) = Browser::start() else { return };
    let page = "<title>harness</title><p id=p class='a b'>&lt;b&gt; as text</p>\
                <button id=b onclick=\"document.getElementById('p').textContent='clicked'\">go</button>";
    b.goto(&format!("data:text/html,{}", http::encode(page)));
    assert_eq!(b.title(), "harness");
    assert_eq!(b.find("p#p").text(), "<b> as text");
    assert_eq!(b.find("p#p").attr("class").as_deref(), Some("a b"));
    assert!(b.find_all("p#nothing").is_empty());
    b.find("#b").click();
    assert_eq!(b.find("p#p").text(), "clicked");
    assert_eq!(b.execute("return arguments[0] + 2", json!([40])), 42);
    let dir = tempfile::tempdir().expect("dir");
    let shot = dir.path().join("shots/harness.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).expect("the screenshot");
    // The IHDR chunk: width and height, big-endian, at bytes 16..24.
    let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    assert_eq!(width, 1280, "the window's width");
}

#[tokio::test]
async fn the_login_cookie_is_http_only_and_nothing_shows_without_it() {
    let Some(f) = fixture().await else { return };
    let b = &f.browser;
    assert_eq!(
        b.execute("return document.cookie", json!([])),
        "",
        "a script can not read the token"
    );
    // Read-only: no forms on an item.
    f.open_item(&f.papers);
    assert!(b.find_all("form#edit").is_empty() && b.find_all("form#delete").is_empty());

    b.delete_cookies();
    for path in ["/".to_owned(), format!("/?token={}", "0".repeat(64))] {
        f.open(&path);
        assert_eq!(b.find("h1").text(), "Forbidden", "{path}");
        assert!(b.find_all("table#collections").is_empty(), "{path}");
    }
    f.open_item_refused(&f.papers);
    // The printed URL logs in again.
    b.goto(&f.studio.url);
    assert!(!b.find_all("table#collections a.collection").is_empty());
}

#[tokio::test]
async fn an_edit_in_the_browser_is_written_and_a_stale_one_is_refused() {
    let Some(f) = fixture_with(&["--allow-writes"]).await else {
        return;
    };
    let b = &f.browser;
    // The form's JSON, with another year, saved: the page and the file show it.
    let edit = |year: i64| {
        let textarea = b.find("form#edit textarea[name=data]");
        let mut data: serde_json::Value =
            serde_json::from_str(textarea.property("value").as_str().unwrap_or_default())
                .expect("the form holds the item's JSON");
        assert_eq!(data["name"], "Citroen C4 with papers");
        data["year"] = json!(year);
        textarea.clear();
        textarea.type_text(&data.to_string());
        b.find("form#edit button#save").click_to_new_page();
    };
    f.open_item(&f.papers);
    edit(2016);
    assert_eq!(b.find("h1#rn").text(), f.papers, "back on the car");
    assert_eq!(f.field("year").find("td.value").text(), "2016");
    assert_eq!(f.stored_year(&f.papers).await, 2016);
    // The owner and the files are untouched.
    assert_eq!(
        f.field("owner").find("td.value a.rn").text(),
        f.fred,
        "the owner is kept"
    );
    assert!(!f.field("photo").find_all("td.value a.file").is_empty());

    // Someone else writes while the page is open: the page's save is refused, nothing written.
    f.open_item(&f.papers);
    let pool = f.cars_pool().await;
    korm::item::<Car>(&pool)
        .load(f.papers.parse().expect("rn"))
        .get()
        .await
        .expect("load")
        .update(|car| car.year = 2017)
        .commit()
        .await
        .expect("the other writer");
    pool.close().await;
    edit(2018);
    let conflict = b.find("h1#conflict").text();
    assert!(conflict.contains("onflict"), "{conflict}");
    assert_eq!(
        f.stored_year(&f.papers).await,
        2017,
        "the stale edit wrote nothing"
    );
}
