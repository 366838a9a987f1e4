//! What differs between database backends: key binding, key decoding, bind limits.
//!
//! The runtime is generic over [`OrmBackend`]; generated code implements
//! [`Decode`](crate::model::Decode) generically over diesel backends, and the
//! [`AllBackends`](crate::AllBackends) bundle asks for it on every backend this build of `orm-core` enables.

use std::any::TypeId;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::row::{Field, Row};
use diesel::sql_types::{BigInt, Integer, SmallInt, Text};
use diesel::sqlite::{Sqlite, SqliteType};
use diesel::QueryResult;

use crate::error::DecodeFailure;
use crate::key::{KeyFor, KeyValue};
use crate::model::{Decode, Model};

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

    /// What an `OFFSET` without a `LIMIT` needs before it (SQLite wants a `LIMIT`).
    const NO_LIMIT: &'static str;

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
}

impl OrmBackend for Sqlite {
    // Bundled SQLite allows 32,766 bound parameters; keep headroom for the query's own binds.
    const MAX_KEYS_PER_STATEMENT: usize = 32_000;
    const QUOTE: char = '`';
    // A deferred transaction reads one snapshot from its first read on (WAL or rollback journal).
    const SNAPSHOT: Option<&'static str> = None;

    fn debug_sql<Q: QueryFragment<Self>>(query: &Q) -> String {
        diesel::debug_query::<Sqlite, _>(query).to_string()
    }

    const NO_LIMIT: &'static str = " LIMIT -1";

    fn push_key<'b, K: KeyValue>(key: &'b K, out: &mut AstPass<'_, 'b, Self>) -> QueryResult<()> {
        <K as KeyFor<Sqlite>>::push_bind(key, out)
    }

    fn push_key_in<'b, K: KeyValue>(
        (table, column): (&'b str, &'b str),
        keys: &'b [K],
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        crate::ident::column(out, (table, column))?;
        if let [key] = keys {
            // One key (a lazy load): `= ?` keeps the statement cacheable.
            out.push_sql(" = ");
            return Self::push_key(key, out);
        }
        // The list length changes per call: caching each length would flood the statement cache.
        out.unsafe_to_cache_prepared();
        out.push_sql(" IN (");
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            Self::push_key(key, out)?;
        }
        out.push_sql(")");
        Ok(())
    }

    fn key_at<'a, K: KeyValue, R: Row<'a, Self>>(
        row: &R,
        index: usize,
    ) -> deserialize::Result<Option<K>> {
        let field = Row::get(row, index).ok_or("column index out of range")?;
        if let Some(bits) = integer_bits::<K>() {
            // Read once, as 64 bits, and refuse a key the field cannot hold.
            let wide = Self::read_integer(field.value(), bits)?.flatten();
            return Ok(wide.and_then(|w| integer_into::<K>(Some(w))));
        }
        // One value for both: each `field.value()` asks SQLite for the column again.
        let mut value = field.value();
        Self::check_storage::<K::SqlType>(&mut value)?;
        <K as KeyFor<Sqlite>>::decode(value)
    }

    fn read_integer(
        value: Option<Self::RawValue<'_>>,
        bits: u32,
    ) -> Result<Option<Option<i64>>, Box<dyn std::error::Error + Send + Sync>> {
        let Some(mut value) = value else { return Ok(Some(None)) };
        let wide = match value.value_type() {
            None => return Ok(Some(None)),
            Some(SqliteType::Long) => value.read_long(),
            Some(_) => return Err(format!("{} is not an integer", described(&mut value)).into()),
        };
        match bits {
            64.. => Ok(Some(Some(wide))),
            _ if (-(1i64 << (bits - 1))..1i64 << (bits - 1)).contains(&wide) => {
                Ok(Some(Some(wide)))
            }
            _ => Err(format!("value {wide} does not fit in a {bits}-bit integer field").into()),
        }
    }

    fn check_storage<ST: 'static>(
        value: &mut Option<Self::RawValue<'_>>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some((classes, expected)) = sqlite_storage::<ST>() else { return Ok(()) };
        let Some(value) = value else { return Ok(()) };
        match value.value_type() {
            None => Ok(()),
            Some(found) if classes.contains(&found) => Ok(()),
            Some(_) => Err(format!("{} is not {expected}", described(value)).into()),
        }
    }

    fn decode<'a, M: Model, R: Row<'a, Self>>(
        row: &R,
        offset: usize,
        key: M::Key,
    ) -> deserialize::Result<M> {
        <M as Decode<Sqlite>>::decode_at(row, offset, key)
    }
}

/// The SQLite storage classes a column of SQL type `ST` may hold, and what its values are, for
/// the types whose values diesel would otherwise convert: text, numbers, blobs, booleans.
/// (Integers are read by [`OrmBackend::read_integer`]; dates and times are stored as text or
/// numbers, both of which diesel reads.)
fn sqlite_storage<ST: 'static>() -> Option<(&'static [SqliteType], &'static str)> {
    use diesel::sql_types::{Binary, Bool, Double, Float, Nullable};
    fn is<ST: 'static, T: 'static>() -> bool {
        TypeId::of::<ST>() == TypeId::of::<T>() || TypeId::of::<ST>() == TypeId::of::<Nullable<T>>()
    }
    if is::<ST, Text>() {
        Some((&[SqliteType::Text], "text"))
    } else if is::<ST, Double>() || is::<ST, Float>() {
        Some((&[SqliteType::Double, SqliteType::Long], "a number"))
    } else if is::<ST, Integer>() || is::<ST, BigInt>() || is::<ST, SmallInt>() {
        Some((&[SqliteType::Long], "an integer"))
    } else if is::<ST, Bool>() {
        Some((&[SqliteType::Long], "a boolean"))
    } else if is::<ST, Binary>() {
        Some((&[SqliteType::Binary], "a blob"))
    } else {
        None
    }
}

/// A SQLite value as an error message shows it: its storage class and the value (text quoted
/// and cut, a blob by its size).
fn described(value: &mut diesel::sqlite::SqliteValue<'_, '_, '_>) -> String {
    match value.value_type() {
        None => "NULL".to_owned(),
        Some(SqliteType::Long) => format!("INTEGER value {}", value.read_long()),
        Some(SqliteType::Double) => format!("REAL value {:?}", value.read_double()),
        Some(SqliteType::Binary) => format!("BLOB value of {} bytes", value.read_blob().len()),
        Some(_) => format!("TEXT value {}", quoted(value.read_text())),
    }
}

/// `text` in quotes for an error message, cut after 64 characters.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(feature = "postgres")]
pub(crate) mod pg {
    use diesel::deserialize;
    use diesel::pg::Pg;
    use diesel::query_builder::{AstPass, QueryFragment};
    use diesel::row::{Field, Row};

    use diesel::QueryResult;

    use super::OrmBackend;
    use crate::key::{KeyFor, KeyValue};
    use crate::model::{Decode, Model};

    impl OrmBackend for Pg {
        // One array parameter holds any number of keys: no chunking.
        const MAX_KEYS_PER_STATEMENT: usize = usize::MAX;
        const QUOTE: char = '"';
        // READ COMMITTED would give each statement of a multi-statement load its own snapshot.
        const SNAPSHOT: Option<&'static str> =
            Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        const NO_LIMIT: &'static str = "";
        const DEALLOCATE_ALL: Option<&'static str> = Some("DEALLOCATE ALL");

        fn is_stale_statement(error: &diesel::result::Error) -> bool {
            // diesel 2.3 exposes neither the SQLSTATE (0A000, shared by every "feature not
            // supported") nor a way to evict one statement: the server's message it is.
            matches!(error, diesel::result::Error::DatabaseError(_, info)
                if info.message() == "cached plan must not change result type")
        }

        fn debug_sql<Q: QueryFragment<Self>>(query: &Q) -> String {
            diesel::debug_query::<Pg, _>(query).to_string()
        }

        fn push_key<'b, K: KeyValue>(
            key: &'b K,
            out: &mut AstPass<'_, 'b, Self>,
        ) -> QueryResult<()> {
            <K as KeyFor<Pg>>::push_bind(key, out)
        }

        fn push_key_in<'b, K: KeyValue>(
            (table, column): (&'b str, &'b str),
            keys: &'b [K],
            out: &mut AstPass<'_, 'b, Self>,
        ) -> QueryResult<()> {
            crate::ident::column(out, (table, column))?;
            // As diesel's `eq_any` renders it: one statement and one cache entry for any count.
            out.push_sql(" = ANY(");
            K::push_array(keys, out)?;
            out.push_sql(")");
            Ok(())
        }

        fn read_integer(
            _: Option<Self::RawValue<'_>>,
            _: u32,
        ) -> Result<Option<Option<i64>>, Box<dyn std::error::Error + Send + Sync>> {
            // PostgreSQL values carry their width: diesel refuses a wider one itself.
            Ok(None)
        }

        fn key_at<'a, K: KeyValue, R: Row<'a, Self>>(
            row: &R,
            index: usize,
        ) -> deserialize::Result<Option<K>> {
            let field = Row::get(row, index).ok_or("column index out of range")?;
            <K as KeyFor<Pg>>::decode(field.value())
        }

        fn decode<'a, M: Model, R: Row<'a, Self>>(
            row: &R,
            offset: usize,
            key: M::Key,
        ) -> deserialize::Result<M> {
            <M as Decode<Pg>>::decode_at(row, offset, key)
        }
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
