//! How a value of an item shows: RNs as links (to the item, the collection or the file),
//! encryption envelopes as `<encrypted>` or `<password hash>` (decrypted only when the
//! studio may reveal), everything else as escaped text.

use std::fmt::Write as _;

use korm::{Rn, RnForm};
use serde_json::{Map, Value};

use super::html::{Url, escape, link};
pub(crate) use crate::data::redacted;

/// The longest text a table cell shows.
const CELL_CHARS: usize = 80;

/// Whether `value` is an encryption envelope.
pub(crate) fn is_envelope(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.get(korm::crypto::ENVELOPE_MARKER) == Some(&Value::Bool(true)))
}

/// Whether `value` holds an envelope anywhere.
pub(crate) fn holds_envelope(value: &Value) -> bool {
    match value {
        v if is_envelope(v) => true,
        Value::Object(map) => map.values().any(holds_envelope),
        Value::Array(items) => items.iter().any(holds_envelope),
        _ => false,
    }
}

/// Whether an envelope holds a password hash (never revealed: it can not be decrypted).
fn is_password(map: &Map<String, Value>) -> bool {
    map.get("type").and_then(Value::as_str) == Some("password")
}

/// The envelope's name for people: `<encrypted>` or `<password hash>`.
fn envelope_name(map: &Map<String, Value>) -> &'static str {
    if is_password(map) {
        "<password hash>"
    } else {
        "<encrypted>"
    }
}

/// What a text value is, when it is an RN.
fn as_rn(text: &str) -> Option<Rn> {
    if !text.starts_with("[rn]") {
        return None;
    }
    text.parse().ok()
}

/// A link for an RN: the item, the collection, the file or the depot folder.
fn rn_link(rn: &Rn) -> String {
    let text = rn.as_str();
    match rn.form() {
        RnForm::Item => link("rn", &Url::new("/item").with("rn", text), text),
        RnForm::Collection => link(
            "rn-collection",
            &Url::new("/collection").with("rn", text),
            text,
        ),
        RnForm::DepotFile => link("file", &Url::new("/file").with("rn", text), text),
        _ => {
            let prefix = rn
                .segments()
                .iter()
                .filter(|s| s.as_str() != "*")
                .cloned()
                .collect::<Vec<_>>()
                .join("/");
            let url = Url::new("/depot")
                .with("name", rn.depot().unwrap_or_default())
                .with_some("prefix", Some(prefix.as_str()));
            link("depot-prefix", &url, text)
        }
    }
}

/// Renders values; decrypts with `reveal` when given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Render<'a> {
    pub(crate) reveal: Option<&'a korm::crypto::KeyRing>,
}

impl Render<'_> {
    /// The whole value, nested objects and arrays as lists.
    pub(crate) fn value(&self, value: &Value) -> String {
        let mut out = String::new();
        self.write(value, &mut out);
        out
    }

    fn write(&self, value: &Value, out: &mut String) {
        match value {
            Value::Null => out.push_str(r#"<span class="null">null</span>"#),
            Value::Bool(b) => {
                let _ = write!(out, r#"<span class="bool">{b}</span>"#);
            }
            Value::Number(n) => {
                let _ = write!(
                    out,
                    r#"<span class="num">{}</span>"#,
                    escape(&n.to_string())
                );
            }
            Value::String(s) => match as_rn(s) {
                Some(rn) => out.push_str(&rn_link(&rn)),
                None => {
                    let _ = write!(out, r#"<span class="str">{}</span>"#, escape(s));
                }
            },
            Value::Object(map) if is_envelope(value) => self.envelope(value, map, out),
            Value::Object(map) => {
                out.push_str(r#"<ul class="obj">"#);
                for (k, v) in map {
                    let _ = write!(out, r#"<li><span class="key">{}</span>: "#, escape(k));
                    self.write(v, out);
                    out.push_str("</li>");
                }
                out.push_str("</ul>");
            }
            Value::Array(items) => {
                out.push_str(r#"<ol class="arr" start="0">"#);
                for v in items {
                    out.push_str("<li>");
                    self.write(v, out);
                    out.push_str("</li>");
                }
                out.push_str("</ol>");
            }
        }
    }

    fn envelope(&self, value: &Value, map: &Map<String, Value>, out: &mut String) {
        if let Some(ring) = self.reveal
            && !is_password(map)
        {
            match ring.decrypt::<Value>(value) {
                Ok(plain) => {
                    out.push_str(r#"<span class="revealed" title="decrypted">"#);
                    // The decrypted value is data like any other: escaped, its RNs linked.
                    Render { reveal: None }.write(&plain, out);
                    out.push_str("</span>");
                }
                Err(e) => {
                    let _ = write!(
                        out,
                        r#"<span class="encrypted">&lt;encrypted&gt;</span> <span class="error">{}</span>"#,
                        escape(&e.to_string())
                    );
                }
            }
            return;
        }
        let class = if is_password(map) {
            "encrypted hash"
        } else {
            "encrypted"
        };
        let _ = write!(
            out,
            r#"<span class="{class}">{}</span>"#,
            escape(envelope_name(map))
        );
    }

    /// A short form for a table cell: scalars and RN links; objects and arrays as their
    /// (redacted) JSON, cut to a line.
    pub(crate) fn cell(&self, value: &Value) -> String {
        match value {
            Value::Object(map) if is_envelope(value) => {
                let mut out = String::new();
                Render { reveal: None }.envelope(value, map, &mut out);
                out
            }
            Value::Object(_) | Value::Array(_) => {
                let text = redacted(value).to_string();
                let cut: String = text.chars().take(CELL_CHARS).collect();
                let more = if cut.len() < text.len() { "…" } else { "" };
                format!(r#"<span class="json">{}{more}</span>"#, escape(&cut))
            }
            Value::String(s) if as_rn(s).is_none() && s.chars().count() > CELL_CHARS => {
                let cut: String = s.chars().take(CELL_CHARS).collect();
                format!(r#"<span class="str">{}…</span>"#, escape(&cut))
            }
            other => self.value(other),
        }
    }
}

/// Every item RN in `value` (what the reference graph counts).
pub(crate) fn item_rns(value: &Value, out: &mut Vec<Rn>) {
    match value {
        Value::String(s) => {
            if let Some(rn) = as_rn(s).filter(Rn::is_item) {
                out.push(rn);
            }
        }
        Value::Object(map) => map.values().for_each(|v| item_rns(v, out)),
        Value::Array(items) => items.iter().for_each(|v| item_rns(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hostile_text_stays_text_and_rns_become_links() {
        let render = Render { reveal: None };
        let shown = render.value(&json!({
            "<img src=x onerror=alert(1)>": "<script>alert(1)</script>",
            "owner": "[rn][from::pg]:users:people:3df3face-f377-4f86-9bb9-a9b4671a9441",
            "invoice": "[rn][depot::files]:invoices:a&b.txt",
            "ssn": {"__ENCRYPTED__": true, "type": "symmetric", "value": "ab12", "iv": "00"},
        }));
        assert!(
            !shown.contains("<script>") && !shown.contains("<img"),
            "{shown}"
        );
        assert!(shown.contains("&lt;script&gt;"), "{shown}");
        assert!(
            shown.contains(
                r#"<a class="rn" href="/item?rn=%5Brn%5D%5Bfrom%3A%3Apg%5D%3Ausers%3Apeople%3A3df3face-f377-4f86-9bb9-a9b4671a9441">"#
            ),
            "{shown}"
        );
        assert!(
            shown.contains(r#"<a class="file" href="/file?rn="#),
            "{shown}"
        );
        assert!(shown.contains("a&amp;b.txt</a>"), "{shown}");
        assert!(
            shown.contains(r#"<span class="encrypted">&lt;encrypted&gt;</span>"#)
                && !shown.contains("ab12"),
            "{shown}"
        );
    }
}
