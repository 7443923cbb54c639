//! The quickstart: an embedded SQLite file and a local depot folder, no server.
//!
//! Run it with `cargo run -p korm --example quickstart`. It creates users and cars (each car
//! references its owner and carries an invoice file), queries them with filters and sorting,
//! filters and resolves through the owner reference, cascades a change into the owner,
//! updates, deletes and restores an item, and shows one with its fields, in
//! `target/quickstart/` (deleted and recreated on every run).

use korm::{DepotFile, Ref, SortOrder, Unique, and, eq, gt, like};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct User {
    username: String,
    email: Unique<String>,
    age: i64,
    meta: Meta,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    tier: String,
    tags: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    make: String,
    year: i64,
    owner: Ref<User>,
    invoice: DepotFile,
}

#[tokio::main]
async fn main() -> korm::Result<()> {
    let dir = std::path::Path::new("target/quickstart");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("can create target/quickstart");

    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
        .depot("files", korm::depots::local(dir.join("files")))
        .open()
        .await?;
    let users = korm::item::<User>(&pool);
    let cars = korm::item::<Car>(&pool);

    let fred = users
        .from_data(
            "[rn]:users:freetier:*".parse()?,
            User {
                username: "freddie".into(),
                email: Unique::new("fred@bedrock.example".into()),
                age: 41,
                meta: Meta {
                    tier: "gold".into(),
                    tags: vec!["quarry".into(), "bowling".into()],
                },
            },
        )?
        .create()
        .await?;
    println!("created {}", fred.rn());

    let barney = users
        .from_data(
            "[rn]:users:freetier:*".parse()?,
            User {
                username: "barney".into(),
                email: Unique::new("barney@bedrock.example".into()),
                age: 38,
                meta: Meta {
                    tier: "silver".into(),
                    tags: vec!["bowling".into()],
                },
            },
        )?
        .create()
        .await?;

    // A unique field refuses a duplicate, with an error that names the field.
    let duplicate = users
        .from_data(
            "[rn]:users:freetier:*".parse()?,
            User {
                username: "impostor".into(),
                email: Unique::new("fred@bedrock.example".into()),
                age: 1,
                meta: Meta {
                    tier: "none".into(),
                    tags: vec![],
                },
            },
        )?
        .create()
        .await;
    println!(
        "duplicate email: {}",
        duplicate.expect_err("emails are unique")
    );

    for (make, year, owner) in [
        ("Citroen", 2014, &fred),
        ("Fiat", 1999, &barney),
        ("Volvo", 2021, &fred),
    ] {
        // The invoice is uploaded to the depot by the same write that stores the car, which
        // keeps only its RN.
        let invoice = korm::depots::file(
            format!("[rn][depot::files]:invoices:{make}:invoice.txt").parse()?,
            format!("Invoice: one {make} from {year}"),
        )?;
        cars.from_data(
            "[rn]:cars:suv:*".parse()?,
            Car {
                make: make.into(),
                year,
                owner: Ref::new(owner.rn().clone()),
                invoice: invoice.into(),
            },
        )?
        .create()
        .await?;
    }

    // A filter through the owner reference, and the owner resolved in the same query.
    let freds = cars
        .query("[rn]:cars:suv:*".parse()?)
        .filter(eq("owner.username", "freddie"))
        .sort_by("year", SortOrder::Asc)
        .resolve(["owner"])
        .get()
        .await?;
    for car in &freds {
        let owner = car.data().owner.resolved().expect("resolved");
        let invoice = car.data().invoice.text(&pool).await?;
        println!(
            "{} {} of {}: {invoice}",
            car.data().make,
            car.data().year,
            owner.username
        );
    }

    // A change to a resolved reference is stored in the referenced item when the car is
    // committed (a cascade), in the same write.
    let first = freds.into_iter().next().expect("fred has cars");
    first
        .try_update(|car| {
            car.owner.get_mut()?.meta.tags.push("driving".into());
            Ok(())
        })?
        .commit()
        .await?;

    // Filters reach into JSON with paths, including [*] over arrays.
    let bowlers = users
        .query("[rn]:users:freetier:*".parse()?)
        .filter(and([eq("meta.tags[*]", "bowling"), gt("age", 30)]))
        .sort_by("username", SortOrder::Asc)
        .get()
        .await?;
    println!(
        "bowlers: {:?}",
        bowlers
            .iter()
            .map(|u| &u.data().username)
            .collect::<Vec<_>>()
    );

    let newest = cars
        .query("[rn]:cars:suv:*".parse()?)
        .filter(like("make", "%o%"))
        .sort_by("year", SortOrder::Desc)
        .first()
        .await?;
    println!(
        "newest car with an o: {} {}",
        newest.data().make,
        newest.data().year
    );

    // Update and commit; delete and restore.
    let fred = users.load(fred.rn().clone()).get().await?;
    println!("fred's tags after the cascade: {:?}", fred.data().meta.tags);
    let fred = fred.update(|u| u.age += 1).commit().await?;
    println!("{}", fred.show(korm::ShowOptions::new()));
    let deleted = barney.delete().await?;
    let barney = deleted.restore().await?;
    let loaded = users.load(barney.rn().clone()).get().await?;
    println!("restored {} ({})", loaded.data().username, loaded.rn());

    // The depot lists files by prefix.
    let invoices = pool
        .files(&"[rn][depot::files]:invoices:*".parse()?)
        .await?;
    println!("{} invoices in the depot", invoices.len());

    pool.close().await;
    Ok(())
}
