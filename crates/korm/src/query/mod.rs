//! Filters, sort keys and paths: which items a query returns, and in what order.
//!
//! A filter is built with [`eq`], [`gt`], [`gte`], [`lt`], [`lte`], [`like`], [`in_list`],
//! combined with [`and`], [`or`] and [`not`] (or [`Filter::and`], [`Filter::or`], `!`):
//!
//! ```
//! use korm::{and, eq, gt, in_list, like, not};
//!
//! let f = and([
//!     eq("meta.tier", "gold"),
//!     gt("age", 80),
//!     in_list("owner.addresses[*].city", ["Paris", "Rome"]),
//!     not(like("username", "test%")),
//! ]);
//! # let _ = f;
//! ```
//!
//! The same filters can be written as text, as the `korm` command takes them:
//! [`parse_filter`]`(r#"age > 30 and meta.tier = "gold""#)` (see [`parse_filter`] for the
//! grammar), and sort keys as `-age,username` ([`parse_sort`]).
//!
//! # Paths
//! A path names a field of the model, then optionally goes into it: `.key` into an object,
//! `[n]` into an array, `[*]` over every element of an array: `year`, `meta.flags.hot`,
//! `tags[0]`, `owner.addresses[*].city`, `a[1][*].b`. The field and every key match
//! `[A-Za-z_][A-Za-z0-9_]*`, an index is at most 9 digits, a path has at most 32 steps;
//! anything else is [`Error::InvalidPath`](crate::Error::InvalidPath) when the query runs.
//! `rnId` names the item's id.
//!
//! # What a filter means
//! These rules are the same on every database korm supports, and in memory:
//! [`Filter::matches`] applies them to an item's data without a database.
//! - **Missing is null.** A field the collection has never stored, a key an object lacks, an
//!   index past the end, or a path into a scalar: the value is null. No error.
//! - **Comparisons** (`eq`, `gt`, `gte`, `lt`, `lte`) compare scalars of the same type: text
//!   with text (byte by byte), numbers with numbers (whole or not), booleans with booleans
//!   (`false < true`). Two whole numbers compare exactly; a whole number and a double compare
//!   as two doubles, as in korm 1.5's JavaScript (so 9007199254740993 equals
//!   9007199254740992.0, its nearest double). Values of different types never match: `eq("age", "80")` does not
//!   match the number 80, `gt("meta.score", 5)` does not match the string `"9"`. Objects and
//!   arrays match no comparison. A null value never matches a comparison.
//! - **`eq(path, null)`** matches a null or missing value (`()` or `serde_json::Value::Null`);
//!   null with `gt`, `gte`, `lt` or `lte` is [`Error::InvalidFilter`](crate::Error::InvalidFilter),
//!   and so is an object or array as the value (filters compare scalars).
//! - **`like`** matches text against a SQL pattern: `%` any run of characters, `_` one
//!   character, no escape character; ASCII letters match either case (SQLite's `LIKE`), other
//!   characters only exactly. A value that is not text does not match. A pattern is at most
//!   50,000 bytes (SQLite's limit, kept on every backend).
//! - **`in_list`** is `eq` with any of the values: an empty list matches nothing, and a null
//!   in the list matches null and missing values, as `eq` with null does (korm 1.5's
//!   semantics; SQL's own `IN` would match nothing for it). A list may be any length: past
//!   16 values it is bound as one JSON array parameter (tested with a million values).
//! - **`not`** holds whenever its filter does not hold, including when the value is missing:
//!   `not(eq("nickname", "x"))` matches items without a nickname. `and([])` matches every
//!   item, `or([])` none.
//! - **`[*]`** holds when *any* element of the array holds: `eq("addresses[*].city",
//!   "Paris")` matches an item with one address in Paris. Only arrays have elements: an object
//!   or a scalar at that place, or a missing value, gives no element (so `[*]` never matches
//!   there, and `not` of it does). With several `[*]`, any combination of elements.
//!   `tags[*]` with nothing after it tests each element itself.
//! - **Encrypted fields** and **paths through a reference** (`owner.username` where `owner` is
//!   a reference) are not evaluated in SQL: the planner evaluates them in memory after
//!   decrypting or resolving. Handed to SQL rendering directly, they are an
//!   [`Error::InvalidFilter`](crate::Error::InvalidFilter), never a silent empty result.
//!
//! # Sorting
//! Each sort key is a path without `[*]` and a [`SortOrder`]. Ascending puts nulls (and
//! missing values) last, descending puts them first. Values of one type sort by value; values
//! of different types at one JSON path sort by type first: booleans, numbers, text, then
//! objects and arrays. Ties fall back to the item id, and so does a window without sort keys
//! (`first()`, `first_n`, `limit`, `offset`, pages), so which items it holds is the same on
//! every backend; `get()` without sort keys returns items in the database's own order.
//!
//! # Large collections
//! [`Query::count`](crate::Query::count) counts in the database;
//! [`limit`](crate::Query::limit) and [`offset`](crate::Query::offset) window the result;
//! [`page`](crate::Query::page) and [`after`](crate::Query::after) walk it by keyset, each page
//! as cheap as the first; [`stream`](crate::Query::stream) and
//! [`stream_read_only`](crate::Query::stream_read_only) read it in constant memory; a
//! [declared index](index) makes a filter on a JSON path a lookup.

pub(crate) mod dialect;
pub(crate) mod filter;
pub mod index;
pub(crate) mod memory;
mod parse;
pub(crate) mod path;

/// The most sort keys a query takes (each key beyond the first adds a condition for every
/// earlier one to a keyset page's filter, so their count is bounded like a filter's depth).
pub const MAX_SORT_KEYS: usize = 16;

pub use filter::{Filter, SortOrder, and, eq, gt, gte, in_list, like, lt, lte, not, or};
pub use index::{IndexKind, declare_index};
pub use parse::{parse_filter, parse_sort};
pub(crate) use path::{FieldPath, PathStep};
