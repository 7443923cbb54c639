//! `korm backup now | list | verify | restore`: a pool's backups by hand.
//!
//! The pool comes from the same flags as `get` and `query` (`--layer`, `--config`,
//! `--sqlite`, `--depot`); `--backups NAME` picks the depot the backups live in (the depot
//! named `backups`, or the pool's only depot, by default). On a terminal a progress bar
//! shows rows, bytes, rate and time left on stderr; otherwise plain progress lines, at most
//! one a second. The result goes to stdout, as text or (`--json`) as JSON.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use korm::Error;
use korm::backup::{Backups, Progress, RestoreOptions};
use korm::depots::DepotKey;
use serde_json::json;

use crate::data::{Opened, PoolArgs};

/// The backup commands.
#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Take a backup of layers now (all of them unless named).
    Now {
        /// The layers to back up (default: every layer of the pool).
        #[arg(value_name = "LAYER")]
        only_layers: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List the backups in the depot, oldest first.
    List {
        /// Only the backups of this layer.
        #[arg(long = "of", value_name = "LAYER")]
        layer: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Read a backup whole and check it (row counts and SHA-256 checksums, completeness);
    /// exit code 2 when it is damaged.
    Verify {
        /// The backup's key in the depot (as `list` prints it).
        key: String,
        #[command(flatten)]
        common: Common,
    },
    /// Play a backup into a layer (verified first: a damaged file writes nothing).
    Restore {
        /// The backup's key in the depot (as `list` prints it).
        key: String,
        /// The layer to restore into (default: the pool's only layer).
        #[arg(long = "into", value_name = "LAYER")]
        layer: Option<String>,
        /// replace (each restored table ends up as the backup has it) or merge (rows of the
        /// backup replace those with the same id; others stay).
        #[arg(long, default_value = "replace", value_parser = ["replace", "merge"])]
        mode: String,
        /// Only this part: a namespace (`users`), a collection (`users:freetier`) or an
        /// item (`users:freetier:<uuid>` or its RN).
        #[arg(long, value_name = "RN_PREFIX")]
        only: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

/// What every backup command takes.
#[derive(Debug, Args)]
pub(crate) struct Common {
    #[command(flatten)]
    pool: PoolArgs,
    /// The depot the backups live in (default: `backups`, or the pool's only depot).
    #[arg(long = "backups", value_name = "DEPOT")]
    depot: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Progress on stderr: a bar on a terminal, plain lines (at most one a second) otherwise.
struct Meter {
    bar: Option<indicatif::ProgressBar>,
    plain: Option<Mutex<Instant>>,
    what: String,
}

impl Meter {
    fn new(what: String, quiet: bool) -> Arc<Meter> {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(what.clone());
            bar
        });
        let plain = (!quiet && !terminal).then(|| Mutex::new(Instant::now()));
        Arc::new(Meter { bar, plain, what })
    }

    fn update(&self, p: Progress) {
        if let Some(bar) = &self.bar {
            if let Some(total) = p.total_bytes {
                bar.set_length(total);
            }
            bar.set_position(p.bytes);
            bar.set_message(format!("{} {} rows", self.what, p.rows));
        }
        if let Some(last) = &self.plain {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(1) {
                *last = Instant::now();
                let total = p
                    .total_bytes
                    .map(|t| format!(" of {t}"))
                    .unwrap_or_default();
                eprintln!("{}: {} rows, {} bytes{total}", self.what, p.rows, p.bytes);
            }
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn backups<'p>(
    opened: &'p Opened,
    common: &Common,
    meter: &Arc<Meter>,
) -> korm::Result<Backups<'p>> {
    let pool = opened.pool();
    let depot = match &common.depot {
        Some(depot) => depot.clone(),
        None => {
            let names: Vec<&str> = pool.depot_names().collect();
            match names[..] {
                [only] => only.to_owned(),
                _ if names.contains(&"backups") => "backups".to_owned(),
                _ => {
                    return Err(Error::InvalidOption {
                        option: "--backups",
                        reason: format!(
                            "name the depot the backups live in (the pool has: {})",
                            if names.is_empty() {
                                "none; add --depot NAME=PATH".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ),
                    });
                }
            }
        }
    };
    let meter = Arc::clone(meter);
    Ok(Backups::new(pool, &depot)?.with_progress(move |p| meter.update(p)))
}

/// Runs a backup command; exit code 2 for a damaged backup (`verify`, `restore`).
pub(crate) async fn run(command: BackupCommand) -> korm::Result<std::process::ExitCode> {
    let (common, what) = match &command {
        BackupCommand::Now { common, .. } => (common, "backup"),
        BackupCommand::List { common, .. } => (common, "list"),
        BackupCommand::Verify { common, .. } => (common, "verify"),
        BackupCommand::Restore { common, .. } => (common, "restore"),
    };
    let opened = common.pool.open().await?;
    let meter = Meter::new(what.to_owned(), common.quiet);
    let result = run_on(&opened, &command, common, &meter).await;
    meter.done();
    opened.close().await;
    match result {
        Err(e @ Error::BackupInvalid { .. }) => {
            eprintln!("korm: {e}");
            Ok(std::process::ExitCode::from(2))
        }
        other => other.map(|()| std::process::ExitCode::SUCCESS),
    }
}

fn key(text: &str) -> korm::Result<DepotKey> {
    DepotKey::parse(text)
}

async fn run_on(
    opened: &Opened,
    command: &BackupCommand,
    common: &Common,
    meter: &Arc<Meter>,
) -> korm::Result<()> {
    let backups = backups(opened, common, meter)?;
    let json = common.json;
    match command {
        BackupCommand::Now { only_layers, .. } => {
            let layers: Vec<String> = if only_layers.is_empty() {
                opened.pool().layer_names().map(str::to_owned).collect()
            } else {
                only_layers.clone()
            };
            let mut taken = Vec::new();
            for layer in &layers {
                let start = Instant::now();
                let info = backups.now(layer).await?;
                let secs = start.elapsed().as_secs_f64().max(1e-6);
                if !json {
                    out!(
                        "{}  {} tables, {} rows, {} bytes, {:.0} rows/s",
                        info.key,
                        info.tables,
                        info.rows,
                        info.bytes,
                        info.rows as f64 / secs
                    );
                }
                taken.push(json!({
                    "layer": info.layer, "key": info.key.as_str(), "tables": info.tables,
                    "rows": info.rows, "bytes": info.bytes, "sha256": info.sha256,
                    "seconds": secs,
                }));
            }
            if json {
                out!("{}", json!({ "backups": taken }));
            }
        }
        BackupCommand::List { layer, .. } => {
            let list = backups.list(layer.as_deref()).await?;
            if json {
                let entries: Vec<_> = list
                    .iter()
                    .map(|e| {
                        json!({"layer": e.layer, "takenAt": e.taken_at, "key": e.key.as_str(), "size": e.size})
                    })
                    .collect();
                out!("{}", json!({ "backups": entries }));
            } else {
                for e in &list {
                    let size = e.size.map(|s| s.to_string()).unwrap_or_default();
                    out!("{}\t{}\t{}\t{}", e.layer, e.taken_at, size, e.key);
                }
            }
        }
        BackupCommand::Verify { key: k, .. } => {
            let report = backups.verify(&key(k)?).await?;
            if json {
                out!(
                    "{}",
                    json!({"key": report.key.as_str(), "ok": true, "layer": report.layer,
                        "layerType": report.layer_type, "createdAt": report.created_at,
                        "tables": report.tables, "rows": report.rows, "bytes": report.bytes,
                        "checksummed": report.checksummed})
                );
            } else {
                let how = if report.checksummed {
                    "row counts and SHA-256 checksums match"
                } else {
                    "whole and well-formed (a korm 1.5 backup: no checksums to check)"
                };
                out!(
                    "ok  {}: layer {} ({}), {} tables, {} rows: {how}",
                    report.key,
                    crate::terminal_safe(&report.layer),
                    crate::terminal_safe(&report.layer_type),
                    report.tables,
                    report.rows
                );
            }
        }
        BackupCommand::Restore {
            key: k,
            layer,
            mode,
            only,
            ..
        } => {
            let names: Vec<&str> = opened.pool().layer_names().collect();
            let layer = match (layer, &names[..]) {
                (Some(layer), _) => layer.clone(),
                (None, [only]) => (*only).to_owned(),
                (None, _) => {
                    return Err(Error::InvalidOption {
                        option: "--into",
                        reason: format!(
                            "name the layer to restore into (the pool has: {})",
                            names.join(", ")
                        ),
                    });
                }
            };
            let mut options = if mode == "merge" {
                RestoreOptions::merge()
            } else {
                RestoreOptions::replace()
            };
            if let Some(only) = only {
                options = options.with_only(only)?;
            }
            let start = Instant::now();
            let report = backups.restore(&key(k)?, &layer, options).await?;
            let secs = start.elapsed().as_secs_f64().max(1e-6);
            if json {
                out!(
                    "{}",
                    json!({"key": k, "layer": layer, "mode": mode, "tables": report.tables,
                        "rows": report.rows, "skipped": report.skipped, "seconds": secs})
                );
            } else {
                out!(
                    "restored {} rows of {} tables into {layer} ({mode}), {:.0} rows/s",
                    report.rows,
                    report.tables.len(),
                    report.rows as f64 / secs
                );
            }
        }
    }
    Ok(())
}
