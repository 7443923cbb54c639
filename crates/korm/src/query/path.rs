//! Field paths: `year`, `meta.flags.hot`, `tags[0]`, `owner.addresses[*].city`.
//!
//! A path starts with the field (the top-level column of the item table) and goes on with any
//! number of steps: `.key` into an object, `[n]` into an array, `[*]` over every element of an
//! array. The field and every key match `[A-Za-z_][A-Za-z0-9_]*`; an index is at most 9
//! decimal digits without a sign. Nothing else is accepted (no quoting, no spaces, no
//! non-ASCII), so a parsed path can reach SQL only as a quoted identifier plus bound JSON path
//! text, never as free text.

use std::fmt;

use crate::error::clip;
use crate::{Error, Result};

/// The most steps a path may have. Each `[*]` becomes a nested subquery, so an unbounded
/// path could build SQL deeper than a database accepts; no real model nests this deep.
const MAX_STEPS: usize = 32;

/// The most digits of an array index (keeps every index well inside `usize` and `i32`).
const MAX_INDEX_DIGITS: usize = 9;

/// A parsed, validated field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    column: String,
    steps: Vec<PathStep>,
}

/// One step of a [`FieldPath`] after its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathStep {
    /// `.key`: a key of an object.
    Key(String),
    /// `[n]`: an element of an array.
    Index(usize),
    /// `[*]`: every element of an array.
    Wildcard,
}

impl fmt::Display for PathStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathStep::Key(key) => write!(f, ".{key}"),
            PathStep::Index(index) => write!(f, "[{index}]"),
            PathStep::Wildcard => f.write_str("[*]"),
        }
    }
}

impl FieldPath {
    /// Parses a path, naming what is wrong when it is not valid.
    pub(crate) fn parse(input: &str) -> Result<FieldPath> {
        let fail = |reason: String| Error::InvalidPath {
            path: clip(input),
            reason,
        };
        if input.is_empty() {
            return Err(fail("the path is empty".into()));
        }
        if let Some((at, c)) = input.char_indices().find(|(_, c)| !c.is_ascii()) {
            return Err(fail(format!(
                "non-ASCII character {c:?} at byte {at}: names are [A-Za-z_][A-Za-z0-9_]*"
            )));
        }
        let bytes = input.as_bytes();
        let mut pos = 0;
        let column = identifier(bytes, &mut pos, "the field").map_err(fail)?;
        let mut steps = Vec::new();
        while pos < bytes.len() {
            let step = match bytes[pos] {
                b'.' => {
                    pos += 1;
                    PathStep::Key(identifier(bytes, &mut pos, "a key").map_err(fail)?)
                }
                b'[' => {
                    pos += 1;
                    bracket(bytes, &mut pos).map_err(fail)?
                }
                other => {
                    return Err(fail(format!(
                        "unexpected {} at byte {pos}: expected '.' or '['",
                        describe(other)
                    )));
                }
            };
            steps.push(step);
            if steps.len() > MAX_STEPS {
                return Err(fail(format!("a path has at most {MAX_STEPS} steps")));
            }
        }
        Ok(FieldPath { column, steps })
    }

    /// The field: the top-level column of the item table.
    pub(crate) fn column(&self) -> &str {
        &self.column
    }

    /// The steps after the field.
    pub(crate) fn steps(&self) -> &[PathStep] {
        &self.steps
    }

    /// Whether the path goes over every element of an array somewhere (`[*]`).
    pub(crate) fn has_wildcard(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, PathStep::Wildcard))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.column)?;
        self.steps.iter().try_for_each(|step| step.fmt(f))
    }
}

/// Reads `[A-Za-z_][A-Za-z0-9_]*` at `pos`.
fn identifier(bytes: &[u8], pos: &mut usize, what: &str) -> Result<String, String> {
    let start = *pos;
    match bytes.get(start) {
        None => return Err(format!("{what} is missing at the end of the path")),
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        Some(b) => {
            return Err(format!(
                "{what} is missing at byte {start} (found {}): names are [A-Za-z_][A-Za-z0-9_]*",
                describe(*b)
            ));
        }
    }
    let mut end = start + 1;
    while bytes
        .get(end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        end += 1;
    }
    *pos = end;
    // Only ASCII was accepted above, so this slice is valid UTF-8.
    let name = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    if crate::model::PROTOTYPE_KEYS.contains(&name.as_str()) {
        return Err(format!(
            "{what} {name:?} at byte {start} reaches a JavaScript object's prototype, which \
             korm 1.5 refuses"
        ));
    }
    Ok(name)
}

/// Reads the inside of `[...]` after the `[`, including the closing `]`.
fn bracket(bytes: &[u8], pos: &mut usize) -> Result<PathStep, String> {
    let open = *pos - 1;
    let Some(len) = bytes[*pos..].iter().position(|b| *b == b']') else {
        return Err(format!("the '[' at byte {open} is never closed"));
    };
    let inner = &bytes[*pos..*pos + len];
    *pos += len + 1;
    if inner == b"*" {
        return Ok(PathStep::Wildcard);
    }
    if inner.is_empty() {
        return Err(format!(
            "empty brackets at byte {open}: use an index [0] or [*]"
        ));
    }
    if !inner.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "the index at byte {open} is {:?}: an index is a decimal number without a sign, or *",
            String::from_utf8_lossy(inner)
        ));
    }
    if inner.len() > MAX_INDEX_DIGITS {
        return Err(format!(
            "the index at byte {open} has more than {MAX_INDEX_DIGITS} digits"
        ));
    }
    let index = inner
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    Ok(PathStep::Index(index))
}

/// Names a byte in an error without echoing control characters.
fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else if b == b' ' {
        "a space".into()
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathStep {
        PathStep::Key(k.into())
    }

    #[test]
    fn accepted_paths_parse_and_print_back() {
        let cases: &[(&str, &str, Vec<PathStep>)] = &[
            ("year", "year", vec![]),
            ("_x9", "_x9", vec![]),
            ("meta.flags.hot", "meta", vec![key("flags"), key("hot")]),
            ("tags[0]", "tags", vec![PathStep::Index(0)]),
            (
                "owner.addresses[*].city",
                "owner",
                vec![key("addresses"), PathStep::Wildcard, key("city")],
            ),
            (
                "a[1][*].b",
                "a",
                vec![PathStep::Index(1), PathStep::Wildcard, key("b")],
            ),
            ("a[999999999]", "a", vec![PathStep::Index(999_999_999)]),
            (
                "A_b.C_9[*][*]",
                "A_b",
                vec![key("C_9"), PathStep::Wildcard, PathStep::Wildcard],
            ),
        ];
        for (input, column, steps) in cases {
            let path = FieldPath::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(path.column(), *column, "{input}");
            assert_eq!(path.steps(), steps.as_slice(), "{input}");
            assert_eq!(path.to_string(), *input, "{input} prints back");
            assert_eq!(
                path.has_wildcard(),
                steps.contains(&PathStep::Wildcard),
                "{input}"
            );
        }
    }

    #[test]
    fn leading_zeros_print_canonically() {
        assert_eq!(FieldPath::parse("a[007]").unwrap().to_string(), "a[7]");
    }

    #[test]
    fn rejected_paths_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("a..b", "a key is missing at byte 2"),
            ("a.", "a key is missing at the end"),
            (".a", "the field is missing at byte 0"),
            ("1a", "the field is missing at byte 0"),
            ("a[", "never closed"),
            ("a[1", "never closed"),
            ("a[]", "empty brackets"),
            ("a[-1]", "\"-1\""),
            ("a[+1]", "\"+1\""),
            ("a[x]", "\"x\""),
            ("a[1 ]", "\"1 \""),
            ("a[**]", "\"**\""),
            ("a[1234567890]", "more than 9 digits"),
            ("a]", "unexpected ']'"),
            ("a b", "unexpected a space"),
            (" a", "found a space"),
            ("a'", "unexpected '''"),
            ("a\"b", "unexpected '\"'"),
            ("a;drop", "unexpected ';'"),
            ("a--", "unexpected '-'"),
            ("a.b-c", "unexpected '-'"),
            ("a\0", "byte 0x00"),
            ("a\n", "byte 0x0a"),
            ("caf\u{e9}", "non-ASCII"),
            ("a.\u{441}", "non-ASCII"),
            ("a$", "unexpected '$'"),
            ("$.a", "the field is missing"),
            ("a[0].", "a key is missing at the end"),
            ("a.[0]", "a key is missing at byte 2"),
        ];
        for (input, expected) in cases {
            match FieldPath::parse(input) {
                Err(Error::InvalidPath { path, reason }) => {
                    assert_eq!(path, *input);
                    assert!(
                        reason.contains(expected),
                        "{input:?}: {reason:?} should contain {expected:?}"
                    );
                }
                other => panic!("{input:?} should be rejected, got {other:?}"),
            }
        }
    }

    #[test]
    fn too_many_steps_are_rejected() {
        let ok = format!("a{}", ".b".repeat(MAX_STEPS));
        assert!(FieldPath::parse(&ok).is_ok());
        let long = format!("a{}", "[*]".repeat(MAX_STEPS + 1));
        let err = FieldPath::parse(&long).unwrap_err().to_string();
        assert!(err.contains("at most 32 steps"), "{err}");
    }

    #[test]
    fn long_input_is_clipped_in_errors() {
        let input = format!("{};", "a".repeat(5000));
        let err = FieldPath::parse(&input).unwrap_err();
        let Error::InvalidPath { path, .. } = err else {
            panic!("{err:?}")
        };
        assert!(path.len() < 300);
    }
}
