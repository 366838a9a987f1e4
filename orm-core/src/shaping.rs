//! Shaping what a relation loads: its order and a filter on its rows, declared on the relation
//! (`order_by = ..`) or given per query (`selectin(Post::comments).order_by(..).filter(..)`).
//!
//! Both end up on the plan node of the relation's rows: the order as column names rendered on
//! the node's name (its alias in a join, its table in a `selectin` statement), the filter as a
//! diesel expression of the target's table, rendered where the table keeps its own name (the
//! `WHERE` of a `selectin` statement, a derived table in a join).

use std::fmt;
use std::sync::Arc;

use diesel::expression::{AppearsOnTable, Expression};
use diesel::helper_types::{Asc, Desc};
use diesel::sql_types::BoolOrNullableBool;
use diesel::Column;

use crate::backend::{AnyBackendSql, FragmentOnAll};
use crate::model::OrderTerm;

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
