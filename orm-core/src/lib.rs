//! Relationship loading for diesel: lazy, joined, selectin and raise, as SQLAlchemy does it.
//!
//! Derive [`Model`] on a struct mapped to a diesel `table!`, declare its relations with
//! `#[relation(..)]`, and load object graphs through a [`Session`] that counts every statement:
//!
//! ```ignore
//! use orm_core::prelude::*;
//!
//! #[derive(Model, Debug)]
//! #[orm(table = person)]
//! pub struct Person {
//!     pub id: i32,
//!     pub firstname: String,
//!     pub address_id: Option<i32>,
//!     pub manager_id: Option<i32>,
//!     #[relation(belongs_to = Address, foreign_key = address_id)]
//!     pub address: Rel<Option<Address>>,
//!     #[relation(belongs_to = Person, foreign_key = manager_id, lazy = "joined", join_depth = 1)]
//!     pub manager: Rel<Option<Person>>,
//! }
//!
//! let mut session = Session::new(&mut conn);
//! let people = Person::query()
//!     .filter(person::lastname.eq("Martin"))
//!     .options(selectin(Person::address))
//!     .load(&mut session)?;                       // 2 statements, whatever the row count
//! let city = people[0].address.get().flatten().map(|a| &a.city);   // no SQL
//! let boss = people[0].load(Person::manager, &mut session)?;      // loaded by the join: no SQL
//! ```
//!
//! See the `#[relation]` attribute reference in the [`Model`](macro@Model) derive's docs.

extern crate self as orm_core;

mod backend;
mod error;
mod join;
mod loader;
mod model;
mod options;
mod plan;
mod query;
mod rel;
mod session;
mod sql;

#[doc(hidden)]
pub mod __private;

#[cfg(feature = "postgres")]
pub use crate::backend::pg::ArrayKey;
pub use crate::backend::{AllBackends, KeyFor, KeyForAll, KeyValue, OrmBackend, SqlKey};
pub use crate::error::{Error, NotLoadedReason, Result};
pub use crate::join::{Exists, RelationExt};
pub use crate::model::{Decode, Link, Model, Relation, RelationInfo, RelationKind, Strategy};
pub use crate::options::{
    contains_eager, joined, lazy, raise, raise_all, selectin, IntoOptions, OptionTree, RaiseAll,
    RelOption, RelationOf,
};
pub use crate::query::Query;
pub use crate::rel::{Rel, Shape};
pub use crate::session::{Session, SessionConnection, Statement};

#[doc = include_str!("../../docs/attributes.md")]
pub use orm_derive::Model;

/// `use orm_core::prelude::*;` brings the derive, the runtime types and the load options.
pub mod prelude {
    pub use crate::{
        contains_eager, joined, lazy, raise, raise_all, selectin, Error, IntoOptions, Model, Query,
        Rel, Relation, RelationExt, Session,
    };
}
