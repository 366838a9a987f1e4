//! Running a plan: the statement with its joins, then the `selectin` statements level by level.

pub(crate) mod context;
pub(crate) mod count;
pub(crate) mod decode;
pub(crate) mod lazy;
pub(crate) mod selectin;
pub(crate) mod walk;

use std::sync::Arc;

use diesel::RunQueryDsl;

use self::context::{Context, Db, SessionConnection};
use crate::backend::OrmBackend;
use crate::error::Result;
use crate::graph::{Graph, ObjRef};
use crate::identity::Refresh;
use crate::join::UserJoin;
use crate::model::{Model, Relation, RelationVisitor};
use crate::options::OptionTree;
use crate::plan::{PlanBuilder, PlanNode};
use crate::sql::{Dynamic, Fragment, Identified, SelectGraph, StatementId, ThroughLink};
use crate::stats::{Cause, Render};

use self::decode::{with_decoder, Decoder, RowSink};
use self::walk::Walk;
use crate::key::KeyValue;

/// The parts of a statement that come from the query rather than from the plan.
pub(crate) struct Statement<DB> {
    pub(crate) joins: Vec<UserJoin>,
    pub(crate) filters: Vec<Fragment<DB>>,
    pub(crate) order: Vec<Fragment<DB>>,
    pub(crate) limit: Option<i64>,
    pub(crate) offset: Option<i64>,
    /// The parents' keys as a table, for a windowed `selectin` statement (see `SelectGraph`).
    pub(crate) keys: Option<Fragment<DB>>,
}

impl<DB> Statement<DB> {
    /// The statement whose rows `filter` selects (a `selectin` statement's key list).
    pub(crate) fn filtered(filter: Fragment<DB>) -> Self {
        Statement { filters: vec![filter], ..Statement::empty() }
    }

    /// The statement reading each of `keys`' rows (a windowed `selectin` statement).
    pub(crate) fn keyed(keys: Fragment<DB>) -> Self {
        Statement { keys: Some(keys), ..Statement::empty() }
    }

    fn empty() -> Self {
        Statement {
            joins: Vec::new(),
            filters: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
            keys: None,
        }
    }
}

/// Loads the roots of a query and everything its plan loads eagerly.
pub(crate) fn load_root<M: Model, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    statement: Statement<Db<C>>,
    options: &OptionTree,
    refresh: Refresh,
) -> Result<(Arc<Graph>, Vec<ObjRef<M>>)> {
    let plan = Arc::new(
        PlanBuilder::new(0, &statement.joins).root::<M>(options, &mut Default::default())?,
    );
    let origin = cx.next_origin();
    let graph = cx.graph_for_load();
    let run = |cx: &mut Context<'_, C>| {
        let cause = Cause::Query(M::NAME);
        let mut walk = Walk::new(Arc::clone(&graph), origin, refresh);
        let roots = fetch::<M, M::Key, C, Dynamic>(
            cx,
            Arc::clone(&plan),
            &statement,
            None,
            cause,
            &mut walk,
            None,
        )?;
        let mut objects = Vec::with_capacity(roots.len());
        for (_, object) in roots {
            objects.push(object);
        }
        let roots = objects;
        load_deferred::<M, C>(cx, &plan, &roots, &mut walk)?;
        walk.run(cx)?;
        cx.detector.record_eager::<M>((&walk.graph, walk.origin), &plan, &roots);
        Ok(roots)
    };
    let roots = if plan.has_deferred() {
        // Several statements: read them in one transaction so the graph is one snapshot.
        cx.load_transaction(run)?
    } else {
        run(cx)?
    };
    Ok((graph, roots))
}

/// Runs one statement over `plan` and returns its roots, each with its link column (of key type
/// `K`, when `link` is given). `Id` names the prepared statement when its SQL is fixed (see
/// [`StatementId`]).
pub(crate) fn fetch<M: Model, K: KeyValue, C: SessionConnection, Id: StatementId>(
    cx: &mut Context<'_, C>,
    plan: Arc<PlanNode>,
    statement: &Statement<Db<C>>,
    link: Option<ThroughLink>,
    cause: Cause,
    walk: &mut Walk<C>,
    render: Option<Render>,
) -> Result<Vec<(Option<K>, ObjRef<M>)>> {
    let run = Run { plan, statement, link, cause, render };
    fetch_with::<M, K, C>(cx, run, walk, load_rows::<M, K, C, Id>)
}

/// What [`fetch`] runs.
pub(crate) struct Run<'s, DB> {
    pub(crate) plan: Arc<PlanNode>,
    pub(crate) statement: &'s Statement<DB>,
    pub(crate) link: Option<ThroughLink>,
    pub(crate) cause: Cause,
    pub(crate) render: Option<Render>,
}

/// The rows of `query`, through the decoder [`with_decoder`] installed; prepared anew once if
/// the database refused the cached statement as stale. The only part of a fetch that depends on
/// the statement's identity `Id` (a function pointer for [`fetch_with`], so the rest is compiled
/// once per model rather than once per statement identity).
pub(crate) fn load_rows<M: Model, K: KeyValue, C: SessionConnection, Id: StatementId>(
    conn: &mut C,
    query: &SelectGraph<'_, Db<C>>,
) -> diesel::QueryResult<Vec<RowSink<M, K>>> {
    match Identified::<_, Id>::new(*query).load::<RowSink<M, K>>(&mut *conn) {
        // Refused before any row: run it again, prepared anew.
        Err(error)
            if <Db<C> as OrmBackend>::is_stale_statement(&error)
                && Context::forget_prepared_statements(conn) =>
        {
            Identified::<_, Id>::new(*query).load::<RowSink<M, K>>(conn)
        }
        result => result,
    }
}

/// Fetches a statement's rows with `load` (see [`fetch`]).
pub(crate) fn fetch_with<M: Model, K: KeyValue, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    run: Run<'_, Db<C>>,
    walk: &mut Walk<C>,
    load: LoadRows<M, K, C>,
) -> Result<Vec<(Option<K>, ObjRef<M>)>> {
    let Run { plan, statement, link, cause, render } = run;
    let origin = walk.origin;
    let query = SelectGraph {
        plan: &plan,
        joins: &statement.joins,
        link,
        filters: &statement.filters,
        order: &statement.order,
        limit: statement.limit,
        offset: statement.offset,
        keys: statement.keys.as_ref(),
    };
    let repeats =
        query.joins.iter().any(|j| !matches!(j.link, crate::model::Link::ParentColumn(_)));
    let query_root = matches!(cause, Cause::Query(_));
    // Locked for the whole statement: a lazy load on another thread that reaches the same graph
    // waits, rather than decode a second object of a row this statement is decoding.
    let graph = Arc::clone(&walk.graph);
    let mut identity = graph.identity();
    let statement = identity.next_statement();
    let decoder =
        Decoder::<M, K>::new(walk, Arc::clone(&plan), link, repeats, query_root, statement);
    let recording = cx.recorder.fetch(cause, render);
    let conn = &mut *cx.conn;
    identity.set_mark();
    let (mut decoder, result) = with_decoder(&mut identity, decoder, || load(conn, &query));
    recording.finish(result.is_ok().then_some(decoder.rows));
    let failure = match (decoder.error.take(), result) {
        (None, Ok(_)) => None,
        (Some(error), _) => Some(error),
        (None, Err(error)) => Some(statement_error(cx, &query, error)),
    };
    if let Some(error) = failure {
        // The load failed: the identity map forgets what it decoded, and the graph drops the
        // objects of this statement (nothing outside it points to them).
        drop(decoder);
        identity.forget_since(origin.wrapping_sub(1));
        identity.truncate_to_mark();
        return Err(error);
    }
    drop(identity);
    cx.lazy_options.record(origin, &plan);
    decoder.finish();
    let roots = std::mem::take(&mut decoder.roots);
    if decoder.revisited {
        // An object held from an earlier load keeps the collections it had loaded; if the data
        // changed since, they hold objects this statement's rows did not bring, which miss what
        // the plan joins below them. Load those where missing, so the typed state holds.
        let objects: Vec<ObjRef<M>> = roots.iter().map(|(_, object)| *object).collect();
        complete_joined::<M, C>(cx, &plan, &objects, walk)?;
    }
    Ok(roots)
}

/// [`load_rows`] for one statement identity.
pub(crate) type LoadRows<M, K, C> =
    fn(&mut C, &SelectGraph<'_, Db<C>>) -> diesel::QueryResult<Vec<RowSink<M, K>>>;

/// The error of a statement the database failed.
fn statement_error<C: SessionConnection>(
    cx: &Context<'_, C>,
    query: &SelectGraph<'_, Db<C>>,
    error: diesel::result::Error,
) -> crate::error::Error {
    // A filter on a table the query does not join fails in the database with a message that
    // does not say so; look for that cause before reporting the database's words, and say it
    // only if the database's words name that table (when unsure, they stand).
    if !query.filters.is_empty() || !query.order.is_empty() {
        if let Err(crate::error::Error::TableNotInQuery { table, available }) = check_tables(query)
        {
            let words = error.to_string().to_lowercase();
            if words.contains(&table.to_lowercase()) {
                return crate::error::Error::TableNotInQuery { table, available };
            }
        }
    }
    cx.db_error(error)
}

/// Finds a table the statement's filters name but never bring in: the likely cause of a failed
/// statement, reported as such instead of the database's message.
fn check_tables<DB: crate::backend::OrmBackend>(query: &SelectGraph<'_, DB>) -> Result<()> {
    // A statement that cannot even be rendered (a misused `any`) fails here with its reason.
    let sql = DB::render(query).map_err(|source| crate::error::Error::Database {
        sql: "(not rendered)".to_owned(),
        source,
    })?;
    match crate::join::missing_table(&sql, DB::QUOTE) {
        Some((table, available)) => Err(crate::error::Error::TableNotInQuery { table, available }),
        None => Ok(()),
    }
}

/// Runs the `selectin` loads of `node` and of its joined descendants, for `objects`; the levels
/// below them are queued on `walk`.
pub(crate) fn load_deferred<T: Model, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    node: &PlanNode,
    objects: &[ObjRef<T>],
    walk: &mut Walk<C>,
) -> Result<()> {
    if objects.is_empty() || !node.has_deferred() {
        return Ok(());
    }
    for deferred in &node.deferred {
        let visitor = selectin::Selectin { cx: &mut *cx, parents: objects, deferred, walk };
        T::visit_relation(deferred.relation, visitor).unwrap_or(Ok(()))?;
    }
    count::load_counts::<T, C>(cx, node, objects, &walk.graph)?;
    for child in &node.joined {
        if child.node.has_deferred() {
            let visitor = Descend { cx: &mut *cx, parents: objects, node: &child.node, walk };
            T::visit_relation(child.relation, visitor).unwrap_or(Ok(()))?;
        }
    }
    Ok(())
}

/// Loads the relations `node` joins for `objects` that did not come from `node`'s own statement,
/// where not loaded yet: one `selectin` statement per relation (recursively below). Without
/// this, an object reached again by a deeper path of the same load (a self-managed person is
/// their own report), or loaded by an earlier query, would miss what the options load there.
pub(crate) fn complete_joined<T: Model, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    node: &PlanNode,
    objects: &[ObjRef<T>],
    walk: &mut Walk<C>,
) -> Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    for child in node.joined.iter().filter(|c| !c.external) {
        let deferred = &child.as_selectin;
        let visitor = selectin::Selectin { cx: &mut *cx, parents: objects, deferred, walk };
        T::visit_relation(child.relation, visitor).unwrap_or(Ok(()))?;
    }
    Ok(())
}

/// Follows a joined relation to run the `selectin` loads below it.
struct Descend<'a, 'c, P, C: SessionConnection> {
    cx: &'a mut Context<'c, C>,
    parents: &'a [ObjRef<P>],
    node: &'a PlanNode,
    walk: &'a mut Walk<C>,
}

impl<P: Model, C: SessionConnection> RelationVisitor<P> for Descend<'_, '_, P, C> {
    type Output = Result<()>;

    fn visit<R: Relation<Parent = P>>(self) -> Result<()> {
        let parents = crate::rel::bind_all::<R>(self.parents);
        let children = crate::rel::related_typed::<R::Target, _>(&parents);
        load_deferred::<R::Target, C>(self.cx, self.node, &children, self.walk)
    }
}
