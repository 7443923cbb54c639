//! What korm knows of a table's shape.

use crate::model::ColumnKind;

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
}

impl TableSchema {
    /// The kind of a field column, if the table has it.
    pub(crate) fn kind_of(&self, column: &str) -> Option<ColumnKind> {
        self.columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, kind)| *kind)
    }

    /// Whether writing these fields needs a schema change first: a missing column, a missing
    /// unique shadow, or a value kind the column does not accept.
    pub(crate) fn needs_ddl(&self, fields: &[crate::model::Field]) -> bool {
        fields.iter().any(|f| {
            (f.unique && !self.is_unique(&f.name))
                || match (self.kind_of(&f.name), f.kind) {
                    (None, _) => true,
                    (Some(stored), Some(found)) => !stored.accepts(found),
                    _ => false,
                }
        })
    }

    /// Whether the field has a unique shadow column.
    pub(crate) fn is_unique(&self, column: &str) -> bool {
        self.unique.iter().any(|u| u == column)
    }
}
