//! Query-level load options: `joined`, `selectin`, `lazy`, `raise`, nested with `.then`, and the
//! `raise_all` wildcard.
//!
//! Options are typed by the model whose relation they name: `.options(..)` on a `Query<Person>`
//! accepts only options built from `Person`'s relation handles, and `.then(..)` only options of
//! the relation's target.

use std::marker::PhantomData;

use crate::model::{Model, Relation, Strategy};
use crate::typed::{kind, Apply};

/// The options of one query level: a strategy per named relation, nested options, a wildcard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionTree {
    pub(crate) entries: Vec<OptionEntry>,
    pub(crate) wildcard: Option<Strategy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionEntry {
    pub(crate) relation: usize,
    pub(crate) strategy: Strategy,
    pub(crate) children: OptionTree,
}

impl OptionTree {
    pub(crate) fn entry(&self, relation: usize) -> Option<&OptionEntry> {
        self.entries.iter().find(|e| e.relation == relation)
    }

    /// Sets relation `relation`'s strategy, with no nested options.
    pub(crate) fn mirror(&mut self, relation: usize, strategy: Strategy) {
        self.add(OptionEntry { relation, strategy, children: OptionTree::default() });
    }

    /// Adds `entry`; options on the same relation merge (the later strategy wins).
    fn add(&mut self, entry: OptionEntry) {
        match self.entries.iter_mut().find(|e| e.relation == entry.relation) {
            Some(existing) => {
                existing.strategy = entry.strategy;
                existing.children.merge(entry.children);
            }
            None => self.entries.push(entry),
        }
    }

    fn merge(&mut self, other: OptionTree) {
        for entry in other.entries {
            self.add(entry);
        }
        if other.wildcard.is_some() {
            self.wildcard = other.wildcard;
        }
    }
}

/// Something `.options(..)` accepts for model `M`: one option, a wildcard, or a tuple of them.
pub trait IntoOptions<M: Model> {
    /// Adds these options to `tree`.
    fn add_to(self, tree: &mut OptionTree);
}

/// An option on relation `R`, built by [`joined`], [`selectin`], [`contains_eager`], [`lazy`] or
/// [`raise`]. `K` is its strategy as a type ([`kind`](crate::kind)) and `Sub` its nested options,
/// from which the query's [typed state](crate::Loaded) is computed.
#[must_use = "pass the option to `.options(..)`"]
#[derive(Debug, Clone)]
pub struct RelOption<R, K, Sub = ()> {
    strategy: Strategy,
    children: OptionTree,
    #[allow(clippy::type_complexity)] // three phantom types, named by the struct's parameters
    _types: PhantomData<fn() -> (R, K, Sub)>,
}

impl<R: Relation, K> RelOption<R, K> {
    fn new(strategy: Strategy) -> Self {
        RelOption { strategy, children: OptionTree::default(), _types: PhantomData }
    }
}

impl<R: Relation, K, Sub> RelOption<R, K, Sub> {
    /// Options for the related objects' own relations:
    /// `selectin(Person::reports).then(joined(Person::address))`.
    pub fn then<O>(mut self, options: O) -> RelOption<R, K, (Sub, O)>
    where
        O: Apply<<R::Target as Model>::Bare>,
    {
        options.add_to(&mut self.children);
        RelOption { strategy: self.strategy, children: self.children, _types: PhantomData }
    }
}

/// Options put together at run time, for code that picks them conditionally:
/// `Options::new().with(joined(Person::address))`. Their [typed state](crate::Loaded) records no
/// relation, since the type cannot know which were added.
#[must_use = "pass the options to `.options(..)`"]
#[derive(Debug, Clone)]
pub struct Options<M> {
    tree: OptionTree,
    _model: PhantomData<fn() -> M>,
}

impl<M: Model> Options<M> {
    /// No options.
    pub fn new() -> Self {
        Options { tree: OptionTree::default(), _model: PhantomData }
    }

    /// Adds `options`; options on the same relation merge, the later strategy winning.
    pub fn with(mut self, options: impl IntoOptions<M>) -> Self {
        options.add_to(&mut self.tree);
        self
    }
}

impl<M: Model> Default for Options<M> {
    fn default() -> Self {
        Options::new()
    }
}

impl<M: Model> IntoOptions<M> for Options<M> {
    fn add_to(self, tree: &mut OptionTree) {
        tree.merge(self.tree);
    }
}

/// `R` is a relation of model `M` (implemented by `#[derive(Model)]` for each relation handle),
/// so an option on another model's relation does not compile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a relation of `{M}`",
    label = "this option names a relation of another model",
    note = "options passed to a query or to `.then(..)` name relations of the model loaded at that level"
)]
pub trait RelationOf<M> {}

impl<M: Model, R: Relation + RelationOf<M>, K, Sub> IntoOptions<M> for RelOption<R, K, Sub> {
    fn add_to(self, tree: &mut OptionTree) {
        tree.add(OptionEntry {
            relation: R::INDEX,
            strategy: self.strategy,
            children: self.children,
        });
    }
}

/// Load `rel` with a `LEFT OUTER JOIN` in the same statement.
pub fn joined<R: Relation>(rel: R) -> RelOption<R, kind::Joined> {
    let _ = rel;
    RelOption::new(Strategy::Joined)
}

/// Load `rel` with one `WHERE key IN (...)` statement after the parents.
pub fn selectin<R: Relation>(rel: R) -> RelOption<R, kind::Selectin> {
    let _ = rel;
    RelOption::new(Strategy::Selectin)
}

/// Fill `rel` from the query's explicit `.join(rel)` (or `.join_as(rel, alias)`): one join
/// serves both the filter and the loading. The relation holds the joined rows only, so an inner
/// join with a filter loads the matching related rows.
pub fn contains_eager<R: Relation>(rel: R) -> RelOption<R, kind::ContainsEager> {
    let _ = rel;
    RelOption::new(Strategy::ContainsEager)
}

/// Do not load `rel`; it loads on first access through the session.
pub fn lazy<R: Relation>(rel: R) -> RelOption<R, kind::Lazy> {
    let _ = rel;
    RelOption::new(Strategy::Lazy)
}

/// Do not load `rel`; reading it is [`Error::NotLoaded`](crate::Error::NotLoaded).
pub fn raise<R: Relation>(rel: R) -> RelOption<R, kind::Raise> {
    let _ = rel;
    RelOption::new(Strategy::Raise)
}

/// Every relation of this level that no other option names uses `raise`.
#[must_use = "pass the option to `.options(..)`"]
#[derive(Debug, Clone, Copy)]
pub struct RaiseAll;

/// Every relation not named by another option (at this level) raises instead of loading.
pub fn raise_all() -> RaiseAll {
    RaiseAll
}

impl<M: Model> IntoOptions<M> for RaiseAll {
    fn add_to(self, tree: &mut OptionTree) {
        tree.wildcard = Some(Strategy::Raise);
    }
}

/// No options: every relation uses its declared strategy.
impl<M: Model> IntoOptions<M> for () {
    fn add_to(self, _: &mut OptionTree) {}
}

macro_rules! tuple_options {
    ($($name:ident)+) => {
        impl<M: Model, $($name: IntoOptions<M>),+> IntoOptions<M> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn add_to(self, tree: &mut OptionTree) {
                let ($($name,)+) = self;
                $($name.add_to(tree);)+
            }
        }
    };
}

tuple_options!(A);
tuple_options!(A B);
tuple_options!(A B C);
tuple_options!(A B C D);
tuple_options!(A B C D E);
tuple_options!(A B C D E F);
tuple_options!(A B C D E F G);
tuple_options!(A B C D E F G H);
