//! How text from the data reaches a page: every value through [`escape`] (text and quoted
//! attributes alike), every URL built by [`Url`] with percent-encoding, and one [`layout`]
//! around each page.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Text made safe for HTML text and for a double- or single-quoted attribute value: `&`,
/// `<`, `>`, `"` and `'` become character references, so no value from the data can open a
/// tag, close an attribute or start an entity.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a query value keeps as is: letters, digits and `-._~` (RFC 3986's unreserved
/// characters); everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A value percent-encoded for a URL's query.
pub(crate) fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// A URL of the studio: a path and query parameters, each value percent-encoded. Its
/// [`href`](Url::href) is escaped for an attribute.
#[derive(Debug, Clone)]
pub(crate) struct Url {
    text: String,
    params: usize,
}

impl Url {
    /// The URL of `path` (`/item`).
    pub(crate) fn new(path: &str) -> Url {
        Url {
            text: path.to_owned(),
            params: 0,
        }
    }

    /// Adds `name=value`.
    pub(crate) fn with(mut self, name: &str, value: &str) -> Url {
        self.text.push(if self.params == 0 { '?' } else { '&' });
        self.text.push_str(name);
        self.text.push('=');
        self.text.push_str(&encode(value));
        self.params += 1;
        self
    }

    /// Adds `name=value` when there is a value.
    pub(crate) fn with_some(self, name: &str, value: Option<&str>) -> Url {
        match value {
            Some(v) if !v.is_empty() => self.with(name, v),
            _ => self,
        }
    }

    /// The URL as text (for a `Location` header).
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The URL escaped for a quoted attribute.
    pub(crate) fn href(&self) -> String {
        escape(&self.text)
    }
}

/// A link: `<a class="CLASS" href="URL">TEXT</a>`, the text escaped.
pub(crate) fn link(class: &str, url: &Url, text: &str) -> String {
    format!(
        r#"<a class="{}" href="{}">{}</a>"#,
        escape(class),
        url.href(),
        escape(text)
    )
}

/// The page around `body`: the title (after `korm studio`), the navigation, the styles.
pub(crate) fn layout(title: &str, nav: &Nav, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>korm studio · {}</title><style>{STYLE}</style></head><body>\
         <nav id=\"nav\"><a id=\"home\" href=\"/\">korm studio</a>",
        escape(title)
    );
    if nav.wal {
        out.push_str(r#"<a href="/wal">WAL</a>"#);
    }
    if nav.backups {
        out.push_str(r#"<a href="/backups">backups</a>"#);
    }
    if nav.writes {
        out.push_str(r#"<span class="mode writes">writes allowed</span>"#);
    } else {
        out.push_str(r#"<span class="mode">read-only</span>"#);
    }
    out.push_str("</nav><main>");
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// What the navigation links to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Nav {
    pub(crate) wal: bool,
    pub(crate) backups: bool,
    pub(crate) writes: bool,
}

/// The styles of every page (inline: the studio serves no other file).
const STYLE: &str = r#"
:root { --fg:#1d2330; --muted:#5d6677; --line:#dde2ea; --bg:#f7f8fa; --accent:#2456c8; --warn:#b3261e; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
nav#nav { display:flex; gap:1.2em; align-items:center; padding:.6em 1.5em; background:#1d2330; }
nav#nav a { color:#fff; text-decoration:none; }
nav#nav a#home { font-weight:700; }
nav#nav .mode { margin-left:auto; color:#c9d1e0; font-size:12px; border:1px solid #566; border-radius:3px; padding:0 .5em; }
nav#nav .mode.writes { color:#ffd7a8; border-color:#c87; }
main { padding:1.2em 1.5em; max-width:1400px; }
h1 { font-size:20px; margin:.2em 0 .8em; word-break:break-all; }
h2 { font-size:16px; margin:1.4em 0 .5em; }
a { color:var(--accent); }
table { border-collapse:collapse; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; vertical-align:top; padding:.35em .7em; border-bottom:1px solid var(--line); }
th { background:#eef1f6; font-weight:600; white-space:nowrap; }
td.value, td.cell { max-width:40em; overflow-wrap:anywhere; }
td.cell .num, td.cell .bool, td.cell .null { white-space:nowrap; }
a.item { font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12px; white-space:nowrap; }
section#layers ul, section#depots ul { display:flex; gap:.6em; list-style:none; padding:0; flex-wrap:wrap; }
section#layers li, section#depots li { background:#fff; border:1px solid var(--line); border-radius:4px; padding:.3em .8em; }
tr.unique td.name::after { content:" unique"; color:#7a4b00; background:#fff3d6; font-size:11px; padding:0 .3em; margin-left:.4em; border-radius:3px; }
.kind { color:var(--muted); font-size:12px; }
.col.unique { font-weight:600; }
.col.unique::after { content:"★"; color:#c88a00; margin-left:.2em; }
.encrypted, .hash { color:var(--muted); font-style:italic; }
.revealed { background:#fff3d6; }
.str { color:#1a6b2f; }
.num { color:#8a3ab9; }
.null { color:var(--muted); }
ul.obj, ol.arr { margin:0; padding-left:1.2em; }
.key { color:var(--muted); }
.error { color:var(--warn); background:#fdecea; border:1px solid #f4c7c3; padding:.6em .9em; border-radius:4px; white-space:pre-wrap; }
.ok { color:#1a6b2f; background:#e8f5ec; border:1px solid #b7e0c2; padding:.6em .9em; border-radius:4px; }
form#filter { display:flex; gap:.5em; margin:.5em 0 1em; flex-wrap:wrap; }
form#filter input[name=filter] { flex:1; min-width:20em; }
input, textarea, button { font:inherit; padding:.3em .5em; }
textarea { width:100%; min-height:16em; font-family:ui-monospace,Menlo,Consolas,monospace; font-size:13px; }
pre { background:#fff; border:1px solid var(--line); padding:.8em; overflow:auto; max-height:40em; }
.pager { margin:1em 0; display:flex; gap:1em; }
.muted { color:var(--muted); }
svg#refs { background:#fff; border:1px solid var(--line); max-width:100%; height:auto; }
svg#refs .node rect { fill:#eef3ff; stroke:#2456c8; }
svg#refs .node text { font-size:12px; fill:#1d2330; }
svg#refs .edge { stroke:#8a94a8; stroke-width:1.5; fill:none; }
ul#entries { list-style:none; padding:0; }
ul#entries li { padding:.15em 0; }
img#preview { max-width:100%; max-height:40em; border:1px solid var(--line); background:#fff; }
section { margin-bottom:1.5em; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_way_out_of_an_attribute() {
        let hostile = r#"<script>alert(1)</script>"'&amp;"#;
        let escaped = escape(hostile);
        assert_eq!(
            escaped,
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;amp;"
        );
        for c in ['<', '>', '"', '\''] {
            assert!(!escaped.contains(c), "{escaped}");
        }
    }

    #[test]
    fn urls_percent_encode_every_value() {
        let url = Url::new("/item")
            .with("rn", "[rn][from::cardb]:cars:suv:*")
            .with("filter", r#"a = "x&y" or b < 2"#);
        assert_eq!(
            url.as_str(),
            "/item?rn=%5Brn%5D%5Bfrom%3A%3Acardb%5D%3Acars%3Asuv%3A%2A\
             &filter=a%20%3D%20%22x%26y%22%20or%20b%20%3C%202"
        );
        assert!(url.href().contains("&amp;filter="));
        let link = link("rn", &Url::new("/x").with("a", "\"><b>"), "<b>");
        assert_eq!(
            link,
            r#"<a class="rn" href="/x?a=%22%3E%3Cb%3E">&lt;b&gt;</a>"#
        );
    }
}
