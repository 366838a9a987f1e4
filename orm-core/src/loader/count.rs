//! `count(..)`: the number of a collection's rows per object, in one `GROUP BY` statement per
//! relation (per chunk of keys) for every object a load reached, or for one object on first read
//! ([`lazy`]). Counts live in the object's graph, beside its objects (`Graph::counts`).

use std::panic::Location;
use std::sync::Arc;

use diesel::deserialize::{self, QueryableByName};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::row::NamedRow;
use diesel::sql_types::Untyped;
use diesel::{QueryResult, RunQueryDsl};
use rustc_hash::FxHashMap;

use super::context::{Context, Db, SessionConnection};
use crate::backend::OrmBackend;
use crate::detect::Detector;
use crate::error::Result;
use crate::graph::{Graph, ObjRef};
use crate::ident::{column, on, table_as};
use crate::key::KeyValue;
use crate::model::{Link, Model, Relation, RelationInfo, RelationVisitor, SqlTable};
use crate::plan::PlanNode;
use crate::shaping::CountEntry;
use crate::shaping::RelFilter;
use crate::sql::LINK_ALIAS;
use crate::state::Loaded;
use crate::stats::Cause;

/// Runs the counts `node` asks for (`count(..)` options of its level), for `objects`.
pub(crate) fn load_counts<T: Model, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    node: &PlanNode,
    objects: &[ObjRef<T>],
    graph: &Arc<Graph>,
) -> Result<()> {
    for count in &node.counts {
        let visitor = Count { cx: &mut *cx, objects, count, graph };
        T::visit_relation(count.relation, visitor).unwrap_or(Ok(()))?;
    }
    Ok(())
}

/// Counts one relation of `objects`.
struct Count<'a, 'c, T, C: SessionConnection> {
    cx: &'a mut Context<'c, C>,
    objects: &'a [ObjRef<T>],
    count: &'a CountEntry,
    graph: &'a Arc<Graph>,
}

impl<T: Model, C: SessionConnection> RelationVisitor<T> for Count<'_, '_, T, C> {
    type Output = Result<()>;

    fn visit<R: Relation<Parent = T>>(self) -> Result<()> {
        let mut parents = Vec::with_capacity(self.objects.len());
        for object in self.objects {
            parents.push((object.address(), R::parent_key(object)));
        }
        let relation = Counted::of::<R>();
        let filter = self.count.filter.as_ref();
        count_relation::<R::JoinKey, C>(self.cx, &relation, &parents, filter, self.graph)
    }
}

/// What counting relation `R` needs beyond its parents' keys, as values (the code counting is
/// compiled once per key type).
struct Counted {
    parent: &'static str,
    index: usize,
    info: &'static RelationInfo,
    table: SqlTable,
    key: &'static str,
}

impl Counted {
    fn of<R: Relation>() -> Self {
        Counted {
            parent: <R::Parent as Model>::NAME,
            index: R::INDEX,
            info: R::info(),
            table: <R::Target as Model>::table(),
            key: <R::Target as Model>::COLUMNS[<R::Target as Model>::KEY_COLUMN],
        }
    }
}

/// Counts `relation` for `parents` (object address and join key) and stores each count in
/// `graph`, zero for a parent without rows.
fn count_relation<K: KeyValue, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    relation: &Counted,
    parents: &[(usize, Option<&K>)],
    filter: Option<&RelFilter>,
    graph: &Arc<Graph>,
) -> Result<()> {
    let keys = super::selectin::sorted_keys(parents.iter().filter_map(|(_, key)| *key));
    let mut found: FxHashMap<K, u64> =
        FxHashMap::with_capacity_and_hasher(keys.len(), Default::default());
    let cause = Cause::Count(relation.parent, relation.info.name);
    for chunk in keys.chunks(<Db<C> as OrmBackend>::MAX_KEYS_PER_STATEMENT) {
        let query = CountQuery { relation, keys: chunk, filter };
        let recording = cx.recorder.fetch(cause, None);
        let result = query.load::<CountRow<K>>(&mut *cx.conn);
        recording.finish(result.as_ref().ok().map(Vec::len));
        for row in result.map_err(|error| cx.db_error(error))? {
            found.insert(row.key, row.count);
        }
    }
    let mut counts = graph.counts();
    counts.reserve(parents.len());
    for (object, key) in parents {
        let count = key.and_then(|key| found.get(key)).copied().unwrap_or(0);
        counts.insert((*object, relation.index), count);
    }
    Ok(())
}

/// Reads the count of `R` on `handle`: the one a `count(..)` option loaded, or one statement
/// now (kept for later reads), which the N+1 detector sees as a lazy load would be.
pub(crate) fn lazy<R: Relation, S, C: SessionConnection>(
    handle: &Loaded<R::Parent, S>,
    cx: &mut Context<'_, C>,
    location: &'static Location<'static>,
) -> Result<u64> {
    if let Some(count) = counted::<R, S>(handle) {
        return Ok(count);
    }
    let graph = handle.graph();
    let parent: &R::Parent = handle;
    let lazy_count = Detector::lazy_count_of::<R>;
    let (_, origin) = super::lazy::guard::<R, C>(cx, &graph, parent, location, false, lazy_count)?;
    let parents = [(handle.address(), R::parent_key(parent))];
    count_relation::<R::JoinKey, C>(cx, &Counted::of::<R>(), &parents, None, &graph)?;
    if let Some(origin) = origin {
        cx.detector.record_lazy_count::<R>(origin, location);
    }
    Ok(counted::<R, S>(handle).unwrap_or(0))
}

/// The count of `R` on `handle` a load stored, if any.
pub(crate) fn counted<R: Relation, S>(handle: &Loaded<R::Parent, S>) -> Option<u64> {
    handle.graph_ref().counts().get(&(handle.address(), R::INDEX)).copied()
}

/// `SELECT part, COUNT(*) FROM target WHERE part IN (..) AND (filter) GROUP BY part`, where
/// `part` is the target's foreign key (one-to-many) or the association table's column holding
/// the parent's key (many-to-many, joined to the target so only existing rows count).
struct CountQuery<'a, K> {
    relation: &'a Counted,
    keys: &'a [K],
    filter: Option<&'a RelFilter>,
}

impl<DB: OrmBackend, K: KeyValue> QueryFragment<DB> for CountQuery<'_, K> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let Counted { table, key, info, .. } = *self.relation;
        let part = match info.link {
            Link::TargetColumn(fk) => (table.name, fk),
            Link::Through { parent_column, .. } => (LINK_ALIAS, parent_column),
            // `count` takes collections only (`ToMany`).
            Link::ParentColumn(_) => {
                return Err(diesel::result::Error::QueryBuilderError(
                    format!("`{}` is not a collection: nothing to count", info.name).into(),
                ))
            }
        };
        out.push_sql("SELECT ");
        column(&mut out, part)?;
        out.push_sql(", COUNT(*) FROM ");
        if let Link::Through { table: through, target_column, .. } = info.link {
            table_as(&mut out, through(), LINK_ALIAS)?;
            out.push_sql(" INNER JOIN ");
            table_as(&mut out, table, table.name)?;
            on(&mut out, (table.name, key), (LINK_ALIAS, target_column))?;
        } else {
            table_as(&mut out, table, table.name)?;
        }
        out.push_sql(" WHERE ");
        DB::push_key_in(part, self.keys, &mut out)?;
        if let Some(filter) = self.filter {
            out.push_sql(" AND (");
            DB::fragment(&*filter.0).walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        out.push_sql(" GROUP BY ");
        column(&mut out, part)
    }
}

impl<K> QueryId for CountQuery<'_, K> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<K> Query for CountQuery<'_, K> {
    type SqlType = Untyped;
}

impl<K, Conn> RunQueryDsl<Conn> for CountQuery<'_, K> {}

/// One row of a [`CountQuery`]: a parent's key and its number of rows.
struct CountRow<K> {
    key: K,
    count: u64,
}

impl<DB: OrmBackend, K: KeyValue> QueryableByName<DB> for CountRow<K> {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        let key = DB::key_at::<K, _>(row, 0)?.ok_or("NULL key in a count")?;
        let count = DB::key_at::<i64, _>(row, 1)?.unwrap_or(0);
        Ok(CountRow { key, count: u64::try_from(count)? })
    }
}
