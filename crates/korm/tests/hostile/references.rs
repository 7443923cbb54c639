//! Tampered references in stored data: RN columns holding garbage, hostile collection names,
//! references into tables that hold garbage. A typed error or the value left as is; never a
//! panic, never executed SQL. The in-memory database has no second connection to tamper
//! through: there the outcome is that the references korm wrote resolve.

use korm::{Error, Ref, eq};
use serde::{Deserialize, Serialize};

use crate::{Db, create, rn};

#[derive(Debug, Serialize, Deserialize)]
struct Person {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pet {
    owner: Ref<Person>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LoosePet {
    owner: String,
}

const PETS: &str = "[rn]:pets:dog:*";
const PETS_TABLE: &str = "__items__pets__dog";

/// What the in-memory backend shows instead of a tampered reference: the one korm wrote
/// resolves to the person.
async fn resolves(db: &Db, pet: &korm::Rn<Pet>) {
    let loaded = korm::item::<Pet>(&db.pool)
        .load(pet.clone())
        .resolve(["owner"])
        .get()
        .await
        .expect("load");
    let owner = loaded.data().owner.resolved().expect("resolved");
    assert_eq!(owner.name, "fred");
}

async fn garbage_in_a_reference_column_is_a_decode_error_naming_the_item(db: &Db) {
    let fred = create(
        &db.pool,
        "[rn]:people:x:*",
        Person {
            name: "fred".into(),
        },
    )
    .await;
    let pet = create(
        &db.pool,
        PETS,
        Pet {
            owner: Ref::new(fred.rn().clone()),
        },
    )
    .await;
    let Some(raw) = db.raw() else {
        return resolves(db, pet.rn()).await;
    };
    let set_owner = format!(
        "UPDATE {} SET {} = {}",
        raw.t(PETS_TABLE),
        raw.q("owner"),
        raw.p(1)
    );
    for garbage in [
        "not an rn",
        "[rn]:people:x:not-a-uuid",
        "[rn]:people'; DROP TABLE __items__people__x; --:x:3df3face-f377-4f86-9bb9-a9b4671a9441",
        "[rn][from::db]:",
        "",
    ] {
        raw.exec(&set_owner, &[garbage.into()]).await;
        for resolve in [false, true] {
            let load = korm::item::<Pet>(&db.pool).load(pet.rn().clone());
            let load = if resolve {
                load.resolve(["owner"])
            } else {
                load
            };
            let err = load.get().await.unwrap_err();
            match &err {
                Error::Decode { rn, .. } => assert_eq!(rn, pet.rn().as_str()),
                other => panic!("{garbage:?}: expected Decode, got {other:?}"),
            }
        }
        // Read as a plain string, the value is left as it is, resolve or not.
        let loose = korm::item::<LoosePet>(&db.pool)
            .load(rn(pet.rn().as_str()))
            .resolve(["owner", "*"])
            .get()
            .await
            .unwrap();
        assert_eq!(loose.data().owner, garbage);
        // A filter through the tampered reference matches nothing and runs nothing.
        let found = korm::item::<LoosePet>(&db.pool)
            .query(rn(PETS))
            .filter(eq("owner.name", "fred"))
            .get()
            .await
            .unwrap();
        assert!(found.is_empty(), "{garbage:?}");
        assert!(raw.tables().await.iter().any(|t| t == "__items__people__x"));
    }
}

async fn a_referenced_row_that_does_not_fit_is_a_decode_error(db: &Db) {
    let fred = create(
        &db.pool,
        "[rn]:people:x:*",
        Person {
            name: "fred".into(),
        },
    )
    .await;
    let pet = create(
        &db.pool,
        PETS,
        Pet {
            owner: Ref::new(fred.rn().clone()),
        },
    )
    .await;
    let Some(raw) = db.raw() else {
        return resolves(db, pet.rn()).await;
    };
    // The referenced row loses the field its model needs.
    let sql = format!(
        "UPDATE {} SET {} = NULL",
        raw.t("__items__people__x"),
        raw.q("name")
    );
    raw.exec(&sql, &[]).await;
    let err = korm::item::<Pet>(&db.pool)
        .load(pet.rn().clone())
        .resolve(["owner"])
        .get()
        .await
        .unwrap_err();
    match &err {
        Error::Decode { rn, reason } => {
            assert_eq!(rn, pet.rn().as_str());
            assert!(reason.contains(fred.rn().as_str()), "{reason}");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    // Unresolved, the pet still loads.
    let plain = korm::item::<Pet>(&db.pool)
        .load(pet.rn().clone())
        .get()
        .await
        .unwrap();
    assert_eq!(plain.data().owner.rn(), fred.rn());
}

/// An item listing itself 200 times, resolved three levels deep, would decode eight million
/// items (each occurrence of a reference decodes its item again): the decode stops
/// at korm's budget with a decode error naming the item. One level still resolves.
async fn a_reference_graph_that_repeats_itself_is_cut_off(db: &Db) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Node {
        kids: Vec<Ref<Node>>,
    }
    let node = create(&db.pool, "[rn]:nodes:x:*", Node { kids: Vec::new() }).await;
    let me = node.rn().clone();
    let node = node
        .update(|n| n.kids = (0..200).map(|_| Ref::new(me.clone())).collect())
        .commit()
        .await
        .expect("commit");
    let one = korm::item::<Node>(&db.pool)
        .load(node.rn().clone())
        .resolve(["kids[*]"])
        .get()
        .await
        .expect("one level");
    assert_eq!(one.data().kids.len(), 200);
    let err = korm::item::<Node>(&db.pool)
        .load(node.rn().clone())
        .resolve(["kids[*].kids[*].kids[*]"])
        .get()
        .await
        .expect_err("eight million decodes");
    match &err {
        Error::Decode { rn, reason } => {
            assert_eq!(rn, node.rn().as_str());
            assert!(reason.contains("decode more than"), "{reason}");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

crate::on_backends!(
    garbage_in_a_reference_column_is_a_decode_error_naming_the_item,
    a_referenced_row_that_does_not_fit_is_a_decode_error,
    a_reference_graph_that_repeats_itself_is_cut_off,
);
