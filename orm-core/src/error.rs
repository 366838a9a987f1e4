//! The runtime's one error type.

use std::fmt;

/// Result alias used across `orm-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while querying or loading relations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The relation was not loaded and cannot be loaded here: it uses (or was set to) `raise`,
    /// or it was read with [`Rel::get`](crate::Rel::get), which never runs SQL.
    #[error("relation `{model}.{relation}` {reason}")]
    NotLoaded {
        /// The model that owns the relation.
        model: &'static str,
        /// The relation's field name.
        relation: &'static str,
        /// Why it was not loaded.
        reason: NotLoadedReason,
    },

    /// A non-optional relation (`Rel<T>`) found no related row: the foreign key dangles.
    #[error(
        "relation `{model}.{relation}` is not optional but no `{target}` row matches key {key}"
    )]
    Dangling {
        /// The model that owns the relation.
        model: &'static str,
        /// The relation's field name.
        relation: &'static str,
        /// The related model.
        target: &'static str,
        /// The key that matched nothing, as text.
        key: String,
    },

    /// Two rows of one statement reached one object: a table the statement reads holds two rows
    /// with one primary key (its constraint is missing). Merging them would lose a row.
    #[error("`{model}` {key} came in two rows of one statement: a table it reads has rows with the same primary key")]
    DuplicateKey {
        /// The model.
        model: &'static str,
        /// The key, as text.
        key: String,
    },

    /// [`Session::refresh`](crate::Session::refresh) found no row for the object: it was
    /// deleted since it was loaded. The session no longer holds it.
    #[error("cannot refresh `{model}` {key}: its row no longer exists")]
    Deleted {
        /// The model.
        model: &'static str,
        /// The key, as text.
        key: String,
    },

    /// A column value could not be decoded into its field.
    #[error("cannot decode column `{column}` of `{model}`: {source}")]
    Decode {
        /// The model being decoded.
        model: &'static str,
        /// The column that failed.
        column: &'static str,
        /// What diesel or the value reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An explicit join cannot be built as asked.
    #[error("cannot join `{model}.{relation}`: {reason}")]
    InvalidJoin {
        /// The model that owns the relation.
        model: &'static str,
        /// The relation's field name.
        relation: &'static str,
        /// What is wrong, and the fix.
        reason: String,
    },

    /// A filter or order names a table the query neither selects from nor joins.
    #[error("the query filters on `{table}`, which it does not join (tables in the query: {available:?}); add `.join(..)` for it (an eager `joined(..)` load joins under an anonymous alias: to filter on it, `.join(..)` the relation and load it with `contains_eager(..)`)")]
    TableNotInQuery {
        /// The table (or alias) named.
        table: String,
        /// The names the query does bring in.
        available: Vec<String>,
    },

    /// A `contains_eager` option names a relation the query did not join.
    #[error(
        "`contains_eager` on `{model}.{relation}` needs the query to `.join(..)` that relation"
    )]
    ContainsEagerWithoutJoin {
        /// The model that owns the relation.
        model: &'static str,
        /// The relation's field name.
        relation: &'static str,
    },

    /// A lazy load in a strict session ([`Strictness::Strict`](crate::Strictness::Strict)).
    #[error("relation `{model}.{relation}` was not loaded and the session is strict (read at {location}): load it with `selectin({model}::{relation})` or `joined({model}::{relation})`")]
    StrictLazyLoad {
        /// The model that owns the relation.
        model: &'static str,
        /// The relation's field name.
        relation: &'static str,
        /// Where it was read.
        location: &'static std::panic::Location<'static>,
    },

    /// A second lazy load of one relation over the objects of one query, in a session in
    /// [`Strictness::NPlusOneOnly`](crate::Strictness::NPlusOneOnly) mode.
    #[error("N+1: `{model}.{relation}` is lazily loaded again for another object of the same query (read at {location}): load it with `selectin({model}::{relation})`")]
    NPlusOne {
        /// The model that owns the relation.
        model: &'static str,
        /// The relation's field name.
        relation: &'static str,
        /// Where it was read.
        location: &'static std::panic::Location<'static>,
    },

    /// The database rejected a statement; `sql` is the statement that failed.
    #[error("database error: {source}\n  in statement: {sql}")]
    Database {
        /// The SQL text of the failing statement, with placeholders for the bound values.
        sql: String,
        /// diesel's error.
        #[source]
        source: diesel::result::Error,
    },
}

/// Why a relation read returned [`Error::NotLoaded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotLoadedReason {
    /// The relation's strategy is `raise` for this object (its default, or a query option).
    Raise,
    /// The value was read without a session ([`Rel::get`](crate::Rel::get)), which never runs SQL.
    NoSession,
}

impl fmt::Display for NotLoadedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotLoadedReason::Raise => {
                "uses `raise` and was not loaded: load it with `joined(..)` or `selectin(..)`"
            }
            NotLoadedReason::NoSession => {
                "was not loaded: read it with `.load(rel, &mut session)` or load it eagerly"
            }
        })
    }
}

/// A decode failure inside diesel's row callback, carried out through diesel's error type.
#[derive(Debug)]
pub(crate) struct DecodeFailure {
    pub(crate) model: &'static str,
    pub(crate) column: &'static str,
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode `{}.{}`: {}", self.model, self.column, self.source)
    }
}

impl std::error::Error for DecodeFailure {}

impl Error {
    /// Wraps a diesel error raised by `sql`, unpacking decode failures into [`Error::Decode`].
    pub(crate) fn from_diesel(source: diesel::result::Error, sql: impl FnOnce() -> String) -> Self {
        match source {
            diesel::result::Error::DeserializationError(inner) => {
                match inner.downcast::<DecodeFailure>() {
                    Ok(f) => Error::Decode { model: f.model, column: f.column, source: f.source },
                    Err(inner) => Error::Database {
                        sql: sql(),
                        source: diesel::result::Error::DeserializationError(inner),
                    },
                }
            }
            source => Error::Database { sql: sql(), source },
        }
    }
}
