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
//! - an `ObjRef` only ever points into the graph it names, and only the loader makes one;
//! - an object of a graph is only reachable by shared reference, through a handle that counts
//!   the graph (a `&M` borrowed from a `Loaded`, or from a `Loaded` view borrowed from one), or
//!   through the loader, which holds the graph for the whole load;
//! - a graph is cleared in place only when its session holds the only count
//!   ([`Graph::clear_if_unshared`]).

use std::any::TypeId;
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustc_hash::FxHashMap;

use crate::identity::IdentityMap;
use crate::rel::Slot;

/// Every object some loads decoded, with their identity map (see the module docs).
#[derive(Default)]
pub(crate) struct Graph {
    /// Locked once per statement by the decoder, and briefly by lazy loads and `Session::get`.
    identity: Mutex<IdentityMap>,
    /// How many times the graph was cleared in place: a [`ObjRef`] kept across loads without a
    /// count (the N+1 detector's samples) is only followed if the graph is still the one it was
    /// taken from.
    generation: AtomicU64,
    /// Counted relations (`count(..)`): the number of related rows, by object address and
    /// relation index. As large as the graph's objects times their counted relations, and
    /// emptied with the graph.
    counts: Mutex<FxHashMap<(usize, usize), u64>>,
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

    /// The counts of the relations `count(..)` loaded, locked.
    pub(crate) fn counts(&self) -> MutexGuard<'_, FxHashMap<(usize, usize), u64>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The graph's address, which every [`ObjRef`] into it carries. From `Arc::as_ptr`, not a
    /// `&Graph`: handles count the graph through it (`Arc::increment_strong_count`), which needs
    /// the `Arc`'s own pointer, with its right to reach the counts beside the graph.
    pub(crate) fn address(this: &Arc<Graph>) -> NonNull<Graph> {
        NonNull::new(Arc::as_ptr(this).cast_mut()).expect("an `Arc` points somewhere")
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
        this.counts().clear();
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

/// A link to an object of a [`Graph`]: the object's address and the graph's. What relation
/// slots hold, and the layout of a [`Loaded`](crate::Loaded) handle (which counts the graph; a
/// link does not).
///
/// Only the loader makes links, to objects of the graph it is loading into, and keeps them in
/// that graph's relation slots or in its own working lists, which live no longer than the load
/// holding the graph; a link is followed only while something counts its graph (see the module
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

    /// This link with its model erased, for code compiled once for every model (see [`Links`]).
    pub(crate) fn erase(self) -> ObjRef<()> {
        ObjRef { object: self.object.cast(), graph: self.graph }
    }
}

impl ObjRef<()> {
    /// The link an [`ObjRef::erase`] erased.
    ///
    /// # Safety
    /// `self` was erased from an `ObjRef<M>`.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn assume<M>(self) -> ObjRef<M> {
        ObjRef { object: self.object.cast(), graph: self.graph }
    }
}

/// `links` with their model erased (no copy: both have one layout).
pub(crate) fn erase_all<M>(links: Vec<ObjRef<M>>) -> Vec<ObjRef<()>> {
    let mut links = std::mem::ManuallyDrop::new(links);
    // SAFETY: `ObjRef<M>` and `ObjRef<()>` are `repr(C)` pairs of thin non-null pointers (`M` is
    // sized): one size and alignment, so the allocation is valid for the other type.
    #[allow(unsafe_code)]
    unsafe {
        Vec::from_raw_parts(links.as_mut_ptr().cast(), links.len(), links.capacity())
    }
}

/// The links [`erase_all`] erased.
///
/// # Safety
/// Every link of `links` was erased from an `ObjRef<M>`.
#[allow(unsafe_code)]
pub(crate) unsafe fn assume_all<M>(links: Vec<ObjRef<()>>) -> Vec<ObjRef<M>> {
    let mut links = std::mem::ManuallyDrop::new(links);
    // SAFETY: as in `erase_all`; the links point to `M`s (the caller's promise).
    unsafe { Vec::from_raw_parts(links.as_mut_ptr().cast(), links.len(), links.capacity()) }
}

/// `links` with their model erased (no copy).
pub(crate) fn erase_slice<M>(links: &[ObjRef<M>]) -> &[ObjRef<()>] {
    // SAFETY: as in `erase_all`: one layout, and an erased link is only read as an address
    // until it is typed again.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(links.as_ptr().cast(), links.len())
    }
}

/// The links [`erase_slice`] erased.
///
/// # Safety
/// Every link of `links` was erased from an `ObjRef<M>`.
#[allow(unsafe_code)]
pub(crate) unsafe fn assume_slice<M>(links: &[ObjRef<()>]) -> &[ObjRef<M>] {
    // SAFETY: as in `erase_slice`; the links point to `M`s (the caller's promise).
    unsafe { std::slice::from_raw_parts(links.as_ptr().cast(), links.len()) }
}

/// Links to objects of one model, the model erased but recorded, and checked when a relation
/// slot takes them: what the loader's code compiled once per key type (not once per model)
/// hands to the slots it fills.
pub(crate) struct Links {
    model: TypeId,
    links: Vec<ObjRef<()>>,
}

impl Links {
    pub(crate) fn of<M: 'static>(links: Vec<ObjRef<M>>) -> Self {
        Links { model: TypeId::of::<M>(), links: erase_all(links) }
    }

    /// Links erased by the loader, of model `model`.
    ///
    /// # Safety
    /// Every link of `links` was erased from an `ObjRef<M>` where `model` is `M`'s type.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn erased(model: TypeId, links: Vec<ObjRef<()>>) -> Self {
        Links { model, links }
    }

    /// The links, if they are of model `M`.
    pub(crate) fn typed<M: 'static>(self) -> Option<Vec<ObjRef<M>>> {
        // SAFETY: the links were erased from `ObjRef<M>`s of the recorded model (see the
        // constructors), which is `M`.
        #[allow(unsafe_code)]
        (self.model == TypeId::of::<M>()).then(|| unsafe { assume_all(self.links) })
    }
}

/// One link of [`Links`]: its model erased, recorded, and checked when a slot takes it.
#[derive(Clone, Copy)]
pub(crate) struct AnyRef {
    model: TypeId,
    link: ObjRef<()>,
}

impl AnyRef {
    pub(crate) fn of<M: 'static>(link: ObjRef<M>) -> Self {
        AnyRef { model: TypeId::of::<M>(), link: link.erase() }
    }

    /// A link erased by the loader, of model `model`.
    ///
    /// # Safety
    /// `link` was erased from an `ObjRef<M>` where `model` is `M`'s type.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn erased(model: TypeId, link: ObjRef<()>) -> Self {
        AnyRef { model, link }
    }

    /// The link, if it is of model `M`.
    pub(crate) fn typed<M: 'static>(self) -> Option<ObjRef<M>> {
        // SAFETY: as for `Links::typed`.
        #[allow(unsafe_code)]
        (self.model == TypeId::of::<M>()).then(|| unsafe { self.link.assume() })
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
        // SAFETY: a link points to an object of its graph (only the loader makes links, from
        // objects it just pushed into the graph's tables, whose elements never move), and it
        // is only followed while something counts that graph: links sit in relation slots of
        // the same graph's objects, reached through a counted handle, or in the loader's lists
        // while the load holds the graph (module docs). Objects are only shared, never
        // mutated in place (their relation slots are written once, behind an atomic state).
        #[allow(unsafe_code)]
        unsafe {
            self.object.as_ref()
        }
    }
}

// SAFETY: a link is a shared reference to an `M` in a graph that outlives every use of it (see
// `Deref`); `M` is a model, `Send + Sync` by `Model`'s supertraits, wherever a link is made.
#[allow(unsafe_code)]
unsafe impl<M: Sync> Send for ObjRef<M> {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl<M: Sync> Sync for ObjRef<M> {}

/// A link to a relation slot of an object of a [`Graph`], its shape erased: what the loader keeps
/// of a parent whose slot it fills once a statement succeeded, and what the N+1 detector samples.
/// Made and followed as an [`ObjRef`] is: only of slots of objects of the graph a load holds, and
/// followed only while something counts that graph.
#[derive(Clone, Copy)]
pub(crate) struct SlotRef {
    slot: NonNull<dyn Slot>,
}

impl SlotRef {
    /// A link to `slot`, which must be a relation slot of an object of a graph (see the type).
    pub(crate) fn new(slot: &(dyn Slot + 'static)) -> Self {
        SlotRef { slot: NonNull::from(slot) }
    }

    /// The slot's address, which identifies it (one relation of one object).
    pub(crate) fn address(&self) -> usize {
        self.slot.as_ptr() as *const () as usize
    }
}

impl Deref for SlotRef {
    type Target = dyn Slot;

    fn deref(&self) -> &(dyn Slot + 'static) {
        // SAFETY: as for `ObjRef::deref`: the slot is a field of an object of a graph (whose
        // elements never move), followed only while something counts that graph; slots are
        // `Sync` and only ever shared.
        #[allow(unsafe_code)]
        unsafe {
            self.slot.as_ref()
        }
    }
}

// SAFETY: a shared reference to a `Sync` slot of a graph that outlives every use of it (see
// `Deref`).
#[allow(unsafe_code)]
unsafe impl Send for SlotRef {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl Sync for SlotRef {}

/// The graph's `unsafe` parts, without a database: references followed while other threads read
/// and the loader appends, handles counting the graph, views of references as handles, and
/// truncation. Run under Miri with `cargo +nightly miri test -p orm-core graph::`.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Graph, ObjRef};
    use crate::identity::Refresh;
    use crate::prelude::*;

    diesel::table! { node (id) { id -> Integer, parent_id -> Nullable<Integer> } }

    #[derive(Model, Debug)]
    #[orm(table = node)]
    pub struct Node {
        pub id: i32,
        pub parent_id: Option<i32>,
        #[relation(belongs_to = Node, foreign_key = parent_id)]
        pub parent: Rel<Option<Node>>,
        #[relation(has_many = Node, foreign_key = parent_id)]
        pub children: Rel<Vec<Node>>,
    }

    /// Adds node `id` to `graph` as a load of origin 1 would.
    fn push(graph: &Arc<Graph>, id: i32, parent_id: Option<i32>) -> ObjRef<Node> {
        let node =
            |id| Ok::<_, ()>(Node { id, parent_id, parent: Rel::new(), children: Rel::new() });
        let mut identity = graph.identity();
        let (object, _) =
            identity.model::<Node>().get_or_decode(id, 1, None, Refresh::Changed, node).unwrap();
        ObjRef::new(object, Graph::address(graph))
    }

    #[test]
    fn erased_links_fill_slots_of_their_model_only_and_read_back_typed() {
        use crate::graph::{AnyRef, Links, SlotRef};
        use crate::rel::Slot;
        let graph = Graph::new();
        let root = push(&graph, 1, None);
        let children: Vec<_> = (2..6).map(|id| push(&graph, id, Some(1))).collect();
        // Erased and typed again without a copy, as the loader passes targets around.
        let erased = super::erase_all(children.clone());
        let slice = super::erase_slice(&children);
        assert_eq!(slice.len(), 4);
        // SAFETY: erased from `ObjRef<Node>`s just above.
        #[allow(unsafe_code)]
        let (typed, again) =
            unsafe { (super::assume_slice::<Node>(slice), super::assume_all::<Node>(erased)) };
        assert_eq!((typed[3].id, again[0].id), (5, 2));
        // A slot takes links of its target model, through its erased interface.
        let slot: &(dyn Slot + 'static) = &root.children;
        assert!(slot.fill_links(Links::of(again)));
        let read = SlotRef::new(slot);
        let kids: Vec<i32> = read.peek_typed::<Node>().unwrap().iter().map(|k| k.id).collect();
        assert_eq!((kids, read.peek_typed::<String>().is_none()), (vec![2, 3, 4, 5], true));
        let parent: &(dyn Slot + 'static) = &children[0].parent;
        assert!(!parent.required() && parent.fill_link(Some(AnyRef::of(root))));
        assert_eq!(children[0].parent.get().flatten().map(|p| p.id), Some(1));
        // Links of another model are refused before they reach a slot.
        assert!(Links::of(Vec::<ObjRef<String>>::new()).typed::<Node>().is_none());
        assert!(AnyRef::of(root).typed::<String>().is_none());
    }

    /// Two fills racing on one relation: one value stands, read whole by both, and the other's
    /// links are freed (Miri checks both, and that nothing leaks).
    #[test]
    fn racing_fills_keep_one_value_and_free_the_other() {
        let graph = Graph::new();
        let root = push(&graph, 1, None);
        let first: Vec<_> = (2..4).map(|id| push(&graph, id, Some(1))).collect();
        let second: Vec<_> = (4..7).map(|id| push(&graph, id, Some(1))).collect();
        let seen = std::thread::scope(|threads| {
            let fills = [first, second].map(|links| {
                let slot = &root.children;
                threads.spawn(move || {
                    assert!(slot.fill_with(links));
                    slot.get().expect("filled by one of the two").len()
                })
            });
            fills.map(|fill| fill.join().expect("no panic"))
        });
        let kept = root.children.get().expect("filled").len();
        assert!(kept == 2 || kept == 3);
        assert_eq!(seen, [kept, kept], "both fills read the value that stood");
        // A filled relation keeps its value.
        assert!(root.parent.fill_one(None) && root.parent.fill_one(Some(root)));
        assert_eq!(format!("{:?}", root.parent), "Loaded(None)");
        assert!(format!("{:?}", root.children).starts_with("Loaded([Node("));
    }

    #[test]
    fn a_cyclic_graph_is_read_on_threads_while_it_grows_and_freed_with_its_last_handle() {
        let graph = Graph::new();
        let root = push(&graph, 1, None);
        // More than the first chunks hold.
        let children: Vec<_> = (2..150).map(|id| push(&graph, id, Some(1))).collect();
        // Both directions: a cycle through every child.
        assert!(root.children.fill_with(children.clone()));
        for child in &children {
            assert!(child.parent.fill_one(Some(root)));
        }
        let handle = Loaded::<Node>::new(root);
        let kids = handle.children.get().expect("filled");
        assert_eq!(kids.len(), 148);
        let kid = kids[100].clone();
        drop(handle);
        std::thread::scope(|threads| {
            // A reader follows references while the loader appends to the same tables.
            threads.spawn(|| {
                for _ in 0..50 {
                    let parent = kid.parent.get().flatten().expect("filled");
                    assert_eq!(
                        (kid.id, parent.id, parent.children.get().unwrap().len()),
                        (102, 1, 148)
                    );
                }
            });
            for id in 150..300 {
                push(&graph, id, None);
            }
        });
        // A failed statement's objects are dropped; the earlier ones stay where they are.
        graph.identity().set_mark();
        push(&graph, 300, Some(1));
        graph.identity().forget_since(0);
        graph.identity().truncate_to_mark();
        assert_eq!((graph.objects(), kid.parent.get().flatten().unwrap().id), (299, 1));
        // Held elsewhere: not cleared. The last handle gone: cleared in place.
        assert!(!Graph::clear_if_unshared(&graph));
        drop(kid);
        assert!(Graph::clear_if_unshared(&graph));
        assert_eq!(graph.objects(), 0);
        // And dropped whole, cycles and all, with a handle outliving the graph's session.
        let again = Loaded::<Node>::new(push(&graph, 1, None));
        drop(graph);
        assert_eq!(again.id, 1);
    }
}
