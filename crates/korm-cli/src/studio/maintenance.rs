//! The WAL page (pending and done records, those failing their MAC flagged) and the backups
//! page (list, verify), reading what `korm wal status` and `korm backup list|verify` read.

use std::fmt::Write as _;

use hyper::StatusCode;
use std::collections::BTreeMap;

use korm::backup::{Backups, RestoreOptions};
use korm::depots::DepotKey;
use korm::wal::Record;
use serde_json::{Map, Value};

use super::html::{Url, escape, link};
use super::{Params, Reply, Studio};

/// Where the WAL's records are (`--wal-dir`, `--wal-namespace`, `--wal-pool-id`).
#[derive(Debug)]
pub(crate) struct WalPlace {
    dir: String,
    namespace: String,
    pool_id: Option<String>,
}

impl WalPlace {
    pub(crate) fn new(dir: String, namespace: String, pool_id: Option<String>) -> WalPlace {
        WalPlace {
            dir,
            namespace,
            pool_id,
        }
    }
}

/// The most done records listed.
const DONE_SHOWN: usize = 200;

fn record_row(record: &Record) -> String {
    let ops: Vec<String> = record
        .ops
        .iter()
        .map(|op| {
            let kind = format!("{:?}", op.kind).to_lowercase();
            let target = if op.rn.starts_with("[rn]") {
                link("rn", &Url::new("/item").with("rn", &op.rn), &op.rn)
            } else {
                escape(&op.rn)
            };
            format!("{} {target}", escape(&kind))
        })
        .collect();
    let depot_ops: Vec<String> = record
        .depot_ops
        .iter()
        .map(|op| {
            format!(
                "{} {}",
                escape(&format!("{:?}", op.kind).to_lowercase()),
                escape(&op.rn)
            )
        })
        .collect();
    format!(
        r#"<tr class="record {}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
        escape(record.state.as_str()),
        escape(&record.id),
        escape(&record.created_at),
        escape(record.state.as_str()),
        [ops, depot_ops].concat().join("<br>")
    )
}

/// `GET /wal`.
pub(crate) async fn wal(studio: &Studio) -> korm::Result<Reply> {
    let Some(place) = &studio.wal else {
        let body = r#"<h1>WAL</h1><p class="muted">Start the studio with --wal-dir FOLDER (or s3://BUCKET/PREFIX) --wal-namespace NS to see the write-ahead log.</p>"#;
        return Ok(studio.page(StatusCode::NOT_FOUND, "WAL", body));
    };
    let (reader, pool_id, folder) =
        crate::wal::reader(&place.dir, &place.namespace, place.pool_id.as_deref()).await?;
    let mut pending = Vec::new();
    let mut refused = Vec::new();
    for (id, checked) in reader.pending().await? {
        match checked {
            Ok(record) => pending.push(record),
            Err(reason) => refused.push((id, reason)),
        }
    }
    pending.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let done = reader.done().await?;
    let mut body = format!(
        r#"<h1>WAL</h1><p>namespace {} · pool {} · <span class="muted">{}</span></p>"#,
        escape(&place.namespace),
        escape(&pool_id),
        escape(&folder)
    );
    let status = if !refused.is_empty() {
        r#"<p class="error" id="wal-status">refused: a pending record fails its check; no recovery replays it, a person must look at it</p>"#
    } else if !pending.is_empty() {
        r#"<p id="wal-status">pending: the next open of the pool (or korm wal recover) replays these records</p>"#
    } else {
        r#"<p class="ok" id="wal-status">clean: no pending record</p>"#
    };
    body.push_str(status);
    let head = "<thead><tr><th>id</th><th>created</th><th>state</th><th>ops</th></tr></thead>";
    if !refused.is_empty() {
        body.push_str(r#"<h2>Refused</h2><table id="refused"><thead><tr><th>id</th><th>why</th></tr></thead><tbody>"#);
        for (id, reason) in &refused {
            let _ = write!(
                body,
                r#"<tr class="record refused"><td>{}</td><td class="error">{}</td></tr>"#,
                escape(id),
                escape(reason)
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        r#"<h2>Pending ({})</h2><table id="pending">{head}<tbody>"#,
        pending.len()
    );
    for record in &pending {
        body.push_str(&record_row(record));
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        r#"<h2>Done ({})</h2><table id="done">{head}<tbody>"#,
        done.len()
    );
    for (id, checked) in done.iter().rev().take(DONE_SHOWN) {
        match checked {
            Ok(record) => body.push_str(&record_row(record)),
            Err(reason) => {
                let _ = write!(
                    body,
                    r#"<tr class="record refused"><td>{}</td><td></td><td>fails its check</td><td class="error">{}</td></tr>"#,
                    escape(id),
                    escape(reason)
                );
            }
        }
    }
    body.push_str("</tbody></table>");
    Ok(studio.page(StatusCode::OK, "WAL", &body))
}

/// `GET /backups[?verify=KEY]`.
pub(crate) async fn backups(studio: &Studio, params: &Params) -> korm::Result<Reply> {
    let Some(depot) = &studio.backups else {
        let body = r#"<h1>Backups</h1><p class="muted">Start the studio with --backups DEPOT to see the backups.</p>"#;
        return Ok(studio.page(StatusCode::NOT_FOUND, "backups", body));
    };
    let backups = Backups::new(studio.pool(), depot)?;
    let mut body = format!(r#"<h1>Backups in depot {}</h1>"#, escape(depot));
    // A verify or a dry run reads a whole backup: one at a time.
    let _permit = if params.get("verify").is_some() || params.get("dry_run").is_some() {
        match studio.heavy.try_acquire() {
            Ok(permit) => Some(permit),
            Err(_) => {
                body.push_str(
                    r#"<p class="error" id="busy">another verify or dry run is running: try again when it is done</p>"#,
                );
                return Ok(studio.page(StatusCode::SERVICE_UNAVAILABLE, "backups", &body));
            }
        }
    } else {
        None
    };
    if let Some(key) = params.get("verify") {
        let verified = match DepotKey::parse(key) {
            Ok(key) => backups.verify(&key).await,
            Err(e) => Err(e),
        };
        match verified {
            Ok(report) => {
                let how = if report.checksummed {
                    "row counts and SHA-256 checksums match"
                } else {
                    "whole and well-formed (a korm 1.5 backup: no checksums to check)"
                };
                let _ = write!(
                    body,
                    r#"<p class="ok" id="verified">ok {}: layer {} ({}), {} tables, {} rows: {how}</p>"#,
                    escape(report.key.as_str()),
                    escape(&report.layer),
                    escape(&report.layer_type),
                    report.tables,
                    report.rows
                );
            }
            Err(e) => {
                let _ = write!(
                    body,
                    r#"<p class="error" id="verified">{} is damaged or unreadable: {}</p>"#,
                    escape(key),
                    escape(&e.to_string())
                );
            }
        }
    }
    if let Some(key) = params.get("dry_run") {
        let into = params.get("into");
        let planned = dry_run(studio, depot, key, into).await;
        match planned {
            Ok(table) => body.push_str(&table),
            Err(e) => {
                let _ = write!(
                    body,
                    r#"<p class="error" id="dry-run">dry run of {} failed: {}</p>"#,
                    escape(key),
                    escape(&e.to_string())
                );
            }
        }
    }
    let list = backups.list(None).await?;
    body.push_str(r#"<table id="backups"><thead><tr><th>layer</th><th>taken</th><th>size</th><th>key</th><th></th></tr></thead><tbody>"#);
    for entry in &list {
        let verify = Url::new("/backups").with("verify", entry.key.as_str());
        let dry_run_url = Url::new("/backups").with("dry_run", entry.key.as_str());
        let _ = write!(
            body,
            r#"<tr class="backup"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} · {}</td></tr>"#,
            escape(&entry.layer),
            escape(&entry.taken_at),
            entry.size.map(|s| s.to_string()).unwrap_or_default(),
            escape(entry.key.as_str()),
            link("verify", &verify, "verify"),
            link("dry-run", &dry_run_url, "restore dry run")
        );
    }
    body.push_str("</tbody></table>");
    if list.is_empty() {
        body.push_str(r#"<p class="muted">no backups yet (korm backup now)</p>"#);
    }
    Ok(studio.page(StatusCode::OK, "backups", &body))
}

/// What restoring backup `key` into layer `into` (replace mode) would change, without
/// writing: the backup is restored into a scratch in-memory SQLite layer (verified whole
/// first, as a real restore is), then each collection is compared item by item with the
/// live layer.
async fn dry_run(
    studio: &Studio,
    depot: &str,
    key: &str,
    into: Option<&str>,
) -> korm::Result<String> {
    let key = DepotKey::parse(key)?;
    let pool = studio.pool();
    let entry_layer = Backups::new(pool, depot)?
        .list(None)
        .await?
        .into_iter()
        .find(|e| e.key == key)
        .map(|e| e.layer);
    let names: Vec<&str> = pool.layer_names().collect();
    let into = match (into, entry_layer.as_deref(), &names[..]) {
        (Some(into), _, _) => into.to_owned(),
        (None, Some(layer), _) if names.contains(&layer) => layer.to_owned(),
        (None, _, [only]) => (*only).to_owned(),
        _ => {
            return Err(korm::Error::InvalidOption {
                option: "into",
                reason: format!(
                    "name the layer to compare with: &into=LAYER (the pool has: {})",
                    names.join(", ")
                ),
            });
        }
    };
    if !names.contains(&into.as_str()) {
        return Err(korm::Error::InvalidOption {
            option: "into",
            reason: format!(
                "the pool has no layer {into:?} (it has: {})",
                names.join(", ")
            ),
        });
    }
    let scratch = korm::pool()
        .layer(into.clone(), korm::layers::sqlite_memory())
        .depot(depot, pool.depot(depot)?)
        .open()
        .await?;
    let compared = async {
        let report = Backups::new(&scratch, depot)?
            .restore(&key, &into, RestoreOptions::replace())
            .await?;
        let live = studio.inspect().await?;
        let restored = korm::inspect(&scratch).await?;
        let mut collections: Vec<String> = restored
            .iter()
            .chain(live.iter().filter(|c| c.layer == into))
            .filter_map(|c| c.collection.clone())
            .collect();
        collections.sort();
        collections.dedup();
        let mut out = format!(
            r#"<h2 id="dry-run">Restore dry run: {} into {} (replace)</h2><p class="muted">{} rows in {} tables in the backup; nothing was written.</p><table id="dry-run-changes"><thead><tr><th>collection</th><th>in the backup</th><th>now</th><th>would add</th><th>would change</th><th>would remove</th></tr></thead><tbody>"#,
            escape(key.as_str()),
            escape(&into),
            report.rows,
            report.tables.len()
        );
        for name in &collections {
            let rn = format!("[rn][from::{into}]:{name}:*");
            let read = |p: &korm::Pool| {
                let rn = rn.clone();
                let p = p.clone();
                async move {
                    let items = korm::item::<Map<String, Value>>(&p)
                        .query(rn.parse()?)
                        .get()
                        .await?;
                    Ok::<_, korm::Error>(
                        items
                            .into_iter()
                            .map(|i| (i.rn().id().unwrap_or_default().to_owned(), i.into_data()))
                            .collect::<BTreeMap<String, Map<String, Value>>>(),
                    )
                }
            };
            let backup = read(&scratch).await?;
            let now = if live.iter().any(|c| c.layer == into && c.collection.as_deref() == Some(name)) {
                read(pool).await?
            } else {
                BTreeMap::new()
            };
            let add = backup.keys().filter(|id| !now.contains_key(*id)).count();
            let remove = now.keys().filter(|id| !backup.contains_key(*id)).count();
            let change = backup
                .iter()
                .filter(|(id, data)| now.get(*id).is_some_and(|n| n != *data))
                .count();
            let _ = write!(
                out,
                r#"<tr class="dry-run"><td>{}</td><td>{}</td><td>{}</td><td class="add">{add}</td><td class="change">{change}</td><td class="remove">{remove}</td></tr>"#,
                escape(name),
                backup.len(),
                now.len()
            );
        }
        out.push_str("</tbody></table>");
        Ok::<_, korm::Error>(out)
    }
    .await;
    scratch.close().await;
    compared
}
