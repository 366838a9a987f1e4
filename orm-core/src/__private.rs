//! Everything generated code names, under one absolute path: `::orm_core::__private::…`.

pub use diesel;
pub use std::option::Option;
pub use std::result::Result;
pub use std::vec::Vec;

pub use crate::backend::{field_at, OrmBackend};
pub use crate::graph::ObjRef;
pub use crate::key::KeyValue;
pub use crate::model::{
    column_named, has_field, AllBackends, AsKey, Decode, Link, Model, OrderTerm, Relation,
    RelationInfo, RelationKind, RelationVisitor, SqlTable, Strategy,
};
pub use crate::options::{kind, Apply, SlotFor};
pub use crate::options::{RelOption, RelationOf};
pub use crate::query::Query;
pub use crate::rel::{typed_required, Filled, Rel, Shape};
pub use crate::shaping::DeclaredOrder;
pub use crate::state::{view as typed_view, Has, InnerOr, No, State, Yes};
pub use std::marker::PhantomData;
pub use std::sync::OnceLock;

pub use crate::__for_each_backend as for_each_backend;
pub use crate::__impl_required_shape as impl_required_shape;

/// Two values of one field, compared by [`SameByEq`] when their type is `PartialEq` and
/// counted as the same by [`SameByDefault`] otherwise (autoref specialization: generated code
/// calls `(&Compare(a, b)).same()` with both traits in scope, and method lookup takes the
/// `PartialEq` impl when it applies).
pub struct Compare<'a, T>(pub &'a T, pub &'a T);

/// [`Compare`] for `PartialEq` types.
pub trait SameByEq {
    /// Whether both values are equal.
    fn same(&self) -> bool;
}

impl<T: PartialEq> SameByEq for Compare<'_, T> {
    fn same(&self) -> bool {
        self.0 == self.1
    }
}

/// [`Compare`] for other types: not comparable, so the same.
pub trait SameByDefault {
    /// Always `true`.
    fn same(&self) -> bool;
}

impl<T> SameByDefault for &Compare<'_, T> {
    fn same(&self) -> bool {
        true
    }
}

/// Compile-time check that a field of type `T` holds the column's SQL type `ST` on `DB`.
pub fn assert_column<ST, T, DB>()
where
    DB: diesel::backend::Backend,
    T: diesel::deserialize::FromSql<ST, DB>,
{
}

/// `<Probe<T>>::IS_MODEL` is `true` when `T` is a [`Model`] and `false` otherwise: the inherent
/// constant, whose bound holds only for models, takes precedence over [`NotAModel`]'s.
pub struct Probe<T: ?Sized>(PhantomData<T>);

/// [`Probe`] for types that are not models.
pub trait NotAModel {
    /// Not a model.
    const IS_MODEL: bool = false;
}

impl<T: ?Sized> NotAModel for Probe<T> {}

impl<T: Model> Probe<T> {
    /// A model.
    pub const IS_MODEL: bool = true;
}

/// `<KeyProbe<T>>::IS_KEY` is `true` when `T` is a key type ([`KeyValue`]) and `false`
/// otherwise, as [`Probe`] for models.
pub struct KeyProbe<T: ?Sized>(PhantomData<T>);

/// [`KeyProbe`] for types that are not keys.
pub trait NotAKey {
    /// Not a key.
    const IS_KEY: bool = false;
}

impl<T: ?Sized> NotAKey for KeyProbe<T> {}

impl<T: KeyValue> KeyProbe<T> {
    /// A key.
    pub const IS_KEY: bool = true;
}

/// `<Gate<true> as Pick<T>>::Type` is `T`. The derive names a relation's target through a gate
/// whose constant panics when the target is not a model: rustc reports that panic once, and
/// the failed constant silences every later use of the target instead of repeating the error.
pub struct Gate<const OK: bool>;

/// See [`Gate`].
pub trait Pick<T: ?Sized> {
    /// `T`.
    type Type: ?Sized;
}

impl<T: ?Sized> Pick<T> for Gate<true> {
    type Type = T;
}

/// Compile-time check that a column of SQL type `ST` holds keys of type `K`.
#[allow(clippy::extra_unused_type_parameters)]
pub fn assert_key_column<ST, K>()
where
    K: crate::key::KeyValue + diesel::deserialize::FromSql<ST, Checked>,
    Checked: diesel::sql_types::HasSqlType<ST>,
{
}

/// The backend compile-time checks that hold alike on every backend are made on: the first
/// enabled one, as for reading a `table!`'s names.
pub type Checked = crate::model::FirstBackend;

/// Expands `$mac!(Backend)` once per backend this build of orm-core supports.
#[doc(hidden)]
#[macro_export]
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
macro_rules! __for_each_backend {
    ($mac:ident) => {
        $mac!(::orm_core::__private::diesel::sqlite::Sqlite);
    };
}

/// Expands `$mac!(Backend)` once per backend this build of orm-core supports.
#[doc(hidden)]
#[macro_export]
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
macro_rules! __for_each_backend {
    ($mac:ident) => {
        $mac!(::orm_core::__private::diesel::pg::Pg);
    };
}

/// Expands `$mac!(Backend)` once per backend this build of orm-core supports.
#[doc(hidden)]
#[macro_export]
#[cfg(all(feature = "sqlite", feature = "postgres"))]
macro_rules! __for_each_backend {
    ($mac:ident) => {
        $mac!(::orm_core::__private::diesel::sqlite::Sqlite);
        $mac!(::orm_core::__private::diesel::pg::Pg);
    };
}
