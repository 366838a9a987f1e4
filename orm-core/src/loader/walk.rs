//! One load's walk over the `selectin` levels its plan defers: a queue of levels run in a loop,
//! not recursion, since a declared `selectin` self-reference has as many levels as the data.
//!
//! A level is the `selectin` loads of one plan node for the objects a statement brought. Levels
//! run in the order they are reached, breadth first: all the statements of one level, then the
//! next. An object whose relation was already loaded before it is reached is walked into once
//! per relation and options in a load, so a cycle of declared `selectin` relations
//! (`User.addresses` and `Address.user`) stops when a level brings nothing new.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use super::context::{Context, SessionConnection};
use crate::error::Result;
use crate::graph::{Graph, ObjRef};
use crate::identity::{Origin, Refresh};
use crate::model::Model;
use crate::options::OptionTree;
use crate::plan::PlanNode;
use crate::rel::Slot;

/// A load's walk: its graph and origin, the levels left, and the relations it already walked
/// into.
pub(crate) struct Walk<C: SessionConnection> {
    /// The graph the load decodes into, held for the whole load: every [`ObjRef`] the load keeps
    /// points into it.
    pub(crate) graph: Arc<Graph>,
    /// The load the objects it reaches come from (for the N+1 detector).
    pub(crate) origin: Origin,
    /// What its rows do with the objects the session held before it.
    pub(crate) refresh: Refresh,
    levels: VecDeque<Box<dyn Level<C>>>,
    /// `(options, slot)`: the loaded relations of objects already walked into.
    walked: FxHashSet<(usize, usize)>,
    /// The distinct options of the walk's levels, numbered for `walked`.
    options: Vec<OptionTree>,
}

/// A level of the walk, type-erased.
trait Level<C: SessionConnection> {
    fn run(self: Box<Self>, cx: &mut Context<'_, C>, walk: &mut Walk<C>) -> Result<()>;
}

/// The `selectin` loads of `plan` for `objects`.
struct Below<T> {
    plan: Arc<PlanNode>,
    objects: Vec<ObjRef<T>>,
}

impl<T: Model, C: SessionConnection> Level<C> for Below<T> {
    fn run(self: Box<Self>, cx: &mut Context<'_, C>, walk: &mut Walk<C>) -> Result<()> {
        super::load_deferred::<T, C>(cx, &self.plan, &self.objects, walk)
    }
}

impl<C: SessionConnection> Walk<C> {
    pub(crate) fn new(graph: Arc<Graph>, origin: Origin, refresh: Refresh) -> Self {
        Walk {
            graph,
            origin,
            refresh,
            levels: VecDeque::new(),
            walked: FxHashSet::default(),
            options: Vec::new(),
        }
    }

    /// Queues the `selectin` loads of `plan` for `objects`, if it has any.
    pub(crate) fn below<T: Model>(&mut self, plan: &Arc<PlanNode>, objects: Vec<ObjRef<T>>) {
        if !objects.is_empty() && plan.has_deferred() {
            self.levels.push_back(Box::new(Below { plan: Arc::clone(plan), objects }));
        }
    }

    /// Runs the queued levels, and the levels they queue, until none is left.
    pub(crate) fn run(&mut self, cx: &mut Context<'_, C>) -> Result<()> {
        while let Some(level) = self.levels.pop_front() {
            level.run(cx, self)?;
        }
        Ok(())
    }

    /// The number of `options` in this walk.
    pub(crate) fn options_id(&mut self, options: &OptionTree) -> usize {
        match self.options.iter().position(|o| o == options) {
            Some(id) => id,
            None => {
                self.options.push(options.clone());
                self.options.len() - 1
            }
        }
    }

    /// Whether this is the first time the load walks into the loaded relation `slot` (of one
    /// object) with options number `options`.
    pub(crate) fn first_walk(&mut self, options: usize, slot: &dyn Slot) -> bool {
        // Every object the load reaches stays in its graph, which the walk holds: a slot's
        // address (one relation of one object) is not reused during the walk.
        let address = slot as *const dyn Slot as *const () as usize;
        self.walked.insert((options, address))
    }
}
