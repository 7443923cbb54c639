//! The `korm` command: read korm pools by hand (`get`, `query`, `count`) on every backend,
//! look after their write-ahead log (`wal`), back up and restore (`backup`), make keys.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

/// `println!` for results: a closed stdout (`korm query ... | head`) ends the program quietly
/// with success, as a pipe's reader expects, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

/// `print!` for results, as [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

mod backup;
mod data;
mod pool_args;
mod studio;
mod wal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Print each layer's collections: row counts, columns and their kinds, unique fields.
    Inspect {
        #[command(flatten)]
        pool: data::PoolArgs,
        #[command(flatten)]
        print: Print,
    },
    /// Print the item at an RN (secrets redacted).
    #[command(alias = "show")]
    Get {
        /// The item RN, e.g. `[rn][from::cardb]:cars:suv:<uuid>`.
        rn: String,
        #[command(flatten)]
        pool: data::PoolArgs,
        #[command(flatten)]
        print: Print,
    },
    /// Print the items of a collection that match a filter (secrets redacted).
    Query {
        #[command(flatten)]
        selection: data::Selection,
        /// Sort keys: paths separated by commas, `-` in front for descending (`-age,name`).
        #[arg(long, value_name = "KEYS", allow_hyphen_values = true)]
        sort: Option<String>,
        /// At most this many items.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        pool: data::PoolArgs,
        #[command(flatten)]
        print: Print,
    },
    /// Print how many items of a collection match a filter.
    Count {
        #[command(flatten)]
        selection: data::Selection,
        #[command(flatten)]
        pool: data::PoolArgs,
        #[command(flatten)]
        print: Print,
    },
    /// Back up layers now, list, verify and restore backups.
    ///
    /// Exit codes: 0 done, 2 the backup is damaged (verify, restore: nothing was written),
    /// 1 another error.
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Serve a local web page to look at the pool: collections, items and their references,
    /// depot files, the WAL and backups.
    ///
    /// Listens on 127.0.0.1 only and prints one line, `korm studio: URL`, whose token lets a
    /// browser in. Read-only unless --allow-writes.
    Studio(studio::StudioArgs),
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

/// How a command prints.
#[derive(Debug, clap::Args)]
struct Print {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Colour the output.
    #[arg(long)]
    color: bool,
    /// Show the library's log lines on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

impl Print {
    fn output(&self) -> data::Output {
        logs(self.verbose);
        data::Output {
            json: self.json,
            color: self.color,
        }
    }
}

/// Sends the library's tracing events at `verbose`'s level to stderr (warnings by default).
fn logs(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("korm: {}", terminal_safe(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Ends the program after a failed write of results: quietly with success when the reader
/// closed the pipe, with the error (exit 1) otherwise (a full disk, say).
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("korm: can not write the results: {e}");
    std::process::exit(1);
}

/// `text` for a terminal: a control character (a terminal escape in a tampered column name
/// or backup header, say) is written as its escape (`\u{1b}`), never raw; line breaks and
/// tabs stay.
pub(crate) fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

async fn run(cli: Cli) -> korm::Result<ExitCode> {
    match cli.command {
        Command::GenerateEncryptionKey => {
            out!("{}", korm::crypto::generate_encryption_key().as_str());
        }
        Command::Inspect { pool, print } => {
            let out = print.output();
            let pool = pool.open().await?;
            let result = data::inspect(&pool, out).await;
            pool.close().await;
            result?;
        }
        Command::Get { rn, pool, print } => {
            let out = print.output();
            let pool = pool.open().await?;
            let result = data::get(&pool, &rn, out).await;
            pool.close().await;
            result?;
        }
        Command::Query {
            selection,
            sort,
            limit,
            pool,
            print,
        } => {
            let out = print.output();
            let pool = pool.open().await?;
            let result = data::query(&pool, &selection, sort.as_deref(), limit, out).await;
            pool.close().await;
            result?;
        }
        Command::Count {
            selection,
            pool,
            print,
        } => {
            let out = print.output();
            let pool = pool.open().await?;
            let result = data::count(&pool, &selection, out).await;
            pool.close().await;
            result?;
        }
        Command::Wal { command } => return wal::run(command).await,
        Command::Studio(args) => return studio::run(args).await,
        Command::Backup { command } => return backup::run(command).await,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(super::terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            super::terminal_safe("x\u{1b}]52;c;aGk=\u{7}y"),
            "x\\u{1b}]52;c;aGk=\\u{7}y"
        );
    }
}
