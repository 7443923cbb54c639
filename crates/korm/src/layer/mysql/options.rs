//! How to open a MySQL/MariaDB layer.

use crate::layer::server::ServerOptions;

/// Options of a MySQL/MariaDB layer (see [`ServerOptions`]).
///
/// The URL is `mysql://user:password@host:port/database`; TLS is used as the URL asks
/// (`?ssl-mode=REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY` with `ssl-ca=...`; the driver's
/// default, `PREFERRED`, uses TLS when the server offers it). Debug output never shows the
/// password:
///
/// ```
/// use std::time::Duration;
/// let layer = korm::layers::mysql("mysql://korm:s3cret@db:3306/docs")
///     .with_max_connections(8)
///     .with_connect_timeout(Duration::from_secs(5));
/// let shown = format!("{layer:?}");
/// assert!(shown.contains("korm:***@db") && !shown.contains("s3cret"));
/// ```
pub type MySqlOptions = ServerOptions<sqlx::MySql>;

/// A MySQL or MariaDB layer at `url` (`mysql://user:password@host:port/database`, or
/// `mariadb://`).
///
/// Defaults: at most 10 connections, a 10 s connect timeout. Nothing is contacted until the
/// pool opens.
pub fn mysql(url: impl Into<String>) -> MySqlOptions {
    ServerOptions::url(url)
}

/// A MySQL or MariaDB layer on a sqlx pool the program already has (its connection
/// settings, TLS and size are the pool's). korm closes the pool when the korm pool closes.
///
/// ```no_run
/// # async fn f() -> korm::Result<()> {
/// let my = sqlx::MySqlPool::connect_lazy("mysql://korm@db.example/docs").expect("url");
/// let pool = korm::pool().layer("docsdb", korm::layers::mysql_pool(my)).open().await?;
/// # Ok(()) }
/// ```
pub fn mysql_pool(pool: sqlx::MySqlPool) -> MySqlOptions {
    ServerOptions::pool(pool)
}

impl From<MySqlOptions> for crate::layer::LayerSpec {
    fn from(options: MySqlOptions) -> Self {
        let source = options.source(crate::layer::ServerKind::MySql);
        crate::layer::LayerSpec::new(options, super::MySqlLayer::open).with_source(source)
    }
}
