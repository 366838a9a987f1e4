//! `Rel<T>`: a relation field that is either not loaded or loaded, and the shapes it can hold.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use std::any::TypeId;

use crate::graph::{AnyRef, Links, ObjRef};
use rustc_hash::FxHashSet;

use crate::model::{Model, Relation};
use crate::state::{Loaded, Untyped};

/// A relation field: `Rel<Option<T>>` or `Rel<T>` for a single related row, `Rel<Vec<T>>` for a
/// collection.
///
/// It is filled at most once (by an eager load or the first lazy load) and read for free after
/// that. A LEFT JOIN miss is *loaded* (`None` or empty), never "not loaded". The related objects
/// are read as [`Loaded`] handles borrowed from the object (`Option<&Loaded<T>>`,
/// `&Loaded<T>`, `&[Loaded<T>]`): they live in the same graph as the object, shared by every
/// parent that points to them, and a handle cloned from one keeps that graph alive.
///
/// Cloning a model clones its relations unloaded: a copy of an object is not part of its graph.
pub struct Rel<T: Shape> {
    value: OnceLock<T::Stored>,
    raise: AtomicBool,
    /// Whether the application read it (for the unused-eager-load report).
    read: AtomicBool,
}

impl<T: Shape> Rel<T> {
    /// A relation that is not loaded and loads lazily.
    pub const fn new() -> Self {
        Rel { value: OnceLock::new(), raise: AtomicBool::new(false), read: AtomicBool::new(false) }
    }

    /// The loaded value, or `None` if it is not loaded. Never runs SQL.
    pub fn get(&self) -> Option<T::Typed<'_, Untyped>> {
        self.stored().map(T::typed)
    }

    /// The loaded value as stored, counting as a read (for typed reads).
    pub(crate) fn stored(&self) -> Option<&T::Stored> {
        let value = self.value.get();
        if value.is_some() && !self.read.load(Ordering::Relaxed) {
            self.read.store(true, Ordering::Relaxed);
        }
        value
    }

    /// The related objects, without counting as a read (for the loader).
    pub(crate) fn peek(&self) -> Option<&[ObjRef<T::Target>]> {
        self.value.get().map(T::links)
    }

    /// Whether the application has read the loaded value.
    pub(crate) fn was_read(&self) -> bool {
        self.read.load(Ordering::Relaxed)
    }

    /// Whether the relation holds a loaded value.
    pub fn is_loaded(&self) -> bool {
        self.value.get().is_some()
    }

    /// Whether reading it unloaded is an error rather than a lazy load.
    pub fn is_raise(&self) -> bool {
        self.raise.load(Ordering::Relaxed)
    }

    /// Fills the relation; a relation that is already loaded keeps its value. The links must
    /// point into the graph of the object holding this relation (see `graph.rs`).
    pub(crate) fn fill(&self, value: T::Stored) {
        let _ = self.value.set(value);
    }

    /// Sets whether an unloaded read raises (from the strategy of the load that produced it).
    pub(crate) fn set_raise(&self, raise: bool) {
        if self.raise.load(Ordering::Relaxed) != raise {
            self.raise.store(raise, Ordering::Relaxed);
        }
    }
}

// `Send` and `Sync` are stated here rather than proven through the related model: the derived
// proof walked from every model through its `Rel`s into every model it reaches, which made
// `cargo check` of 60 models take minutes and overflow the recursion limit (docs/design.md,
// "Compile time of the choice"). With these impls, proving `Person: Send + Sync` stops at its
// `Rel` fields: each model is proven once, on its own fields, at its `impl Model`.
//
// SAFETY: a `Rel<T>` holds atomics and, once filled, links to objects of `T::Target` in the
// graph of the object holding it. Only the loader fills a `Rel` (`fill` is crate-private), and
// only through a `Relation`, whose `Target` is a `Model`, which has `Send + Sync` as supertraits
// (checked where each model implements it): sending or sharing the links shares `Sync` objects
// of a graph that the handles reaching them keep alive. A `Rel` whose target is not a model (the
// derive rejects it) can never be filled, so it holds nothing to send or share.
#[allow(unsafe_code)]
unsafe impl<T: Shape> Send for Rel<T> {}
// SAFETY: as for `Send` above.
#[allow(unsafe_code)]
unsafe impl<T: Shape> Sync for Rel<T> {}

impl<T: Shape> Default for Rel<T> {
    fn default() -> Self {
        Rel::new()
    }
}

/// An unloaded relation with the same `raise` setting: the links of a loaded one point into the
/// graph of the object it belongs to, and a clone of that object is not in the graph.
impl<T: Shape> Clone for Rel<T> {
    fn clone(&self) -> Self {
        Rel {
            value: OnceLock::new(),
            raise: AtomicBool::new(self.is_raise()),
            read: AtomicBool::new(false),
        }
    }
}

/// A relation slot with its shape and target erased: what the loader reads and fills. Compiled
/// once per shape of a model (three per model), so the loader code over it is compiled once per
/// model or key type rather than once per relation (compile time; BENCHMARKS.md, "Compile time").
/// What it takes is checked to be of its target model.
pub(crate) trait Slot: Sync {
    /// The target model's type.
    fn target(&self) -> TypeId;
    fn is_loaded(&self) -> bool;
    fn was_read(&self) -> bool;
    /// Whether the shape requires a row (`Rel<T>`): no row is then an error, not `None`.
    fn required(&self) -> bool;
    /// The related objects, erased, without counting as a read.
    fn peek(&self) -> Option<&[ObjRef<()>]>;
    /// Fills a collection with `links`, or a single row with its first; `false` (and nothing
    /// filled) when the shape requires a row and `links` is empty.
    fn fill_links(&self, links: Links) -> bool;
    /// Fills a single row (or a collection of at most one); `false` as for [`Slot::fill_links`].
    fn fill_link(&self, link: Option<AnyRef>) -> bool;
}

/// Links of another model than a slot's target: the loader mixed up two relations, a bug that
/// must not go on to fill a slot with objects of the wrong type.
const WRONG_MODEL: &str = "orm-core: a relation slot was given objects of another model";

impl<S: Shape> Slot for Rel<S> {
    fn target(&self) -> TypeId {
        TypeId::of::<S::Target>()
    }

    fn is_loaded(&self) -> bool {
        Rel::is_loaded(self)
    }

    fn was_read(&self) -> bool {
        Rel::was_read(self)
    }

    fn required(&self) -> bool {
        S::from_link(None).is_none()
    }

    fn peek(&self) -> Option<&[ObjRef<()>]> {
        Rel::peek(self).map(crate::graph::erase_slice)
    }

    fn fill_links(&self, links: Links) -> bool {
        let links = links.typed::<S::Target>().expect(WRONG_MODEL);
        S::from_links(links).map(|value| self.fill(value)).is_some()
    }

    fn fill_link(&self, link: Option<AnyRef>) -> bool {
        let link = link.map(|link| link.typed::<S::Target>().expect(WRONG_MODEL));
        S::from_link(link).map(|value| self.fill(value)).is_some()
    }
}

impl dyn Slot {
    /// The related objects, if the slot's target is `T`.
    pub(crate) fn peek_typed<T: 'static>(&self) -> Option<&[ObjRef<T>]> {
        let links = self.peek()?;
        // SAFETY: a slot's links are links to objects of its target model (`Slot::peek` erased
        // them from `ObjRef<S::Target>`s), which is `T`.
        #[allow(unsafe_code)]
        (self.target() == TypeId::of::<T>()).then(|| unsafe { crate::graph::assume_slice(links) })
    }
}

/// One parent of a relation, as the loader's code compiled once per key type sees it: its slot
/// and its join key (`None` for a `NULL` foreign key).
pub(crate) struct Bound<'p, K> {
    pub(crate) slot: &'p (dyn Slot + 'static),
    pub(crate) key: Option<&'p K>,
}

impl<K> Clone for Bound<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Bound<'_, K> {}

/// `parent` as a parent of relation `R` (compiled once per relation: keep it small).
pub(crate) fn bind<R: Relation>(parent: &R::Parent) -> Bound<'_, R::JoinKey> {
    Bound { slot: R::slot(parent), key: R::parent_key(parent) }
}

/// `parents` as parents of relation `R`, in order.
pub(crate) fn bind_all<R: Relation>(parents: &[ObjRef<R::Parent>]) -> Vec<Bound<'_, R::JoinKey>> {
    let mut bound = Vec::with_capacity(parents.len());
    for parent in parents {
        bound.push(bind::<R>(parent));
    }
    bound
}

/// The distinct objects the loaded slots of `parents` point to, erased (compiled once per key
/// type).
pub(crate) fn related_slots<K>(parents: &[Bound<'_, K>]) -> Vec<ObjRef<()>> {
    related_with(parents, |slot| slot.peek())
}

/// [`related_slots`] typed as the relation's target `T`.
pub(crate) fn related_typed<T: 'static, K>(parents: &[Bound<'_, K>]) -> Vec<ObjRef<T>> {
    related_with(parents, |slot| slot.peek_typed::<T>())
}

/// The distinct objects `peek` finds in the slots of `parents`: plain loops, since an iterator
/// chain costs several times the code (compile time).
fn related_with<'p, T: 'p, K>(
    parents: &[Bound<'p, K>],
    peek: impl Fn(&'p (dyn Slot + 'static)) -> Option<&'p [ObjRef<T>]>,
) -> Vec<ObjRef<T>> {
    let mut seen = FxHashSet::default();
    let mut related = Vec::new();
    for parent in parents {
        if let Some(children) = peek(parent.slot) {
            distinct_into(children, &mut seen, &mut related);
        }
    }
    related
}

/// Appends the objects of `children` that `seen` has not seen yet (compiled once per model).
fn distinct_into<T>(children: &[ObjRef<T>], seen: &mut FxHashSet<usize>, out: &mut Vec<ObjRef<T>>) {
    for child in children {
        if seen.insert(child.address()) {
            out.push(*child);
        }
    }
}

/// Prints the related rows by key (`Loaded([Person(2), Person(3)])`), not whole: graphs with
/// both directions of a relation loaded are cyclic.
impl<T: Shape> fmt::Debug for Rel<T>
where
    T::Target: Model,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Key<'a, M: Model>(&'a M);
        impl<M: Model> fmt::Debug for Key<'_, M> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", M::NAME, self.0.key())
            }
        }
        let Some(links) = self.peek() else {
            return f.write_str("NotLoaded");
        };
        let mut rows = links.iter().map(|row| Key(&**row));
        if T::COLLECTION {
            f.debug_tuple("Loaded").field(&DebugList(rows)).finish()
        } else {
            f.debug_tuple("Loaded").field(&rows.next_back()).finish()
        }
    }
}

struct DebugList<I>(I);

impl<I: Iterator<Item = T> + Clone, T: fmt::Debug> fmt::Debug for DebugList<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.clone()).finish()
    }
}

/// What a [`Rel`] can hold. Implemented for `Option<M>`, `Vec<M>` and `M` itself.
///
/// `Option<M>` and `Vec<M>` are shapes for any `M`, so a relation to a type that is not a
/// [`Model`] is reported once, at the relation's target, not at every use of the field. A
/// required `Rel<M>` needs `M` to be a model for the field's type itself to exist: rustc reports
/// that at each use of the struct, every copy with the fix.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model, so `Rel<{Self}>` is not a relation field",
    label = "`Rel<T>` holds a model `T`, `Option<T>` or `Vec<T>`",
    note = "a struct mapped to a `table!` becomes a model with `#[derive(Model)]` and `#[orm(table = ..)]`"
)]
pub trait Shape: 'static {
    /// The related model.
    type Target: 'static;
    /// What is stored once loaded.
    #[doc(hidden)]
    type Stored: 'static;
    /// What a read returns, the related objects being in typed state `I` (see
    /// [`Loaded::get`](crate::Loaded::get)): `Option<&Loaded<T, I>>`, `&Loaded<T, I>` or
    /// `&[Loaded<T, I>]`.
    type Typed<'a, I: 'a>;
    /// Whether this is a collection.
    const COLLECTION: bool;

    /// Builds the stored value from the related objects found. `None` when the shape requires
    /// one and none was found.
    #[doc(hidden)]
    fn from_links(links: Vec<ObjRef<Self::Target>>) -> Option<Self::Stored>;

    /// Builds a single-row shape from at most one related object.
    #[doc(hidden)]
    fn from_link(link: Option<ObjRef<Self::Target>>) -> Option<Self::Stored>;

    /// The related objects held.
    #[doc(hidden)]
    fn links(stored: &Self::Stored) -> &[ObjRef<Self::Target>];

    /// A read view of the stored value, the related objects in state `I`.
    #[doc(hidden)]
    fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> Self::Typed<'a, I>;
}

impl<M: 'static> Shape for Option<M> {
    type Target = M;
    type Stored = Option<ObjRef<M>>;
    type Typed<'a, I: 'a> = Option<&'a Loaded<M, I>>;
    const COLLECTION: bool = false;

    fn from_links(links: Vec<ObjRef<M>>) -> Option<Self::Stored> {
        Some(links.into_iter().next())
    }

    fn from_link(link: Option<ObjRef<M>>) -> Option<Self::Stored> {
        Some(link)
    }

    fn links(stored: &Self::Stored) -> &[ObjRef<M>] {
        stored.as_slice()
    }

    fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> Option<&'a Loaded<M, I>> {
        stored.as_ref().map(crate::state::view)
    }
}

/// `Rel<T>` for a required single row: implemented by `#[derive(Model)]` for each model (through
/// this macro), not by a blanket impl, so a field type that is no shape is one error at the field.
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_required_shape {
    ($model:ty) => {
        impl $crate::Shape for $model {
            type Target = $model;
            type Stored = $crate::__private::ObjRef<$model>;
            type Typed<'a, I: 'a> = &'a $crate::Loaded<$model, I>;
            const COLLECTION: bool = false;

            fn from_links(
                links: ::std::vec::Vec<$crate::__private::ObjRef<$model>>,
            ) -> ::std::option::Option<Self::Stored> {
                links.into_iter().next()
            }

            fn from_link(
                link: ::std::option::Option<$crate::__private::ObjRef<$model>>,
            ) -> ::std::option::Option<Self::Stored> {
                link
            }

            fn links(stored: &Self::Stored) -> &[$crate::__private::ObjRef<$model>] {
                ::std::slice::from_ref(stored)
            }

            fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> &'a $crate::Loaded<$model, I> {
                $crate::__private::typed_view(stored)
            }
        }
    };
}

impl<M: 'static> Shape for Vec<M> {
    type Target = M;
    type Stored = Vec<ObjRef<M>>;
    type Typed<'a, I: 'a> = &'a [Loaded<M, I>];
    const COLLECTION: bool = true;

    fn from_links(links: Vec<ObjRef<M>>) -> Option<Self::Stored> {
        Some(links)
    }

    fn from_link(link: Option<ObjRef<M>>) -> Option<Self::Stored> {
        Some(link.into_iter().collect())
    }

    fn links(stored: &Self::Stored) -> &[ObjRef<M>] {
        stored
    }

    fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> &'a [Loaded<M, I>] {
        crate::state::view_slice(stored)
    }
}
