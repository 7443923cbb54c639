//! The pool page: layers, depots, collections with their row counts and columns, and the
//! reference graph.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hyper::StatusCode;
use korm::CollectionInfo;
use serde_json::{Map, Value};

use super::graph::{self, Edge, Node};
use super::html::{Url, escape, link};
use super::values::item_rns;
use super::{Reply, Studio};

/// How many items of each collection the graph samples.
const SAMPLE: u64 = 200;

/// The collection RN of an inspected table, when its name says it.
pub(crate) fn collection_rn(c: &CollectionInfo) -> Option<String> {
    c.collection
        .as_ref()
        .map(|name| format!("[rn][from::{}]:{name}:*", c.layer))
}

/// `GET /`.
pub(crate) async fn page(studio: &Studio) -> korm::Result<Reply> {
    let found = studio.inspect().await?;
    let pool = studio.pool();
    let mut body = String::from("<h1>Pool</h1>");

    body.push_str(r#"<section id="layers"><h2>Layers</h2><ul>"#);
    for name in pool.layer_names() {
        let tables = found.iter().filter(|c| c.layer == name).count();
        let _ = write!(
            body,
            r#"<li><span class="layer">{}</span> <span class="muted">{tables} collection(s)</span></li>"#,
            escape(name)
        );
    }
    body.push_str("</ul></section>");

    body.push_str(r#"<section id="depots"><h2>Depots</h2>"#);
    let depots: Vec<&str> = pool.depot_names().collect();
    if depots.is_empty() {
        body.push_str(r#"<p class="muted">none (add --depot NAME=PATH)</p>"#);
    } else {
        body.push_str("<ul>");
        for name in depots {
            let url = Url::new("/depot").with("name", name);
            let _ = write!(body, "<li>{}</li>", link("depot", &url, name));
        }
        body.push_str("</ul>");
    }
    body.push_str("</section>");

    body.push_str(
        r#"<section><h2>Collections</h2><table id="collections"><thead><tr><th>collection</th><th>layer</th><th>rows</th><th>columns</th></tr></thead><tbody>"#,
    );
    for c in found.iter() {
        let name = match collection_rn(c) {
            Some(rn) => link("collection", &Url::new("/collection").with("rn", &rn), &rn),
            None => format!(r#"<span class="table">{}</span>"#, escape(&c.table)),
        };
        let columns: Vec<String> = c
            .columns
            .iter()
            .map(|col| {
                let unique = if col.unique { " unique" } else { "" };
                format!(
                    r#"<span class="col{unique}">{}</span> <span class="kind">{}</span>"#,
                    escape(&col.name),
                    escape(col.kind.name())
                )
            })
            .collect();
        let _ = write!(
            body,
            r#"<tr><td>{name}</td><td>{}</td><td class="rows">{}</td><td>{}</td></tr>"#,
            escape(&c.layer),
            c.rows,
            columns.join(", ")
        );
    }
    body.push_str("</tbody></table></section>");

    let (nodes, edges) = references(studio, &found).await?;
    let _ = write!(
        body,
        r#"<section><h2>References</h2><p class="muted">From up to {SAMPLE} items of each collection: an arrow from a collection to each collection its items name by RN.</p>{}</section>"#,
        graph::svg(&nodes, &edges)
    );
    Ok(studio.page(StatusCode::OK, "pool", &body))
}

/// The graph's nodes (collections) and edges (sampled references between them).
async fn references(
    studio: &Studio,
    found: &[CollectionInfo],
) -> korm::Result<(Vec<Node>, Vec<Edge>)> {
    let listed: Vec<(&CollectionInfo, String)> = found
        .iter()
        .filter_map(|c| collection_rn(c).map(|rn| (c, rn)))
        .collect();
    let nodes: Vec<Node> = listed
        .iter()
        .map(|(c, rn)| Node {
            rn: rn.clone(),
            label: format!(
                "{} {}",
                c.layer,
                c.collection.as_deref().unwrap_or_default()
            ),
        })
        .collect();
    let single = studio.opened().single_file();
    let target = |rn: &korm::Rn| -> Option<usize> {
        let name = format!("{}:{}", rn.namespace()?, rn.kind()?);
        let same_name = |c: &CollectionInfo| c.collection.as_deref() == Some(name.as_str());
        listed
            .iter()
            .position(|(c, _)| same_name(c) && (single || rn.layer().is_none_or(|l| l == c.layer)))
    };
    let mut counts: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (from, (_, rn)) in listed.iter().enumerate() {
        let items = korm::item::<Map<String, Value>>(studio.pool())
            .query(studio.opened().rn(rn)?)
            .limit(SAMPLE)
            .get()
            .await?;
        let mut rns = Vec::new();
        for item in &items {
            for value in item.data().values() {
                item_rns(value, &mut rns);
            }
        }
        for rn in rns.drain(..) {
            if let Some(to) = target(&rn)
                && to != from
            {
                *counts.entry((from, to)).or_default() += 1;
            }
        }
    }
    let edges = counts
        .into_iter()
        .map(|((from, to), count)| Edge { from, to, count })
        .collect();
    Ok((nodes, edges))
}
