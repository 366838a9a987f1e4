//! The object graph a session's loads decode into.
//!
//! A [`Graph`] owns every object its loads decoded: each model's objects sit in one append-only
//! table whose elements never move, beside the key-to-object map that is the session's identity
//! map ([`IdentityMap`]). A relation slot holds [`ObjRef`]s, plain pointers to
//! objects of the same graph, so nothing inside a graph counts references: loading both
//! directions of a relation makes no cycle that could keep anything alive, and the graph is
//! freed as a few vectors, in one pass whatever the depth of the data.
//!
//! What keeps a graph alive is the `Arc` around it: the session holds its current graph, and
//! every [`Loaded`](crate::Loaded) handle holds the graph of its object. That rests on three
//! rules, which the rest of the crate keeps:
//! - a `ObjRef` only ever points into the graph it names, and only the loader makes one;
//! - an object of a graph is only reachable by shared reference, through a handle that counts
//!   the graph (a `&M` borrowed from a `Loaded`, or from a `Loaded` view borrowed from one), or
//!   through the loader, which holds the graph for the whole load;
//! - a graph is cleared in place only when its session holds the only count
//!   ([`Graph::clear_if_unshared`]).

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::identity::IdentityMap;

/// Every object some loads decoded, with their identity map (see the module docs).
#[derive(Default)]
pub(crate) struct Graph {
    /// Locked once per statement by the decoder, and briefly by lazy loads and `Session::get`.
    identity: Mutex<IdentityMap>,
    /// How many times the graph was cleared in place: a [`ObjRef`] kept across loads without a
    /// count (the N+1 detector's samples) is only followed if the graph is still the one it was
    /// taken from.
    generation: AtomicU64,
}

impl Graph {
    pub(crate) fn new() -> Arc<Graph> {
        Arc::new(Graph::default())
    }

    /// The identity map, locked. A panic while it was locked left it consistent (every exit of
    /// the decoder puts it back whole), so a poisoned lock is taken as it is.
    pub(crate) fn identity(&self) -> MutexGuard<'_, IdentityMap> {
        self.identity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The graph's address, which every [`ObjRef`] into it carries.
    pub(crate) fn address(this: &Arc<Graph>) -> NonNull<Graph> {
        NonNull::from(&**this)
    }

    /// Drops every object of `this` and empties its identity map, keeping the tables' memory,
    /// if nothing but `this` holds the graph; returns whether it did. A session calls it when a
    /// load starts: what nobody holds any more is forgotten, as the weak identity maps of other
    /// ORMs forget it, and a long session stays as large as its largest graph.
    pub(crate) fn clear_if_unshared(this: &Arc<Graph>) -> bool {
        // Only the session that owns `this` makes counts of its graph (handles are made by its
        // loads, and the detector's weak references are upgraded by it alone): once the count
        // is one, nothing can raise it while the session clears.
        if Arc::strong_count(this) != 1 {
            return false;
        }
        // The last other handle was dropped on some thread after its last read (a `Release`
        // decrement): see those reads before dropping what they read.
        std::sync::atomic::fence(Ordering::Acquire);
        this.generation.fetch_add(1, Ordering::AcqRel);
        this.identity().clear();
        true
    }

    /// The number of objects the graph holds.
    pub(crate) fn objects(&self) -> usize {
        self.identity().objects()
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph").field("objects", &self.objects()).finish_non_exhaustive()
    }
}

/// A pointer to an object of a [`Graph`], with the graph's address: what relation slots hold,
/// and the layout of a [`Loaded`](crate::Loaded) handle (which counts the graph; a reference does
/// not).
///
/// Only the loader makes links, to objects of the graph it is loading into, and keeps them in
/// that graph's relation slots or in its own working lists, which live no longer than the load
/// holding the graph; a reference is followed only while something counts its graph (see the module
/// docs).
#[doc(hidden)]
#[repr(C)]
pub struct ObjRef<M> {
    object: NonNull<M>,
    graph: NonNull<Graph>,
}

impl<M> ObjRef<M> {
    pub(crate) fn new(object: NonNull<M>, graph: NonNull<Graph>) -> Self {
        ObjRef { object, graph }
    }

    pub(crate) fn graph(&self) -> NonNull<Graph> {
        self.graph
    }

    /// The object's address, which identifies it.
    pub(crate) fn address(&self) -> usize {
        self.object.as_ptr() as usize
    }
}

impl<M> Clone for ObjRef<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for ObjRef<M> {}

impl<M> Deref for ObjRef<M> {
    type Target = M;

    fn deref(&self) -> &M {
        // SAFETY: a reference points to an object of its graph (only the loader makes links, from
        // objects it just pushed into the graph's tables, whose elements never move), and it
        // is only followed while something counts that graph: links sit in relation slots of
        // the same graph's objects, reached through a counted handle, or in the loader's lists
        // while the load holds the graph (module docs). Objects are only shared, never
        // mutated in place (their relation slots are `OnceLock`s and atomics).
        #[allow(unsafe_code)]
        unsafe {
            self.object.as_ref()
        }
    }
}

// SAFETY: a reference is a shared reference to an `M` in a graph that outlives every use of it (see
// `Deref`); `M` is a model, `Send + Sync` by `Model`'s supertraits, wherever a reference is made.
#[allow(unsafe_code)]
unsafe impl<M: Sync> Send for ObjRef<M> {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl<M: Sync> Sync for ObjRef<M> {}
