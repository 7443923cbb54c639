//! Depot pages: a prefix listing, a file's page (text or image preview) and its bytes.
//!
//! A file's bytes are served as `text/plain` (text), an image type (by extension, for the
//! preview) or `application/octet-stream`, never as HTML or SVG, with a sandboxing CSP: a
//! hostile file can not run in the studio's origin.

use std::fmt::Write as _;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::StatusCode;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use korm::depots::DepotKey;
use korm::{Error, Rn, RnForm};

use super::html::{Url, encode, escape, link};
use super::{Params, Reply, Studio, respond};

/// How many bytes of a text file its page shows.
const PREVIEW: usize = 64 * 1024;

/// The most entries a listing shows.
const MAX_ENTRIES: usize = 2000;

/// `GET /depot?name=NAME&prefix=P`.
pub(crate) async fn listing(studio: &Studio, params: &Params) -> korm::Result<Reply> {
    let name = params.need("name")?;
    let depot = studio.pool().depot(name)?;
    let prefix = match params.get("prefix") {
        Some(p) => DepotKey::parse(p.trim_matches('/'))?.outside_korm_files()?,
        None => DepotKey::root(),
    };
    // One level only: the store lists the folders and files directly under the prefix.
    let level = depot.list_level(&prefix).await?;
    let (folders, here) = (&level.folders, &level.files);
    let mut body = format!(r#"<h1>depot {}</h1><p class="crumbs">"#, escape(name));
    let mut crumb = String::new();
    body.push_str(&link("crumb", &Url::new("/depot").with("name", name), name));
    for segment in prefix.segments() {
        if !crumb.is_empty() {
            crumb.push('/');
        }
        crumb.push_str(segment);
        let url = Url::new("/depot").with("name", name).with("prefix", &crumb);
        let _ = write!(body, " / {}", link("crumb", &url, segment));
    }
    let _ = write!(
        body,
        r#"</p><p class="muted">{} folder(s), {} file(s) here</p><ul id="entries">"#,
        folders.len(),
        here.len()
    );
    for folder in folders.iter().take(MAX_ENTRIES) {
        let url = Url::new("/depot")
            .with("name", name)
            .with("prefix", prefix.child(folder)?.as_str());
        let _ = write!(
            body,
            "<li>📁 {}</li>",
            link("entry folder", &url, &format!("{folder}/"))
        );
    }
    for key in here.iter().take(MAX_ENTRIES) {
        let rn = key.to_rn(name)?;
        let url = Url::new("/file").with("rn", rn.as_str());
        let last = key.segments().last().unwrap_or_default();
        let _ = write!(body, "<li>{}</li>", link("entry file", &url, last));
    }
    body.push_str("</ul>");
    if folders.len() + here.len() > 2 * MAX_ENTRIES {
        body.push_str(r#"<p class="muted">(cut: too many entries)</p>"#);
    }
    Ok(studio.page(StatusCode::OK, &format!("depot {name}"), &body))
}

/// The depot and key of a depot file RN.
fn locate(studio: &Studio, params: &Params) -> korm::Result<(Rn, DepotKey)> {
    let rn: Rn = params.need("rn")?.parse()?;
    if rn.form() != RnForm::DepotFile {
        return Err(Error::WrongRnForm {
            rn: rn.to_string(),
            reason: "a depot file rn ([rn][depot::name]:path:file) is needed".to_owned(),
        });
    }
    // korm's own files (backups, the WAL: whole rows, password hashes) are not shown.
    let key = DepotKey::from_rn(&rn)?.outside_korm_files()?;
    studio.pool().depot(rn.depot().unwrap_or_default())?;
    Ok((rn, key))
}

/// The image type of a file name, when the page may preview it as an image.
fn image_type(key: &DepotKey) -> Option<&'static str> {
    let name = key.as_str().to_ascii_lowercase();
    let ext = name.rsplit_once('.')?.1.to_owned();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        _ => return None,
    })
}

/// Whether the start of a file looks like text: UTF-8 (a character cut at the end allowed)
/// without NUL bytes.
fn looks_like_text(start: &[u8]) -> bool {
    if start.contains(&0) {
        return false;
    }
    match std::str::from_utf8(start) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && start.len() - e.valid_up_to() < 4,
    }
}

/// Up to `limit` bytes from the start of a file.
async fn head(studio: &Studio, rn: &Rn, key: &DepotKey, limit: usize) -> korm::Result<Vec<u8>> {
    let depot = studio.pool().depot(rn.depot().unwrap_or_default())?;
    let mut stream = depot.get(key).await?;
    let mut out = Vec::new();
    while out.len() < limit {
        match stream.next().await {
            Some(chunk) => out.extend_from_slice(&chunk?),
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// `GET /file?rn=DEPOT_RN`.
pub(crate) async fn file(studio: &Studio, params: &Params) -> korm::Result<Reply> {
    let (rn, key) = locate(studio, params)?;
    let depot_name = rn.depot().unwrap_or_default().to_owned();
    let size = studio.pool().depot(&depot_name)?.size(&key).await?;
    let Some(size) = size else {
        return Err(Error::FileNotFound {
            depot: depot_name,
            key: key.as_str().to_owned(),
        });
    };
    let raw = Url::new("/file/raw").with("rn", rn.as_str());
    let folder: Vec<&str> = key.segments().collect();
    let folder = folder[..folder.len().saturating_sub(1)].join("/");
    let mut body = format!(
        r#"<h1 id="rn">{}</h1><p>{} bytes in depot {} · <a id="download" href="{}">download</a></p>"#,
        escape(rn.as_str()),
        size,
        link(
            "depot",
            &Url::new("/depot")
                .with("name", &depot_name)
                .with_some("prefix", Some(folder.as_str())),
            &depot_name
        ),
        raw.href()
    );
    if image_type(&key).is_some() {
        let inline = raw.clone().with("inline", "1");
        let _ = write!(
            body,
            r#"<p><img id="preview" src="{}" alt="{}"></p>"#,
            inline.href(),
            escape(key.segments().last().unwrap_or_default())
        );
    } else {
        let start = head(studio, &rn, &key, PREVIEW).await?;
        if looks_like_text(&start) {
            let text = String::from_utf8_lossy(&start);
            let cut = if (size as usize) > start.len() {
                format!(r#"<p class="muted">the first {} bytes</p>"#, start.len())
            } else {
                String::new()
            };
            let _ = write!(body, r#"{cut}<pre id="text">{}</pre>"#, escape(&text));
        } else {
            body.push_str(r#"<p class="muted">binary file: no preview</p>"#);
        }
    }
    Ok(studio.page(StatusCode::OK, rn.as_str(), &body))
}

/// `GET /file/raw?rn=DEPOT_RN[&inline=1]`: the bytes, streamed.
pub(crate) async fn raw(studio: &Studio, params: &Params) -> korm::Result<Reply> {
    let (rn, key) = locate(studio, params)?;
    let depot = studio.pool().depot(rn.depot().unwrap_or_default())?;
    let mut stream = depot.get(&key).await?;
    let first = match stream.next().await {
        Some(chunk) => chunk?,
        None => Bytes::new(),
    };
    let content_type = match image_type(&key) {
        Some(image) => image,
        None if looks_like_text(&first) => "text/plain; charset=utf-8",
        None => "application/octet-stream",
    };
    let mut reply = respond(StatusCode::OK, content_type, Bytes::new());
    let rest = stream.map_err(|e| std::io::Error::other(e.to_string()));
    let chunks = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(first) })
        .chain(rest)
        .map_ok(Frame::data);
    *reply.body_mut() = BodyExt::boxed_unsync(StreamBody::new(chunks));
    if let Ok(Some(size)) = depot.size(&key).await
        && let Ok(value) = HeaderValue::from_str(&size.to_string())
    {
        reply.headers_mut().insert(header::CONTENT_LENGTH, value);
    }
    let name = key.segments().last().unwrap_or("file").to_owned();
    // The plain name keeps to characters no header or quote can misread; the full name
    // goes percent-encoded (RFC 6266).
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let how = if params.get("inline") == Some("1") {
        "inline"
    } else {
        "attachment"
    };
    let disposition = format!(
        "{how}; filename=\"{plain}\"; filename*=UTF-8''{}",
        encode(&name)
    );
    let headers = reply.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utf8_without_nul_and_a_cut_character_is_allowed() {
        assert!(looks_like_text(b"hello\n"));
        assert!(looks_like_text("été".as_bytes()));
        assert!(looks_like_text(&"été".as_bytes()[..2]));
        assert!(!looks_like_text(b"a\0b"));
        assert!(!looks_like_text(&[0x89, b'P', b'N', b'G']));
    }
}
