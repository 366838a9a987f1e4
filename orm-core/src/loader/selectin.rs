//! `selectin`: one `WHERE key IN (...)` statement per relation (per chunk of keys) for all the
//! parents at once. Lazy loads use the same path with a single parent.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::context::{Context, Db, SessionConnection};
use crate::backend::OrmBackend;
use crate::error::Result;
use crate::graph::{Graph, ObjRef};
use crate::identity::Refresh;
use crate::key::KeyValue;
use crate::model::{Link, Model, Relation, RelationInfo, RelationKind, RelationVisitor};
use crate::options::OptionTree;
use crate::plan::{Deferred, Path, PlanBuilder, PlanNode};
use crate::sql::{Dynamic, Fragment, KeyIn, LazyLoad, SelectGraph, ThroughLink, LINK_ALIAS};
use crate::stats::{Cause, Render};

use super::decode::{dangling, fill_collection};
use super::walk::Walk;
use super::{fetch_with, load_rows, LoadRows, Run, Statement};
use crate::rel::Bound;

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
        let plan =
            plan_for::<R::Target>(relation.info, &self.deferred.options, &self.deferred.path)?;
        let cause = Cause::Selectin(P::NAME, relation.info.name);
        let options = self.walk.options_id(&self.deferred.options);
        let load = Load { plan, cause, options };
        let parents = crate::rel::bind_all::<R>(self.parents);
        load_relation(self.cx, &parents, &relation, load, self.walk)
    }
}

/// The plan of the statement that loads the targets `T` of relation `info`.
pub(crate) fn plan_for<T: Model>(
    info: &RelationInfo,
    options: &OptionTree,
    path: &Path,
) -> Result<Arc<PlanNode>> {
    let first_column = usize::from(matches!(info.link, Link::Through { .. }));
    let mut path = path.clone();
    PlanBuilder::new(first_column, &[]).root::<T>(options, &mut path).map(Arc::new)
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
/// targets; what the plan loads below them is queued on `walk`. Compiled once per target model
/// and key type: the relation comes as values ([`Targeting`], [`Bound`]).
pub(crate) fn load_relation<T: Model, K: KeyValue, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    parents: &[Bound<'_, T, K>],
    relation: &Targeting<T, K, C>,
    load: Load,
    walk: &mut Walk<C>,
) -> Result<()> {
    let Load { plan, cause, options } = load;
    // Borrowed when none is loaded yet (always, for a lazy load): no copy per statement.
    let mut pending: Cow<'_, [Bound<'_, T, K>]> = match parents.iter().any(|p| p.slot.is_loaded()) {
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
            true => Some(graph.identity()).filter(|identity| identity.holds::<T>()),
            false => None,
        };
    if let Some(identity) = &mut identity {
        let mut seen: FxHashSet<usize> = existing.iter().map(ObjRef::address).collect();
        // Many parents share a target: one identity-map probe per distinct key.
        let mut held: FxHashMap<&K, Option<ObjRef<T>>> = FxHashMap::default();
        // The parents still missing their target (none, when the graph holds them all).
        let mut missing = Vec::new();
        for parent in pending.iter() {
            let Some(key) = parent.key else {
                missing.push(*parent);
                continue;
            };
            let target = *held.entry(key).or_insert_with(|| held_target(key, &graph, identity));
            let Some(target) = target else {
                missing.push(*parent);
                continue;
            };
            if nested && seen.insert(target.address()) {
                existing.push(target);
            }
            parent.slot.fill_link(Some(target));
        }
        pending = Cow::Owned(missing);
    }
    drop(identity);
    super::complete_joined::<T, C>(cx, &plan, &existing, walk)?;
    if pending.is_empty() {
        walk.below(&plan, existing);
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
    if let ([parent], true) = (&*pending, collection) {
        // One parent (a lazy load): every row is its own, no grouping by key.
        let mut rows = Vec::new();
        fetch_targets(cx, &plan, &keys, cause, walk, relation, &mut |_, target| {
            targets.add(&target);
            rows.push(target);
        })?;
        fill_collection(parent.slot, rows);
    } else if collection {
        let mut found: FxHashMap<K, Vec<ObjRef<T>>> = FxHashMap::default();
        fetch_targets(cx, &plan, &keys, cause, walk, relation, &mut |key, target| {
            targets.add(&target);
            found.entry(key).or_default().push(target);
        })?;
        // A collection's join key is its parent's own key: each list has one owner, moved in.
        // Unless two objects of one row are among the parents (one held from before the row
        // changed, one read since), which both get the list.
        let keyed = pending.iter().filter(|p| p.key.is_some()).count();
        let shared = keys.len() < keyed;
        for parent in pending.iter() {
            let rows =
                parent.key.and_then(
                    |k| {
                        if shared {
                            found.get(k).cloned()
                        } else {
                            found.remove(k)
                        }
                    },
                );
            fill_collection(parent.slot, rows.unwrap_or_default());
        }
    } else {
        // One row per parent: no list per key (has_one keeps the row with the smallest key).
        let mut found: FxHashMap<K, ObjRef<T>> =
            FxHashMap::with_capacity_and_hasher(keys.len(), Default::default());
        fetch_targets(cx, &plan, &keys, cause, walk, relation, &mut |key, target| {
            targets.add(&target);
            match found.entry(key) {
                Entry::Occupied(mut held) if target.key() < held.get().key() => {
                    held.insert(target);
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(slot) => {
                    slot.insert(target);
                }
            }
        })?;
        for parent in pending.iter() {
            let row = parent.key.and_then(|k| found.get(k)).copied();
            if !parent.slot.fill_link(row) {
                return Err(dangling(relation.parent, relation.info, parent.key));
            }
        }
    }
    cx.detector.record_eager::<T>(&walk.graph, &plan, &targets.list);
    walk.below(&plan, targets.list);
    Ok(())
}

/// `keys` sorted and deduplicated. Integer keys are copied out and sorted as values: comparing
/// through references into 100,000 scattered parents misses the cache at every step. Keys that
/// own memory (text) are sorted by reference and only the distinct ones cloned.
fn sorted_keys<'k, K: KeyValue>(keys: impl Iterator<Item = &'k K>) -> Vec<K> {
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
struct Targets<T> {
    wanted: bool,
    list: Vec<ObjRef<T>>,
    seen: FxHashSet<usize>,
}

impl<T> Targets<T> {
    fn new(wanted: bool) -> Self {
        Targets { wanted, list: Vec::new(), seen: FxHashSet::default() }
    }

    fn add(&mut self, target: &ObjRef<T>) {
        if self.wanted && self.seen.insert(target.address()) {
            self.list.push(*target);
        }
    }
}

/// What the loader needs of relation `R` beyond its parents' [`Bound`]s, as values: its
/// description, the target's key, and the functions running its statements. Made once per
/// relation ([`Targeting::of`], or [`Targeting::lazy`] for a lazy load's prepared statement);
/// the code that uses it is compiled once per target model and key type (compile time).
pub(crate) struct Targeting<T: Model, K, C: SessionConnection> {
    /// The parent model's name.
    pub(crate) parent: &'static str,
    pub(crate) info: &'static RelationInfo,
    target_key: fn(&T) -> Option<&K>,
    /// Rows linked to parent keys `K` (many-to-many).
    linked: LoadRows<T, K, C>,
    /// Rows without a link: the same function as `linked` when the keys are of one type.
    plain: LoadRows<T, T::Key, C>,
}

impl<T: Model, K: KeyValue, C: SessionConnection> Targeting<T, K, C> {
    /// Relation `R`, whose statements are built per execution.
    pub(crate) fn of<R: Relation<Target = T, JoinKey = K>>() -> Self {
        Targeting {
            parent: <R::Parent as Model>::NAME,
            info: R::info(),
            target_key: R::target_key,
            linked: load_rows::<T, K, C, Dynamic>,
            plain: load_rows::<T, T::Key, C, Dynamic>,
        }
    }

    /// Relation `R` for its lazy load of one parent with the default plan: one SQL text per
    /// relation, prepared once per connection. Only a lazy load written in the application
    /// instantiates it (diesel's statement code is compiled once per statement identity).
    pub(crate) fn lazy<R: Relation<Target = T, JoinKey = K>>() -> Self {
        Targeting {
            linked: load_rows::<T, K, C, LazyLoad<R>>,
            plain: load_rows::<T, T::Key, C, LazyLoad<R>>,
            ..Targeting::of::<R>()
        }
    }
}

/// Runs the statements loading the targets of `keys` (one per chunk of keys), handing each row
/// to `add` with the join key it matched. Compiled once per target model and key type, not once
/// per relation (the relation comes as [`Targeting`]; compile time).
fn fetch_targets<T: Model, K: KeyValue, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    plan: &Arc<PlanNode>,
    keys: &[K],
    cause: Cause,
    walk: &mut Walk<C>,
    relation: &Targeting<T, K, C>,
    add: &mut dyn FnMut(K, ObjRef<T>),
) -> Result<()> {
    let target_table = T::table().name;
    let target_key = T::COLUMNS[T::KEY_COLUMN];
    for chunk in keys.chunks(<Db<C> as OrmBackend>::MAX_KEYS_PER_STATEMENT) {
        match relation.info.link {
            Link::Through { table, parent_column, target_column } => {
                let filter = KeyIn { table: LINK_ALIAS, column: parent_column, keys: chunk.into() };
                let link = ThroughLink { table: table(), parent_column, target_column };
                let render = renderer::<Db<C>, _>(plan, Some(link), &filter, chunk.len());
                let statement = Statement::filtered(Box::new(filter));
                let run = Run {
                    plan: Arc::clone(plan),
                    statement: &statement,
                    link: Some(link),
                    cause,
                    render,
                };
                let rows = fetch_with(cx, run, walk, relation.linked)?;
                for (key, target) in rows {
                    if let Some(key) = key {
                        add(key, target);
                    }
                }
            }
            Link::ParentColumn(_) | Link::TargetColumn(_) => {
                let column = match relation.info.link {
                    Link::TargetColumn(column) => column,
                    _ => target_key,
                };
                let filter = KeyIn { table: target_table, column, keys: chunk.into() };
                let render = renderer::<Db<C>, _>(plan, None, &filter, chunk.len());
                let statement = Statement::filtered(Box::new(filter));
                let run = Run {
                    plan: Arc::clone(plan),
                    statement: &statement,
                    link: None,
                    cause,
                    render,
                };
                let rows = fetch_with(cx, run, walk, relation.plain)?;
                for (_, target) in rows {
                    if let Some(key) = (relation.target_key)(&target) {
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
    filter: &KeyIn<K>,
    keys: usize,
) -> Option<Render> {
    if keys > DEFERRED_KEYS {
        return None;
    }
    let plan = Arc::clone(plan);
    let filter = filter.clone();
    Some(Box::new(move || {
        let filters: [Fragment<DB>; 1] = [Box::new(filter.clone())];
        let query = SelectGraph {
            plan: &plan,
            joins: &[],
            link,
            filters: &filters,
            order: &[],
            limit: None,
            offset: None,
        };
        DB::debug_sql(&query)
    }))
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
