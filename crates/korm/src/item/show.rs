//! A readable rendering of an item, secrets redacted.

use serde_json::{Map, Value};

use crate::model::is_envelope;

/// How [`Item::show`](super::Item::show) renders an item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShowOptions {
    /// Colour the output with ANSI escapes (for a terminal).
    pub color: bool,
}

impl ShowOptions {
    /// Plain text.
    pub fn new() -> Self {
        Self::default()
    }

    /// With or without ANSI colours.
    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self
    }
}

const KEY: &str = "\x1b[36m";
const SECRET: &str = "\x1b[2;33m";
const HEAD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Renders `rn` and its fields, one per line. Encrypted values and password hashes are never
/// printed, only what they are.
pub(super) fn render(rn: &str, data: &Map<String, Value>, options: ShowOptions) -> String {
    let paint = |code: &str, text: &str| {
        if options.color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    };
    let mut out = paint(HEAD, rn);
    out.push('\n');
    for (name, value) in data {
        out.push_str("  ");
        // A column name is data too (a hand-made column may hold a terminal escape): one
        // with a control character is printed quoted and escaped, as nested keys are.
        if name.chars().any(char::is_control) {
            out.push_str(&paint(KEY, &Value::String(name.clone()).to_string()));
        } else {
            out.push_str(&paint(KEY, name));
        }
        out.push_str(": ");
        let mut text = String::new();
        redacted(value, &mut text, &|s: &str| paint(SECRET, s));
        out.push_str(&text);
        out.push('\n');
    }
    out
}

fn redacted(value: &Value, out: &mut String, secret: &dyn Fn(&str) -> String) {
    if is_envelope(value) {
        let what = match value.get("type").and_then(Value::as_str) {
            Some("password") => "<password hash>",
            _ => "<encrypted>",
        };
        out.push_str(&secret(what));
        return;
    }
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                redacted(v, out, secret);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                redacted(v, out, secret);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Control characters in names and values (a terminal escape in a tampered column name)
    /// are printed escaped, never raw.
    #[test]
    fn control_characters_are_escaped() {
        let data = json!({"\u{1b}]0;owned\u{7}": "a\u{1b}[2Jb", "ok": {"\u{1b}k": 1}});
        let text = render(
            "[rn]:users:freetier:x",
            data.as_object().unwrap(),
            ShowOptions::new(),
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains(r#""\u001b]0;owned\u0007": "a\u001b[2Jb""#),
            "{text}"
        );
    }

    #[test]
    fn secrets_are_redacted_everywhere() {
        let data = json!({
            "username": "fred",
            "ssn": {"__ENCRYPTED__": true, "type": "symmetric", "value": "376f2be2"},
            "nested": {"pw": {"__ENCRYPTED__": true, "type": "password", "value": "$argon2id$x"}}
        });
        let text = render(
            "[rn]:users:freetier:x",
            data.as_object().unwrap(),
            ShowOptions::new(),
        );
        assert!(text.contains("username: \"fred\""));
        assert!(text.contains("ssn: <encrypted>"));
        assert!(text.contains("<password hash>"));
        assert!(!text.contains("376f2be2") && !text.contains("argon2"));
        let coloured = render(
            "[rn]:a:b:c",
            data.as_object().unwrap(),
            ShowOptions::new().with_color(true),
        );
        assert!(coloured.contains("\x1b["));
    }
}
