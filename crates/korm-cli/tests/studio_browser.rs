//! `korm studio` in headless Chromium (Debian's chromium and chromium-driver, driven over
//! W3C WebDriver by `support/webdriver.rs`). So far the harness alone; the studio's pages
//! come with the studio.

use serde_json::json;

#[path = "support/webdriver.rs"]
mod webdriver;

use webdriver::{Browser, http};

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
