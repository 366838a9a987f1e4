//! `selectin`: one `WHERE key IN (...)` statement per relation (per chunk of keys) for all the
//! parents at once. Lazy loads use the same path with a single parent.

use std::any::TypeId;
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::marker::PhantomData;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::context::{Context, Db, SessionConnection};
use crate::backend::OrmBackend;
use crate::detect::Detector;
use crate::error::Result;
use crate::graph::{assume_all, assume_slice, erase_all, AnyRef, Graph, Links, ObjRef};
use crate::identity::{IdentityMap, Origin, Refresh};
use crate::key::KeyValue;
use crate::model::{Link, Model, Relation, RelationInfo, RelationKind, RelationVisitor};
use crate::options::OptionTree;
use crate::plan::{Deferred, Path, PlanBuilder, PlanNode, RowShape};
use crate::sql::{
    Dynamic, KeyIn, KeyTable, LazyLoad, SelectGraph, StatementId, ThroughLink, LINK_ALIAS,
};
use crate::stats::{Cause, Render};

use super::decode::{dangling, first_of_each, key_order};
use super::walk::Walk;
use super::{fetch_with, load_rows, Run, Statement};
use crate::rel::{Bound, Slot};

/// Runs a deferred `selectin` load of one relation for `parents`.
pub(crate) struct Selectin<'a, 'c, P, C: SessionConnection> {
    pub(crate) cx: &'a mut Context<'c, C>,
    pub(crate) parents: &'a [ObjRef<P>],
    pub(crate) deferred: &'a Deferred,
    /// The load the parents came from; the targets belong to it too.
    pub(crate) walk: &'a mut Walk<C>,
}

impl<P: Model, C: SessionConnection> RelationVisitor<P> for Selectin<'_, '_, P, C> {
    type Output = Result<()>;

    fn visit<R: Relation<Parent = P>>(self) -> Result<()> {
        let relation = Targeting::of::<R>();
        let deferred = self.deferred;
        let plan = plan_for::<R::Target>(
            relation.info,
            &deferred.options,
            &deferred.path,
            deferred.shape.clone(),
        )?;
        let cause = Cause::Selectin(P::NAME, relation.info.name);
        let options = self.walk.options_id(&self.deferred.options);
        let load = Load { plan, cause, options };
        let parents = crate::rel::bind_all::<R>(self.parents);
        load_relation(self.cx, &parents, &relation, load, self.walk)
    }
}

/// The plan of the statement that loads the targets `T` of relation `info`, its rows shaped by
/// `shape`.
pub(crate) fn plan_for<T: Model>(
    info: &RelationInfo,
    options: &OptionTree,
    path: &Path,
    shape: RowShape,
) -> Result<Arc<PlanNode>> {
    let first_column = usize::from(matches!(info.link, Link::Through { .. }));
    let mut path = path.clone();
    let mut plan = PlanBuilder::new(first_column, &[]).root::<T>(options, &mut path)?;
    plan.shape = shape;
    Ok(Arc::new(plan))
}

/// How [`load_relation`] loads.
pub(crate) struct Load {
    /// The plan of the targets' statement.
    pub(crate) plan: Arc<PlanNode>,
    pub(crate) cause: Cause,
    /// The walk's number of the options below the relation (see [`Walk::options_id`]).
    pub(crate) options: usize,
}

/// Loads `relation` for every parent whose slot is not loaded yet, with `load.plan` for the
/// targets; what the plan loads below them is queued on `walk`. Compiled once per key type and
/// connection: the relation and its target model come as values ([`Targeting`], [`Bound`]), the
/// targets as erased links (of `relation`'s target model, whatever their source here: its
/// statements' rows, its slots, the identity map's objects of that model).
pub(crate) fn load_relation<K: KeyValue, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    parents: &[Bound<'_, K>],
    relation: &Targeting<'_, K, C>,
    load: Load,
    walk: &mut Walk<C>,
) -> Result<()> {
    let Load { plan, cause, options } = load;
    let target = relation.target;
    let model = target.model();
    // Borrowed when none is loaded yet (always, for a lazy load): no copy per statement.
    let mut pending: Cow<'_, [Bound<'_, K>]> = match parents.iter().any(|p| p.slot.is_loaded()) {
        true => parents.iter().filter(|p| !p.slot.is_loaded()).copied().collect(),
        false => Cow::Borrowed(parents),
    };
    // Loaded before (by an earlier load, or another path of this one: a self-managed person is
    // their own report): their related objects still get what the plan loads below them.
    let nested = plan.has_deferred() || !plan.joined.is_empty();
    // Walked into once per load: a cycle of `selectin` relations stops.
    let mut existing = Vec::new();
    if nested {
        let mut walked = Vec::new();
        for parent in parents {
            if parent.slot.is_loaded() && walk.first_walk(options, parent.slot) {
                walked.push(*parent);
            }
        }
        existing = crate::rel::related_slots(&walked);
    }
    // A many-to-one whose target the graph holds is filled from the identity map, as
    // SQLAlchemy's selectin does: only the missing keys are queried. (Not looked for when the
    // graph holds no target at all: a probe per parent for nothing. Nor under
    // `populate_existing`, which reads every row again.)
    let graph = Arc::clone(&walk.graph);
    let mut identity =
        match relation.info.kind == RelationKind::BelongsTo && walk.refresh == Refresh::Changed {
            true => Some(graph.identity()).filter(|identity| target.holds(identity)),
            false => None,
        };
    if let Some(identity) = &mut identity {
        let mut seen: FxHashSet<usize> = existing.iter().map(ObjRef::address).collect();
        // Many parents share a target: one identity-map probe per distinct key.
        let mut held: FxHashMap<&K, Option<ObjRef<()>>> = FxHashMap::default();
        // The parents still missing their target (none, when the graph holds them all).
        let mut missing = Vec::new();
        for parent in pending.iter() {
            let Some(key) = parent.key else {
                missing.push(*parent);
                continue;
            };
            let found = *held.entry(key).or_insert_with(|| target.held(key, &graph, identity));
            let Some(found) = found else {
                missing.push(*parent);
                continue;
            };
            if nested && seen.insert(found.address()) {
                existing.push(found);
            }
            // SAFETY: an object of the target model the identity map holds.
            #[allow(unsafe_code)]
            parent.slot.fill_link(Some(unsafe { AnyRef::erased(model, found) }));
        }
        pending = Cow::Owned(missing);
    }
    drop(identity);
    // SAFETY (for each call on `target` below): links to targets of the relation, as above.
    #[allow(unsafe_code)]
    unsafe {
        target.complete_joined(cx, &plan, &existing, walk)?;
    }
    if pending.is_empty() {
        #[allow(unsafe_code)]
        unsafe {
            target.below(walk, &plan, existing);
        }
        return Ok(());
    }
    let keys: Cow<'_, [K]> = match &*pending {
        // A lazy load: one parent, nothing to deduplicate or copy.
        [parent] => match parent.key {
            Some(key) => Cow::Borrowed(std::slice::from_ref(key)),
            None => Cow::Borrowed(&[]),
        },
        // Sorted: the database builds an index over the `IN` list, and inserting the keys in
        // order costs SQLite a third of inserting them in the parents' order.
        _ => sorted_keys(pending.iter().filter_map(|p| p.key)).into(),
    };

    // The distinct targets, for the loads below them and the detector.
    let mut targets = Targets::new(plan.has_deferred() || cx.detector.enabled);
    for object in &existing {
        targets.add(object);
    }
    let collection = relation.info.kind.is_collection();
    // The statement orders the rows by the relation's order: they are kept as they come.
    let ordered = plan.shape.ordered();
    if let ([parent], true) = (&*pending, collection) {
        // One parent (a lazy load): every row is its own, no grouping by key.
        let mut rows = Vec::new();
        fetch_targets(cx, &plan, &keys, cause, walk, relation, &mut |_, found| {
            targets.add(&found);
            rows.push(found);
        })?;
        fill_collection(relation, parent.slot, rows, ordered);
    } else if collection {
        let mut found: FxHashMap<K, Vec<ObjRef<()>>> = FxHashMap::default();
        fetch_targets(cx, &plan, &keys, cause, walk, relation, &mut |key, row| {
            targets.add(&row);
            found.entry(key).or_default().push(row);
        })?;
        // A collection's join key is its parent's own key: each list has one owner, moved in.
        // Unless two objects of one row are among the parents (one held from before the row
        // changed, one read since), which both get the list.
        let keyed = pending.iter().filter(|p| p.key.is_some()).count();
        let shared = keys.len() < keyed;
        for parent in pending.iter() {
            let rows = match parent.key {
                Some(key) if shared => found.get(key).cloned(),
                Some(key) => found.remove(key),
                None => None,
            };
            fill_collection(relation, parent.slot, rows.unwrap_or_default(), ordered);
        }
    } else {
        // One row per parent: no list per key (has_one keeps the row with the smallest key).
        let mut found: FxHashMap<K, ObjRef<()>> =
            FxHashMap::with_capacity_and_hasher(keys.len(), Default::default());
        fetch_targets(cx, &plan, &keys, cause, walk, relation, &mut |key, row| {
            targets.add(&row);
            match found.entry(key) {
                // The first row in the relation's order, or the smallest key.
                // SAFETY: rows of the relation's statements, targets of the relation.
                #[allow(unsafe_code)]
                Entry::Occupied(mut held)
                    if !ordered && unsafe { target.key_less(row, *held.get()) } =>
                {
                    held.insert(row);
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
        })?;
        for parent in pending.iter() {
            let row = parent.key.and_then(|k| found.get(k)).copied();
            // SAFETY: a row of the relation's statements.
            #[allow(unsafe_code)]
            let row = row.map(|row| unsafe { AnyRef::erased(model, row) });
            if !parent.slot.fill_link(row) {
                return Err(dangling(relation.parent, relation.info, parent.key));
            }
        }
    }
    #[allow(unsafe_code)]
    unsafe {
        target.record_eager(&mut cx.detector, (&walk.graph, walk.origin), &plan, &targets.list);
        target.below(walk, &plan, targets.list);
    }
    Ok(())
}

/// Fills a collection slot with `rows` (targets of `relation`), each row once: in the order
/// they came when the statement `ordered` them, in key order otherwise.
fn fill_collection<K, C: SessionConnection>(
    relation: &Targeting<'_, K, C>,
    slot: &dyn Slot,
    mut rows: Vec<ObjRef<()>>,
    ordered: bool,
) {
    let target = relation.target;
    if ordered {
        first_of_each(&mut rows);
    } else {
        // SAFETY: targets of the relation (see `load_relation`).
        #[allow(unsafe_code)]
        unsafe {
            target.key_order(&mut rows)
        };
    }
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe {
        slot.fill_links(Links::erased(target.model(), rows));
    }
}

/// `keys` sorted and deduplicated. Integer keys are copied out and sorted as values: comparing
/// through references into 100,000 scattered parents misses the cache at every step. Keys that
/// own memory (text) are sorted by reference and only the distinct ones cloned.
pub(crate) fn sorted_keys<'k, K: KeyValue>(keys: impl Iterator<Item = &'k K>) -> Vec<K> {
    if !std::mem::needs_drop::<K>() {
        let mut keys: Vec<K> = keys.cloned().collect();
        keys.sort_unstable();
        keys.dedup();
        return keys;
    }
    let mut keys: Vec<&K> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().cloned().collect()
}

/// The distinct objects a load reached, when something needs them.
struct Targets {
    wanted: bool,
    list: Vec<ObjRef<()>>,
    seen: FxHashSet<usize>,
}

impl Targets {
    fn new(wanted: bool) -> Self {
        Targets { wanted, list: Vec::new(), seen: FxHashSet::default() }
    }

    fn add(&mut self, target: &ObjRef<()>) {
        if self.wanted && self.seen.insert(target.address()) {
            self.list.push(*target);
        }
    }
}

/// What the loader needs of relation `R` beyond its parents' [`Bound`]s, as values: its
/// description, its target model, the target's key, and the functions running its statements.
/// Made once per relation ([`Targeting::of`], or [`Targeting::lazy`] for a lazy load's prepared
/// statement); the code that uses it is compiled once per key type (compile time).
pub(crate) struct Targeting<'t, K, C: SessionConnection> {
    /// The parent model's name.
    pub(crate) parent: &'static str,
    pub(crate) info: &'static RelationInfo,
    target: &'t dyn TargetModel<K, C>,
    /// The join key of a target.
    ///
    /// # Safety
    /// The link is to an object of the target model.
    target_key: unsafe fn(&ObjRef<()>) -> Option<&K>,
    /// Rows linked to parent keys `K` (many-to-many).
    linked: FetchLinked<K, C>,
    /// Rows without a link.
    plain: FetchPlain<C>,
}

/// Runs a statement of a relation's target model and returns its rows with their link column.
type FetchLinked<K, C> =
    fn(&mut Context<'_, C>, Run<'_, Db<C>>, &mut Walk<C>) -> Result<Vec<(Option<K>, ObjRef<()>)>>;

/// Runs a statement of a relation's target model and returns its rows.
type FetchPlain<C> =
    fn(&mut Context<'_, C>, Run<'_, Db<C>>, &mut Walk<C>) -> Result<Vec<ObjRef<()>>>;

impl<K: KeyValue, C: SessionConnection> Targeting<'_, K, C> {
    /// Relation `R`, whose statements are built per execution.
    pub(crate) fn of<R: Relation<JoinKey = K>>() -> Self {
        Targeting {
            parent: <R::Parent as Model>::NAME,
            info: R::info(),
            target: &Target::<R::Target>(PhantomData),
            target_key: target_key::<R>,
            linked: fetch_linked::<R::Target, K, C, Dynamic>,
            plain: fetch_plain::<R::Target, C, Dynamic>,
        }
    }

    /// Relation `R` for its lazy load of one parent with the default plan: one SQL text per
    /// relation, prepared once per connection. Only a lazy load written in the application
    /// instantiates it (diesel's statement code is compiled once per statement identity).
    pub(crate) fn lazy<R: Relation<JoinKey = K>>() -> Self {
        Targeting {
            linked: fetch_linked::<R::Target, K, C, LazyLoad<R>>,
            plain: fetch_plain::<R::Target, C, LazyLoad<R>>,
            ..Targeting::of::<R>()
        }
    }
}

/// `R::target_key` of an erased link.
///
/// # Safety
/// `target` links to an `R::Target`.
#[allow(unsafe_code)]
unsafe fn target_key<R: Relation>(target: &ObjRef<()>) -> Option<&R::JoinKey> {
    // SAFETY: `ObjRef`s of any model have one layout, and this one links to an `R::Target`.
    let target = unsafe { &*(target as *const ObjRef<()>).cast::<ObjRef<R::Target>>() };
    R::target_key(target)
}

/// The rows of a statement of `T`, erased, with their link column.
fn fetch_linked<T: Model, K: KeyValue, C: SessionConnection, Id: StatementId>(
    cx: &mut Context<'_, C>,
    run: Run<'_, Db<C>>,
    walk: &mut Walk<C>,
) -> Result<Vec<(Option<K>, ObjRef<()>)>> {
    let rows = fetch_with::<T, K, C>(cx, run, walk, load_rows::<T, K, C, Id>)?;
    let mut erased = Vec::with_capacity(rows.len());
    for (link, row) in rows {
        erased.push((link, row.erase()));
    }
    Ok(erased)
}

/// The rows of a statement of `T`, erased.
fn fetch_plain<T: Model, C: SessionConnection, Id: StatementId>(
    cx: &mut Context<'_, C>,
    run: Run<'_, Db<C>>,
    walk: &mut Walk<C>,
) -> Result<Vec<ObjRef<()>>> {
    let rows = fetch_with::<T, T::Key, C>(cx, run, walk, load_rows::<T, T::Key, C, Id>)?;
    let mut erased = Vec::with_capacity(rows.len());
    for (_, row) in rows {
        erased.push(row.erase());
    }
    Ok(erased)
}

/// The target model of a relation, for [`load_relation`]: what depends on the model, compiled
/// once per model ([`Target`]). The erased links its `unsafe` methods take must link to objects
/// of that model.
#[allow(unsafe_code)]
trait TargetModel<K, C: SessionConnection> {
    fn model(&self) -> TypeId;
    /// Whether the identity map holds any object of the model.
    fn holds(&self, identity: &IdentityMap) -> bool;
    /// The object of the model with primary key `key` (of a many-to-one), if the graph holds it.
    fn held(&self, key: &K, graph: &Arc<Graph>, identity: &mut IdentityMap) -> Option<ObjRef<()>>;
    /// Whether `a`'s primary key is less than `b`'s.
    unsafe fn key_less(&self, a: ObjRef<()>, b: ObjRef<()>) -> bool;
    /// Sorts `rows` by primary key, each once (see `decode::key_order`).
    unsafe fn key_order(&self, rows: &mut Vec<ObjRef<()>>);
    /// `loader::complete_joined` for `objects`.
    unsafe fn complete_joined(
        &self,
        cx: &mut Context<'_, C>,
        plan: &PlanNode,
        objects: &[ObjRef<()>],
        walk: &mut Walk<C>,
    ) -> Result<()>;
    /// `Walk::below` for `objects`.
    unsafe fn below(&self, walk: &mut Walk<C>, plan: &Arc<PlanNode>, objects: Vec<ObjRef<()>>);
    /// `Detector::record_eager` for `objects`.
    unsafe fn record_eager(
        &self,
        detector: &mut Detector,
        load: (&Arc<Graph>, Origin),
        plan: &PlanNode,
        objects: &[ObjRef<()>],
    );
}

/// Model `T` as a [`TargetModel`].
struct Target<T>(PhantomData<fn() -> T>);

// SAFETY (for every `unsafe` block below): the links are to `T`s, the methods' contract.
#[allow(unsafe_code)]
impl<T: Model, K: KeyValue, C: SessionConnection> TargetModel<K, C> for Target<T> {
    fn model(&self) -> TypeId {
        TypeId::of::<T>()
    }

    fn holds(&self, identity: &IdentityMap) -> bool {
        identity.holds::<T>()
    }

    fn held(&self, key: &K, graph: &Arc<Graph>, identity: &mut IdentityMap) -> Option<ObjRef<()>> {
        held_target::<T, K>(key, graph, identity).map(ObjRef::erase)
    }

    unsafe fn key_less(&self, a: ObjRef<()>, b: ObjRef<()>) -> bool {
        let (a, b) = unsafe { (a.assume::<T>(), b.assume::<T>()) };
        a.key() < b.key()
    }

    unsafe fn key_order(&self, rows: &mut Vec<ObjRef<()>>) {
        let mut typed = unsafe { assume_all::<T>(std::mem::take(rows)) };
        key_order(&mut typed);
        *rows = erase_all(typed);
    }

    unsafe fn complete_joined(
        &self,
        cx: &mut Context<'_, C>,
        plan: &PlanNode,
        objects: &[ObjRef<()>],
        walk: &mut Walk<C>,
    ) -> Result<()> {
        super::complete_joined::<T, C>(cx, plan, unsafe { assume_slice(objects) }, walk)
    }

    unsafe fn below(&self, walk: &mut Walk<C>, plan: &Arc<PlanNode>, objects: Vec<ObjRef<()>>) {
        walk.below::<T>(plan, unsafe { assume_all(objects) });
    }

    unsafe fn record_eager(
        &self,
        detector: &mut Detector,
        load: (&Arc<Graph>, Origin),
        plan: &PlanNode,
        objects: &[ObjRef<()>],
    ) {
        detector.record_eager::<T>(load, plan, unsafe { assume_slice(objects) });
    }
}

/// Runs the statements loading the targets of `keys` (one per chunk of keys), handing each row
/// to `add` with the join key it matched. Compiled once per key type (the relation comes as
/// [`Targeting`]; compile time).
fn fetch_targets<K: KeyValue, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    plan: &Arc<PlanNode>,
    keys: &[K],
    cause: Cause,
    walk: &mut Walk<C>,
    relation: &Targeting<'_, K, C>,
    add: &mut dyn FnMut(K, ObjRef<()>),
) -> Result<()> {
    let target_table = plan.table.name;
    let target_key = plan.columns[plan.key_column];
    for chunk in keys.chunks(<Db<C> as OrmBackend>::MAX_KEYS_PER_STATEMENT) {
        let chunk: Arc<[K]> = chunk.into();
        match relation.info.link {
            Link::Through { table, parent_column, target_column } => {
                let column = (LINK_ALIAS, parent_column);
                let link = ThroughLink { table: table(), parent_column, target_column };
                let render = renderer::<Db<C>, _>(plan, Some(link), column, &chunk);
                let statement = keyed(plan, column, chunk);
                let run = Run {
                    plan: Arc::clone(plan),
                    statement: &statement,
                    link: Some(link),
                    cause,
                    render,
                };
                for (key, target) in (relation.linked)(cx, run, walk)? {
                    if let Some(key) = key {
                        add(key, target);
                    }
                }
            }
            Link::ParentColumn(_) | Link::TargetColumn(_) => {
                let column = match relation.info.link {
                    Link::TargetColumn(column) => (target_table, column),
                    _ => (target_table, target_key),
                };
                let render = renderer::<Db<C>, _>(plan, None, column, &chunk);
                let statement = keyed(plan, column, chunk);
                let run = Run {
                    plan: Arc::clone(plan),
                    statement: &statement,
                    link: None,
                    cause,
                    render,
                };
                for target in (relation.plain)(cx, run, walk)? {
                    // SAFETY: a row of a statement of the relation's target model.
                    #[allow(unsafe_code)]
                    if let Some(key) = unsafe { (relation.target_key)(&target) } {
                        add(key.clone(), target);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Keys up to which a statement's rendering for the log waits until the log is read; one with
/// more is rendered as it runs (cut after 16 KiB), so the log never keeps a key list.
const DEFERRED_KEYS: usize = 16;

/// Renders the statement `fetch_targets` runs, for the statement log, when the log is read;
/// `None` (rendered as it runs) past [`DEFERRED_KEYS`] keys.
fn renderer<DB: OrmBackend, K: KeyValue>(
    plan: &Arc<PlanNode>,
    link: Option<ThroughLink>,
    column: (&'static str, &'static str),
    keys: &Arc<[K]>,
) -> Option<Render> {
    if keys.len() > DEFERRED_KEYS {
        return None;
    }
    let plan = Arc::clone(plan);
    let keys = Arc::clone(keys);
    Some(Box::new(move || {
        let statement = keyed::<DB, K>(&plan, column, Arc::clone(&keys));
        let query = SelectGraph {
            plan: &plan,
            joins: &[],
            link,
            filters: &statement.filters,
            order: &[],
            limit: None,
            offset: None,
            keys: statement.keys.as_ref(),
        };
        DB::debug_sql(&query)
    }))
}

/// The statement selecting the rows of `keys` (in `column`): the key list, or, for a relation
/// whose window is read per parent, the keys as a table driving each key's window.
fn keyed<DB: OrmBackend, K: KeyValue>(
    plan: &PlanNode,
    (table, column): (&'static str, &'static str),
    keys: Arc<[K]>,
) -> Statement<DB> {
    match plan.shape.window {
        Some(window) if window.per_parent => Statement::keyed(Box::new(KeyTable { keys })),
        _ => Statement::filtered(Box::new(KeyIn { table, column, keys })),
    }
}

/// The target `T` of a many-to-one with join key `key`, if the graph holds it.
pub(crate) fn held_target<T: Model, K: KeyValue>(
    key: &K,
    graph: &Arc<Graph>,
    identity: &mut crate::identity::IdentityMap,
) -> Option<ObjRef<T>> {
    // For a many-to-one the join key is the target's primary key.
    let key = (key as &dyn std::any::Any).downcast_ref::<T::Key>()?;
    let object = identity.get::<T>(key)?;
    Some(ObjRef::new(object, Graph::address(graph)))
}

#[cfg(test)]
mod tests {
    use super::sorted_keys;

    #[test]
    fn keys_are_sorted_once_each_by_value_or_by_reference() {
        let ids = [5, 3, 5, 1, 3];
        assert_eq!(sorted_keys(ids.iter()), vec![1, 3, 5]);
        let codes: Vec<String> = ["fr", "de", "fr", "be"].map(String::from).to_vec();
        assert_eq!(sorted_keys(codes.iter()), ["be", "de", "fr"]);
    }
}
