//! The runtime query node: one `SELECT` rendered from a load plan through diesel's `AstPass`.
//!
//! Identifiers go through `push_identifier` and values through bound parameters only. The root
//! table keeps its name so the user's diesel filters resolve; eager joins use anonymous
//! aliases `t1..tN`.

use std::marker::PhantomData;
use std::sync::Arc;

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Untyped;
use diesel::{QueryResult, RunQueryDsl};

use crate::backend::OrmBackend;
use crate::ident::{column, join, table_as};
use crate::join::{walk_user_join, UserJoin};
use crate::key::KeyValue;
use crate::model::{Link, SqlTable};
use crate::plan::{JoinedChild, PlanNode};

mod shape;

pub(crate) use self::shape::KeyTable;

/// A boxed piece of SQL: a user filter or order expression, or a key list.
pub(crate) type Fragment<DB> = Box<dyn QueryFragment<DB> + Send>;

/// A many-to-many link: `INNER JOIN through ON through.target_column = root.pk`, selecting
/// `through.parent_column` as the row's first column.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThroughLink {
    pub(crate) table: SqlTable,
    pub(crate) parent_column: &'static str,
    pub(crate) target_column: &'static str,
}

const LEFT: &str = " LEFT OUTER JOIN ";
const INNER: &str = " INNER JOIN ";

/// The names of the parent page's subqueries and columns (see `SelectGraph::walk_parent_page`).
const PAGE: &str = "__orm_page";
const PAGE_ROWS: &str = "__orm_rows";
const PAGE_KEY: &str = "__orm_key";
const PAGE_ROW: &str = "__orm_row";
const PAGE_FIRST: &str = "__orm_first";

/// The alias of the association table in a linked (many-to-many selectin) statement.
pub(crate) const LINK_ALIAS: &str = "t0";

/// One `SELECT` over a plan.
pub(crate) struct SelectGraph<'p, DB> {
    pub(crate) plan: &'p PlanNode,
    pub(crate) joins: &'p [UserJoin],
    pub(crate) link: Option<ThroughLink>,
    pub(crate) filters: &'p [Fragment<DB>],
    pub(crate) order: &'p [Fragment<DB>],
    pub(crate) limit: Option<i64>,
    pub(crate) offset: Option<i64>,
    /// The parents' keys as a table (`KeyTable`), for a `selectin` statement whose relation
    /// keeps a window of rows per parent: each key's rows are read as a join reads them.
    pub(crate) keys: Option<&'p Fragment<DB>>,
}

impl<DB: OrmBackend> SelectGraph<'_, DB> {
    fn walk_columns<'b>(
        node: &'b PlanNode,
        out: &mut AstPass<'_, 'b, DB>,
        first: &mut bool,
    ) -> QueryResult<()> {
        for column in node.columns {
            if !std::mem::take(first) {
                out.push_sql(", ");
            }
            out.push_identifier(&node.name)?;
            out.push_sql(".");
            out.push_identifier(column)?;
        }
        for child in &node.joined {
            Self::walk_columns(&child.node, out, first)?;
        }
        Ok(())
    }

    /// The plan's joins. `inner`: the joins from the root to `node` are all inner, so a
    /// relation that asks for an inner join gets one (below an outer join it stays outer: an
    /// inner join there would drop the rows the outer join keeps, SQLAlchemy's "unnested"
    /// rule). `only_inner`: render the inner joins only (inside an `EXISTS`).
    fn walk_joins<'b>(
        node: &'b PlanNode,
        out: &mut AstPass<'_, 'b, DB>,
        inner: bool,
        only_inner: bool,
    ) -> QueryResult<()> {
        let parent = (node.name.as_str(), node.columns[node.key_column]);
        for child in node.joined.iter().filter(|c| !c.external) {
            match inner && child.node.shape.inner {
                true => Self::walk_join(out, INNER, child, parent)?,
                false if !only_inner => Self::walk_join(out, LEFT, child, parent)?,
                false => {}
            }
        }
        // Joins below a `contains_eager` node hang off the query's own join: render them after.
        for child in &node.joined {
            let inner = inner && !child.external && child.node.shape.inner;
            if inner || !only_inner {
                Self::walk_joins(&child.node, out, inner, only_inner)?;
            }
        }
        Ok(())
    }

    /// ` KIND JOIN` of one joined relation to its parent (`parent`: name and key column).
    fn walk_join<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        kind: &str,
        child: &'b JoinedChild,
        (parent, parent_key): (&'b str, &'b str),
    ) -> QueryResult<()> {
        let target = &child.node;
        let alias = target.name.as_str();
        let target_key = target.columns[target.key_column];
        if target.shape.derived() {
            return Self::walk_shaped_join(out, kind, child, (parent, parent_key));
        }
        match child.link {
            Link::ParentColumn(column) => {
                join(out, kind, (target.table, alias), (alias, target_key), (parent, column))
            }
            Link::TargetColumn(column) => {
                join(out, kind, (target.table, alias), (alias, column), (parent, parent_key))
            }
            Link::Through { table, parent_column, target_column } => {
                let table = table();
                let through = child.through_name.as_deref().unwrap_or(table.name);
                join(out, kind, (table, through), (through, parent_column), (parent, parent_key))?;
                join(
                    out,
                    kind,
                    (target.table, alias),
                    (alias, target_key),
                    (through, target_column),
                )
            }
        }
    }

    fn walk_user_joins<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        for join in self.joins {
            walk_user_join(join, out)?;
        }
        Ok(())
    }

    /// ` WHERE ..`: the query's filters and the relation's (a `selectin` statement's root holds
    /// a relation's rows). `page`: in the subquery that pages the parents, which also keeps only
    /// the parents the plan's inner joins keep.
    fn walk_where<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>, page: bool) -> QueryResult<()> {
        let filters = self.filters.iter().map(|f| &**f as &dyn QueryFragment<DB>);
        let shaped = self.plan.shape.filter.iter().map(|f| DB::fragment(&*f.0));
        let mut first = true;
        for filter in filters.chain(shaped) {
            out.push_sql(if std::mem::take(&mut first) { " WHERE " } else { " AND " });
            out.push_sql("(");
            filter.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        if page {
            Self::walk_inner_exists(self.plan, out, &mut first)?;
        }
        Ok(())
    }

    fn walk_order<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        for (i, order) in self.order.iter().enumerate() {
            out.push_sql(if i == 0 { " ORDER BY " } else { ", " });
            order.walk_ast(out.reborrow())?;
        }
        Ok(())
    }

    /// ` INNER JOIN (..) ON ..`: the page of parents when the query's own joins repeat them,
    /// each parent placed by its first row in the query's order. (`SELECT DISTINCT` cannot
    /// order by a joined column on PostgreSQL, and on SQLite it orders by an arbitrary row.)
    fn walk_parent_page<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let root = self.plan;
        let key = (root.table.name, root.columns[root.key_column]);
        out.push_sql(" INNER JOIN (SELECT ");
        column(out, (PAGE_ROWS, PAGE_KEY))?;
        out.push_sql(", MIN(");
        column(out, (PAGE_ROWS, PAGE_ROW))?;
        out.push_sql(") AS ");
        out.push_identifier(PAGE_FIRST)?;
        out.push_sql(" FROM (SELECT ");
        column(out, key)?;
        out.push_sql(" AS ");
        out.push_identifier(PAGE_KEY)?;
        out.push_sql(", ROW_NUMBER() OVER (");
        if self.order.is_empty() {
            out.push_sql("ORDER BY ");
            column(out, key)?;
        } else {
            self.walk_order(out)?;
        }
        out.push_sql(") AS ");
        out.push_identifier(PAGE_ROW)?;
        out.push_sql(" FROM ");
        table_as(out, root.table, root.table.name)?;
        self.walk_user_joins(out)?;
        self.walk_where(out, true)?;
        out.push_sql(") AS ");
        out.push_identifier(PAGE_ROWS)?;
        out.push_sql(" GROUP BY ");
        column(out, (PAGE_ROWS, PAGE_KEY))?;
        out.push_sql(" ORDER BY ");
        out.push_identifier(PAGE_FIRST)?;
        self.walk_limit(out)?;
        out.push_sql(") AS ");
        out.push_identifier(PAGE)?;
        out.push_sql(" ON ");
        column(out, (PAGE, PAGE_KEY))?;
        out.push_sql(" = ");
        column(out, key)
    }

    fn walk_limit<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if let Some(limit) = &self.limit {
            out.push_sql(" LIMIT ");
            DB::push_key(limit, out)?;
        }
        if let Some(offset) = &self.offset {
            // SQLite accepts OFFSET only after a LIMIT; -1 means no limit there, and PostgreSQL
            // reads `LIMIT ALL` the same way, so only SQLite needs it.
            if self.limit.is_none() {
                out.push_sql(DB::NO_LIMIT);
            }
            out.push_sql(" OFFSET ");
            DB::push_key(offset, out)?;
        }
        Ok(())
    }
}

impl<DB: OrmBackend> QueryFragment<DB> for SelectGraph<'_, DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let root = self.plan;
        if let Some(window) = &root.shape.window {
            return self.walk_windowed(window, out);
        }
        out.push_sql("SELECT ");
        let mut first = true;
        if let Some(link) = &self.link {
            column(&mut out, (LINK_ALIAS, link.parent_column))?;
            first = false;
        }
        Self::walk_columns(root, &mut out, &mut first)?;
        out.push_sql(" FROM ");
        // With a joined collection, LIMIT must count parents, not rows: limit the root table
        // in a subquery that keeps the table's name, so the user's filters resolve in both.
        let limit_in_subquery =
            (self.limit.is_some() || self.offset.is_some()) && root.multiplies_rows();
        if limit_in_subquery {
            out.push_sql("(SELECT ");
            out.push_identifier(root.table.name)?;
            out.push_sql(".* FROM ");
            table_as(&mut out, root.table, root.table.name)?;
            // A to-many explicit join repeats parents inside the subquery too.
            if self.joins.iter().any(|j| !matches!(j.link, Link::ParentColumn(_))) {
                self.walk_parent_page(&mut out)?;
            } else {
                self.walk_user_joins(&mut out)?;
                self.walk_where(&mut out, true)?;
                self.walk_order(&mut out)?;
                self.walk_limit(&mut out)?;
            }
            out.push_sql(") AS ");
            out.push_identifier(root.table.name)?;
        } else {
            table_as(&mut out, root.table, root.table.name)?;
        }
        if let Some(link) = &self.link {
            out.push_sql(" INNER JOIN ");
            table_as(&mut out, link.table, LINK_ALIAS)?;
            out.push_sql(" ON ");
            column(&mut out, (LINK_ALIAS, link.target_column))?;
            out.push_sql(" = ");
            column(&mut out, (root.table.name, root.columns[root.key_column]))?;
        }
        self.walk_user_joins(&mut out)?;
        Self::walk_joins(root, &mut out, true, false)?;
        if !limit_in_subquery {
            self.walk_where(&mut out, false)?;
        }
        self.walk_order(&mut out)?;
        Self::walk_row_orders(root, &mut out, &mut self.order.is_empty())?;
        if !limit_in_subquery {
            self.walk_limit(&mut out)?;
        }
        Ok(())
    }
}

// Only borrows and small values: copied into diesel's `load`, and kept for error reports.
impl<DB> Clone for SelectGraph<'_, DB> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<DB> Copy for SelectGraph<'_, DB> {}

impl<DB> QueryId for SelectGraph<'_, DB> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> Query for SelectGraph<'_, DB> {
    type SqlType = Untyped;
}

impl<DB, Conn> RunQueryDsl<Conn> for SelectGraph<'_, DB> {}

/// Which prepared statement a [`SelectGraph`] is: a static id lets diesel prepare it once per
/// connection and reuse it without building its SQL again.
pub(crate) trait StatementId: 'static {
    /// Whether the id names one SQL text.
    const STATIC: bool;
}

/// A statement built from the load plan and the query: its SQL is built per execution.
pub(crate) struct Dynamic;

impl StatementId for Dynamic {
    const STATIC: bool = false;
}

/// The lazy load of relation `R` for one parent: the relation's default plan and one key, so one
/// SQL text per relation and backend.
pub(crate) struct LazyLoad<R>(PhantomData<R>);

impl<R: 'static> StatementId for LazyLoad<R> {
    const STATIC: bool = true;
}

/// A [`SelectGraph`] under statement id `Id`.
pub(crate) struct Identified<'a, DB, Id>(pub(crate) SelectGraph<'a, DB>, PhantomData<Id>);

impl<'a, DB, Id> Identified<'a, DB, Id> {
    pub(crate) fn new(query: SelectGraph<'a, DB>) -> Self {
        Identified(query, PhantomData)
    }
}

impl<DB, Id> Clone for Identified<'_, DB, Id> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<DB, Id> Copy for Identified<'_, DB, Id> {}

impl<DB: OrmBackend, Id> QueryFragment<DB> for Identified<'_, DB, Id> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

impl<DB, Id: StatementId> QueryId for Identified<'_, DB, Id> {
    type QueryId = Id;
    const HAS_STATIC_QUERY_ID: bool = Id::STATIC;
}

impl<DB, Id> Query for Identified<'_, DB, Id> {
    type SqlType = Untyped;
}

impl<DB, Id, Conn> RunQueryDsl<Conn> for Identified<'_, DB, Id> {}

/// `table.column IN (?, ?, ...)` over a list of keys, as bound parameters (shared with the
/// statement log's renderer).
#[derive(Clone)]
pub(crate) struct KeyIn<K> {
    pub(crate) table: &'static str,
    pub(crate) column: &'static str,
    pub(crate) keys: Arc<[K]>,
}

impl<DB: OrmBackend, K: KeyValue> QueryFragment<DB> for KeyIn<K> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        DB::push_key_in((self.table, self.column), &self.keys, &mut out)
    }
}

/// `table.column = ?`.
pub(crate) struct KeyEq<K> {
    pub(crate) table: &'static str,
    pub(crate) column: &'static str,
    pub(crate) key: K,
}

impl<DB: OrmBackend, K: KeyValue> QueryFragment<DB> for KeyEq<K> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        column(&mut out, (self.table, self.column))?;
        out.push_sql(" = ");
        DB::push_key(&self.key, &mut out)
    }
}
