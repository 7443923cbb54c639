//! The `korm` command: inspect and query korm pools by hand.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod pool_args;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

/// Inspect and query korm data from the command line.
#[derive(Debug, Parser)]
#[command(name = "korm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random encryption key (64 hex characters) for KORM_ENCRYPTION_KEY.
    GenerateEncryptionKey,
    /// Print the item at an RN (secrets redacted).
    Show {
        /// The SQLite database file.
        #[arg(long)]
        sqlite: PathBuf,
        /// The item RN, e.g. `[rn]:users:freetier:<uuid>`.
        rn: String,
        /// Colour the output.
        #[arg(long)]
        color: bool,
    },
    /// Print the items of a collection (secrets redacted).
    Query {
        /// The SQLite database file.
        #[arg(long)]
        sqlite: PathBuf,
        /// The collection RN, e.g. `[rn]:users:freetier:*`.
        rn: String,
        /// At most this many items.
        #[arg(long)]
        limit: Option<u64>,
        /// Colour the output.
        #[arg(long)]
        color: bool,
    },
    /// Inspect a pool's write-ahead log (status, show) or recover it.
    ///
    /// Records are MAC-checked, so each command needs the pool's KORM_ENCRYPTION_KEY (and
    /// KORM_ENCRYPTION_KEYS_OLD for records signed with an older key). Exit codes: 0 done,
    /// 2 a pending record is refused (a person must look at it), 1 an error.
    Wal {
        #[command(subcommand)]
        command: wal::WalCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("korm: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> korm::Result<ExitCode> {
    match cli.command {
        Command::GenerateEncryptionKey => {
            println!("{}", korm::crypto::generate_encryption_key().as_str());
        }
        Command::Show { sqlite, rn, color } => {
            let pool = open(&sqlite).await?;
            let rn = strip_layer(rn.parse()?);
            let item = korm::item::<Map<String, Value>>(&pool)
                .load(rn)
                .get()
                .await?;
            print!("{}", item.show(korm::ShowOptions::new().with_color(color)));
            pool.close().await;
        }
        Command::Query {
            sqlite,
            rn,
            limit,
            color,
        } => {
            let pool = open(&sqlite).await?;
            let query = korm::item::<Map<String, Value>>(&pool).query(strip_layer(rn.parse()?));
            let items = match limit {
                Some(n) => query.first_n(n).await?,
                None => query.get().await?,
            };
            for item in &items {
                print!("{}", item.show(korm::ShowOptions::new().with_color(color)));
            }
            eprintln!("{} item(s)", items.len());
            pool.close().await;
        }
        Command::Wal { command } => return wal::run(command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens one SQLite file as a single-layer pool, without creating it if it is missing.
async fn open(path: &PathBuf) -> korm::Result<korm::Pool> {
    if !path.exists() {
        return Err(korm::Error::PoolConfig {
            reason: format!("no SQLite file at {}", path.display()),
        });
    }
    korm::pool()
        .layer("cli", korm::layers::sqlite(path))
        .open()
        .await
}

/// The CLI opens one layer, so an RN's `from` mod names whatever layer the file was in.
fn strip_layer(rn: korm::Rn<Map<String, Value>>) -> korm::Rn<Map<String, Value>> {
    rn.without_layer()
}
