//! `Rel<T>`: a relation field that is either not loaded or loaded, and the shapes it can hold.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicU8, Ordering};

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
///
/// `Rel<T>` asks nothing of `T` to exist: what it holds once filled is the same for every shape
/// (links with their model erased), so a field whose `T` is no shape (a target that is not a
/// model) is one error where the derive names the target, not one at every use of the struct.
pub struct Rel<T> {
    /// [`FILLED`], [`FILLING`], [`MANY`], [`RAISE`] and [`READ`]: one byte, beside the value.
    state: AtomicU8,
    /// Written once, by the fill that set [`FILLING`], and readable once [`FILLED`] is set
    /// (with `Release`/`Acquire`); never changed after, dropped with the relation.
    value: UnsafeCell<MaybeUninit<Stored>>,
    shape: PhantomData<fn() -> T>,
}

/// The value is written and readable.
const FILLED: u8 = 1;
/// A fill is writing the value: other fills wait for it and keep its value.
const FILLING: u8 = 2;
/// The value is a collection (`Stored::links.many`), not a single row.
const MANY: u8 = 4;
/// An unloaded read raises (the strategy of the load that produced the object).
const RAISE: u8 = 8;
/// The application read the value (for the unused-eager-load report).
const READ: u8 = 16;

/// What a filled relation holds: links to objects of its target, the target erased (one layout
/// for every shape, so `Rel<T>` needs nothing of `T`), and how to print one. Written only by the
/// typed fills below, from links of the shape's target, so reading it back as that target is
/// sound.
struct Stored {
    links: Value,
    describe: fn(&ObjRef<()>, &mut fmt::Formatter<'_>) -> fmt::Result,
}

impl Stored {
    /// The links, `many` being what [`MANY`] says of this value.
    fn links(&self, many: bool) -> &[ObjRef<()>] {
        // SAFETY: `MANY` says which field of the union the fill wrote.
        #[allow(unsafe_code)]
        unsafe {
            if many {
                &self.links.many[..]
            } else {
                self.links.one.as_slice()
            }
        }
    }
}

/// One row (`None` for no row), or a collection, as [`MANY`] says.
union Value {
    one: Option<ObjRef<()>>,
    many: ManuallyDrop<Box<[ObjRef<()>]>>,
}

/// A filled relation's links, erased, as a shape's [`Shape::typed`] reads them: made only here,
/// from the links of a `Rel<T>` for `T`'s own `typed`.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Filled<'a> {
    links: &'a [ObjRef<()>],
}

/// `Model(key)` of the object `link` points to, erased from an `ObjRef<M>`.
fn describe<M: Model>(link: &ObjRef<()>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // SAFETY: `Stored::describe` is `describe::<Target>`, stored beside links erased from
    // `ObjRef<Target>`s.
    #[allow(unsafe_code)]
    let link = unsafe { link.assume::<M>() };
    write!(f, "{}({:?})", M::NAME, link.key())
}

impl<T> Rel<T> {
    /// A relation that is not loaded and loads lazily.
    pub const fn new() -> Self {
        Rel {
            state: AtomicU8::new(0),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            shape: PhantomData,
        }
    }

    /// The value and whether it is a collection, once filled.
    fn filled(&self) -> Option<(&Stored, bool)> {
        let state = self.state.load(Ordering::Acquire);
        if state & FILLED == 0 {
            return None;
        }
        // SAFETY: `FILLED` is set (with `Release`, read with `Acquire`) only after the value was
        // written, and the value never changes after.
        #[allow(unsafe_code)]
        let stored = unsafe { (*self.value.get()).assume_init_ref() };
        Some((stored, state & MANY != 0))
    }

    /// The links of the value, erased.
    fn links(&self) -> Option<&[ObjRef<()>]> {
        self.filled().map(|(stored, many)| stored.links(many))
    }

    /// Whether the application has read the loaded value.
    pub(crate) fn was_read(&self) -> bool {
        self.state.load(Ordering::Relaxed) & READ != 0
    }

    /// Whether the relation holds a loaded value.
    pub fn is_loaded(&self) -> bool {
        self.state.load(Ordering::Acquire) & FILLED != 0
    }

    /// Whether reading it unloaded is an error rather than a lazy load.
    pub fn is_raise(&self) -> bool {
        self.state.load(Ordering::Relaxed) & RAISE != 0
    }

    /// Sets whether an unloaded read raises (from the strategy of the load that produced it).
    pub(crate) fn set_raise(&self, raise: bool) {
        if self.is_raise() != raise {
            if raise {
                self.state.fetch_or(RAISE, Ordering::Relaxed);
            } else {
                self.state.fetch_and(!RAISE, Ordering::Relaxed);
            }
        }
    }

    /// The loaded value, counting as a read (for typed reads).
    pub(crate) fn stored(&self) -> Option<Filled<'_>> {
        let links = self.links()?;
        if self.state.load(Ordering::Relaxed) & READ == 0 {
            self.state.fetch_or(READ, Ordering::Relaxed);
        }
        Some(Filled { links })
    }

    /// Writes `links` as the value unless another fill did or is doing so (then waits for it
    /// and keeps its value).
    fn fill_raw(
        &self,
        links: Value,
        many: bool,
        describe: fn(&ObjRef<()>, &mut fmt::Formatter<'_>) -> fmt::Result,
    ) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & (FILLED | FILLING) != 0 {
                // Loaded, or being loaded by another thread: its value stands.
                while self.state.load(Ordering::Acquire) & FILLED == 0 {
                    std::thread::yield_now();
                }
                if many {
                    // SAFETY: `many` says which field `links` holds; it was never stored.
                    #[allow(unsafe_code)]
                    unsafe {
                        drop(ManuallyDrop::into_inner(links.many));
                    }
                }
                return;
            }
            match self.state.compare_exchange_weak(
                state,
                state | FILLING,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        // SAFETY: this fill set `FILLING`: no other writes the value, and none reads it before
        // `FILLED`.
        #[allow(unsafe_code)]
        unsafe {
            (*self.value.get()).write(Stored { links, describe });
        }
        // `FILLING` off, `FILLED` (and `MANY`) on; the other bits may change meanwhile.
        let many = if many { MANY } else { 0 };
        self.state.fetch_xor(FILLING | FILLED | many, Ordering::Release);
    }
}

impl<T> Drop for Rel<T> {
    fn drop(&mut self) {
        let state = *self.state.get_mut();
        if state & FILLED != 0 && state & MANY != 0 {
            // SAFETY: filled with a collection: the union holds the box, dropped once, here.
            #[allow(unsafe_code)]
            unsafe {
                ManuallyDrop::drop(&mut (*self.value.get_mut()).assume_init_mut().links.many);
            }
        }
    }
}

impl<T: Shape> Rel<T> {
    /// The loaded value, or `None` if it is not loaded. Never runs SQL.
    pub fn get(&self) -> Option<T::Typed<'_, Untyped>> {
        self.stored().map(T::typed)
    }

    /// The related objects, without counting as a read (for the loader).
    pub(crate) fn peek(&self) -> Option<&[ObjRef<T::Target>]> {
        // SAFETY: the links were erased from `ObjRef<T::Target>`s (`Rel::fill_with`).
        #[allow(unsafe_code)]
        self.links().map(|links| unsafe { crate::graph::assume_slice(links) })
    }
}

impl<T: Shape> Rel<T>
where
    T::Target: Model,
{
    /// Fills the relation with `links` as its shape holds them (a single row takes the first);
    /// `false`, and nothing filled, when the shape requires a row and there is none. A relation
    /// that is already loaded keeps its value. The links must point into the graph of the
    /// object holding this relation (see `graph.rs`).
    pub(crate) fn fill_with(&self, links: Vec<ObjRef<T::Target>>) -> bool {
        if T::COLLECTION {
            let links = crate::graph::erase_all(links).into_boxed_slice();
            self.fill_raw(Value { many: ManuallyDrop::new(links) }, true, describe::<T::Target>);
            true
        } else {
            self.fill_one(links.into_iter().next())
        }
    }

    /// [`Rel::fill_with`] at most one row.
    pub(crate) fn fill_one(&self, link: Option<ObjRef<T::Target>>) -> bool {
        if T::COLLECTION {
            return self.fill_with(link.into_iter().collect());
        }
        if link.is_none() && T::REQUIRED {
            return false;
        }
        self.fill_raw(Value { one: link.map(ObjRef::erase) }, false, describe::<T::Target>);
        true
    }
}

// `Send` and `Sync` are stated here rather than proven through the related model: the derived
// proof walked from every model through its `Rel`s into every model it reaches, which made
// `cargo check` of 60 models take minutes and overflow the recursion limit (docs/design.md,
// "Compile time of the choice"). With these impls, proving `Person: Send + Sync` stops at its
// `Rel` fields: each model is proven once, on its own fields, at its `impl Model`.
//
// SAFETY: a `Rel<T>` holds atomics and, once filled, links to objects of `T::Target` in the
// graph of the object holding it. Only the loader fills a `Rel` (`fill_with` is crate-private
// and asks `T::Target: Model`), and `Model` has `Send + Sync` as supertraits (checked where each
// model implements it): sending or sharing the links shares `Sync` objects of a graph that the
// handles reaching them keep alive. A `Rel` whose `T` is no shape, or whose target is not a
// model, can never be filled, so it holds nothing to send or share.
#[allow(unsafe_code)]
unsafe impl<T> Send for Rel<T> {}
// SAFETY: as for `Send` above.
#[allow(unsafe_code)]
unsafe impl<T> Sync for Rel<T> {}

impl<T> Default for Rel<T> {
    fn default() -> Self {
        Rel::new()
    }
}

/// An unloaded relation with the same `raise` setting: the links of a loaded one point into the
/// graph of the object it belongs to, and a clone of that object is not in the graph.
impl<T> Clone for Rel<T> {
    fn clone(&self) -> Self {
        let clone = Rel::new();
        clone.set_raise(self.is_raise());
        clone
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

impl<S: Shape> Slot for Rel<S>
where
    S::Target: Model,
{
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
        S::REQUIRED
    }

    fn peek(&self) -> Option<&[ObjRef<()>]> {
        Rel::peek(self).map(crate::graph::erase_slice)
    }

    fn fill_links(&self, links: Links) -> bool {
        let links = links.typed::<S::Target>().expect(WRONG_MODEL);
        self.fill_with(links)
    }

    fn fill_link(&self, link: Option<AnyRef>) -> bool {
        let link = link.map(|link| link.typed::<S::Target>().expect(WRONG_MODEL));
        self.fill_one(link)
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
impl<T> fmt::Debug for Rel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Key<'a>(&'a ObjRef<()>, fn(&ObjRef<()>, &mut fmt::Formatter<'_>) -> fmt::Result);
        impl fmt::Debug for Key<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                (self.1)(self.0, f)
            }
        }
        let Some((stored, many)) = self.filled() else {
            return f.write_str("NotLoaded");
        };
        let mut rows = stored.links(many).iter().map(|row| Key(row, stored.describe));
        if many {
            f.debug_tuple("Loaded").field(&DebugList(rows)).finish()
        } else {
            f.debug_tuple("Loaded").field(&rows.next()).finish()
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
/// `Rel<T>` itself asks nothing of `T`, so a relation to a type that is not a [`Model`] is
/// reported once, where the derive names the relation's target, not at every use of the field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model, so `Rel<{Self}>` is not a relation field",
    label = "`Rel<T>` holds a model `T`, `Option<T>` or `Vec<T>`",
    note = "a struct mapped to a `table!` becomes a model with `#[derive(Model)]` and `#[orm(table = ..)]`"
)]
pub trait Shape: 'static {
    /// The related model.
    type Target: 'static;
    /// What a read returns, the related objects being in typed state `I` (see
    /// [`Loaded::get`](crate::Loaded::get)): `Option<&Loaded<T, I>>`, `&Loaded<T, I>` or
    /// `&[Loaded<T, I>]`.
    type Typed<'a, I: 'a>;
    /// Whether this is a collection.
    const COLLECTION: bool;
    /// Whether the shape requires a row (`Rel<T>`): no row is then an error, not `None`.
    #[doc(hidden)]
    const REQUIRED: bool;

    /// A read view of what a `Rel<Self>` holds, the related objects in state `I`.
    #[doc(hidden)]
    fn typed<'a, I: 'a>(filled: Filled<'a>) -> Self::Typed<'a, I>;
}

impl<'a> Filled<'a> {
    /// The links, typed as `M`s.
    ///
    /// # Safety
    /// `self` holds links to `M`s: it is the value of a `Rel<T>` whose target is `M` (the typed
    /// fills build it from `ObjRef<T::Target>`s, and only `T`'s own `Shape::typed` reads it).
    #[allow(unsafe_code)]
    unsafe fn links_as<M>(self) -> &'a [ObjRef<M>] {
        // SAFETY: the caller's promise, and `assume_slice`'s.
        unsafe { crate::graph::assume_slice(self.links) }
    }
}

impl<M: 'static> Shape for Option<M> {
    type Target = M;
    type Typed<'a, I: 'a> = Option<&'a Loaded<M, I>>;
    const COLLECTION: bool = false;
    const REQUIRED: bool = false;

    fn typed<'a, I: 'a>(filled: Filled<'a>) -> Option<&'a Loaded<M, I>> {
        // SAFETY: `filled` is the value of a `Rel<Option<M>>` (see `Filled::links_as`).
        #[allow(unsafe_code)]
        let links = unsafe { filled.links_as::<M>() };
        links.first().map(crate::state::view)
    }
}

/// The read view of a required single row (`Rel<M>`), for [`__impl_required_shape`]: `filled`
/// must be the value of a `Rel<M>`, which only `M`'s `Shape::typed` is handed (a `Filled` is
/// neither built nor reachable outside this crate).
#[doc(hidden)]
pub fn typed_required<M: 'static, I>(filled: Filled<'_>) -> &Loaded<M, I> {
    // SAFETY: as promised above (see `Filled::links_as`).
    #[allow(unsafe_code)]
    let links = unsafe { filled.links_as::<M>() };
    // A required relation is filled only with its row (`Rel::fill_with`).
    crate::state::view(&links[0])
}

/// `Rel<T>` for a required single row: implemented by `#[derive(Model)]` for each model (through
/// this macro), not by a blanket impl, which would overlap `Option<M>` and `Vec<M>`.
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_required_shape {
    ($model:ty) => {
        impl $crate::Shape for $model {
            type Target = $model;
            type Typed<'a, I: 'a> = &'a $crate::Loaded<$model, I>;
            const COLLECTION: bool = false;
            const REQUIRED: bool = true;

            fn typed<'a, I: 'a>(
                filled: $crate::__private::Filled<'a>,
            ) -> &'a $crate::Loaded<$model, I> {
                $crate::__private::typed_required::<$model, I>(filled)
            }
        }
    };
}

/// The shape of a collection (`Vec<T>`): what [`count`](crate::count) counts.
#[diagnostic::on_unimplemented(
    message = "`count(..)` counts the rows of a collection, not of `{Self}`",
    label = "a relation of one row",
    note = "count a `has_many` or `many_to_many` relation (`Rel<Vec<T>>`)"
)]
pub trait ToMany: Shape {}

impl<M: 'static> ToMany for Vec<M> {}

impl<M: 'static> Shape for Vec<M> {
    type Target = M;
    type Typed<'a, I: 'a> = &'a [Loaded<M, I>];
    const COLLECTION: bool = true;
    const REQUIRED: bool = false;

    fn typed<'a, I: 'a>(filled: Filled<'a>) -> &'a [Loaded<M, I>] {
        // SAFETY: `filled` is the value of a `Rel<Vec<M>>` (see `Filled::links_as`).
        #[allow(unsafe_code)]
        let links = unsafe { filled.links_as::<M>() };
        crate::state::view_slice(links)
    }
}
