//! `Session`: a connection that counts and records its statements, with an identity map and the
//! N+1 detector.

use crate::detect::{Report, Strictness};
use crate::error::{Error, Result};
use crate::graph::{Graph, ObjRef};
use crate::loader::context::{self, Context, Db};
use crate::model::Model;
use crate::model::Relation;
use crate::options::{Apply, Selectin};
use crate::rel::Shape;
use crate::state::{Loaded, State, Untyped};
use crate::stats::Statement;

pub use crate::loader::context::SessionConnection;

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
    /// Everything the loader works with; the session is its public face.
    pub(crate) cx: Context<'c, C>,
}

impl<'c, C: SessionConnection> AsMut<Context<'c, C>> for Session<'c, C> {
    fn as_mut(&mut self) -> &mut Context<'c, C> {
        &mut self.cx
    }
}

impl<'c, C: SessionConnection> Session<'c, C> {
    /// Starts a session on `conn`.
    pub fn new(conn: &'c mut C) -> Self {
        Session { cx: Context::new(conn) }
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
        self.cx.strictness = strictness;
        self
    }

    /// Turns the N+1 detector on or off (on by default in debug builds). Lazy loads repeated
    /// over the objects of one query are reported as they happen (a `tracing` warning, target
    /// `orm_core::n_plus_one`) and by [`Session::reports`]; eager loads nobody read are reported
    /// by [`Session::reports`] and warned about when the session ends.
    pub fn detect_n_plus_one(&mut self, enabled: bool) -> &mut Self {
        self.cx.detector.enabled = enabled;
        self
    }

    /// Turns the SQL echo (one `tracing` event per statement) on or off; on by default, and
    /// silent anyway unless a subscriber listens. The statement log is kept either way.
    pub fn echo(&mut self, enabled: bool) -> &mut Self {
        self.cx.recorder.lock().quiet = !enabled;
        self
    }

    /// What the N+1 detector found so far; eager loads are judged unused if nothing read them
    /// yet.
    pub fn reports(&self) -> Vec<Report> {
        self.cx.detector.reports()
    }

    /// The number of queries run so far (transaction control statements excluded).
    pub fn statements(&self) -> usize {
        self.cx.recorder.lock().queries
    }

    /// The statements run so far, in order, transaction control included: the last 10,000 and at
    /// most 512 KiB of them unless [`Session::statement_log_limit`] and
    /// [`Session::statement_log_bytes`] say otherwise.
    pub fn statement_log(&self) -> Vec<Statement> {
        self.cx.recorder.lock().statements().cloned().collect()
    }

    /// The SQL of the queries in the statement log (transaction control excluded).
    pub fn queries(&self) -> Vec<String> {
        let mut log = self.cx.recorder.lock();
        log.statements().filter(|s| !s.transaction_control).map(|s| s.sql.clone()).collect()
    }

    /// Keeps the last `limit` statements in the statement log (10,000 unless set; at least the
    /// latest one), so that a long session does not keep every statement it ever ran.
    /// [`Session::statements`] and the assertions count every statement whatever the limit.
    pub fn statement_log_limit(&mut self, limit: usize) -> &mut Self {
        self.cx.recorder.lock().set_limit(limit);
        self
    }

    /// Keeps at most `bytes` of statements in the statement log (512 KiB unless set; always the
    /// latest statement, whatever its size: each is cut after 16 KiB of text), counting their
    /// SQL, bound values and causes. [`Session::statements`] and the assertions count every
    /// statement whatever the limit.
    pub fn statement_log_bytes(&mut self, bytes: usize) -> &mut Self {
        self.cx.recorder.lock().set_byte_limit(bytes);
        self
    }

    /// Forgets the statements run so far; the counter starts again at zero.
    pub fn reset_statements(&self) {
        self.cx.recorder.lock().clear();
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
            let log = self.cx.recorder.lock();
            (log.mark(), log.queries)
        };
        let value = f(self);
        let mut log = self.cx.recorder.lock();
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
        self.cx.conn
    }

    /// The object with primary key `key`: from the identity map without SQL if the session's
    /// graph holds it, else one query. `Ok(None)` if no row has that key.
    pub fn get<M: Model>(&mut self, key: M::Key) -> Result<Option<Loaded<M>>> {
        let held = self.cx.graph.identity().get::<M>(&key);
        if let Some(object) = held {
            return Ok(Some(Loaded::new(ObjRef::new(object, Graph::address(&self.cx.graph)))));
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
        self.cx.graph_limit = objects;
        self
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
        self.cx.graph.identity().forget_all();
    }

    /// Forgets the object of model `M` with primary key `key` (see [`Session::expire_all`]).
    pub fn expire<M: Model>(&mut self, key: &M::Key) {
        self.cx.graph.identity().model::<M>().forget(key);
    }

    /// Expires every object when the outermost [`Session::transaction`] commits (SQLAlchemy's
    /// `expire_on_commit`); off by default. Off, objects the session holds stay in the identity
    /// map after a commit, and a load that reads their rows again still replaces the changed
    /// ones; on, a commit also makes `get` and many-to-one loads query again.
    pub fn expire_on_commit(&mut self, enabled: bool) -> &mut Self {
        self.cx.expire_on_commit = enabled;
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
        let outermost = matches!(self.cx.transaction_depth(), Ok(None));
        let value = context::transaction(self, f)?;
        if outermost && self.cx.expire_on_commit {
            self.expire_all();
        }
        Ok(value)
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

/// Lazy loads through a handle: here, above the loader, since they run on a session.
impl<M: Model, S> Loaded<M, S> {
    /// Reads relation `rel`, running its lazy load through `session` if it is not loaded yet.
    ///
    /// A loaded relation is returned with no SQL. An unloaded one runs one statement (none for
    /// a many-to-one whose target the graph already holds), or returns
    /// [`Error::NotLoaded`](crate::Error::NotLoaded) if its strategy is `raise`. The objects it
    /// loads join this object's graph.
    #[track_caller]
    pub fn load<R, C>(
        &self,
        rel: R,
        session: &mut Session<'_, C>,
    ) -> crate::Result<<R::Shape as Shape>::Typed<'_, Untyped>>
    where
        R: Relation<Parent = M>,
        C: SessionConnection,
    {
        let _ = rel;
        crate::loader::lazy::load::<R, S, C>(self, &mut session.cx, std::panic::Location::caller())
    }

    /// The number of `rel`'s rows (a collection): the count a [`count`](crate::count) option
    /// loaded, with no SQL, or one `COUNT` statement now through `session`, kept for later
    /// reads. The N+1 detector and the strict modes see a lazy count as they see a lazy load:
    /// counting in a loop is the N+1 pattern, whose fix is `count(..)` on the query.
    #[track_caller]
    pub fn count<R, C>(&self, rel: R, session: &mut Session<'_, C>) -> crate::Result<u64>
    where
        R: Relation<Parent = M>,
        R::Shape: crate::rel::ToMany,
        C: SessionConnection,
    {
        let _ = rel;
        let location = std::panic::Location::caller();
        crate::loader::count::lazy::<R, S, C>(self, &mut session.cx, location)
    }

    /// The number of `rel`'s rows, which the state guarantees counted (a
    /// [`count`](crate::count) option of the query): no SQL, no `Option`.
    pub fn get_count<R, I>(&self, rel: R) -> u64
    where
        R: Relation<Parent = M>,
        R::Shape: crate::rel::ToMany,
        S: crate::state::HasCount<R, I>,
    {
        match self.counted(rel) {
            Some(count) => count,
            // Only the loader builds a `Loaded` whose state counts `R`, after counting it.
            None => unreachable!(
                "{}.{} is counted in the typed state but has no count",
                M::NAME,
                R::info().name
            ),
        }
    }

    /// The number of `rel`'s rows a [`count`](crate::count) option loaded (or an earlier
    /// [`Loaded::count`]), without SQL; `None` if none did.
    pub fn counted<R>(&self, rel: R) -> Option<u64>
    where
        R: Relation<Parent = M>,
        R::Shape: crate::rel::ToMany,
    {
        let _ = rel;
        crate::loader::count::counted::<R, S>(self)
    }

    /// Loads relation `rel` if it is not loaded yet (as [`Loaded::load`]) and returns this
    /// object with `rel` recorded in its type.
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn upgrade<R, C>(
        &self,
        rel: R,
        session: &mut Session<'_, C>,
    ) -> crate::Result<Loaded<M, <Selectin<R> as Apply<S>>::Out>>
    where
        R: Relation<Parent = M>,
        S: State<Model = M>,
        Selectin<R>: Apply<S>,
        C: SessionConnection,
    {
        self.load(rel, session)?;
        Ok(self.retyped())
    }
}
