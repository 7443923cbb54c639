//! What korm knows of a table's shape, and the one schema planner: [`diff`] says which
//! [`SchemaChange`]s make a table fit a write, each dialect renders them to DDL
//! ([`Dialect::render_change`](crate::query::dialect::Dialect::render_change)), and
//! [`TableSchema::apply`] says what the table looks like afterwards. Every backend runs the same
//! plan; only where the DDL runs (inside the write's transaction, or before it on MySQL) and
//! how concurrent writers are kept apart differ.

use std::sync::Arc;

use crate::error::{DbErrorKind, Error, Result};
use crate::model::{Cell, ColumnKind, Field, RowBuilder, StoredRow};
use crate::query::dialect::{Dialect, FINGERPRINT_RUN, Statement};

/// The primary-key column of every item table: the item's UUID (not the whole RN).
pub(crate) const ID_COLUMN: &str = "rnId";

/// The prefix of a unique field's shadow fingerprint column.
pub(crate) const UNIQUE_PREFIX: &str = "__korm_unique__";

/// The name of a unique field's index, as korm 1.5 names it: `__korm_u_` + the first 24 hex
/// characters of SHA-256(`{table}:{field}`), `table` being the full (unhashed) table name.
/// The same on every backend.
pub(crate) fn unique_index_name(table: &str, field: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{table}:{field}").as_bytes());
    format!("__korm_u_{}", &hex::encode(digest)[..24])
}

/// What a column of an item table's `SELECT *` result is, for decoding its rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReadColumn {
    /// The `rnId` key.
    Id,
    /// A unique field's shadow fingerprint: not data.
    Skip,
    /// A field, with its kind when the schema knows it.
    Field(std::sync::Arc<str>, Option<ColumnKind>),
}

impl ReadColumn {
    /// The kind of a field column, when the schema knows it.
    pub(crate) fn kind(&self) -> Option<ColumnKind> {
        match self {
            ReadColumn::Field(_, kind) => *kind,
            ReadColumn::Id | ReadColumn::Skip => None,
        }
    }

    /// Classifies a result column by its name; `schema` gives field kinds.
    pub(crate) fn of(name: &str, schema: Option<&TableSchema>) -> ReadColumn {
        if name == ID_COLUMN {
            ReadColumn::Id
        } else if name.starts_with(UNIQUE_PREFIX) {
            ReadColumn::Skip
        } else {
            ReadColumn::Field(name.into(), schema.and_then(|s| s.kind_of(name)))
        }
    }
}

/// How to read the rows of an item table's `SELECT *`: what each result column is (by its
/// name, with the kind the schema knows), and the names of the field columns, shared by
/// every row read with the plan.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    /// The result's column names, in order.
    pub(crate) names: Vec<Box<str>>,
    /// What each result column is.
    pub(crate) columns: Vec<ReadColumn>,
    /// The field columns' names.
    pub(crate) fields: Arc<[Arc<str>]>,
}

impl ReadPlan {
    /// The plan of a result with these column names; `schema` gives the field kinds.
    pub(crate) fn new<'n>(
        names: impl IntoIterator<Item = &'n str>,
        schema: Option<&TableSchema>,
    ) -> ReadPlan {
        let names: Vec<Box<str>> = names.into_iter().map(Box::from).collect();
        let columns: Vec<ReadColumn> = names.iter().map(|n| ReadColumn::of(n, schema)).collect();
        let fields = columns
            .iter()
            .filter_map(|c| match c {
                ReadColumn::Field(name, _) => Some(Arc::clone(name)),
                _ => None,
            })
            .collect();
        ReadPlan {
            names,
            columns,
            fields,
        }
    }

    /// Builds one row: `cell(i)` reads result column `i` as the driver typed it, and the
    /// column's kind then says what it holds ([`Cell::for_kind`]). `text_hint` is about how
    /// much text a row holds.
    ///
    /// # Errors
    /// [`Error::Decode`] naming the table for a row whose `rnId` is missing or not text, and
    /// whatever `cell` fails with.
    pub(crate) fn decode<'r>(
        &self,
        table: &str,
        text_hint: usize,
        mut cell: impl FnMut(usize) -> Result<Cell<'r>>,
    ) -> Result<StoredRow> {
        let bad = |reason: &str| Error::Decode {
            rn: table.to_owned(),
            reason: reason.to_owned(),
        };
        let mut row = RowBuilder::new(self.fields.len(), text_hint);
        for (i, column) in self.columns.iter().enumerate() {
            match column {
                ReadColumn::Skip => {}
                ReadColumn::Id => match cell(i)? {
                    Cell::Text(id) => row.id(id),
                    _ => return Err(bad("a row's rnId is not text")),
                },
                ReadColumn::Field(_, kind) => row.push(cell(i)?.for_kind(*kind)),
            }
        }
        row.finish(&self.fields)
            .ok_or_else(|| bad("a row has no rnId"))
    }
}

/// The columns of one item table, in table order, with their kinds. The `rnId` key column and
/// unique shadow columns are not listed: they are not fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TableSchema {
    /// The table name (`__items__{namespace}__{kind}`).
    pub(crate) table: String,
    /// Field columns and their kinds.
    pub(crate) columns: Vec<(String, ColumnKind)>,
    /// Fields that have a unique shadow column.
    pub(crate) unique: Vec<String>,
    /// Integer columns narrower than 64 bits, with their width (korm 1.5 creates 32-bit
    /// `integer` columns on PostgreSQL and `INT` on MySQL).
    pub(crate) narrow_integers: Vec<(String, u32)>,
    /// The names of korm's declared indexes on the table (see [`crate::query::index`]).
    pub(crate) indexes: Vec<String>,
    /// Fields whose shadow column has no one-column unique index (MySQL commits the column
    /// and the index separately, so a crash between them leaves one; so may a hand): not
    /// unique, until the next unique write adds the index ([`SchemaChange::IndexShadow`]).
    pub(crate) unindexed: Vec<String>,
}

impl TableSchema {
    /// The kind of a field column, if the table has it.
    pub(crate) fn kind_of(&self, column: &str) -> Option<ColumnKind> {
        self.columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, kind)| *kind)
    }

    /// Adds a column read from the database's catalog: the key is not a field, and a unique
    /// shadow column marks its field unique when a one-column unique index has it (`keyed`),
    /// else [`unindexed`](TableSchema::unindexed).
    pub(crate) fn add_read_column(&mut self, name: String, kind: ColumnKind, keyed: bool) {
        if name == ID_COLUMN {
            return;
        }
        match name.strip_prefix(UNIQUE_PREFIX) {
            Some(field) if keyed => self.unique.push(field.to_owned()),
            Some(field) => self.unindexed.push(field.to_owned()),
            None => self.columns.push((name, kind)),
        }
    }

    /// Checks that every integer the fields hold fits its column: a value outside a narrow
    /// column's range is refused before anything is sent, naming the field (never the value).
    ///
    /// # Errors
    /// [`Error::Encode`] for an integer outside its column's range.
    pub(crate) fn check_integers(&self, rn: &str, fields: &[Field]) -> Result<()> {
        for (column, bits) in &self.narrow_integers {
            let Some(field) = fields.iter().find(|f| &f.name == column) else {
                continue;
            };
            // A whole double goes into an integer column as the integer it holds.
            let Some(i) = field
                .value
                .as_i64()
                .or_else(|| field.value.as_number().and_then(crate::model::whole_double))
                .or_else(|| field.value.as_u64().map(|_| i64::MAX))
            else {
                continue;
            };
            let max = (1i64 << (bits - 1)) - 1;
            if i > max || i < -max - 1 {
                return Err(Error::Encode {
                    what: format!("field `{column}` of {rn}"),
                    reason: format!(
                        "the value does not fit the column's {bits}-bit integer type (korm 1.5 \
                         creates 32-bit integer columns); a layer opened with \
                         with_wide_integers(true) creates 64-bit columns for new fields, and an \
                         existing column must be widened by hand (or recreated with destructive)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether writing these fields needs a schema change first: a missing column, a missing
    /// unique shadow, or a value kind the column does not accept.
    pub(crate) fn needs_ddl(&self, fields: &[crate::model::Field]) -> bool {
        fields.iter().any(|f| {
            (f.unique && !self.is_unique(&f.name))
                || self.kind_of(&f.name).is_none_or(|stored| !takes(stored, f))
        })
    }

    /// A column whose name equals `name` but for case (and is not `name`).
    fn case_twin(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .map(|(c, _)| c.as_str())
            .chain([ID_COLUMN])
            .find(|c| *c != name && c.eq_ignore_ascii_case(name))
    }

    /// Whether the field has a unique shadow column.
    pub(crate) fn is_unique(&self, column: &str) -> bool {
        self.unique.iter().any(|u| u == column)
    }

    /// Whether a result with these column names has a field column this schema does not
    /// know (another process added it): the schema must be read again.
    pub(crate) fn lacks_any<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> bool {
        names.into_iter().any(|name| {
            name != ID_COLUMN && !name.starts_with(UNIQUE_PREFIX) && self.kind_of(name).is_none()
        })
    }

    /// The schema after `change` was made.
    pub(crate) fn apply(&mut self, change: &SchemaChange) {
        match change {
            SchemaChange::CreateTable { columns, unique } => {
                self.columns.clone_from(columns);
                self.unique.clone_from(unique);
            }
            SchemaChange::AddColumn { column, kind } => {
                self.columns.push((column.clone(), *kind));
            }
            SchemaChange::RecreateColumn { column, kind } => {
                self.columns.retain(|(name, _)| name != column);
                self.columns.push((column.clone(), *kind));
            }
            SchemaChange::AddUnique { field } => self.unique.push(field.clone()),
            SchemaChange::IndexShadow { field } => {
                self.unindexed.retain(|u| u != field);
                self.unique.push(field.clone());
            }
            SchemaChange::DropUnique { field } => self.unique.retain(|u| u != field),
        }
    }
}

/// One change to an item table's shape, planned by [`diff`] and rendered to DDL by a dialect.
/// The table is the one [`diff`] was given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SchemaChange {
    /// Create the table: the `rnId` key, these field columns, and a shadow column with a
    /// unique index for each unique field.
    CreateTable {
        columns: Vec<(String, ColumnKind)>,
        unique: Vec<String>,
    },
    /// Add a field column.
    AddColumn { column: String, kind: ColumnKind },
    /// Drop a field column and add it again with another kind (`destructive` only: the values
    /// other items held in it are lost).
    RecreateColumn { column: String, kind: ColumnKind },
    /// Add a unique field's shadow column and its unique index.
    AddUnique { field: String },
    /// Add the unique index of a shadow column that has none (see
    /// [`TableSchema::unindexed`]).
    IndexShadow { field: String },
    /// Drop a unique field's shadow column and its index (before its column is recreated).
    DropUnique { field: String },
}

/// The changes that make `table` (as `existing` describes it, `None` when it does not exist)
/// fit a write of `fields`: create the table; add missing columns and unique shadows; and for
/// a column whose kind does not accept the value, recreate it when `destructive`, else fail.
/// A field whose value is null asks for no kind: a new column for it is `TEXT`, as korm 1.5
/// makes it.
///
/// # Errors
/// [`Error::SchemaMismatch`] for a kind the column does not accept, without `destructive`.
pub(crate) fn diff(
    table: &str,
    existing: Option<&TableSchema>,
    fields: &[Field],
    destructive: bool,
    limit: IdentifierLimit,
) -> Result<Vec<SchemaChange>> {
    for field in fields {
        limit.check(&field.name)?;
        if field.unique {
            limit.check(&format!("{UNIQUE_PREFIX}{}", field.name))?;
        }
    }
    let Some(schema) = existing else {
        return Ok(vec![SchemaChange::CreateTable {
            columns: fields
                .iter()
                .map(|f| (f.name.clone(), f.kind.unwrap_or(ColumnKind::Text)))
                .collect(),
            unique: fields
                .iter()
                .filter(|f| f.unique)
                .map(|f| f.name.clone())
                .collect(),
        }]);
    };
    let mut changes = Vec::new();
    for field in fields {
        let mut unique = schema.is_unique(&field.name);
        match (schema.kind_of(&field.name), field.kind) {
            (None, _) if let Some(other) = schema.case_twin(&field.name) => {
                return Err(Error::Encode {
                    what: format!("field `{}` of {table}", field.name),
                    reason: format!(
                        "the table has a column `{other}` already, whose name differs only in \
                         case: MySQL, MariaDB and SQLite do not tell such names apart"
                    ),
                });
            }
            (None, kind) => changes.push(SchemaChange::AddColumn {
                column: field.name.clone(),
                kind: kind.unwrap_or(ColumnKind::Text),
            }),
            (Some(stored), Some(found)) if !takes(stored, field) => {
                if !destructive {
                    return Err(Error::SchemaMismatch {
                        table: table.to_owned(),
                        column: field.name.clone(),
                        stored,
                        found,
                    });
                }
                if unique {
                    changes.push(SchemaChange::DropUnique {
                        field: field.name.clone(),
                    });
                    unique = false;
                }
                changes.push(SchemaChange::RecreateColumn {
                    column: field.name.clone(),
                    kind: found,
                });
            }
            _ => {}
        }
        if field.unique && !unique {
            let field = field.name.clone();
            changes.push(if schema.unindexed.contains(&field) {
                SchemaChange::IndexShadow { field }
            } else {
                SchemaChange::AddUnique { field }
            });
        }
    }
    Ok(changes)
}

/// Whether a column of kind `stored` takes the field's value without recreating it: a null,
/// a kind the column [accepts](ColumnKind::accepts), with two rules on numbers. A whole
/// number goes into a double column only up to 2^53 in magnitude (a double holds those
/// exactly; a larger one was rounded silently). A double holding a whole number up to 2^53
/// goes into an integer column: that is what a JavaScript number is, so korm 1.5 makes an
/// integer column from `100`, and a Rust `f64` holding `100.0` must fit it (it is bound as
/// the integer; a fraction or a larger double does not fit).
fn takes(stored: ColumnKind, field: &Field) -> bool {
    takes_value(stored, field.kind, &field.value)
}

/// [`takes`] for a value and the kind it asks for (`None`: null), as a restore checks the
/// snapshot's values before it writes any.
pub(crate) fn takes_value(
    stored: ColumnKind,
    found: Option<ColumnKind>,
    value: &serde_json::Value,
) -> bool {
    found.is_none_or(|found| match (stored, found) {
        (ColumnKind::Double, ColumnKind::Integer) => value
            .as_i64()
            .is_none_or(|i| i.unsigned_abs() <= crate::model::EXACT_IN_DOUBLE),
        (ColumnKind::Integer, ColumnKind::Double) => value
            .as_number()
            .and_then(crate::model::whole_double)
            .is_some(),
        _ => stored.accepts(found),
    })
}

impl SchemaChange {
    /// The field whose stored values need fingerprints after this change: a unique shadow
    /// added beside a column that already held values. (korm 1.5 leaves such rows' shadows
    /// null, so the unique index does not see them: a new item could take an old item's
    /// value.)
    /// Gives the field and its column's kind.
    pub(crate) fn backfilled_field(
        &self,
        existing: Option<&TableSchema>,
    ) -> Option<(&str, ColumnKind)> {
        match self {
            SchemaChange::AddUnique { field } | SchemaChange::IndexShadow { field } => {
                Some((field, existing?.kind_of(field)?))
            }
            _ => None,
        }
    }
}

/// The statements that write the fingerprints [`backfill`] computes into the shadow of
/// `field`, [`FINGERPRINT_RUN`] items a statement, in `dialect`.
///
/// # Errors
/// As [`backfill`].
pub(crate) fn backfill_statements(
    dialect: &(impl Dialect + ?Sized),
    layer: &str,
    table: &str,
    field: &str,
    rows: Vec<(String, serde_json::Value)>,
) -> Result<Vec<Statement>> {
    let filled = backfill(layer, table, field, rows)?;
    Ok(filled
        .chunks(FINGERPRINT_RUN)
        .map(|run| dialect.render_fingerprints(table, field, run))
        .collect())
}

/// The shadow fingerprints of a field that becomes unique on a table already holding items,
/// from each item's `(rnId, stored value)` (nulls left out): one `(rnId, fingerprint)` each.
///
/// # Errors
/// [`Error::Database`] ([`DbErrorKind::UniqueViolation`]) naming two items that hold equal
/// values (never the value): the field can not become unique until one of them changes.
pub(crate) fn backfill(
    layer: &str,
    table: &str,
    field: &str,
    rows: Vec<(String, serde_json::Value)>,
) -> Result<Vec<(String, String)>> {
    let mut seen = std::collections::HashMap::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for (id, value) in rows {
        let fingerprint = crate::model::fingerprint(&value);
        if let Some(other) = seen.insert(fingerprint.clone(), id.clone()) {
            return Err(Error::database(
                layer,
                DbErrorKind::UniqueViolation,
                format!(
                    "field `{field}` of {table} can not become unique: items {} and {} \
                     already hold equal values (change one of them first)",
                    crate::error::clip(&other),
                    crate::error::clip(&id)
                ),
            ));
        }
        out.push((id, fingerprint));
    }
    Ok(out)
}

/// The longest column name a database keeps, and its name for messages: PostgreSQL cuts
/// longer names silently (63 bytes), MySQL refuses them (64 characters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdentifierLimit {
    /// The limit, in bytes (korm's names are ASCII).
    pub(crate) max: usize,
    /// The database, for the message.
    pub(crate) database: &'static str,
}

impl IdentifierLimit {
    /// No limit (SQLite).
    pub(crate) const NONE: IdentifierLimit = IdentifierLimit {
        max: usize::MAX,
        database: "",
    };

    /// [`Error::InvalidIdentifier`] for a column name over the limit.
    fn check(self, column: &str) -> Result<()> {
        if column.len() <= self.max {
            return Ok(());
        }
        Err(Error::InvalidIdentifier {
            what: "field",
            name: crate::error::clip(column),
            reason: format!(
                "is {} bytes long, and {} keeps column names of at most {} (unique fields \
                 have a shadow column named __korm_unique__ + the field)",
                column.len(),
                self.database,
                self.max
            ),
        })
    }
}

/// The schema of `table` after `changes` (planned by [`diff`] from `existing`) were made.
pub(crate) fn after(
    table: &str,
    existing: Option<TableSchema>,
    changes: &[SchemaChange],
) -> TableSchema {
    let mut schema = existing.unwrap_or_else(|| TableSchema {
        table: table.to_owned(),
        ..TableSchema::default()
    });
    for change in changes {
        schema.apply(change);
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TABLE: &str = "__items__users__freetier";

    fn field(name: &str, kind: Option<ColumnKind>, unique: bool) -> Field {
        Field {
            name: name.to_owned(),
            value: Value::Null,
            kind,
            unique,
        }
    }

    fn users() -> TableSchema {
        TableSchema {
            table: TABLE.to_owned(),
            columns: vec![
                ("username".to_owned(), ColumnKind::Text),
                ("age".to_owned(), ColumnKind::Integer),
                ("email".to_owned(), ColumnKind::Text),
            ],
            unique: vec!["email".to_owned()],
            ..TableSchema::default()
        }
    }

    #[test]
    fn a_missing_table_is_created_with_every_field() {
        let fields = [
            field("username", Some(ColumnKind::Text), false),
            field("nickname", None, false),
            field("email", Some(ColumnKind::Text), true),
        ];
        let changes = diff(TABLE, None, &fields, false, IdentifierLimit::NONE).unwrap();
        assert_eq!(
            changes,
            [SchemaChange::CreateTable {
                columns: vec![
                    ("username".to_owned(), ColumnKind::Text),
                    ("nickname".to_owned(), ColumnKind::Text),
                    ("email".to_owned(), ColumnKind::Text),
                ],
                unique: vec!["email".to_owned()],
            }]
        );
        let made = after(TABLE, None, &changes);
        assert_eq!(made.table, TABLE);
        assert!(made.is_unique("email") && !made.needs_ddl(&fields));
    }

    #[test]
    fn a_fitting_write_changes_nothing() {
        let fields = [
            field("username", Some(ColumnKind::Text), false),
            // Null fits any column; an RN fits a text column; a unique field keeps its shadow.
            field("age", None, false),
            field("email", Some(ColumnKind::RnRef), true),
        ];
        assert_eq!(
            diff(TABLE, Some(&users()), &fields, false, IdentifierLimit::NONE).unwrap(),
            []
        );
        assert!(!users().needs_ddl(&fields));
    }

    /// A shadow column without its unique index gets the index only (the column is there),
    /// and its old rows' fingerprints.
    #[test]
    fn a_shadow_without_its_index_gets_the_index() {
        let mut users = users();
        users.unique.clear();
        users.unindexed.push("email".to_owned());
        let fields = [field("email", Some(ColumnKind::Text), true)];
        assert!(users.needs_ddl(&fields));
        let changes = diff(TABLE, Some(&users), &fields, false, IdentifierLimit::NONE).unwrap();
        let index = SchemaChange::IndexShadow {
            field: "email".to_owned(),
        };
        assert_eq!(changes, std::slice::from_ref(&index));
        assert_eq!(
            index.backfilled_field(Some(&users)),
            Some(("email", ColumnKind::Text))
        );
        let made = after(TABLE, Some(users), &changes);
        assert!(made.is_unique("email") && made.unindexed.is_empty());
        assert!(!made.needs_ddl(&fields));
    }

    #[test]
    fn a_shadow_beside_stored_values_is_backfilled() {
        let add = |field: &str| SchemaChange::AddUnique {
            field: field.to_owned(),
        };
        // `username` holds values; `nickname` is a new column; a new table holds nothing.
        assert_eq!(
            add("username").backfilled_field(Some(&users())),
            Some(("username", ColumnKind::Text))
        );
        assert_eq!(add("nickname").backfilled_field(Some(&users())), None);
        assert_eq!(add("username").backfilled_field(None), None);
        let column = SchemaChange::AddColumn {
            column: "username".to_owned(),
            kind: ColumnKind::Text,
        };
        assert_eq!(column.backfilled_field(Some(&users())), None);

        let rows = vec![
            ("a".to_owned(), serde_json::json!({"x": 1, "y": [2.0]})),
            ("b".to_owned(), serde_json::json!("fred@bedrock.example")),
        ];
        let filled = backfill("main", TABLE, "username", rows).unwrap();
        assert_eq!(
            filled,
            [
                (
                    "a".to_owned(),
                    crate::model::fingerprint(&serde_json::json!({"y": [2], "x": 1}))
                ),
                (
                    "b".to_owned(),
                    crate::model::fingerprint(&serde_json::json!("fred@bedrock.example"))
                ),
            ]
        );
        // Equal values, whatever their key order, refuse the change, naming both items.
        let rows = vec![
            ("a".to_owned(), serde_json::json!({"x": 1, "y": "secret"})),
            ("b".to_owned(), serde_json::json!(7)),
            ("c".to_owned(), serde_json::json!({"y": "secret", "x": 1})),
        ];
        match backfill("main", TABLE, "username", rows) {
            Err(Error::Database { kind, message, .. }) => {
                assert_eq!(kind, DbErrorKind::UniqueViolation);
                assert!(message.contains("items a and c"), "{message}");
                assert!(!message.contains("secret"), "{message}");
            }
            other => panic!("expected a unique violation, got {other:?}"),
        }
    }

    #[test]
    fn missing_columns_and_shadows_are_added() {
        let fields = [
            field("score", Some(ColumnKind::Double), false),
            field("nickname", None, true),
            field("username", Some(ColumnKind::Text), true),
        ];
        let changes = diff(TABLE, Some(&users()), &fields, false, IdentifierLimit::NONE).unwrap();
        assert_eq!(
            changes,
            [
                SchemaChange::AddColumn {
                    column: "score".into(),
                    kind: ColumnKind::Double
                },
                SchemaChange::AddColumn {
                    column: "nickname".into(),
                    kind: ColumnKind::Text
                },
                SchemaChange::AddUnique {
                    field: "nickname".into()
                },
                SchemaChange::AddUnique {
                    field: "username".into()
                },
            ]
        );
        let made = after(TABLE, Some(users()), &changes);
        assert!(!made.needs_ddl(&fields));
        assert_eq!(made.kind_of("score"), Some(ColumnKind::Double));
    }

    #[test]
    fn a_changed_kind_needs_destructive() {
        let fields = [field("email", Some(ColumnKind::Integer), true)];
        match diff(TABLE, Some(&users()), &fields, false, IdentifierLimit::NONE) {
            Err(Error::SchemaMismatch {
                table,
                column,
                stored: ColumnKind::Text,
                found: ColumnKind::Integer,
            }) => assert_eq!((table.as_str(), column.as_str()), (TABLE, "email")),
            other => panic!("expected a schema mismatch, got {other:?}"),
        }
        let changes = diff(TABLE, Some(&users()), &fields, true, IdentifierLimit::NONE).unwrap();
        assert_eq!(
            changes,
            [
                SchemaChange::DropUnique {
                    field: "email".into()
                },
                SchemaChange::RecreateColumn {
                    column: "email".into(),
                    kind: ColumnKind::Integer
                },
                SchemaChange::AddUnique {
                    field: "email".into()
                },
            ]
        );
        let made = after(TABLE, Some(users()), &changes);
        assert_eq!(made.kind_of("email"), Some(ColumnKind::Integer));
        assert!(made.is_unique("email") && !made.needs_ddl(&fields));
        // A whole number still fits a double column, without destructive.
        let score = TableSchema {
            columns: vec![("score".into(), ColumnKind::Double)],
            ..users()
        };
        let whole = [field("score", Some(ColumnKind::Integer), false)];
        assert_eq!(
            diff(TABLE, Some(&score), &whole, false, IdentifierLimit::NONE).unwrap(),
            []
        );
    }

    #[test]
    fn names_differing_only_in_case_and_names_too_long_are_refused() {
        let twin = [field("UserName", Some(ColumnKind::Text), false)];
        match diff(TABLE, Some(&users()), &twin, false, IdentifierLimit::NONE) {
            Err(Error::Encode { what, reason }) => {
                assert!(
                    what.contains("UserName") && reason.contains("`username`"),
                    "{reason}"
                )
            }
            other => panic!("expected an encode error, got {other:?}"),
        }
        let pg = IdentifierLimit {
            max: 63,
            database: "PostgreSQL",
        };
        let long = [field(&"a".repeat(64), Some(ColumnKind::Text), false)];
        assert!(matches!(
            diff(TABLE, None, &long, false, pg),
            Err(Error::InvalidIdentifier { what: "field", .. })
        ));
        // A unique field's shadow name counts too.
        let unique = [field(&"a".repeat(50), Some(ColumnKind::Text), true)];
        assert!(diff(TABLE, None, &unique, false, pg).is_err());
        assert!(diff(TABLE, None, &long[..0], false, pg).is_ok());
    }

    #[test]
    fn integers_outside_a_narrow_column_are_refused_without_the_value() {
        let schema = TableSchema {
            narrow_integers: vec![("age".into(), 32)],
            ..users()
        };
        let with = |v: serde_json::Value| {
            [Field {
                name: "age".into(),
                value: v,
                kind: Some(ColumnKind::Integer),
                unique: false,
            }]
        };
        schema
            .check_integers("rn", &with(2_147_483_647i64.into()))
            .unwrap();
        schema
            .check_integers("rn", &with((-2_147_483_648i64).into()))
            .unwrap();
        for bad in [2_147_483_648i64, -2_147_483_649, i64::MAX] {
            match schema.check_integers("rn", &with(bad.into())) {
                Err(Error::Encode { what, reason }) => {
                    assert!(what.contains("age") && !reason.contains(&bad.to_string()));
                    assert!(reason.contains("with_wide_integers"), "{reason}");
                }
                other => panic!("{bad}: expected an encode error, got {other:?}"),
            }
        }
        schema
            .check_integers("rn", &with(u64::MAX.into()))
            .unwrap_err();
    }

    #[test]
    fn unknown_columns_of_a_result_mean_a_stale_schema() {
        let schema = users();
        assert!(!schema.lacks_any(["rnId", "username", "__korm_unique__email"]));
        assert!(schema.lacks_any(["rnId", "added_elsewhere"]));
    }
}
