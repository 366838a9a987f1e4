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
use std::hash::{BuildHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use diesel::deserialize::{self, QueryableByName};
use diesel::row::{NamedRow, Row};

use super::context::SessionConnection;
use crate::backend::OrmBackend;
use crate::error::Error;
use crate::graph::{AnyRef, Graph, Links, ObjRef, SlotRef};
use crate::identity::Origin;
use crate::identity::{Held, IdentityMap, Refresh, Root, Statement};
use crate::key::KeyValue;
use crate::model::{Model, Relation, RelationInfo, RelationVisitor};
use crate::plan::PlanNode;
use crate::rel::Bound;
use crate::sql::ThroughLink;

use super::walk::Walk;

thread_local! {
    static DECODER: Cell<Option<Box<dyn Any>>> = const { Cell::new(None) };
}

/// The decoding state of one statement whose root model is `M`. A many-to-many `selectin`
/// statement's rows start with a link column, the key `K` of the parent each row belongs to;
/// other statements read no link (`None`), and name their own key type as `K`, so that both
/// kinds of statement share one decoder per model (compile time).
pub(crate) struct Decoder<M: Model, K> {
    plan: Arc<PlanNode>,
    /// The association table whose key the rows start with (a many-to-many selectin).
    link: Option<ThroughLink>,
    /// The graph's, while installed (see [`with_decoder`]).
    identity: IdentityMap,
    /// The graph the objects are decoded into.
    graph: NonNull<Graph>,
    /// Joined collections being gathered, by plan node id (grown on the first one).
    pending: Vec<Option<Box<dyn PendingFill>>>,
    pub(crate) roots: Vec<(Option<K>, ObjRef<M>)>,
    /// Roots already returned, when joins can repeat them.
    seen: Option<FxHashSet<(Option<K>, M::Key)>>,
    pub(crate) error: Option<Error>,
    /// The load the objects reached belong to (for the N+1 detector).
    origin: Origin,
    /// Whether this is the statement of the user's query, whose options also apply to the root
    /// objects the session already held.
    query_root: bool,
    /// What a row that reaches an object held from an earlier load does.
    refresh: Refresh,
    /// This statement's number, when no root may come twice (no join repeats a root row).
    root: Root,
    /// When only the plan's own joins repeat rows: each row's keys, node by node, hashed.
    /// Joins over unique keys never give two rows the same keys; a table with two rows for one
    /// key does.
    row_keys: Option<RowKeys>,
    /// Relations of objects this statement did not create, to fill once it succeeded: a failed
    /// statement leaves the objects the session held as they were.
    fills: Vec<Box<dyn FnOnce()>>,
    /// Rows read.
    pub(crate) rows: usize,
    /// Whether a row reached an object held from an earlier load at a node that joins
    /// relations below it (see `loader::fetch`).
    pub(crate) revisited: bool,
}

impl<M: Model, K: KeyValue> Decoder<M, K> {
    /// A decoder for a statement of `walk`'s load. `repeats`: the query's own joins can repeat a
    /// root row.
    pub(crate) fn new<C: SessionConnection>(
        walk: &Walk<C>,
        plan: Arc<PlanNode>,
        link: Option<ThroughLink>,
        repeats: bool,
        query_root: bool,
        statement: Statement,
    ) -> Self {
        let (graph, origin, refresh) = (Graph::address(&walk.graph), walk.origin, walk.refresh);
        let seen = (repeats || plan.multiplies_rows()).then(FxHashSet::default);
        // Linked rows: one root row per link, and a key may repeat.
        let root = (seen.is_none() && link.is_none()).then_some(statement);
        let row_keys = (!repeats && plan.multiplies_rows()).then(RowKeys::default);
        Decoder {
            plan,
            link,
            identity: IdentityMap::default(),
            graph,
            pending: Vec::new(),
            roots: Vec::new(),
            seen,
            error: None,
            origin,
            query_root,
            refresh,
            root,
            row_keys,
            fills: Vec::new(),
            rows: 0,
            revisited: false,
        }
    }

    fn row<'a, DB: OrmBackend, R: Row<'a, DB>>(&mut self, row: &R) -> deserialize::Result<()> {
        self.rows += 1;
        let link = match self.link {
            None => None,
            Some(link) => Some(
                DB::key_at::<K, R>(row, 0)
                    .and_then(|key| key.ok_or_else(|| "NULL in the association's key".into()))
                    .map_err(|e| crate::backend::failure(link.table.name, link.parent_column, e))?,
            ),
        };
        let mut keys = self.row_keys.as_ref().map(|seen| {
            let mut keys = seen.hasher();
            link.hash(&mut keys);
            keys
        });
        let mut state = State {
            identity: &mut self.identity,
            graph: self.graph,
            revisited: &mut self.revisited,
            pending: &mut self.pending,
            error: &mut self.error,
            fills: &mut self.fills,
            keys: keys.as_mut(),
            origin: self.origin,
            query_root: self.query_root,
            refresh: self.refresh,
        };
        let Some(object) = decode_node::<DB, R, M>(row, &self.plan, self.root, &mut state)? else {
            let column = M::COLUMNS[M::KEY_COLUMN];
            return Err(crate::backend::failure(M::NAME, column, "NULL in the primary key".into()));
        };
        if let (Some(seen), Some(keys)) = (&mut self.row_keys, keys) {
            if !seen.insert(keys) {
                let key = format!("{:?}", object.key());
                self.error = Some(Error::DuplicateKey { model: M::NAME, key });
                return Err("duplicate primary key".into());
            }
        }
        if let Some(seen) = &mut self.seen {
            if !seen.insert((link.clone(), object.key().clone())) {
                return Ok(());
            }
        }
        self.roots.push((link, object));
        Ok(())
    }

    /// Fills the joined collections gathered over all rows, and the relations of objects held
    /// from before.
    pub(crate) fn finish(&mut self) {
        for fill in self.fills.drain(..) {
            fill();
        }
        for pending in self.pending.iter_mut().filter_map(Option::take) {
            pending.finish();
        }
    }
}

/// Runs `load` with `decoder` installed for [`RowSink`], the graph's identity map moved into
/// it, and gives the decoder back with the identity map returned to `identity`.
///
/// On every exit, a panic in user code mid-decode included, the thread's previous decoder is put
/// back and the identity map returned: the graph drops the objects this statement decoded
/// (since its `set_mark`) and forgets the entries of this load's (as `loader::fetch` does after
/// an error), and the next load on the thread works.
pub(crate) fn with_decoder<M: Model, K: KeyValue, T>(
    identity: &mut IdentityMap,
    mut decoder: Decoder<M, K>,
    load: impl FnOnce() -> T,
) -> (Decoder<M, K>, T) {
    decoder.identity = std::mem::take(identity);
    let origin = decoder.origin;
    let previous = DECODER.replace(Some(Box::new(decoder)));
    let mut installed =
        Installed::<M, K> { identity, origin, previous: Some(previous), _decoder: PhantomData };
    let result = load();
    let decoder = installed.uninstall();
    (decoder.expect("the decoder `with_decoder` installed is in place after the load"), result)
}

/// The decoder [`with_decoder`] installed, uninstalled on drop (on unwind) if not before.
struct Installed<'i, M: Model, K: KeyValue> {
    identity: &'i mut IdentityMap,
    /// The load decoding.
    origin: Origin,
    /// The thread's decoder before (`None` once uninstalled).
    previous: Option<Option<Box<dyn Any>>>,
    _decoder: PhantomData<fn() -> (M, K)>,
}

impl<M: Model, K: KeyValue> Installed<'_, M, K> {
    /// Puts the previous decoder back, returns the identity map, and gives this one back.
    fn uninstall(&mut self) -> Option<Decoder<M, K>> {
        let previous = self.previous.take()?;
        // `try_with`: never a panic, even while the thread's locals are being destroyed.
        let current = DECODER.try_with(|cell| cell.replace(previous)).ok().flatten();
        let mut decoder = current.and_then(|d| d.downcast::<Decoder<M, K>>().ok())?;
        *self.identity = std::mem::take(&mut decoder.identity);
        Some(*decoder)
    }
}

impl<M: Model, K: KeyValue> Drop for Installed<'_, M, K> {
    fn drop(&mut self) {
        if let Some(decoder) = self.uninstall() {
            // Unwinding: the statement's objects go, and the entries of the load's.
            drop(decoder);
            self.identity.forget_since(self.origin.wrapping_sub(1));
            self.identity.truncate_to_mark();
        }
    }
}

/// What the statement's rows are loaded as: nothing, the graph is built in the decoder.
pub(crate) struct RowSink<M, K>(PhantomData<fn() -> (M, K)>);

impl<DB: OrmBackend, M: Model, K: KeyValue> QueryableByName<DB> for RowSink<M, K> {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        // Out of the thread-local while the row decodes (a load inside user code finds the slot
        // empty), and back on every exit.
        let mut current = Current(DECODER.take());
        let decoder = current
            .0
            .as_mut()
            .and_then(|d| d.downcast_mut::<Decoder<M, K>>())
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

/// The keys of the rows a statement read, as 128-bit hashes (two folded-multiply lanes from
/// random seeds): a false "duplicate" is as likely as a 128-bit collision.
struct RowKeys {
    seeds: (u64, u64),
    seen: std::collections::HashSet<u128, std::hash::BuildHasherDefault<Prehashed>>,
}

/// The set's hasher: the values are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for RowKeys {
    fn default() -> Self {
        let random = std::hash::RandomState::new();
        let seeds = (random.hash_one(0u8), random.hash_one(1u8));
        RowKeys { seeds, seen: Default::default() }
    }
}

impl RowKeys {
    fn hasher(&self) -> RowHasher {
        RowHasher { lanes: self.seeds }
    }

    /// Whether no earlier row had these keys.
    fn insert(&mut self, row: RowHasher) -> bool {
        let (a, b) = row.lanes;
        self.seen.insert((u128::from(a) << 64) | u128::from(b))
    }
}

/// Hashes one row's keys (see [`RowKeys`]).
struct RowHasher {
    lanes: (u64, u64),
}

/// The high and low halves of a full product, folded: the mixing step of wyhash and foldhash.
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for RowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        self.write_usize(bytes.len());
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        const K: (u64, u64) = (0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7345);
        let (a, b) = self.lanes;
        self.lanes = (folded_multiply(a ^ i, K.0), folded_multiply(b ^ i.rotate_left(32), K.1));
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }

    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        self.lanes.0 ^ self.lanes.1
    }
}

struct State<'s> {
    identity: &'s mut IdentityMap,
    graph: NonNull<Graph>,
    revisited: &'s mut bool,
    pending: &'s mut Vec<Option<Box<dyn PendingFill>>>,
    error: &'s mut Option<Error>,
    fills: &'s mut Vec<Box<dyn FnOnce()>>,
    /// The row's keys so far (see `Decoder::row_keys`).
    keys: Option<&'s mut RowHasher>,
    origin: Origin,
    query_root: bool,
    refresh: Refresh,
}

/// Decodes the model of `node` and its joined relations; `None` when its key is `NULL`. `root`:
/// the statement's number if this is its root and no root may come twice.
fn decode_node<'a, DB: OrmBackend, R: Row<'a, DB>, T: Model>(
    row: &R,
    node: &PlanNode,
    root: Root,
    state: &mut State<'_>,
) -> deserialize::Result<Option<ObjRef<T>>> {
    let key = DB::key_at::<T::Key, R>(row, node.offset + T::KEY_COLUMN)
        .map_err(|e| crate::backend::failure(T::NAME, T::COLUMNS[T::KEY_COLUMN], e))?;
    if let Some(keys) = state.keys.as_deref_mut() {
        (node.id, &key).hash(keys);
    }
    let Some(key) = key else {
        return Ok(None);
    };
    // An object the session holds keeps its state: only its unloaded relations that this
    // statement joins are filled below, as SQLAlchemy does for existing instances.
    let (object, held) = state.identity.model::<T>().get_or_decode(
        key,
        state.origin,
        root,
        state.refresh,
        |key| DB::decode::<T, R>(row, node.offset, key),
    )?;
    let object = ObjRef::new(object, state.graph);
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
                T::visit_relation(relation, SetRaise { parent: &*object, raise });
            }
        }
    }
    for child in &node.joined {
        // A parent this statement did not create keeps its relations until it succeeds.
        let defer = !new;
        let visitor =
            JoinRow { row, node: &child.node, parent: &object, defer, state, _db: PhantomData };
        T::visit_relation(child.relation, visitor).unwrap_or(Ok(()))?;
    }
    Ok(Some(object))
}

struct JoinRow<'r, 's, 't, R, P, DB> {
    row: &'r R,
    node: &'r PlanNode,
    parent: &'r ObjRef<P>,
    /// Fill the parent's slot once the statement succeeded (see `Decoder::fills`).
    defer: bool,
    state: &'s mut State<'t>,
    _db: PhantomData<DB>,
}

impl<'a, P: Model, DB: OrmBackend, R: Row<'a, DB>> RelationVisitor<P>
    for JoinRow<'_, '_, '_, R, P, DB>
{
    type Output = deserialize::Result<()>;

    fn visit<Rl: Relation<Parent = P>>(self) -> deserialize::Result<()> {
        let parent = crate::rel::bind::<Rl>(self.parent);
        let names = (P::NAME, Rl::info());
        let (row, node, defer) = (self.row, self.node, self.defer);
        join_row::<DB, R, Rl::Target, Rl::JoinKey>(row, node, parent, names, defer, self.state)
    }
}

/// Decodes the target of a joined relation from `row` and fills `parent`'s slot (or gathers
/// the row for it, for a collection). Compiled once per target model, not once per relation.
fn join_row<'a, DB: OrmBackend, R: Row<'a, DB>, T: Model, K: KeyValue>(
    row: &R,
    node: &PlanNode,
    parent: Bound<'_, K>,
    (model, info): (&'static str, &'static RelationInfo),
    defer: bool,
    state: &mut State<'_>,
) -> deserialize::Result<()> {
    let target = decode_node::<DB, R, T>(row, node, None, state)?;
    if parent.slot.is_loaded() {
        return Ok(());
    }
    let slot = SlotRef::new(parent.slot);
    if info.kind.is_collection() {
        let pending = pending_at(state.pending, node.id);
        let ordered = node.shape.ordered();
        let pending = pending.get_or_insert_with(|| Box::new(Collect::<T>::new(ordered)));
        let collect = pending
            .as_any_mut()
            .downcast_mut::<Collect<T>>()
            .expect("a plan node gathers one relation");
        let (_, rows) = collect.0.entry(slot.address()).or_insert_with(|| (slot, Vec::new()));
        rows.extend(target);
        return Ok(());
    }
    if target.is_none() && parent.slot.required() {
        *state.error = Some(dangling(model, info, parent.key));
        return Err("dangling foreign key".into());
    }
    if defer {
        state.fills.push(Box::new(move || {
            slot.fill_link(target.map(AnyRef::of));
        }));
    } else {
        parent.slot.fill_link(target.map(AnyRef::of));
    }
    Ok(())
}

/// The error for a required relation whose key matched no row.
pub(crate) fn dangling<K: std::fmt::Debug>(
    parent: &'static str,
    info: &RelationInfo,
    key: Option<&K>,
) -> Error {
    Error::Dangling {
        model: parent,
        relation: info.name,
        target: info.target,
        key: match key {
            Some(key) => format!("{key:?}"),
            None => "NULL".to_owned(),
        },
    }
}

struct SetRaise<'p, P> {
    parent: &'p P,
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

/// The gathering of plan node `id` (compiled once, not once per model).
fn pending_at(
    pending: &mut Vec<Option<Box<dyn PendingFill>>>,
    id: usize,
) -> &mut Option<Box<dyn PendingFill>> {
    if pending.len() <= id {
        pending.resize_with(id + 1, || None);
    }
    &mut pending[id]
}

/// The rows of one joined collection, per parent slot (keyed by the slot's address), and
/// whether the statement orders them (the relation has an order of its own).
struct Collect<T: 'static>(FxHashMap<usize, (SlotRef, Vec<ObjRef<T>>)>, bool);

impl<T: 'static> Collect<T> {
    fn new(ordered: bool) -> Self {
        Collect(FxHashMap::default(), ordered)
    }
}

impl<T: Model> PendingFill for Collect<T> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn finish(self: Box<Self>) {
        let ordered = self.1;
        for (_, (slot, mut rows)) in self.0 {
            if ordered {
                first_of_each(&mut rows);
            } else {
                key_order(&mut rows);
            }
            slot.fill_links(Links::of(rows));
        }
    }
}

/// Keeps the first of the rows that are one object, in the order they came (a collection whose
/// statement orders it: joined rows repeat a target once per row of a crossed collection).
pub(crate) fn first_of_each<T>(rows: &mut Vec<ObjRef<T>>) {
    // Short lists (most collections) need no set.
    if rows.len() <= 16 {
        let mut kept = 0;
        for i in 0..rows.len() {
            let address = rows[i].address();
            if !rows[..kept].iter().any(|r| r.address() == address) {
                rows.swap(kept, i);
                kept += 1;
            }
        }
        rows.truncate(kept);
        return;
    }
    let mut seen = FxHashSet::with_capacity_and_hasher(rows.len(), Default::default());
    rows.retain(|row| seen.insert(row.address()));
}

/// Sorts `rows` by key (stably: of two objects of one row, the first stays) and keeps each key
/// once. Rows usually come in key order already, checked first; otherwise the sort runs over
/// the keys alone, so that its code (a lot of it) is compiled once per key type, not per model.
pub(crate) fn key_order<T: Model>(rows: &mut Vec<ObjRef<T>>) {
    if rows.windows(2).all(|pair| pair[0].key() < pair[1].key()) {
        return;
    }
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows.iter() {
        keys.push(row.key());
    }
    let order = key_positions(&keys);
    let mut ordered = Vec::with_capacity(order.len());
    for position in order {
        ordered.push(rows[position]);
    }
    *rows = ordered;
}

/// The positions of `keys` in key order, the first of equal keys only.
fn key_positions<K: Ord>(keys: &[&K]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|&a, &b| keys[a].cmp(keys[b]).then(a.cmp(&b)));
    order.dedup_by(|a, b| keys[*a] == keys[*b]);
    order
}
