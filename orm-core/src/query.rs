//! `Query<M>`: filters in diesel's DSL, order, limit, offset, load options.

use std::fmt;
use std::marker::PhantomData;

use diesel::expression::Expression;
use diesel::query_builder::QueryFragment;
use diesel::query_source::{Alias, AliasSource};
use diesel::sql_types::BoolOrNullableBool;

use crate::backend::OrmBackend;
use crate::error::{Error, Result};
use crate::identity::Refresh;
use crate::join::{user_join, UserJoin};
use crate::loader::{self, Statement};
use crate::model::{Model, Relation};
use crate::options::Apply;
use crate::options::OptionTree;
use crate::plan::PlanBuilder;
use crate::session::{Session, SessionConnection};
use crate::sql::{Fragment, KeyEq, SelectGraph};
use crate::state::{Loaded, State};

/// A query over model `M`'s table on backend `DB`; start one with `M::query()`.
///
/// ```
/// # use diesel::prelude::*;
/// # use orm_core::prelude::*;
/// # diesel::table! { person (id) { id -> Integer, lastname -> Text, address_id -> Nullable<Integer>, manager_id -> Nullable<Integer> } }
/// # diesel::table! { address (id) { id -> Integer, city -> Text } }
/// # #[derive(Model, Debug)] #[orm(table = address)] pub struct Address { pub id: i32, pub city: String }
/// # #[derive(Model, Debug)] #[orm(table = person)]
/// # pub struct Person { pub id: i32, pub lastname: String, pub address_id: Option<i32>, pub manager_id: Option<i32>,
/// #     #[relation(belongs_to = Address, foreign_key = address_id)] pub address: Rel<Option<Address>>,
/// #     #[relation(has_many = Person, foreign_key = manager_id)] pub reports: Rel<Vec<Person>> }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mut conn = SqliteConnection::establish(":memory:")?;
/// # diesel::sql_query("CREATE TABLE person (id INTEGER PRIMARY KEY, lastname TEXT NOT NULL, address_id INTEGER, manager_id INTEGER)").execute(&mut conn)?;
/// # diesel::sql_query("CREATE TABLE address (id INTEGER PRIMARY KEY, city TEXT NOT NULL)").execute(&mut conn)?;
/// # let mut session = Session::new(&mut conn);
/// let people = Person::query()
///     .filter(person::lastname.eq("Martin"))
///     .order_by(person::id.asc())
///     .options((joined(Person::address), selectin(Person::reports)))
///     .load(&mut session)?;
/// # assert!(people.is_empty());
/// # Ok(()) }
/// ```
///
/// `S` is the [typed state](crate::Loaded) of the results: which relations the query loads.
#[must_use = "a query does nothing until `.load(&mut session)`"]
pub struct Query<M: Model, DB, S = <M as Model>::Base> {
    pub(crate) joins: Vec<UserJoin>,
    /// The first invalid join, reported by `load`.
    pub(crate) error: Option<Error>,
    pub(crate) filters: Vec<Fragment<DB>>,
    pub(crate) order: Vec<Fragment<DB>>,
    pub(crate) limit: Option<i64>,
    pub(crate) offset: Option<i64>,
    pub(crate) options: OptionTree,
    /// What the load does with the objects the session already holds.
    pub(crate) refresh: Refresh,
    _types: PhantomData<fn() -> (M, S)>,
}

impl<M: Model, DB: OrmBackend> Query<M, DB> {
    /// An unfiltered query over `M`'s table.
    pub fn new() -> Self {
        Query {
            joins: Vec::new(),
            error: None,
            filters: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
            options: OptionTree::default(),
            refresh: Refresh::Changed,
            _types: PhantomData,
        }
    }
}

impl<M: Model, DB: OrmBackend, S: State<Model = M>> Query<M, DB, S> {
    /// Keeps the rows where `predicate`, a boolean diesel expression, holds. Repeated calls
    /// are joined with `AND`.
    pub fn filter<E>(mut self, predicate: E) -> Self
    where
        E: Expression + QueryFragment<DB> + Send + 'static,
        E::SqlType: BoolOrNullableBool,
    {
        self.filters.push(Box::new(predicate));
        self
    }

    /// Orders by a diesel expression (`person::id`, `person::lastname.desc()`); repeated calls
    /// add further keys.
    pub fn order_by<E>(mut self, order: E) -> Self
    where
        E: QueryFragment<DB> + Send + 'static,
    {
        self.order.push(Box::new(order));
        self
    }

    /// At most `n` results (parents, even with joined collections).
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` results.
    pub fn offset(mut self, n: i64) -> Self {
        self.offset = Some(n);
        self
    }

    /// Load options overriding the relations' declared strategies for this query:
    /// `.options((joined(Person::address), selectin(Person::reports).then(raise_all())))`.
    ///
    /// The results' typed state records the relations the options load, whatever their order.
    pub fn options<O>(mut self, options: O) -> Query<M, DB, O::Out>
    where
        O: Apply<S>,
    {
        options.add_to(&mut self.options);
        Query {
            joins: self.joins,
            error: self.error,
            filters: self.filters,
            order: self.order,
            limit: self.limit,
            offset: self.offset,
            options: self.options,
            refresh: self.refresh,
            _types: PhantomData,
        }
    }

    /// `INNER JOIN`s relation `rel`'s table under its own name, so diesel filters on that table
    /// work: `Person::query().join(Person::address).filter(address::city.eq("Paris"))`.
    ///
    /// `rel` hangs off the root model, or else off the latest join of `rel`'s parent model, so
    /// joins chain along nested relations. The join only filters; add
    /// [`contains_eager`](crate::contains_eager) to also load the relation from it.
    pub fn join<R: Relation>(self, rel: R) -> Self {
        let _ = rel;
        self.add_join::<R>(false, None, None)
    }

    /// [`join`](Query::join) as a `LEFT OUTER JOIN`.
    pub fn left_join<R: Relation>(self, rel: R) -> Self {
        let _ = rel;
        self.add_join::<R>(true, None, None)
    }

    /// `INNER JOIN`s `rel` under a diesel alias of its table, for self-joins:
    /// `diesel::alias!(person as manager: Manager)`, then
    /// `.join_as(Person::manager, manager).filter(manager.field(person::firstname).eq("Pierre"))`.
    pub fn join_as<R, A>(self, rel: R, alias: Alias<A>) -> Self
    where
        R: Relation,
        A: AliasSource<Target = <R::Target as Model>::Table>,
    {
        let _ = (rel, alias);
        self.add_join::<R>(false, None, Some(A::NAME))
    }

    /// [`join_as`](Query::join_as) as a `LEFT OUTER JOIN`.
    pub fn left_join_as<R, A>(self, rel: R, alias: Alias<A>) -> Self
    where
        R: Relation,
        A: AliasSource<Target = <R::Target as Model>::Table>,
    {
        let _ = (rel, alias);
        self.add_join::<R>(true, None, Some(A::NAME))
    }

    /// `INNER JOIN`s `rel` of the rows joined as `from`, under `alias`: the manager's manager is
    /// `.join_as(Person::manager, manager).join_from_as(manager, Person::manager, grand)`.
    pub fn join_from_as<R, P, A>(self, from: Alias<P>, rel: R, alias: Alias<A>) -> Self
    where
        R: Relation,
        P: AliasSource<Target = <R::Parent as Model>::Table>,
        A: AliasSource<Target = <R::Target as Model>::Table>,
    {
        let _ = (from, rel, alias);
        self.add_join::<R>(false, Some(P::NAME), Some(A::NAME))
    }

    fn add_join<R: Relation>(
        mut self,
        left: bool,
        from: Option<&str>,
        alias: Option<&'static str>,
    ) -> Self {
        if self.error.is_none() {
            match user_join::<M, R>(&self.joins, left, from, alias) {
                Ok(join) => self.joins.push(join),
                Err(error) => self.error = Some(error),
            }
        }
        self
    }

    /// Builds every object this load reaches from the rows it reads, including the ones the
    /// session already holds, with the relations this query loads (SQLAlchemy's
    /// `populate_existing`): the identity map holds the new objects from now on, and whoever
    /// holds an old one keeps it as it was. Without it, a held object whose row is unchanged is
    /// returned as it is, with the relations it had loaded.
    pub fn populate_existing(mut self) -> Self {
        self.refresh = Refresh::All;
        self
    }

    /// Keeps the row whose primary key is `key`.
    pub fn filter_key(mut self, key: M::Key) -> Self {
        self.filters.push(Box::new(KeyEq {
            table: M::table().name,
            column: M::COLUMNS[M::KEY_COLUMN],
            key,
        }));
        self
    }

    /// Runs the query and its eager loads: one statement, plus one per `selectin` relation per
    /// level (inside one transaction when there are several).
    pub fn load<C>(self, session: &mut Session<'_, C>) -> Result<Vec<Loaded<M, S>>>
    where
        C: SessionConnection<Backend = DB>,
    {
        if let Some(error) = self.error {
            return Err(error);
        }
        let statement = Statement {
            joins: self.joins,
            filters: self.filters,
            order: self.order,
            limit: self.limit,
            offset: self.offset,
            keys: None,
        };
        let (_graph, roots) =
            loader::load_root::<M, C>(&mut session.cx, statement, &self.options, self.refresh)?;
        // Each handle counts the graph, which `_graph` keeps alive until they do.
        Ok(roots.into_iter().map(Loaded::new).collect())
    }

    /// The SQL and bound values of the statement `load` would run first, without running it.
    /// `selectin` relations and `count(..)`s add one statement each after it; they are listed
    /// after the SQL.
    ///
    /// A query that is never loaded has no session to fix its backend: name it,
    /// `Person::query::<diesel::sqlite::Sqlite>().to_sql()`.
    pub fn to_sql(&self) -> Result<String> {
        if let Some(Error::InvalidJoin { model, relation, reason }) = &self.error {
            let reason = reason.clone();
            return Err(Error::InvalidJoin { model, relation, reason });
        }
        let plan =
            PlanBuilder::new(0, &self.joins).root::<M>(&self.options, &mut Default::default())?;
        let query = SelectGraph {
            plan: &plan,
            joins: &self.joins,
            link: None,
            filters: &self.filters,
            order: &self.order,
            limit: self.limit,
            offset: self.offset,
            keys: None,
        };
        let mut sql = DB::debug_sql(&query);
        let deferred: Vec<&str> =
            plan.deferred.iter().map(|d| M::RELATIONS[d.relation].name).collect();
        if !deferred.is_empty() {
            sql.push_str(&format!(
                "\n-- then one selectin statement per relation: {}",
                deferred.join(", ")
            ));
        }
        let counted: Vec<&str> =
            plan.counts.iter().map(|c| M::RELATIONS[c.relation].name).collect();
        if !counted.is_empty() {
            sql.push_str(&format!(
                "\n-- then one count statement per relation: {}",
                counted.join(", ")
            ));
        }
        Ok(sql)
    }

    /// The first result, if any.
    pub fn first<C>(self, session: &mut Session<'_, C>) -> Result<Option<Loaded<M, S>>>
    where
        C: SessionConnection<Backend = DB>,
    {
        Ok(self.limit(1).load(session)?.into_iter().next())
    }
}

impl<M: Model, DB: OrmBackend> Default for Query<M, DB> {
    fn default() -> Self {
        Query::new()
    }
}

impl<M: Model, DB, S> fmt::Debug for Query<M, DB, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("model", &M::NAME)
            .field("joins", &self.joins.iter().map(|j| &j.name).collect::<Vec<_>>())
            .field("filters", &self.filters.len())
            .field("order", &self.order.len())
            .field("limit", &self.limit)
            .field("offset", &self.offset)
            .field("options", &self.options)
            .finish()
    }
}
