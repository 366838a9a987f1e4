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
use crate::ident::{column, join, on, table_as};
use crate::join::{walk_user_join, UserJoin};
use crate::key::KeyValue;
use crate::model::{Link, SqlTable};
use crate::plan::{JoinedChild, Partition, PlanNode, Window};

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

/// In a shaped many-to-many join's derived table: the association table, and its column
/// holding the parent's key.
const VIA: &str = "__orm_via";
const VIA_KEY: &str = "__orm_link";
/// A relation window's row numbers, and the derived table numbering them in a join.
const ROW_NUMBER: &str = "__orm_rn";
const WINDOW: &str = "__orm_w";
/// The target's rows in the subquery of a joined window.
const LATERAL: &str = "__orm_x";
/// The parents' keys as a table, and its column, in a windowed `selectin` statement.
const KEYS: &str = "__orm_k";
pub(crate) const KEY: &str = "__orm_key";

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
        if let Some(window) = target.shape.window.as_ref().filter(|w| w.per_parent) {
            return Self::walk_window_join(out, kind, child, window, (parent, parent_key));
        }
        if target.shape.filter.is_some() || target.shape.window.is_some() {
            out.push_sql(kind);
            Self::walk_shaped_source(out, child.link, target)?;
            let (left, right) = link_columns(child, None, (parent, parent_key));
            return on(out, left, right);
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

    /// ` AND EXISTS (..)` for each relation of `node` joined inner, so that a page of parents
    /// (a limit in a subquery) counts only the parents the inner joins keep.
    fn walk_inner_exists<'b>(
        node: &'b PlanNode,
        out: &mut AstPass<'_, 'b, DB>,
        first: &mut bool,
    ) -> QueryResult<()> {
        let parent = (node.name.as_str(), node.columns[node.key_column]);
        for child in node.joined.iter().filter(|c| !c.external && c.node.shape.inner) {
            let target = &child.node;
            let alias = target.name.as_str();
            out.push_sql(if std::mem::take(first) { " WHERE " } else { " AND " });
            out.push_sql("EXISTS (SELECT 1 FROM ");
            let mut through = None;
            let shaped = target.shape.filter.is_some() || target.shape.window.is_some();
            match (shaped, child.link) {
                (true, link) => Self::walk_shaped_source(out, link, target)?,
                (false, Link::Through { table, target_column, .. }) => {
                    let table = table();
                    let name = child.through_name.as_deref().unwrap_or(table.name);
                    table_as(out, table, name)?;
                    let target_key = (alias, target.columns[target.key_column]);
                    join(out, INNER, (target.table, alias), target_key, (name, target_column))?;
                    through = Some(name);
                }
                (false, _) => table_as(out, target.table, alias)?,
            }
            Self::walk_joins(target, out, true, true)?;
            out.push_sql(" WHERE ");
            let (left, right) = link_columns(child, through, parent);
            column(out, left)?;
            out.push_sql(" = ");
            column(out, right)?;
            out.push_sql(")");
        }
        Ok(())
    }

    /// The rows of a relation whose rows are shaped (filtered or windowed): a derived table in
    /// which the target keeps its table's name, so the filter (a diesel expression of that table)
    /// resolves, under the node's alias outside (`(SELECT comments.* FROM comments WHERE ..) AS
    /// t1`). A many-to-many joins its association table inside, so a link whose target the
    /// filter drops brings no row (`(SELECT via.person_id AS __orm_link, project.* FROM
    /// person_project AS via INNER JOIN project ON .. WHERE ..) AS t1`). A window numbers each
    /// parent's rows in the relation's order and keeps those in the window (`(SELECT * FROM
    /// (SELECT .., ROW_NUMBER() OVER (PARTITION BY comments.post_id ORDER BY ..) AS __orm_rn
    /// ..) AS __orm_w WHERE __orm_w.__orm_rn <= ?) AS t1`).
    fn walk_shaped_source<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        link: Link,
        target: &'b PlanNode,
    ) -> QueryResult<()> {
        let table = target.table;
        let target_key = target.columns[target.key_column];
        let window = target.shape.window.as_ref();
        out.push_sql("(SELECT ");
        if window.is_some() {
            out.push_sql("* FROM (SELECT ");
        }
        if let Link::Through { parent_column, .. } = link {
            column(out, (VIA, parent_column))?;
            out.push_sql(" AS ");
            out.push_identifier(VIA_KEY)?;
            out.push_sql(", ");
        }
        out.push_identifier(table.name)?;
        out.push_sql(".*");
        if let Some(window) = window {
            Self::walk_row_number(out, target, window, VIA)?;
        }
        out.push_sql(" FROM ");
        if let Link::Through { table: through, target_column, .. } = link {
            table_as(out, through(), VIA)?;
            out.push_sql(" INNER JOIN ");
            table_as(out, table, table.name)?;
            on(out, (table.name, target_key), (VIA, target_column))?;
        } else {
            table_as(out, table, table.name)?;
        }
        if let Some(filter) = &target.shape.filter {
            out.push_sql(" WHERE (");
            DB::fragment(&*filter.0).walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        if let Some(window) = window {
            out.push_sql(") AS ");
            out.push_identifier(WINDOW)?;
            Self::walk_window_rows(out, WINDOW, window, &mut true)?;
        }
        out.push_sql(") AS ");
        out.push_identifier(&target.name)
    }

    /// A joined relation's window, `per_parent`: each parent's first rows, read through an index
    /// on the foreign key and the order, so that its cost follows the parents loaded, not the
    /// size of the target table (numbering every row of the target in the default derived table
    /// took 135 ms for 10 parents of a 100,000-row table on SQLite: docs/design.md). Without such
    /// an index each parent scans the table.
    /// PostgreSQL joins `LATERAL (SELECT .. LIMIT ?) AS t1 ON TRUE`; SQLite, which has no
    /// `LATERAL`, joins the rows whose key is `IN` the same subquery (correlated to the parent),
    /// and a many-to-many the association rows whose target is.
    fn walk_window_join<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        kind: &str,
        child: &'b JoinedChild,
        window: &'b Window,
        (parent, parent_key): (&'b str, &'b str),
    ) -> QueryResult<()> {
        let target = &child.node;
        let alias = target.name.as_str();
        let key = target.columns[target.key_column];
        let through = match child.link {
            Link::Through { table, target_column, .. } => Some((table(), target_column)),
            _ => None,
        };
        let equals = match child.link {
            Link::ParentColumn(fk) => (parent, fk),
            _ => (parent, parent_key),
        };
        out.push_sql(kind);
        if DB::LATERAL {
            out.push_sql("LATERAL (");
            Self::walk_parent_rows(out, target, through, window, equals, false)?;
            out.push_sql(") AS ");
            out.push_identifier(alias)?;
            out.push_sql(" ON TRUE");
            return Ok(());
        }
        match child.link {
            Link::Through { table, parent_column, target_column } => {
                let table = table();
                let name = child.through_name.as_deref().unwrap_or(table.name);
                table_as(out, table, name)?;
                on(out, (name, parent_column), (parent, parent_key))?;
                out.push_sql(" AND ");
                column(out, (name, target_column))?;
                out.push_sql(" IN (");
                Self::walk_parent_rows(out, target, through, window, equals, true)?;
                out.push_sql(")");
                join(out, kind, (target.table, alias), (alias, key), (name, target_column))
            }
            Link::ParentColumn(_) | Link::TargetColumn(_) => {
                table_as(out, target.table, alias)?;
                out.push_sql(" ON ");
                column(out, (alias, key))?;
                out.push_sql(" IN (");
                Self::walk_parent_rows(out, target, through, window, equals, true)?;
                out.push_sql(")");
                Ok(())
            }
        }
    }

    /// `SELECT .. FROM target AS __orm_x WHERE <one parent's rows> ORDER BY .. LIMIT ? OFFSET ?`:
    /// one parent's rows of the windowed relation whose rows `target` holds, their keys only when
    /// `keys`; `parent` is the column holding the parent's key that the window's partition
    /// equals, and `through` a many-to-many's association table with its column referring to
    /// the target. The target is `__orm_x`, a derived table keeping the table's name when
    /// filtered (so the filter resolves, and a self-reference's parent keeps its name outside).
    fn walk_parent_rows<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        target: &'b PlanNode,
        through: Option<(SqlTable, &'static str)>,
        window: &'b Window,
        parent: (&'b str, &'b str),
        keys: bool,
    ) -> QueryResult<()> {
        let table = target.table;
        let key = target.columns[target.key_column];
        out.push_sql("SELECT ");
        if keys {
            column(out, (LATERAL, key))?;
        } else {
            if let Partition::Through(parent_column) = window.partition {
                column(out, (VIA, parent_column))?;
                out.push_sql(" AS ");
                out.push_identifier(VIA_KEY)?;
                out.push_sql(", ");
            }
            out.push_identifier(LATERAL)?;
            out.push_sql(".*");
        }
        out.push_sql(" FROM ");
        match &target.shape.filter {
            Some(filter) => {
                out.push_sql("(SELECT ");
                out.push_identifier(table.name)?;
                out.push_sql(".* FROM ");
                table_as(out, table, table.name)?;
                out.push_sql(" WHERE (");
                DB::fragment(&*filter.0).walk_ast(out.reborrow())?;
                out.push_sql("))");
            }
            None => table_as(out, table, table.name)?,
        }
        out.push_sql(" AS ");
        out.push_identifier(LATERAL)?;
        if let Some((through, target_column)) = through {
            out.push_sql(" INNER JOIN ");
            table_as(out, through, VIA)?;
            on(out, (VIA, target_column), (LATERAL, key))?;
        }
        out.push_sql(" WHERE ");
        match window.partition {
            Partition::Target(partition) => column(out, (LATERAL, partition))?,
            Partition::Key => column(out, (LATERAL, key))?,
            Partition::Through(partition) => column(out, (VIA, partition))?,
        }
        out.push_sql(" = ");
        column(out, parent)?;
        out.push_sql(" ORDER BY ");
        for term in &target.shape.order {
            column(out, (LATERAL, term.column))?;
            out.push_sql(if term.descending { " DESC, " } else { ", " });
        }
        column(out, (LATERAL, key))?;
        match &window.limit {
            Some(limit) => {
                out.push_sql(" LIMIT ");
                DB::push_key(limit, out)?;
            }
            None if window.after > 0 => out.push_sql(DB::NO_LIMIT),
            None => {}
        }
        if window.after > 0 {
            out.push_sql(" OFFSET ");
            DB::push_key(&window.after, out)?;
        }
        Ok(())
    }

    /// `, ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..) AS __orm_rn` over the rows of `node`
    /// (named by its table), its order's terms then its key; `through`: the name of the
    /// association table a many-to-many partitions by.
    fn walk_row_number<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        node: &'b PlanNode,
        window: &'b Window,
        through: &'b str,
    ) -> QueryResult<()> {
        let table = node.table.name;
        let key = node.columns[node.key_column];
        out.push_sql(", ROW_NUMBER() OVER (PARTITION BY ");
        match window.partition {
            Partition::Target(partition) => column(out, (table, partition))?,
            Partition::Key => column(out, (table, key))?,
            Partition::Through(partition) => column(out, (through, partition))?,
        }
        out.push_sql(" ORDER BY ");
        for term in &node.shape.order {
            column(out, (table, term.column))?;
            out.push_sql(if term.descending { " DESC, " } else { ", " });
        }
        column(out, (table, key))?;
        out.push_sql(") AS ");
        out.push_identifier(ROW_NUMBER)
    }

    /// ` WHERE name.__orm_rn > ? AND name.__orm_rn <= ?`: the rows of the window.
    fn walk_window_rows<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        name: &'b str,
        window: &'b Window,
        first: &mut bool,
    ) -> QueryResult<()> {
        // Row numbers start at 1: no offset needs no lower bound.
        if window.after > 0 {
            out.push_sql(if std::mem::take(first) { " WHERE " } else { " AND " });
            column(out, (name, ROW_NUMBER))?;
            out.push_sql(" > ");
            DB::push_key(&window.after, out)?;
        }
        if let Some(upto) = &window.upto {
            out.push_sql(if std::mem::take(first) { " WHERE " } else { " AND " });
            column(out, (name, ROW_NUMBER))?;
            out.push_sql(" <= ");
            DB::push_key(upto, out)?;
        }
        Ok(())
    }

    /// The order of each relation's rows that has one, after the query's own: the terms on the
    /// node's name, then its key (ties). Rows of one parent then come in the relation's order,
    /// whatever else the statement orders by, so each collection reads them as they come.
    fn walk_row_orders<'b>(
        node: &'b PlanNode,
        out: &mut AstPass<'_, 'b, DB>,
        first: &mut bool,
    ) -> QueryResult<()> {
        if node.shape.ordered() {
            let name = node.name.as_str();
            for term in &node.shape.order {
                out.push_sql(if std::mem::take(first) { " ORDER BY " } else { ", " });
                column(out, (name, term.column))?;
                if term.descending {
                    out.push_sql(" DESC");
                }
            }
            out.push_sql(", ");
            column(out, (name, node.columns[node.key_column]))?;
        }
        for child in node.joined.iter().filter(|c| !c.external) {
            Self::walk_row_orders(&child.node, out, first)?;
        }
        Ok(())
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

impl<DB: OrmBackend> SelectGraph<'_, DB> {
    /// A `selectin` statement whose relation keeps a window of rows per parent.
    ///
    /// By default the rows it selects (the key list, the relation's filter, the association
    /// table of a many-to-many) are numbered per parent in a derived table that keeps the
    /// table's name, so the joins below and the order read it as the table; then the rows in
    /// the window. Its cost is that of the rows the key list selects, index or not.
    ///
    /// `per_parent`: each of the parents' keys (`keys`, as a table) drives its first rows, read
    /// as a join reads them (see `walk_window_join`): `FROM (keys) AS __orm_k INNER JOIN LATERAL
    /// (..) AS comment ON TRUE` on PostgreSQL, `INNER JOIN comment ON comment.id IN (SELECT ..
    /// LIMIT ?)` on SQLite, the target keeping its table's name for the joins below and the
    /// order.
    fn walk_windowed<'b>(
        &'b self,
        window: &'b Window,
        mut out: AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        let root = self.plan;
        let name = root.table.name;
        let key = root.columns[root.key_column];
        out.push_sql("SELECT ");
        let mut first = true;
        if let (Some(keys), true) = (self.keys, window.per_parent) {
            if self.link.is_some() {
                column(&mut out, (KEYS, KEY))?;
                first = false;
            }
            Self::walk_columns(root, &mut out, &mut first)?;
            out.push_sql(" FROM ");
            keys.walk_ast(out.reborrow())?;
            out.push_sql(" AS ");
            out.push_identifier(KEYS)?;
            let through = self.link.map(|link| (link.table, link.target_column));
            out.push_sql(" INNER JOIN ");
            if DB::LATERAL {
                out.push_sql("LATERAL (");
                Self::walk_parent_rows(&mut out, root, through, window, (KEYS, KEY), false)?;
                out.push_sql(") AS ");
                out.push_identifier(name)?;
                out.push_sql(" ON TRUE");
            } else {
                table_as(&mut out, root.table, name)?;
                out.push_sql(" ON ");
                column(&mut out, (name, key))?;
                out.push_sql(" IN (");
                Self::walk_parent_rows(&mut out, root, through, window, (KEYS, KEY), true)?;
                out.push_sql(")");
            }
            Self::walk_joins(root, &mut out, true, false)?;
            return Self::walk_row_orders(root, &mut out, &mut true);
        }
        if self.link.is_some() {
            column(&mut out, (name, VIA_KEY))?;
            first = false;
        }
        Self::walk_columns(root, &mut out, &mut first)?;
        out.push_sql(" FROM (SELECT ");
        if let Some(link) = &self.link {
            column(&mut out, (LINK_ALIAS, link.parent_column))?;
            out.push_sql(" AS ");
            out.push_identifier(VIA_KEY)?;
            out.push_sql(", ");
        }
        out.push_identifier(name)?;
        out.push_sql(".*");
        Self::walk_row_number(&mut out, root, window, LINK_ALIAS)?;
        out.push_sql(" FROM ");
        table_as(&mut out, root.table, name)?;
        if let Some(link) = &self.link {
            out.push_sql(" INNER JOIN ");
            table_as(&mut out, link.table, LINK_ALIAS)?;
            on(&mut out, (LINK_ALIAS, link.target_column), (name, key))?;
        }
        self.walk_where(&mut out, false)?;
        out.push_sql(") AS ");
        out.push_identifier(name)?;
        Self::walk_joins(root, &mut out, true, false)?;
        Self::walk_window_rows(&mut out, name, window, &mut true)?;
        Self::walk_row_orders(root, &mut out, &mut true)
    }
}

/// The columns whose equality links `child`'s rows to its parent's (`parent`: name and key
/// column), where the child is its own table or a filtered derived table; `through`: the name of
/// the association table joined before it, for an unfiltered many-to-many.
fn link_columns<'b>(
    child: &'b JoinedChild,
    through: Option<&'b str>,
    parent: (&'b str, &'b str),
) -> ((&'b str, &'b str), (&'b str, &'b str)) {
    let target = &child.node;
    let alias = target.name.as_str();
    match child.link {
        Link::ParentColumn(column) => {
            ((alias, target.columns[target.key_column]), (parent.0, column))
        }
        Link::TargetColumn(column) => ((alias, column), parent),
        Link::Through { parent_column, .. } => match through {
            Some(through) => ((through, parent_column), parent),
            // The filtered derived table carries the parent's key.
            None => ((alias, VIA_KEY), parent),
        },
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

/// The keys as a one-column table (`KEY`), as bound parameters.
pub(crate) struct KeyTable<K> {
    pub(crate) keys: Arc<[K]>,
}

impl<DB: OrmBackend, K: KeyValue> QueryFragment<DB> for KeyTable<K> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        DB::push_key_table(&self.keys, KEY, &mut out)
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
