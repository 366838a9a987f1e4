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
//! ```
//! # use diesel::prelude::*;
//! # use orm_core::prelude::*;
//! # diesel::table! { person (id) { id -> Integer, lastname -> Text, address_id -> Nullable<Integer>, manager_id -> Nullable<Integer> } }
//! # diesel::table! { address (id) { id -> Integer, city -> Text } }
//! # #[derive(Model, Debug)] #[orm(table = address)] pub struct Address { pub id: i32, pub city: String }
//! # #[derive(Model, Debug)] #[orm(table = person)]
//! # pub struct Person { pub id: i32, pub lastname: String, pub address_id: Option<i32>, pub manager_id: Option<i32>,
//! #     #[relation(belongs_to = Address, foreign_key = address_id)] pub address: Rel<Option<Address>>,
//! #     #[relation(has_many = Person, foreign_key = manager_id)] pub reports: Rel<Vec<Person>> }
//! fn city(p: &Loaded<Person, impl Has<person_rel::address>>) -> Option<&str> {
//!     p.get(Person::address).map(|a| a.city.as_str()) // no Result: the type says it is loaded
//! }
//! # fn main() {}
//! ```
//!
//! [`Error::NotLoaded`]: crate::Error::NotLoaded

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use crate::graph::{Graph, ObjRef};
use crate::model::{Model, Relation};
use crate::rel::Shape;

/// A relation slot of a state: not guaranteed to be loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct No;

/// A relation slot of a state: loaded, and the related objects are in state `I`.
pub struct Yes<I>(PhantomData<fn() -> I>);

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

/// State `S` with relation `R`'s rows counted (a [`count`](crate::count) option): what the
/// state says of loaded relations is `S`'s, and [`HasCount<R, _>`](HasCount) holds.
pub struct Counted<S, R>(PhantomData<fn() -> (S, R)>);

#[diagnostic::do_not_recommend]
impl<S: State, R> State for Counted<S, R> {
    type Model = S::Model;
}

#[diagnostic::do_not_recommend]
impl<S: Has<R>, R, R2> Has<R> for Counted<S, R2> {
    type Inner = S::Inner;
}

/// The state `Self` has relation `R`'s rows counted; `I` is where (inferred: [`Here`], or
/// [`There`] for a count below another). A function that reads a count takes
/// `&Loaded<Post, impl HasCount<post_rel::comments, I>>` with `I` a type parameter of its own.
#[diagnostic::on_unimplemented(
    message = "relation `{R}` is not counted in `{Self}`",
    label = "this value's type does not count `{R}`",
    note = "add `count(..)` of `{R}` to the query's `.options(..)`, or read it with `.count(rel, &mut session)`"
)]
pub trait HasCount<R, I> {}

/// [`HasCount`]'s position: the outermost count.
#[derive(Debug)]
pub enum Here {}

/// [`HasCount`]'s position: below the outermost count.
#[derive(Debug)]
pub struct There<I>(PhantomData<fn() -> I>);

#[diagnostic::do_not_recommend]
impl<S, R> HasCount<R, Here> for Counted<S, R> {}

#[diagnostic::do_not_recommend]
impl<S: HasCount<R, I>, R, R2, I> HasCount<R, There<I>> for Counted<S, R2> {}

/// The state of a [`Loaded`] handle whose loaded relations are only known at run time: what
/// [`Rel::get`](crate::Rel::get) and [`Session::get`](crate::Session::get) return. Reads go through the relation
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

    /// Another handle of the same object, in state `T` (for `upgrade`, which loaded what `T`
    /// claims).
    pub(crate) fn retyped<T>(&self) -> Loaded<M, T> {
        Loaded::new(self.link)
    }

    /// The graph this handle counts, borrowed for as long as the handle.
    pub(crate) fn graph_ref(&self) -> &Graph {
        // SAFETY: this handle counts the graph (a borrowed view is borrowed from something that
        // does), so the graph lives at least as long as the borrow of `self`.
        #[allow(unsafe_code)]
        unsafe {
            self.link.graph().as_ref()
        }
    }

    /// The object's address, which identifies it within its graph.
    pub(crate) fn address(&self) -> usize {
        self.link.address()
    }

    /// The same object, with its typed state forgotten.
    pub fn untyped(&self) -> Loaded<M> {
        self.retyped()
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
