//! `Session`: a connection that counts and records its statements, with an identity map and the
//! N+1 detector.

use std::any::TypeId;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use diesel::connection::{
    get_default_instrumentation, CacheSize, Connection, LoadConnection, TransactionManager,
};

use crate::backend::OrmBackend;
use crate::detect::{Detector, Report, Strictness};
use crate::error::{Error, Result};
use crate::graph::{Graph, ObjRef};
use crate::identity::Origin;
use crate::model::Model;
use crate::options::OptionTree;
use crate::plan::PlanNode;
use crate::stats::{Recorder, Statement};
use crate::typed::Loaded;

/// A diesel connection the session can load graphs through (`SqliteConnection`, `PgConnection`,
/// or a pooled one).
pub trait SessionConnection: Connection<Backend: OrmBackend> + LoadConnection {}

impl<C> SessionConnection for C where C: Connection<Backend: OrmBackend> + LoadConnection {}

/// The backend of a session's connection.
pub(crate) type Db<C> = <C as Connection>::Backend;

/// A unit of work over one connection: counts every statement it runs, decodes what its loads
/// read into one object graph whose identity map makes each `(model, key)` row one shared
/// object, and watches for N+1 patterns.
///
/// The statement counter is diesel's instrumentation on the connection: it sees every statement,
/// including the ones you run on [`Session::connection`] yourself. It is attached when the session
/// starts and replaced by diesel's default instrumentation when the session is dropped (pooled
/// connections go back to the pool without it). Every statement is also a `tracing` event
/// (target `orm_core::sql`, level `DEBUG`).
///
/// The graph lives as long as the session or any handle into it ([`Loaded`]). When a load
/// starts and nothing outside the session holds the graph, it is cleared (the objects nobody
/// holds are forgotten, as a weak identity map forgets them); when it is held and has grown past
/// [`Session::graph_limit`] objects, the session starts a new one, and later loads build new
/// objects. So a long session stays bounded whatever the application keeps.
pub struct Session<'c, C: SessionConnection> {
    conn: &'c mut C,
    recorder: Recorder,
    /// The graph loads decode into (lazy loads decode into their parent's graph).
    graph: Arc<Graph>,
    graph_limit: usize,
    pub(crate) detector: Detector,
    pub(crate) strictness: Strictness,
    /// The plans of lazy loads, per relation: the same for every object.
    pub(crate) lazy_plans: FxHashMap<(TypeId, usize), Arc<PlanNode>>,
    /// The options a load left for the later lazy loads of its objects' relations
    /// (`lazy(r).then(..)`), by load, model and relation.
    pub(crate) lazy_options: LazyOptions,
    expire_on_commit: bool,
}

/// The last load number given out, over every session of the process: objects of one graph can
/// be loaded by several sessions (lazy loads on handles), whose numbers must not collide.
static ORIGINS: AtomicU32 = AtomicU32::new(0);

/// Objects in a held graph past which a load starts a new graph (see [`Session::graph_limit`]).
const GRAPH_LIMIT: usize = 1 << 20;

impl<'c, C: SessionConnection> Session<'c, C> {
    /// Starts a session on `conn`.
    pub fn new(conn: &'c mut C) -> Self {
        let recorder = Recorder::default();
        recorder.attach(conn);
        Session {
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

    /// Makes every lazy load an error ([`Strictness::Strict`]).
    pub fn strict(self) -> Self {
        self.with_strictness(Strictness::Strict)
    }

    /// Allows one lazy load per relation and query, and makes the second one an error
    /// ([`Strictness::NPlusOneOnly`]).
    pub fn n_plus_one_only(self) -> Self {
        self.with_strictness(Strictness::NPlusOneOnly)
    }

    /// Sets how lazy loads are treated.
    pub fn with_strictness(mut self, strictness: Strictness) -> Self {
        self.strictness = strictness;
        self
    }

    /// Turns the N+1 detector on or off (on by default in debug builds). Lazy loads repeated
    /// over the objects of one query are reported as they happen (a `tracing` warning, target
    /// `orm_core::n_plus_one`) and by [`Session::reports`]; eager loads nobody read are reported
    /// by [`Session::reports`] and warned about when the session ends.
    pub fn detect_n_plus_one(&mut self, enabled: bool) -> &mut Self {
        self.detector.enabled = enabled;
        self
    }

    /// Turns the SQL echo (one `tracing` event per statement) on or off; on by default, and
    /// silent anyway unless a subscriber listens. The statement log is kept either way.
    pub fn echo(&mut self, enabled: bool) -> &mut Self {
        self.recorder.lock().quiet = !enabled;
        self
    }

    /// What the N+1 detector found so far; eager loads are judged unused if nothing read them
    /// yet.
    pub fn reports(&self) -> Vec<Report> {
        self.detector.reports()
    }

    /// The number of queries run so far (transaction control statements excluded).
    pub fn statements(&self) -> usize {
        self.recorder.lock().queries
    }

    /// The statements run so far, in order, transaction control included: the last 10,000 and at
    /// most 512 KiB of them unless [`Session::statement_log_limit`] and
    /// [`Session::statement_log_bytes`] say otherwise.
    pub fn statement_log(&self) -> Vec<Statement> {
        self.recorder.lock().statements().cloned().collect()
    }

    /// The SQL of the queries in the statement log (transaction control excluded).
    pub fn queries(&self) -> Vec<String> {
        let mut log = self.recorder.lock();
        log.statements().filter(|s| !s.transaction_control).map(|s| s.sql.clone()).collect()
    }

    /// Keeps the last `limit` statements in the statement log (10,000 unless set; at least the
    /// latest one), so that a long session does not keep every statement it ever ran.
    /// [`Session::statements`] and the assertions count every statement whatever the limit.
    pub fn statement_log_limit(&mut self, limit: usize) -> &mut Self {
        self.recorder.lock().set_limit(limit);
        self
    }

    /// Keeps at most `bytes` of statements in the statement log (512 KiB unless set; always the
    /// latest statement, whatever its size: each is cut after 16 KiB of text), counting their
    /// SQL, bound values and causes. [`Session::statements`] and the assertions count every
    /// statement whatever the limit.
    pub fn statement_log_bytes(&mut self, bytes: usize) -> &mut Self {
        self.recorder.lock().set_byte_limit(bytes);
        self
    }

    /// Forgets the statements run so far; the counter starts again at zero.
    pub fn reset_statements(&self) {
        self.recorder.lock().clear();
    }

    /// Runs `f` and panics, listing the statements it ran, unless it ran exactly `expected`
    /// queries (Django's `assertNumQueries`). For tests.
    #[track_caller]
    pub fn assert_statements<T>(&mut self, expected: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        self.check_statements(f, |n| n == expected, &format!("exactly {expected}"))
    }

    /// Runs `f` and panics, listing the statements it ran, if it ran more than `max` queries.
    #[track_caller]
    pub fn assert_at_most_statements<T>(
        &mut self,
        max: usize,
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        self.check_statements(f, |n| n <= max, &format!("at most {max}"))
    }

    #[track_caller]
    fn check_statements<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> T,
        ok: impl Fn(usize) -> bool,
        expected: &str,
    ) -> T {
        let (mark, queries) = {
            let log = self.recorder.lock();
            (log.mark(), log.queries)
        };
        let value = f(self);
        let mut log = self.recorder.lock();
        let ran = log.queries.saturating_sub(queries);
        if !ok(ran) {
            let (dropped, kept) = log.since(mark);
            let list: String = kept
                .filter(|s| !s.transaction_control)
                .enumerate()
                .map(|(i, s)| format!("\n  {}. {s}", i + 1))
                .collect();
            let note = match dropped {
                0 => String::new(),
                n => format!(
                    " (the first {n} of them no longer in the log: see `Session::statement_log_limit` and `Session::statement_log_bytes`)"
                ),
            };
            drop(log);
            panic!("expected {expected} statements, {ran} ran{note}:{list}");
        }
        value
    }

    /// The underlying connection, for plain diesel queries (they are counted too).
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// The object with primary key `key`: from the identity map without SQL if the session's
    /// graph holds it, else one query. `Ok(None)` if no row has that key.
    pub fn get<M: Model>(&mut self, key: M::Key) -> Result<Option<Loaded<M>>> {
        let held = self.graph.identity().get::<M>(&key);
        if let Some(object) = held {
            return Ok(Some(Loaded::new(ObjRef::new(object, Graph::address(&self.graph)))));
        }
        let query = crate::Query::<M, Db<C>>::new().filter_key(key);
        Ok(query.load(self)?.first().map(Loaded::untyped))
    }

    /// Starts a new graph when a load finds the current one held (by a [`Loaded`] handle) and
    /// holding more than `objects` objects (about a million unless set), so that a long session
    /// whose application keeps a handle stays bounded. Later loads then build new objects for
    /// rows the old graph has (no identity across graphs); the old graph lives on as long as its
    /// handles.
    pub fn graph_limit(&mut self, objects: usize) -> &mut Self {
        self.graph_limit = objects;
        self
    }

    /// The graph a load decodes into: the current one, cleared first if nothing outside the
    /// session holds it, or a new one if it is held and past the limit.
    pub(crate) fn graph_for_load(&mut self) -> Arc<Graph> {
        if !Graph::clear_if_unshared(&self.graph) && self.graph.objects() > self.graph_limit {
            self.graph = Graph::new();
        }
        Arc::clone(&self.graph)
    }

    /// Drops the identity map: later loads decode rows again instead of reusing held objects
    /// (the same as [`Session::expire_all`]).
    pub fn clear_identity_map(&mut self) {
        self.expire_all();
    }

    /// Forgets every object the session holds (SQLAlchemy's `expire_all`): the next load reads
    /// their rows into new objects, and [`Session::get`] and many-to-one loads query instead of
    /// answering from the identity map. Objects you hold stay as they were.
    pub fn expire_all(&mut self) {
        self.graph.identity().forget_all();
    }

    /// Forgets the object of model `M` with primary key `key` (see [`Session::expire_all`]).
    pub fn expire<M: Model>(&mut self, key: &M::Key) {
        self.graph.identity().model::<M>().forget(key);
    }

    /// Expires every object when the outermost [`Session::transaction`] commits (SQLAlchemy's
    /// `expire_on_commit`); off by default. Off, objects the session holds stay in the identity
    /// map after a commit, and a load that reads their rows again still replaces the changed
    /// ones; on, a commit also makes `get` and many-to-one loads query again.
    pub fn expire_on_commit(&mut self, enabled: bool) -> &mut Self {
        self.expire_on_commit = enabled;
        self
    }

    /// Reads `object`'s row again, with the relations it had loaded (one level, by `selectin`;
    /// the others as they were: lazy, or `raise`), and returns the new object, which the
    /// identity map holds from now on. The object you passed stays as it was.
    ///
    /// [`Error::Deleted`] if its row no longer exists.
    pub fn refresh<M: Model, S>(&mut self, object: &Loaded<M, S>) -> Result<Loaded<M>> {
        let object: &M = object;
        let mut query = crate::Query::<M, Db<C>>::new().filter_key(object.key().clone());
        for relation in 0..M::RELATIONS.len() {
            let strategy = M::visit_relation(relation, LoadedAs { parent: object });
            let strategy = strategy.unwrap_or(crate::Strategy::Lazy);
            query.options.mirror(relation, strategy);
        }
        match query.populate_existing().load(self)?.into_iter().next() {
            Some(fresh) => Ok(fresh.untyped()),
            None => {
                self.expire::<M>(object.key());
                Err(Error::Deleted { model: M::NAME, key: format!("{:?}", object.key()) })
            }
        }
    }

    /// Runs `f` inside a transaction (a savepoint if one is already open): committed if `f`
    /// returns `Ok`, rolled back otherwise. Loads inside it read one snapshot.
    ///
    /// If `f` panics, the transaction is rolled back before the panic goes on (with any
    /// transaction `f` opened on [`Session::connection`] and left open), so a panic caught
    /// higher up leaves the connection as it found it: the next transaction really commits.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let outermost = matches!(self.transaction_depth(), Ok(None));
        let value = self.run_transaction(f)?;
        if outermost && self.expire_on_commit {
            self.expire_all();
        }
        Ok(value)
    }

    /// [`Session::transaction`], without expiring on commit (for the loader's own).
    fn run_transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let depth = self.transaction_depth().map_err(|e| self.db_error(e))?;
        C::TransactionManager::begin_transaction(self.conn).map_err(|e| self.db_error(e))?;
        let origin = ORIGINS.load(Ordering::Relaxed);
        let mut open = OpenTransaction { session: self, depth, origin, done: false };
        if let (None, Some(snapshot)) = (depth, <Db<C> as OrmBackend>::SNAPSHOT) {
            if let Err(error) = open.session.conn.batch_execute(snapshot) {
                return Err(open.session.db_error(error));
            }
        }
        // On `Err` (and on unwind) dropping `open` rolls back.
        let value = f(open.session)?;
        open.done = true;
        C::TransactionManager::commit_transaction(open.session.conn)
            .map_err(|e| open.session.db_error(e))?;
        Ok(value)
    }

    /// Runs a load of several statements in [`Session::transaction`]; if this opens the outermost
    /// transaction and a statement failed as stale (a schema change since diesel prepared it:
    /// see [`Session::forget_prepared_statements`]), once more.
    pub(crate) fn load_transaction<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let outermost = matches!(self.transaction_depth(), Ok(None));
        match self.run_transaction(&mut f) {
            Err(Error::Database { source, .. })
                if outermost && <Db<C> as OrmBackend>::is_stale_statement(&source) =>
            {
                self.run_transaction(f)
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
    fn transaction_depth(&mut self) -> diesel::QueryResult<Option<NonZeroU32>> {
        C::TransactionManager::transaction_manager_status_mut(self.conn).transaction_depth()
    }

    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// A new load's origin: the objects it reaches are "from one query" for the detector.
    pub(crate) fn next_origin(&mut self) -> Origin {
        ORIGINS.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    pub(crate) fn db_error(&self, source: diesel::result::Error) -> Error {
        Error::from_diesel(source, || {
            self.recorder.lock().last().map(|s| s.sql.clone()).unwrap_or_default()
        })
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

/// The strategy that reloads a relation of `parent` as it is: `selectin` if loaded, `raise` if
/// it raises, lazy otherwise.
struct LoadedAs<'p, P> {
    parent: &'p P,
}

impl<P: Model> crate::model::RelationVisitor<P> for LoadedAs<'_, P> {
    type Output = crate::Strategy;

    fn visit<R: crate::Relation<Parent = P>>(self) -> crate::Strategy {
        let slot = R::slot(self.parent);
        if slot.is_loaded() {
            crate::Strategy::Selectin
        } else if slot.is_raise() {
            crate::Strategy::Raise
        } else {
            crate::Strategy::Lazy
        }
    }
}

/// A transaction [`Session::transaction`] opened: rolled back on drop unless it is done (committed
/// or being committed), so neither an error nor a panic in its body leaves it open.
struct OpenTransaction<'s, 'c, C: SessionConnection> {
    session: &'s mut Session<'c, C>,
    /// The depth before it was opened: rolling back returns to it.
    depth: Option<NonZeroU32>,
    /// The last load before it: the objects of later loads may show its writes.
    origin: Origin,
    done: bool,
}

impl<C: SessionConnection> Drop for OpenTransaction<'_, '_, C> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Also the levels the body opened on the connection and left open (a panic inside
        // diesel's own `transaction` does not roll back). A failed rollback leaves diesel's
        // transaction manager broken: later statements fail instead of running in a stale
        // transaction. The load's error (or the panic) is what the caller sees, not this one.
        while self.session.transaction_depth().is_ok_and(|open| open > self.depth) {
            if C::TransactionManager::rollback_transaction(self.session.conn).is_err() {
                break;
            }
        }
        // The objects its loads decoded may show its own writes, now undone: the session
        // forgets them (those still held stay as they are), and the entries of objects that
        // died with the unwinding frames go too.
        self.session.graph.identity().forget_since(self.origin);
    }
}

impl<C: SessionConnection> Drop for Session<'_, C> {
    fn drop(&mut self) {
        self.detector.warn_unused();
        self.conn.set_instrumentation(get_default_instrumentation());
    }
}
