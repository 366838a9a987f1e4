//! `select` (lazy) and `raise`: reading one relation of one object through the session.

use std::any::TypeId;
use std::panic::Location;
use std::sync::Arc;

use super::context::{Context, SessionConnection};
use crate::detect::{Detector, Strictness};
use crate::error::{Error, NotLoadedReason, Result};
use crate::graph::Graph;
use crate::identity::{Origin, Refresh};
use crate::model::{Model, Relation, RelationKind};
use crate::options::OptionTree;
use crate::plan::RowShape;
use crate::rel::Shape;
use crate::state::{Loaded, Untyped};
use crate::stats::Cause;

use super::selectin::{load_relation, plan_for, Load, Targeting};
use super::walk::Walk;

/// Reads `R` on `parent`, loading it first if needed (see [`Loaded::load`]): the objects it
/// loads join `parent`'s graph.
pub(crate) fn load<'p, R: Relation, S, C: SessionConnection>(
    handle: &'p Loaded<R::Parent, S>,
    cx: &mut Context<'_, C>,
    location: &'static Location<'static>,
) -> Result<<R::Shape as Shape>::Typed<'p, Untyped>> {
    let parent: &'p R::Parent = handle;
    let slot = R::slot(parent);
    if let Some(view) = slot.get() {
        return Ok(view);
    }
    if slot.is_raise() {
        return Err(not_loaded::<R>(NotLoadedReason::Raise));
    }
    let graph = handle.graph();
    // Also where a load left options for this lazy load (`lazy(r).then(..)`).
    let wanted = !cx.lazy_options.is_empty();
    let (load_origin, origin) =
        guard::<R, C>(cx, &graph, parent, location, wanted, Detector::lazy_count::<R>)?;
    if !held_target::<R>(parent, &graph)? {
        let key = (TypeId::of::<R::Parent>(), R::INDEX);
        let left = load_origin.and_then(|o| cx.lazy_options.get(o, key.0, key.1));
        let (plan, options) = match (left, cx.lazy_plans.get(&key)) {
            // The options the parent's load left for it: a plan of their own, a statement
            // that is not the relation's prepared default.
            (Some(options), _) => (
                plan_for::<R::Target>(R::info(), &options, &Default::default(), declared::<R>())?,
                Some(options),
            ),
            (None, Some(plan)) => (Arc::clone(plan), None),
            (None, None) => {
                let options = OptionTree::default();
                let plan = plan_for::<R::Target>(
                    R::info(),
                    &options,
                    &Default::default(),
                    declared::<R>(),
                )?;
                cx.lazy_plans.insert(key, Arc::clone(&plan));
                (plan, None)
            }
        };
        let cause = Cause::Lazy(<R::Parent as Model>::NAME, R::info().name);
        let target_origin = cx.next_origin();
        let run = |s: &mut Context<'_, C>| {
            let mut walk = Walk::new(Arc::clone(&graph), target_origin, Refresh::Changed);
            // The default plan's statement is prepared once per connection.
            let relation = match options {
                None => Targeting::lazy::<R>(),
                Some(_) => Targeting::of::<R>(),
            };
            let options = walk.options_id(options.as_deref().unwrap_or(&OptionTree::default()));
            let load = Load { plan: Arc::clone(&plan), cause, options };
            let parents = [crate::rel::bind::<R>(parent)];
            load_relation(s, &parents, &relation, load, &mut walk)?;
            walk.run(s)
        };
        if plan.has_deferred() {
            cx.load_transaction(run)?;
        } else {
            run(cx)?;
        }
        if let Some(origin) = origin {
            cx.detector.record_lazy::<R>(origin, location);
        }
    }
    slot.get().ok_or_else(|| not_loaded::<R>(NotLoadedReason::NoSession))
}

/// The gate every lazy read of `R` on `parent` passes before it runs SQL (a lazy load, a lazy
/// count): the strict modes refuse it (`n_plus_one_only` from the second read of the objects of
/// one query, which `done` counts), and the load `parent` came from is found for the N+1
/// detector, or when `wanted` anyway. Returns that load, and that load when the detector
/// counts.
pub(crate) fn guard<R: Relation, C: SessionConnection>(
    cx: &Context<'_, C>,
    graph: &Graph,
    parent: &R::Parent,
    location: &'static Location<'static>,
    wanted: bool,
    done: fn(&Detector, Origin) -> usize,
) -> Result<(Option<Origin>, Option<Origin>)> {
    let (model, relation) = (<R::Parent as Model>::NAME, R::info().name);
    // The query `parent` came from: lazy reads repeated over its objects are the N+1 pattern.
    // Only the detector and `n_plus_one_only` count them.
    let counted = cx.detector.enabled || cx.strictness == Strictness::NPlusOneOnly;
    let load_origin = match counted || wanted {
        true => graph.identity().model::<R::Parent>().origin(parent.key(), parent),
        false => None,
    };
    let origin = load_origin.filter(|_| counted);
    match cx.strictness {
        Strictness::Lazy => {}
        Strictness::Strict => return Err(Error::StrictLazyLoad { model, relation, location }),
        Strictness::NPlusOneOnly => {
            if origin.is_some_and(|o| done(&cx.detector, o) > 0) {
                return Err(Error::NPlusOne { model, relation, location });
            }
        }
    }
    Ok((load_origin, origin))
}

/// Fills a many-to-one from the identity map when the parent's graph holds its target (or its
/// key is `NULL`), without SQL. Returns whether the slot is now filled.
fn held_target<R: Relation>(parent: &R::Parent, graph: &Arc<Graph>) -> Result<bool> {
    if R::info().kind != RelationKind::BelongsTo {
        return Ok(false);
    }
    let target = match R::parent_key(parent) {
        None => None,
        Some(key) => match super::selectin::held_target(key, graph, &mut graph.identity()) {
            Some(held) => Some(held),
            None => return Ok(false),
        },
    };
    if !R::slot(parent).fill_one(target) {
        let key = R::parent_key(parent);
        return Err(super::decode::dangling(<R::Parent as Model>::NAME, R::info(), key));
    }
    Ok(true)
}

/// The rows of `R` as it declares them: a lazy load takes no query shaping.
fn declared<R: Relation>() -> RowShape {
    RowShape::of(R::info(), None)
}

/// The error for reading `R` while it is not loaded.
pub(crate) fn not_loaded<R: Relation>(reason: NotLoadedReason) -> Error {
    Error::NotLoaded { model: <R::Parent as Model>::NAME, relation: R::info().name, reason }
}
