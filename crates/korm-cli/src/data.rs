//! `korm get`, `korm query`, `korm count`: items of any layer, read by RN or by filter.
//!
//! The pool comes from `--layer NAME=URL` (repeatable), `--depot NAME=PATH`, a `--config`
//! file, or `--sqlite FILE` for one SQLite file (then RNs may name any layer: the file is the
//! only one). Items are printed as `korm show` prints them, or as JSON with `--json`;
//! encrypted values are never decrypted (`<encrypted>`, `<password hash>`).

use std::path::PathBuf;

use clap::Args;
use korm::{Error, Rn};
use serde_json::{Map, Value, json};

use crate::pool_args;

/// Which pool a command opens.
#[derive(Debug, Args)]
pub(crate) struct PoolArgs {
    /// A layer: NAME=URL (`sqlite:cars.db`, `postgres://…`, `mysql://…`), or NAME=env:VAR to
    /// take the URL from a variable (a URL on the command line is visible in `ps`).
    /// Repeatable.
    #[arg(long = "layer", value_name = "NAME=URL")]
    layers: Vec<String>,
    /// A depot: NAME=FOLDER or NAME=s3://BUCKET/PREFIX (credentials from AWS_*). Repeatable.
    #[arg(long = "depot", value_name = "NAME=PATH")]
    depots: Vec<String>,
    /// A JSON file naming layers and depots as the flags do:
    /// {"layers": {"cardb": "sqlite:cars.db"}, "depots": {"files": "./files"}}.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// One SQLite file as the pool's only layer (RNs may then name any layer).
    #[arg(long, value_name = "FILE")]
    sqlite: Option<PathBuf>,
}

/// An opened pool, and whether RNs lose their layer (`--sqlite`).
pub(crate) struct Opened {
    pool: korm::Pool,
    single_file: bool,
}

impl PoolArgs {
    /// Opens the pool the arguments name.
    ///
    /// # Errors
    /// [`Error::PoolConfig`] when nothing names a layer or the config file is unreadable,
    /// and what opening the pool gives.
    pub(crate) async fn open(&self) -> korm::Result<Opened> {
        let mut builder = korm::pool();
        let mut named = 0;
        if let Some(file) = &self.sqlite {
            if !file.exists() {
                return Err(Error::PoolConfig {
                    reason: format!("no SQLite file at {}", file.display()),
                });
            }
            builder = builder.layer("cli", korm::layers::sqlite(file));
            named += 1;
        }
        let mut layers = self.layers.clone();
        let mut depots = self.depots.clone();
        if let Some(path) = &self.config {
            let (l, d) = config(path)?;
            layers.extend(l);
            depots.extend(d);
        }
        for arg in &layers {
            let (name, spec) = pool_args::layer(arg)?;
            builder = builder.layer(name, spec);
            named += 1;
        }
        for arg in &depots {
            let (name, spec) = pool_args::depot(arg)?;
            builder = builder.depot(name, spec);
        }
        if named == 0 {
            return Err(Error::PoolConfig {
                reason: "name the pool's layers: --layer NAME=URL (repeatable), --config FILE \
                         or --sqlite FILE"
                    .to_owned(),
            });
        }
        Ok(Opened {
            pool: builder.open().await?,
            single_file: self.sqlite.is_some() && named == 1,
        })
    }
}

/// The `NAME=VALUE` arguments of a config file.
fn config(path: &PathBuf) -> korm::Result<(Vec<String>, Vec<String>)> {
    let fail = |reason: String| Error::PoolConfig {
        reason: format!("config file {}: {reason}", path.display()),
    };
    // A config is a few lines: a larger file (a device, a FIFO) is refused, not read whole.
    const MAX_CONFIG: u64 = 1 << 20;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(
            std::fs::File::open(path).map_err(|e| fail(e.to_string()))?,
            MAX_CONFIG + 1,
        ),
        &mut text,
    )
    .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(fail(format!("is larger than {} KiB", MAX_CONFIG >> 10)));
    }
    let value: Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("is not JSON ({e})")))?;
    let entries = |key: &str| -> korm::Result<Vec<String>> {
        match value.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, v)| match v {
                    Value::String(v) => Ok(format!("{name}={v}")),
                    _ => Err(fail(format!("{key}.{name} is not a string"))),
                })
                .collect(),
            Some(_) => Err(fail(format!("`{key}` is not an object of NAME: VALUE"))),
        }
    };
    Ok((entries("layers")?, entries("depots")?))
}

impl Opened {
    /// The RN `text` names, without its layer when the pool is one SQLite file (`--sqlite`).
    pub(crate) fn rn(&self, text: &str) -> korm::Result<Rn<Map<String, Value>>> {
        let rn: Rn<Map<String, Value>> = text.parse()?;
        Ok(if self.single_file {
            rn.without_layer()
        } else {
            rn
        })
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &korm::Pool {
        &self.pool
    }

    /// Whether the pool is one SQLite file named by `--sqlite` (RNs lose their layer).
    pub(crate) fn single_file(&self) -> bool {
        self.single_file
    }

    pub(crate) async fn close(self) {
        self.pool.close().await;
    }
}

/// How items are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) color: bool,
}

/// `korm get RN`.
pub(crate) async fn get(pool: &Opened, rn: &str, out: Output) -> korm::Result<()> {
    let item = korm::item::<Map<String, Value>>(&pool.pool)
        .load(pool.rn(rn)?)
        .get()
        .await?;
    if out.json {
        out!("{}", pretty(&item_json(&item)));
    } else {
        out_raw!(
            "{}",
            item.show(korm::ShowOptions::new().with_color(out.color))
        );
    }
    Ok(())
}

/// What `korm query` reads.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// The collection RN, e.g. `[rn][from::cardb]:cars:suv:*`.
    pub(crate) collection: String,
    /// A filter, e.g. `age > 30 and meta.tier = "gold"`: paths, = != > >= < <=,
    /// `like "pat%"`, `in [1, 2]`, and, or, not, parentheses; text values in double quotes.
    #[arg(long, value_name = "FILTER")]
    pub(crate) filter: Option<String>,
}

impl Selection {
    fn query(&self, pool: &Opened) -> korm::Result<korm::Query<Map<String, Value>>> {
        let mut query =
            korm::item::<Map<String, Value>>(&pool.pool).query(pool.rn(&self.collection)?);
        if let Some(text) = &self.filter {
            query = query.filter(korm::query::parse_filter(text)?);
        }
        Ok(query)
    }
}

/// `korm query COLLECTION`.
pub(crate) async fn query(
    pool: &Opened,
    selection: &Selection,
    sort: Option<&str>,
    limit: Option<u64>,
    out: Output,
) -> korm::Result<()> {
    let mut query = selection.query(pool)?;
    if let Some(sort) = sort {
        for (path, order) in korm::query::parse_sort(sort)? {
            query = query.sort_by(&path, order);
        }
    }
    let items = match limit {
        Some(n) => query.first_n(n).await?,
        None => query.get().await?,
    };
    if out.json {
        let all: Vec<Value> = items.iter().map(item_json).collect();
        out!("{}", pretty(&Value::Array(all)));
    } else {
        for item in &items {
            out_raw!(
                "{}",
                item.show(korm::ShowOptions::new().with_color(out.color))
            );
        }
        eprintln!("{} item(s)", items.len());
    }
    Ok(())
}

/// `korm inspect`.
pub(crate) async fn inspect(pool: &Opened, out: Output) -> korm::Result<()> {
    let found = korm::inspect(&pool.pool).await?;
    if out.json {
        let all: Vec<Value> = found
            .iter()
            .map(|c| {
                let columns: Vec<Value> = c
                    .columns
                    .iter()
                    .map(|col| json!({ "name": col.name, "kind": col.kind.name(), "unique": col.unique }))
                    .collect();
                json!({
                    "layer": c.layer,
                    "table": c.table,
                    "collection": c.collection,
                    "rows": c.rows,
                    "columns": columns,
                })
            })
            .collect();
        out!("{}", pretty(&Value::Array(all)));
        return Ok(());
    }
    for c in &found {
        let columns: Vec<String> = c
            .columns
            .iter()
            .map(|col| {
                let unique = if col.unique { " unique" } else { "" };
                let name = crate::terminal_safe(&col.name);
                format!("{name} {}{unique}", col.kind.name())
            })
            .collect();
        out!(
            "{}\t{}\t{} row(s)\t{}",
            c.layer,
            c.collection.as_deref().unwrap_or(&c.table),
            c.rows,
            columns.join(", ")
        );
    }
    eprintln!("{} collection(s)", found.len());
    Ok(())
}

/// `korm count COLLECTION`.
pub(crate) async fn count(pool: &Opened, selection: &Selection, out: Output) -> korm::Result<()> {
    let n = selection.query(pool)?.count().await?;
    if out.json {
        out!("{}", json!({ "count": n }));
    } else {
        out!("{n}");
    }
    Ok(())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// An item as JSON: its RN and its data, each encryption envelope named instead of shown.
fn item_json(item: &korm::Item<Map<String, Value>>) -> Value {
    let data = item
        .data()
        .iter()
        .map(|(k, v)| (k.clone(), redacted(v)))
        .collect::<Map<String, Value>>();
    json!({ "rn": item.rn().to_string(), "data": data })
}

/// A value with each encryption envelope replaced by `"<encrypted>"` (or `"<password
/// hash>"`).
pub(crate) fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map)
            if map.get(korm::crypto::ENVELOPE_MARKER) == Some(&Value::Bool(true)) =>
        {
            Value::String(
                match map.get("type").and_then(Value::as_str) {
                    Some("password") => "<password hash>",
                    _ => "<encrypted>",
                }
                .to_owned(),
            )
        }
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), redacted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_named_never_shown() {
        let value = json!({
            "ssn": {"__ENCRYPTED__": true, "type": "symmetric", "value": "ab12", "iv": "00", "authTag": "11"},
            "pw": {"__ENCRYPTED__": true, "type": "password", "value": "$argon2id$..."},
            "nested": [{"x": {"__ENCRYPTED__": true, "type": "symmetric", "value": "cd34"}}],
            "plain": {"__ENCRYPTED__": "no"},
        });
        let shown = redacted(&value).to_string();
        assert!(
            !shown.contains("ab12") && !shown.contains("cd34") && !shown.contains("argon2"),
            "{shown}"
        );
        assert_eq!(redacted(&value)["ssn"], "<encrypted>");
        assert_eq!(redacted(&value)["pw"], "<password hash>");
        assert_eq!(redacted(&value)["nested"][0]["x"], "<encrypted>");
        assert_eq!(redacted(&value)["plain"], json!({"__ENCRYPTED__": "no"}));
    }
}
