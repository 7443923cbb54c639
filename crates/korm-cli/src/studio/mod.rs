//! `korm studio`: a local web page to look at a pool, follow its references, see its files,
//! its WAL and its backups.
//!
//! A request goes through four steps, in this order:
//! 1. hyper reads it from a connection to 127.0.0.1 (the studio listens there only);
//! 2. the [`guard`] checks the Host header, the token or cookie, and a POST's Origin;
//! 3. a POST is refused unless the studio runs with `--allow-writes`;
//! 4. the router hands it to the page it names ([`pool`], [`collection`], [`item`],
//!    [`depot`], [`maintenance`]), which renders HTML with every value from the data
//!    escaped ([`html`], [`values`]).
//!
//! Pages read through the library as `korm get` and `korm query` do; edits and deletes go
//! through the one write path, conditional on the item being as the page showed it.

mod collection;
mod depot;
mod graph;
mod guard;
mod html;
mod item;
mod maintenance;
mod pool;
mod values;

use std::convert::Infallible;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::Args;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use korm::{CollectionInfo, Error};
use percent_encoding::percent_decode_str;

use crate::data::{Opened, PoolArgs};
use guard::{Asked, Guard, Verdict};
use html::{Nav, escape};

/// `korm studio`'s options.
#[derive(Debug, Args)]
pub(crate) struct StudioArgs {
    #[command(flatten)]
    pool: PoolArgs,
    /// The port on 127.0.0.1 (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Let pages edit and delete items (through the write path: a stale edit is refused).
    #[arg(long)]
    allow_writes: bool,
    /// Show encrypted values decrypted on item pages (needs KORM_ENCRYPTION_KEY).
    #[arg(long)]
    allow_reveal: bool,
    /// The depot the backups live in, for the backups page.
    #[arg(long = "backups", value_name = "DEPOT")]
    backups: Option<String>,
    /// The WAL depot, for the WAL page: its local folder or s3://BUCKET/PREFIX (as `korm wal
    /// status --wal-dir`).
    #[arg(
        long,
        value_name = "FOLDER|s3://BUCKET/PREFIX",
        requires = "wal_namespace"
    )]
    wal_dir: Option<String>,
    /// The WAL namespace (`WalOptions::new(namespace)`).
    #[arg(long, value_name = "NAMESPACE", requires = "wal_dir")]
    wal_namespace: Option<String>,
    /// The pool id the WAL records are filed under (when the namespace holds several).
    #[arg(long, value_name = "ID", requires = "wal_dir")]
    wal_pool_id: Option<String>,
}

/// The body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A response.
pub(crate) type Reply = Response<Body>;

/// The largest request body read (an edited item's JSON).
const MAX_BODY: usize = 4 << 20;

/// How long a client may take to send a request's head, and then its body: a connection
/// that trickles is dropped instead of held.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The running studio: the pool, the guard and what the command line allows.
pub(crate) struct Studio {
    opened: Opened,
    guard: Guard,
    writes: bool,
    /// Whether `--allow-reveal` was given.
    reveal_asked: bool,
    /// The key ring that reveals encrypted values: only with `--allow-reveal` and a real
    /// key (never the temporary one korm makes without KORM_ENCRYPTION_KEY).
    reveal: Option<Arc<korm::crypto::KeyRing>>,
    backups: Option<String>,
    wal: Option<maintenance::WalPlace>,
    /// One backup verify or restore dry run at a time: each reads a whole backup.
    heavy: tokio::sync::Semaphore,
    /// The last `korm::inspect` of the pool: unique fields and columns for item pages
    /// (refreshed by each visit of the pool page).
    inspected: Mutex<Option<Arc<Vec<CollectionInfo>>>>,
}

impl std::fmt::Debug for Studio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Studio")
            .field("guard", &self.guard)
            .field("writes", &self.writes)
            .field("reveal", &self.reveal.is_some())
            .finish_non_exhaustive()
    }
}

impl Studio {
    pub(crate) fn pool(&self) -> &korm::Pool {
        self.opened.pool()
    }

    pub(crate) fn opened(&self) -> &Opened {
        &self.opened
    }

    fn nav(&self) -> Nav {
        Nav {
            wal: self.wal.is_some(),
            backups: self.backups.is_some(),
            writes: self.writes,
        }
    }

    /// A page: `body` in the layout, with status `status`.
    pub(crate) fn page(&self, status: StatusCode, title: &str, body: &str) -> Reply {
        let html = html::layout(title, &self.nav(), body);
        let mut reply = respond(status, "text/html; charset=utf-8", Bytes::from(html));
        reply.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        reply
    }

    /// What the pool holds, as last inspected (inspected now if never).
    pub(crate) async fn inspected(&self) -> korm::Result<Arc<Vec<CollectionInfo>>> {
        let cached = self
            .inspected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(found) = cached {
            return Ok(found);
        }
        self.inspect().await
    }

    /// Inspects the pool now.
    pub(crate) async fn inspect(&self) -> korm::Result<Arc<Vec<CollectionInfo>>> {
        let found = Arc::new(korm::inspect(self.pool()).await?);
        *self.inspected.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&found));
        Ok(found)
    }

    /// The page of an error: what went wrong, never a secret (korm's errors hold none).
    fn error_page(&self, error: &Error) -> Reply {
        let status = match error {
            Error::NotFound { .. } | Error::FileNotFound { .. } => StatusCode::NOT_FOUND,
            Error::InvalidRn { .. }
            | Error::WrongRnForm { .. }
            | Error::InvalidPath { .. }
            | Error::InvalidFilter { .. }
            | Error::InvalidOption { .. }
            | Error::NonScalarSort { .. }
            | Error::LayerNotNamed { .. }
            | Error::UnknownLayer { .. }
            | Error::UnknownDepot { .. }
            | Error::InvalidDepotKey { .. }
            | Error::UniqueViolation { .. }
            | Error::SchemaMismatch { .. } => StatusCode::BAD_REQUEST,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = format!(
            r#"<h1>{}</h1><p class="error" id="error">{}</p>"#,
            status.canonical_reason().unwrap_or("Error"),
            escape(&error.to_string())
        );
        self.page(status, "error", &body)
    }
}

/// A response with the headers every answer carries: never cached, never sniffed, never
/// framed, no referrer to other sites. (`same-origin`, not `no-referrer`: under
/// `no-referrer` browsers send `Origin: null` with the studio's own form POSTs, which the
/// guard must refuse.)
pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut reply = Response::new(full(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    reply
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A 303 to `location` (a path of the studio).
pub(crate) fn redirect(location: &str) -> Reply {
    let mut reply = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        reply.headers_mut().insert(header::LOCATION, value);
    }
    reply
}

/// A request's query (or form) parameters, decoded.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=x%20y` (`+` is a space, as forms send it).
    pub(crate) fn parse(text: &str) -> Params {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Params(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(name), decode(value))
                })
                .collect(),
        )
    }

    /// The first value of `name`, if given and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, which the page needs.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the parameter when it is missing.
    pub(crate) fn need(&self, name: &'static str) -> korm::Result<&str> {
        self.get(name).ok_or(Error::InvalidOption {
            option: name,
            reason: "this page needs it in its URL".to_owned(),
        })
    }
}

/// Runs `korm studio` until SIGINT or SIGTERM.
///
/// # Errors
/// Opening the pool, binding the port.
pub(crate) async fn run(args: StudioArgs) -> korm::Result<ExitCode> {
    let opened = args.pool.open().await?;
    let bound = tokio::net::TcpListener::bind(("127.0.0.1", args.port.unwrap_or(0))).await;
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            opened.close().await;
            return Err(Error::InvalidOption {
                option: "--port",
                reason: format!("can not listen on 127.0.0.1: {e}"),
            });
        }
    };
    let port = listener
        .local_addr()
        .map_err(|e| Error::InvalidOption {
            option: "--port",
            reason: format!("no local address: {e}"),
        })?
        .port();
    let reveal = if args.allow_reveal {
        korm::crypto::key_ring()
            .ok()
            .filter(|ring| !ring.is_temporary())
    } else {
        None
    };
    let wal = match (&args.wal_dir, &args.wal_namespace) {
        (Some(dir), Some(namespace)) => Some(maintenance::WalPlace::new(
            dir.clone(),
            namespace.clone(),
            args.wal_pool_id.clone(),
        )),
        _ => None,
    };
    let studio = Arc::new(Studio {
        opened,
        guard: Guard::new(port)?,
        writes: args.allow_writes,
        reveal_asked: args.allow_reveal,
        reveal,
        backups: args.backups.clone(),
        wal,
        heavy: tokio::sync::Semaphore::new(1),
        inspected: Mutex::new(None),
    });
    // The one line a script or a person reads: flushed, as stdout may be a pipe.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "korm studio: {}", studio.guard.entry_url());
    let _ = stdout.flush();

    let stop = stopped();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let studio = Arc::clone(&studio);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let studio = Arc::clone(&studio);
                        async move { Ok::<_, Infallible>(handle(&studio, request).await) }
                    });
                    // A connection that breaks off is that client's business.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(READ_TIMEOUT)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            () = &mut stop => break,
        }
    }
    studio.pool().close().await;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One request, through the guard to its page.
async fn handle(studio: &Studio, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let post = parts.method == Method::POST;
    if !(post || parts.method == Method::GET || parts.method == Method::HEAD) {
        return studio.page(
            StatusCode::METHOD_NOT_ALLOWED,
            "not allowed",
            "<h1>Method not allowed</h1>",
        );
    }
    let text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cookies: Vec<&str> = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let host = text(header::HOST);
    let origin = text(header::ORIGIN);
    let fetch_site = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let verdict = studio.guard.check(Asked {
        post,
        host: host.as_deref(),
        origin: origin.as_deref(),
        fetch_site: fetch_site.as_deref(),
        cookies: &cookies,
        path,
        query,
    });
    match verdict {
        Verdict::Pass => {}
        Verdict::Enter(to) => {
            let mut reply = redirect(&to);
            if let Ok(cookie) = HeaderValue::from_str(&studio.guard.cookie()) {
                reply.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            return reply;
        }
        Verdict::Refuse(why) => {
            let body = format!(r#"<h1>Forbidden</h1><p class="error">{}</p>"#, escape(why));
            return studio.page(StatusCode::FORBIDDEN, "forbidden", &body);
        }
    }
    if post && !studio.writes {
        return studio.page(
            StatusCode::FORBIDDEN,
            "read-only",
            r#"<h1>Forbidden</h1><p class="error">the studio is read-only (start it with --allow-writes)</p>"#,
        );
    }
    let params = Params::parse(query);
    let form = if post {
        let read = tokio::time::timeout(READ_TIMEOUT, Limited::new(body, MAX_BODY).collect());
        match read.await {
            Ok(Ok(collected)) => Params::parse(&String::from_utf8_lossy(&collected.to_bytes())),
            Ok(Err(_)) | Err(_) => {
                return studio.page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too large",
                    "<h1>The request is too large</h1>",
                );
            }
        }
    } else {
        Params::default()
    };
    let result = match (post, path) {
        (false, "/") => pool::page(studio).await,
        (false, "/collection") => collection::page(studio, &params).await,
        (false, "/item") => item::page(studio, &params).await,
        (true, "/item") => item::edit(studio, &params, &form).await,
        (true, "/item/delete") => item::delete(studio, &params, &form).await,
        (false, "/depot") => depot::listing(studio, &params).await,
        (false, "/file") => depot::file(studio, &params).await,
        (false, "/file/raw") => depot::raw(studio, &params).await,
        (false, "/wal") => maintenance::wal(studio).await,
        (false, "/backups") => maintenance::backups(studio, &params).await,
        _ => Ok(studio.page(
            StatusCode::NOT_FOUND,
            "not found",
            "<h1>Not found</h1><p>This studio has no such page.</p>",
        )),
    };
    result.unwrap_or_else(|e| studio.error_page(&e))
}
