//! How to open a PostgreSQL layer.

use crate::layer::server::ServerOptions;

/// Options of a PostgreSQL layer (see [`ServerOptions`]).
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
pub type PgOptions = ServerOptions<sqlx::Postgres>;

/// A PostgreSQL layer at a `postgres://` (or `postgresql://`) URL.
///
/// Defaults: at most 10 connections, and a 10 s limit to open a connection (or to wait for a
/// free one) before an operation fails with
/// [`DbErrorKind::Connect`](crate::DbErrorKind::Connect). Nothing connects until the pool
/// is opened.
pub fn postgres(url: impl Into<String>) -> PgOptions {
    ServerOptions::url(url)
}

/// A PostgreSQL layer on a sqlx pool the program already has (its connection settings, TLS
/// and size are the pool's). korm closes the pool when the korm pool closes.
///
/// ```no_run
/// # async fn f() -> korm::Result<()> {
/// let pg = sqlx::PgPool::connect_lazy("postgres://korm@db.example/app").expect("url");
/// let pool = korm::pool().layer("userdb", korm::layers::postgres_pool(pg)).open().await?;
/// # Ok(()) }
/// ```
pub fn postgres_pool(pool: sqlx::PgPool) -> PgOptions {
    ServerOptions::pool(pool)
}

impl From<PgOptions> for crate::layer::LayerSpec {
    fn from(options: PgOptions) -> Self {
        let source = options.source(crate::layer::ServerKind::Pg);
        crate::layer::LayerSpec::new(options, super::PgLayer::open).with_source(source)
    }
}
