//! The SQL of shaped relations (docs/design.md, "Shaping what a relation loads"): filtered and
//! windowed joins as derived tables in which the target keeps its table's name, windows numbered
//! per parent or read per parent (`LATERAL` on PostgreSQL, `key IN (SELECT .. LIMIT ?)` on
//! SQLite), the relations' orders, and the `EXISTS` that keeps a page of parents to those its
//! inner joins keep.

use std::sync::Arc;

use diesel::query_builder::{AstPass, QueryFragment};
use diesel::QueryResult;

use super::{SelectGraph, INNER, LINK_ALIAS};
use crate::backend::OrmBackend;
use crate::ident::{column, join, on, table_as};
use crate::key::KeyValue;
use crate::model::{Link, SqlTable};
use crate::plan::{JoinedChild, Partition, PlanNode, Window};

/// In a shaped many-to-many's derived table: the association table, and its column holding the
/// parent's key.
const VIA: &str = "__orm_via";
const VIA_KEY: &str = "__orm_link";
/// A relation window's row numbers, and the derived table numbering them in a join.
const ROW_NUMBER: &str = "__orm_rn";
const WINDOW: &str = "__orm_w";
/// The target's rows in the subquery that reads one parent's window.
const ONE_PARENT: &str = "__orm_x";
/// The parents' keys as a table, and its column, in a windowed `selectin` statement.
const KEYS: &str = "__orm_k";
const KEY: &str = "__orm_key";

/// A column pair, `(table or alias, column)`.
type Col<'b> = (&'b str, &'b str);

impl<DB: OrmBackend> SelectGraph<'_, DB> {
    /// The join of a relation whose rows are shaped (filtered or windowed) unless its window is
    /// read per parent (`walk_window_join`): `KIND JOIN <derived table> AS t1 ON ..`.
    pub(super) fn walk_shaped_join<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        kind: &str,
        child: &'b JoinedChild,
        parent: Col<'b>,
    ) -> QueryResult<()> {
        if let Some(window) = child.node.shape.window.as_ref().filter(|w| w.per_parent) {
            return Self::walk_window_join(out, kind, child, window, parent);
        }
        out.push_sql(kind);
        Self::walk_shaped_source(out, child.link, &child.node)?;
        let (left, right) = link_columns(child, None, parent);
        on(out, left, right)
    }

    /// ` AND EXISTS (..)` for each relation of `node` joined inner, so that a page of parents
    /// (a limit in a subquery) counts only the parents the inner joins keep.
    pub(super) fn walk_inner_exists<'b>(
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
            match (target.shape.derived(), child.link) {
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
        let window = target.shape.window.as_ref();
        out.push_sql("(SELECT ");
        if window.is_some() {
            out.push_sql("* FROM (SELECT ");
        }
        if let Link::Through { parent_column, .. } = link {
            walk_link_column(out, (VIA, parent_column))?;
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
            on(out, (table.name, target.columns[target.key_column]), (VIA, target_column))?;
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
    /// an index each parent scans the table. A many-to-many on SQLite puts the `IN` on its
    /// association rows, so a link outside the window brings no row.
    fn walk_window_join<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        kind: &str,
        child: &'b JoinedChild,
        window: &'b Window,
        (parent, parent_key): Col<'b>,
    ) -> QueryResult<()> {
        let target = &child.node;
        let through = match child.link {
            Link::Through { table, target_column, .. } => Some((table(), target_column)),
            _ => None,
        };
        let equals = match child.link {
            Link::ParentColumn(fk) => (parent, fk),
            _ => (parent, parent_key),
        };
        out.push_sql(kind);
        match child.link {
            Link::Through { table, parent_column, target_column } if !DB::LATERAL => {
                let table = table();
                let name = child.through_name.as_deref().unwrap_or(table.name);
                table_as(out, table, name)?;
                on(out, (name, parent_column), (parent, parent_key))?;
                out.push_sql(" AND ");
                column(out, (name, target_column))?;
                out.push_sql(" IN (");
                Self::walk_parent_rows(out, target, through, window, equals, true)?;
                out.push_sql(")");
                let alias = target.name.as_str();
                let target_key = (alias, target.columns[target.key_column]);
                join(out, kind, (target.table, alias), target_key, (name, target_column))
            }
            _ => Self::walk_per_parent(out, target, through, window, equals, &target.name),
        }
    }

    /// `LATERAL (<one parent's rows>) AS name ON TRUE` where the backend has `LATERAL`, and
    /// `table AS name ON name.key IN (<one parent's keys>)` otherwise: the rows of the windowed
    /// relation whose rows `target` holds, for the parent whose key is in column `equals`, under
    /// `name` (after a ` JOIN `).
    fn walk_per_parent<'b>(
        out: &mut AstPass<'_, 'b, DB>,
        target: &'b PlanNode,
        through: Option<(SqlTable, &'static str)>,
        window: &'b Window,
        equals: Col<'b>,
        name: &'b str,
    ) -> QueryResult<()> {
        if DB::LATERAL {
            out.push_sql("LATERAL (");
            Self::walk_parent_rows(out, target, through, window, equals, false)?;
            out.push_sql(") AS ");
            out.push_identifier(name)?;
            out.push_sql(" ON TRUE");
        } else {
            table_as(out, target.table, name)?;
            out.push_sql(" ON ");
            column(out, (name, target.columns[target.key_column]))?;
            out.push_sql(" IN (");
            Self::walk_parent_rows(out, target, through, window, equals, true)?;
            out.push_sql(")");
        }
        Ok(())
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
        parent: Col<'b>,
        keys: bool,
    ) -> QueryResult<()> {
        let table = target.table;
        let key = target.columns[target.key_column];
        out.push_sql("SELECT ");
        if keys {
            column(out, (ONE_PARENT, key))?;
        } else {
            if let Partition::Through(parent_column) = window.partition {
                walk_link_column(out, (VIA, parent_column))?;
            }
            out.push_identifier(ONE_PARENT)?;
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
        out.push_identifier(ONE_PARENT)?;
        if let Some((through, target_column)) = through {
            out.push_sql(" INNER JOIN ");
            table_as(out, through, VIA)?;
            on(out, (VIA, target_column), (ONE_PARENT, key))?;
        }
        out.push_sql(" WHERE ");
        column(out, partition_column(window, target, ONE_PARENT, VIA))?;
        out.push_sql(" = ");
        column(out, parent)?;
        out.push_sql(" ORDER BY ");
        walk_order_terms(out, target, ONE_PARENT)?;
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
        out.push_sql(", ROW_NUMBER() OVER (PARTITION BY ");
        column(out, partition_column(window, node, node.table.name, through))?;
        out.push_sql(" ORDER BY ");
        walk_order_terms(out, node, node.table.name)?;
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
    pub(super) fn walk_row_orders<'b>(
        node: &'b PlanNode,
        out: &mut AstPass<'_, 'b, DB>,
        first: &mut bool,
    ) -> QueryResult<()> {
        if node.shape.ordered() {
            out.push_sql(if std::mem::take(first) { " ORDER BY " } else { ", " });
            walk_order_terms(out, node, &node.name)?;
        }
        for child in node.joined.iter().filter(|c| !c.external) {
            Self::walk_row_orders(&child.node, out, first)?;
        }
        Ok(())
    }

    /// A `selectin` statement whose relation keeps a window of rows per parent.
    ///
    /// By default the rows it selects (the key list, the relation's filter, the association
    /// table of a many-to-many) are numbered per parent in a derived table that keeps the
    /// table's name, so the joins below and the order read it as the table; then the rows in
    /// the window. Its cost is that of the rows the key list selects, index or not.
    ///
    /// `per_parent`: each of the parents' keys (`keys`, as a table) drives its first rows, read
    /// as a join reads them (`walk_per_parent`): `FROM (keys) AS __orm_k INNER JOIN LATERAL (..)
    /// AS comment ON TRUE` on PostgreSQL, `INNER JOIN comment ON comment.id IN (SELECT ..
    /// LIMIT ?)` on SQLite, the target keeping its table's name for the joins below and the
    /// order.
    pub(super) fn walk_windowed<'b>(
        &'b self,
        window: &'b Window,
        mut out: AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        let root = self.plan;
        let name = root.table.name;
        let per_parent = self.keys.filter(|_| window.per_parent);
        out.push_sql("SELECT ");
        let mut first = true;
        if self.link.is_some() {
            let link = if per_parent.is_some() { (KEYS, KEY) } else { (name, VIA_KEY) };
            column(&mut out, link)?;
            first = false;
        }
        Self::walk_columns(root, &mut out, &mut first)?;
        if let Some(keys) = per_parent {
            out.push_sql(" FROM ");
            keys.walk_ast(out.reborrow())?;
            out.push_sql(" AS ");
            out.push_identifier(KEYS)?;
            out.push_sql(" INNER JOIN ");
            let through = self.link.map(|link| (link.table, link.target_column));
            Self::walk_per_parent(&mut out, root, through, window, (KEYS, KEY), name)?;
            Self::walk_joins(root, &mut out, true, false)?;
            return Self::walk_row_orders(root, &mut out, &mut true);
        }
        out.push_sql(" FROM (SELECT ");
        if let Some(link) = &self.link {
            walk_link_column(&mut out, (LINK_ALIAS, link.parent_column))?;
        }
        out.push_identifier(name)?;
        out.push_sql(".*");
        Self::walk_row_number(&mut out, root, window, LINK_ALIAS)?;
        out.push_sql(" FROM ");
        table_as(&mut out, root.table, name)?;
        if let Some(link) = &self.link {
            out.push_sql(" INNER JOIN ");
            table_as(&mut out, link.table, LINK_ALIAS)?;
            on(&mut out, (LINK_ALIAS, link.target_column), (name, root.columns[root.key_column]))?;
        }
        self.walk_where(&mut out, false)?;
        out.push_sql(") AS ");
        out.push_identifier(name)?;
        Self::walk_joins(root, &mut out, true, false)?;
        Self::walk_window_rows(&mut out, name, window, &mut true)?;
        Self::walk_row_orders(root, &mut out, &mut true)
    }
}

/// `column AS __orm_link, `: the parent's key a many-to-many's rows carry.
fn walk_link_column<DB: OrmBackend>(
    out: &mut AstPass<'_, '_, DB>,
    link: Col<'_>,
) -> QueryResult<()> {
    column(out, link)?;
    out.push_sql(" AS ");
    out.push_identifier(VIA_KEY)?;
    out.push_sql(", ");
    Ok(())
}

/// `name.a DESC, name.b, name.key`: the order of `node`'s rows, its key breaking ties.
fn walk_order_terms<DB: OrmBackend>(
    out: &mut AstPass<'_, '_, DB>,
    node: &PlanNode,
    name: &str,
) -> QueryResult<()> {
    for term in &node.shape.order {
        column(out, (name, term.column))?;
        out.push_sql(if term.descending { " DESC, " } else { ", " });
    }
    column(out, (name, node.columns[node.key_column]))
}

/// The column telling one parent's rows apart, the target being `name` and a many-to-many's
/// association table `through`.
fn partition_column<'b>(
    window: &Window,
    target: &'b PlanNode,
    name: &'b str,
    through: &'b str,
) -> Col<'b> {
    match window.partition {
        Partition::Target(partition) => (name, partition),
        Partition::Key => (name, target.columns[target.key_column]),
        Partition::Through(partition) => (through, partition),
    }
}

/// The columns whose equality links `child`'s rows to its parent's (`parent`: name and key
/// column), where the child is its own table or a shaped derived table; `through`: the name of
/// the association table joined before it, for an unshaped many-to-many.
fn link_columns<'b>(
    child: &'b JoinedChild,
    through: Option<&'b str>,
    parent: Col<'b>,
) -> (Col<'b>, Col<'b>) {
    let target = &child.node;
    let alias = target.name.as_str();
    match child.link {
        Link::ParentColumn(column) => {
            ((alias, target.columns[target.key_column]), (parent.0, column))
        }
        Link::TargetColumn(column) => ((alias, column), parent),
        Link::Through { parent_column, .. } => match through {
            Some(through) => ((through, parent_column), parent),
            // The shaped derived table carries the parent's key.
            None => ((alias, VIA_KEY), parent),
        },
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
