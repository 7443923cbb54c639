//! The item page: its fields, RNs as links, secrets as `<encrypted>`, unique fields marked;
//! with `--allow-writes`, the edit and delete forms and their POSTs.
//!
//! A form carries the version of the item it showed (the SHA-256 of its data as loaded). A
//! POST loads the item again and writes only if that version still holds, and the write
//! itself is conditional on the loaded values (korm's conflict check), so an edit made on a
//! stale page is refused with a Conflict page and nothing is written.

use std::fmt::Write as _;

use hyper::StatusCode;
use korm::{CollectionInfo, Error, Item};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::html::{Url, escape};
use super::values::{Render, holds_envelope, redacted};
use super::{Params, Reply, Studio, redirect};

type Data = Map<String, Value>;

/// The version an edit form carries: the SHA-256 (hex) of the item's data as loaded.
fn version(data: &Data) -> String {
    let json = serde_json::to_vec(data).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// The item at `rn`, in whatever layer it lives: an RN without a `from` mod, in a pool of
/// several layers, is looked for in each layer that has its collection.
async fn load(studio: &Studio, rn: &str) -> korm::Result<Item<Data>> {
    let rn = studio.opened().rn(rn)?;
    let items = korm::item::<Data>(studio.pool());
    match items.load(rn.clone()).get().await {
        Err(unnamed @ Error::LayerNotNamed { .. }) => {
            let name = format!(
                "{}:{}",
                rn.namespace().unwrap_or_default(),
                rn.kind().unwrap_or_default()
            );
            let found = studio.inspected().await?;
            for c in found
                .iter()
                .filter(|c| c.collection.as_deref() == Some(name.as_str()))
            {
                match items.load(rn.with_layer(&c.layer)?).get().await {
                    Err(Error::NotFound { .. }) => continue,
                    other => return other,
                }
            }
            Err(unnamed)
        }
        other => other,
    }
}

/// The item's collection as inspected (`fresh`: inspected now, else as last inspected).
async fn collection_of(
    studio: &Studio,
    item: &Item<Data>,
    fresh: bool,
) -> korm::Result<Option<CollectionInfo>> {
    let rn = item.rn();
    let (Some(namespace), Some(kind)) = (rn.namespace(), rn.kind()) else {
        return Ok(None);
    };
    let name = format!("{namespace}:{kind}");
    let found = if fresh {
        studio.inspect().await?
    } else {
        studio.inspected().await?
    };
    let single = studio.opened().single_file() || studio.pool().layer_names().count() == 1;
    Ok(found
        .iter()
        .find(|c| {
            c.collection.as_deref() == Some(name.as_str())
                && (single || rn.layer().is_none_or(|l| l == c.layer))
        })
        .cloned())
}

/// The fields of the item's collection that are unique (from the last inspection).
async fn unique_fields(studio: &Studio, item: &Item<Data>) -> Vec<String> {
    match collection_of(studio, item, false).await {
        Ok(Some(c)) => c
            .columns
            .iter()
            .filter(|col| col.unique)
            .map(|col| col.name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// `GET /item?rn=RN`.
pub(crate) async fn page(studio: &Studio, params: &Params) -> korm::Result<Reply> {
    let rn = params.need("rn")?;
    let item = load(studio, rn).await?;
    let unique = unique_fields(studio, &item).await;
    let shown = item.rn().as_str();
    let collection = item.rn().collection();
    let mut body = format!(
        r#"<h1 id="rn">{}</h1><p>in {}</p>"#,
        escape(shown),
        super::html::link(
            "collection",
            &Url::new("/collection").with("rn", collection.as_str()),
            collection.as_str()
        )
    );
    if studio.reveal_asked && studio.reveal.is_none() {
        body.push_str(
            r#"<p class="muted">--allow-reveal was given, but KORM_ENCRYPTION_KEY is not set: encrypted values stay hidden.</p>"#,
        );
    }
    body.push_str(
        r#"<table id="fields"><thead><tr><th>field</th><th>value</th></tr></thead><tbody>"#,
    );
    let render = Render {
        reveal: studio.reveal.as_deref(),
    };
    for (name, value) in item.data() {
        let class = if unique.contains(name) {
            "field unique"
        } else {
            "field"
        };
        let _ = write!(
            body,
            r#"<tr class="{class}"><td class="name">{}</td><td class="value">{}</td></tr>"#,
            escape(name),
            render.value(value)
        );
    }
    body.push_str("</tbody></table>");
    if studio.writes {
        let editable: Data = item
            .data()
            .iter()
            .map(|(k, v)| (k.clone(), redacted(v)))
            .collect();
        let json = serde_json::to_string_pretty(&editable).unwrap_or_default();
        let loaded = version(item.data());
        let post = Url::new("/item").with("rn", shown);
        let delete = Url::new("/item/delete").with("rn", shown);
        let _ = write!(
            body,
            r#"<h2>Edit</h2><p class="muted">The item's data as JSON. Encrypted values show as "&lt;encrypted&gt;": left so, they are kept as stored; a field taken out is set to null.</p><form id="edit" method="post" action="{}"><input type="hidden" name="loaded" value="{loaded}"><textarea name="data" spellcheck="false">{}</textarea><p><button id="save" type="submit">save</button></p></form><form id="delete" method="post" action="{}"><input type="hidden" name="loaded" value="{loaded}"><button id="delete-item" type="submit">delete this item</button></form>"#,
            post.href(),
            escape(&json),
            delete.href()
        );
    }
    Ok(studio.page(StatusCode::OK, shown, &body))
}

/// The page saying an edit or delete came from a stale page.
fn conflict(studio: &Studio, rn: &str, detail: &str) -> Reply {
    let url = Url::new("/item").with("rn", rn);
    let body = format!(
        r#"<h1 id="conflict">Conflict</h1><p class="error">{}</p><p>Nothing was written. <a id="reload" href="{}">Load the item again</a> to see what it holds now.</p>"#,
        escape(detail),
        url.href()
    );
    studio.page(StatusCode::CONFLICT, "conflict", &body)
}

fn bad_request(studio: &Studio, what: &str) -> Reply {
    let body = format!(
        r#"<h1>Not saved</h1><p class="error" id="error">{}</p><p>Nothing was written.</p>"#,
        escape(what)
    );
    studio.page(StatusCode::BAD_REQUEST, "not saved", &body)
}

/// The item a write form names, as its page showed it: `Err` with a Conflict page when it
/// changed since the page loaded it (`loaded`, the form's version of the data).
async fn as_shown(
    studio: &Studio,
    rn: &str,
    loaded: &str,
) -> korm::Result<std::result::Result<Item<Data>, Reply>> {
    let item = load(studio, rn).await?;
    if version(item.data()) != loaded {
        return Ok(Err(conflict(
            studio,
            rn,
            "the item changed since this page loaded it",
        )));
    }
    Ok(Ok(item))
}

/// `POST /item?rn=RN` (form: `data`, `loaded`).
pub(crate) async fn edit(studio: &Studio, params: &Params, form: &Params) -> korm::Result<Reply> {
    let rn = params.need("rn")?;
    let loaded = form.need("loaded")?;
    let mut data: Data = match serde_json::from_str::<Value>(form.get("data").unwrap_or("")) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Ok(bad_request(studio, "the data must be a JSON object")),
        Err(e) => return Ok(bad_request(studio, &format!("the data is not JSON: {e}"))),
    };
    let item = match as_shown(studio, rn, loaded).await? {
        Ok(item) => item,
        Err(changed) => return Ok(changed),
    };
    // An encrypted value left as the page showed it keeps what is stored; the studio never
    // writes an encrypted field's value in the clear.
    for (name, value) in data.iter_mut() {
        if let Some(stored) = item.data().get(name)
            && holds_envelope(stored)
        {
            if *value == redacted(stored) {
                *value = stored.clone();
            } else {
                return Ok(bad_request(
                    studio,
                    &format!(
                        "field {name} is encrypted: the studio does not write encrypted values \
                         (leave it as the page shows it)"
                    ),
                ));
            }
        }
    }
    // A column that stores encrypted values takes no cleartext either, even where this item
    // holds none (null or missing).
    if let Some(collection) = collection_of(studio, &item, true).await? {
        for column in &collection.columns {
            let encrypted = column.kind == korm::ColumnKind::Encrypted;
            let Some(value) = data.get(&column.name) else {
                continue;
            };
            if encrypted && !value.is_null() && item.data().get(&column.name) != Some(value) {
                return Ok(bad_request(
                    studio,
                    &format!(
                        "field {} is encrypted: the studio does not write encrypted values",
                        column.name
                    ),
                ));
            }
        }
    }
    // A commit writes the fields that changed; a field taken out of the JSON is meant to be
    // emptied, so it is written as null rather than left as it was.
    for name in item.data().keys() {
        if !data.contains_key(name) {
            data.insert(name.clone(), Value::Null);
        }
    }
    let shown = item.rn().as_str().to_owned();
    match item.replace(data).commit().await {
        Ok(_) => Ok(redirect(Url::new("/item").with("rn", &shown).as_str())),
        Err(Error::Conflict { .. }) => Ok(conflict(
            studio,
            rn,
            "another writer changed the item while it was being saved",
        )),
        Err(e) => Err(e),
    }
}

/// `POST /item/delete?rn=RN` (form: `loaded`).
pub(crate) async fn delete(studio: &Studio, params: &Params, form: &Params) -> korm::Result<Reply> {
    let rn = params.need("rn")?;
    let loaded = form.need("loaded")?;
    let item = match as_shown(studio, rn, loaded).await? {
        Ok(item) => item,
        Err(changed) => return Ok(changed),
    };
    let collection = item.rn().collection().as_str().to_owned();
    match item.delete().await {
        Ok(_) => Ok(redirect(
            Url::new("/collection").with("rn", &collection).as_str(),
        )),
        Err(Error::Conflict { .. }) => Ok(conflict(
            studio,
            rn,
            "another writer changed the item while it was being deleted",
        )),
        Err(e) => Err(e),
    }
}
