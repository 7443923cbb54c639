//! References within one layer (X1-X4, Q4, K1, K3): resolve paths, filters and sorts through
//! references (planned as semi-joins in the layer's own SQL), strict mode and cascades.

use korm::{Error, Item, Pool, Ref, Rn, SortOrder, eq, gt, in_list, like, not, or};
use serde::{Deserialize, Serialize};

const CITIES: &str = "[rn]:geo:city:*";
const PEOPLE: &str = "[rn]:users:free:*";
const CARS: &str = "[rn]:cars:suv:*";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct City {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    label: String,
    city: Ref<City>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Person {
    username: String,
    age: Option<i64>,
    home: Option<Ref<City>>,
    addresses: Vec<Address>,
    friend: Option<Ref<Person>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Car {
    make: String,
    year: i64,
    owner: Ref<Person>,
    #[serde(rename = "previousOwners")]
    previous_owners: Vec<Ref<Person>>,
}

struct World {
    bedrock: Rn<City>,
    vegas: Rn<City>,
    fred: Rn<Person>,
    barney: Rn<Person>,
    wilma: Rn<Person>,
    car1: Rn<Car>,
    car2: Rn<Car>,
    car3: Rn<Car>,
}

fn rn<T>(text: &str) -> Rn<T> {
    text.parse().expect("valid rn")
}

async fn world(pool: &Pool) -> World {
    let cities = korm::item::<City>(pool);
    let city = |name: &str| City { name: name.into() };
    let bedrock = cities.from_data(rn(CITIES), city("Bedrock")).unwrap();
    let bedrock = bedrock.create().await.unwrap().rn().clone();
    let vegas = cities.from_data(rn(CITIES), city("Rock Vegas")).unwrap();
    let vegas = vegas.create().await.unwrap().rn().clone();

    let people = korm::item::<Person>(pool);
    let fred = people
        .from_data(
            rn(PEOPLE),
            Person {
                username: "fred".into(),
                age: Some(41),
                home: Some(Ref::new(bedrock.clone())),
                addresses: vec![
                    Address {
                        label: "home".into(),
                        city: Ref::new(bedrock.clone()),
                    },
                    Address {
                        label: "work".into(),
                        city: Ref::new(vegas.clone()),
                    },
                ],
                friend: None,
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    let barney = people
        .from_data(
            rn(PEOPLE),
            Person {
                username: "barney".into(),
                age: Some(38),
                home: Some(Ref::new(vegas.clone())),
                addresses: Vec::new(),
                friend: Some(Ref::new(fred.rn().clone())),
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    // fred <-> barney: a cycle.
    let fred = fred
        .update(|p| p.friend = Some(Ref::new(barney.rn().clone())))
        .commit()
        .await
        .unwrap();
    let wilma = people
        .from_data(
            rn(PEOPLE),
            Person {
                username: "wilma".into(),
                age: None,
                home: None,
                addresses: Vec::new(),
                friend: None,
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();

    let cars = korm::item::<Car>(pool);
    let car = |year: i64, owner: &Rn<Person>, previous: &[&Rn<Person>]| Car {
        make: "Bedrock Motors".into(),
        year,
        owner: Ref::new(owner.clone()),
        previous_owners: previous.iter().map(|p| Ref::new((*p).clone())).collect(),
    };
    let car1 = cars
        .from_data(rn(CARS), car(2015, fred.rn(), &[barney.rn(), wilma.rn()]))
        .unwrap();
    let car1 = car1.create().await.unwrap().rn().clone();
    let car2 = cars
        .from_data(rn(CARS), car(2020, barney.rn(), &[]))
        .unwrap();
    let car2 = car2.create().await.unwrap().rn().clone();
    let car3 = cars
        .from_data(rn(CARS), car(2018, wilma.rn(), &[fred.rn()]))
        .unwrap();
    let car3 = car3.create().await.unwrap().rn().clone();
    World {
        bedrock,
        vegas,
        fred: fred.rn().clone(),
        barney: barney.rn().clone(),
        wilma: wilma.rn().clone(),
        car1,
        car2,
        car3,
    }
}

fn find<'a>(items: &'a [Item<Car>], rn: &Rn<Car>) -> &'a Car {
    items
        .iter()
        .find(|i| i.rn() == rn)
        .map(Item::data)
        .expect("car in result")
}

fn owner_name(car: &Car) -> Option<&str> {
    car.owner.resolved().map(|p| p.username.as_str())
}

/// X1: `owner`, `owner.*`, `owner.*.*` (through a cycle), `owner.addresses[*].city`,
/// `previousOwners[*]` and `previousOwners[n]`, on queries and on load by RN.
pub async fn references_resolve_along_paths(pool: &Pool) {
    let w = world(pool).await;
    let cars = korm::item::<Car>(pool);

    // Stored as RN strings, unresolved by default.
    let plain = cars.query(rn(CARS)).get().await.unwrap();
    assert_eq!(plain.len(), 3);
    assert!(plain.iter().all(|c| !c.data().owner.is_resolved()));
    assert_eq!(find(&plain, &w.car1).owner.rn(), &w.fred);
    assert_eq!(
        find(&plain, &w.car1).previous_owners[1].rn(),
        &w.wilma,
        "an array of references keeps each RN"
    );

    let found = cars.query(rn(CARS)).resolve(["owner"]).get().await.unwrap();
    let car1 = find(&found, &w.car1);
    assert_eq!(owner_name(car1), Some("fred"));
    let fred = car1.owner.resolved().unwrap();
    assert!(
        !fred.home.as_ref().unwrap().is_resolved(),
        "one hop only: the owner's own references stay RNs"
    );
    assert_eq!(owner_name(find(&found, &w.car2)), Some("barney"));
    assert_eq!(owner_name(find(&found, &w.car3)), Some("wilma"));

    // owner.*: every direct reference of the owner, one more hop.
    let found = cars
        .load(w.car1.clone())
        .resolve(["owner.*"])
        .get()
        .await
        .unwrap();
    let fred = found.data().owner.resolved().expect("owner resolved");
    assert_eq!(
        fred.home
            .as_ref()
            .unwrap()
            .resolved()
            .map(|c| c.name.as_str()),
        Some("Bedrock")
    );
    let barney = fred.friend.as_ref().unwrap().resolved().expect("friend");
    assert_eq!(barney.username, "barney");
    assert!(
        !barney.friend.as_ref().unwrap().is_resolved(),
        "a third hop is not taken by owner.*"
    );

    // owner.*.*: two levels, through the fred <-> barney cycle, and it ends.
    let found = cars
        .load(w.car1.clone())
        .resolve(["owner.*.*"])
        .get()
        .await
        .unwrap();
    let fred = found.data().owner.resolved().unwrap();
    let barney = fred.friend.as_ref().unwrap().resolved().unwrap();
    assert_eq!(
        barney
            .home
            .as_ref()
            .unwrap()
            .resolved()
            .map(|c| c.name.as_str()),
        Some("Rock Vegas")
    );
    let fred_again = barney.friend.as_ref().unwrap().resolved().unwrap();
    assert_eq!(fred_again.username, "fred");
    assert!(
        !fred_again.friend.as_ref().unwrap().is_resolved(),
        "the cycle stops after the hops the path asks for"
    );

    // owner.addresses[*].city: references inside arrays of objects.
    let found = cars
        .load(w.car1.clone())
        .resolve(["owner.addresses[*].city"])
        .get()
        .await
        .unwrap();
    let fred = found.data().owner.resolved().unwrap();
    let names: Vec<Option<&str>> = fred
        .addresses
        .iter()
        .map(|a| a.city.resolved().map(|c| c.name.as_str()))
        .collect();
    assert_eq!(names, [Some("Bedrock"), Some("Rock Vegas")]);
    assert_eq!(fred.addresses[1].city.rn(), &w.vegas);

    // previousOwners[*] and previousOwners[1].
    let found = cars
        .load(w.car1.clone())
        .resolve(["previousOwners[*]"])
        .get()
        .await
        .unwrap();
    let names: Vec<Option<&str>> = found
        .data()
        .previous_owners
        .iter()
        .map(|p| p.resolved().map(|p| p.username.as_str()))
        .collect();
    assert_eq!(names, [Some("barney"), Some("wilma")]);
    assert!(!found.data().owner.is_resolved());

    let found = cars
        .load(w.car1.clone())
        .resolve(["previousOwners[1]"])
        .get()
        .await
        .unwrap();
    let prev = &found.data().previous_owners;
    assert!(!prev[0].is_resolved());
    assert_eq!(prev[1].resolved().unwrap().username, "wilma");

    // Several paths at once, mixed.
    let found = cars
        .query(rn(CARS))
        .filter(eq("year", 2015))
        .resolve(["owner.home", "previousOwners[0]"])
        .get()
        .await
        .unwrap();
    let car1 = &found[0].data();
    let fred = car1.owner.resolved().unwrap();
    assert_eq!(fred.home.as_ref().unwrap().rn(), &w.bedrock);
    assert!(fred.home.as_ref().unwrap().is_resolved());
    assert_eq!(car1.previous_owners[0].rn(), &w.barney);
    assert!(car1.previous_owners[0].is_resolved());
}

/// K3 / X4: a missing referenced item stays unresolved, and strict mode names its RN.
pub async fn missing_references_and_strict_mode(pool: &Pool) {
    let w = world(pool).await;
    let ghost: Rn<Person> = rn::<Person>(PEOPLE).with_id(uuid::Uuid::new_v4()).unwrap();
    let cars = korm::item::<Car>(pool);
    let orphan = cars
        .from_data(
            rn(CARS),
            Car {
                make: "Ghost".into(),
                year: 1999,
                owner: Ref::new(ghost.clone()),
                previous_owners: vec![Ref::new(w.fred.clone())],
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    let loaded = cars
        .load(orphan.rn().clone())
        .resolve(["owner", "previousOwners[*]"])
        .get()
        .await
        .unwrap();
    assert!(!loaded.data().owner.is_resolved(), "left unresolved");
    assert_eq!(loaded.data().owner.rn(), &ghost);
    assert!(loaded.data().previous_owners[0].is_resolved());

    let err = cars
        .load(orphan.rn().clone())
        .resolve(["owner"])
        .strict()
        .get()
        .await
        .unwrap_err();
    match &err {
        Error::MissingReference { rn, .. } => assert_eq!(rn, ghost.as_str()),
        other => panic!("expected MissingReference, got {other:?}"),
    }
    assert!(err.to_string().contains(ghost.as_str()));
    let err = cars
        .query(rn(CARS))
        .resolve(["owner"])
        .strict()
        .get()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingReference { .. }), "{err:?}");
    // Strict without anything missing is fine.
    let ok = cars
        .query(rn(CARS))
        .filter(not(eq("make", "Ghost")))
        .resolve(["owner"])
        .strict()
        .get()
        .await
        .unwrap();
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|c| c.data().owner.is_resolved()));
}

fn rns(items: &[Item<Car>]) -> Vec<Rn<Car>> {
    let mut out: Vec<Rn<Car>> = items.iter().map(|i| i.rn().clone()).collect();
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out
}

fn sorted(mut list: Vec<Rn<Car>>) -> Vec<Rn<Car>> {
    list.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    list
}

/// Q4 / K1: filters through a reference (`owner.username`), combined with and, or, not,
/// in_list, like and a second hop (`owner.home.name`); sorts through a reference.
pub async fn filters_and_sorts_through_references(pool: &Pool) {
    let w = world(pool).await;
    let cars = korm::item::<Car>(pool);
    let q = |f: korm::Filter| cars.query(rn(CARS)).filter(f);

    assert_eq!(
        rns(&q(eq("owner.username", "fred")).get().await.unwrap()),
        vec![w.car1.clone()]
    );
    assert_eq!(
        rns(&q(gt("owner.age", 39)).get().await.unwrap()),
        vec![w.car1.clone()]
    );
    assert_eq!(
        rns(&q(not(eq("owner.username", "fred"))).get().await.unwrap()),
        sorted(vec![w.car2.clone(), w.car3.clone()])
    );
    assert_eq!(
        rns(&q(or([eq("owner.username", "barney"), eq("year", 2018)]))
            .get()
            .await
            .unwrap()),
        sorted(vec![w.car2.clone(), w.car3.clone()])
    );
    assert_eq!(
        rns(&q(in_list("owner.username", ["wilma", "fred"]))
            .get()
            .await
            .unwrap()),
        sorted(vec![w.car1.clone(), w.car3.clone()])
    );
    assert_eq!(
        rns(&q(like("owner.username", "BAR%")).get().await.unwrap()),
        vec![w.car2.clone()]
    );
    // Two hops: the owner's home city.
    assert_eq!(
        rns(&q(eq("owner.home.name", "Rock Vegas")).get().await.unwrap()),
        vec![w.car2.clone()]
    );
    // Through a reference, then into JSON of the referenced item.
    assert_eq!(
        rns(&q(eq("owner.addresses[1].label", "work"))
            .get()
            .await
            .unwrap()),
        vec![w.car1.clone()]
    );
    // Nothing matches: empty, not an error.
    assert!(
        q(eq("owner.username", "nobody"))
            .get()
            .await
            .unwrap()
            .is_empty()
    );
    // A filter through a reference and a resolve together.
    let found = q(eq("owner.username", "barney"))
        .resolve(["owner"])
        .get()
        .await
        .unwrap();
    assert_eq!(owner_name(found[0].data()), Some("barney"));

    // Sort through the reference: wilma has no age (nulls last ascending, first descending).
    let asc = cars
        .query(rn(CARS))
        .sort_by("owner.age", SortOrder::Asc)
        .get()
        .await
        .unwrap();
    let order: Vec<&Rn<Car>> = asc.iter().map(|i| i.rn()).collect();
    assert_eq!(order, [&w.car2, &w.car1, &w.car3]);
    let desc = cars
        .query(rn(CARS))
        .sort_by("owner.age", SortOrder::Desc)
        .get()
        .await
        .unwrap();
    let order: Vec<&Rn<Car>> = desc.iter().map(|i| i.rn()).collect();
    assert_eq!(order, [&w.car3, &w.car1, &w.car2]);
    let top = cars
        .query(rn(CARS))
        .filter(gt("year", 2016))
        .sort_by("owner.username", SortOrder::Asc)
        .first()
        .await
        .unwrap();
    assert_eq!(top.rn(), &w.car2, "barney's car before wilma's");
    let two = cars
        .query(rn(CARS))
        .sort_by("owner.username", SortOrder::Desc)
        .first_n(2)
        .await
        .unwrap();
    let order: Vec<&Rn<Car>> = two.iter().map(|i| i.rn()).collect();
    assert_eq!(order, [&w.car3, &w.car1]);
}

/// X3: a change to a resolved reference is stored in the referenced item when the holder is
/// committed, in the same write; the holder keeps storing the RN string.
pub async fn cascading_updates(pool: &Pool) {
    let w = world(pool).await;
    let cars = korm::item::<Car>(pool);
    let people = korm::item::<Person>(pool);
    let car = cars
        .load(w.car1.clone())
        .resolve(["owner.home"])
        .get()
        .await
        .unwrap();
    let car = car
        .update(|c| {
            let fred = c.owner.resolved_mut().unwrap();
            fred.age = Some(42);
            fred.home.as_mut().unwrap().resolved_mut().unwrap().name = "New Bedrock".into();
            c.year = 2016;
        })
        .commit()
        .await
        .unwrap();
    let fred = people.load(w.fred.clone()).get().await.unwrap();
    assert_eq!(fred.data().age, Some(42), "the owner was updated");
    let city = korm::item::<City>(pool)
        .load(w.bedrock.clone())
        .get()
        .await
        .unwrap();
    assert_eq!(city.data().name, "New Bedrock", "two hops cascade too");
    let plain = cars.load(w.car1.clone()).get().await.unwrap();
    assert_eq!(plain.data().year, 2016);
    assert_eq!(plain.data().owner.rn(), &w.fred, "still the RN string");
    assert!(!plain.data().owner.is_resolved());

    // An unchanged resolved reference writes nothing to the referenced item: change fred
    // elsewhere, commit the car again, and fred keeps the other change.
    people
        .load(w.fred.clone())
        .get()
        .await
        .unwrap()
        .update(|p| p.age = Some(50))
        .commit()
        .await
        .unwrap();
    car.update(|c| c.year = 2017).commit().await.unwrap();
    let fred = people.load(w.fred.clone()).get().await.unwrap();
    assert_eq!(fred.data().age, Some(50), "no cascade without a change");

    // A changed reference back to the item being written is refused before anything is
    // written.
    let barney = people
        .load(w.barney.clone())
        .resolve(["friend.friend"])
        .get()
        .await
        .unwrap();
    let err = barney
        .update(|b| {
            let fred = b.friend.as_mut().unwrap().resolved_mut().unwrap();
            fred.friend.as_mut().unwrap().resolved_mut().unwrap().age = Some(1);
        })
        .commit()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CascadeConflict { .. }), "{err:?}");
    let barney = people.load(w.barney.clone()).get().await.unwrap();
    assert_eq!(barney.data().age, Some(38));
}

/// Bad input through references: unsafe resolve paths, malformed RNs in stored data.
pub async fn hostile_reference_paths(pool: &Pool) {
    let w = world(pool).await;
    let cars = korm::item::<Car>(pool);
    for bad in [
        "owner; DROP TABLE x",
        "owner.\"username\"",
        "owner[0",
        "owner..x",
        "",
        "owner.user-name",
    ] {
        let err = cars.query(rn(CARS)).resolve([bad]).get().await.unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{bad:?}: {err:?}");
    }
    // Options given twice are refused, on queries and on loads.
    let twice = [
        cars.query(rn(CARS))
            .resolve(["owner"])
            .resolve(["owner"])
            .get()
            .await
            .map(|_| ()),
        cars.query(rn(CARS))
            .strict()
            .strict()
            .get()
            .await
            .map(|_| ()),
        cars.load(w.car1.clone())
            .resolve(["owner"])
            .resolve(["x"])
            .get()
            .await
            .map(|_| ()),
        cars.load(w.car1.clone())
            .strict()
            .strict()
            .get()
            .await
            .map(|_| ()),
    ];
    for result in twice {
        assert!(
            matches!(result, Err(Error::InvalidOption { .. })),
            "{result:?}"
        );
    }
    let err = cars
        .query(rn(CARS))
        .filter(eq("owner.username'; DROP TABLE x; --", "x"))
        .get()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
    // An injected value through a reference is a literal.
    assert!(
        cars.query(rn(CARS))
            .filter(eq("owner.username", "' OR 1=1 --"))
            .get()
            .await
            .unwrap()
            .is_empty()
    );
    // A wildcard over data with RN-looking garbage and unsafe keys: left as is.
    #[derive(Debug, Serialize, Deserialize)]
    struct Loose {
        refs: serde_json::Value,
    }
    let loose = korm::item::<Loose>(pool)
        .from_data(
            rn("[rn]:misc:loose:*"),
            Loose {
                refs: serde_json::json!({
                    "bad key": w.fred.as_str(),
                    "garbage": "[rn]:not:an rn",
                    "ok": w.barney.as_str(),
                }),
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    let again = korm::item::<Loose>(pool)
        .load(loose.rn().clone())
        .resolve(["refs.*", "*"])
        .get()
        .await
        .unwrap();
    assert_eq!(again.data().refs["garbage"], "[rn]:not:an rn");
    assert_eq!(again.data().refs["bad key"], w.fred.as_str());
}

/// A filter through a reference beside a filter on an encrypted field: the reference part
/// becomes an RN list, evaluated in SQL or, inside an `or` with the encrypted field, in
/// memory.
pub async fn reference_filters_beside_encrypted_fields(pool: &Pool) {
    crate::suite::install_test_keys();
    #[derive(Debug, Serialize, Deserialize)]
    struct Secretive {
        code: korm::Encrypted<String>,
        owner: Ref<Person>,
    }
    let w = world(pool).await;
    let coll = || rn::<Secretive>("[rn]:misc:secret:*");
    let items = korm::item::<Secretive>(pool);
    for (code, owner) in [("a", &w.fred), ("b", &w.barney), ("c", &w.wilma)] {
        items
            .from_data(
                coll(),
                Secretive {
                    code: korm::Encrypted::new(code.to_owned()),
                    owner: Ref::new(owner.clone()),
                },
            )
            .unwrap()
            .create()
            .await
            .unwrap();
    }
    let codes = |found: Vec<Item<Secretive>>| {
        let mut codes: Vec<String> = found
            .into_iter()
            .map(|i| i.data().code.reveal().clone())
            .collect();
        codes.sort();
        codes
    };
    let found = items
        .query(coll())
        .filter(korm::and([eq("owner.username", "fred"), eq("code", "a")]))
        .get()
        .await
        .unwrap();
    assert_eq!(codes(found), ["a"]);
    let found = items
        .query(coll())
        .filter(or([eq("owner.username", "barney"), eq("code", "c")]))
        .get()
        .await
        .unwrap();
    assert_eq!(codes(found), ["b", "c"]);
    let found = items
        .query(coll())
        .filter(not(or([eq("owner.home.name", "Bedrock"), eq("code", "c")])))
        .get()
        .await
        .unwrap();
    assert_eq!(codes(found), ["b"]);
}

/// Missing is null through references too: `eq("owner.x", null)` holds where the owner has
/// no `x`, where there is no owner, and where the owner does not exist. A text column that
/// holds no RNs keeps the semantics of a path into a scalar.
pub async fn null_and_missing_through_references(pool: &Pool) {
    let w = world(pool).await;
    let ghost = rn::<Person>(PEOPLE).with_id(uuid::Uuid::new_v4()).unwrap();
    #[derive(Debug, Serialize, Deserialize)]
    struct Holder {
        label: String,
        owner: Option<Ref<Person>>,
        note: Option<String>,
    }
    let coll = || rn::<Holder>("[rn]:misc:holder:*");
    let holders = korm::item::<Holder>(pool);
    for (label, owner, note) in [
        ("wilma", Some(&w.wilma), Some("plain text")),
        ("fred", Some(&w.fred), None),
        ("nobody", None, Some("p")),
        ("ghost", Some(&ghost), None),
    ] {
        holders
            .from_data(
                coll(),
                Holder {
                    label: label.into(),
                    owner: owner.map(|o| Ref::new(o.clone())),
                    note: note.map(str::to_owned),
                },
            )
            .unwrap()
            .create()
            .await
            .unwrap();
    }
    let labels = |found: Vec<Item<Holder>>| {
        let mut labels: Vec<String> = found.into_iter().map(|h| h.into_data().label).collect();
        labels.sort();
        labels
    };
    let q = |f: korm::Filter| holders.query(coll()).filter(f).get();
    // wilma has no age; nobody has no owner; ghost's owner does not exist.
    assert_eq!(
        labels(q(eq("owner.age", serde_json::Value::Null)).await.unwrap()),
        ["ghost", "nobody", "wilma"]
    );
    assert_eq!(
        labels(
            q(not(eq("owner.age", serde_json::Value::Null)))
                .await
                .unwrap()
        ),
        ["fred"]
    );
    assert_eq!(
        labels(q(gt("owner.age", 0)).await.unwrap()),
        ["fred"],
        "a comparison never matches a missing value"
    );
    // `note` is a text column holding no RNs: paths into it reach nothing.
    assert_eq!(
        labels(q(eq("note.x", serde_json::Value::Null)).await.unwrap()),
        ["fred", "ghost", "nobody", "wilma"]
    );
    assert_eq!(
        labels(q(not(eq("note[0]", "p"))).await.unwrap()),
        ["fred", "ghost", "nobody", "wilma"]
    );
}

/// A changed resolved reference inside an object field that also holds a null (a `None`):
/// the field is walked a second time for non-finite floats, and the cascade it records must
/// not be recorded twice (it failed with `CascadeConflict`).
pub async fn a_cascade_beside_a_null_inside_an_object(pool: &Pool) {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Badge {
        city: Ref<City>,
        note: Option<String>,
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Holder {
        name: String,
        badge: Badge,
    }
    let city = korm::item::<City>(pool)
        .from_data(
            CITIES.parse().unwrap(),
            City {
                name: "Bedrock".into(),
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    let holder = korm::item::<Holder>(pool)
        .from_data(
            "[rn]:badges:all:*".parse().unwrap(),
            Holder {
                name: "fred".into(),
                badge: Badge {
                    city: Ref::new(city.rn().clone()),
                    note: None,
                },
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    korm::item::<Holder>(pool)
        .load(holder.rn().clone())
        .resolve(["badge.city"])
        .get()
        .await
        .unwrap()
        .update(|h| h.badge.city.resolved_mut().unwrap().name = "New Bedrock".into())
        .commit()
        .await
        .expect("the cascade lands once");
    let city = korm::item::<City>(pool)
        .load(city.rn().clone())
        .get()
        .await
        .unwrap();
    assert_eq!(city.data().name, "New Bedrock");
}
