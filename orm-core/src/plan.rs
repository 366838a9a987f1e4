//! The load plan: which relations one statement joins, which load after it, which stay unloaded.
//!
//! Built per query from the relations' declared strategies and the query's options. A node is one
//! model in the statement's row, at a column offset; its joined children sit further right in the
//! same row. Self-references and cycles stop after `join_depth` repetitions along the path.

use std::any::TypeId;

use crate::error::Error;
use crate::join::UserJoin;
use crate::model::{
    Link, Model, OrderTerm, Relation, RelationInfo, RelationKind, RelationVisitor, SqlTable,
    Strategy,
};
use crate::options::OptionTree;
use crate::shaping::{CountEntry, RelFilter, Shaping};

/// A relation's identity along a load path: the parent model and the relation's index.
pub(crate) type PathStep = (TypeId, usize);

/// The relations followed to reach a node, as counts: all that `join_depth` asks is how often a
/// relation repeats along the path, and a path of counts stays as small as the model's
/// relations however deep the data goes (a declared `selectin` self-reference adds a level per
/// level of the data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Path(Vec<(PathStep, usize)>);

impl Path {
    /// How many times `step` was followed.
    fn count(&self, step: PathStep) -> usize {
        self.0.iter().find(|(s, _)| *s == step).map_or(0, |&(_, n)| n)
    }

    /// Follows `step` once more.
    pub(crate) fn push(&mut self, step: PathStep) {
        match self.0.iter_mut().find(|(s, _)| *s == step) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((step, 1)),
        }
    }

    /// Undoes [`Path::push`] of `step`.
    fn pop(&mut self, step: PathStep) {
        if let Some(i) = self.0.iter().position(|(s, _)| *s == step) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.swap_remove(i);
            }
        }
    }
}

/// One model in the statement's row.
#[derive(Debug)]
pub(crate) struct PlanNode {
    /// Index of this node's state in the decoder (0 is the root).
    pub(crate) id: usize,
    /// The SQL name of this node in the statement: the table for the root, an anonymous alias
    /// `t<N>` for an eager join, the join's name for `contains_eager`.
    pub(crate) name: String,
    pub(crate) table: SqlTable,
    pub(crate) columns: &'static [&'static str],
    pub(crate) key_column: usize,
    /// Position of this model's first column in the row.
    pub(crate) offset: usize,
    /// Relations loaded by this statement.
    pub(crate) joined: Vec<JoinedChild>,
    /// Relations loaded by later `selectin` statements.
    pub(crate) deferred: Vec<Deferred>,
    /// Relations left unloaded, and whether they raise.
    pub(crate) unloaded: Vec<(usize, bool)>,
    /// The model of this node.
    pub(crate) model: TypeId,
    /// Relations left to a lazy load with options of their own (`lazy(r).then(..)`): the
    /// options that load applies.
    pub(crate) lazy_options: Vec<(usize, OptionTree)>,
    /// The order and filter of the relation whose rows this node holds (none for a query's
    /// root, whose order and filters are the query's own).
    pub(crate) shape: RowShape,
    /// Relations whose rows are counted for this node's objects, by later statements.
    pub(crate) counts: Vec<CountEntry>,
}

/// The order and filter of a relation's rows in a load, its options over its declaration.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowShape {
    /// The order of the rows, the target's key breaking ties; empty: key order (sorted after the
    /// statement, with no `ORDER BY`).
    pub(crate) order: Vec<OrderTerm>,
    /// Which related rows the relation takes.
    pub(crate) filter: Option<RelFilter>,
    /// Joined inner: parents without a related row are dropped (when every join above is inner).
    pub(crate) inner: bool,
    /// The rows kept per parent, by their number in the order.
    pub(crate) window: Option<Window>,
}

/// The rows of each parent a relation keeps, numbered from 1 in its order: those after `after`,
/// up to `upto` (`.offset(after).limit(upto - after)`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) after: i64,
    pub(crate) upto: Option<i64>,
    /// `upto - after`: the rows kept per parent.
    pub(crate) limit: Option<i64>,
    /// What tells the parents apart among the target's rows.
    pub(crate) partition: Partition,
    /// Read each parent's first rows through a subquery per parent, rather than number the
    /// rows (`.per_parent()`).
    pub(crate) per_parent: bool,
}

/// The column a window numbers the rows of each parent by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Partition {
    /// A column of the target (the foreign key of a has_one or has_many).
    Target(&'static str),
    /// The target's key (a belongs_to: one row per parent anyway).
    Key,
    /// The association table's column holding the parent's key (many-to-many).
    Through(&'static str),
}

impl Window {
    /// The window of `shaping` on relation `info`, if it limits or skips rows.
    fn of(shaping: &Shaping, info: &RelationInfo) -> Option<Window> {
        if shaping.limit.is_none() && shaping.offset.is_none() {
            return None;
        }
        let after = i64::from(shaping.offset.unwrap_or(0));
        let partition = match info.link {
            Link::TargetColumn(column) => Partition::Target(column),
            Link::ParentColumn(_) => Partition::Key,
            Link::Through { parent_column, .. } => Partition::Through(parent_column),
        };
        let limit = shaping.limit.map(i64::from);
        let per_parent = shaping.per_parent;
        Some(Window { after, upto: limit.map(|n| after + n), limit, partition, per_parent })
    }
}

impl RowShape {
    /// Relation `info` as an option's `shaping` leaves it (`None`: as declared).
    pub(crate) fn of(info: &RelationInfo, shaping: Option<&Shaping>) -> Self {
        let order = shaping.and_then(|s| s.order.clone());
        RowShape {
            order: order.unwrap_or_else(|| info.order_by.to_vec()),
            filter: shaping.and_then(|s| s.filter.clone()),
            inner: shaping.and_then(|s| s.inner).unwrap_or(info.innerjoin),
            window: shaping.and_then(|s| Window::of(s, info)),
        }
    }

    /// Whether the rows come in an order of their own rather than by key.
    pub(crate) fn ordered(&self) -> bool {
        !self.order.is_empty()
    }

    /// Whether a join reads the rows from a derived table (filtered or windowed).
    pub(crate) fn derived(&self) -> bool {
        self.filter.is_some() || self.window.is_some()
    }
}

/// A relation joined into the parent's statement.
#[derive(Debug)]
pub(crate) struct JoinedChild {
    pub(crate) relation: usize,
    pub(crate) link: Link,
    /// For many-to-many, the association table's alias.
    pub(crate) through_name: Option<String>,
    /// Whether the join can repeat the parent's row (every kind but belongs_to).
    pub(crate) multiplies: bool,
    /// The query's own join provides the rows (`contains_eager`): nothing to render.
    pub(crate) external: bool,
    /// Whether the strategy is the relation's declared default rather than a query option (for
    /// the detector's reports).
    pub(crate) declared: bool,
    pub(crate) node: PlanNode,
    /// The same relation as a `selectin` load, for objects that come from elsewhere (see
    /// `loader::complete_joined`).
    pub(crate) as_selectin: Deferred,
}

/// A relation loaded by a `selectin` statement after this one.
#[derive(Debug, Clone)]
pub(crate) struct Deferred {
    pub(crate) relation: usize,
    pub(crate) options: OptionTree,
    pub(crate) path: Path,
    /// Whether `selectin` is the relation's declared default rather than a query option.
    pub(crate) declared: bool,
    /// The order and filter of the relation's rows.
    pub(crate) shape: RowShape,
}

impl PlanNode {
    /// Whether this node or a joined descendant multiplies rows (a joined collection).
    pub(crate) fn multiplies_rows(&self) -> bool {
        self.joined.iter().any(|j| j.multiplies || j.node.multiplies_rows())
    }

    /// Calls `f` with the model, relation and options of every relation this statement leaves
    /// to a lazy load with options of its own.
    pub(crate) fn for_each_lazy_option(&self, f: &mut impl FnMut(TypeId, usize, &OptionTree)) {
        for (relation, options) in &self.lazy_options {
            f(self.model, *relation, options);
        }
        for child in &self.joined {
            child.node.for_each_lazy_option(f);
        }
    }

    /// Whether any node of the statement defers a statement: a `selectin` load or a count.
    pub(crate) fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
            || !self.counts.is_empty()
            || self.joined.iter().any(|j| j.node.has_deferred())
    }
}

/// Builds plans; numbers nodes, aliases and columns.
pub(crate) struct PlanBuilder<'j> {
    next_id: usize,
    next_alias: usize,
    next_column: usize,
    /// The query's explicit joins, for `contains_eager` and for alias names to avoid.
    joins: &'j [UserJoin],
    error: Option<Error>,
}

impl<'j> PlanBuilder<'j> {
    /// A builder whose first column is at `first_column` (1 when a link column comes first).
    pub(crate) fn new(first_column: usize, joins: &'j [UserJoin]) -> Self {
        PlanBuilder { next_id: 0, next_alias: 1, next_column: first_column, joins, error: None }
    }

    /// The plan for a statement whose root is `M`.
    pub(crate) fn root<M: Model>(
        mut self,
        options: &OptionTree,
        path: &mut Path,
    ) -> Result<PlanNode, Error> {
        let node = self.node::<M>(M::table().name.to_owned(), Some(None), Some(options), path);
        match self.error {
            Some(error) => Err(error),
            None => Ok(node),
        }
    }

    /// A fresh anonymous alias that no table or alias of the query uses.
    fn alias(&mut self) -> String {
        loop {
            let name = format!("t{}", self.next_alias);
            self.next_alias += 1;
            if !self.joins.iter().any(|j| j.names().contains(&name) || j.parent_name == name) {
                return name;
            }
        }
    }

    /// `source`: the explicit join this node's rows come from (`None` for the root or an
    /// eager join), where `contains_eager` looks for its joins.
    fn node<M: Model>(
        &mut self,
        name: String,
        source: Option<Option<usize>>,
        options: Option<&OptionTree>,
        path: &mut Path,
    ) -> PlanNode {
        let mut node = PlanNode {
            id: self.next_id,
            name,
            table: M::table(),
            columns: M::COLUMNS,
            key_column: M::KEY_COLUMN,
            offset: self.next_column,
            joined: Vec::new(),
            deferred: Vec::new(),
            unloaded: Vec::new(),
            model: TypeId::of::<M>(),
            lazy_options: Vec::new(),
            shape: RowShape::default(),
            counts: options.map(|o| o.counts.clone()).unwrap_or_default(),
        };
        self.next_id += 1;
        self.next_column += M::COLUMNS.len();
        for (index, info) in M::RELATIONS.iter().enumerate() {
            let step = (TypeId::of::<M>(), index);
            let (strategy, child_options, declared) = resolve(info, index, options, path, step);
            // The order and filter of the relation's rows, for the strategies that load them.
            let shape =
                || RowShape::of(info, options.and_then(|o| o.entry(index)).map(|e| &e.shaping));
            match strategy {
                Strategy::Joined | Strategy::ContainsEager => {
                    let external = if strategy == Strategy::ContainsEager {
                        let found = source.and_then(|parent| {
                            self.joins.iter().position(|j| j.parent == parent && j.relation == step)
                        });
                        match found {
                            Some(join) => Some(join),
                            None => {
                                self.error.get_or_insert(Error::ContainsEagerWithoutJoin {
                                    model: M::NAME,
                                    relation: info.name,
                                });
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    path.push(step);
                    let visitor = JoinChild {
                        builder: self,
                        options: child_options,
                        path,
                        external,
                        declared,
                        shape: shape(),
                    };
                    let child = M::visit_relation(index, visitor);
                    path.pop(step);
                    node.joined.extend(child);
                }
                Strategy::Selectin => {
                    let mut child_path = path.clone();
                    child_path.push(step);
                    node.deferred.push(Deferred {
                        relation: index,
                        options: child_options.cloned().unwrap_or_default(),
                        path: child_path,
                        declared,
                        shape: shape(),
                    });
                }
                Strategy::Lazy => {
                    node.unloaded.push((index, false));
                    if let Some(options) = child_options.filter(|o| **o != OptionTree::default()) {
                        node.lazy_options.push((index, options.clone()));
                    }
                }
                Strategy::Raise => node.unloaded.push((index, true)),
            }
        }
        node
    }
}

/// The strategy of relation `index` at this level, the options for the level below, and whether
/// the strategy is the relation's declared default (no option named it).
fn resolve<'o>(
    info: &crate::model::RelationInfo,
    index: usize,
    options: Option<&'o OptionTree>,
    path: &Path,
    step: PathStep,
) -> (Strategy, Option<&'o OptionTree>, bool) {
    if let Some(entry) = options.and_then(|o| o.entry(index)) {
        return (entry.strategy, Some(&entry.children), false);
    }
    if let Some(wildcard) = options.and_then(|o| o.wildcard) {
        return (wildcard, None, false);
    }
    let strategy = info.strategy;
    let limit = match (strategy, info.join_depth) {
        (Strategy::Joined | Strategy::Selectin, Some(depth)) => depth as usize,
        // A joined default follows each relation once per path, so joined cycles terminate.
        (Strategy::Joined, None) => 1,
        // A selectin default keeps loading level after level until no parent is left unloaded.
        _ => usize::MAX,
    };
    if path.count(step) >= limit {
        (Strategy::Lazy, None, true)
    } else {
        (strategy, None, true)
    }
}

struct JoinChild<'b, 'j, 'o, 'p> {
    builder: &'b mut PlanBuilder<'j>,
    options: Option<&'o OptionTree>,
    path: &'p mut Path,
    /// For `contains_eager`: the index of the query's join that provides the rows.
    external: Option<usize>,
    /// Whether `joined` is the relation's declared default.
    declared: bool,
    /// The order and filter of the relation's rows.
    shape: RowShape,
}

impl<M: Model> RelationVisitor<M> for JoinChild<'_, '_, '_, '_> {
    type Output = JoinedChild;

    fn visit<R: Relation<Parent = M>>(self) -> JoinedChild {
        self.child::<R::Target>(R::info(), R::INDEX)
    }
}

impl JoinChild<'_, '_, '_, '_> {
    /// The joined child of relation `info` (number `relation` of its parent), whose target is
    /// `T`: compiled once per target model, not once per relation (compile time).
    fn child<T: Model>(self, info: &'static RelationInfo, relation: usize) -> JoinedChild {
        let (name, through_name) = match self.external {
            Some(join) => {
                let join = &self.builder.joins[join];
                let through = match info.link {
                    Link::Through { table, .. } => Some(join.through_name(table().name)),
                    _ => None,
                };
                (join.name.clone(), through)
            }
            None => {
                let through = (info.kind == RelationKind::ManyToMany).then(|| self.builder.alias());
                (self.builder.alias(), through)
            }
        };
        let source = self.external.map(Some);
        let mut node = self.builder.node::<T>(name, source, self.options, self.path);
        // The query's own join decides which rows a `contains_eager` relation holds.
        if self.external.is_none() {
            node.shape = self.shape.clone();
        }
        JoinedChild {
            as_selectin: Deferred {
                relation,
                options: self.options.cloned().unwrap_or_default(),
                path: self.path.clone(),
                declared: self.declared,
                shape: self.shape,
            },
            relation,
            link: info.link,
            through_name,
            multiplies: info.kind != RelationKind::BelongsTo,
            external: self.external.is_some(),
            declared: self.declared,
            node,
        }
    }
}
