//! How to open a MySQL/MariaDB layer.

use std::fmt;
use std::time::Duration;

use crate::layer::url::DbUrl;

/// Options of a MySQL/MariaDB layer: build with [`mysql`], adjust with the `with_*` methods,
/// and give it to [`PoolBuilder::layer`](crate::PoolBuilder::layer).
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
#[derive(Clone)]
pub struct MySqlOptions {
    pub(crate) source: Source,
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
}

/// A MySQL or MariaDB layer at `url` (`mysql://user:password@host:port/database`).
///
/// Defaults: at most 10 connections, a 10 s connect timeout. Nothing is contacted until the
/// pool opens.
pub fn mysql(url: impl Into<String>) -> MySqlOptions {
    MySqlOptions {
        source: Source::Url(DbUrl::new(url)),
        max_connections: 10,
        connect_timeout: Duration::from_secs(10),
    }
}

/// A MySQL or MariaDB layer on a sqlx pool the program already has (its connection
/// settings, TLS and size are the pool's; [`MySqlOptions::with_max_connections`] and
/// [`MySqlOptions::with_connect_timeout`] do not apply). korm closes the pool when the korm
/// pool closes.
///
/// ```no_run
/// # async fn f() -> korm::Result<()> {
/// let my = sqlx::MySqlPool::connect_lazy("mysql://korm@db.example/docs").expect("url");
/// let pool = korm::pool().layer("docsdb", korm::layers::mysql_pool(my)).open().await?;
/// # Ok(()) }
/// ```
pub fn mysql_pool(pool: sqlx::MySqlPool) -> MySqlOptions {
    MySqlOptions {
        source: Source::Pool(pool),
        ..mysql(String::new())
    }
}

/// Where a layer's connections come from.
#[derive(Clone)]
pub(crate) enum Source {
    /// A URL korm connects to.
    Url(DbUrl),
    /// A pool handed over.
    Pool(sqlx::MySqlPool),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url(url) => url.fmt(f),
            Source::Pool(_) => f.write_str("<a sqlx pool>"),
        }
    }
}

impl MySqlOptions {
    /// The most connections the layer opens at once (at least 1).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long connecting (and waiting for a free connection) may take before it fails
    /// with [`DbErrorKind::Connect`](crate::DbErrorKind::Connect).
    pub fn with_connect_timeout(mut self, timeout: impl Into<Duration>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }
}

impl fmt::Debug for MySqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlOptions")
            .field("url", &self.source)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl From<MySqlOptions> for crate::layer::LayerSpec {
    fn from(options: MySqlOptions) -> Self {
        crate::layer::LayerSpec::new(options, super::MySqlLayer::open)
    }
}
