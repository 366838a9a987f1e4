//! `Session`: a connection that counts and records its statements, with an identity map.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use diesel::connection::{
    get_default_instrumentation, Connection, InstrumentationEvent, LoadConnection,
    TransactionManager,
};

use crate::backend::OrmBackend;
use crate::error::{Error, Result};
use crate::model::Model;

/// A diesel connection the session can load graphs through (`SqliteConnection`, or a pooled one).
pub trait SessionConnection: Connection<Backend: OrmBackend> + LoadConnection {}

impl<C> SessionConnection for C where C: Connection<Backend: OrmBackend> + LoadConnection {}

/// The backend of a session's connection.
pub(crate) type Db<C> = <C as Connection>::Backend;

/// One statement the session ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text, with placeholders for bound values.
    pub sql: String,
    /// `BEGIN`, `COMMIT`, `ROLLBACK` and savepoint statements: not counted by
    /// [`Session::statements`].
    pub transaction_control: bool,
}

#[derive(Debug, Default)]
struct Log {
    statements: Vec<Statement>,
    queries: usize,
}

/// A unit of work over one connection: counts every statement it runs and keeps an identity map,
/// so each `(model, key)` row is decoded once and shared.
///
/// The statement counter is diesel's instrumentation on the connection: it sees every statement,
/// including the ones you run on [`Session::connection`] yourself. It is attached when the session
/// starts and replaced by diesel's default instrumentation when the session is dropped (pooled
/// connections go back to the pool without it).
///
/// The identity map holds weak references: an object stays shared while you hold it.
pub struct Session<'c, C: SessionConnection> {
    conn: &'c mut C,
    log: Arc<Mutex<Log>>,
    pub(crate) identity: IdentityMap,
}

impl<'c, C: SessionConnection> Session<'c, C> {
    /// Starts a session on `conn`.
    pub fn new(conn: &'c mut C) -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Arc::clone(&log);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                let mut sql = String::new();
                if write!(sql, "{query}").is_err() {
                    sql = "(a statement that could not be rendered)".to_owned();
                }
                let transaction_control = is_transaction_control(&sql);
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.queries += usize::from(!transaction_control);
                log.statements.push(Statement {
                    sql,
                    transaction_control,
                });
            }
        });
        Session {
            conn,
            log,
            identity: IdentityMap::default(),
        }
    }

    /// The number of queries run so far (transaction control statements excluded).
    pub fn statements(&self) -> usize {
        self.log().queries
    }

    /// Every statement run so far, in order, transaction control included.
    pub fn statement_log(&self) -> Vec<Statement> {
        self.log().statements.clone()
    }

    /// The SQL of the queries run so far (transaction control excluded).
    pub fn queries(&self) -> Vec<String> {
        let log = self.log();
        log.statements
            .iter()
            .filter(|s| !s.transaction_control)
            .map(|s| s.sql.clone())
            .collect()
    }

    /// Forgets the statements run so far; the counter starts again at zero.
    pub fn reset_statements(&self) {
        let mut log = self.log();
        log.statements.clear();
        log.queries = 0;
    }

    /// The underlying connection, for plain diesel queries (they are counted too).
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// The object with primary key `key`: from the identity map without SQL if the session holds
    /// it, else one query. `Ok(None)` if no row has that key.
    pub fn get<M: Model>(&mut self, key: M::Key) -> Result<Option<Arc<M>>> {
        if let Some(found) = self.identity.get::<M>(&key) {
            return Ok(Some(found));
        }
        let query = crate::Query::<M, Db<C>>::new().filter_key(key);
        Ok(query.load(self)?.into_iter().next())
    }

    /// Drops the identity map: later loads decode rows again instead of reusing held objects.
    pub fn clear_identity_map(&mut self) {
        self.identity = IdentityMap::default();
    }

    pub(crate) fn conn(&mut self) -> &mut C {
        self.conn
    }

    /// The SQL of the last statement started, for error messages.
    pub(crate) fn last_sql(&self) -> String {
        self.log()
            .statements
            .last()
            .map(|s| s.sql.clone())
            .unwrap_or_default()
    }

    pub(crate) fn db_error(&self, source: diesel::result::Error) -> Error {
        Error::from_diesel(source, || self.last_sql())
    }

    /// Runs `f` inside a transaction (a savepoint if one is already open): committed if `f`
    /// returns `Ok`, rolled back otherwise. Loads inside it read one snapshot.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        C::TransactionManager::begin_transaction(self.conn).map_err(|e| self.db_error(e))?;
        match f(self) {
            Ok(value) => {
                C::TransactionManager::commit_transaction(self.conn)
                    .map_err(|e| self.db_error(e))?;
                Ok(value)
            }
            Err(error) => {
                // The load already failed; a rollback error must not hide its cause.
                let _ = C::TransactionManager::rollback_transaction(self.conn);
                Err(error)
            }
        }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<C: SessionConnection> Drop for Session<'_, C> {
    fn drop(&mut self) {
        self.conn.set_instrumentation(get_default_instrumentation());
    }
}

fn is_transaction_control(sql: &str) -> bool {
    let head = sql.split_whitespace().next().unwrap_or("");
    ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END"]
        .iter()
        .any(|kw| head.eq_ignore_ascii_case(kw))
}

/// One weak entry per `(model, key)` held by the application.
#[derive(Default)]
pub(crate) struct IdentityMap {
    maps: HashMap<TypeId, Box<dyn Any + Send>>,
}

/// The identity map of one model.
pub(crate) struct ModelMap<M: Model> {
    entries: HashMap<M::Key, Weak<M>>,
    // Dead entries are pruned when the map reaches this size.
    prune_at: usize,
}

impl<M: Model> ModelMap<M> {
    pub(crate) fn get(&self, key: &M::Key) -> Option<Arc<M>> {
        self.entries.get(key).and_then(Weak::upgrade)
    }

    pub(crate) fn insert(&mut self, key: M::Key, object: &Arc<M>) {
        if self.entries.len() >= self.prune_at {
            self.entries.retain(|_, weak| weak.strong_count() > 0);
            self.prune_at = (self.entries.len() * 2).max(1024);
        }
        self.entries.insert(key, Arc::downgrade(object));
    }
}

impl IdentityMap {
    pub(crate) fn model<M: Model>(&mut self) -> &mut ModelMap<M> {
        self.maps
            .entry(TypeId::of::<M>())
            .or_insert_with(|| {
                Box::new(ModelMap::<M> {
                    entries: HashMap::new(),
                    prune_at: 1024,
                })
            })
            .downcast_mut::<ModelMap<M>>()
            .expect("identity map entries are keyed by their model's TypeId")
    }

    pub(crate) fn get<M: Model>(&mut self, key: &M::Key) -> Option<Arc<M>> {
        self.model::<M>().get(key)
    }
}
