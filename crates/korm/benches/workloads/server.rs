//! The server workloads: korm on PostgreSQL and MariaDB beside raw sqlx running the same SQL
//! on the same schema (the tables korm creates: PostgreSQL `text`/`bigint`/`jsonb`, MariaDB
//! `VARCHAR(255)`/`TEXT`/`BIGINT`/`JSON`), each side in a database of its own.

use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use super::{Meta, TABLE, User, user};

/// A server the bench runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Pg,
    /// MariaDB / MySQL.
    My,
}

impl Server {
    /// The workload prefix (`pg.create`).
    pub fn prefix(self) -> &'static str {
        match self {
            Server::Pg => "pg",
            Server::My => "mysql",
        }
    }

    fn admin_url(self) -> String {
        match self {
            Server::Pg => std::env::var("KORM_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            Server::My => std::env::var("KORM_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        }
    }

    async fn admin(self, sql: String) -> Result<(), sqlx::Error> {
        let url = self.admin_url();
        match self {
            Server::Pg => {
                let mut c = sqlx::PgConnection::connect(&url).await?;
                c.execute(AssertSqlSafe(sql)).await?;
                c.close().await
            }
            Server::My => {
                let mut c = sqlx::MySqlConnection::connect(&url).await?;
                c.execute(AssertSqlSafe(sql)).await?;
                c.close().await
            }
        }
    }
}

/// A database made for one bench round, dropped with [`Database::drop_now`].
pub struct Database {
    pub server: Server,
    pub name: String,
    pub url: String,
}

impl Database {
    /// Creates a fresh database, or says why it can not.
    pub async fn create(server: Server) -> Result<Database, sqlx::Error> {
        let name = format!("korm_bench_{}", uuid::Uuid::new_v4().simple());
        let quoted = match server {
            Server::Pg => format!("\"{name}\""),
            Server::My => format!("`{name}`"),
        };
        server.admin(format!("CREATE DATABASE {quoted}")).await?;
        let admin = server.admin_url();
        let base = &admin[..admin.rfind('/').unwrap_or(admin.len())];
        Ok(Database {
            server,
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Drops the database.
    pub async fn drop_now(self) {
        let sql = match self.server {
            Server::Pg => format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            Server::My => format!("DROP DATABASE IF EXISTS `{}`", self.name),
        };
        let _ = self.server.admin(sql).await;
    }
}

/// A korm pool with one layer on the database.
pub async fn korm_pool(db: &Database) -> korm::Pool {
    let layer: korm::PoolBuilder = match db.server {
        Server::Pg => korm::pool().layer("bench", korm::layers::postgres(db.url.clone())),
        Server::My => korm::pool().layer("bench", korm::layers::mysql(db.url.clone())),
    };
    layer.open().await.expect("open korm pool")
}

/// The raw side: an sqlx pool and the SQL korm runs, written by hand.
pub enum Raw {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

impl Raw {
    /// Connects and creates the table korm would create.
    pub async fn open(db: &Database) -> Raw {
        match db.server {
            Server::Pg => {
                let pool = sqlx::PgPool::connect(&db.url).await.expect("raw pg");
                pool.execute(AssertSqlSafe(format!(
                    "CREATE TABLE \"{TABLE}\" (\"rnId\" text PRIMARY KEY, \"username\" text, \
                     \"age\" bigint, \"meta\" jsonb)"
                )))
                .await
                .expect("raw pg table");
                Raw::Pg(pool)
            }
            Server::My => {
                let pool = sqlx::MySqlPool::connect(&db.url).await.expect("raw mysql");
                pool.execute(AssertSqlSafe(format!(
                    "CREATE TABLE `{TABLE}` (`rnId` VARCHAR(255) PRIMARY KEY, `username` TEXT, \
                     `age` BIGINT, `meta` JSON)"
                )))
                .await
                .expect("raw mysql table");
                Raw::My(pool)
            }
        }
    }

    pub async fn close(self) {
        match self {
            Raw::Pg(p) => p.close().await,
            Raw::My(p) => p.close().await,
        }
    }

    pub async fn create(&self, range: std::ops::Range<usize>) -> Vec<(String, User)> {
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            let id = korm::rn::new_id().to_string();
            let u = user(i);
            match self {
                Raw::Pg(p) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO \"{TABLE}\" (\"rnId\", \"username\", \"age\", \"meta\") VALUES ($1, $2, $3, $4)"
                    )))
                    .bind(&id)
                    .bind(&u.username)
                    .bind(u.age)
                    .bind(sqlx::types::Json(&u.meta))
                    .execute(p)
                    .await
                    .expect("insert");
                }
                Raw::My(p) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO `{TABLE}` (`rnId`, `username`, `age`, `meta`) VALUES (?, ?, ?, ?)"
                    )))
                    .bind(&id)
                    .bind(&u.username)
                    .bind(u.age)
                    .bind(serde_json::to_string(&u.meta).expect("json"))
                    .execute(p)
                    .await
                    .expect("insert");
                }
            }
            out.push((id, u));
        }
        out
    }

    fn pg_user(row: &sqlx::postgres::PgRow) -> User {
        let meta: sqlx::types::Json<Meta> = row.get("meta");
        User {
            username: row.get("username"),
            age: row.get("age"),
            meta: meta.0,
        }
    }

    fn my_user(row: &sqlx::mysql::MySqlRow) -> User {
        let meta: String = row.get("meta");
        User {
            username: row.get("username"),
            age: row.get("age"),
            meta: serde_json::from_str(&meta).expect("meta"),
        }
    }

    pub async fn get(&self, ids: &[String]) -> usize {
        let mut total = 0;
        for id in ids {
            let user = match self {
                Raw::Pg(p) => Self::pg_user(
                    &sqlx::query(AssertSqlSafe(format!(
                        "SELECT * FROM \"{TABLE}\" WHERE \"rnId\" = $1"
                    )))
                    .bind(id)
                    .fetch_one(p)
                    .await
                    .expect("get"),
                ),
                Raw::My(p) => Self::my_user(
                    &sqlx::query(AssertSqlSafe(format!(
                        "SELECT * FROM `{TABLE}` WHERE `rnId` = ?"
                    )))
                    .bind(id)
                    .fetch_one(p)
                    .await
                    .expect("get"),
                ),
            };
            total += user.age as usize;
        }
        total
    }

    /// `age > 80 AND meta.tier = 'gold'`, the best hand-written SQL for each server.
    pub async fn query(&self) -> usize {
        match self {
            Raw::Pg(p) => sqlx::query(AssertSqlSafe(format!(
                "SELECT * FROM \"{TABLE}\" WHERE \"age\" > $1 AND \"meta\"->>'tier' = $2"
            )))
            .bind(80i64)
            .bind("gold")
            .fetch_all(p)
            .await
            .expect("query")
            .iter()
            .map(Self::pg_user)
            .count(),
            Raw::My(p) => sqlx::query(AssertSqlSafe(format!(
                "SELECT * FROM `{TABLE}` WHERE `age` > ? AND JSON_UNQUOTE(JSON_EXTRACT(`meta`, '$.tier')) = ?"
            )))
            .bind(80i64)
            .bind("gold")
            .fetch_all(p)
            .await
            .expect("query")
            .iter()
            .map(Self::my_user)
            .count(),
        }
    }

    pub async fn update(&self, rows: &mut [(String, User)]) {
        for (id, u) in rows.iter_mut() {
            u.age += 1;
            match self {
                Raw::Pg(p) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE \"{TABLE}\" SET \"username\" = $1, \"age\" = $2, \"meta\" = $3 WHERE \"rnId\" = $4"
                    )))
                    .bind(&u.username)
                    .bind(u.age)
                    .bind(sqlx::types::Json(&u.meta))
                    .bind(&*id)
                    .execute(p)
                    .await
                    .expect("update");
                }
                Raw::My(p) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE `{TABLE}` SET `username` = ?, `age` = ?, `meta` = ? WHERE `rnId` = ?"
                    )))
                    .bind(&u.username)
                    .bind(u.age)
                    .bind(serde_json::to_string(&u.meta).expect("json"))
                    .bind(&*id)
                    .execute(p)
                    .await
                    .expect("update");
                }
            }
        }
    }
}
