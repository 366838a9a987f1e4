//! `Rel<T>`: a relation field that is either not loaded or loaded, and the shapes it can hold.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::model::Model;
use crate::typed::Loaded;

/// A relation field: `Rel<Option<T>>` or `Rel<T>` for a single related row, `Rel<Vec<T>>` for a
/// collection.
///
/// It is filled at most once (by an eager load or the first lazy load) and read for free after
/// that. A LEFT JOIN miss is *loaded* (`None` or empty), never "not loaded". Related rows are
/// held in `Arc`s: one decoded row is shared by every parent that points to it.
pub struct Rel<T: Shape> {
    /// Released by `Rel`'s own `Drop` (see `release.rs`); `ManuallyDrop` keeps the compiler's
    /// drop check from walking into the related model (and from there the whole model graph).
    value: OnceLock<ManuallyDrop<T::Stored>>,
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
    pub fn get(&self) -> Option<T::View<'_>> {
        self.stored().map(T::view)
    }

    /// The loaded value as stored (`Option<Arc<T>>`, `Arc<T>` or `Vec<Arc<T>>`).
    pub fn stored(&self) -> Option<&T::Stored> {
        let value = self.value.get().map(|v| &**v);
        if value.is_some() && !self.read.load(Ordering::Relaxed) {
            self.read.store(true, Ordering::Relaxed);
        }
        value
    }

    /// The stored value, without counting as a read (for the loader).
    pub(crate) fn peek(&self) -> Option<&T::Stored> {
        self.value.get().map(|v| &**v)
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

    /// Fills the relation; a relation that is already loaded keeps its value.
    pub(crate) fn fill(&self, value: T::Stored) {
        if let Err(refused) = self.value.set(ManuallyDrop::new(value)) {
            crate::release::release(T::into_rows(ManuallyDrop::into_inner(refused)));
        }
    }

    /// Sets whether an unloaded read raises (from the strategy of the load that produced it).
    pub(crate) fn set_raise(&self, raise: bool) {
        if self.raise.load(Ordering::Relaxed) != raise {
            self.raise.store(raise, Ordering::Relaxed);
        }
    }
}

/// Releases the related objects without recursing into them (see `release.rs`): dropping a deep
/// graph takes the same stack at any depth.
impl<T: Shape> Drop for Rel<T> {
    fn drop(&mut self) {
        if let Some(stored) = self.value.take().map(ManuallyDrop::into_inner) {
            crate::release::release(T::into_rows(stored));
        }
    }
}

// `Send` and `Sync` are stated here rather than proven through the related model: the derived
// proof walked from every model through its `Rel`s into every model it reaches, which made
// `cargo check` of 60 models take minutes and overflow the recursion limit (docs/design.md,
// "Compile time of the choice"). With these impls, proving `Person: Send + Sync` stops at its
// `Rel` fields: each model is proven once, on its own fields, at its `impl Model`.
//
// SAFETY: a `Rel<T>` holds atomics and, once filled, `Arc`s of `T::Target`; the derived impls
// would require `T::Target: Send + Sync`. Only the loader fills a `Rel` (`fill` is crate-private),
// and only through a `Relation`, whose `Target` is a `Model`, which has `Send + Sync` as
// supertraits (checked where each model implements it). A `Rel` whose target is not a model
// (the derive rejects it) can never be filled, so it holds nothing to send or share.
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

impl<T: Shape> Clone for Rel<T>
where
    T::Stored: Clone,
{
    fn clone(&self) -> Self {
        Rel {
            value: self.value.clone(),
            raise: AtomicBool::new(self.is_raise()),
            read: AtomicBool::new(self.was_read()),
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
        let Some(stored) = self.value.get().map(|v| &**v) else {
            return f.write_str("NotLoaded");
        };
        let mut rows = T::rows(stored).iter().map(|row| Key(&**row));
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
/// [`Model`] is reported once, at the relation's target, not at every use of the field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a relation shape",
    label = "expected `Option<T>`, `Vec<T>` or `T` where `T` derives `Model`"
)]
pub trait Shape: 'static {
    /// The related model.
    type Target: 'static;
    /// What is stored once loaded.
    type Stored: 'static;
    /// What a read returns.
    type View<'a>;
    /// What a typed read returns, the related objects being in state `I` (see
    /// [`Loaded::get`](crate::Loaded::get)).
    type Typed<'a, I: 'a>;
    /// Whether this is a collection.
    const COLLECTION: bool;

    /// Builds the stored value from the related rows found. `None` when the shape requires a row
    /// and none was found.
    fn from_rows(rows: Vec<Arc<Self::Target>>) -> Option<Self::Stored>;

    /// Builds a single-row shape from at most one related row.
    fn from_row(row: Option<Arc<Self::Target>>) -> Option<Self::Stored>;

    /// A read view of the stored value.
    fn view(stored: &Self::Stored) -> Self::View<'_>;

    /// The related rows held.
    fn rows(stored: &Self::Stored) -> &[Arc<Self::Target>];

    /// The related rows held, moved out.
    fn into_rows(stored: Self::Stored) -> impl Iterator<Item = Arc<Self::Target>>;

    /// A typed read view of the stored value.
    fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> Self::Typed<'a, I>;
}

impl<M: 'static> Shape for Option<M> {
    type Target = M;
    type Stored = Option<Arc<M>>;
    type View<'a> = Option<&'a M>;
    type Typed<'a, I: 'a> = Option<&'a Loaded<M, I>>;
    const COLLECTION: bool = false;

    fn from_rows(rows: Vec<Arc<M>>) -> Option<Self::Stored> {
        Some(rows.into_iter().next())
    }

    fn from_row(row: Option<Arc<M>>) -> Option<Self::Stored> {
        Some(row)
    }

    fn view(stored: &Self::Stored) -> Option<&M> {
        stored.as_deref()
    }

    fn rows(stored: &Self::Stored) -> &[Arc<M>] {
        stored.as_slice()
    }

    fn into_rows(stored: Self::Stored) -> impl Iterator<Item = Arc<M>> {
        stored.into_iter()
    }

    fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> Option<&'a Loaded<M, I>> {
        stored.as_ref().map(crate::typed::view)
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
            type Stored = ::std::sync::Arc<$model>;
            type View<'a> = &'a $model;
            type Typed<'a, I: 'a> = &'a $crate::Loaded<$model, I>;
            const COLLECTION: bool = false;

            fn from_rows(
                rows: ::std::vec::Vec<::std::sync::Arc<$model>>,
            ) -> ::std::option::Option<Self::Stored> {
                rows.into_iter().next()
            }

            fn from_row(
                row: ::std::option::Option<::std::sync::Arc<$model>>,
            ) -> ::std::option::Option<Self::Stored> {
                row
            }

            fn view(stored: &Self::Stored) -> &$model {
                stored
            }

            fn rows(stored: &Self::Stored) -> &[::std::sync::Arc<$model>] {
                ::std::slice::from_ref(stored)
            }

            fn into_rows(
                stored: Self::Stored,
            ) -> impl ::std::iter::Iterator<Item = ::std::sync::Arc<$model>> {
                ::std::iter::once(stored)
            }

            fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> &'a $crate::Loaded<$model, I> {
                $crate::__private::typed_view(stored)
            }
        }
    };
}

impl<M: 'static> Shape for Vec<M> {
    type Target = M;
    type Stored = Vec<Arc<M>>;
    type View<'a> = &'a [Arc<M>];
    type Typed<'a, I: 'a> = &'a [Loaded<M, I>];
    const COLLECTION: bool = true;

    fn from_rows(rows: Vec<Arc<M>>) -> Option<Self::Stored> {
        Some(rows)
    }

    fn from_row(row: Option<Arc<M>>) -> Option<Self::Stored> {
        Some(row.into_iter().collect())
    }

    fn view(stored: &Self::Stored) -> &[Arc<M>] {
        stored
    }

    fn rows(stored: &Self::Stored) -> &[Arc<M>] {
        stored
    }

    fn into_rows(stored: Self::Stored) -> impl Iterator<Item = Arc<M>> {
        stored.into_iter()
    }

    fn typed<'a, I: 'a>(stored: &'a Self::Stored) -> &'a [Loaded<M, I>] {
        crate::typed::view_slice(stored)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::Rel;

    /// Counts its drops.
    struct Probe<'a>(&'a AtomicUsize);

    impl Drop for Probe<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_refused_fill_and_the_kept_value_are_both_dropped() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        let rel: Rel<Option<Probe<'static>>> = Rel::new();
        rel.fill(Some(Arc::new(Probe(&DROPS))));
        // Already loaded: the second value is refused, and dropped now.
        rel.fill(Some(Arc::new(Probe(&DROPS))));
        assert_eq!(DROPS.load(Ordering::Relaxed), 1);
        assert!(rel.is_loaded());
        drop(rel);
        assert_eq!(DROPS.load(Ordering::Relaxed), 2);
    }
}
