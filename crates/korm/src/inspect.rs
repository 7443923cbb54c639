//! What a pool holds: each layer's collections, with their row counts and columns (what
//! `korm inspect` prints, and what a studio page shows).

use crate::error::{Error, Result};
use crate::layer::meta::{ITEMS_PREFIX, is_item_table};
use crate::model::ColumnKind;
use crate::pool::Pool;

/// One collection (an item table) of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionInfo {
    /// The layer's name in the pool.
    pub layer: String,
    /// The table (`__items__{namespace}__{kind}`).
    pub table: String,
    /// `namespace:kind`, when the table name says it without ambiguity (a namespace or kind
    /// holding `__`, or a name the backend shortened, does not).
    pub collection: Option<String>,
    /// How many items it holds.
    pub rows: u64,
    /// Its field columns, in the table's order.
    pub columns: Vec<ColumnInfo>,
}

/// A field column of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColumnInfo {
    /// The field's name.
    pub name: String,
    /// What the column stores.
    pub kind: ColumnKind,
    /// Whether the field is unique (it has korm's unique shadow column and index).
    pub unique: bool,
}

/// Every collection of every layer of `pool`, layers in the pool's order, tables by name.
/// Each layer is asked for its tables (one statement), then each table for its columns and
/// its row count.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Car { make: String, year: i64 }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// let pool = korm::pool().layer("cardb", korm::layers::sqlite_memory()).open().await?;
/// korm::item::<Car>(&pool)
///     .from_data("[rn]:cars:suv:*".parse()?, Car { make: "Bedrock".into(), year: 1960 })?
///     .create()
///     .await?;
/// let found = korm::inspect(&pool).await?;
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].collection.as_deref(), Some("cars:suv"));
/// assert_eq!(found[0].rows, 1);
/// let columns: Vec<_> = found[0].columns.iter().map(|c| (c.name.as_str(), c.kind)).collect();
/// assert_eq!(columns, [("make", korm::ColumnKind::Text), ("year", korm::ColumnKind::Integer)]);
/// # pool.close().await;
/// # Ok(()) }
/// ```
///
/// # Errors
/// The layers' own errors (an unreachable server, a closed pool).
pub async fn inspect(pool: &Pool) -> Result<Vec<CollectionInfo>> {
    let mut out = Vec::new();
    for (ident, layer) in pool.layers() {
        let mut tables: Vec<String> = layer
            .layer()
            .backups()
            .backup_tables()
            .await?
            .into_iter()
            .filter(|t| is_item_table(t))
            .collect();
        tables.sort();
        for table in tables {
            let schema = match layer.table_schema(&table).await {
                Ok(Some(schema)) => schema,
                // A table dropped since it was listed, or one no korm RN names (another
                // program's `__items__Legacy`): left out, not an error for the whole pool.
                Ok(None) | Err(Error::InvalidIdentifier { .. }) => continue,
                Err(e) => return Err(e),
            };
            let rows = layer.count(&table, None).await?;
            let collection = table.strip_prefix(ITEMS_PREFIX).and_then(|rest| {
                let (namespace, kind) = rest.split_once("__")?;
                (!namespace.is_empty() && !kind.is_empty() && !kind.contains("__"))
                    .then(|| format!("{namespace}:{kind}"))
            });
            let columns = schema
                .columns
                .iter()
                .map(|(name, kind)| ColumnInfo {
                    name: name.clone(),
                    kind: *kind,
                    unique: schema.unique.contains(name),
                })
                .collect();
            out.push(CollectionInfo {
                layer: ident.clone(),
                table,
                collection,
                rows,
                columns,
            });
        }
    }
    Ok(out)
}
