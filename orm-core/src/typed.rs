//! Typed loaded state: the result of a query records in its type which relations it loaded, so
//! reading one it did not load is a compile error rather than [`Error::NotLoaded`].
//!
//! `#[derive(Model)]` emits, per model, a state type with one slot per relation in field order
//! (`PersonState<Address = No, Manager = No, Reports = No, Projects = No>`). A slot is [`No`] or
//! [`Yes<Inner>`](Yes), `Inner` being the state of the related objects. A query starts from the
//! model's [`Model::Base`] state (its declared `joined`/`selectin` relations) and every option
//! rewrites one slot ([`Apply`]), so the state is the same whatever the order of the options and
//! options on one relation merge. [`Query::load`](crate::Query::load) returns [`Loaded<M, S>`],
//! which derefs to the model: untyped code keeps working unchanged.
//!
//! Functions state what they need with [`Has`], without naming the whole state:
//!
//! ```ignore
//! fn city(p: &Loaded<Person, impl Has<person_rel::address>>) -> Option<&str> {
//!     p.get(Person::address).map(|a| a.city.as_str()) // no Result: the type says it is loaded
//! }
//! ```
//!
//! [`Error::NotLoaded`]: crate::Error::NotLoaded

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use crate::graph::{Graph, ObjRef};
use crate::model::{Model, Relation};
use crate::options::{IntoOptions, Options, RaiseAll, RelOption};
use crate::rel::Shape;
use crate::session::{Session, SessionConnection};

/// A relation slot of a state: not guaranteed to be loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct No;

/// A relation slot of a state: loaded, and the related objects are in state `I`.
pub struct Yes<I>(PhantomData<fn() -> I>);

/// The strategies of options, as types: the `K` of [`RelOption<R, K, Sub>`](RelOption).
pub mod kind {
    /// `joined(..)`: loads the relation.
    #[derive(Debug, Clone, Copy)]
    pub struct Joined;
    /// `selectin(..)`: loads the relation.
    #[derive(Debug, Clone, Copy)]
    pub struct Selectin;
    /// `contains_eager(..)`: loads the relation from the query's own join.
    #[derive(Debug, Clone, Copy)]
    pub struct ContainsEager;
    /// `lazy(..)`: leaves the relation unloaded.
    #[derive(Debug, Clone, Copy)]
    pub struct Lazy;
    /// `raise(..)`: leaves the relation unloaded.
    #[derive(Debug, Clone, Copy)]
    pub struct Raise;
}

/// The slot an option of this kind leaves, given the related objects' state `I`.
pub trait SlotFor<I> {
    /// [`Yes<I>`](Yes) for the loading kinds, [`No`] for `lazy` and `raise`.
    type Slot;
}

impl<I> SlotFor<I> for kind::Joined {
    type Slot = Yes<I>;
}
impl<I> SlotFor<I> for kind::Selectin {
    type Slot = Yes<I>;
}
impl<I> SlotFor<I> for kind::ContainsEager {
    type Slot = Yes<I>;
}
impl<I> SlotFor<I> for kind::Lazy {
    type Slot = No;
}
impl<I> SlotFor<I> for kind::Raise {
    type Slot = No;
}

/// The state nested options start from: the slot's inner state, or `B` for an unloaded slot.
#[doc(hidden)]
pub trait InnerOr<B> {
    /// The state nested options apply to.
    type Inner;
}

impl<B> InnerOr<B> for No {
    type Inner = B;
}

impl<B, I> InnerOr<B> for Yes<I> {
    type Inner = I;
}

/// A model's state type (`PersonState<..>`); implemented by `#[derive(Model)]`.
pub trait State {
    /// The model the state describes.
    type Model: Model;
}

/// The state `Self` has relation `R` loaded, and its related objects are in state `Inner`.
///
/// Implemented by `#[derive(Model)]` for every state whose slot for `R` is [`Yes`]. A function
/// that reads `address` takes `&Loaded<Person, impl Has<person_rel::address>>`; one that reads the
/// reports' addresses takes `impl Has<person_rel::reports, Inner: Has<person_rel::address>>`.
#[diagnostic::on_unimplemented(
    message = "relation `{R}` is not loaded in `{Self}`",
    label = "this value's type does not include `{R}`",
    note = "add `joined(..)` or `selectin(..)` of `{R}` to the query's `.options(..)`, or upgrade the value with `.upgrade(handle, &mut session)`"
)]
pub trait Has<R> {
    /// The state of the related objects.
    type Inner;
}

/// Relation `Self` is loaded in state `S`: [`Loaded::get`]'s bound, so that the relation is
/// inferred from the argument and the error names it.
#[diagnostic::on_unimplemented(
    message = "relation `{Self}` is not loaded in `{S}`",
    label = "`{Self}` was not loaded by the query that produced this value",
    note = "add `joined(..)` or `selectin(..)` of `{Self}` to the query's `.options(..)`, or upgrade the value with `.upgrade(handle, &mut session)`"
)]
pub trait LoadedIn<S> {
    /// The state of the related objects.
    type Inner;
}

#[diagnostic::do_not_recommend]
impl<R, S: Has<R>> LoadedIn<S> for R {
    type Inner = S::Inner;
}

/// What load options do to a state: `(joined(Person::address), raise(Person::manager))` applied
/// to `PersonState` is `PersonState<Yes<AddressState>>`. Implemented by `#[derive(Model)]` for
/// each relation's options; tuples fold from left to right.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply to `{S}`: it names a relation of another model",
    label = "this option names a relation of another model",
    note = "each option must name a relation of the model loaded at its level (nested options go in `.then(..)`)"
)]
pub trait Apply<S: State>: IntoOptions<S::Model> {
    /// The state after the options.
    type Out: State<Model = S::Model>;
}

/// No options: the state is unchanged.
#[diagnostic::do_not_recommend]
impl<S: State> Apply<S> for () {
    type Out = S;
}

/// `raise_all()` guarantees nothing: the relations named by options after it (in the same tuple
/// or a later `.options(..)`) are loaded again. Written before them, it costs the type nothing.
#[diagnostic::do_not_recommend]
impl<S: State> Apply<S> for RaiseAll {
    type Out = <S::Model as Model>::Bare;
}

/// Options built at run time guarantee nothing.
#[diagnostic::do_not_recommend]
impl<M: Model, S: State<Model = M>> Apply<S> for Options<M> {
    type Out = M::Bare;
}

macro_rules! tuple_apply {
    ($last:ident; $($prev:ident $name:ident $state:ident),+) => {
        #[diagnostic::do_not_recommend]
        impl<M: Model, S0: State<Model = M>, $($name, $state),+> Apply<S0> for ($($name,)+)
        where
            $($state: State<Model = M>, $name: Apply<$prev, Out = $state>),+
        {
            type Out = $last;
        }
    };
}

tuple_apply!(S1; S0 A S1);
tuple_apply!(S2; S0 A S1, S1 B S2);
tuple_apply!(S3; S0 A S1, S1 B S2, S2 C S3);
tuple_apply!(S4; S0 A S1, S1 B S2, S2 C S3, S3 D S4);
tuple_apply!(S5; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5);
tuple_apply!(S6; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5, S5 F S6);
tuple_apply!(S7; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5, S5 F S6, S6 G S7);
tuple_apply!(S8; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5, S5 F S6, S6 G S7, S7 H S8);

/// Options a fresh query of `M` accepts, for helpers that take options as an argument:
/// `fn people(options: impl QueryOptions<Person>)`. Implemented for every such option set.
pub trait QueryOptions<M: Model>: Apply<M::Base> {}

impl<M: Model, O: Apply<M::Base>> QueryOptions<M> for O {}

/// The state model `M` is in after options `O`: `Loads<Person, (Joined<person_rel::address>,)>`
/// is the type `Person::query().options(joined(Person::address)).load(..)` returns elements of.
/// Names a shape for struct fields and return types without spelling out the state's slots.
pub type Loads<M, O> = Loaded<M, <O as Apply<<M as Model>::Base>>::Out>;

/// The type of `joined(rel)`, with nested options `Sub`, for [`Loads`].
pub type Joined<R, Sub = ()> = RelOption<R, kind::Joined, Sub>;
/// The type of `selectin(rel)`, with nested options `Sub`, for [`Loads`].
pub type Selectin<R, Sub = ()> = RelOption<R, kind::Selectin, Sub>;

/// The state of a [`Loaded`] handle whose loaded relations are only known at run time: what
/// [`Rel::get`](crate::Rel::get) and [`Session::get`] return. Reads go through the relation
/// fields (`p.address.get()`) or lazy loads ([`Loaded::load`]).
#[derive(Debug, Clone, Copy)]
pub enum Untyped {}

/// An object of model `M` in the graph its load built, whose type records the relations loaded
/// on it: state `S`.
///
/// Derefs to the model (the plain fields and the runtime [`Rel`](crate::Rel) accessors keep
/// working); [`get`](Loaded::get) reads a relation the state has loaded with no `Result`,
/// [`load`](Loaded::load) reads any relation, loading it lazily if needed, and
/// [`upgrade`](Loaded::upgrade) loads one the state has not and records it in the type. Only
/// the loader builds these, so the state never claims a relation that is not loaded.
///
/// A handle keeps its object's whole graph alive (every object the loads of its session
/// decoded into that graph), not only the objects it reaches: the graph is freed, in one pass,
/// when its session and its last handle are gone. Handles are `Send + Sync` and can outlive the
/// session. Related objects are read as handles borrowed from their parent
/// (`&Loaded<Address>`); cloning one gives an owned handle.
#[repr(transparent)]
pub struct Loaded<M, S = Untyped> {
    /// The object and its graph, which this handle counts (a `Loaded` borrowed from a relation
    /// slot's link counts nothing and is never dropped: only `new` makes owned ones).
    link: ObjRef<M>,
    state: PhantomData<fn() -> S>,
}

impl<M, S> Loaded<M, S> {
    /// An owned handle of the object `link` points to: counts its graph.
    pub(crate) fn new(link: ObjRef<M>) -> Self {
        // SAFETY: `link` points into a live graph (see `ObjRef`), whose address comes from the
        // `Arc` that owns it (`Graph::address`, the pointer `Arc::as_ptr` gives); the count is
        // given back by `Drop`.
        #[allow(unsafe_code)]
        unsafe {
            Arc::increment_strong_count(link.graph().as_ptr().cast_const());
        }
        Loaded { link, state: PhantomData }
    }

    /// The graph this handle counts, as a new `Arc`.
    pub(crate) fn graph(&self) -> Arc<Graph> {
        let graph = self.link.graph().as_ptr().cast_const();
        // SAFETY: this handle counts the graph (a borrowed view is borrowed from something that
        // does), so the count is at least one; the new `Arc` takes a count of its own.
        #[allow(unsafe_code)]
        unsafe {
            Arc::increment_strong_count(graph);
            Arc::from_raw(graph)
        }
    }

    /// Whether both handles are the same object (not only the same row: a row that changed
    /// between two loads is two objects).
    pub fn ptr_eq(this: &Self, other: &Loaded<M, impl Sized>) -> bool {
        this.link.address() == other.link.address()
    }

    /// The same object, with its typed state forgotten.
    pub fn untyped(&self) -> Loaded<M> {
        Loaded::new(self.link)
    }
}

impl<M: Model, S> Loaded<M, S> {
    /// Reads relation `rel`, which the state guarantees loaded: no SQL, no `Result`.
    ///
    /// `Option<&Loaded<T, I>>` for an optional relation, `&Loaded<T, I>` for a required one,
    /// `&[Loaded<T, I>]` for a collection, `I` being what the query loaded on the related objects.
    pub fn get<R>(&self, rel: R) -> <R::Shape as Shape>::Typed<'_, <R as LoadedIn<S>>::Inner>
    where
        R: Relation<Parent = M> + LoadedIn<S>,
    {
        let _ = rel;
        match R::slot(self).stored() {
            Some(stored) => <R::Shape as Shape>::typed(stored),
            // Only the loader and `upgrade` build a `Loaded`, after loading every relation the
            // state names; a loaded relation is never unloaded.
            None => {
                unreachable!("{}.{} is in the typed state but not loaded", M::NAME, R::info().name)
            }
        }
    }

    /// Reads relation `rel`, running its lazy load through `session` if it is not loaded yet.
    ///
    /// A loaded relation is returned with no SQL. An unloaded one runs one statement (none for
    /// a many-to-one whose target the graph already holds), or returns
    /// [`Error::NotLoaded`](crate::Error::NotLoaded) if its strategy is `raise`. The objects it
    /// loads join this object's graph.
    #[track_caller]
    pub fn load<R, C>(
        &self,
        rel: R,
        session: &mut Session<'_, C>,
    ) -> crate::Result<<R::Shape as Shape>::Typed<'_, Untyped>>
    where
        R: Relation<Parent = M>,
        C: SessionConnection,
    {
        let _ = rel;
        crate::loader::lazy::load::<R, S, C>(self, session, std::panic::Location::caller())
    }

    /// Loads relation `rel` if it is not loaded yet (as [`Loaded::load`]) and returns this
    /// object with `rel` recorded in its type.
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn upgrade<R, C>(
        &self,
        rel: R,
        session: &mut Session<'_, C>,
    ) -> crate::Result<Loaded<M, <Selectin<R> as Apply<S>>::Out>>
    where
        R: Relation<Parent = M>,
        S: State<Model = M>,
        Selectin<R>: Apply<S>,
        C: SessionConnection,
    {
        self.load(rel, session)?;
        Ok(Loaded::new(self.link))
    }
}

impl<M, S> Drop for Loaded<M, S> {
    fn drop(&mut self) {
        // SAFETY: an owned handle holds one count of its graph (`new`), given back here once;
        // borrowed views of links are never dropped. The last count drops the graph, and with
        // it every object, in one pass over its tables.
        #[allow(unsafe_code)]
        unsafe {
            Arc::decrement_strong_count(self.link.graph().as_ptr().cast_const());
        }
    }
}

// SAFETY: a handle is a shared reference to an `M` and a count of its graph (an `Arc<Graph>`,
// `Send + Sync`: its objects are models, `Send + Sync` by `Model`'s supertraits, behind a
// mutex while loads add to them).
#[allow(unsafe_code)]
unsafe impl<M: Sync, S> Send for Loaded<M, S> {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl<M: Sync, S> Sync for Loaded<M, S> {}

impl<M, S> Deref for Loaded<M, S> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.link
    }
}

impl<M, S> AsRef<M> for Loaded<M, S> {
    fn as_ref(&self) -> &M {
        &self.link
    }
}

impl<M, S> Clone for Loaded<M, S> {
    fn clone(&self) -> Self {
        Loaded::new(self.link)
    }
}

impl<M: fmt::Debug, S> fmt::Debug for Loaded<M, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// `&ObjRef<M>` viewed as `&Loaded<M, S>`, for the shapes' typed views.
#[doc(hidden)]
pub fn view<M, S>(link: &ObjRef<M>) -> &Loaded<M, S> {
    // SAFETY: `Loaded` is `repr(transparent)` over `ObjRef<M>` (its other field is a zero-sized
    // `PhantomData`). The view is only borrowed, so it is never dropped and counts nothing:
    // the graph is kept alive by whatever the link was borrowed from.
    #[allow(unsafe_code)]
    unsafe {
        &*(link as *const ObjRef<M>).cast::<Loaded<M, S>>()
    }
}

/// `&[ObjRef<M>]` viewed as `&[Loaded<M, S>]`, for the shapes' typed views.
#[doc(hidden)]
pub fn view_slice<M, S>(links: &[ObjRef<M>]) -> &[Loaded<M, S>] {
    // SAFETY: as for `view`, element by element: same size, alignment and layout.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(links.as_ptr().cast::<Loaded<M, S>>(), links.len())
    }
}
