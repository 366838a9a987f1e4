//! PostgreSQL: keys bound as one array, values typed by the server.

use diesel::deserialize;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::row::{Field, Row};

use diesel::QueryResult;

use crate::backend::OrmBackend;
use crate::key::{KeyFor, KeyValue};
use crate::model::{Decode, Model};

impl OrmBackend for Pg {
    const LATERAL: bool = true;
    // One array parameter holds any number of keys: no chunking.
    const MAX_KEYS_PER_STATEMENT: usize = usize::MAX;
    const QUOTE: char = '"';
    // READ COMMITTED would give each statement of a multi-statement load its own snapshot.
    const SNAPSHOT: Option<&'static str> = Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    const NO_LIMIT: &'static str = "";
    const DEALLOCATE_ALL: Option<&'static str> = Some("DEALLOCATE ALL");

    fn is_stale_statement(error: &diesel::result::Error) -> bool {
        // diesel 2.3 exposes neither the SQLSTATE (0A000, shared by every "feature not
        // supported") nor a way to evict one statement: the server's message it is.
        matches!(error, diesel::result::Error::DatabaseError(_, info)
            if info.message() == "cached plan must not change result type")
    }

    fn fragment(sql: &dyn crate::backend::AnyBackendSql) -> &dyn QueryFragment<Self> {
        sql.pg()
    }

    fn debug_sql<Q: QueryFragment<Self>>(query: &Q) -> String {
        diesel::debug_query::<Pg, _>(query).to_string()
    }

    fn push_key<'b, K: KeyValue>(key: &'b K, out: &mut AstPass<'_, 'b, Self>) -> QueryResult<()> {
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

    fn push_key_table<'b, K: KeyValue>(
        keys: &'b [K],
        column: &'b str,
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        // One array parameter, as `push_key_in` binds it.
        out.push_sql("(SELECT unnest(");
        K::push_array(keys, out)?;
        out.push_sql(") AS ");
        out.push_identifier(column)?;
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
