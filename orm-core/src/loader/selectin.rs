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
use crate::model::{Link, Model, Relation, RelationKind, RelationVisitor};
use crate::options::OptionTree;
use crate::plan::{Deferred, Path, PlanBuilder, PlanNode};
use crate::rel::Shape;
use crate::sql::{Dynamic, Fragment, KeyIn, LazyLoad, SelectGraph, ThroughLink, LINK_ALIAS};
use crate::stats::{Cause, Render};

use super::decode::{dangling, fill_collection, LinkKey};
use super::walk::Walk;
use super::{fetch_with, load_rows, LoadRows, Run, Statement};

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
        let plan = plan_for::<R>(&self.deferred.options, &mut self.deferred.path.clone())?;
        let parents: Vec<&P> = self.parents.iter().map(|p| &**p).collect();
        let cause = Cause::Selectin(P::NAME, R::info().name);
        let options = self.walk.options_id(&self.deferred.options);
        let load = Load { plan, cause, options, lazy: false };
        load_relation::<R, C>(self.cx, &parents, load, self.walk)
    }
}

/// The plan of the statement that loads `R`'s targets.
pub(crate) fn plan_for<R: Relation>(
    options: &OptionTree,
    path: &mut Path,
) -> Result<Arc<PlanNode>> {
    let first_column = usize::from(matches!(R::info().link, Link::Through { .. }));
    PlanBuilder::new(first_column, &[]).root::<R::Target>(options, path).map(Arc::new)
}

/// How [`load_relation`] loads.
pub(crate) struct Load {
    /// The plan of the targets' statement.
    pub(crate) plan: Arc<PlanNode>,
    pub(crate) cause: Cause,
    /// The walk's number of the options below the relation (see [`Walk::options_id`]).
    pub(crate) options: usize,
    /// The lazy load of one parent with the relation's default plan, whose statement is
    /// prepared once per connection.
    pub(crate) lazy: bool,
}

/// Loads relation `R` of every parent whose slot is not loaded yet, with `load.plan` for the
/// targets; what the plan loads below them is queued on `walk`.
pub(crate) fn load_relation<R: Relation, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    parents: &[&R::Parent],
    load: Load,
    walk: &mut Walk<C>,
) -> Result<()> {
    let Load { plan, cause, options, lazy } = load;
    let loaded = |p: &&R::Parent| R::slot(p).is_loaded();
    // Borrowed when none is loaded yet (always, for a lazy load): no copy per statement.
    let mut pending: Cow<'_, [&R::Parent]> = match parents.iter().any(loaded) {
        true => parents.iter().copied().filter(|p| !loaded(p)).collect(),
        false => Cow::Borrowed(parents),
    };
    // Loaded before (by an earlier load, or another path of this one: a self-managed person is
    // their own report): their related objects still get what the plan loads below them.
    let nested = plan.has_deferred() || !plan.joined.is_empty();
    // Walked into once per load: a cycle of `selectin` relations stops.
    let mut existing = match nested {
        true => crate::rel::related_of::<R>(
            parents.iter().copied().filter(loaded).filter(|p| walk.first_walk::<R>(options, p)),
        ),
        false => Vec::new(),
    };
    // A many-to-one whose target the graph holds is filled from the identity map, as
    // SQLAlchemy's selectin does: only the missing keys are queried. (Not looked for when the
    // graph holds no target at all: a probe per parent for nothing. Nor under
    // `populate_existing`, which reads every row again.)
    let graph = Arc::clone(&walk.graph);
    let mut identity =
        match R::info().kind == RelationKind::BelongsTo && walk.refresh == Refresh::Changed {
            true => Some(graph.identity()).filter(|identity| identity.holds::<R::Target>()),
            false => None,
        };
    if let Some(identity) = &mut identity {
        let mut seen: FxHashSet<usize> = existing.iter().map(ObjRef::address).collect();
        // Many parents share a target: one identity-map probe per distinct key.
        let mut held: FxHashMap<&R::JoinKey, Option<ObjRef<R::Target>>> = FxHashMap::default();
        // The parents still missing their target (none, when the graph holds them all).
        let missing = pending.iter().copied().filter(|parent| {
            let Some(key) = R::parent_key(parent) else { return true };
            let target = held.entry(key).or_insert_with(|| held_target::<R>(key, &graph, identity));
            let Some(target) = *target else { return true };
            if nested && seen.insert(target.address()) {
                existing.push(target);
            }
            if let Some(value) = <R::Shape as Shape>::from_link(Some(target)) {
                R::slot(parent).fill(value);
            }
            false
        });
        pending = Cow::Owned(missing.collect());
    }
    drop(identity);
    super::complete_joined::<R::Target, C>(cx, &plan, &existing, walk)?;
    if pending.is_empty() {
        walk.below(&plan, existing);
        return Ok(());
    }
    let targeting = Targeting::<R::Target, R::JoinKey, C>::of::<R>();
    let keys: Cow<'_, [R::JoinKey]> = match &*pending {
        // A lazy load: one parent, nothing to deduplicate or copy.
        [parent] => match R::parent_key(parent) {
            Some(key) => Cow::Borrowed(std::slice::from_ref(key)),
            None => Cow::Borrowed(&[]),
        },
        // Sorted: the database builds an index over the `IN` list, and inserting the keys in
        // order costs SQLite a third of inserting them in the parents' order.
        _ => sorted_keys(pending.iter().filter_map(|p| R::parent_key(p))).into(),
    };

    // The distinct targets, for the loads below them and the detector.
    let mut targets = Targets::new(plan.has_deferred() || cx.detector.enabled);
    for object in &existing {
        targets.add(object);
    }
    if let ([parent], true) = (&*pending, <R::Shape as Shape>::COLLECTION) {
        // One parent (a lazy load): every row is its own, no grouping by key.
        let mut rows = Vec::new();
        fetch_targets(cx, &plan, &keys, cause, walk, lazy, &targeting, &mut |_, target| {
            targets.add(&target);
            rows.push(target);
        })?;
        fill_collection::<R>(parent, rows);
    } else if <R::Shape as Shape>::COLLECTION {
        let mut found: FxHashMap<R::JoinKey, Vec<ObjRef<R::Target>>> = FxHashMap::default();
        fetch_targets(cx, &plan, &keys, cause, walk, lazy, &targeting, &mut |key, target| {
            targets.add(&target);
            found.entry(key).or_default().push(target);
        })?;
        // A collection's join key is its parent's own key: each list has one owner, moved in.
        // Unless two objects of one row are among the parents (one held from before the row
        // changed, one read since), which both get the list.
        let keyed = pending.iter().filter(|p| R::parent_key(p).is_some()).count();
        let shared = keys.len() < keyed;
        for &parent in pending.iter() {
            let rows = R::parent_key(parent).and_then(|k| {
                if shared {
                    found.get(k).cloned()
                } else {
                    found.remove(k)
                }
            });
            fill_collection::<R>(parent, rows.unwrap_or_default());
        }
    } else {
        // One row per parent: no list per key (has_one keeps the row with the smallest key).
        let mut found: FxHashMap<R::JoinKey, ObjRef<R::Target>> =
            FxHashMap::with_capacity_and_hasher(keys.len(), Default::default());
        fetch_targets(cx, &plan, &keys, cause, walk, lazy, &targeting, &mut |key, target| {
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
        for &parent in pending.iter() {
            let row = R::parent_key(parent).and_then(|k| found.get(k)).copied();
            match <R::Shape as Shape>::from_link(row) {
                Some(value) => R::slot(parent).fill(value),
                None => return Err(dangling::<R>(parent)),
            }
        }
    }
    cx.detector.record_eager::<R::Target>(&walk.graph, &plan, &targets.list);
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

/// What [`fetch_targets`] needs of relation `R`, as values: the link, the target's key, and the
/// statements of both identities (the relation's prepared lazy load, and any other).
struct Targeting<T, K, C: SessionConnection> {
    link: Link,
    target_key: fn(&T) -> Option<&K>,
    linked: [LoadRows<T, LinkKey<K>, C>; 2],
    plain: [LoadRows<T, (), C>; 2],
}

impl<T: Model, K: KeyValue, C: SessionConnection> Targeting<T, K, C> {
    fn of<R: Relation<Target = T, JoinKey = K>>() -> Self {
        Targeting {
            link: R::info().link,
            target_key: R::target_key,
            linked: [
                load_rows::<T, LinkKey<K>, C, Dynamic>,
                load_rows::<T, LinkKey<K>, C, LazyLoad<R>>,
            ],
            plain: [load_rows::<T, (), C, Dynamic>, load_rows::<T, (), C, LazyLoad<R>>],
        }
    }
}

/// Runs the statements loading the targets of `keys` (one per chunk of keys), handing each row
/// to `add` with the join key it matched. Compiled once per target model and key type, not once
/// per relation (the relation comes as [`Targeting`]; compile time).
#[allow(clippy::too_many_arguments)]
fn fetch_targets<T: Model, K: KeyValue, C: SessionConnection>(
    cx: &mut Context<'_, C>,
    plan: &Arc<PlanNode>,
    keys: &[K],
    cause: Cause,
    walk: &mut Walk<C>,
    lazy: bool,
    relation: &Targeting<T, K, C>,
    add: &mut dyn FnMut(K, ObjRef<T>),
) -> Result<()> {
    let target_table = T::table().name;
    let target_key = T::COLUMNS[T::KEY_COLUMN];
    for chunk in keys.chunks(<Db<C> as OrmBackend>::MAX_KEYS_PER_STATEMENT) {
        let prepared = usize::from(lazy && chunk.len() == 1);
        match relation.link {
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
                let rows = fetch_with(cx, run, walk, relation.linked[prepared])?;
                for (LinkKey(key), target) in rows {
                    add(key, target);
                }
            }
            Link::ParentColumn(_) | Link::TargetColumn(_) => {
                let column = match relation.link {
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
                let rows = fetch_with(cx, run, walk, relation.plain[prepared])?;
                for ((), target) in rows {
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

/// The target of many-to-one `R` with join key `key`, if the graph holds it.
pub(crate) fn held_target<R: Relation>(
    key: &R::JoinKey,
    graph: &Arc<Graph>,
    identity: &mut crate::identity::IdentityMap,
) -> Option<ObjRef<R::Target>> {
    // For a many-to-one the join key is the target's primary key.
    let key = (key as &dyn std::any::Any).downcast_ref::<<R::Target as Model>::Key>()?;
    let object = identity.get::<R::Target>(key)?;
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
