//! Query-level load options: `joined`, `selectin`, `lazy`, `raise`, nested with `.then`, and the
//! `raise_all` wildcard.
//!
//! Options are typed by the model whose relation they name: `.options(..)` on a `Query<Person>`
//! accepts only options built from `Person`'s relation handles, and `.then(..)` only options of
//! the relation's target.

use std::marker::PhantomData;

use crate::model::{Model, Relation, Strategy};
use crate::shaping::{
    CountEntry, JoinedKind, RelFilter, RelationFilter, RelationOrder, Shapes, Shaping, TargetTable,
    Windowed,
};
use crate::state::{Loaded, No, State, Yes};

/// The options of one query level: a strategy per named relation, nested options, a wildcard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionTree {
    pub(crate) entries: Vec<OptionEntry>,
    pub(crate) wildcard: Option<Strategy>,
    /// The relations whose rows are counted per object (`count(..)`), with their filters.
    pub(crate) counts: Vec<CountEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionEntry {
    pub(crate) relation: usize,
    pub(crate) strategy: Strategy,
    pub(crate) children: OptionTree,
    /// The order and filter the option gives the relation's rows.
    pub(crate) shaping: Shaping,
}

impl OptionTree {
    pub(crate) fn entry(&self, relation: usize) -> Option<&OptionEntry> {
        self.entries.iter().find(|e| e.relation == relation)
    }

    /// Sets relation `relation`'s strategy, with no nested options.
    pub(crate) fn mirror(&mut self, relation: usize, strategy: Strategy) {
        self.add(OptionEntry {
            relation,
            strategy,
            children: OptionTree::default(),
            shaping: Shaping::default(),
        });
    }

    /// Adds `entry`; options on the same relation merge (the later strategy wins).
    fn add(&mut self, entry: OptionEntry) {
        match self.entries.iter_mut().find(|e| e.relation == entry.relation) {
            Some(existing) => {
                existing.strategy = entry.strategy;
                existing.children.merge(entry.children);
                existing.shaping.merge(entry.shaping);
            }
            None => self.entries.push(entry),
        }
    }

    /// Counts relation `count.relation`; a second count of it replaces the first.
    pub(crate) fn add_count(&mut self, count: CountEntry) {
        self.counts.retain(|c| c.relation != count.relation);
        self.counts.push(count);
    }

    fn merge(&mut self, other: OptionTree) {
        for entry in other.entries {
            self.add(entry);
        }
        for count in other.counts {
            self.add_count(count);
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
    pub(crate) strategy: Strategy,
    pub(crate) children: OptionTree,
    pub(crate) shaping: Shaping,
    #[allow(clippy::type_complexity)] // three phantom types, named by the struct's parameters
    pub(crate) _types: PhantomData<fn() -> (R, K, Sub)>,
}

impl<R: Relation, K> RelOption<R, K> {
    fn new(strategy: Strategy) -> Self {
        RelOption {
            strategy,
            children: OptionTree::default(),
            shaping: Shaping::default(),
            _types: PhantomData,
        }
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
        RelOption {
            strategy: self.strategy,
            children: self.children,
            shaping: self.shaping,
            _types: PhantomData,
        }
    }
}

impl<R: Relation, K, Sub> RelOption<R, K, Sub> {
    /// Loads at most `n` related rows per parent, the first in the relation's order (its
    /// `.order_by(..)`, or its declared `order_by`): "the three latest comments of each post".
    /// One statement per relation still: a `ROW_NUMBER() OVER (PARTITION BY ..)` window in the
    /// `selectin` statement, or in a derived table the join reads.
    pub fn limit(mut self, n: u32) -> Self
    where
        Self: Windowed,
    {
        self.shaping.limit = Some(n);
        self
    }

    /// Skips the first `n` related rows per parent, in the relation's order.
    pub fn offset(mut self, n: u32) -> Self
    where
        Self: Windowed,
    {
        self.shaping.offset = Some(n);
        self
    }

    /// Reads each parent's window through a subquery per parent (`LATERAL (.. LIMIT ?)` on
    /// PostgreSQL, `key IN (SELECT .. LIMIT ?)` on SQLite), instead of numbering the rows with
    /// `ROW_NUMBER()`. With an index on the target's foreign key (best with the order's columns
    /// after it) its cost follows the parents loaded: the three latest comments of 10 posts
    /// read 30 rows, not every comment; a joined window otherwise numbers the whole target
    /// table. Without such an index each parent scans the table, so it is not the default:
    /// the numbered form costs what the rows cost, index or not.
    pub fn per_parent(mut self) -> Self
    where
        Self: Windowed,
    {
        self.shaping.per_parent = true;
        self
    }
}

impl<R: Relation, K: JoinedKind, Sub> RelOption<R, K, Sub> {
    /// Joins the relation with an `INNER JOIN`: parents without a related row (after the
    /// option's filter) are not returned, as SQLAlchemy's `joinedload(.., innerjoin=True)`.
    /// Below a relation joined outer the join stays outer, so that it cannot drop the rows the
    /// outer join keeps. A limited query pages the parents the inner joins keep.
    pub fn inner(mut self) -> Self {
        self.shaping.inner = Some(true);
        self
    }

    /// Joins the relation with a `LEFT OUTER JOIN` even if it declares `innerjoin = true`.
    pub fn outer(mut self) -> Self {
        self.shaping.inner = Some(false);
        self
    }
}

impl<R: Relation, K: Shapes, Sub> RelOption<R, K, Sub> {
    /// Orders the relation's rows for this query, replacing its declared `order_by`:
    /// `selectin(Post::comments).order_by(comments::created_at.desc())`. Columns of the target's
    /// table, `.asc()`, `.desc()`, or a tuple of them; the target's key breaks ties. Every
    /// strategy gives the same order (the joined one orders the statement by it, after the
    /// query's own order).
    pub fn order_by<O, Kind>(mut self, order: O) -> RelOption<R, K::Ordered, Sub>
    where
        O: RelationOrder<TargetTable<R>, Kind>,
    {
        let _ = order;
        let mut terms = Vec::new();
        O::terms(&mut terms);
        self.shaping.order = Some(terms);
        RelOption {
            strategy: self.strategy,
            children: self.children,
            shaping: self.shaping,
            _types: PhantomData,
        }
    }

    /// Loads only the related rows that match `condition`, a diesel boolean expression of the
    /// target table's columns: `selectin(Post::comments).filter(comments::approved.eq(true))`.
    /// Parents without a match keep an empty collection (a `joined` filter sits on the join,
    /// not on the statement). An object the session already holds keeps the collection it had
    /// loaded; `.populate_existing()` reads it again with the filter.
    pub fn filter<E: RelationFilter<TargetTable<R>>>(mut self, condition: E) -> Self {
        self.shaping.filter = Some(RelFilter::new(condition));
        self
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
            shaping: self.shaping,
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

/// The strategies of options, as types: the `K` of [`RelOption<R, K, Sub>`](RelOption).
pub mod kind {
    /// `joined(..)`: loads the relation.
    #[derive(Debug, Clone, Copy)]
    pub struct Joined;
    /// `selectin(..)`: loads the relation.
    #[derive(Debug, Clone, Copy)]
    pub struct Selectin;
    /// `contains_eager(..)`: loads the relation from the query's own join.
    #[derive(Debug, Clone, Copy)]
    pub struct ContainsEager;
    /// `lazy(..)`: leaves the relation unloaded.
    #[derive(Debug, Clone, Copy)]
    pub struct Lazy;
    /// `raise(..)`: leaves the relation unloaded.
    #[derive(Debug, Clone, Copy)]
    pub struct Raise;
    /// `joined(..)` or `selectin(..)` (`K`) after `.order_by(..)`: can take a `.limit(..)`.
    #[derive(Debug, Clone, Copy)]
    pub struct Ordered<K>(std::marker::PhantomData<fn() -> K>);
}

/// The slot an option of this kind leaves, given the related objects' state `I`.
pub trait SlotFor<I> {
    /// [`Yes<I>`](Yes) for the loading kinds, [`No`] for `lazy` and `raise`.
    type Slot;
}

impl<I> SlotFor<I> for kind::Joined {
    type Slot = Yes<I>;
}
impl<I> SlotFor<I> for kind::Selectin {
    type Slot = Yes<I>;
}
impl<I> SlotFor<I> for kind::ContainsEager {
    type Slot = Yes<I>;
}
impl<I> SlotFor<I> for kind::Lazy {
    type Slot = No;
}
impl<I> SlotFor<I> for kind::Raise {
    type Slot = No;
}
impl<I, K: SlotFor<I>> SlotFor<I> for kind::Ordered<K> {
    type Slot = K::Slot;
}

/// What load options do to a state: `(joined(Person::address), raise(Person::manager))` applied
/// to `PersonState` is `PersonState<Yes<AddressState>>`. Implemented by `#[derive(Model)]` for
/// each relation's options; tuples fold from left to right.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply to `{S}`: it names a relation of another model",
    label = "this option names a relation of another model",
    note = "each option must name a relation of the model loaded at its level (nested options go in `.then(..)`)"
)]
pub trait Apply<S: State>: IntoOptions<S::Model> {
    /// The state after the options.
    type Out: State<Model = S::Model>;
}

/// No options: the state is unchanged.
#[diagnostic::do_not_recommend]
impl<S: State> Apply<S> for () {
    type Out = S;
}

/// `raise_all()` guarantees nothing: the relations named by options after it (in the same tuple
/// or a later `.options(..)`) are loaded again. Written before them, it costs the type nothing.
#[diagnostic::do_not_recommend]
impl<S: State> Apply<S> for RaiseAll {
    type Out = <S::Model as Model>::Bare;
}

/// Options built at run time guarantee nothing.
#[diagnostic::do_not_recommend]
impl<M: Model, S: State<Model = M>> Apply<S> for Options<M> {
    type Out = M::Bare;
}

macro_rules! tuple_apply {
    ($last:ident; $($prev:ident $name:ident $state:ident),+) => {
        #[diagnostic::do_not_recommend]
        impl<M: Model, S0: State<Model = M>, $($name, $state),+> Apply<S0> for ($($name,)+)
        where
            $($state: State<Model = M>, $name: Apply<$prev, Out = $state>),+
        {
            type Out = $last;
        }
    };
}

tuple_apply!(S1; S0 A S1);
tuple_apply!(S2; S0 A S1, S1 B S2);
tuple_apply!(S3; S0 A S1, S1 B S2, S2 C S3);
tuple_apply!(S4; S0 A S1, S1 B S2, S2 C S3, S3 D S4);
tuple_apply!(S5; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5);
tuple_apply!(S6; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5, S5 F S6);
tuple_apply!(S7; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5, S5 F S6, S6 G S7);
tuple_apply!(S8; S0 A S1, S1 B S2, S2 C S3, S3 D S4, S4 E S5, S5 F S6, S6 G S7, S7 H S8);

/// Options a fresh query of `M` accepts, for helpers that take options as an argument:
/// `fn people(options: impl QueryOptions<Person>)`. Implemented for every such option set.
pub trait QueryOptions<M: Model>: Apply<M::Base> {}

impl<M: Model, O: Apply<M::Base>> QueryOptions<M> for O {}

/// The state model `M` is in after options `O`: `Loads<Person, (Joined<person_rel::address>,)>`
/// is the type `Person::query().options(joined(Person::address)).load(..)` returns elements of.
/// Names a shape for struct fields and return types without spelling out the state's slots.
pub type Loads<M, O> = Loaded<M, <O as Apply<<M as Model>::Base>>::Out>;

/// The type of `joined(rel)`, with nested options `Sub`, for [`Loads`].
pub type Joined<R, Sub = ()> = RelOption<R, kind::Joined, Sub>;
/// The type of `selectin(rel)`, with nested options `Sub`, for [`Loads`].
pub type Selectin<R, Sub = ()> = RelOption<R, kind::Selectin, Sub>;
