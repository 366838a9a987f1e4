//! The SQL names of the static model, rendered: a table in its schema, aliased; a qualified
//! column; a join between two. Every name comes from a `table!` (see [`SqlTable`]).

use diesel::backend::Backend;
use diesel::query_builder::AstPass;
use diesel::QueryResult;

use crate::model::SqlTable;

/// ` KIND JOIN table [AS name] ON left = right`.
pub(crate) fn join<DB: Backend>(
    out: &mut AstPass<'_, '_, DB>,
    kind: &str,
    (table, name): (SqlTable, &str),
    left: (&str, &str),
    right: (&str, &str),
) -> QueryResult<()> {
    out.push_sql(kind);
    table_as(out, table, name)?;
    on(out, left, right)
}

/// ` ON left = right`.
pub(crate) fn on<DB: Backend>(
    out: &mut AstPass<'_, '_, DB>,
    left: (&str, &str),
    right: (&str, &str),
) -> QueryResult<()> {
    out.push_sql(" ON ");
    column(out, left)?;
    out.push_sql(" = ");
    column(out, right)
}

/// `table` (in its schema, if it has one), or `table AS name` when the names differ.
pub(crate) fn table_as<DB: Backend>(
    out: &mut AstPass<'_, '_, DB>,
    table: SqlTable,
    name: &str,
) -> QueryResult<()> {
    if let Some(schema) = table.schema {
        out.push_identifier(schema)?;
        out.push_sql(".");
    }
    out.push_identifier(table.name)?;
    if name != table.name {
        out.push_sql(" AS ");
        out.push_identifier(name)?;
    }
    Ok(())
}

/// `table.column`.
pub(crate) fn column<DB: Backend>(
    out: &mut AstPass<'_, '_, DB>,
    (table, column): (&str, &str),
) -> QueryResult<()> {
    out.push_identifier(table)?;
    out.push_sql(".");
    out.push_identifier(column)
}
