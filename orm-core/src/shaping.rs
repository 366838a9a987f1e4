//! Shaping what a relation loads: its order, a filter on its rows, a window of its first rows per
//! parent and an inner join, declared on the relation (`order_by = ..`, `innerjoin = true`) or
//! given per query (`selectin(Post::comments).order_by(..).filter(..).limit(3)`); and counts of
//! its rows (`count(..)`).
//!
//! All of it ends up on the plan node of the relation's rows (`plan::RowShape`): the order as
//! column names rendered on the node's name (its alias in a join, its table in a `selectin`
//! statement), the filter as a diesel expression of the target's table, rendered where the table
//! keeps its own name (the `WHERE` of a `selectin` statement, a derived table in a join); the
//! SQL is in `sql/shape.rs`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use diesel::expression::{AppearsOnTable, Expression};
use diesel::helper_types::{Asc, Desc};
use diesel::sql_types::BoolOrNullableBool;
use diesel::Column;

use crate::backend::{AnyBackendSql, FragmentOnAll};
use crate::model::{Model, OrderTerm, Relation};
use crate::options::{kind, Apply, IntoOptions, OptionTree, RelOption, RelationOf};
use crate::state::{Counted, State};

/// What a query option shapes on its relation; `None`s keep what the relation declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Shaping {
    /// The order of the relation's rows (`None`: the declared one).
    pub(crate) order: Option<Vec<OrderTerm>>,
    /// Which related rows the relation takes.
    pub(crate) filter: Option<RelFilter>,
    /// Joined inner rather than outer (`None`: as declared).
    pub(crate) inner: Option<bool>,
    /// At most this many rows per parent.
    pub(crate) limit: Option<u32>,
    /// Skipping this many rows per parent.
    pub(crate) offset: Option<u32>,
    /// A window read per parent (`.per_parent()`) rather than numbered.
    pub(crate) per_parent: bool,
}

impl Shaping {
    /// The later option's shaping over this one's (an option given twice: the later wins, part by
    /// part).
    pub(crate) fn merge(&mut self, later: Shaping) {
        if later.order.is_some() {
            self.order = later.order;
        }
        if later.filter.is_some() {
            self.filter = later.filter;
        }
        if later.inner.is_some() {
            self.inner = later.inner;
        }
        if later.limit.is_some() {
            self.limit = later.limit;
        }
        if later.offset.is_some() {
            self.offset = later.offset;
        }
        self.per_parent |= later.per_parent;
    }
}

/// A relation option's filter: a boolean diesel expression on the target's table, renderable on
/// every enabled backend. Two filters are equal when they are the same value (cloned options).
#[derive(Clone)]
pub(crate) struct RelFilter(pub(crate) Arc<dyn AnyBackendSql>);

impl RelFilter {
    /// `expression`, checked by the caller to be a condition on the target's table.
    pub(crate) fn new<E: FragmentOnAll + Send + Sync + 'static>(expression: E) -> Self {
        RelFilter(Arc::new(expression))
    }
}

impl PartialEq for RelFilter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RelFilter {}

impl fmt::Debug for RelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelFilter(..)")
    }
}

/// An order of a relation's rows whose target table is `T`: a column of `T`, `col.asc()`,
/// `col.desc()`, or a tuple of them (`(comments::score.desc(), comments::created_at)`). `Kind`
/// tells the forms apart (inferred: a column, [`order_kind::Asc`], ..), so that each has an impl
/// of its own.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot order a relation whose target table is `{T}`",
    label = "expected columns of the relation's target table",
    note = "a relation's order is a column of its target's `table!`, `column.asc()`, `column.desc()`, or a tuple of them"
)]
pub trait RelationOrder<T, Kind> {
    /// Appends the terms, first to last.
    fn terms(out: &mut Vec<OrderTerm>);
}

/// The forms of [`RelationOrder`], as types.
pub mod order_kind {
    /// A column: ascending.
    #[derive(Debug)]
    pub struct Column;
    /// `column.asc()`.
    #[derive(Debug)]
    pub struct Asc;
    /// `column.desc()`.
    #[derive(Debug)]
    pub struct Desc;
}

impl<T, C: Column<Table = T>> RelationOrder<T, order_kind::Column> for C {
    fn terms(out: &mut Vec<OrderTerm>) {
        out.push(OrderTerm { column: C::NAME, descending: false });
    }
}

impl<T, C: Column<Table = T>> RelationOrder<T, order_kind::Asc> for Asc<C> {
    fn terms(out: &mut Vec<OrderTerm>) {
        out.push(OrderTerm { column: C::NAME, descending: false });
    }
}

impl<T, C: Column<Table = T>> RelationOrder<T, order_kind::Desc> for Desc<C> {
    fn terms(out: &mut Vec<OrderTerm>) {
        out.push(OrderTerm { column: C::NAME, descending: true });
    }
}

macro_rules! tuple_order {
    ($($name:ident $kind:ident)+) => {
        #[diagnostic::do_not_recommend]
        impl<T, $($name: RelationOrder<T, $kind>, $kind),+> RelationOrder<T, ($($kind,)+)>
            for ($($name,)+)
        {
            fn terms(out: &mut Vec<OrderTerm>) {
                $($name::terms(out);)+
            }
        }
    };
}

tuple_order!(A KA);
tuple_order!(A KA B KB);
tuple_order!(A KA B KB C KC);
tuple_order!(A KA B KB C KC D KD);

/// A condition on the rows of a relation whose target table is `T`: a diesel boolean expression
/// (`comments::approved.eq(true)`) of `T`'s columns, renderable on every enabled backend.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a condition on the relation's target table `{T}`",
    label = "expected a boolean expression of the target table's columns",
    note = "a relation's filter is a diesel expression such as `comments::approved.eq(true)` naming only columns of its target's `table!`"
)]
pub trait RelationFilter<T>: FragmentOnAll + Send + Sync + 'static {}

impl<T, E> RelationFilter<T> for E
where
    E: Expression + AppearsOnTable<T> + FragmentOnAll + Send + Sync + 'static,
    E::SqlType: BoolOrNullableBool,
{
}

/// A `count(..)` option: relation `relation`'s rows are counted per object of the level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CountEntry {
    pub(crate) relation: usize,
    pub(crate) filter: Option<RelFilter>,
}

/// The options that load a relation in a statement of their own or in a join, and so can shape
/// what it loads: [`joined`](crate::joined) and [`selectin`](crate::selectin), ordered or not.
pub trait Shapes {
    /// The kind after `.order_by(..)`.
    type Ordered;
}

impl Shapes for kind::Joined {
    type Ordered = kind::Ordered<kind::Joined>;
}
impl Shapes for kind::Selectin {
    type Ordered = kind::Ordered<kind::Selectin>;
}
impl<K: Shapes> Shapes for kind::Ordered<K> {
    type Ordered = Self;
}

/// `joined(..)`, ordered or not: the options that can join inner.
pub trait JoinedKind {}

impl JoinedKind for kind::Joined {}
impl JoinedKind for kind::Ordered<kind::Joined> {}

/// A relation with a declared `order_by`: its `joined` and `selectin` options take a
/// `.limit(..)` without an `.order_by(..)` of their own. Implemented by `#[derive(Model)]`.
#[diagnostic::on_unimplemented(
    message = "relation `{Self}` declares no `order_by`: a `.limit(..)` or `.offset(..)` on it needs an order",
    label = "the first rows in which order?",
    note = "call `.order_by(..)` before `.limit(..)`, or declare `order_by = ..` on the relation"
)]
pub trait DeclaredOrder: Relation {}

/// An option whose relation's rows have an order, so that it can take their first rows.
#[diagnostic::on_unimplemented(
    message = "a relation's `.limit(..)` and `.offset(..)` need an order: `{Self}` has none",
    label = "the first rows in which order?",
    note = "call `.order_by(..)` before `.limit(..)`, or declare `order_by = ..` on the relation"
)]
pub trait Windowed {}

impl<R: Relation, K: Shapes, Sub> Windowed for RelOption<R, kind::Ordered<K>, Sub> {}
impl<R: DeclaredOrder, Sub> Windowed for RelOption<R, kind::Joined, Sub> {}
impl<R: DeclaredOrder, Sub> Windowed for RelOption<R, kind::Selectin, Sub> {}

/// The `table!` of relation `R`'s target.
pub(crate) type TargetTable<R> = <<R as Relation>::Target as Model>::Table;

/// Counts the rows of collection `rel` for every object of the level, in one `GROUP BY`
/// statement per relation (per chunk of keys), without loading them: read with
/// [`Loaded::counted`](crate::Loaded::counted) (no SQL) or
/// [`Loaded::count`](crate::Loaded::count). `count(Post::comments).filter(..)` counts the
/// matching rows. The relation itself is loaded (or not) as its strategy or options say.
pub fn count<R: Relation>(rel: R) -> CountOption<R>
where
    R::Shape: crate::rel::ToMany,
{
    let _ = rel;
    CountOption { filter: None, _relation: PhantomData }
}

/// A `count(rel)` option (see [`count`]).
#[must_use = "pass the option to `.options(..)`"]
#[derive(Debug, Clone)]
pub struct CountOption<R> {
    filter: Option<RelFilter>,
    _relation: PhantomData<fn() -> R>,
}

impl<R: Relation> CountOption<R> {
    /// Counts only the related rows that match `condition`, a diesel boolean expression of the
    /// target table's columns: `count(Post::comments).filter(comments::approved.eq(true))`.
    pub fn filter<E: RelationFilter<TargetTable<R>>>(mut self, condition: E) -> Self {
        self.filter = Some(RelFilter::new(condition));
        self
    }
}

impl<M: Model, R: Relation + RelationOf<M>> IntoOptions<M> for CountOption<R> {
    fn add_to(self, tree: &mut OptionTree) {
        tree.add_count(CountEntry { relation: R::INDEX, filter: self.filter });
    }
}

/// A count loads no relation: the state records the count ([`Counted`]).
#[diagnostic::do_not_recommend]
impl<S: State, R: Relation + RelationOf<S::Model>> Apply<S> for CountOption<R> {
    type Out = Counted<S, R>;
}

/// A relation option after a count applies to the state below the count.
#[diagnostic::do_not_recommend]
impl<S: State, C, R, K, Sub> Apply<Counted<S, C>> for RelOption<R, K, Sub>
where
    RelOption<R, K, Sub>: Apply<S>,
{
    type Out = Counted<<RelOption<R, K, Sub> as Apply<S>>::Out, C>;
}
