//! Positional decoding of one statement's rows into the object graph.
//!
//! diesel's `QueryableByName::build` has no context argument, so the decoder of the running
//! statement sits in a thread-local for the duration of `load` (see [`with_decoder`]). While a
//! row is decoded the decoder is out of the thread-local, so user code that runs a load of its
//! own then (a `FromSql`, a `Drop`) installs its decoder in an empty slot. Each
//! row is read left to right along the plan: a node's key column first (`NULL` means no related
//! row), then the identity map (a row already held is not decoded again), then the fields.

use std::any::Any;
use std::cell::Cell;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use diesel::deserialize::{self, QueryableByName};
use diesel::row::{NamedRow, Row};

use crate::backend::{KeyValue, OrmBackend};
use crate::error::Error;
use crate::identity::Origin;
use crate::identity::{Held, IdentityMap, Root, Statement};
use crate::model::{Model, Relation, RelationVisitor};
use crate::plan::PlanNode;
use crate::rel::Shape;
use crate::sql::ThroughLink;

thread_local! {
    static DECODER: Cell<Option<Box<dyn Any>>> = const { Cell::new(None) };
}

/// The first column of a linked (many-to-many selectin) row: the parent key it belongs to.
pub(crate) trait RowLink: Clone + Eq + Hash + 'static {
    /// Whether rows carry a link: then one root row per link, and a key may repeat.
    const LINKED: bool = true;

    /// Reads the link from the row; `()` reads nothing.
    fn read<'a, DB: OrmBackend, R: Row<'a, DB>>(row: &R) -> deserialize::Result<Self>;
}

impl RowLink for () {
    const LINKED: bool = false;

    fn read<'a, DB: OrmBackend, R: Row<'a, DB>>(_: &R) -> deserialize::Result<()> {
        Ok(())
    }
}

/// A link column holding a key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct LinkKey<K>(pub(crate) K);

impl<K: KeyValue> RowLink for LinkKey<K> {
    fn read<'a, DB: OrmBackend, R: Row<'a, DB>>(row: &R) -> deserialize::Result<Self> {
        DB::key_at::<K, R>(row, 0)?
            .map(LinkKey)
            .ok_or_else(|| "NULL in the association's key".into())
    }
}

/// The decoding state of one statement whose root model is `M`.
pub(crate) struct Decoder<M: Model, L> {
    plan: Arc<PlanNode>,
    /// The association table whose key the rows start with (a many-to-many selectin).
    link: Option<ThroughLink>,
    /// The session's, while installed (see [`with_decoder`]).
    identity: IdentityMap,
    /// Joined collections being gathered, by plan node id (grown on the first one).
    pending: Vec<Option<Box<dyn PendingFill>>>,
    pub(crate) roots: Vec<(L, Arc<M>)>,
    /// Roots already returned, when joins can repeat them.
    seen: Option<FxHashSet<(L, M::Key)>>,
    pub(crate) error: Option<Error>,
    /// The load the objects reached belong to (for the N+1 detector).
    origin: Origin,
    /// Whether this is the statement of the user's query, whose options also apply to the root
    /// objects the session already held.
    query_root: bool,
    /// This statement's number, when no root may come twice (no join repeats a root row).
    root: Root,
    /// Rows read.
    pub(crate) rows: usize,
    /// Whether a row reached an object held from an earlier load at a node that joins
    /// relations below it (see `loader::fetch`).
    pub(crate) revisited: bool,
}

impl<M: Model, L: RowLink> Decoder<M, L> {
    /// `repeats`: the query's own joins can repeat a root row.
    pub(crate) fn new(
        plan: Arc<PlanNode>,
        link: Option<ThroughLink>,
        repeats: bool,
        origin: Origin,
        query_root: bool,
        statement: Statement,
    ) -> Self {
        let seen = (repeats || plan.multiplies_rows()).then(FxHashSet::default);
        let root = (seen.is_none() && !L::LINKED).then_some(statement);
        Decoder {
            plan,
            link,
            identity: IdentityMap::default(),
            pending: Vec::new(),
            roots: Vec::new(),
            seen,
            error: None,
            origin,
            query_root,
            root,
            rows: 0,
            revisited: false,
        }
    }

    fn row<'a, DB: OrmBackend, R: Row<'a, DB>>(&mut self, row: &R) -> deserialize::Result<()> {
        self.rows += 1;
        let link = L::read::<DB, R>(row).map_err(|e| match self.link {
            Some(link) => crate::model::failure(link.table.name, link.parent_column, e),
            None => e,
        })?;
        let mut state = State {
            identity: &mut self.identity,
            revisited: &mut self.revisited,
            pending: &mut self.pending,
            error: &mut self.error,
            origin: self.origin,
            query_root: self.query_root,
        };
        let Some(object) = decode_node::<DB, R, M>(row, &self.plan, self.root, &mut state)? else {
            let column = M::COLUMNS[M::KEY_COLUMN];
            return Err(crate::model::failure(M::NAME, column, "NULL in the primary key".into()));
        };
        if let Some(seen) = &mut self.seen {
            if !seen.insert((link.clone(), object.key().clone())) {
                return Ok(());
            }
        }
        self.roots.push((link, object));
        Ok(())
    }

    /// Fills the joined collections gathered over all rows.
    pub(crate) fn finish(&mut self) {
        for pending in self.pending.iter_mut().filter_map(Option::take) {
            pending.finish();
        }
    }
}

/// Runs `load` with `decoder` installed for [`RowSink`], the session's identity map moved into
/// it, and gives the decoder back with the identity map returned to `identity`.
///
/// On every exit, a panic in user code mid-decode included, the thread's previous decoder is put
/// back and the identity map returned: the session keeps its objects, the partial graph is
/// freed, and the next load on the thread works.
pub(crate) fn with_decoder<M: Model, L: RowLink, T>(
    identity: &mut IdentityMap,
    mut decoder: Decoder<M, L>,
    load: impl FnOnce() -> T,
) -> (Decoder<M, L>, T) {
    decoder.identity = std::mem::take(identity);
    let previous = DECODER.replace(Some(Box::new(decoder)));
    let mut installed =
        Installed::<M, L> { identity, previous: Some(previous), _decoder: PhantomData };
    let result = load();
    let decoder = installed.uninstall();
    (decoder.expect("the decoder `with_decoder` installed is in place after the load"), result)
}

/// The decoder [`with_decoder`] installed, uninstalled on drop (on unwind) if not before.
struct Installed<'i, M: Model, L: RowLink> {
    identity: &'i mut IdentityMap,
    /// The thread's decoder before (`None` once uninstalled).
    previous: Option<Option<Box<dyn Any>>>,
    _decoder: PhantomData<fn() -> (M, L)>,
}

impl<M: Model, L: RowLink> Installed<'_, M, L> {
    /// Puts the previous decoder back, returns the identity map, and gives this one back.
    fn uninstall(&mut self) -> Option<Decoder<M, L>> {
        let previous = self.previous.take()?;
        // `try_with`: never a panic, even while the thread's locals are being destroyed.
        let current = DECODER.try_with(|cell| cell.replace(previous)).ok().flatten();
        let mut decoder = current.and_then(|d| d.downcast::<Decoder<M, L>>().ok())?;
        *self.identity = std::mem::take(&mut decoder.identity);
        Some(*decoder)
    }
}

impl<M: Model, L: RowLink> Drop for Installed<'_, M, L> {
    fn drop(&mut self) {
        if let Some(decoder) = self.uninstall() {
            // Unwinding: the partial graph goes now, and the identity entries of its objects.
            drop(decoder);
            self.identity.prune_dead();
        }
    }
}

/// What the statement's rows are loaded as: nothing, the graph is built in the decoder.
pub(crate) struct RowSink<M, L>(PhantomData<fn() -> (M, L)>);

impl<DB: OrmBackend, M: Model, L: RowLink> QueryableByName<DB> for RowSink<M, L> {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        // Out of the thread-local while the row decodes (a load inside user code finds the slot
        // empty), and back on every exit.
        let mut current = Current(DECODER.take());
        let decoder = current
            .0
            .as_mut()
            .and_then(|d| d.downcast_mut::<Decoder<M, L>>())
            .ok_or("orm-core: a graph row was decoded outside of its load")?;
        decoder.row::<DB, _>(row)?;
        Ok(RowSink(PhantomData))
    }
}

/// The decoder [`RowSink::build`] took out of the thread-local, put back on drop.
struct Current(Option<Box<dyn Any>>);

impl Drop for Current {
    fn drop(&mut self) {
        let decoder = self.0.take();
        let _ = DECODER.try_with(|cell| cell.set(decoder));
    }
}

struct State<'s> {
    identity: &'s mut IdentityMap,
    revisited: &'s mut bool,
    pending: &'s mut Vec<Option<Box<dyn PendingFill>>>,
    error: &'s mut Option<Error>,
    origin: Origin,
    query_root: bool,
}

/// Decodes the model of `node` and its joined relations; `None` when its key is `NULL`. `root`:
/// the statement's number if this is its root and no root may come twice.
fn decode_node<'a, DB: OrmBackend, R: Row<'a, DB>, T: Model>(
    row: &R,
    node: &PlanNode,
    root: Root,
    state: &mut State<'_>,
) -> deserialize::Result<Option<Arc<T>>> {
    let key = DB::key_at::<T::Key, R>(row, node.offset + T::KEY_COLUMN)
        .map_err(|e| crate::model::failure(T::NAME, T::COLUMNS[T::KEY_COLUMN], e))?;
    let Some(key) = key else {
        return Ok(None);
    };
    // An object the session holds keeps its state: only its unloaded relations that this
    // statement joins are filled below, as SQLAlchemy does for existing instances.
    let (object, held) =
        state.identity.model::<T>().get_or_decode(key, state.origin, root, |key| {
            DB::decode::<T, R>(row, node.offset, key)
        })?;
    if held == Held::Repeated {
        // Two rows with one primary key (a table whose constraint is missing): merging them
        // would lose one.
        let key = format!("{:?}", object.key());
        *state.error = Some(Error::DuplicateKey { model: T::NAME, key });
        return Err("duplicate primary key".into());
    }
    let new = held == Held::New;
    if held == Held::Earlier && !node.joined.is_empty() {
        *state.revisited = true;
    }
    // A new object takes the strategies this statement leaves unloaded (lazy is its default); a
    // held object keeps its own, except that the user's query decides for its own roots, so the
    // same query gives the same graph whatever other loads reached those objects first.
    let roots_of_query = state.query_root && node.id == 0;
    if new || roots_of_query {
        for &(relation, raise) in &node.unloaded {
            if raise || !new {
                T::visit_relation(relation, SetRaise { parent: &object, raise });
            }
        }
    }
    for child in &node.joined {
        let visitor = JoinRow { row, node: &child.node, parent: &object, state, _db: PhantomData };
        T::visit_relation(child.relation, visitor).unwrap_or(Ok(()))?;
    }
    Ok(Some(object))
}

struct JoinRow<'r, 's, 't, R, P, DB> {
    row: &'r R,
    node: &'r PlanNode,
    parent: &'r Arc<P>,
    state: &'s mut State<'t>,
    _db: PhantomData<DB>,
}

impl<'a, P: Model, DB: OrmBackend, R: Row<'a, DB>> RelationVisitor<P>
    for JoinRow<'_, '_, '_, R, P, DB>
{
    type Output = deserialize::Result<()>;

    fn visit<Rl: Relation<Parent = P>>(self) -> deserialize::Result<()> {
        let target = decode_node::<DB, R, Rl::Target>(self.row, self.node, None, self.state)?;
        let slot = Rl::slot(self.parent);
        if slot.is_loaded() {
            return Ok(());
        }
        if <Rl::Shape as Shape>::COLLECTION {
            let pending = &mut self.state.pending;
            if pending.len() <= self.node.id {
                pending.resize_with(self.node.id + 1, || None);
            }
            let pending = pending[self.node.id]
                .get_or_insert_with(|| Box::new(Collect::<Rl>(FxHashMap::default())));
            let collect = pending
                .as_any_mut()
                .downcast_mut::<Collect<Rl>>()
                .expect("a plan node gathers one relation");
            let (_, rows) = collect
                .0
                .entry(Arc::as_ptr(self.parent) as usize)
                .or_insert_with(|| (Arc::clone(self.parent), Vec::new()));
            rows.extend(target);
            return Ok(());
        }
        match <Rl::Shape as Shape>::from_row(target) {
            Some(value) => slot.fill(value),
            None => {
                *self.state.error = Some(dangling::<Rl>(self.parent));
                return Err("dangling foreign key".into());
            }
        }
        Ok(())
    }
}

/// The error for a required relation whose key matched no row.
pub(crate) fn dangling<Rl: Relation>(parent: &Rl::Parent) -> Error {
    let info = Rl::info();
    Error::Dangling {
        model: <Rl::Parent as Model>::NAME,
        relation: info.name,
        target: info.target,
        key: match Rl::parent_key(parent) {
            Some(key) => format!("{key:?}"),
            None => "NULL".to_owned(),
        },
    }
}

struct SetRaise<'p, P> {
    parent: &'p Arc<P>,
    raise: bool,
}

impl<P: Model> RelationVisitor<P> for SetRaise<'_, P> {
    type Output = ();

    fn visit<Rl: Relation<Parent = P>>(self) {
        Rl::slot(self.parent).set_raise(self.raise);
    }
}

/// A joined collection gathered across rows, filled once the statement is read.
trait PendingFill: Any {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn finish(self: Box<Self>);
}

/// Rows of relation `Rl` per parent (keyed by the parent's address; the `Arc` keeps it alive).
type Gathered<P, T> = FxHashMap<usize, (Arc<P>, Vec<Arc<T>>)>;

struct Collect<Rl: Relation>(Gathered<Rl::Parent, Rl::Target>);

impl<Rl: Relation> PendingFill for Collect<Rl> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn finish(self: Box<Self>) {
        for (_, (parent, rows)) in self.0 {
            fill_collection::<Rl>(&parent, rows);
        }
    }
}

/// Fills a collection slot with `rows` in key order, each row once.
pub(crate) fn fill_collection<Rl: Relation>(parent: &Rl::Parent, mut rows: Vec<Arc<Rl::Target>>) {
    rows.sort_by(|a, b| a.key().cmp(b.key()));
    rows.dedup_by(|a, b| a.key() == b.key());
    if let Some(value) = <Rl::Shape as Shape>::from_rows(rows) {
        Rl::slot(parent).fill(value);
    }
}
