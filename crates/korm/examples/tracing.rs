//! What korm tells `tracing`: a `korm.write` span per write plan (ops, files, layers, and at
//! its end the outcome and duration), a `korm.query` span per query and a `korm.load` span
//! per load (collection or RN; at the end rows, read statements and duration), a
//! `korm.layer` span per layer call at trace level, and each SQLite statement at trace level
//! (target `korm::sql`: the SQL with its placeholders; PostgreSQL and MariaDB statements come
//! from sqlx's own `sqlx::query` events)
//! (layer, call, table, how many ops or ids went in, rows back, duration). Values never
//! appear: statements bind them, and errors are scrubbed of secrets.
//!
//! `cargo run -p korm --example tracing` prints the events of a create, a commit, a query and
//! a failed create (a unique field already taken), and checks they are there.

use serde::{Deserialize, Serialize};

#[path = "../tests/support/captured.rs"]
mod captured;
use captured::Captured;

#[derive(Serialize, Deserialize)]
struct User {
    name: korm::Unique<String>,
    visits: i64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let captured = Captured::install();

    let pool = korm::pool()
        .layer("users", korm::layers::sqlite_memory())
        .open()
        .await?;
    let users = korm::item::<User>(&pool);
    let rn = || "[rn][from::users]:people:free:*".parse();
    let fred = users
        .from_data(
            rn()?,
            User {
                name: korm::Unique::new("fred".into()),
                visits: 0,
            },
        )?
        .create()
        .await?;
    let fred = fred.update(|u| u.visits += 1).commit().await?;
    users.load(fred.rn().clone()).get().await?;
    let found = users
        .query(rn()?)
        .filter(korm::eq("visits", 1))
        .get()
        .await?;
    assert_eq!(found.len(), 1);
    let taken = users
        .from_data(
            rn()?,
            User {
                name: korm::Unique::new("fred".into()),
                visits: 0,
            },
        )?
        .create()
        .await;
    assert!(taken.is_err(), "a second fred is refused");
    pool.close().await;

    let text = captured.text_from(0);
    print!("{text}");
    for expected in [
        "korm.write{ops=1 files=0 layers=\"users\"}",
        "outcome=\"ok\"",
        "outcome=\"failed\"",
        "korm.layer{layer=\"users\" call=\"apply\"",
        "call=\"select\"",
        "rows=1",
        "korm.query{collection=[rn][from::users]:people:free:*}",
        "statements=1",
        "korm.load{rn=",
        "korm::sql: statement sql=INSERT",
    ] {
        assert!(text.contains(expected), "the trace lacks {expected}");
    }
    assert!(!text.contains("\"fred\""), "a value reached the trace");
    Ok(())
}
