//! A `tracing` writer that keeps every line it is given, to be checked: the tracing example
//! and the statement-counting test share it (`#[path]`).

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Every line the subscriber writes, kept to be checked and printed.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs the process's subscriber at trace level (sqlx's statement events are trace
    /// events), writing into a new `Captured`, and gives it.
    pub fn install() -> Captured {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(captured.clone())
            .with_ansi(false)
            .without_time()
            .init();
        captured
    }

    /// How many bytes were written so far.
    pub fn written(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    /// What was written from byte `from` on, as text.
    pub fn text_from(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")[from..]).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}
