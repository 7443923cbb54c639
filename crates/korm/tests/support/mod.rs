//! Test databases on the real servers: each test gets its own freshly created database,
//! dropped when the guard drops, so suites run in parallel and leave nothing behind.
//!
//! Server URLs come from `KORM_TEST_PG_URL` and `KORM_TEST_MYSQL_URL` (set by `scripts/test`;
//! the defaults are this project's services, see `../shared/services.md`). A server that can
//! not be reached fails the test under `scripts/test` (`KORM_TEST_RUN=1`); under a plain
//! `cargo test` it prints a loud skip line instead.

#![allow(dead_code, unreachable_pub)]

use sqlx::{AssertSqlSafe, Connection, Executor};

/// Which server a test database lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Server {
    fn admin_url(self) -> String {
        let (var, default) = match self {
            Server::Postgres => (
                "KORM_TEST_PG_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            Server::MySql => ("KORM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        };
        std::env::var(var).unwrap_or_else(|_| default.to_owned())
    }

    fn name(self) -> &'static str {
        match self {
            Server::Postgres => "PostgreSQL",
            Server::MySql => "MariaDB/MySQL",
        }
    }
}

/// A database created for one test; dropped (with everything in it) when this drops.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    /// Its name.
    pub name: String,
    server: Server,
    admin_url: String,
}

impl TestDatabase {
    /// A korm layer on this database, keeping at most `max_connections` open.
    pub fn layer(&self, max_connections: u32) -> korm::LayerSpec {
        match self.server {
            Server::Postgres => korm::layers::postgres(&self.url)
                .with_max_connections(max_connections)
                .into(),
            Server::MySql => korm::layers::mysql(&self.url)
                .with_max_connections(max_connections)
                .into(),
        }
    }
}

/// The URL of `admin_url` with its database (the path) replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{}", &base[..path_start], name);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

async fn run_admin(server: Server, admin_url: &str, sql: String) -> Result<(), sqlx::Error> {
    match server {
        Server::Postgres => {
            let mut conn = sqlx::postgres::PgConnection::connect(admin_url).await?;
            conn.execute(AssertSqlSafe(sql)).await?;
            conn.close().await
        }
        Server::MySql => {
            let mut conn = sqlx::mysql::MySqlConnection::connect(admin_url).await?;
            conn.execute(AssertSqlSafe(sql)).await?;
            conn.close().await
        }
    }
}

/// Creates a fresh database on `server`, or returns `None` (after a loud skip line) when the
/// server can not be reached outside `scripts/test`.
pub async fn create(server: Server) -> Option<TestDatabase> {
    let admin_url = server.admin_url();
    let name = format!("korm_t_{}", uuid::Uuid::new_v4().simple());
    let quoted = match server {
        Server::Postgres => format!("\"{name}\""),
        Server::MySql => format!("`{name}`"),
    };
    if let Err(e) = run_admin(server, &admin_url, format!("CREATE DATABASE {quoted}")).await {
        let message = format!(
            "{} is not reachable for tests ({e}); scripts/test starts it (see ../shared/services.md)",
            server.name()
        );
        if std::env::var_os("KORM_TEST_RUN").is_some() {
            panic!("{message}");
        }
        eprintln!("\n!!!! SKIPPED: {message}\n");
        return None;
    }
    Some(TestDatabase {
        url: with_database(&admin_url, &name),
        name,
        server,
        admin_url,
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, admin_url, name) = (self.server, self.admin_url.clone(), self.name.clone());
        // Drop runs inside a runtime; the cleanup gets a small runtime of its own on a thread.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let sql = match server {
                    Server::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    Server::MySql => format!("DROP DATABASE IF EXISTS `{name}`"),
                };
                if let Err(e) = rt.block_on(run_admin(server, &admin_url, sql)) {
                    eprintln!("could not drop test database {name}: {e}");
                }
            }
        });
        let _ = cleanup.join();
    }
}

#[test]
fn urls_get_the_database_swapped() {
    assert_eq!(
        with_database("postgres://u:p@h:1/postgres", "x"),
        "postgres://u:p@h:1/x"
    );
    assert_eq!(
        with_database("mysql://root@h:3306/test?ssl-mode=DISABLED", "x"),
        "mysql://root@h:3306/x?ssl-mode=DISABLED"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

/// The S3 server `scripts/test` starts (s3s-fs), from `KORM_TEST_S3_ENDPOINT`,
/// `KORM_TEST_S3_ACCESS_KEY` and `KORM_TEST_S3_SECRET`.
#[derive(Debug, Clone)]
pub struct S3Server {
    pub endpoint: String,
    pub key: String,
    pub secret: String,
}

impl S3Server {
    /// The server, or `None` after a loud skip line when its variables are unset outside
    /// `scripts/test` (under it, `KORM_TEST_RUN=1`, a panic).
    pub fn from_env() -> Option<S3Server> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (
            get("KORM_TEST_S3_ENDPOINT"),
            get("KORM_TEST_S3_ACCESS_KEY"),
            get("KORM_TEST_S3_SECRET"),
        ) {
            (Some(endpoint), Some(key), Some(secret)) => Some(S3Server {
                endpoint,
                key,
                secret,
            }),
            _ => {
                let message = "no S3 test server: KORM_TEST_S3_ENDPOINT, \
                               KORM_TEST_S3_ACCESS_KEY and KORM_TEST_S3_SECRET are unset \
                               (scripts/test starts s3s-fs and sets them)";
                if std::env::var_os("KORM_TEST_RUN").is_some() {
                    panic!("{message}");
                }
                eprintln!("\n!!!! SKIPPED: {message}\n");
                None
            }
        }
    }

    /// A fresh bucket name.
    pub fn bucket_name() -> String {
        format!(
            "korm-t-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..20]
        )
    }

    /// Options of `bucket` on the server, made when a depot first opens it.
    pub fn options(&self, bucket: &str) -> korm::depots::S3Options {
        korm::depots::s3(bucket)
            .with_endpoint(self.endpoint.clone())
            .with_access_key_id(self.key.clone())
            .with_secret_access_key(self.secret.clone())
            .with_auto_create_bucket(true)
    }

    /// The server's settings as the `korm` command reads them (`AWS_*`).
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }
}

/// The fixtures korm 1.5 wrote (`../shared/fixtures/korm-ts-1.5`, beside the repository),
/// or `KORM_FIXTURES` when set.
pub fn fixtures() -> std::path::PathBuf {
    let dir = std::env::var_os("KORM_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/korm-ts-1.5")
        });
    assert!(
        dir.join("manifest.json").exists(),
        "korm 1.5 fixtures not found at {} (they live in ../shared beside the repository; set KORM_FIXTURES)",
        dir.display()
    );
    dir
}
