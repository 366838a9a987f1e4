//! What a session's loads run against: the connection with its statement log, the graph loads
//! decode into, the N+1 detector and the lazy-load bookkeeping, and the transactions a load of
//! several statements runs in. [`Session`](crate::Session) is the public façade over a
//! `Context`; the loader takes the `Context`, so it depends on nothing above it.

use std::any::TypeId;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use diesel::connection::{
    get_default_instrumentation, CacheSize, Connection, LoadConnection, TransactionManager,
};

use crate::backend::OrmBackend;
use crate::detect::{Detector, Strictness};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::identity::Origin;
use crate::options::OptionTree;
use crate::plan::PlanNode;
use crate::stats::Recorder;

/// A diesel connection the session can load graphs through (`SqliteConnection`, `PgConnection`,
/// or a pooled one).
pub trait SessionConnection: Connection<Backend: OrmBackend> + LoadConnection {}

impl<C> SessionConnection for C where C: Connection<Backend: OrmBackend> + LoadConnection {}

/// The backend of a session's connection.
pub(crate) type Db<C> = <C as Connection>::Backend;

/// A session's state (see the module docs).
pub(crate) struct Context<'c, C: SessionConnection> {
    pub(crate) conn: &'c mut C,
    pub(crate) recorder: Recorder,
    /// The graph loads decode into (lazy loads decode into their parent's graph).
    pub(crate) graph: Arc<Graph>,
    /// Objects in a held graph past which a load starts a new graph.
    pub(crate) graph_limit: usize,
    pub(crate) detector: Detector,
    pub(crate) strictness: Strictness,
    /// The plans of lazy loads, per relation: the same for every object.
    pub(crate) lazy_plans: FxHashMap<(TypeId, usize), Arc<PlanNode>>,
    /// The options a load left for the later lazy loads of its objects' relations
    /// (`lazy(r).then(..)`), by load, model and relation.
    pub(crate) lazy_options: LazyOptions,
    /// Whether the outermost transaction's commit expires every object.
    pub(crate) expire_on_commit: bool,
}

/// The last load number given out, over every session of the process: objects of one graph can
/// be loaded by several sessions (lazy loads on handles), whose numbers must not collide.
static ORIGINS: AtomicU32 = AtomicU32::new(0);

/// Objects in a held graph past which a load starts a new graph, unless set.
const GRAPH_LIMIT: usize = 1 << 20;

impl<'c, C: SessionConnection> Context<'c, C> {
    /// A context on `conn`, whose statements the recorder counts from now on.
    pub(crate) fn new(conn: &'c mut C) -> Self {
        let recorder = Recorder::default();
        recorder.attach(conn);
        Context {
            conn,
            recorder,
            graph: Graph::new(),
            graph_limit: GRAPH_LIMIT,
            detector: Detector::default(),
            strictness: Strictness::default(),
            lazy_plans: FxHashMap::default(),
            lazy_options: LazyOptions::default(),
            expire_on_commit: false,
        }
    }

    /// The graph a load decodes into: the current one, cleared first if nothing outside the
    /// session holds it, or a new one if it is held and past the limit.
    pub(crate) fn graph_for_load(&mut self) -> Arc<Graph> {
        if !Graph::clear_if_unshared(&self.graph) && self.graph.objects() > self.graph_limit {
            self.graph = Graph::new();
        }
        Arc::clone(&self.graph)
    }

    /// Runs a load of several statements in a transaction (a savepoint inside the caller's);
    /// if this opens the outermost transaction and a statement failed as stale (a schema change
    /// since diesel prepared it: see [`Context::forget_prepared_statements`]), once more.
    pub(crate) fn load_transaction<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let mut value = None;
        self.load_transaction_dyn(&mut |cx| {
            value = Some(f(cx)?);
            Ok(())
        })?;
        Ok(value.expect("a committed load transaction ran its body"))
    }

    /// [`Context::load_transaction`] compiled once per connection type, not once per caller.
    fn load_transaction_dyn(&mut self, f: &mut dyn FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let outermost = matches!(self.transaction_depth(), Ok(None));
        match transaction(self, &mut *f) {
            Err(Error::Database { source, .. })
                if outermost && <Db<C> as OrmBackend>::is_stale_statement(&source) =>
            {
                transaction(self, f)
            }
            result => result,
        }
    }

    /// Forgets every statement diesel prepared on the connection, after the database refused
    /// one as stale; returns whether the failed statement can run again now (not in a
    /// transaction, which the failure aborted: the caller rolls back and retries).
    pub(crate) fn forget_prepared_statements(conn: &mut C) -> bool {
        // diesel only rebuilds its cache when the size changes, and cannot evict one statement.
        conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        conn.set_prepared_statement_cache_size(CacheSize::Unbounded);
        let outside = C::TransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()
            .is_ok_and(|depth| depth.is_none());
        // diesel never deallocates what it forgets; in an aborted transaction this fails, and
        // the old statements stay until the connection closes.
        if let (true, Some(sql)) = (outside, <Db<C> as OrmBackend>::DEALLOCATE_ALL) {
            let _ = conn.batch_execute(sql);
        }
        outside
    }

    /// The number of transactions and savepoints open on the connection.
    pub(crate) fn transaction_depth(&mut self) -> diesel::QueryResult<Option<NonZeroU32>> {
        C::TransactionManager::transaction_manager_status_mut(self.conn).transaction_depth()
    }

    /// A new load's origin: the objects it reaches are "from one query" for the detector.
    pub(crate) fn next_origin(&mut self) -> Origin {
        ORIGINS.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// The error of a failed statement, with the last statement's SQL.
    pub(crate) fn db_error(&self, source: diesel::result::Error) -> Error {
        Error::from_diesel(source, || {
            self.recorder.lock().last().map(|s| s.sql.clone()).unwrap_or_default()
        })
    }
}

impl<'c, C: SessionConnection> AsMut<Context<'c, C>> for Context<'c, C> {
    fn as_mut(&mut self) -> &mut Context<'c, C> {
        self
    }
}

/// Runs `f` on `this` (a context, or a session wrapping one) inside a transaction (a savepoint
/// if one is already open): committed if `f` returns `Ok`, rolled back otherwise. Loads inside
/// it read one snapshot.
///
/// If `f` panics, the transaction is rolled back before the panic goes on (with any transaction
/// `f` opened on the connection and left open), so a panic caught higher up leaves the
/// connection as it found it: the next transaction really commits.
pub(crate) fn transaction<'c, C, S, T>(
    this: &mut S,
    f: impl FnOnce(&mut S) -> Result<T>,
) -> Result<T>
where
    C: SessionConnection + 'c,
    S: AsMut<Context<'c, C>>,
{
    let cx = this.as_mut();
    let depth = cx.transaction_depth().map_err(|e| cx.db_error(e))?;
    C::TransactionManager::begin_transaction(cx.conn).map_err(|e| cx.db_error(e))?;
    let origin = ORIGINS.load(Ordering::Relaxed);
    let mut open = OpenTransaction { this, depth, origin, done: false, _context: PhantomData };
    if let (None, Some(snapshot)) = (depth, <Db<C> as OrmBackend>::SNAPSHOT) {
        let cx = open.this.as_mut();
        if let Err(error) = cx.conn.batch_execute(snapshot) {
            return Err(cx.db_error(error));
        }
    }
    // On `Err` (and on unwind) dropping `open` rolls back.
    let value = f(open.this)?;
    open.done = true;
    let cx = open.this.as_mut();
    C::TransactionManager::commit_transaction(cx.conn).map_err(|e| cx.db_error(e))?;
    Ok(value)
}

/// A transaction [`transaction`] opened: rolled back on drop unless it is done (committed or
/// being committed), so neither an error nor a panic in its body leaves it open.
struct OpenTransaction<'s, 'c, C: SessionConnection + 'c, S: AsMut<Context<'c, C>>> {
    this: &'s mut S,
    /// The depth before it was opened: rolling back returns to it.
    depth: Option<NonZeroU32>,
    /// The last load before it: the objects of later loads may show its writes.
    origin: Origin,
    done: bool,
    _context: PhantomData<&'s mut Context<'c, C>>,
}

impl<'c, C: SessionConnection + 'c, S: AsMut<Context<'c, C>>> Drop
    for OpenTransaction<'_, 'c, C, S>
{
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let cx = self.this.as_mut();
        // Also the levels the body opened on the connection and left open (a panic inside
        // diesel's own `transaction` does not roll back). A failed rollback leaves diesel's
        // transaction manager broken: later statements fail instead of running in a stale
        // transaction. The load's error (or the panic) is what the caller sees, not this one.
        while cx.transaction_depth().is_ok_and(|open| open > self.depth) {
            if C::TransactionManager::rollback_transaction(cx.conn).is_err() {
                break;
            }
        }
        // The objects its loads decoded may show its own writes, now undone: the graph forgets
        // them (those still held stay as they are).
        cx.graph.identity().forget_since(self.origin);
    }
}

impl<C: SessionConnection> Drop for Context<'_, C> {
    fn drop(&mut self) {
        self.detector.warn_unused();
        self.conn.set_instrumentation(get_default_instrumentation());
    }
}

/// The options loads left for later lazy loads, for the latest loads: past
/// [`LazyOptions::KEPT`] entries the oldest loads' are forgotten (amortised), so a long session
/// stays bounded.
#[derive(Default)]
pub(crate) struct LazyOptions {
    by_load: FxHashMap<(Origin, TypeId, usize), Arc<OptionTree>>,
    limit: usize,
}

impl LazyOptions {
    const KEPT: usize = 4096;

    /// Records the options of every lazy relation `plan` leaves, for the objects of load
    /// `origin`.
    pub(crate) fn record(&mut self, origin: Origin, plan: &PlanNode) {
        plan.for_each_lazy_option(&mut |model, relation, options| {
            let options = Arc::new(options.clone());
            self.by_load.insert((origin, model, relation), options);
        });
        if self.by_load.len() > self.limit.max(Self::KEPT) {
            let mut origins: Vec<Origin> = self.by_load.keys().map(|k| k.0).collect();
            origins.sort_unstable();
            let cutoff = origins[origins.len() / 2];
            self.by_load.retain(|k, _| k.0 >= cutoff);
            self.limit = 2 * self.by_load.len();
        }
    }

    /// The options load `origin` left for relation `relation` of model `model`.
    pub(crate) fn get(
        &self,
        origin: Origin,
        model: TypeId,
        relation: usize,
    ) -> Option<Arc<OptionTree>> {
        self.by_load.get(&(origin, model, relation)).cloned()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_load.is_empty()
    }
}
