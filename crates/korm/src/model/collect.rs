//! Side effects found while a model is serialized: wrapper types (changed resolved
//! [`Ref`](crate::Ref)s, pending [`DepotFile`](crate::DepotFile)s) report what the write must
//! also do through a thread-local collector that the write path sets up around `encode`.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread-local collector: `Some` while a write's encoding runs.
pub(crate) type Slot<T> = RefCell<Option<Vec<T>>>;

/// Runs `encode` with the collector `slot` in scope and returns what was reported to it. A
/// collector already in scope is put back afterwards (also when `encode` unwinds).
pub(crate) fn collect<T: 'static, R>(
    slot: &'static LocalKey<Slot<T>>,
    encode: impl FnOnce() -> R,
) -> (R, Vec<T>) {
    struct Restore<T: 'static>(&'static LocalKey<Slot<T>>, Option<Vec<T>>);
    impl<T: 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            let outer = self.1.take();
            self.0.with(|s| *s.borrow_mut() = outer);
        }
    }
    let restore = Restore(slot, slot.with(|s| s.borrow_mut().replace(Vec::new())));
    let result = encode();
    let found = slot.with(|s| s.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (result, found)
}

/// Whether a collector is in scope (a korm write is encoding).
pub(crate) fn collecting<T: 'static>(slot: &'static LocalKey<Slot<T>>) -> bool {
    slot.with(|s| s.borrow().is_some())
}

/// Gives the collector in scope, if any, to `report`.
pub(crate) fn report<T: 'static>(
    slot: &'static LocalKey<Slot<T>>,
    report: impl FnOnce(&mut Vec<T>),
) {
    slot.with(|s| {
        if let Some(found) = s.borrow_mut().as_mut() {
            report(found);
        }
    });
}
