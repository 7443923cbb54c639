//! Resource Names: the text address of every item, collection and depot file.
//!
//! An RN is `[rn]`, then zero or more mods `[key::value]`, then one or more `:`-separated
//! segments. It has one of four [forms](RnForm):
//!
//! | form | example |
//! |------|---------|
//! | item | `[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441` |
//! | collection | `[rn][from::cardb]:cars:suv:*` |
//! | depot file | `[rn][depot::files]:invoices:fred:invoice-001.txt` |
//! | depot prefix | `[rn][depot::files]:invoices:fred:*` |
//!
//! An [`Rn`] is only ever built from valid text, and prints back byte-identical to the text it
//! was parsed from, so an RN read from a row is written back unchanged.
//!
//! ```
//! use korm::Rn;
//! # fn main() -> korm::Result<()> {
//! let rn: Rn = "[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441".parse()?;
//! assert_eq!(rn.layer(), Some("cardb"));
//! assert_eq!(rn.namespace(), Some("cars"));
//! assert_eq!(rn.kind(), Some("suv"));
//! assert_eq!(rn.id(), Some("3df3face-f377-4f86-9bb9-a9b4671a9441"));
//! assert_eq!(rn.to_string(), "[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441");
//! # Ok(()) }
//! ```
//!
//! # Rules
//!
//! **Prefix.** The text starts with `[rn]`, exactly (lowercase, no leading whitespace).
//!
//! ```
//! # use korm::Rn;
//! assert!("[rn]:users:freetier:*".parse::<Rn>().is_ok());
//! assert!("[RN]:users:freetier:*".parse::<Rn>().is_err());
//! assert!(" [rn]:users:freetier:*".parse::<Rn>().is_err());
//! assert!("users:freetier:*".parse::<Rn>().is_err());
//! ```
//!
//! **Mods.** Each mod is `[key::value]`: the key matches `[a-z][a-z0-9_]*`, the value matches
//! `[A-Za-z0-9_-]` and is 1 to 64 characters long. A key may appear once. `from` names the
//! layer of an item or collection, `depot` makes the RN a depot RN, and the two never appear
//! together. Other keys are kept as given.
//!
//! ```
//! # use korm::Rn;
//! assert!("[rn][from::cardb]:cars:suv:*".parse::<Rn>().is_ok());
//! assert!("[rn][from::cardb][tag::v-2]:cars:suv:*".parse::<Rn>().is_ok());
//! assert!("[rn][from:cardb]:cars:suv:*".parse::<Rn>().is_err()); // one colon
//! assert!("[rn][from::]:cars:suv:*".parse::<Rn>().is_err()); // empty value
//! assert!("[rn][from::car db]:cars:suv:*".parse::<Rn>().is_err()); // space in the value
//! assert!("[rn][From::cardb]:cars:suv:*".parse::<Rn>().is_err()); // uppercase key
//! assert!("[rn][from::cardb:cars:suv:*".parse::<Rn>().is_err()); // not closed
//! assert!("[rn][from::a][from::b]:cars:suv:*".parse::<Rn>().is_err()); // key twice
//! assert!("[rn][from::a][depot::files]:x.txt".parse::<Rn>().is_err()); // from with depot
//! ```
//!
//! **Item and collection RNs** (no `depot` mod) have exactly three segments: namespace, kind
//! and id. Namespace and kind match `[a-z][a-z0-9]*`. The id is a UUIDv4 (`8-4-4-4-12` hex
//! digits, version nibble `4`, variant `8`, `9`, `a` or `b`, either case, kept as written) for
//! an item, or `*` for a collection.
//!
//! ```
//! # use korm::Rn;
//! assert!("[rn]:users:freetier:3df3face-f377-4f86-9bb9-a9b4671a9441".parse::<Rn>().is_ok());
//! assert!("[rn]:users:freetier:3DF3FACE-F377-4F86-9BB9-A9B4671A9441".parse::<Rn>().is_ok());
//! assert!("[rn]:users:freetier:*".parse::<Rn>().is_ok());
//! assert!("[rn]:users2:tier1:*".parse::<Rn>().is_ok());
//! assert!("[rn]:Users:freetier:*".parse::<Rn>().is_err()); // uppercase namespace
//! assert!("[rn]:users:free_tier:*".parse::<Rn>().is_err()); // `_` in kind
//! assert!("[rn]:users:*".parse::<Rn>().is_err()); // two segments
//! assert!("[rn]:users:freetier:x:*".parse::<Rn>().is_err()); // four segments
//! assert!("[rn]:users:freetier:123".parse::<Rn>().is_err()); // not a uuid
//! // A UUIDv1 is not a UUIDv4.
//! assert!("[rn]:users:freetier:3df3face-f377-1f86-9bb9-a9b4671a9441".parse::<Rn>().is_err());
//! assert!("[rn]:users:freetier:*:".parse::<Rn>().is_err()); // trailing `:`
//! assert!("[rn]::freetier:*".parse::<Rn>().is_err()); // empty segment
//! assert!("[rn]".parse::<Rn>().is_err()); // no segments
//! assert!("[rn]:users:freetier:* ".parse::<Rn>().is_err()); // whitespace
//! ```
//!
//! **Depot RNs** (with a `depot` mod) have one or more segments, the path of a file in that
//! depot. A segment is not empty, at most 255 bytes long, not `.` or `..`, and holds no `/`,
//! `\`, `:`, `*`, whitespace or control character (NUL included). Other characters, non-ASCII
//! ones too, are allowed. A depot prefix RN, naming every file under a path, ends in the
//! segment `*`; `*` is allowed nowhere else.
//!
//! ```
//! # use korm::Rn;
//! assert!("[rn][depot::files]:invoices:fred:invoice-001.txt".parse::<Rn>().is_ok());
//! assert!("[rn][depot::files]:invoices:fred:*".parse::<Rn>().is_ok());
//! assert!("[rn][depot::files]:*".parse::<Rn>().is_ok()); // the whole depot
//! assert!("[rn][depot::files]:fotos:été.jpg".parse::<Rn>().is_ok());
//! assert!("[rn][depot::files]:invoices:..:secret.txt".parse::<Rn>().is_err());
//! assert!("[rn][depot::files]:invoices:a/b.txt".parse::<Rn>().is_err());
//! assert!("[rn][depot::files]:invoices:*:x.txt".parse::<Rn>().is_err()); // `*` in the middle
//! assert!("[rn][depot::files]:invoices:f*".parse::<Rn>().is_err()); // `*` inside a segment
//! assert!("[rn][depot::files]:invoices:my invoice.txt".parse::<Rn>().is_err());
//! assert!("[rn][depot::files]:invoices:".parse::<Rn>().is_err()); // trailing `:`
//! ```
//!
//! # Errors
//!
//! Bad text is an [`Error::InvalidRn`] whose `part` names the
//! offending piece (`namespace "Users"`, `segment 3 "a/b"`, `mod "[from:x]"`, `id "123"`) and
//! whose `reason` says what is wrong with it.
//!
//! ```
//! # use korm::Rn;
//! let err = "[rn]:Users:freetier:*".parse::<Rn>().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"invalid rn "[rn]:Users:freetier:*": namespace "Users" must match [a-z][a-z0-9]* (at most 100 characters)"#
//! );
//! ```

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::error::clip;
use crate::{Error, Result};

/// The text every RN starts with.
const PREFIX: &str = "[rn]";
/// The mod naming the layer of an item or collection.
const FROM: &str = "from";
/// The mod naming the depot of a depot RN.
const DEPOT: &str = "depot";
/// The segment (and id) meaning "everything here".
const STAR: &str = "*";
/// The longest depot segment, in bytes (the usual file-name limit).
const MAX_SEGMENT_BYTES: usize = 255;
/// The longest mod value, in characters (all ASCII, so bytes too).
const MAX_MOD_VALUE: usize = 64;
/// How much of an offending piece an error quotes.
const QUOTE_MAX: usize = 64;

const NAME_RULE: &str = "must match [a-z][a-z0-9]* (at most 100 characters)";

/// The most characters a namespace or kind may have.
const MAX_NAME: usize = 100;

/// The most mods an RN may carry.
const MAX_MODS: usize = 16;
const MOD_KEY_RULE: &str = "must have a key matching [a-z][a-z0-9_]*";
const MOD_VALUE_RULE: &str = "must have a value of 1 to 64 characters matching [A-Za-z0-9_-]";
const ID_RULE: &str = "must be a UUIDv4 (8-4-4-4-12 hex digits, version 4) or *";

/// A Resource Name: the address of an item, a collection, a depot file or a depot prefix.
///
/// `T` is the model the RN points at (`Rn<User>`), or `()` when untyped. It only guides the
/// compiler: the text is the same, and [`cast`](Rn::cast) changes `T` freely. Equality,
/// ordering and hashing compare the text. See the [module docs](self) for the grammar.
///
/// ```
/// use korm::{Rn, RnForm};
/// # fn main() -> korm::Result<()> {
/// let cars: Rn = "[rn][from::cardb]:cars:suv:*".parse()?;
/// assert_eq!(cars.form(), RnForm::Collection);
/// let id = uuid::Uuid::parse_str("3df3face-f377-4f86-9bb9-a9b4671a9441").unwrap();
/// let car = cars.with_id(id)?;
/// assert_eq!(car, "[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441");
/// assert_eq!(car.collection(), cars);
/// # Ok(()) }
/// ```
pub struct Rn<T = ()> {
    /// The parsed parts, shared: cloning an RN (every item and query row holds one) is a
    /// reference count, not a copy.
    data: Arc<RnData>,
    _model: PhantomData<fn() -> T>,
}

/// What an [`Rn`] is made of. `S` is the segment cache: concrete when built, a trait object
/// behind the `Arc` (one allocation either way).
#[derive(Debug)]
struct RnData<S: ?Sized = dyn SegmentCache> {
    /// The canonical printed form (the parsed text, byte for byte).
    text: String,
    /// The mods in the order written, shared by the RNs made from this one (the item RNs of
    /// a query's rows share their collection's).
    mods: Arc<[(String, String)]>,
    /// Where the `:`-separated segments start in `text` (after the mods and the first `:`).
    /// No segment holds a `:`, so the segments are `text[path_start..]` split at `:`.
    path_start: usize,
    /// Where the kind and the id start in `text`, for an item or collection RN (0 for a depot
    /// RN, which has neither).
    kind_start: usize,
    id_start: usize,
    form: RnForm,
    /// The segments as owned strings, made on first use: the RNs of read rows (one per row of
    /// a query) are built from text alone, and most are never asked for their segments.
    ///
    /// The cell is seen through a trait object: `Rn` hashes and compares its text only, which
    /// never changes, but a cell in its type would make clippy's `mutable_key_type` flag
    /// every `HashSet<Rn>` of every user.
    segments: S,
}

/// The lazily made segments of an [`RnData`].
trait SegmentCache: Send + Sync + fmt::Debug {
    /// The segments, split from `path` on first use.
    fn get(&self, path: &str) -> &[String];
}

impl SegmentCache for OnceLock<Vec<String>> {
    fn get(&self, path: &str) -> &[String] {
        self.get_or_init(|| path.split(':').map(str::to_owned).collect())
    }
}

/// A collection prefix (`[rn][from::db]:users:free:`) parsed lately, and what its RNs share.
#[derive(Debug)]
struct KnownCollection {
    mods: Arc<[(String, String)]>,
    path_start: usize,
    kind_start: usize,
}

/// How many collection prefixes a thread remembers (it forgets them all past that).
const KNOWN_COLLECTIONS_MAX: usize = 64;

thread_local! {
    static KNOWN_COLLECTIONS: std::cell::RefCell<
        std::collections::HashMap<Box<str>, Arc<KnownCollection>>,
    > = std::cell::RefCell::new(std::collections::HashMap::new());
}

/// If `s` is an item or collection RN whose text up to the id is one this thread parsed
/// lately, what it shares with them, where its id starts and its form: only the id is
/// checked. References read back from a column (thousands per query) mostly name a few
/// collections, and parsing the same prefix again and again cost more than the rest of
/// reading the row.
fn known_collection(s: &str) -> Option<(Arc<KnownCollection>, usize, RnForm)> {
    let cut = s.rfind(':')? + 1;
    let (prefix, id) = s.split_at(cut);
    let form = if id == STAR {
        RnForm::Collection
    } else if is_uuid_v4(id) {
        RnForm::Item
    } else {
        return None;
    };
    let known = KNOWN_COLLECTIONS.with(|known| known.borrow().get(prefix).cloned())?;
    Some((known, cut, form))
}

/// The mods of an RN that has none: shared, so such an RN allocates nothing for them.
fn no_mods() -> Arc<[(String, String)]> {
    static NONE: std::sync::LazyLock<Arc<[(String, String)]>> =
        std::sync::LazyLock::new(|| Arc::from(Vec::new()));
    Arc::clone(&NONE)
}

fn shared_mods(mods: Vec<(String, String)>) -> Arc<[(String, String)]> {
    if mods.is_empty() {
        no_mods()
    } else {
        Arc::from(mods)
    }
}

impl RnData<OnceLock<Vec<String>>> {
    /// An item or collection RN from validated parts, its segments left to be split from
    /// the text on first use: `text` ends with `namespace:kind:id` of these lengths.
    fn lazy(
        text: String,
        mods: Vec<(String, String)>,
        form: RnForm,
        (path_len, namespace_len, kind_len): (usize, usize, usize),
    ) -> Self {
        let path_start = text.len() - path_len;
        let kind_start = path_start + namespace_len + 1;
        RnData {
            path_start,
            kind_start,
            id_start: kind_start + kind_len + 1,
            text,
            mods: shared_mods(mods),
            segments: OnceLock::new(),
            form,
        }
    }

    /// Parts already validated; `text` ends with the segments joined by `:`.
    fn new(text: String, mods: Vec<(String, String)>, segments: Vec<String>, form: RnForm) -> Self {
        let path_len =
            segments.iter().map(String::len).sum::<usize>() + segments.len().saturating_sub(1);
        let path_start = text.len() - path_len;
        let (kind_start, id_start) = match (form, segments.as_slice()) {
            (RnForm::Item | RnForm::Collection, [namespace, kind, _]) => {
                let kind_start = path_start + namespace.len() + 1;
                (kind_start, kind_start + kind.len() + 1)
            }
            _ => (0, 0),
        };
        RnData {
            path_start,
            kind_start,
            id_start,
            text,
            mods: shared_mods(mods),
            segments: OnceLock::from(segments),
            form,
        }
    }
}

impl RnData {
    /// The segments text: `namespace:kind:id`, or a depot path.
    fn path(&self) -> &str {
        &self.text[self.path_start..]
    }

    fn segments(&self) -> &[String] {
        self.segments.get(self.path())
    }

    /// The namespace, kind and id of an item or collection RN.
    fn namespace(&self) -> &str {
        &self.text[self.path_start..self.kind_start - 1]
    }

    fn kind(&self) -> &str {
        &self.text[self.kind_start..self.id_start - 1]
    }

    fn id(&self) -> &str {
        &self.text[self.id_start..]
    }
}

/// How many table names a thread remembers (see [`Rn::table_name_shared`]).
const RECENT_TABLES_MAX: usize = 8;

thread_local! {
    /// Table names made lately, by `namespace:kind`, the most recent first.
    static RECENT_TABLES: std::cell::RefCell<Vec<(Box<str>, Arc<str>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The form of an [`Rn`]: what it addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RnForm {
    /// One item: `[rn]:namespace:kind:<uuid-v4>`.
    Item,
    /// Every item of a namespace and kind: `[rn]:namespace:kind:*`.
    Collection,
    /// One file in a depot: `[rn][depot::name]:dir:file.txt`.
    DepotFile,
    /// Every file under a depot path: `[rn][depot::name]:dir:*`.
    DepotPrefix,
}

/// What is wrong with a piece of an RN, before the input is attached.
struct Invalid {
    part: String,
    reason: String,
}

impl Invalid {
    fn new(part: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            part: part.into(),
            reason: reason.into(),
        }
    }

    fn into_error(self, input: &str) -> Error {
        Error::InvalidRn {
            input: clip(input),
            part: self.part,
            reason: self.reason,
        }
    }
}

/// The validated pieces of an RN.
struct Parts {
    mods: Vec<(String, String)>,
    /// The segments, or for an item or collection RN `None` and the lengths of its path,
    /// namespace and kind (its segments are split from the text when first asked for).
    segments: std::result::Result<Vec<String>, (usize, usize, usize)>,
    form: RnForm,
}

/// Quotes a piece of user input for an error part, short enough to read.
fn quote(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return format!("{s:?}");
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", &s[..end])
}

/// Whether `s` matches `[a-z][a-z0-9]*`, the rule for namespaces and kinds.
pub(crate) fn is_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() <= MAX_NAME
        && matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes[1..]
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'))
}

/// Whether `s` matches `[a-z][a-z0-9_]*`, the rule for mod keys.
fn is_mod_key(s: &str) -> bool {
    let bytes = s.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes[1..]
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Whether `s` is 1 to 64 characters of `[A-Za-z0-9_-]`, the rule for mod values.
fn is_mod_value(s: &str) -> bool {
    (1..=MAX_MOD_VALUE).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a layer name against the mod-value rule, so it can appear in `[from::<layer>]`.
pub(crate) fn validate_layer_ident(s: &str) -> Result<()> {
    if is_mod_value(s) {
        return Ok(());
    }
    Err(Error::InvalidIdentifier {
        what: "layer",
        name: clip(s),
        reason: "must be 1 to 64 characters matching [A-Za-z0-9_-]".to_owned(),
    })
}

/// Whether `s` is a UUIDv4 in hyphenated form, hex digits in either case.
fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    // The fixed bytes first, then the five groups of hex digits (every row read back from a
    // query checks its id, so this is kept to a few instructions a byte).
    b.len() == 36
        && b[8] == b'-'
        && b[13] == b'-'
        && b[18] == b'-'
        && b[23] == b'-'
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
        && [&b[..8], &b[9..13], &b[14..18], &b[19..23], &b[24..]]
            .iter()
            .all(|group| group.iter().fold(true, |ok, &c| ok & HEX[usize::from(c)]))
}

/// Which bytes are hex digits: one lookup a byte.
const HEX: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        #[allow(clippy::cast_possible_truncation, reason = "c < 256")]
        let b = c as u8;
        table[c] = b.is_ascii_hexdigit();
        c += 1;
    }
    table
};

/// Checks one mod, `whole` being its text with the brackets.
fn check_mod(whole: &str, key: &str, value: &str) -> std::result::Result<(), Invalid> {
    if !is_mod_key(key) {
        return Err(Invalid::new(format!("mod {}", quote(whole)), MOD_KEY_RULE));
    }
    if !is_mod_value(value) {
        return Err(Invalid::new(
            format!("mod {}", quote(whole)),
            MOD_VALUE_RULE,
        ));
    }
    Ok(())
}

/// Checks one depot segment (1-based `number`); `*` is the caller's business.
fn check_depot_segment(number: usize, segment: &str) -> std::result::Result<(), Invalid> {
    let part = || format!("segment {number} {}", quote(segment));
    if segment.is_empty() {
        return Err(Invalid::new(part(), "is empty"));
    }
    if segment.len() > MAX_SEGMENT_BYTES {
        let reason = format!(
            "is {} bytes long, more than {MAX_SEGMENT_BYTES}",
            segment.len()
        );
        return Err(Invalid::new(part(), reason));
    }
    if segment == "." || segment == ".." {
        return Err(Invalid::new(part(), "can not be . or .."));
    }
    for c in segment.chars() {
        if c == '*' {
            return Err(Invalid::new(
                part(),
                "contains *, which is allowed only as the whole last segment",
            ));
        }
        if matches!(c, '/' | '\\' | ':') || c.is_control() || c.is_whitespace() {
            return Err(Invalid::new(
                part(),
                format!("contains {c:?}, which a depot segment can not hold"),
            ));
        }
    }
    Ok(())
}

/// Parses RN text into validated parts, in one pass from left to right.
fn parse_parts(s: &str) -> std::result::Result<Parts, Invalid> {
    let Some(mut rest) = s.strip_prefix(PREFIX) else {
        return Err(Invalid::new("prefix", "must be [rn]"));
    };

    let mut mods: Vec<(String, String)> = Vec::new();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err(Invalid::new(
                format!("mod {}", quote(rest)),
                "is not closed with ]",
            ));
        };
        // `[` and `]` are ASCII, so these byte offsets are char boundaries.
        let whole = &rest[..close + 2];
        let Some((key, value)) = inner[..close].split_once("::") else {
            return Err(Invalid::new(
                format!("mod {}", quote(whole)),
                "must have the form [key::value]",
            ));
        };
        check_mod(whole, key, value)?;
        // A bound on the mods keeps the duplicate check (and hostile input) cheap.
        if mods.len() == MAX_MODS {
            return Err(Invalid::new(
                format!("mod {}", quote(whole)),
                format!("is one too many: an rn has at most {MAX_MODS} mods"),
            ));
        }
        if mods.iter().any(|(k, _)| k == key) {
            return Err(Invalid::new(
                format!("mod {}", quote(whole)),
                format!("repeats the key {key:?}"),
            ));
        }
        mods.push((key.to_owned(), value.to_owned()));
        rest = &inner[close + 1..];
    }

    let is_depot = mods.iter().any(|(k, _)| k == DEPOT);
    if is_depot && mods.iter().any(|(k, _)| k == FROM) {
        return Err(Invalid::new(
            "mods",
            "can not hold both from and depot: a depot rn names no layer",
        ));
    }

    let Some(path) = rest.strip_prefix(':') else {
        return Err(match rest.chars().next() {
            None => Invalid::new(
                "segments",
                "are missing: [rn] and its mods must be followed by :",
            ),
            Some(c) => Invalid::new(
                format!("separator {c:?}"),
                "must be : (segments follow [rn] and its mods)",
            ),
        });
    };
    if path.ends_with(':') || path.is_empty() {
        let number = path.bytes().filter(|&b| b == b':').count() + 1;
        return Err(Invalid::new(
            format!("segment {number} \"\""),
            "is empty: the rn ends with :",
        ));
    }

    if is_depot {
        parse_depot_segments(mods, path)
    } else {
        parse_item_segments(mods, path)
    }
}

/// Checks the `namespace:kind:id` of an item or collection RN.
fn parse_item_segments(
    mods: Vec<(String, String)>,
    path: &str,
) -> std::result::Result<Parts, Invalid> {
    let mut pieces = path.splitn(4, ':');
    let (Some(namespace), Some(kind), Some(id), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        let count = path.bytes().filter(|&b| b == b':').count() + 1;
        let reason = format!(
            "must be exactly 3 (namespace:kind:id) in an item or collection rn, found {count}"
        );
        return Err(Invalid::new("segments", reason));
    };
    if !is_name(namespace) {
        return Err(Invalid::new(
            format!("namespace {}", quote(namespace)),
            NAME_RULE,
        ));
    }
    if !is_name(kind) {
        return Err(Invalid::new(format!("kind {}", quote(kind)), NAME_RULE));
    }
    let form = if id == STAR {
        RnForm::Collection
    } else if is_uuid_v4(id) {
        RnForm::Item
    } else {
        return Err(Invalid::new(format!("id {}", quote(id)), ID_RULE));
    };
    Ok(Parts {
        mods,
        segments: Err((path.len(), namespace.len(), kind.len())),
        form,
    })
}

/// Checks the segments of a depot RN; a final `*` makes it a prefix.
fn parse_depot_segments(
    mods: Vec<(String, String)>,
    path: &str,
) -> std::result::Result<Parts, Invalid> {
    let mut segments = Vec::new();
    let mut form = RnForm::DepotFile;
    let mut pieces = path.split(':').peekable();
    while let Some(segment) = pieces.next() {
        let number = segments.len() + 1;
        if segment == STAR {
            if pieces.peek().is_some() {
                return Err(Invalid::new(
                    format!("segment {number} \"*\""),
                    "is allowed only as the whole last segment",
                ));
            }
            form = RnForm::DepotPrefix;
        } else {
            check_depot_segment(number, segment)?;
        }
        segments.push(segment.to_owned());
    }
    Ok(Parts {
        mods,
        segments: Ok(segments),
        form,
    })
}

/// Renders validated parts as RN text: the inverse of [`parse_parts`].
fn render(mods: &[(String, String)], segments: &[String]) -> String {
    let len = PREFIX.len()
        + mods
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
        + segments.iter().map(|s| s.len() + 1).sum::<usize>();
    let mut text = String::with_capacity(len);
    text.push_str(PREFIX);
    for (key, value) in mods {
        text.push('[');
        text.push_str(key);
        text.push_str("::");
        text.push_str(value);
        text.push(']');
    }
    for segment in segments {
        text.push(':');
        text.push_str(segment);
    }
    text
}

impl<T> Rn<T> {
    /// Parses RN text; the result prints back byte-identical to `s`.
    ///
    /// `"...".parse::<Rn>()` does the same. Give the type (`Rn::<()>::parse`, or `let rn: Rn`)
    /// when nothing else fixes the model type.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRn`] naming the offending part when `s` breaks a rule of the
    /// [grammar](self).
    ///
    /// ```
    /// use korm::Rn;
    /// let rn = Rn::<()>::parse("[rn][depot::files]:invoices:fred:invoice-001.txt").unwrap();
    /// assert!(rn.is_depot());
    /// assert!(Rn::<()>::parse("[rn]:users:freetier").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(known) = known_collection(s) {
            return Ok(Self::from_known(s.to_owned(), known));
        }
        let parts = parse_parts(s).map_err(|invalid| invalid.into_error(s))?;
        Self::remember_collection(s, &parts);
        Ok(Self::from_parts(s.to_owned(), parts))
    }

    /// An RN of a collection [`known_collection`] found: `text` is the whole RN.
    fn from_known(
        text: String,
        (known, id_start, form): (Arc<KnownCollection>, usize, RnForm),
    ) -> Self {
        Rn {
            data: Arc::new(RnData {
                text,
                mods: Arc::clone(&known.mods),
                path_start: known.path_start,
                kind_start: known.kind_start,
                id_start,
                segments: OnceLock::new(),
                form,
            }),
            _model: PhantomData,
        }
    }

    /// Remembers the collection prefix of a freshly parsed item or collection RN.
    fn remember_collection(s: &str, parts: &Parts) {
        let Err((path_len, namespace_len, kind_len)) = parts.segments else {
            return;
        };
        let path_start = s.len() - path_len;
        let kind_start = path_start + namespace_len + 1;
        let id_start = kind_start + kind_len + 1;
        let known = KnownCollection {
            mods: shared_mods(parts.mods.clone()),
            path_start,
            kind_start,
        };
        KNOWN_COLLECTIONS.with(|cache| {
            let mut cache = cache.borrow_mut();
            // A bound on what hostile or varied input can make it hold.
            if cache.len() >= KNOWN_COLLECTIONS_MAX {
                cache.clear();
            }
            cache.insert(s[..id_start].into(), Arc::new(known));
        });
    }

    /// [`parse`](Rn::parse) keeping the given string's allocation as the RN's text.
    pub(crate) fn parse_owned(s: String) -> Result<Self> {
        if let Some(known) = known_collection(&s) {
            return Ok(Self::from_known(s, known));
        }
        match parse_parts(&s) {
            Ok(parts) => {
                Self::remember_collection(&s, &parts);
                Ok(Self::from_parts(s, parts))
            }
            Err(invalid) => Err(invalid.into_error(&s)),
        }
    }

    fn from_parts(text: String, parts: Parts) -> Self {
        Rn {
            data: Arc::new(match parts.segments {
                Ok(segments) => RnData::new(text, parts.mods, segments, parts.form),
                Err(lengths) => RnData::lazy(text, parts.mods, parts.form, lengths),
            }),
            _model: PhantomData,
        }
    }

    /// Builds an RN from parts already validated, rendering its text.
    fn from_valid(mods: Vec<(String, String)>, segments: Vec<String>, form: RnForm) -> Self {
        let text = render(&mods, &segments);
        Rn {
            data: Arc::new(RnData::new(text, mods, segments, form)),
            _model: PhantomData,
        }
    }

    /// The item RN in this item or collection RN's collection with the id `id` (validated by
    /// the caller; `self` is not a depot RN): the text up to the id, then the id. One string,
    /// no parts copied.
    pub(crate) fn with_valid_id(&self, id: &str) -> Self {
        let text = &self.data.text;
        let cut = self.data.id_start;
        let mut out = String::with_capacity(cut + id.len());
        out.push_str(&text[..cut]);
        out.push_str(id);
        Rn {
            data: Arc::new(RnData {
                text: out,
                mods: Arc::clone(&self.data.mods),
                path_start: self.data.path_start,
                kind_start: self.data.kind_start,
                id_start: cut,
                segments: OnceLock::new(),
                form: RnForm::Item,
            }),
            _model: PhantomData,
        }
    }

    /// The RN's text, byte-identical to the text it was parsed from.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// assert_eq!(rn.as_str(), "[rn]:users:freetier:*");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.data.text
    }

    /// What the RN addresses: an item, a collection, a depot file or a depot prefix.
    ///
    /// ```
    /// # use korm::{Rn, RnForm};
    /// let rn: Rn = "[rn][depot::files]:invoices:*".parse().unwrap();
    /// assert_eq!(rn.form(), RnForm::DepotPrefix);
    /// ```
    pub fn form(&self) -> RnForm {
        self.data.form
    }

    /// Whether the RN addresses one item (its id is a UUIDv4).
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:3df3face-f377-4f86-9bb9-a9b4671a9441".parse().unwrap();
    /// assert!(rn.is_item());
    /// ```
    pub fn is_item(&self) -> bool {
        self.data.form == RnForm::Item
    }

    /// Whether the RN addresses a collection (its id is `*`).
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// assert!(rn.is_collection());
    /// ```
    pub fn is_collection(&self) -> bool {
        self.data.form == RnForm::Collection
    }

    /// Whether the RN addresses a depot file or prefix (it has a `depot` mod).
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn][depot::files]:invoices:fred:*".parse().unwrap();
    /// assert!(rn.is_depot());
    /// ```
    pub fn is_depot(&self) -> bool {
        matches!(self.data.form, RnForm::DepotFile | RnForm::DepotPrefix)
    }

    /// The namespace (first segment) of an item or collection RN; `None` for a depot RN.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// assert_eq!(rn.namespace(), Some("users"));
    /// ```
    pub fn namespace(&self) -> Option<&str> {
        if self.is_depot() {
            None
        } else {
            Some(self.data.namespace())
        }
    }

    /// The kind (second segment) of an item or collection RN; `None` for a depot RN.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// assert_eq!(rn.kind(), Some("freetier"));
    /// ```
    pub fn kind(&self) -> Option<&str> {
        if self.is_depot() {
            None
        } else {
            Some(self.data.kind())
        }
    }

    /// The id of an item RN, the UUID text as written; `None` for any other form.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:3DF3FACE-F377-4F86-9BB9-A9B4671A9441".parse().unwrap();
    /// assert_eq!(rn.id(), Some("3DF3FACE-F377-4F86-9BB9-A9B4671A9441"));
    /// ```
    pub fn id(&self) -> Option<&str> {
        if self.is_item() {
            Some(self.data.id())
        } else {
            None
        }
    }

    /// The id of an item RN as a UUID; `None` for any other form.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:3df3face-f377-4f86-9bb9-a9b4671a9441".parse().unwrap();
    /// assert_eq!(rn.uuid().unwrap().get_version_num(), 4);
    /// ```
    pub fn uuid(&self) -> Option<uuid::Uuid> {
        self.id().and_then(|id| uuid::Uuid::try_parse(id).ok())
    }

    /// The layer named by the `from` mod, if any.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn][from::cardb]:cars:suv:*".parse().unwrap();
    /// assert_eq!(rn.layer(), Some("cardb"));
    /// ```
    pub fn layer(&self) -> Option<&str> {
        self.get_mod(FROM)
    }

    /// The depot named by the `depot` mod, if any.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn][depot::files]:invoices:fred:invoice-001.txt".parse().unwrap();
    /// assert_eq!(rn.depot(), Some("files"));
    /// ```
    pub fn depot(&self) -> Option<&str> {
        self.get_mod(DEPOT)
    }

    /// The value of the mod `key`, if the RN has it.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn][from::cardb][tag::v2]:cars:suv:*".parse().unwrap();
    /// assert_eq!(rn.get_mod("tag"), Some("v2"));
    /// assert_eq!(rn.get_mod("depot"), None);
    /// ```
    pub fn get_mod(&self, key: &str) -> Option<&str> {
        self.data
            .mods
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The mods as `(key, value)` pairs, in the order written.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn][from::cardb][tag::v2]:cars:suv:*".parse().unwrap();
    /// assert_eq!(rn.mods().collect::<Vec<_>>(), [("from", "cardb"), ("tag", "v2")]);
    /// ```
    pub fn mods(&self) -> impl Iterator<Item = (&str, &str)> {
        self.data.mods.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The `:`-separated segments after the mods (`*` included).
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn][depot::files]:invoices:fred:*".parse().unwrap();
    /// assert_eq!(rn.segments(), ["invoices", "fred", "*"]);
    /// ```
    pub fn segments(&self) -> &[String] {
        self.data.segments()
    }

    /// The table holding an item or collection: `__items__{namespace}__{kind}`; `None` for a
    /// depot RN.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// assert_eq!(rn.table_name().as_deref(), Some("__items__users__freetier"));
    /// ```
    pub fn table_name(&self) -> Option<String> {
        let (namespace, kind) = (self.namespace()?, self.kind()?);
        let mut table = String::with_capacity(11 + namespace.len() + kind.len());
        table.push_str("__items__");
        table.push_str(namespace);
        table.push_str("__");
        table.push_str(kind);
        Some(table)
    }

    /// [`table_name`](Rn::table_name), shared: the thread remembers the last few it made,
    /// so loading item after item of one collection makes the name once.
    pub(crate) fn table_name_shared(&self) -> Option<Arc<str>> {
        // `namespace:kind`, for an item or collection RN.
        self.namespace()?;
        let key = self
            .data
            .text
            .get(self.data.path_start..self.data.id_start.checked_sub(1)?)?;
        RECENT_TABLES.with(|recent| {
            let mut recent = recent.borrow_mut();
            if let Some(i) = recent.iter().position(|(k, _)| &**k == key) {
                let found = Arc::clone(&recent[i].1);
                // The most recent first: a run of loads of one collection finds it at once.
                recent[..=i].rotate_right(1);
                return Some(found);
            }
            let table: Arc<str> = self.table_name()?.into();
            if recent.len() == RECENT_TABLES_MAX {
                recent.pop();
            }
            recent.insert(0, (key.into(), Arc::clone(&table)));
            Some(table)
        })
    }

    /// The RN of everything around this one, with the same mods: an item gives its
    /// collection, a depot file the prefix of its folder; a collection or prefix gives itself.
    ///
    /// ```
    /// # use korm::Rn;
    /// let item: Rn = "[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441".parse().unwrap();
    /// assert_eq!(item.collection(), "[rn][from::cardb]:cars:suv:*");
    /// let file: Rn = "[rn][depot::files]:invoices:fred:invoice-001.txt".parse().unwrap();
    /// assert_eq!(file.collection(), "[rn][depot::files]:invoices:fred:*");
    /// ```
    pub fn collection(&self) -> Rn<T> {
        let form = match self.data.form {
            RnForm::Item => RnForm::Collection,
            RnForm::DepotFile => RnForm::DepotPrefix,
            RnForm::Collection | RnForm::DepotPrefix => return self.clone(),
        };
        let mut segments = self.data.segments().to_vec();
        if let Some(last) = segments.last_mut() {
            STAR.clone_into(last);
        }
        Rn::from_valid(self.data.mods.to_vec(), segments, form)
    }

    /// The item RN with id `id` in this RN's collection, with the same mods.
    ///
    /// # Errors
    ///
    /// [`Error::WrongRnForm`] for a depot RN; [`Error::InvalidRn`] when `id` is not a UUIDv4.
    ///
    /// ```
    /// # use korm::Rn;
    /// let users: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// let id = uuid::Uuid::new_v4();
    /// let fred = users.with_id(id).unwrap();
    /// assert_eq!(fred.uuid(), Some(id));
    /// ```
    pub fn with_id(&self, id: uuid::Uuid) -> Result<Rn<T>> {
        if self.is_depot() {
            return Err(Error::WrongRnForm {
                rn: self.data.text.clone(),
                reason: "with_id needs an item or collection rn, not a depot rn".to_owned(),
            });
        }
        let id = checked_id(id, || render(&self.data.mods, &self.data.segments()[..2]))?;
        Ok(self.with_valid_id(&id))
    }

    /// Checks an id read back from storage, for [`with_valid_id`](Rn::with_valid_id): the
    /// RN of a stored row keeps its id exactly as written (any case), since it must be the
    /// RN the row was written under.
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] for a depot RN, [`Error::InvalidRn`] for an id that is not a
    /// UUIDv4.
    pub(crate) fn check_id_text(&self, id: &str) -> Result<()> {
        if self.is_depot() {
            return Err(Error::WrongRnForm {
                rn: self.data.text.clone(),
                reason: "with_id needs an item or collection rn, not a depot rn".to_owned(),
            });
        }
        if !is_uuid_v4(id) {
            let input = format!(
                "{}:{id}",
                render(&self.data.mods, &self.data.segments()[..2])
            );
            return Err(Invalid::new(format!("id {}", quote(id)), ID_RULE).into_error(&input));
        }
        Ok(())
    }

    /// This RN with its `from` mod set to `layer` (replaced in place, or added first).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIdentifier`] when `layer` breaks the mod-value rule
    /// (`[A-Za-z0-9_-]`, 1 to 64 characters); [`Error::WrongRnForm`] for a depot RN, which
    /// names no layer.
    ///
    /// ```
    /// # use korm::Rn;
    /// let users: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// assert_eq!(users.with_layer("userdb").unwrap(), "[rn][from::userdb]:users:freetier:*");
    /// assert!(users.with_layer("user db").is_err());
    /// ```
    pub fn with_layer(&self, layer: &str) -> Result<Rn<T>> {
        validate_layer_ident(layer)?;
        if self.is_depot() {
            return Err(Error::WrongRnForm {
                rn: self.data.text.clone(),
                reason: "a depot rn names no layer, so it can not take a from mod".to_owned(),
            });
        }
        let mut mods = self.data.mods.to_vec();
        match mods.iter_mut().find(|(k, _)| k == FROM) {
            Some((_, value)) => layer.clone_into(value),
            None => mods.insert(0, (FROM.to_owned(), layer.to_owned())),
        }
        Ok(Rn::from_valid(
            mods,
            self.data.segments().to_vec(),
            self.data.form,
        ))
    }

    /// This RN without its `from` mod.
    ///
    /// ```
    /// # use korm::Rn;
    /// let cars: Rn = "[rn][from::cardb]:cars:suv:*".parse().unwrap();
    /// assert_eq!(cars.without_layer(), "[rn]:cars:suv:*");
    /// ```
    pub fn without_layer(&self) -> Rn<T> {
        if self.layer().is_none() {
            return self.clone();
        }
        let mods = self
            .data
            .mods
            .iter()
            .filter(|(k, _)| k != FROM)
            .cloned()
            .collect();
        Rn::from_valid(mods, self.data.segments().to_vec(), self.data.form)
    }

    /// The same RN typed for model `U`.
    ///
    /// ```
    /// # use korm::Rn;
    /// struct User;
    /// let rn: Rn = "[rn]:users:freetier:*".parse().unwrap();
    /// let typed: Rn<User> = rn.cast();
    /// assert_eq!(typed.as_str(), "[rn]:users:freetier:*");
    /// ```
    pub fn cast<U>(self) -> Rn<U> {
        Rn {
            data: self.data,
            _model: PhantomData,
        }
    }

    /// An untyped copy of this RN.
    ///
    /// ```
    /// # use korm::Rn;
    /// struct User;
    /// let typed: Rn<User> = "[rn]:users:freetier:*".parse().unwrap();
    /// let rn: Rn = typed.untyped();
    /// assert_eq!(rn.as_str(), typed.as_str());
    /// ```
    pub fn untyped(&self) -> Rn {
        self.clone().cast()
    }

    /// The storage key of a depot RN: segments joined with `/` for a file
    /// (`invoices/fred/invoice-001.txt`), the folder with a trailing `/` for a prefix
    /// (`invoices/fred/`; the empty string for the whole depot). `None` for other forms.
    ///
    /// The trailing `/` keeps a prefix from matching a sibling (`invoices/freddie/...`) when
    /// used as a plain string prefix.
    pub(crate) fn key_path(&self) -> Option<String> {
        match self.data.form {
            RnForm::DepotFile => Some(self.data.segments().join("/")),
            RnForm::DepotPrefix => {
                let segments = self.data.segments();
                let folders = &segments[..segments.len() - 1];
                let mut key = String::with_capacity(folders.iter().map(|s| s.len() + 1).sum());
                for folder in folders {
                    key.push_str(folder);
                    key.push('/');
                }
                Some(key)
            }
            RnForm::Item | RnForm::Collection => None,
        }
    }
}

/// A fresh item id, as korm draws it for a new item: a UUIDv4 (version 4, RFC variant: what
/// korm 1.5 checks an id against) whose first 48 bits are the current Unix time in
/// milliseconds, the other 74 random, like a UUIDv7 in a UUIDv4's shape.
///
/// Ids drawn later sort after earlier ones (to the millisecond), so new rows land at the
/// right edge of each backend's primary-key index instead of a random page of it: a batch of
/// creates changes a few index pages instead of one each, and a large table's index stays
/// dense and its hot part small (random ids spread every insert over the whole index). The
/// 74 random bits keep ids unguessable and collisions out of reach; the prefix tells anyone
/// who sees an id when it was drawn (see docs/design.md, "Item ids").
///
/// ```
/// let a = korm::rn::new_id();
/// let b = korm::rn::new_id();
/// assert_eq!(a.get_version_num(), 4);
/// assert!(a.as_bytes()[..6] <= b.as_bytes()[..6]);
/// ```
pub fn new_id() -> uuid::Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // The version and variant bits sit in the low 80 bits, which stay as `new_v4` drew them.
    let random = uuid::Uuid::new_v4().as_u128() & ((1 << 80) - 1);
    uuid::Uuid::from_u128(((millis & ((1 << 48) - 1)) << 80) | random)
}

/// Renders `id` as RN id text, or fails when it is not a UUIDv4 (`context` renders the rest of
/// the RN for the error).
fn checked_id(id: uuid::Uuid, context: impl FnOnce() -> String) -> Result<String> {
    let text = id.hyphenated().to_string();
    if id.get_version_num() == 4 && id.get_variant() == uuid::Variant::RFC4122 {
        return Ok(text);
    }
    let input = format!("{}:{text}", context());
    Err(Invalid::new(format!("id {}", quote(&text)), ID_RULE).into_error(&input))
}

impl Rn {
    /// The item RN `[rn]:{namespace}:{kind}:{id}`, without mods (add a layer with
    /// [`with_layer`](Rn::with_layer), a model with [`cast`](Rn::cast)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRn`] when `namespace` or `kind` do not match `[a-z][a-z0-9]*` or `id` is
    /// not a UUIDv4.
    ///
    /// ```
    /// # use korm::Rn;
    /// let id = uuid::Uuid::parse_str("3df3face-f377-4f86-9bb9-a9b4671a9441").unwrap();
    /// let rn = Rn::item("users", "freetier", id).unwrap();
    /// assert_eq!(rn, "[rn]:users:freetier:3df3face-f377-4f86-9bb9-a9b4671a9441");
    /// assert!(Rn::item("users", "free:tier", id).is_err());
    /// ```
    pub fn item(namespace: &str, kind: &str, id: uuid::Uuid) -> Result<Rn> {
        let collection = Rn::collection_of(namespace, kind)?;
        collection.with_id(id)
    }

    /// The collection RN `[rn]:{namespace}:{kind}:*`, without mods.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRn`] when `namespace` or `kind` do not match `[a-z][a-z0-9]*`.
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn = Rn::collection_of("users", "freetier").unwrap();
    /// assert_eq!(rn, "[rn]:users:freetier:*");
    /// assert!(Rn::collection_of("Users", "freetier").is_err());
    /// ```
    pub fn collection_of(namespace: &str, kind: &str) -> Result<Rn> {
        let input = || format!("{PREFIX}:{namespace}:{kind}:{STAR}");
        if !is_name(namespace) {
            return Err(
                Invalid::new(format!("namespace {}", quote(namespace)), NAME_RULE)
                    .into_error(&input()),
            );
        }
        if !is_name(kind) {
            return Err(
                Invalid::new(format!("kind {}", quote(kind)), NAME_RULE).into_error(&input())
            );
        }
        let segments = vec![namespace.to_owned(), kind.to_owned(), STAR.to_owned()];
        Ok(Rn::from_valid(Vec::new(), segments, RnForm::Collection))
    }

    /// The depot file RN `[rn][depot::{depot}]:{segments joined by :}`.
    ///
    /// For a prefix, take the [`collection`](Rn::collection) of a file, or parse `...:*`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRn`] when `depot` breaks the mod-value rule, `segments` is empty, or a
    /// segment breaks the depot segment rules (`*` included: this builds a file RN).
    ///
    /// ```
    /// # use korm::Rn;
    /// let rn = Rn::depot_file("files", &["invoices", "fred", "invoice-001.txt"]).unwrap();
    /// assert_eq!(rn, "[rn][depot::files]:invoices:fred:invoice-001.txt");
    /// assert!(Rn::depot_file("files", &["invoices", "../etc"]).is_err());
    /// ```
    pub fn depot_file(depot: &str, segments: &[&str]) -> Result<Rn> {
        let input = || format!("{PREFIX}[{DEPOT}::{depot}]:{}", segments.join(":"));
        let whole = format!("[{DEPOT}::{depot}]");
        check_mod(&whole, DEPOT, depot).map_err(|invalid| invalid.into_error(&input()))?;
        if segments.is_empty() {
            return Err(
                Invalid::new("segments", "are missing: a depot file rn has at least one")
                    .into_error(&input()),
            );
        }
        for (index, segment) in segments.iter().enumerate() {
            check_depot_segment(index + 1, segment)
                .map_err(|invalid| invalid.into_error(&input()))?;
        }
        let mods = vec![(DEPOT.to_owned(), depot.to_owned())];
        let segments = segments.iter().map(|s| (*s).to_owned()).collect();
        Ok(Rn::from_valid(mods, segments, RnForm::DepotFile))
    }
}

impl<T> Clone for Rn<T> {
    fn clone(&self) -> Self {
        Rn {
            data: Arc::clone(&self.data),
            _model: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Rn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Rn").field(&self.data.text).finish()
    }
}

impl<T> fmt::Display for Rn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.data.text)
    }
}

impl<T> PartialEq for Rn<T> {
    fn eq(&self, other: &Self) -> bool {
        self.data.text == other.data.text
    }
}

impl<T> Eq for Rn<T> {}

impl<T> PartialEq<str> for Rn<T> {
    fn eq(&self, other: &str) -> bool {
        self.data.text == other
    }
}

impl<T> PartialEq<&str> for Rn<T> {
    fn eq(&self, other: &&str) -> bool {
        self.data.text == *other
    }
}

impl<T> Hash for Rn<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.data.text.hash(state);
    }
}

impl<T> PartialOrd for Rn<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Rn<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.data.text.cmp(&other.data.text)
    }
}

impl<T> FromStr for Rn<T> {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Rn::parse(s)
    }
}

impl<T> TryFrom<&str> for Rn<T> {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self> {
        Rn::parse(s)
    }
}

impl<T> TryFrom<String> for Rn<T> {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        Rn::parse_owned(s)
    }
}

impl<T> AsRef<str> for Rn<T> {
    fn as_ref(&self) -> &str {
        &self.data.text
    }
}

/// Lets a map keyed by RN be searched with a `&str` (hashing and equality are the text's).
impl<T> Borrow<str> for Rn<T> {
    fn borrow(&self) -> &str {
        &self.data.text
    }
}

impl<T> Serialize for Rn<T> {
    /// Serializes as the plain RN string. It goes through a newtype marker that serde_json and
    /// other formats ignore, and that korm's encoder reads, so an `Rn` field is stored as an
    /// RN reference column (`RN_REF_TEXT`).
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(crate::model::RN_MARKER, self.data.text.as_str())
    }
}

impl<'de, T> Deserialize<'de> for Rn<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(RnVisitor(PhantomData))
    }
}

/// Reads an RN from a string.
struct RnVisitor<T>(PhantomData<fn() -> T>);

impl<T> Visitor<'_> for RnVisitor<T> {
    type Value = Rn<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an rn string such as [rn]:users:freetier:*")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Rn<T>, E> {
        Rn::parse(s).map_err(E::custom)
    }

    fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Rn<T>, E> {
        Rn::parse_owned(s).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_table_names_match_table_name_past_the_cache() {
        let id = "3df3face-f377-4f86-9bb9-a9b4671a9441";
        // More collections than the cache holds, twice over, with and without mods, items and
        // collections: each name is the one `table_name` makes.
        for round in 0..2 {
            for i in 0..RECENT_TABLES_MAX + 3 {
                for text in [
                    format!("[rn]:ns{i}:kind{round}:*"),
                    format!("[rn][from::db]:ns{i}:kind{round}:{id}"),
                ] {
                    let rn: Rn = text.parse().unwrap();
                    assert_eq!(
                        rn.table_name_shared().as_deref(),
                        rn.table_name().as_deref(),
                        "{text}"
                    );
                }
            }
        }
        RECENT_TABLES.with(|r| assert_eq!(r.borrow().len(), RECENT_TABLES_MAX));
        let depot: Rn = "[rn][depot::files]:invoices:a.txt".parse().unwrap();
        assert_eq!(depot.table_name_shared(), None);
    }

    #[test]
    fn rns_of_a_known_collection_parse_as_the_full_parser_does() {
        let id = "3df3face-f377-4f86-9bb9-a9b4671a9441";
        for collection in ["[rn][from::cardb][tag::v2]:cars:suv", "[rn]:users:free"] {
            let fresh = |text: &str| {
                KNOWN_COLLECTIONS.with(|k| k.borrow_mut().clear());
                Rn::<()>::parse(text)
            };
            let items = [format!("{collection}:*"), format!("{collection}:{id}")];
            for text in &items {
                let full = fresh(text).unwrap();
                // Now the prefix is known: the same text takes the short path.
                let known = Rn::<()>::parse(text).unwrap();
                let owned = Rn::<()>::parse_owned(text.clone()).unwrap();
                for rn in [&known, &owned] {
                    assert_eq!(rn.as_str(), full.as_str());
                    assert_eq!(rn.form(), full.form());
                    assert_eq!(rn.namespace(), full.namespace());
                    assert_eq!(rn.kind(), full.kind());
                    assert_eq!(rn.id(), full.id());
                    assert_eq!(rn.layer(), full.layer());
                    assert_eq!(
                        rn.mods().collect::<Vec<_>>(),
                        full.mods().collect::<Vec<_>>()
                    );
                    assert_eq!(rn.segments(), full.segments());
                    assert_eq!(rn.table_name(), full.table_name());
                }
            }
            // A bad id after a known prefix is refused as the full parser refuses it.
            for bad in [
                "not-a-uuid",
                "",
                "3DF3FACE-F377-4F86-9BB9-A9B4671A9441x",
                "a:b",
            ] {
                let text = format!("{collection}:{bad}");
                let full = fresh(&text).map(|_| ()).map_err(|e| e.to_string());
                Rn::<()>::parse(&format!("{collection}:*")).unwrap();
                let known = Rn::<()>::parse(&text)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                assert_eq!(known, full, "{text}");
            }
        }
    }

    const UUID: &str = "3df3face-f377-4f86-9bb9-a9b4671a9441";

    fn parse(s: &str) -> Result<Rn> {
        s.parse()
    }

    /// Parses `s`, which must fail, and returns the error's part and reason.
    fn rejection(s: &str) -> (String, String) {
        match parse(s) {
            Ok(rn) => panic!("{s:?} parsed as {rn:?}, expected an error"),
            Err(Error::InvalidRn {
                input,
                part,
                reason,
            }) => {
                assert_eq!(input, clip(s), "the error quotes the input");
                (part, reason)
            }
            Err(other) => panic!("{s:?} gave {other:?}, expected InvalidRn"),
        }
    }

    /// An accepted input and what its accessors must return.
    struct Accepted {
        text: &'static str,
        form: RnForm,
        namespace: Option<&'static str>,
        kind: Option<&'static str>,
        id: Option<&'static str>,
        layer: Option<&'static str>,
        depot: Option<&'static str>,
        segments: &'static [&'static str],
        mods: &'static [(&'static str, &'static str)],
    }

    const ACCEPTED: &[Accepted] = &[
        Accepted {
            text: "[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441",
            form: RnForm::Item,
            namespace: Some("cars"),
            kind: Some("suv"),
            id: Some(UUID),
            layer: Some("cardb"),
            depot: None,
            segments: &["cars", "suv", UUID],
            mods: &[("from", "cardb")],
        },
        Accepted {
            text: "[rn]:users:freetier:3df3face-f377-4f86-9bb9-a9b4671a9441",
            form: RnForm::Item,
            namespace: Some("users"),
            kind: Some("freetier"),
            id: Some(UUID),
            layer: None,
            depot: None,
            segments: &["users", "freetier", UUID],
            mods: &[],
        },
        Accepted {
            text: "[rn]:users:freetier:3DF3FACE-F377-4F86-BBB9-A9B4671A9441",
            form: RnForm::Item,
            namespace: Some("users"),
            kind: Some("freetier"),
            id: Some("3DF3FACE-F377-4F86-BBB9-A9B4671A9441"),
            layer: None,
            depot: None,
            segments: &["users", "freetier", "3DF3FACE-F377-4F86-BBB9-A9B4671A9441"],
            mods: &[],
        },
        Accepted {
            text: "[rn][from::cardb]:cars:suv:*",
            form: RnForm::Collection,
            namespace: Some("cars"),
            kind: Some("suv"),
            id: None,
            layer: Some("cardb"),
            depot: None,
            segments: &["cars", "suv", "*"],
            mods: &[("from", "cardb")],
        },
        Accepted {
            text: "[rn][tag::v-2][from::Card_B-1]:a1:b2c:*",
            form: RnForm::Collection,
            namespace: Some("a1"),
            kind: Some("b2c"),
            id: None,
            layer: Some("Card_B-1"),
            depot: None,
            segments: &["a1", "b2c", "*"],
            mods: &[("tag", "v-2"), ("from", "Card_B-1")],
        },
        Accepted {
            text: "[rn][depot::files]:invoices:fred:invoice-001.txt",
            form: RnForm::DepotFile,
            namespace: None,
            kind: None,
            id: None,
            layer: None,
            depot: Some("files"),
            segments: &["invoices", "fred", "invoice-001.txt"],
            mods: &[("depot", "files")],
        },
        Accepted {
            text: "[rn][depot::wal]:__korm_wal__:fixtures:e5d9906025b1b75f:payloads:6104d3f8-7076-4d35-b3ee-6b6223f8bf19:0:after.bin",
            form: RnForm::DepotFile,
            namespace: None,
            kind: None,
            id: None,
            layer: None,
            depot: Some("wal"),
            segments: &[
                "__korm_wal__",
                "fixtures",
                "e5d9906025b1b75f",
                "payloads",
                "6104d3f8-7076-4d35-b3ee-6b6223f8bf19",
                "0",
                "after.bin",
            ],
            mods: &[("depot", "wal")],
        },
        Accepted {
            text: "[rn][depot::backups]:__korm_backups__:cardb:20240102T030405Z:backup-x.ndjson",
            form: RnForm::DepotFile,
            namespace: None,
            kind: None,
            id: None,
            layer: None,
            depot: Some("backups"),
            segments: &[
                "__korm_backups__",
                "cardb",
                "20240102T030405Z",
                "backup-x.ndjson",
            ],
            mods: &[("depot", "backups")],
        },
        Accepted {
            text: "[rn][depot::files]:fotos:été[1].jpg",
            form: RnForm::DepotFile,
            namespace: None,
            kind: None,
            id: None,
            layer: None,
            depot: Some("files"),
            segments: &["fotos", "été[1].jpg"],
            mods: &[("depot", "files")],
        },
        Accepted {
            text: "[rn][depot::files]:invoices:fred:*",
            form: RnForm::DepotPrefix,
            namespace: None,
            kind: None,
            id: None,
            layer: None,
            depot: Some("files"),
            segments: &["invoices", "fred", "*"],
            mods: &[("depot", "files")],
        },
        Accepted {
            text: "[rn][depot::files]:*",
            form: RnForm::DepotPrefix,
            namespace: None,
            kind: None,
            id: None,
            layer: None,
            depot: Some("files"),
            segments: &["*"],
            mods: &[("depot", "files")],
        },
        Accepted {
            text: "[rn][depot::files]:.hidden:...:a..b",
            form: RnForm::DepotFile,
            namespace: None,
            kind: None,
            id: None,
            layer: None,
            depot: Some("files"),
            segments: &[".hidden", "...", "a..b"],
            mods: &[("depot", "files")],
        },
    ];

    #[test]
    fn accepted_inputs_print_back_and_expose_their_parts() {
        for case in ACCEPTED {
            let rn = parse(case.text).unwrap_or_else(|e| panic!("{:?}: {e}", case.text));
            assert_eq!(rn.as_str(), case.text);
            assert_eq!(rn.to_string(), case.text);
            assert_eq!(
                render(&rn.data.mods, rn.data.segments()),
                case.text,
                "parts render the text"
            );
            assert_eq!(rn.form(), case.form, "{}", case.text);
            assert_eq!(rn.namespace(), case.namespace, "{}", case.text);
            assert_eq!(rn.kind(), case.kind, "{}", case.text);
            assert_eq!(rn.id(), case.id, "{}", case.text);
            assert_eq!(rn.layer(), case.layer, "{}", case.text);
            assert_eq!(rn.depot(), case.depot, "{}", case.text);
            assert_eq!(rn.segments(), case.segments, "{}", case.text);
            assert_eq!(rn.mods().collect::<Vec<_>>(), case.mods, "{}", case.text);
            assert_eq!(rn.is_item(), case.form == RnForm::Item);
            assert_eq!(rn.is_collection(), case.form == RnForm::Collection);
            assert_eq!(rn.is_depot(), case.depot.is_some());
            assert_eq!(
                rn.uuid().map(|u| u.to_string()),
                case.id.map(str::to_ascii_lowercase)
            );
            let table = case
                .namespace
                .map(|ns| format!("__items__{ns}__{}", case.kind.unwrap()));
            assert_eq!(rn.table_name(), table);
        }
    }

    #[test]
    fn every_way_in_gives_the_same_rn() {
        for case in ACCEPTED {
            let rn = parse(case.text).unwrap();
            assert_eq!(Rn::<()>::parse(case.text).unwrap(), rn);
            assert_eq!(Rn::<()>::try_from(case.text).unwrap(), rn);
            assert_eq!(Rn::<()>::try_from(case.text.to_owned()).unwrap(), rn);
            assert_eq!(rn, *case.text);
            assert_eq!(rn, case.text);
            assert_eq!(AsRef::<str>::as_ref(&rn), case.text);
        }
    }

    #[test]
    fn rejected_inputs_name_the_offending_part() {
        let long_segment = format!("[rn][depot::files]:{}", "a".repeat(256));
        let long_value = format!("[rn][from::{}]:cars:suv:*", "a".repeat(65));
        // (input, text the part must contain, text the reason must contain)
        let cases: &[(&str, &str, &str)] = &[
            ("", "prefix", "[rn]"),
            ("users:freetier:*", "prefix", "[rn]"),
            ("[RN]:users:freetier:*", "prefix", "[rn]"),
            (" [rn]:users:freetier:*", "prefix", "[rn]"),
            ("[rn", "prefix", "[rn]"),
            ("[rn]", "segments", "missing"),
            ("[rn][from::cardb]", "segments", "missing"),
            ("[rn]:", "segment 1 \"\"", "empty"),
            ("[rn]users:freetier:*", "separator 'u'", "must be :"),
            ("[rn] :users:freetier:*", "separator ' '", "must be :"),
            ("[rn]é:users", "separator 'é'", "must be :"),
            ("[rn]:users:*", "segments", "found 2"),
            ("[rn]:users", "segments", "found 1"),
            ("[rn]:users:freetier:x:*", "segments", "found 4"),
            ("[rn]:users:freetier:*:", "segment 4 \"\"", "ends with :"),
            (
                "[rn]:Users:freetier:*",
                "namespace \"Users\"",
                "[a-z][a-z0-9]*",
            ),
            (
                "[rn]:1users:freetier:*",
                "namespace \"1users\"",
                "[a-z][a-z0-9]*",
            ),
            ("[rn]::freetier:*", "namespace \"\"", "[a-z][a-z0-9]*"),
            (
                "[rn]:users:free_tier:*",
                "kind \"free_tier\"",
                "[a-z][a-z0-9]*",
            ),
            ("[rn]:users:*:*", "kind \"*\"", "[a-z][a-z0-9]*"),
            (
                "[rn]:usérs:freetier:*",
                "namespace \"usérs\"",
                "[a-z][a-z0-9]*",
            ),
            ("[rn]:users:freetier:123", "id \"123\"", "UUIDv4"),
            ("[rn]:users:freetier:* ", "id \"* \"", "UUIDv4"),
            ("[rn]:users:freetier:**", "id \"**\"", "UUIDv4"),
            (
                "[rn]:users:freetier:3df3face-f377-1f86-9bb9-a9b4671a9441",
                "id \"3df3face-f377-1f86",
                "version 4",
            ),
            (
                "[rn]:users:freetier:3df3face-f377-4f86-cbb9-a9b4671a9441",
                "id \"3df3face",
                "UUIDv4",
            ),
            (
                "[rn]:users:freetier:3df3facef3774f869bb9a9b4671a9441",
                "id \"3df3facef377",
                "8-4-4-4-12",
            ),
            (
                "[rn]:users:freetier:{3df3face-f377-4f86-9bb9-a9b4671a9441}",
                "id \"{3df3face",
                "UUIDv4",
            ),
            (
                "[rn][from:x]:cars:suv:*",
                "mod \"[from:x]\"",
                "[key::value]",
            ),
            ("[rn][]:cars:suv:*", "mod \"[]\"", "[key::value]"),
            ("[rn][From::x]:cars:suv:*", "mod \"[From::x]\"", "key"),
            ("[rn][::x]:cars:suv:*", "mod \"[::x]\"", "key"),
            ("[rn][_a::x]:cars:suv:*", "mod \"[_a::x]\"", "key"),
            ("[rn][from::]:cars:suv:*", "mod \"[from::]\"", "value"),
            (
                "[rn][from::car db]:cars:suv:*",
                "mod \"[from::car db]\"",
                "value",
            ),
            (
                "[rn][from::a::b]:cars:suv:*",
                "mod \"[from::a::b]\"",
                "value",
            ),
            ("[rn][from::a.b]:cars:suv:*", "mod \"[from::a.b]\"", "value"),
            (&long_value, "mod \"[from::aaaa", "1 to 64"),
            (
                "[rn][from::cardb:cars:suv:*",
                "mod \"[from::cardb:cars",
                "not closed",
            ),
            ("[rn][from::cardb", "mod \"[from::cardb\"", "not closed"),
            (
                "[rn][from::a][from::b]:cars:suv:*",
                "mod \"[from::b]\"",
                "repeats the key \"from\"",
            ),
            (
                "[rn][from::a][depot::files]:x.txt",
                "mods",
                "from and depot",
            ),
            (
                "[rn][depot::files][from::a]:x.txt",
                "mods",
                "from and depot",
            ),
            ("[rn][from::a]]:cars:suv:*", "separator ']'", "must be :"),
            (
                "[rn][depot::files]:invoices:a/b",
                "segment 2 \"a/b\"",
                "'/'",
            ),
            ("[rn][depot::files]:a\\b", "segment 1 \"a\\\\b\"", "'\\\\'"),
            (
                "[rn][depot::files]:invoices:..:x",
                "segment 2 \"..\"",
                ". or ..",
            ),
            ("[rn][depot::files]:.", "segment 1 \".\"", ". or .."),
            ("[rn][depot::files]:invoices::x", "segment 2 \"\"", "empty"),
            (
                "[rn][depot::files]:invoices:",
                "segment 2 \"\"",
                "ends with :",
            ),
            (
                "[rn][depot::files]:invoices:*:x",
                "segment 2 \"*\"",
                "last segment",
            ),
            ("[rn][depot::files]:*:*", "segment 1 \"*\"", "last segment"),
            (
                "[rn][depot::files]:invoices:f*",
                "segment 2 \"f*\"",
                "last segment",
            ),
            ("[rn][depot::files]:a b.txt", "segment 1 \"a b.txt\"", "' '"),
            ("[rn][depot::files]:a\tb", "segment 1 \"a\\tb\"", "'\\t'"),
            ("[rn][depot::files]:a\0b", "segment 1 \"a\\0b\"", "'\\0'"),
            ("[rn][depot::files]:a\u{85}b", "segment 1", "'\\u{85}'"),
            ("[rn][depot::files]:x.txt\n", "segment 1", "'\\n'"),
            (&long_segment, "segment 1 \"aaaa", "256 bytes"),
        ];
        for (input, part_has, reason_has) in cases {
            let (part, reason) = rejection(input);
            assert!(
                part.contains(part_has),
                "{input:?}: part {part:?} lacks {part_has:?}"
            );
            assert!(
                reason.contains(reason_has),
                "{input:?}: reason {reason:?} lacks {reason_has:?}"
            );
        }
    }

    #[test]
    fn segment_length_limit_is_255_bytes() {
        let at_limit = format!("[rn][depot::files]:{}", "é".repeat(127) + "a");
        assert!(parse(&at_limit).is_ok());
        let over = format!("[rn][depot::files]:{}", "é".repeat(128));
        assert!(parse(&over).is_err());
        let value_at_limit = format!("[rn][from::{}]:cars:suv:*", "a".repeat(64));
        assert!(parse(&value_at_limit).is_ok());
    }

    #[test]
    fn error_message_reads_as_a_sentence() {
        let err = parse("[rn][depot::files]:invoices:a/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid rn "[rn][depot::files]:invoices:a/b": segment 2 "a/b" contains '/', which a depot segment can not hold"#
        );
    }

    #[test]
    fn huge_and_hostile_inputs_give_short_errors() {
        let huge = format!("[rn][depot::files]:{}", "日".repeat(100_000));
        let Error::InvalidRn { input, part, .. } = parse(&huge).unwrap_err() else {
            panic!("expected InvalidRn");
        };
        assert!(input.len() < 300, "input is clipped");
        assert!(part.len() < 300, "part is clipped");
        let unclosed = format!("[rn][from::{}", "🦀".repeat(10_000));
        let Error::InvalidRn { part, .. } = parse(&unclosed).unwrap_err() else {
            panic!("expected InvalidRn");
        };
        assert!(part.len() < 300);
        for s in [
            "[rn][",
            "[rn][[",
            "[rn]]",
            "[rn]::",
            "[rn]:::",
            "[rn][a::b]]",
            "[rn]\u{0}",
        ] {
            assert!(parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn serde_uses_the_plain_string() {
        let rn = parse("[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441").unwrap();
        let json = serde_json::to_string(&rn).unwrap();
        assert_eq!(
            json,
            r#""[rn][from::cardb]:cars:suv:3df3face-f377-4f86-9bb9-a9b4671a9441""#
        );
        let back: Rn = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rn);
        let value: Rn = serde_json::from_value(serde_json::Value::String(rn.to_string())).unwrap();
        assert_eq!(value, rn);

        struct Car;
        let typed: Vec<Rn<Car>> = serde_json::from_str(r#"["[rn]:cars:suv:*"]"#).unwrap();
        assert_eq!(typed[0].as_str(), "[rn]:cars:suv:*");

        let err = serde_json::from_str::<Rn>(r#""[rn]:Cars:suv:*""#).unwrap_err();
        assert!(
            err.to_string().contains(r#"namespace "Cars" must match"#),
            "{err}"
        );
        let err = serde_json::from_str::<Rn>("42").unwrap_err();
        assert!(err.to_string().contains("an rn string"), "{err}");
    }

    #[test]
    fn with_id_turns_a_collection_or_item_into_an_item() {
        let id = uuid::Uuid::parse_str("6104d3f8-7076-4d35-b3ee-6b6223f8bf19").unwrap();
        let cars = parse("[rn][from::cardb][tag::x]:cars:suv:*").unwrap();
        let car = cars.with_id(id).unwrap();
        assert_eq!(
            car,
            "[rn][from::cardb][tag::x]:cars:suv:6104d3f8-7076-4d35-b3ee-6b6223f8bf19"
        );
        assert!(car.is_item());
        assert_eq!(car.uuid(), Some(id));
        assert_eq!(
            parse(car.as_str()).unwrap(),
            car,
            "the built text parses back"
        );

        let other = parse(&format!("[rn]:cars:suv:{UUID}"))
            .unwrap()
            .with_id(id)
            .unwrap();
        assert_eq!(other, "[rn]:cars:suv:6104d3f8-7076-4d35-b3ee-6b6223f8bf19");

        let nil = cars.with_id(uuid::Uuid::nil()).unwrap_err();
        assert!(
            matches!(&nil, Error::InvalidRn { part, .. } if part.starts_with("id ")),
            "{nil}"
        );

        let depot = parse("[rn][depot::files]:a.txt").unwrap();
        assert!(matches!(depot.with_id(id), Err(Error::WrongRnForm { .. })));
    }

    #[test]
    fn with_layer_sets_replaces_and_removes_the_from_mod() {
        let users = parse("[rn][tag::x]:users:freetier:*").unwrap();
        let added = users.with_layer("userdb").unwrap();
        assert_eq!(added, "[rn][from::userdb][tag::x]:users:freetier:*");
        assert_eq!(added.layer(), Some("userdb"));
        let replaced = parse("[rn][tag::x][from::a]:users:freetier:*")
            .unwrap()
            .with_layer("b")
            .unwrap();
        assert_eq!(replaced, "[rn][tag::x][from::b]:users:freetier:*");
        assert_eq!(replaced.without_layer(), "[rn][tag::x]:users:freetier:*");
        assert_eq!(users.without_layer(), users);
        for rn in [&added, &replaced] {
            assert_eq!(parse(rn.as_str()).unwrap(), *rn);
        }

        for bad in ["", "user db", "a]:x", "über", &"a".repeat(65)] {
            let err = users.with_layer(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidIdentifier { what: "layer", .. }),
                "{bad:?}: {err}"
            );
        }
        let depot = parse("[rn][depot::files]:a.txt").unwrap();
        assert!(matches!(
            depot.with_layer("x"),
            Err(Error::WrongRnForm { .. })
        ));
        assert_eq!(depot.without_layer(), depot);
    }

    #[test]
    fn collection_goes_one_level_up() {
        let cases = [
            (
                format!("[rn][from::cardb]:cars:suv:{UUID}"),
                "[rn][from::cardb]:cars:suv:*",
            ),
            (
                "[rn][from::cardb]:cars:suv:*".to_owned(),
                "[rn][from::cardb]:cars:suv:*",
            ),
            (
                "[rn][depot::files]:invoices:fred:a.txt".to_owned(),
                "[rn][depot::files]:invoices:fred:*",
            ),
            (
                "[rn][depot::files]:a.txt".to_owned(),
                "[rn][depot::files]:*",
            ),
            (
                "[rn][depot::files]:invoices:*".to_owned(),
                "[rn][depot::files]:invoices:*",
            ),
        ];
        for (input, expected) in cases {
            let up = parse(&input).unwrap().collection();
            assert_eq!(up, expected);
            assert_eq!(parse(expected).unwrap().form(), up.form());
        }
    }

    #[test]
    fn key_path_joins_depot_segments() {
        let key = |s: &str| parse(s).unwrap().key_path();
        assert_eq!(
            key("[rn][depot::files]:invoices:fred:a.txt").as_deref(),
            Some("invoices/fred/a.txt")
        );
        assert_eq!(
            key("[rn][depot::files]:invoices:fred:*").as_deref(),
            Some("invoices/fred/")
        );
        assert_eq!(key("[rn][depot::files]:*").as_deref(), Some(""));
        assert_eq!(key("[rn]:cars:suv:*"), None);
    }

    #[test]
    fn constructors_validate_every_part() {
        let id = uuid::Uuid::parse_str(UUID).unwrap();
        assert_eq!(
            Rn::item("users", "freetier", id).unwrap(),
            format!("[rn]:users:freetier:{UUID}").as_str()
        );
        assert_eq!(
            Rn::collection_of("users", "freetier").unwrap(),
            "[rn]:users:freetier:*"
        );
        let file = Rn::depot_file("files", &["invoices", "fred", "a.txt"]).unwrap();
        assert_eq!(file, "[rn][depot::files]:invoices:fred:a.txt");
        assert_eq!(file.form(), RnForm::DepotFile);

        let part = |r: Result<Rn>| match r {
            Err(Error::InvalidRn { part, .. }) => part,
            other => panic!("expected InvalidRn, got {other:?}"),
        };
        assert_eq!(
            part(Rn::item("Users", "freetier", id)),
            "namespace \"Users\""
        );
        assert_eq!(
            part(Rn::item("users", "free:tier", id)),
            "kind \"free:tier\""
        );
        assert_eq!(
            part(Rn::item("users", "freetier", uuid::Uuid::max())),
            format!("id \"{}\"", uuid::Uuid::max())
        );
        assert_eq!(part(Rn::collection_of("users", "")), "kind \"\"");
        assert_eq!(
            part(Rn::depot_file("files]:x:y[a", &["b"])),
            "mod \"[depot::files]:x:y[a]\""
        );
        assert_eq!(part(Rn::depot_file("files", &[])), "segments");
        assert_eq!(
            part(Rn::depot_file("files", &["a", "b:c"])),
            "segment 2 \"b:c\""
        );
        assert_eq!(part(Rn::depot_file("files", &["*"])), "segment 1 \"*\"");
        assert_eq!(
            part(Rn::depot_file("files", &["a", ".."])),
            "segment 2 \"..\""
        );
    }

    #[test]
    fn typed_rns_cast_and_compare_by_text() {
        struct User;
        let typed: Rn<User> = "[rn]:users:freetier:*".parse().unwrap();
        let untyped: Rn = typed.untyped();
        assert_eq!(untyped.as_str(), typed.as_str());
        assert_eq!(untyped.clone().cast::<User>(), typed);
        assert_eq!(format!("{typed:?}"), r#"Rn("[rn]:users:freetier:*")"#);
        assert_eq!(format!("{typed}"), "[rn]:users:freetier:*");

        let mut set = std::collections::HashSet::new();
        set.insert(parse("[rn]:b:b:*").unwrap());
        set.insert(parse("[rn]:a:a:*").unwrap());
        assert!(set.contains("[rn]:a:a:*"));
        let mut sorted: Vec<Rn> = set.into_iter().collect();
        sorted.sort();
        assert_eq!(sorted[0], "[rn]:a:a:*");
    }

    #[test]
    fn validators_follow_their_rules() {
        for ok in ["a", "users", "a1b2", "z9"] {
            assert!(is_name(ok), "{ok:?}");
        }
        for bad in ["", "A", "1a", "a_b", "a-b", "é", "a b", "*"] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(validate_layer_ident("user_db-1").is_ok());
        let err = validate_layer_ident("user db").unwrap_err();
        assert!(
            matches!(err, Error::InvalidIdentifier { what: "layer", ref name, .. } if name == "user db")
        );
    }
}
