//! What differs between database backends: key binding, key decoding, bind limits.
//!
//! The runtime is generic over [`OrmBackend`]; generated code implements
//! [`Decode`](crate::model::Decode) generically over diesel backends, and the
//! [`AllBackends`](crate::AllBackends) bundle asks for it on every backend this build of `orm-core` enables.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::row::{Field, Row};
use diesel::QueryResult;

use crate::error::DecodeFailure;
use crate::key::KeyValue;
use crate::model::Model;

#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sqlite")]
mod sqlite;

/// A diesel backend the runtime can load graphs on.
pub trait OrmBackend: Backend<QueryBuilder: Default> + Default + Sized + 'static {
    /// How many keys one `IN (...)` list may hold, leaving room for the statement's other binds.
    const MAX_KEYS_PER_STATEMENT: usize;

    /// The identifier quote of the backend's SQL.
    const QUOTE: char;

    /// What makes a new transaction one snapshot for all its statements, run right after its
    /// `BEGIN` (`None` where every transaction already is one, as on SQLite).
    const SNAPSHOT: Option<&'static str>;

    /// Whether `error` is the database refusing a prepared statement that a schema change made
    /// stale (PostgreSQL's `cached plan must not change result type`, after an `ALTER TABLE` on
    /// another connection). diesel keeps such a statement cached: it fails on every execution
    /// until the cache is reset.
    fn is_stale_statement(_error: &diesel::result::Error) -> bool {
        false
    }

    /// What frees the server's prepared statements once diesel's cache forgot them.
    const DEALLOCATE_ALL: Option<&'static str> = None;

    /// The SQL text of `query`, with placeholders.
    fn render<Q: QueryFragment<Self>>(query: &Q) -> QueryResult<String> {
        let mut builder = Self::QueryBuilder::default();
        query.to_sql(&mut builder, &Self::default())?;
        Ok(diesel::query_builder::QueryBuilder::finish(builder))
    }

    /// The SQL text of `query` followed by its bound values, as diesel's `debug_query` shows it.
    fn debug_sql<Q: QueryFragment<Self>>(query: &Q) -> String;

    /// Pushes a key as a bound parameter.
    fn push_key<'b, K: KeyValue>(key: &'b K, out: &mut AstPass<'_, 'b, Self>) -> QueryResult<()>;

    /// Pushes `table.column IN (keys)` in the backend's best form.
    fn push_key_in<'b, K: KeyValue>(
        column: (&'b str, &'b str),
        keys: &'b [K],
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()>;

    /// Pushes `keys` as a one-column table (a derived table whose column is `column`), to
    /// drive a statement per key.
    fn push_key_table<'b, K: KeyValue>(
        keys: &'b [K],
        column: &'b str,
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()>;

    /// What an `OFFSET` without a `LIMIT` needs before it (SQLite wants a `LIMIT`).
    const NO_LIMIT: &'static str;

    /// Whether the backend joins `LATERAL` subqueries (a joined relation's window then reads
    /// each parent's first rows by index, instead of numbering the whole target table).
    const LATERAL: bool = false;

    /// Reads the key at column `index`; `Ok(None)` when it is `NULL`.
    fn key_at<'a, K: KeyValue, R: Row<'a, Self>>(
        row: &R,
        index: usize,
    ) -> deserialize::Result<Option<K>>;

    /// Reads an integer for a field of `bits` bits as 64 bits, and fails, quoting the value, if
    /// it is not an integer or does not fit (SQLite converts silently). `Ok(None)` where the
    /// backend's typed values need no check (PostgreSQL); `Ok(Some(None))` for `NULL`.
    #[allow(clippy::type_complexity)]
    fn read_integer(
        value: Option<Self::RawValue<'_>>,
        bits: u32,
    ) -> Result<Option<Option<i64>>, Box<dyn std::error::Error + Send + Sync>>;

    /// Checks that a value fits a field of SQL type `ST` as stored: SQLite keeps any value in any
    /// column, and diesel would convert it silently (the integer 12 read as the text "12", the
    /// text "abc" as the number 0). Fails quoting the value; `NULL` and the types it does not
    /// know pass. A no-op where columns hold their declared type (PostgreSQL).
    fn check_storage<ST: 'static>(
        _value: &mut Option<Self::RawValue<'_>>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }

    /// Decodes the model whose first column is at `offset`, with its key already read.
    fn decode<'a, M: Model, R: Row<'a, Self>>(
        row: &R,
        offset: usize,
        key: M::Key,
    ) -> deserialize::Result<M>;

    /// `sql` as this backend's fragment.
    fn fragment(sql: &dyn AnyBackendSql) -> &dyn QueryFragment<Self>;
}

/// A piece of SQL every enabled backend can render: a relation option's filter, written before
/// the connection (and so the backend) is known.
pub trait AnyBackendSql: Send + Sync + 'static {
    /// The fragment on SQLite.
    #[cfg(feature = "sqlite")]
    fn sqlite(&self) -> &dyn QueryFragment<diesel::sqlite::Sqlite>;
    /// The fragment on PostgreSQL.
    #[cfg(feature = "postgres")]
    fn pg(&self) -> &dyn QueryFragment<diesel::pg::Pg>;
}

/// A `QueryFragment` on every backend this build enables.
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
pub trait FragmentOnAll: QueryFragment<diesel::sqlite::Sqlite> {}
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
impl<T: QueryFragment<diesel::sqlite::Sqlite>> FragmentOnAll for T {}

/// A `QueryFragment` on every backend this build enables.
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
pub trait FragmentOnAll: QueryFragment<diesel::pg::Pg> {}
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
impl<T: QueryFragment<diesel::pg::Pg>> FragmentOnAll for T {}

/// A `QueryFragment` on every backend this build enables.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub trait FragmentOnAll:
    QueryFragment<diesel::sqlite::Sqlite> + QueryFragment<diesel::pg::Pg>
{
}
#[cfg(all(feature = "sqlite", feature = "postgres"))]
impl<T: QueryFragment<diesel::sqlite::Sqlite> + QueryFragment<diesel::pg::Pg>> FragmentOnAll for T {}

impl<T: FragmentOnAll + Send + Sync + 'static> AnyBackendSql for T {
    #[cfg(feature = "sqlite")]
    fn sqlite(&self) -> &dyn QueryFragment<diesel::sqlite::Sqlite> {
        self
    }
    #[cfg(feature = "postgres")]
    fn pg(&self) -> &dyn QueryFragment<diesel::pg::Pg> {
        self
    }
}

/// Decodes column `index` of `row` into a field, naming the model and column on failure.
#[doc(hidden)]
pub fn field_at<'a, DB, ST: 'static, T, R>(
    row: &R,
    index: usize,
    model: &'static str,
    column: &'static str,
) -> deserialize::Result<T>
where
    DB: OrmBackend,
    T: FromSql<ST, DB> + 'static,
    R: Row<'a, DB>,
{
    let field =
        Row::get(row, index).ok_or_else(|| failure(model, column, "missing column".into()))?;
    // SQLite keeps any value in any column, and diesel converts what it reads to the field's
    // type silently (TEXT 'abc' is 0, REAL 3.7 is 3, 5,000,000,000 wraps in an `i32`): an
    // integer field reads integers it can hold, or fails quoting the value. (Compiled away for
    // other field types.)
    if let Some(bits) = integer_bits::<T>() {
        let checked = DB::read_integer(field.value(), bits)
            .map_err(|source| failure(model, column, source))?;
        if let Some(wide) = checked {
            return integer_into::<T>(wide).ok_or_else(|| {
                failure(model, column, "unexpected NULL in a non-null field".into())
            });
        }
    }
    // One value for both: each `field.value()` asks SQLite for the column again.
    let mut value = field.value();
    DB::check_storage::<ST>(&mut value).map_err(|source| failure(model, column, source))?;
    T::from_nullable_sql(value).map_err(|source| failure(model, column, source))
}

/// An integer field (`i16`, `i32`, `i64`, or their `Option`s) from a value already checked to
/// fit; `None` when the value is `NULL` and the field is not an `Option`.
pub(crate) fn integer_into<T: 'static>(wide: Option<i64>) -> Option<T> {
    let mut out: Option<T> = None;
    let slot = &mut out as &mut dyn std::any::Any;
    if let Some(out) = slot.downcast_mut::<Option<i32>>() {
        *out = wide.map(|w| w as i32);
    } else if let Some(out) = slot.downcast_mut::<Option<Option<i32>>>() {
        *out = Some(wide.map(|w| w as i32));
    } else if let Some(out) = slot.downcast_mut::<Option<i64>>() {
        *out = wide;
    } else if let Some(out) = slot.downcast_mut::<Option<Option<i64>>>() {
        *out = Some(wide);
    } else if let Some(out) = slot.downcast_mut::<Option<i16>>() {
        *out = wide.map(|w| w as i16);
    } else if let Some(out) = slot.downcast_mut::<Option<Option<i16>>>() {
        *out = Some(wide.map(|w| w as i16));
    }
    out
}

/// The width of `T` if it is an integer field (`i16`, `i32`, `i64`, or their `Option`s).
pub(crate) fn integer_bits<T: 'static>() -> Option<u32> {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    if t == TypeId::of::<i32>() || t == TypeId::of::<Option<i32>>() {
        Some(32)
    } else if t == TypeId::of::<i64>() || t == TypeId::of::<Option<i64>>() {
        Some(64)
    } else if t == TypeId::of::<i16>() || t == TypeId::of::<Option<i16>>() {
        Some(16)
    } else {
        None
    }
}

pub(crate) fn failure(
    model: &'static str,
    column: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(DecodeFailure { model, column, source })
}
