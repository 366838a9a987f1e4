//! Seeing N+1 before production does: strict sessions, and a detector that reports lazy loads
//! repeated over the objects of one query and eager loads nobody read (after Rails'
//! `strict_loading`, Bullet and nplusone).

use rustc_hash::FxHashMap;
use std::any::TypeId;
use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Weak};

use crate::graph::{Graph, ObjRef, SlotRef};
use crate::identity::Origin;
use crate::model::{Model, Relation, RelationVisitor, Strategy};
use crate::plan::PlanNode;
use crate::rel::Bound;

/// How a session treats lazy loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    /// Lazy loads run (the default).
    #[default]
    Lazy,
    /// Every lazy load is [`Error::StrictLazyLoad`](crate::Error::StrictLazyLoad): relations are
    /// read only if a query loaded them.
    Strict,
    /// A lazy load is allowed once per relation and query; lazily loading the same relation of a
    /// second object from the same query is [`Error::NPlusOne`](crate::Error::NPlusOne).
    NPlusOneOnly,
}

/// A finding of the N+1 detector (see [`Session::reports`](crate::Session::reports)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// The same relation was lazily loaded for several objects that came from one query (one
    /// report per relation and call site, over every query of the session).
    NPlusOne {
        /// The model owning the relation.
        model: &'static str,
        /// The relation.
        relation: &'static str,
        /// How many lazy loads (statements) it took.
        count: usize,
        /// Where the relation was read.
        location: &'static Location<'static>,
        /// The query option that loads it in one statement.
        fix: String,
    },
    /// A relation was loaded eagerly and never read (judged on up to 256 of its objects, spread
    /// over each load; one report per relation and strategy, over every load of the session).
    UnusedEagerLoad {
        /// The model owning the relation.
        model: &'static str,
        /// The relation.
        relation: &'static str,
        /// How it was loaded.
        strategy: Strategy,
        /// For how many objects, over every load of it.
        objects: usize,
        /// How many loads loaded it (reports of one relation and strategy are merged).
        loads: usize,
        /// Whether the strategy is the relation's declared default (`lazy = ".."` on its
        /// `#[relation]`) rather than a query option.
        declared: bool,
    },
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::NPlusOne { model, relation, count, location, fix } => write!(
                f,
                "N+1: `{model}.{relation}` was lazily loaded {count} times for objects of one query, at {location}; load it with `{fix}`"
            ),
            Report::UnusedEagerLoad { model, relation, strategy, objects, loads, declared } => {
                let times = match loads {
                    1 => String::new(),
                    n => format!(" by {n} loads"),
                };
                if *declared {
                    let lazy = format!("{strategy:?}").to_lowercase();
                    write!(
                        f,
                        "unused eager load: `{model}.{relation}` is declared `lazy = \"{lazy}\"` (its `#[relation]` on `{model}`) and was loaded{times} for {objects} objects and never read; override it with `lazy({model}::{relation})` where it is not read, or declare it lazy"
                    )
                } else {
                    write!(
                        f,
                        "unused eager load: `{model}.{relation}` was loaded ({strategy:?}){times} for {objects} objects and never read; drop the option"
                    )
                }
            }
        }
    }
}

/// A relation loaded eagerly, and how to tell whether anyone read it.
struct EagerLoad {
    model: &'static str,
    relation: &'static str,
    strategy: Strategy,
    objects: usize,
    /// How many loads it was recorded for.
    loads: usize,
    /// The latest of them.
    origin: Origin,
    /// Whether every load of it took the declared default (no query option named it).
    declared: bool,
    /// Whether the sample of an earlier load was read.
    read_before: bool,
    /// The latest load's sample.
    read: Sample,
}

/// A relation: its parent model and index (plus [`COUNTED`] for its counts).
type RelationId = (TypeId, usize);

/// Added to a relation's index in the ids of its lazy counts, which are counted apart from its
/// lazy loads.
const COUNTED: usize = 1 << 24;

/// The session's N+1 bookkeeping, bounded however long the session: reports are kept per
/// relation and call site (or strategy), and lazy-load counts for the latest loads only.
pub(crate) struct Detector {
    /// Whether reports are collected (lazy loads are counted regardless, for `NPlusOneOnly`).
    pub(crate) enabled: bool,
    /// Lazy loads that ran SQL, per (origin, relation).
    lazy: FxHashMap<(Origin, RelationId), usize>,
    /// The size of `lazy` past which the counts of the oldest loads are forgotten.
    lazy_limit: usize,
    n_plus_one: Vec<Report>,
    /// The index in `n_plus_one` of the report of each (relation, call site).
    n_plus_one_sites: FxHashMap<(RelationId, usize), usize>,
    eager: Vec<EagerLoad>,
    /// The index in `eager` of each (relation, strategy).
    eager_relations: FxHashMap<(RelationId, Strategy), usize>,
}

/// The lazy-load counts kept at least: the loads of a long session are forgotten oldest first.
const LAZY_COUNTS: usize = 4096;

impl Default for Detector {
    fn default() -> Self {
        Detector {
            enabled: cfg!(debug_assertions),
            lazy: FxHashMap::default(),
            lazy_limit: LAZY_COUNTS,
            n_plus_one: Vec::new(),
            n_plus_one_sites: FxHashMap::default(),
            eager: Vec::new(),
            eager_relations: FxHashMap::default(),
        }
    }
}

impl Detector {
    /// Lazy loads of `R` so far for objects from load `origin`.
    pub(crate) fn lazy_count<R: Relation>(&self, origin: Origin) -> usize {
        self.lazy.get(&(origin, (TypeId::of::<R::Parent>(), R::INDEX))).copied().unwrap_or(0)
    }

    /// Lazy counts of `R` (`Loaded::count`) so far for objects from load `origin`.
    pub(crate) fn lazy_count_of<R: Relation>(&self, origin: Origin) -> usize {
        let relation = (TypeId::of::<R::Parent>(), COUNTED + R::INDEX);
        self.lazy.get(&(origin, relation)).copied().unwrap_or(0)
    }

    /// Records a lazy load of `R` that ran SQL, for an object from load `origin`.
    pub(crate) fn record_lazy<R: Relation>(
        &mut self,
        origin: Origin,
        location: &'static Location<'static>,
    ) {
        let (model, relation) = (<R::Parent as Model>::NAME, R::info().name);
        let id = (TypeId::of::<R::Parent>(), R::INDEX);
        let fix = || format!("selectin({model}::{relation})");
        self.record_lazy_statement(origin, (id, model, relation), location, fix);
    }

    /// Records a lazy count of `R` that ran SQL, for an object from load `origin`: counted as
    /// lazy loads are, apart from them.
    pub(crate) fn record_lazy_count<R: Relation>(
        &mut self,
        origin: Origin,
        location: &'static Location<'static>,
    ) {
        let (model, relation) = (<R::Parent as Model>::NAME, R::info().name);
        let id = (TypeId::of::<R::Parent>(), COUNTED + R::INDEX);
        let fix = || format!("count({model}::{relation})");
        self.record_lazy_statement(origin, (id, model, relation), location, fix);
    }

    /// Records a statement a lazy read of `relation` (its id, model and name) ran, and reports
    /// the N+1 pattern from the second of one load; `fix` is the option that avoids it.
    fn record_lazy_statement(
        &mut self,
        origin: Origin,
        (relation, model, name): (RelationId, &'static str, &'static str),
        location: &'static Location<'static>,
        fix: impl FnOnce() -> String,
    ) {
        let count = self.lazy.entry((origin, relation)).or_default();
        *count += 1;
        let count = *count;
        if self.lazy.len() > self.lazy_limit {
            self.forget_oldest_lazy_counts();
        }
        if !self.enabled || count < 2 {
            return;
        }
        // The second lazy load of a query counts the first too.
        let added = if count == 2 { 2 } else { 1 };
        let site = (relation, location as *const Location<'static> as usize);
        match self.n_plus_one_sites.get(&site) {
            Some(&index) => {
                if let Report::NPlusOne { count, .. } = &mut self.n_plus_one[index] {
                    *count += added;
                }
            }
            None => {
                let report =
                    Report::NPlusOne { model, relation: name, count: added, location, fix: fix() };
                tracing::warn!(target: "orm_core::n_plus_one", "{report}");
                self.n_plus_one_sites.insert(site, self.n_plus_one.len());
                self.n_plus_one.push(report);
            }
        }
    }

    /// Forgets the lazy-load counts of the older half of the loads counted (amortised: the
    /// limit doubles past what is left).
    fn forget_oldest_lazy_counts(&mut self) {
        let mut origins: Vec<Origin> = self.lazy.keys().map(|(origin, _)| *origin).collect();
        origins.sort_unstable();
        origins.dedup();
        let cutoff = origins[origins.len() / 2];
        self.lazy.retain(|(origin, _), _| *origin >= cutoff);
        self.lazy_limit = (2 * self.lazy.len()).max(LAZY_COUNTS);
    }

    /// Records the eager loads of `node` (and its joined descendants) over `objects`, which
    /// load `origin` decoded into `graph`.
    pub(crate) fn record_eager<T: Model>(
        &mut self,
        (graph, origin): (&Arc<Graph>, Origin),
        node: &PlanNode,
        objects: &[ObjRef<T>],
    ) {
        if !self.enabled || objects.is_empty() {
            return;
        }
        for child in &node.joined {
            let strategy = if child.external { Strategy::ContainsEager } else { Strategy::Joined };
            let visitor = RecordEager {
                detector: self,
                load: (graph, origin),
                parents: objects,
                node: Some(&child.node),
                how: (strategy, child.declared),
            };
            T::visit_relation(child.relation, visitor);
        }
        for deferred in &node.deferred {
            let visitor = RecordEager {
                detector: self,
                load: (graph, origin),
                parents: objects,
                node: None,
                how: (Strategy::Selectin, deferred.declared),
            };
            T::visit_relation(deferred.relation, visitor);
        }
    }

    /// Every report so far; unused eager loads are judged now.
    pub(crate) fn reports(&self) -> Vec<Report> {
        let unused = self.eager.iter().filter(|e| !e.read_before && !e.read.was_read());
        let unused = unused.map(|e| Report::UnusedEagerLoad {
            model: e.model,
            relation: e.relation,
            strategy: e.strategy,
            objects: e.objects,
            loads: e.loads,
            declared: e.declared,
        });
        self.n_plus_one.iter().cloned().chain(unused).collect()
    }

    /// Warns about the eager loads nobody read (when the session ends).
    pub(crate) fn warn_unused(&self) {
        if !self.enabled {
            return;
        }
        for report in self.reports() {
            if matches!(report, Report::UnusedEagerLoad { .. }) {
                tracing::warn!(target: "orm_core::n_plus_one", "{report}");
            }
        }
    }
}

/// Relation slots of one load, to tell later whether anyone read the relation (`was_read`): a
/// sample of the parents spread over them, since a loop that reads the relation reads it on
/// most of them, and watching all 100,000 would cost the load itself 5 %. The sample does not
/// keep the graph: it is read only if the graph is still alive and has not been cleared since
/// (its references would point to dropped objects). Compiled once; plain data, so that the
/// levels of one load merge into one bounded sample rather than a chain of closures as deep as
/// the data.
struct Sample {
    graph: Weak<Graph>,
    generation: u64,
    slots: Vec<SlotRef>,
}

impl Sample {
    fn of<K>(graph: &Arc<Graph>, parents: &[Bound<'_, K>]) -> Self {
        let stride = (parents.len() / EAGER_SAMPLE).max(1);
        let slots = parents.iter().step_by(stride).map(|p| SlotRef::new(p.slot)).collect();
        Sample { graph: Arc::downgrade(graph), generation: graph.generation(), slots }
    }

    fn was_read(&self) -> bool {
        let Some(graph) = self.graph.upgrade() else { return false };
        graph.generation() == self.generation && self.slots.iter().any(|s| s.was_read())
    }

    /// Adds the slots of another level of the same load (same graph): the levels recorded first
    /// keep up to [`EAGER_SAMPLE`] places and the latest level takes the rest. So the level of
    /// the query's own objects, recorded first for a joined relation and last for the `selectin`
    /// levels below them, is always watched, and the sample stays bounded however deep the data.
    fn merge(&mut self, other: Sample) {
        self.slots.truncate(EAGER_SAMPLE);
        self.slots.extend(other.slots);
    }
}

impl Detector {
    /// Records an eager load of `relation` over `objects` objects, `read` telling later whether
    /// anyone read it: one entry per relation and strategy, with the latest load's sample and
    /// whether an earlier one was read.
    fn eager_load(
        &mut self,
        relation: RelationId,
        (model, name): (&'static str, &'static str),
        (strategy, declared): (Strategy, bool),
        (origin, objects): (Origin, usize),
        read: Sample,
    ) {
        match self.eager_relations.get(&(relation, strategy)) {
            // Another level of the same load (a relation joined at several depths): read if
            // any level of it is read.
            Some(&index) if self.eager[index].origin == origin => {
                let entry = &mut self.eager[index];
                entry.read.merge(read);
                entry.objects += objects;
                entry.declared &= declared;
            }
            Some(&index) => {
                let entry = &mut self.eager[index];
                entry.read_before = entry.read_before || entry.read.was_read();
                entry.read = read;
                entry.objects += objects;
                entry.loads += 1;
                entry.origin = origin;
                entry.declared &= declared;
            }
            None => {
                self.eager_relations.insert((relation, strategy), self.eager.len());
                let relation = name;
                self.eager.push(EagerLoad {
                    model,
                    relation,
                    strategy,
                    objects,
                    loads: 1,
                    origin,
                    declared,
                    read_before: false,
                    read,
                });
            }
        }
    }
}

/// How many objects of an eager load the unused-eager-load check watches.
const EAGER_SAMPLE: usize = 256;

struct RecordEager<'a, 'n, P> {
    detector: &'a mut Detector,
    /// The graph and the load (origin) the parents came from.
    load: (&'a Arc<Graph>, Origin),
    parents: &'a [ObjRef<P>],
    node: Option<&'n PlanNode>,
    /// The strategy, and whether it is the relation's declared default.
    how: (Strategy, bool),
}

impl<P: Model> RelationVisitor<P> for RecordEager<'_, '_, P> {
    type Output = ();

    fn visit<R: Relation<Parent = P>>(self) {
        let parents = crate::rel::bind_all::<R>(self.parents);
        let relation = ((TypeId::of::<P>(), R::INDEX), (P::NAME, R::info().name));
        let (load, how, node) = (self.load, self.how, self.node);
        self.detector.record_relation::<R::Target, _>(load, &parents, relation, how, node);
    }
}

impl Detector {
    /// Records the eager load of one relation over `parents` (compiled once per target model),
    /// and the eager loads joined below it.
    fn record_relation<T: Model, K>(
        &mut self,
        (graph, origin): (&Arc<Graph>, Origin),
        parents: &[Bound<'_, K>],
        (id, names): (RelationId, (&'static str, &'static str)),
        how: (Strategy, bool),
        node: Option<&PlanNode>,
    ) {
        let read = Sample::of(graph, parents);
        self.eager_load(id, names, how, (origin, parents.len()), read);
        // Below a joined relation, only if it has eager loads of its own to record.
        if let Some(node) = node.filter(|n| !n.joined.is_empty() || !n.deferred.is_empty()) {
            let children = crate::rel::related_typed::<T, K>(parents);
            self.record_eager::<T>((graph, origin), node, &children);
        }
    }
}
