//! The collection page: items in a table, with the CLI's filter grammar, sorting by column,
//! keyset paging ([`korm::Query::page`], the cursor in the URL) and a count.

use std::fmt::Write as _;

use hyper::StatusCode;
use korm::{Cursor, Query};
use serde_json::{Map, Value};

use super::html::{Url, escape, link};
use super::values::{Render, is_envelope};
use super::{Params, Reply, Studio};

/// Items a page.
const PAGE: u64 = 50;

/// `GET /collection?rn=RN&filter=F&sort=S&after=CURSOR`.
pub(crate) async fn page(studio: &Studio, params: &Params) -> korm::Result<Reply> {
    let rn_text = params.need("rn")?;
    let filter = params.get("filter");
    let sort = params.get("sort");
    let after = params.get("after");
    let mut body = format!(
        r#"<h1 id="rn">{}</h1><form id="filter" method="get" action="/collection"><input type="hidden" name="rn" value="{}"><input name="filter" placeholder='filter, e.g. year &gt; 2000 and meta.tier = "gold"' value="{}"><input name="sort" placeholder="sort, e.g. -year,make" value="{}"><button id="apply" type="submit">apply</button></form>"#,
        escape(rn_text),
        escape(rn_text),
        escape(filter.unwrap_or_default()),
        escape(sort.unwrap_or_default()),
    );
    match table(studio, rn_text, filter, sort, after).await {
        Ok(table) => {
            body.push_str(&table);
            Ok(studio.page(StatusCode::OK, rn_text, &body))
        }
        Err(e) => {
            // The form stays, with what was wrong (a filter's mistake says where).
            let _ = write!(
                body,
                r#"<p class="error" id="error">{}</p>"#,
                escape(&e.to_string())
            );
            let status = match e {
                korm::Error::NotFound { .. } => StatusCode::NOT_FOUND,
                korm::Error::Database { .. } | korm::Error::Decode { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            };
            Ok(studio.page(status, rn_text, &body))
        }
    }
}

/// The count, the table and the pager.
async fn table(
    studio: &Studio,
    rn_text: &str,
    filter: Option<&str>,
    sort: Option<&str>,
    after: Option<&str>,
) -> korm::Result<String> {
    let rn = studio.opened().rn(rn_text)?;
    let sort_keys = match sort {
        Some(sort) => korm::query::parse_sort(sort)?,
        None => Vec::new(),
    };
    let filter_parsed = filter.map(korm::query::parse_filter).transpose()?;
    let query = || -> Query<Map<String, Value>> {
        let mut query = korm::item::<Map<String, Value>>(studio.pool()).query(rn.clone());
        if let Some(f) = &filter_parsed {
            query = query.filter(f.clone());
        }
        for (path, order) in &sort_keys {
            query = query.sort_by(path, *order);
        }
        query
    };
    let count = query().count().await?;
    let mut paged = query();
    if let Some(after) = after {
        paged = paged.after(&after.parse::<Cursor>()?);
    }
    let page = paged.page(PAGE).await?;

    // The columns: every top-level field of the page's items, in the order first seen.
    let mut columns: Vec<&str> = Vec::new();
    for item in &page.items {
        for key in item.data().keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let base = Url::new("/collection").with("rn", rn_text);
    let here = base.clone().with_some("filter", filter);
    let mut out = format!(
        r#"<p><span id="count">{count}</span> matching item(s){}</p><table id="items"><thead><tr><th>id</th>"#,
        if page.items.is_empty() {
            ""
        } else {
            ", 50 a page"
        }
    );
    let current = sort.unwrap_or_default();
    for column in &columns {
        // Encrypted values can not be sorted (the database sees only their envelopes).
        let encrypted = page
            .items
            .iter()
            .any(|item| item.data().get(*column).is_some_and(is_envelope));
        if encrypted {
            let _ = write!(
                out,
                r#"<th class="encrypted-column">{}</th>"#,
                escape(column)
            );
            continue;
        }
        let (next, mark) = if current == *column {
            (format!("-{column}"), " ▲")
        } else if current == format!("-{column}") {
            ((*column).to_owned(), " ▼")
        } else {
            ((*column).to_owned(), "")
        };
        let url = here.clone().with("sort", &next);
        let _ = write!(out, "<th>{}{mark}</th>", link("sort", &url, column));
    }
    out.push_str("</tr></thead><tbody>");
    let render = Render { reveal: None };
    for item in &page.items {
        let item_rn = item.rn().as_str();
        let id = item.rn().id().unwrap_or(item_rn);
        let _ = write!(
            out,
            r#"<tr class="item"><td>{}</td>"#,
            link("item", &Url::new("/item").with("rn", item_rn), id)
        );
        for column in &columns {
            let cell = item
                .data()
                .get(*column)
                .map(|v| render.cell(v))
                .unwrap_or_default();
            let _ = write!(out, r#"<td class="cell">{cell}</td>"#);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    let sorted = here.clone().with_some("sort", sort);
    out.push_str(r#"<div class="pager">"#);
    let _ = write!(
        out,
        r#"<a id="first" href="{}">first page</a>"#,
        sorted.href()
    );
    if let Some(next) = &page.next {
        let url = sorted.clone().with("after", &next.to_string());
        let _ = write!(out, r#"<a id="next" href="{}">next page →</a>"#, url.href());
    }
    out.push_str("</div>");
    Ok(out)
}
