//! Relationship loading for diesel: lazy, joined, selectin and raise, as SQLAlchemy does it.
//!
//! Derive [`Model`](macro@Model) on a struct mapped to a diesel `table!`, declare its relations
//! with `#[relation(..)]`, and load object graphs through a [`Session`] that counts every
//! statement it runs:
//!
//! ```
//! use diesel::connection::SimpleConnection;
//! use diesel::prelude::*;
//! use orm_core::prelude::*;
//!
//! diesel::table! {
//!     person (id) { id -> Integer, name -> Text, manager_id -> Nullable<Integer> }
//! }
//!
//! #[derive(Model, Debug)]
//! #[orm(table = person)]
//! pub struct Person {
//!     pub id: i32,
//!     pub name: String,
//!     pub manager_id: Option<i32>,
//!     #[relation(belongs_to = Person, foreign_key = manager_id)]
//!     pub manager: Rel<Option<Person>>,
//!     #[relation(has_many = Person, foreign_key = manager_id)]
//!     pub reports: Rel<Vec<Person>>,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut conn = SqliteConnection::establish(":memory:")?;
//! conn.batch_execute(
//!     "CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT NOT NULL, manager_id INTEGER);
//!      INSERT INTO person VALUES (1, 'Pierre', NULL), (2, 'Pauline', 1), (3, 'Paul', 1);",
//! )?;
//! let mut session = Session::new(&mut conn);
//! let people = Person::query()
//!     .order_by(person::id)
//!     .options((joined(Person::manager), selectin(Person::reports)))
//!     .load(&mut session)?; // the people with their managers, then one IN (...) for reports
//! assert_eq!(session.statements(), 2);
//!
//! let pauline = &people[1];
//! assert_eq!(pauline.manager.get().flatten().map(|m| m.name.as_str()), Some("Pierre")); // no SQL
//! assert_eq!(people[0].reports.get().map(|r| r.len()), Some(2));
//!
//! // The results' type records what the query loaded: reading that needs no `Result`, and
//! // reading what it did not load (`address`, say) does not compile.
//! assert_eq!(pauline.get(Person::manager).map(|m| m.name.as_str()), Some("Pierre"));
//!
//! // Not loaded by the query: one statement on first access, none after.
//! let reports = pauline.load(Person::reports, &mut session)?;
//! assert!(reports.is_empty());
//! assert_eq!(session.statements(), 2, "Pauline's reports came with the selectin");
//! # Ok(())
//! # }
//! ```
//!
//! The `#[orm]` and `#[relation]` keys are listed in the [`Model`](macro@Model) derive's docs.

extern crate self as orm_core;

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "orm-core needs a backend: enable its `sqlite` feature (on by default) or `postgres`"
);

mod backend;
mod detect;
mod error;
mod graph;
mod ident;
mod identity;
mod join;
mod key;
#[cfg(test)]
mod layers;
mod loader;
mod model;
mod options;
mod plan;
mod query;
mod rel;
mod session;
mod shaping;
mod sql;
mod state;
mod stats;

#[doc(hidden)]
pub mod __private;

pub use crate::backend::{AnyBackendSql, FragmentOnAll, OrmBackend};
pub use crate::detect::{Report, Strictness};
pub use crate::error::{Error, NotLoadedReason, Result};
pub use crate::join::{Exists, RelationExt};
#[cfg(feature = "postgres")]
pub use crate::key::pg::ArrayKey;
pub use crate::key::{KeyFor, KeyForAll, KeyValue, SqlKey};
pub use crate::model::{
    AllBackends, Decode, Link, Model, OrderTerm, Relation, RelationInfo, RelationKind, SqlTable,
    Strategy,
};
pub use crate::options::{
    contains_eager, joined, kind, lazy, raise, raise_all, selectin, Apply, IntoOptions, Joined,
    Loads, OptionTree, Options, QueryOptions, RaiseAll, RelOption, RelationOf, Selectin, SlotFor,
};
pub use crate::query::Query;
pub use crate::rel::{Rel, Shape, ToMany};
pub use crate::session::{Session, SessionConnection};
pub use crate::shaping::{
    count, order_kind, CountOption, DeclaredOrder, JoinedKind, RelationFilter, RelationOrder,
    Shapes, Windowed,
};
pub use crate::state::{
    Counted, Has, HasCount, Here, Loaded, LoadedIn, No, State, There, Untyped, Yes,
};
pub use crate::stats::Statement;

#[doc = include_str!("../docs/attributes.md")]
pub use orm_derive::Model;

/// `use orm_core::prelude::*;` brings the derive, the runtime types and the load options.
pub mod prelude {
    pub use crate::{
        contains_eager, count, joined, lazy, raise, raise_all, selectin, Error, Has, HasCount,
        IntoOptions, Joined, Loaded, Loads, Model, Options, Query, QueryOptions, Rel, Relation,
        RelationExt, Selectin, Session,
    };
}
