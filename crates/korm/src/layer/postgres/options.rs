//! How to open a PostgreSQL layer.

use std::fmt;
use std::time::Duration;

use crate::layer::url::DbUrl;

/// Options of a PostgreSQL layer: build with [`postgres`], adjust with the `with_*` methods,
/// and give it to [`PoolBuilder::layer`](crate::PoolBuilder::layer).
///
/// TLS follows the URL's `sslmode` (`disable`, `prefer` (the default), `require`,
/// `verify-ca`, `verify-full`; roots from `sslrootcert` or the bundled WebPKI roots). The
/// `Debug` output shows the URL with its password replaced by `***`.
///
/// ```
/// use std::time::Duration;
/// let layer = korm::layers::postgres("postgres://korm:s3cret@db.example/app?sslmode=require")
///     .with_max_connections(16)
///     .with_connect_timeout(Duration::from_secs(5));
/// assert!(!format!("{layer:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct PgOptions {
    pub(crate) source: Source,
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
}

/// A PostgreSQL layer at a `postgres://` (or `postgresql://`) URL.
///
/// Defaults: at most 10 connections, and a 10 s limit to open a connection (or to wait for a
/// free one) before an operation fails with
/// [`DbErrorKind::Connect`](crate::DbErrorKind::Connect). Nothing connects until the pool
/// is opened.
pub fn postgres(url: impl Into<String>) -> PgOptions {
    PgOptions {
        source: Source::Url(DbUrl::new(url)),
        max_connections: 10,
        connect_timeout: Duration::from_secs(10),
    }
}

/// A PostgreSQL layer on a sqlx pool the program already has (its connection settings,
/// TLS and size are the pool's; [`PgOptions::with_max_connections`] and
/// [`PgOptions::with_connect_timeout`] do not apply). korm closes the pool when the korm pool
/// closes.
///
/// ```no_run
/// # async fn f() -> korm::Result<()> {
/// let pg = sqlx::PgPool::connect_lazy("postgres://korm@db.example/app").expect("url");
/// let pool = korm::pool().layer("userdb", korm::layers::postgres_pool(pg)).open().await?;
/// # Ok(()) }
/// ```
pub fn postgres_pool(pool: sqlx::PgPool) -> PgOptions {
    PgOptions {
        source: Source::Pool(pool),
        ..postgres(String::new())
    }
}

/// Where a layer's connections come from.
#[derive(Clone)]
pub(crate) enum Source {
    /// A URL korm connects to.
    Url(DbUrl),
    /// A pool handed over.
    Pool(sqlx::PgPool),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url(url) => url.fmt(f),
            Source::Pool(_) => f.write_str("<a sqlx pool>"),
        }
    }
}

impl PgOptions {
    /// The most connections the layer keeps open at once (at least 1).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long opening a connection, or waiting for a free one, may take before the
    /// operation fails with [`DbErrorKind::Connect`](crate::DbErrorKind::Connect).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.source)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl From<PgOptions> for crate::layer::LayerSpec {
    fn from(options: PgOptions) -> Self {
        crate::layer::LayerSpec::new(options, super::PgLayer::open)
    }
}
