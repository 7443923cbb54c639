//! The reference workloads (issue #4): 2,000 cars over 200 users, the users in the same
//! SQLite database as the cars or in another one.
//!
//! - `query_resolve`: the 1,000 cars with `year > 2015`, each with its owner resolved.
//! - `query_ref_filter`: the cars whose owner's username is one given name (10 cars).
//!
//! The raw side is the best hand-written rusqlite for the same answer, reading the very
//! files korm wrote (same schema, same rows), decoding into plain structs: a `LEFT JOIN` on
//! the owner's id (same database), or the cars then one `IN (json_each(?))` lookup of their
//! owners (two databases); for the filter, a join (same database), or the user's id first
//! and then the cars (two databases).

use std::collections::HashMap;
use std::path::Path;

use korm::{Pool, Ref, eq, gt};
use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};

/// A user (the referenced item).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Owner {
    pub username: String,
    pub age: i64,
}

/// A car (the referencing item).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Car {
    pub year: i64,
    pub owner: Ref<Owner>,
}

/// A car as the raw side decodes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCar {
    pub id: String,
    pub year: i64,
    pub owner_rn: String,
    pub owner: Option<Owner>,
}

/// Where the users live relative to the cars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One SQLite file holds both collections.
    Same,
    /// Cars and users in two SQLite files (two layers).
    Other,
}

impl Placement {
    fn users(self) -> &'static str {
        match self {
            Placement::Same => "[rn][from::cardb]:users:free:*",
            Placement::Other => "[rn][from::userdb]:users:free:*",
        }
    }
}

pub const CARS: &str = "[rn][from::cardb]:cars:suv:*";
pub const CAR_TABLE: &str = "__items__cars__suv";
pub const USER_TABLE: &str = "__items__users__free";

/// The files of one setup, filled by korm.
pub struct Setup {
    pub pool: Pool,
    pub car_file: std::path::PathBuf,
    pub user_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// 200 users and 2,000 cars (half of them after 2015), written by korm.
pub async fn setup(placement: Placement, users: usize, cars: usize) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let car_file = dir.path().join("cars.sqlite");
    let user_file = match placement {
        Placement::Same => car_file.clone(),
        Placement::Other => dir.path().join("users.sqlite"),
    };
    let sqlite = |path: &Path| {
        korm::layers::sqlite(path).with_synchronous(korm::layers::Synchronous::Normal)
    };
    let mut builder = korm::pool().layer("cardb", sqlite(&car_file));
    if placement == Placement::Other {
        builder = builder.layer("userdb", sqlite(&user_file));
    }
    let pool = builder.open().await.expect("open pool");
    let mut tx = korm::tx(&pool);
    let mut owners = Vec::with_capacity(users);
    for i in 0..users {
        let user = korm::item::<Owner>(&pool)
            .from_data(
                placement.users().parse().unwrap(),
                Owner {
                    username: format!("user{i}"),
                    age: 20 + (i % 60) as i64,
                },
            )
            .unwrap();
        owners.push(user.rn().clone());
        tx.create(user);
    }
    for i in 0..cars {
        tx.create(
            korm::item::<Car>(&pool)
                .from_data(
                    CARS.parse().unwrap(),
                    Car {
                        year: 2000 + (i % 32) as i64,
                        owner: Ref::new(owners[i % users].clone()),
                    },
                )
                .unwrap(),
        );
    }
    tx.persist().await.expect("seed");
    Setup {
        pool,
        car_file,
        user_file,
        _dir: dir,
    }
}

pub async fn korm_query_resolve(pool: &Pool) -> usize {
    let cars = korm::item::<Car>(pool)
        .query(CARS.parse().unwrap())
        .filter(gt("year", 2015))
        .resolve(["owner"])
        .get()
        .await
        .unwrap();
    cars.iter()
        .filter(|c| c.data().owner.resolved().is_some())
        .count()
}

pub async fn korm_query_ref_filter(pool: &Pool, username: &str) -> usize {
    korm::item::<Car>(pool)
        .query(CARS.parse().unwrap())
        .filter(eq("owner.username", username))
        .get()
        .await
        .unwrap()
        .len()
}

/// Raw connections on korm's files (read-only).
pub struct RawConns {
    cars: Connection,
    users: Option<Connection>,
}

impl RawConns {
    pub fn open(setup: &Setup) -> Self {
        let open = |path: &Path| {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            conn
        };
        RawConns {
            cars: open(&setup.car_file),
            users: (setup.user_file != setup.car_file).then(|| open(&setup.user_file)),
        }
    }
}

fn owner_of(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<Owner>> {
    let username: Option<String> = row.get(at)?;
    Ok(match username {
        Some(username) => Some(Owner {
            username,
            age: row.get(at + 1)?,
        }),
        None => None,
    })
}

pub fn raw_query_resolve(raw: &RawConns) -> usize {
    let cars: Vec<RawCar> = match &raw.users {
        None => {
            let mut stmt = raw
                .cars
                .prepare_cached(&format!(
                    "SELECT c.\"rnId\", c.\"year\", c.\"owner\", u.\"username\", u.\"age\" \
                     FROM \"{CAR_TABLE}\" c LEFT JOIN \"{USER_TABLE}\" u \
                     ON u.\"rnId\" = substr(c.\"owner\", -36) WHERE c.\"year\" > ?"
                ))
                .unwrap();
            stmt.query_map(params![2015], |row| {
                Ok(RawCar {
                    id: row.get(0)?,
                    year: row.get(1)?,
                    owner_rn: row.get(2)?,
                    owner: owner_of(row, 3)?,
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
        Some(users) => {
            let mut stmt = raw
                .cars
                .prepare_cached(&format!(
                    "SELECT \"rnId\", \"year\", \"owner\" FROM \"{CAR_TABLE}\" WHERE \"year\" > ?"
                ))
                .unwrap();
            let mut cars: Vec<RawCar> = stmt
                .query_map(params![2015], |row| {
                    Ok(RawCar {
                        id: row.get(0)?,
                        year: row.get(1)?,
                        owner_rn: row.get(2)?,
                        owner: None,
                    })
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let mut ids: Vec<&str> = cars
                .iter()
                .map(|c| &c.owner_rn[c.owner_rn.len() - 36..])
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let mut stmt = users
                .prepare_cached(&format!(
                    "SELECT \"rnId\", \"username\", \"age\" FROM \"{USER_TABLE}\" \
                     WHERE \"rnId\" IN (SELECT value FROM json_each(?))"
                ))
                .unwrap();
            let owners: HashMap<String, Owner> = stmt
                .query_map([serde_json::to_string(&ids).unwrap()], |row| {
                    Ok((row.get::<_, String>(0)?, owner_of(row, 1)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .filter_map(|(id, owner)| Some((id, owner?)))
                .collect();
            for car in &mut cars {
                car.owner = owners
                    .get(&car.owner_rn[car.owner_rn.len() - 36..])
                    .cloned();
            }
            cars
        }
    };
    cars.iter().filter(|c| c.owner.is_some()).count()
}

pub fn raw_query_ref_filter(raw: &RawConns, username: &str) -> usize {
    let car = |row: &rusqlite::Row<'_>| {
        Ok(RawCar {
            id: row.get(0)?,
            year: row.get(1)?,
            owner_rn: row.get(2)?,
            owner: None,
        })
    };
    let cars: Vec<RawCar> = match &raw.users {
        None => {
            let mut stmt = raw
                .cars
                .prepare_cached(&format!(
                    "SELECT c.\"rnId\", c.\"year\", c.\"owner\" FROM \"{CAR_TABLE}\" c \
                     JOIN \"{USER_TABLE}\" u ON u.\"rnId\" = substr(c.\"owner\", -36) \
                     WHERE u.\"username\" = ?"
                ))
                .unwrap();
            stmt.query_map([username], car)
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        Some(users) => {
            let mut stmt = users
                .prepare_cached(&format!(
                    "SELECT \"rnId\" FROM \"{USER_TABLE}\" WHERE \"username\" = ?"
                ))
                .unwrap();
            let ids: Vec<String> = stmt
                .query_map([username], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let mut stmt = raw
                .cars
                .prepare_cached(&format!(
                    "SELECT \"rnId\", \"year\", \"owner\" FROM \"{CAR_TABLE}\" \
                     WHERE substr(\"owner\", -36) IN (SELECT value FROM json_each(?))"
                ))
                .unwrap();
            stmt.query_map([serde_json::to_string(&ids).unwrap()], car)
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
    };
    cars.len()
}
