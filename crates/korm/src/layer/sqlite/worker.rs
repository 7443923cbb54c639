//! The connection thread: a SQLite connection lives on its own thread, so that no call ever
//! blocks a tokio worker, and async callers send it jobs.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::RwLock;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{DbErrorKind, Error, Result};
use crate::layer::schema::TableSchema;

/// What a job can use: the connection and the schema cache (only this thread touches them,
/// so neither needs a lock).
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) conn: Connection,
    pub(crate) schemas: HashMap<String, TableSchema>,
    pub(crate) ident: String,
}

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// A handle to the connection thread.
#[derive(Debug)]
pub(crate) struct Worker {
    jobs: RwLock<Option<mpsc::Sender<Job>>>,
    finished: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Worker {
    /// Starts the thread and opens the connection on it with `open`.
    pub(crate) async fn start(
        ident: &str,
        open: impl FnOnce() -> Result<Connection> + Send + 'static,
    ) -> Result<Worker> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (opened_tx, opened_rx) = oneshot::channel::<Result<()>>();
        let (finished_tx, finished_rx) = oneshot::channel::<()>();
        let thread_ident = ident.to_owned();
        std::thread::Builder::new()
            .name(format!("korm-sqlite-{ident}"))
            .spawn(move || {
                let conn = match open() {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok(()));
                let mut state = State {
                    conn,
                    schemas: HashMap::new(),
                    ident: thread_ident,
                };
                // Ends when every sender is gone: at close, or when the pool is dropped.
                while let Ok(job) = jobs_rx.recv() {
                    // A job that panics (a bug) must not take the connection down with it;
                    // its caller sees its reply channel closed.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut state)));
                }
                drop(state);
                let _ = finished_tx.send(());
            })
            .map_err(|e| Error::Database {
                layer: ident.to_owned(),
                kind: DbErrorKind::Connect,
                message: format!("can not start the connection thread: {e}"),
            })?;
        match opened_rx.await {
            Ok(Ok(())) => Ok(Worker {
                jobs: RwLock::new(Some(jobs_tx)),
                finished: tokio::sync::Mutex::new(Some(finished_rx)),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Database {
                layer: ident.to_owned(),
                kind: DbErrorKind::Connect,
                message: "the connection thread stopped while opening".to_owned(),
            }),
        }
    }

    /// Runs `f` on the connection thread and returns its result.
    ///
    /// # Cancel safety
    /// Once sent, a job runs to completion even if the returned future is dropped: a write
    /// that was sent is either applied entirely or not at all, never half.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        {
            let jobs = self
                .jobs
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let sender = jobs.as_ref().ok_or(Error::PoolClosed)?;
            sender
                .send(Box::new(move |state: &mut State| {
                    let _ = tx.send(f(state));
                }))
                .map_err(|_| Error::PoolClosed)?;
        }
        rx.await.map_err(|_| Error::Database {
            layer: String::new(),
            kind: DbErrorKind::Other,
            message: "the connection thread dropped the request (internal error)".to_owned(),
        })?
    }

    /// Stops accepting jobs, lets the queued ones finish, and waits for the connection to close.
    pub(crate) async fn close(&self) {
        self.jobs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(finished) = self.finished.lock().await.take() {
            let _ = finished.await;
        }
    }
}
