//! `korm wal`: a pool's write-ahead log, read (`status`, `show`) or recovered (`recover`).
//!
//! `status` and `show` read the records in the WAL depot's folder with
//! [`korm::wal::WalReader`], without opening the pool: nothing is recovered, locked or
//! written. `recover` opens the pool from the layers and depots named on the command line,
//! which recovers every pending record, and prints the report. Reading a record checks its
//! MAC, so each needs `KORM_ENCRYPTION_KEY` (and `KORM_ENCRYPTION_KEYS_OLD` for records
//! signed with an older key).
//!
//! Exit codes: 0 when every pending record can be recovered (`clean` or `pending`), 2 when a
//! pending record is refused (it fails its MAC check, ...: no recovery will replay it, a
//! person must look at it), 1 on an error. `--json` prints `"status": "clean" | "pending" |
//! "refused"`.

mod render;

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use korm::Error;
use korm::wal::{Record, RecoveryReport, WalReader};
use serde_json::Value;

use crate::pool_args;

/// The exit code when a pending record is refused.
const REFUSED: u8 = 2;

/// The `korm wal` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum WalCommand {
    /// List the pending records, the refused ones (with why), and count the done ones.
    ///
    /// Reads the record files only: nothing is recovered, locked or written. Exits 0 when
    /// the WAL is clean or has pending records (the next open of the pool, or `korm wal
    /// recover`, replays them), 2 when a pending record is refused (it fails its MAC check,
    /// ...: no recovery replays it, a person must look at it), 1 on an error.
    Status {
        #[command(flatten)]
        at: WalAt,
        /// Print JSON: {"status": "clean"|"pending"|"refused", "pending": [...],
        /// "refused": [...], "done": N, ...}.
        #[arg(long)]
        json: bool,
    },
    /// Print one record, pending or done, in full.
    ///
    /// Each op with its RN, its data and its before-image, as stored: encrypted values are
    /// never decrypted (`<encrypted>` for people, the envelope in JSON). A refused record is
    /// an error: look at its file instead.
    Show {
        /// The record id (its file name without `.json`).
        id: String,
        #[command(flatten)]
        at: WalAt,
        /// Print the record as JSON, as stored (without its MAC).
        #[arg(long)]
        json: bool,
    },
    /// Open the pool, which recovers its pending records, and print what recovery did.
    ///
    /// Name the layers and depots as the application does (the pool id is derived from
    /// their names), and give the WAL options it uses. Stop the application first, or pass
    /// --locks when it takes shared locks. Exits 0 when every pending record was recovered,
    /// 2 when one is refused (see `korm wal status`), 1 on an error (the record that could
    /// not be recovered stays pending).
    Recover(RecoverArgs),
}

/// Where a WAL's records are, for reading them without the pool.
#[derive(Debug, Args)]
pub(crate) struct WalAt {
    /// The WAL depot the pool's `with_wal` names: its local folder, or s3://BUCKET/PREFIX
    /// (credentials, region and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION, AWS_ENDPOINT_URL, as for --depot).
    #[arg(long, value_name = "FOLDER|s3://BUCKET/PREFIX")]
    wal_dir: String,
    /// The WAL namespace (`WalOptions::new(namespace)`).
    #[arg(long)]
    namespace: String,
    /// The pool id the records are filed under; may be left out when the namespace holds
    /// the records of one pool only.
    #[arg(long)]
    pool_id: Option<String>,
    /// The name of the WAL depot in the pool (payload RNs name it).
    #[arg(long, value_name = "DEPOT", default_value = "wal")]
    wal: String,
}

/// `korm wal recover`'s pool.
#[derive(Debug, Args)]
pub(crate) struct RecoverArgs {
    /// A layer of the pool: NAME=URL (`sqlite:cars.sqlite`, `postgres://…`, `mysql://…`), or
    /// NAME=env:VAR to read the URL from an environment variable (a password on the command
    /// line is visible in `ps`). Repeat for each layer.
    #[arg(long = "layer", value_name = "NAME=URL", required = true)]
    layers: Vec<String>,
    /// A depot of the pool: NAME=PATH (a local folder, which must exist) or
    /// NAME=s3://BUCKET/PREFIX (credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION, AWS_ENDPOINT_URL). Repeat for each depot.
    #[arg(long = "depot", value_name = "NAME=PATH")]
    depots: Vec<String>,
    /// The depot that holds the WAL.
    #[arg(long, value_name = "DEPOT", default_value = "wal")]
    wal: String,
    /// The WAL namespace.
    #[arg(long)]
    namespace: String,
    /// The pool id the records are filed under; by default the one korm derives from the
    /// names of the layers and depots (so name them as the application does).
    #[arg(long)]
    pool_id: Option<String>,
    /// The application's WAL retention: `keep` moves each recovered record to done/ (and
    /// keeps the payloads of done records), `delete` removes it (and them).
    #[arg(long, value_enum, default_value_t = Retention::Delete)]
    retention: Retention,
    /// The layer holding the application's shared locks (its `with_locks`): recovery then
    /// waits for writes still running elsewhere.
    #[arg(long, value_name = "LAYER")]
    locks: Option<String>,
    /// Recover records without a MAC (written by korm 1.5), to migrate a pool from it.
    #[arg(long)]
    accept_unsigned: bool,
    /// Print JSON: {"status": "clean"|"refused", "recovered": [...], "refused": [...], ...}.
    #[arg(long)]
    json: bool,
}

/// [`korm::WalRetention`], on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Retention {
    /// Finished records move to done/.
    Keep,
    /// Finished records are removed.
    Delete,
}

/// Whether a WAL needs anything: its pending records recovered, or a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No pending record.
    Clean,
    /// Pending records, every one of which recovery can replay.
    Pending,
    /// A pending record recovery refuses.
    Refused,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Pending => "pending",
            Verdict::Refused => "refused",
        }
    }

    fn of_report(report: &RecoveryReport) -> Verdict {
        if report.refused.is_empty() {
            Verdict::Clean
        } else {
            Verdict::Refused
        }
    }

    fn exit_code(self) -> ExitCode {
        match self {
            Verdict::Clean | Verdict::Pending => ExitCode::SUCCESS,
            Verdict::Refused => ExitCode::from(REFUSED),
        }
    }
}

/// What `korm wal status` found.
#[derive(Debug)]
struct Status {
    dir: String,
    namespace: String,
    pool_id: String,
    folder: String,
    pending: Vec<Record>,
    refused: Vec<Refused>,
    done: usize,
}

#[derive(Debug)]
struct Refused {
    id: String,
    reason: String,
    /// The record's file (a path, or an s3:// URL), for the person who looks at it.
    path: String,
}

impl Status {
    fn verdict(&self) -> Verdict {
        if !self.refused.is_empty() {
            Verdict::Refused
        } else if !self.pending.is_empty() {
            Verdict::Pending
        } else {
            Verdict::Clean
        }
    }
}

/// Runs a `korm wal` command.
///
/// # Errors
/// The korm error that stopped it (no encryption key, no such WAL folder or record, a layer
/// that can not be opened, a record recovery could not finish, ...).
pub(crate) async fn run(command: WalCommand) -> korm::Result<ExitCode> {
    match command {
        WalCommand::Status { at, json } => {
            let (reader, found) = open(&at).await?;
            let mut status = Status {
                dir: at.wal_dir.clone(),
                namespace: at.namespace.clone(),
                pool_id: found.pool_id,
                folder: reader.folder().to_owned(),
                pending: Vec::new(),
                refused: Vec::new(),
                done: reader.done().await?.len(),
            };
            for (id, checked) in reader.pending().await? {
                match checked {
                    Ok(record) => status.pending.push(record),
                    Err(reason) => status.refused.push(Refused {
                        path: format!("{}/pending/{id}.json", found.folder),
                        reason: hint(reason, &at.wal),
                        id,
                    }),
                }
            }
            status
                .pending
                .sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
            if json {
                print_json(&render::status_json(&status));
            } else {
                out_raw!("{}", render::status_text(&status));
            }
            Ok(status.verdict().exit_code())
        }
        WalCommand::Show { id, at, json } => {
            let (reader, _) = open(&at).await?;
            let record = reader.record(&id).await?;
            if json {
                print_json(&render::record_json(&record));
            } else {
                out_raw!("{}", render::record_text(&record));
            }
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Recover(args) => recover(args).await,
    }
}

async fn recover(args: RecoverArgs) -> korm::Result<ExitCode> {
    let mut builder = korm::pool();
    for arg in &args.layers {
        let (name, spec) = pool_args::layer(arg)?;
        builder = builder.layer(name, spec);
    }
    for arg in &args.depots {
        let (name, spec) = pool_args::depot(arg)?;
        builder = builder.depot(name, spec);
    }
    if let Some(layer) = &args.locks {
        builder = builder.with_locks(layer, korm::LockOptions::new());
    }
    let retention = match args.retention {
        Retention::Keep => korm::WalRetention::Keep,
        Retention::Delete => korm::WalRetention::Delete,
    };
    let mut options = korm::WalOptions::new(&args.namespace)
        .with_retention(retention)
        .with_accept_unsigned(args.accept_unsigned);
    if let Some(pool_id) = &args.pool_id {
        options = options.with_pool_id(pool_id);
    }
    // Opening the pool is the recovery: it runs before open returns.
    let pool = builder.with_wal(&args.wal, options).open().await?;
    let printed = match pool.wal() {
        Some(wal) => {
            let report = wal.opened_with().unwrap_or_default();
            let pool_id = wal.pool_id();
            if args.json {
                print_json(&render::report_json(pool_id, &args.namespace, &report));
            } else {
                out_raw!("{}", render::report_text(pool_id, &args.namespace, &report));
            }
            Ok(Verdict::of_report(&report).exit_code())
        }
        None => Err(Error::PoolConfig {
            reason: "the pool opened without its write-ahead log".to_owned(),
        }),
    };
    pool.close().await;
    printed
}

fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(e) => eprintln!("korm: {e}"),
    }
}

/// The WAL a `WalAt` names, found in its depot.
struct Found {
    pool_id: String,
    /// `<wal-dir>/__korm_wal__/<namespace>/<pool id>` (a path, or an s3:// URL).
    folder: String,
}

/// The WAL depot `--wal-dir` names: a local folder that must exist (a mistyped name must not
/// become a new empty depot), or an S3 bucket and prefix.
fn wal_depot(dir: &str) -> korm::Result<korm::depots::DepotSpec> {
    if dir.starts_with("s3://") {
        return pool_args::depot(&format!("wal={dir}")).map(|(_, spec)| spec);
    }
    // Any other URL is refused without repeating it (it may carry credentials).
    if dir.contains("://") {
        return Err(Error::InvalidOption {
            option: "--wal-dir",
            reason: "is a URL but not an s3://BUCKET/PREFIX one (write the scheme in lower \
                     case; credentials come from AWS_* settings, never the URL), nor a folder"
                .to_owned(),
        });
    }
    if !Path::new(dir).is_dir() {
        return Err(Error::InvalidOption {
            option: "--wal-dir",
            reason: format!("{dir} is not a folder"),
        });
    }
    Ok(korm::depots::local(dir).with_create(false).into())
}

/// Opens the reader, once the folder is known to be there: the reader makes the record
/// folders it misses, and a mistyped name must not leave empty ones behind.
async fn open(at: &WalAt) -> korm::Result<(WalReader, Found)> {
    // Also checks that a local folder exists and that an S3 URL holds no credentials.
    let depot = wal_depot(&at.wal_dir)?;
    let found = find(at, &depot).await?;
    let options = korm::WalOptions::new(&at.namespace).with_pool_id(&found.pool_id);
    let reader = WalReader::open(&at.wal, depot, options).await?;
    Ok((reader, found))
}

/// A name korm accepts as a folder of the WAL (`[A-Za-z0-9_-]{1,64}`), checked before it
/// is joined to a path.
fn check_name(option: &'static str, name: &str) -> korm::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option,
            reason: format!(
                "{:?} is not a WAL folder name (1 to 64 characters of [A-Za-z0-9_-])",
                name.chars().take(64).collect::<String>()
            ),
        })
    }
}

/// The reader of the WAL in `dir` (a local folder or s3://BUCKET/PREFIX) under `namespace`
/// (and `pool_id`, when the namespace holds several pools), for the studio's WAL page; also
/// the pool id and the records' folder.
///
/// # Errors
/// As `korm wal status`: a name that is not a WAL folder name, no such folder or records,
/// no encryption key.
pub(crate) async fn reader(
    dir: &str,
    namespace: &str,
    pool_id: Option<&str>,
) -> korm::Result<(WalReader, String, String)> {
    let at = WalAt {
        wal_dir: dir.to_owned(),
        namespace: namespace.to_owned(),
        pool_id: pool_id.map(str::to_owned),
        wal: "wal".to_owned(),
    };
    let (reader, found) = open(&at).await?;
    Ok((reader, found.pool_id, found.folder))
}

/// The pool whose records to read: the one given, else the only one in the namespace. A
/// local folder's pools are its sub-folders (a pool with no record left has one); in S3 a
/// pool is there while it has a record, so a pool id given for S3 is taken as it is.
async fn find(at: &WalAt, depot: &korm::depots::DepotSpec) -> korm::Result<Found> {
    let (dir, namespace, pool_id) = (at.wal_dir.as_str(), &at.namespace, at.pool_id.as_deref());
    check_name("--namespace", namespace)?;
    if let Some(pool_id) = pool_id {
        check_name("--pool-id", pool_id)?;
    }
    let base = dir.trim_end_matches('/');
    let namespace_dir = format!("{base}/__korm_wal__/{namespace}");
    let found = |pool_id: &str| Found {
        folder: format!("{namespace_dir}/{pool_id}"),
        pool_id: pool_id.to_owned(),
    };
    let pools = if !dir.starts_with("s3://") {
        folders_in(Path::new(&namespace_dir))
    } else if let Some(given) = pool_id {
        return Ok(found(given));
    } else {
        WalReader::pool_ids(&at.wal, depot.clone(), namespace).await?
    };
    if pools.is_empty() {
        return Err(Error::InvalidOption {
            option: "--namespace",
            reason: format!(
                "{dir} holds no WAL records of namespace {namespace:?} (no folder {namespace_dir})"
            ),
        });
    }
    let listed = pools.join(", ");
    match pool_id {
        Some(given) if pools.iter().any(|p| p == given) => Ok(found(given)),
        Some(given) => Err(Error::InvalidOption {
            option: "--pool-id",
            reason: format!(
                "namespace {namespace:?} holds no records of pool {given:?} (pools: {listed})"
            ),
        }),
        None if pools.len() == 1 => Ok(found(&pools[0])),
        None => Err(Error::InvalidOption {
            option: "--pool-id",
            reason: format!(
                "namespace {namespace:?} holds the records of several pools ({listed}): name one"
            ),
        }),
    }
}

/// The sub-folders of `dir`, by name, that can be pool ids.
fn folders_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            entry.file_type().ok()?.is_dir().then_some(())?;
            let name = entry.file_name().into_string().ok()?;
            check_name("--pool-id", &name).ok().map(|()| name)
        })
        .collect();
    names.sort();
    names
}

/// A refusal, with a hint when the likely cause is the command line rather than the record.
fn hint(reason: String, wal: &str) -> String {
    if reason.contains("payload outside its own folder") {
        format!("{reason} (if the pool's WAL depot is not named {wal:?}, pass --wal NAME)")
    } else {
        reason
    }
}
