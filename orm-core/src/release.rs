//! Releasing a graph without recursion: a chain of 1,000,000 managers must drop on a thread with
//! a small stack.
//!
//! Dropping an object drops its relations, which drop the related objects they held last, which
//! drop theirs: one stack frame per level of the data. Instead, a relation dropped while another
//! release runs on the thread hands its related objects to a worklist, and the outermost release
//! drops them one at a time. The worklist holds `Arc`s as `Arc<dyn Any>` (no allocation per
//! object) and is shrunk after a wide graph.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

type Held = Arc<dyn Any>;

thread_local! {
    /// Objects whose release waits for the outermost release on this thread.
    static WAITING: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
    /// Whether a release is running on this thread.
    static RELEASING: Cell<bool> = const { Cell::new(false) };
}

/// The worklist keeps this much capacity after a release; a wide graph's is given back.
const KEPT_CAPACITY: usize = 1024;

/// Drops `rows` (a relation's related objects), iteratively: a release inside another one only
/// queues the objects it held last.
pub(crate) fn release<T: 'static>(rows: impl Iterator<Item = Arc<T>>) {
    match RELEASING.try_with(|releasing| releasing.replace(true)) {
        // The thread is ending and its locals are gone: drop in place.
        Err(_) => rows.for_each(drop),
        Ok(true) => {
            for row in rows {
                // Another holder keeps it: dropping ours frees nothing and recurses nowhere.
                if Arc::strong_count(&row) > 1 {
                    drop(row);
                    continue;
                }
                let row: Held = row;
                let _ = WAITING.try_with(|waiting| waiting.borrow_mut().push(row));
            }
        }
        Ok(false) => {
            let _outermost = Outermost;
            rows.for_each(drop);
            // Each drop may queue more: one object at a time, outside the borrow.
            while let Some(next) = WAITING.with(|waiting| waiting.borrow_mut().pop()) {
                drop(next);
            }
        }
    }
}

/// The outermost release: ends it on every exit, a panicking `Drop` included (what is still
/// queued is then dropped as the panic unwinds, by a new outermost release).
struct Outermost;

impl Drop for Outermost {
    fn drop(&mut self) {
        let _ = RELEASING.try_with(|releasing| releasing.set(false));
        let rest = WAITING.try_with(|waiting| {
            let mut waiting = waiting.borrow_mut();
            if waiting.is_empty() {
                waiting.shrink_to(KEPT_CAPACITY);
                Vec::new()
            } else {
                std::mem::take(&mut *waiting)
            }
        });
        // Unwinding: what is still queued, each released anew (iteratively).
        drop(rest);
    }
}
