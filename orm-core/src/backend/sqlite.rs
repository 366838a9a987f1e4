//! SQLite: keys bound one by one, and values checked against the column's declared type
//! (SQLite keeps any value in any column).

use std::any::TypeId;

use diesel::deserialize;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::row::{Field, Row};
use diesel::sql_types::{BigInt, Integer, SmallInt, Text};
use diesel::sqlite::{Sqlite, SqliteType};
use diesel::QueryResult;

use crate::backend::{integer_bits, integer_into, OrmBackend};
use crate::key::{KeyFor, KeyValue};
use crate::model::{Decode, Model};

impl OrmBackend for Sqlite {
    // Bundled SQLite allows 32,766 bound parameters; keep headroom for the query's own binds.
    const MAX_KEYS_PER_STATEMENT: usize = 32_000;
    const QUOTE: char = '`';
    // A deferred transaction reads one snapshot from its first read on (WAL or rollback journal).
    const SNAPSHOT: Option<&'static str> = None;

    fn fragment(sql: &dyn crate::backend::AnyBackendSql) -> &dyn QueryFragment<Self> {
        sql.sqlite()
    }

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

    fn push_key_table<'b, K: KeyValue>(
        keys: &'b [K],
        column: &'b str,
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        // The list length changes per call, as in `push_key_in`.
        out.unsafe_to_cache_prepared();
        out.push_sql("(SELECT column1 AS ");
        out.push_identifier(column)?;
        out.push_sql(" FROM (VALUES ");
        for (i, key) in keys.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            Self::push_key(key, out)?;
            out.push_sql(")");
        }
        out.push_sql("))");
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
