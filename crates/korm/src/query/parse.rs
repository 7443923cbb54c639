//! Filters and sort keys written as text, for the `korm` command and other places where a
//! person types them: `age > 30 and meta.tier = "gold"`, `-age,username`.
//! The grammar is [`parse_filter`]'s.

use serde_json::Value;

use super::filter::{Filter, SortOrder, and, eq, gt, gte, in_list, like, lt, lte, not, or};
use crate::error::{Error, Result};

/// The longest filter text, in bytes.
const MAX_TEXT: usize = 100_000;

/// Parses a filter written as text.
///
/// Grammar (keywords in any case):
///
/// ```text
/// filter  = or
/// or      = and { "or" and }
/// and     = unary { "and" unary }
/// unary   = "not" unary | "(" filter ")" | test
/// test    = path ( "=" | "==" | "!=" | ">" | ">=" | "<" | "<=" ) value
///         | path "like" string
///         | path "in" "[" [ value { "," value } ] "]"
/// value   = number | string | "true" | "false" | "null"
/// string  = '"' characters with \" \\ \n \t \r \/ \uXXXX escapes '"'
/// path    = characters of A-Z a-z 0-9 _ . [ ] *   (checked as a query path when it runs)
/// ```
///
/// `a != v` is `not(eq(a, v))`: it matches items where `a` is missing, as `not` does.
///
/// ```
/// use korm::{and, eq, gt, query::parse_filter};
/// let parsed = parse_filter(r#"age > 30 and meta.tier = "gold""#)?;
/// assert_eq!(parsed, and([gt("age", 30), eq("meta.tier", "gold")]));
/// # Ok::<(), korm::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidFilter`] saying what was expected and at which character (1-based).
pub fn parse_filter(text: &str) -> Result<Filter> {
    if text.len() > MAX_TEXT {
        return Err(invalid(0, format!("is longer than {MAX_TEXT} bytes")));
    }
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
        depth: 0,
    };
    let filter = parser.or()?;
    match parser.peek() {
        None => Ok(filter),
        Some(token) => Err(invalid(
            token.at,
            format!(
                "expected `and`, `or` or the end, found {}",
                token.kind.describe()
            ),
        )),
    }
}

/// Parses sort keys written as text: paths separated by commas, each descending with a
/// leading `-` (`-age,username`).
///
/// ```
/// use korm::{SortOrder, query::parse_sort};
/// assert_eq!(
///     parse_sort("-age, username")?,
///     [("age".to_owned(), SortOrder::Desc), ("username".to_owned(), SortOrder::Asc)]
/// );
/// # Ok::<(), korm::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidOption`] for an empty key, or more than
/// [`MAX_SORT_KEYS`](crate::query::MAX_SORT_KEYS) keys.
pub fn parse_sort(text: &str) -> Result<Vec<(String, SortOrder)>> {
    if text.split(',').nth(super::MAX_SORT_KEYS).is_some() {
        return Err(Error::InvalidOption {
            option: "sort",
            reason: format!("more than {} sort keys", super::MAX_SORT_KEYS),
        });
    }
    text.split(',')
        .map(|key| {
            let key = key.trim();
            let (path, order) = match key.strip_prefix('-') {
                Some(path) => (path.trim(), SortOrder::Desc),
                None => (key.strip_prefix('+').unwrap_or(key).trim(), SortOrder::Asc),
            };
            if path.is_empty() {
                return Err(Error::InvalidOption {
                    option: "sort",
                    reason: "a sort key is a path, with `-` in front to sort descending".to_owned(),
                });
            }
            Ok((path.to_owned(), order))
        })
        .collect()
}

fn invalid(at: usize, reason: String) -> Error {
    Error::InvalidFilter {
        path: String::new(),
        reason: if at == 0 {
            format!("the filter text {reason}")
        } else {
            format!("at character {at}: {reason}")
        },
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word(String),
    Str(String),
    Num(serde_json::Number),
    Op(&'static str),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Word(w) => format!("`{}`", crate::error::clip(w)),
            Kind::Str(_) => "a string".to_owned(),
            Kind::Num(n) => format!("the number {n}"),
            Kind::Op(op) => format!("`{op}`"),
            Kind::Open => "`(`".to_owned(),
            Kind::Close => "`)`".to_owned(),
            Kind::OpenList => "`[`".to_owned(),
            Kind::CloseList => "`]`".to_owned(),
            Kind::Comma => "`,`".to_owned(),
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Kind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// 1-based character position.
    at: usize,
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '*')
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    // Lists open and not closed yet, kept as the tokens come (counting the tokens again for
    // each character made a long text quadratic).
    let mut open_lists = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let after_in = tokens
            .last()
            .is_some_and(|t: &Token| t.kind.is_keyword("in"));
        // Inside a list only values come: a word there never takes a bracket.
        let in_list = open_lists > 0;
        let word_char = |c: char| path_char(c) && !(in_list && matches!(c, '[' | ']'));
        let mut push = |kind: Kind, len: usize| {
            tokens.push(Token { kind, at });
            len
        };
        i += match c {
            c if c.is_whitespace() => 1,
            '(' => push(Kind::Open, 1),
            ')' => push(Kind::Close, 1),
            ',' => push(Kind::Comma, 1),
            '"' => {
                let (value, len) = string(&chars[i..], at)?;
                push(Kind::Str(value), len)
            }
            '=' if chars.get(i + 1) == Some(&'=') => push(Kind::Op("="), 2),
            '=' => push(Kind::Op("="), 1),
            '!' if chars.get(i + 1) == Some(&'=') => push(Kind::Op("!="), 2),
            '>' if chars.get(i + 1) == Some(&'=') => push(Kind::Op(">="), 2),
            '>' => push(Kind::Op(">"), 1),
            '<' if chars.get(i + 1) == Some(&'=') => push(Kind::Op("<="), 2),
            '<' => push(Kind::Op("<"), 1),
            '-' | '0'..='9' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                    .count();
                let literal: String = chars[i..i + len].iter().collect();
                let number = serde_json::from_str::<serde_json::Number>(&literal)
                    .map_err(|_| invalid(at, format!("`{literal}` is not a number")))?;
                push(Kind::Num(number), len)
            }
            '[' if after_in => {
                open_lists += 1;
                push(Kind::OpenList, 1)
            }
            ']' if in_list => {
                open_lists -= 1;
                push(Kind::CloseList, 1)
            }
            c if word_char(c) => {
                let len = chars[i..].iter().take_while(|c| word_char(**c)).count();
                push(Kind::Word(chars[i..i + len].iter().collect()), len)
            }
            other => {
                return Err(invalid(
                    at,
                    format!("{other:?} can not start a path, an operator or a value"),
                ));
            }
        };
    }
    Ok(tokens)
}

/// A string literal at the start of `chars` (which begins with its opening quote): its value
/// and its length in characters.
fn string(chars: &[char], at: usize) -> Result<(String, usize)> {
    let mut out = String::new();
    let mut i = 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(invalid(
                    at,
                    "the string is not closed (a `\"` is missing)".to_owned(),
                ));
            }
            Some('"') => return Ok((out, i + 1)),
            Some('\\') => {
                let escaped = match chars.get(i + 1) {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('/') => '/',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some('u') => {
                        let hex: String =
                            chars.get(i + 2..i + 6).unwrap_or_default().iter().collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 4)
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                invalid(
                                    at + i,
                                    "\\u takes four hex digits of a character".to_owned(),
                                )
                            })?;
                        out.push(code);
                        i += 6;
                        continue;
                    }
                    _ => {
                        return Err(invalid(
                            at + i,
                            "unknown escape (use \\\" \\\\ \\/ \\n \\t \\r or \\uXXXX)".to_owned(),
                        ));
                    }
                };
                out.push(escaped);
                i += 2;
            }
            Some(c) => {
                out.push(*c);
                i += 1;
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

/// The deepest nesting of parentheses and `not`.
const MAX_NESTING: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += usize::from(token.is_some());
        token
    }

    /// The position to name when the text ends early.
    fn end(&self) -> usize {
        self.tokens.last().map_or(1, |t| t.at + 1)
    }

    fn expect(&mut self, what: &str) -> Result<Token> {
        let end = self.end();
        self.next()
            .ok_or_else(|| invalid(end, format!("expected {what}, the filter ends")))
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek().is_some_and(|t| t.kind.is_keyword(keyword));
        self.at += usize::from(found);
        found
    }

    fn or(&mut self) -> Result<Filter> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            or(parts)
        })
    }

    fn and(&mut self) -> Result<Filter> {
        let mut parts = vec![self.unary()?];
        while self.keyword("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            and(parts)
        })
    }

    fn nested<T>(&mut self, at: usize, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_NESTING {
            return Err(invalid(
                at,
                format!("parentheses and `not` nest deeper than {MAX_NESTING}"),
            ));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn unary(&mut self) -> Result<Filter> {
        let token = self.expect("a test such as `age > 30`")?;
        match token.kind {
            Kind::Word(w) if w.eq_ignore_ascii_case("not") => {
                self.nested(token.at, |p| p.unary()).map(not)
            }
            Kind::Open => {
                let inner = self.nested(token.at, |p| p.or())?;
                let close = self.expect("`)`")?;
                if close.kind != Kind::Close {
                    return Err(invalid(
                        close.at,
                        format!("expected `)`, found {}", close.kind.describe()),
                    ));
                }
                Ok(inner)
            }
            Kind::Word(path) => self.test(path, token.at),
            other => Err(invalid(
                token.at,
                format!("expected a path, `not` or `(`, found {}", other.describe()),
            )),
        }
    }

    fn test(&mut self, path: String, at: usize) -> Result<Filter> {
        let op = self.expect("an operator (= != > >= < <= like in)")?;
        match op.kind {
            Kind::Op(op) => {
                let value = self.value()?;
                Ok(match op {
                    "=" => eq(&path, value),
                    "!=" => not(eq(&path, value)),
                    ">" => gt(&path, value),
                    ">=" => gte(&path, value),
                    "<" => lt(&path, value),
                    _ => lte(&path, value),
                })
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("like") => {
                let pattern = self.expect("a pattern string")?;
                match pattern.kind {
                    Kind::Str(pattern) => Ok(like(&path, &pattern)),
                    other => Err(invalid(
                        pattern.at,
                        format!("`like` takes a string, found {}", other.describe()),
                    )),
                }
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("in") => {
                let open = self.expect("`[`")?;
                if open.kind != Kind::OpenList {
                    return Err(invalid(
                        open.at,
                        format!("`in` takes a list in `[ ]`, found {}", open.kind.describe()),
                    ));
                }
                let mut values = Vec::new();
                if self.peek().is_some_and(|t| t.kind == Kind::CloseList) {
                    self.next();
                    return Ok(in_list(&path, values));
                }
                loop {
                    values.push(self.value()?);
                    let sep = self.expect("`,` or `]`")?;
                    match sep.kind {
                        Kind::Comma => {}
                        Kind::CloseList => return Ok(in_list(&path, values)),
                        other => {
                            return Err(invalid(
                                sep.at,
                                format!("expected `,` or `]`, found {}", other.describe()),
                            ));
                        }
                    }
                }
            }
            other => Err(invalid(
                op.at,
                format!(
                    "expected an operator (= != > >= < <= like in) after `{}` (at {at}), found {}",
                    crate::error::clip(&path),
                    other.describe()
                ),
            )),
        }
    }

    fn value(&mut self) -> Result<Value> {
        let token = self.expect("a value (a number, a \"string\", true, false or null)")?;
        match token.kind {
            Kind::Num(n) => Ok(Value::Number(n)),
            Kind::Str(s) => Ok(Value::String(s)),
            Kind::Word(w) if w.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Kind::Word(w) if w.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            Kind::Word(w) if w.eq_ignore_ascii_case("null") => Ok(Value::Null),
            other => Err(invalid(
                token.at,
                format!(
                    "expected a value (a number, a \"string\", true, false or null), found {}{}",
                    other.describe(),
                    if matches!(other, Kind::Word(_)) {
                        " (text values are quoted)"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Filter {
        parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        match parse_filter(text) {
            Err(Error::InvalidFilter { reason, .. }) => reason,
            other => panic!("{text}: expected InvalidFilter, got {other:?}"),
        }
    }

    #[test]
    fn every_operator_and_value() {
        assert_eq!(parsed("age = 41"), eq("age", 41));
        assert_eq!(parsed("age == 41"), eq("age", 41));
        assert_eq!(parsed("age != 41"), not(eq("age", 41)));
        assert_eq!(parsed("score >= 97.5"), gte("score", 97.5));
        assert_eq!(parsed("score > -1e3"), gt("score", -1000.0));
        assert_eq!(parsed("a.b[0] < 3"), lt("a.b[0]", 3));
        assert_eq!(parsed("a[*].c <= 3"), lte("a[*].c", 3));
        assert_eq!(parsed("active = TRUE"), eq("active", true));
        assert_eq!(parsed("nickname = null"), eq("nickname", Value::Null));
        assert_eq!(parsed(r#"name like "fred%""#), like("name", "fred%"));
        assert_eq!(
            parsed(r#"city IN ["Paris", "Rome", null]"#),
            in_list(
                "city",
                [Value::from("Paris"), Value::from("Rome"), Value::Null]
            )
        );
        assert_eq!(parsed("tags in []"), in_list("tags", Vec::<Value>::new()));
        assert_eq!(
            parsed(r#"s = "a \"q\" \\ \u00e9\n""#),
            eq("s", "a \"q\" \\ é\n")
        );
    }

    #[test]
    fn precedence_and_grouping() {
        assert_eq!(
            parsed("a = 1 or b = 2 and c = 3"),
            or([eq("a", 1), and([eq("b", 2), eq("c", 3)])])
        );
        assert_eq!(
            parsed("(a = 1 or b = 2) and not c = 3"),
            and([or([eq("a", 1), eq("b", 2)]), not(eq("c", 3))])
        );
        assert_eq!(parsed("not not a = 1"), not(not(eq("a", 1))));
    }

    #[test]
    fn errors_say_what_and_where() {
        assert!(refused("age >").contains("expected a value"));
        assert!(refused("age > gold").contains("text values are quoted"));
        assert!(refused("age 30").contains("at character 5"));
        assert!(refused(r#"name = "fred"#).contains("not closed"));
        assert!(refused("(a = 1").contains("expected `)`"));
        assert!(refused("a = 1 b = 2").contains("expected `and`, `or` or the end"));
        assert!(refused("a = 1 and").contains("the filter ends"));
        assert!(refused("a in [1, 2").contains("`,` or `]`"));
        assert!(refused("a like 5").contains("takes a string"));
        assert!(refused("a = 1; drop table x").contains("';'"));
        assert!(refused(r#"a = "\x""#).contains("unknown escape"));
        assert!(refused("a = 12abc").contains("at character"));
        let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
        assert!(refused(&deep).contains("nest deeper"));
        assert!(refused(&"a = 1 and ".repeat(20_000)).contains("longer than"));
    }

    #[test]
    fn sort_keys() {
        assert_eq!(
            parse_sort("-age,username, +meta.tier").unwrap(),
            [
                ("age".to_owned(), SortOrder::Desc),
                ("username".to_owned(), SortOrder::Asc),
                ("meta.tier".to_owned(), SortOrder::Asc)
            ]
        );
        assert!(parse_sort("age,,x").is_err());
        assert!(parse_sort("-").is_err());
    }
}
