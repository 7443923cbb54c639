//! Danger wrappers: destructive operations are values that only run through [`danger`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A destructive operation that has not run yet.
///
/// Building one does nothing: it only runs when passed to [`danger`], so that code which
/// destroys data says so where it happens.
#[must_use = "a dangerous operation does nothing until it is passed to korm::danger"]
pub struct Danger<T> {
    what: &'static str,
    op: Pin<Box<dyn Future<Output = crate::Result<T>> + Send>>,
}

impl<T> Danger<T> {
    pub(crate) fn new(
        what: &'static str,
        op: impl Future<Output = crate::Result<T>> + Send + 'static,
    ) -> Self {
        Danger {
            what,
            op: Box::pin(op),
        }
    }

    /// What the operation does, in a few words (`destroy deleted item`).
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl<T> fmt::Debug for Danger<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Danger")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

/// Runs a destructive operation.
///
/// # Errors
/// Whatever the operation returns.
///
/// # Cancel safety
/// Dropping the future before it completes may leave the operation half done, as dropping any
/// write may; korm's write path undoes what a failed write applied, not what a cancelled one did.
pub async fn danger<T>(op: Danger<T>) -> crate::Result<T> {
    tracing::warn!(operation = op.what, "running a dangerous operation");
    op.op.await
}
