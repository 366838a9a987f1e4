//! Querying through relations: explicit joins by relation handle (aliased with diesel's
//! `alias!` for self-joins), `EXISTS` filters (`any`/`has`), and the check that every table a
//! filter names is in the query.

use std::any::TypeId;
use std::marker::PhantomData;

use diesel::expression::Expression;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::Bool;
use diesel::QueryResult;

use crate::backend::OrmBackend;
use crate::error::Error;
use crate::ident;
use crate::model::{Link, Model, Relation, SqlTable};

/// An explicit join of the query (`.join(Person::address)`, `.join_as(Person::manager, manager)`).
#[derive(Debug, Clone)]
pub(crate) struct UserJoin {
    /// `LEFT OUTER JOIN` rather than `INNER JOIN`.
    pub(crate) left: bool,
    /// The join it hangs off: `None` for the root table.
    pub(crate) parent: Option<usize>,
    pub(crate) parent_name: String,
    pub(crate) parent_key: &'static str,
    /// `(parent model, relation index)`.
    pub(crate) relation: (TypeId, usize),
    pub(crate) link: Link,
    pub(crate) target: TypeId,
    pub(crate) table: SqlTable,
    pub(crate) target_key: &'static str,
    /// The name the query and the user's filters use: the table's, or the alias's.
    pub(crate) name: String,
    pub(crate) aliased: bool,
}

impl UserJoin {
    /// For many-to-many: the association table's name in this query.
    pub(crate) fn through_name(&self, through: &str) -> String {
        if self.aliased {
            format!("{}_{}", self.name, through)
        } else {
            through.to_owned()
        }
    }

    /// Every name this join brings into the query.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        if let Link::Through { table, .. } = self.link {
            names.push(self.through_name(table().name));
        }
        names
    }
}

/// Builds the join of relation `R` from `parent` (`None`: resolved from the joins so far).
pub(crate) fn user_join<M: Model, R: Relation>(
    joins: &[UserJoin],
    left: bool,
    from: Option<&str>,
    alias: Option<&'static str>,
) -> Result<UserJoin, Error> {
    let info = R::info();
    let invalid = |reason: String| Error::InvalidJoin {
        model: <R::Parent as Model>::NAME,
        relation: info.name,
        reason,
    };
    let parent = match from {
        Some(name) => match joins.iter().position(|j| j.name == name) {
            Some(i) if joins[i].target == TypeId::of::<R::Parent>() => Some(i),
            Some(_) => {
                return Err(invalid(format!("`{name}` is not a `{}`", <R::Parent as Model>::NAME)))
            }
            None => return Err(invalid(format!("`{name}` is not joined in this query"))),
        },
        None if TypeId::of::<R::Parent>() == TypeId::of::<M>() => None,
        None => match joins.iter().rposition(|j| j.target == TypeId::of::<R::Parent>()) {
            Some(i) => Some(i),
            None => {
                return Err(invalid(format!(
                    "the query has no `{}` to join from: join it first",
                    <R::Parent as Model>::NAME
                )))
            }
        },
    };
    let parent_name = match parent {
        Some(i) => joins[i].name.clone(),
        None => M::table().name.to_owned(),
    };
    let table = <R::Target as Model>::table();
    let name = alias.unwrap_or(table.name).to_owned();
    let taken = name == M::table().name || joins.iter().any(|j| j.names().contains(&name));
    if taken {
        return Err(invalid(format!(
            "`{name}` is already in the query: join it under another name with `join_as` and a diesel `alias!`"
        )));
    }
    Ok(UserJoin {
        left,
        parent,
        parent_name,
        parent_key: <R::Parent as Model>::COLUMNS[<R::Parent as Model>::KEY_COLUMN],
        relation: (TypeId::of::<R::Parent>(), R::INDEX),
        link: info.link,
        target: TypeId::of::<R::Target>(),
        table,
        target_key: <R::Target as Model>::COLUMNS[<R::Target as Model>::KEY_COLUMN],
        name,
        aliased: alias.is_some(),
    })
}

/// Renders ` INNER JOIN target AS name ON ...` (through the association table for many-to-many).
pub(crate) fn walk_user_join<DB: OrmBackend>(
    join: &UserJoin,
    out: &mut AstPass<'_, '_, DB>,
) -> QueryResult<()> {
    let kind = if join.left { " LEFT OUTER JOIN " } else { " INNER JOIN " };
    let parent = (join.parent_name.as_str(), join.parent_key);
    let target = (join.table, join.name.as_str());
    match join.link {
        Link::ParentColumn(column) => {
            ident::join(out, kind, target, (&join.name, join.target_key), (parent.0, column))
        }
        Link::TargetColumn(column) => ident::join(out, kind, target, (&join.name, column), parent),
        Link::Through { table, parent_column, target_column } => {
            let table = table();
            let through = join.through_name(table.name);
            ident::join(out, kind, (table, &through), (&through, parent_column), parent)?;
            ident::join(out, kind, target, (&join.name, join.target_key), (&through, target_column))
        }
    }
}

/// `EXISTS (SELECT 1 FROM target WHERE <link to the parent row> AND (filter))`: SQLAlchemy's
/// `any()` / `has()`. Built by [`RelationExt::any`], [`RelationExt::has`] and
/// [`RelationExt::any_as`]; the parent side is the parent model's table as named in the query.
#[derive(Debug, Clone, Copy)]
pub struct Exists<R, F> {
    filter: F,
    alias: Option<&'static str>,
    _relation: PhantomData<fn() -> R>,
}

impl<R: Relation, F> Expression for Exists<R, F> {
    type SqlType = Bool;
}

impl<R: Relation, F, DB: OrmBackend> QueryFragment<DB> for Exists<R, F>
where
    F: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let info = R::info();
        let parent = <R::Parent as Model>::table().name;
        let parent_key = <R::Parent as Model>::COLUMNS[<R::Parent as Model>::KEY_COLUMN];
        let table = <R::Target as Model>::table();
        let target_key = <R::Target as Model>::COLUMNS[<R::Target as Model>::KEY_COLUMN];
        let name = self.alias.unwrap_or(table.name);
        if name == parent {
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "`{}.{}` relates `{parent}` to itself: use `any_as(alias, ..)` with a diesel `alias!`, \
                     so the filter can tell the related row from the parent",
                    <R::Parent as Model>::NAME,
                    info.name
                )
                .into(),
            ));
        }
        out.push_sql("EXISTS (SELECT 1 FROM ");
        match info.link {
            Link::ParentColumn(column) => {
                ident::table_as(&mut out, table, name)?;
                out.push_sql(" WHERE ");
                ident::column(&mut out, (name, target_key))?;
                out.push_sql(" = ");
                ident::column(&mut out, (parent, column))?;
            }
            Link::TargetColumn(column) => {
                ident::table_as(&mut out, table, name)?;
                out.push_sql(" WHERE ");
                ident::column(&mut out, (name, column))?;
                out.push_sql(" = ");
                ident::column(&mut out, (parent, parent_key))?;
            }
            Link::Through { table: through, parent_column, target_column } => {
                let through = through();
                let link = format!("{name}_{}", through.name);
                ident::table_as(&mut out, through, &link)?;
                out.push_sql(" INNER JOIN ");
                ident::table_as(&mut out, table, name)?;
                out.push_sql(" ON ");
                ident::column(&mut out, (name, target_key))?;
                out.push_sql(" = ");
                ident::column(&mut out, (&link, target_column))?;
                out.push_sql(" WHERE ");
                ident::column(&mut out, (&link, parent_column))?;
                out.push_sql(" = ");
                ident::column(&mut out, (parent, parent_key))?;
            }
        }
        out.push_sql(" AND (");
        self.filter.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }
}

/// Filters through a relation handle, in SQL: `Person::reports.any(person_alias.field(..).eq(..))`.
pub trait RelationExt: Relation {
    /// Parents with at least one related row matching `filter` (a collection's `any()`).
    fn any<F>(self, filter: F) -> Exists<Self, F> {
        let _ = self;
        Exists { filter, alias: None, _relation: PhantomData }
    }

    /// Parents whose related row matches `filter` (a single relation's `has()`).
    fn has<F>(self, filter: F) -> Exists<Self, F> {
        self.any(filter)
    }

    /// `any` with the related table under a diesel alias: needed when the relation is
    /// self-referential, so `filter` names the related rows as `alias.field(..)`.
    fn any_as<S, F>(self, alias: diesel::query_source::Alias<S>, filter: F) -> Exists<Self, F>
    where
        S: diesel::query_source::AliasSource<Target = <Self::Target as Model>::Table>,
    {
        let _ = (self, alias);
        Exists { filter, alias: Some(S::NAME), _relation: PhantomData }
    }
}

impl<R: Relation> RelationExt for R {}

/// The first table a statement qualifies a column with but never brings in (by `FROM`, `JOIN`
/// or `AS`): a filter on a table the query does not join.
pub(crate) fn missing_table(sql: &str, quote: char) -> Option<(String, Vec<String>)> {
    #[derive(PartialEq)]
    enum Token {
        Ident(String),
        Word(String),
        Dot,
        Other,
    }
    let mut tokens = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == quote {
            let mut ident = String::new();
            while let Some(c) = chars.next() {
                if c == quote {
                    if chars.peek() == Some(&quote) {
                        chars.next();
                        ident.push(quote);
                        continue;
                    }
                    break;
                }
                ident.push(c);
            }
            tokens.push(Token::Ident(ident));
        } else if c == '\'' {
            // A literal written into the SQL by `diesel::dsl::sql`; skip it.
            while let Some(c) = chars.next() {
                if c == '\'' && chars.next_if_eq(&'\'').is_none() {
                    break;
                }
            }
            tokens.push(Token::Other);
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(c) = chars.next_if(|c| c.is_alphanumeric() || *c == '_') {
                word.push(c);
            }
            tokens.push(Token::Word(word.to_ascii_uppercase()));
        } else if c == '.' {
            tokens.push(Token::Dot);
        } else if !c.is_whitespace() {
            tokens.push(Token::Other);
        }
    }
    // Dotted chains of identifiers: `"app"."person"` after FROM, JOIN or AS brings in its last
    // name; `"app"."person"."id"` elsewhere is a column of its next-to-last.
    let mut chains: Vec<(bool, Vec<&String>)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Token::Ident(first) = &tokens[i] {
            let brings = i > 0
                && matches!(&tokens[i - 1], Token::Word(w) if matches!(w.as_str(), "FROM" | "JOIN" | "AS"));
            let mut chain = vec![first];
            while let (Some(Token::Dot), Some(Token::Ident(next))) =
                (tokens.get(i + 1), tokens.get(i + 2))
            {
                chain.push(next);
                i += 2;
            }
            // `JOIN "address" AS "t1"` brings in `t1`, not `address`.
            let aliased = matches!(tokens.get(i + 1), Some(Token::Word(w)) if w == "AS");
            chains.push((brings && !aliased, chain));
        }
        i += 1;
    }
    let introduced: Vec<String> = chains
        .iter()
        .filter(|(brings, _)| *brings)
        .filter_map(|(_, chain)| chain.last().map(|name| (*name).clone()))
        .collect();
    for (brings, chain) in &chains {
        if let (false, [.., table, _column]) = (*brings, chain.as_slice()) {
            if !introduced.contains(table) {
                return Some(((*table).clone(), introduced));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::missing_table;

    #[test]
    fn finds_a_table_not_in_the_query() {
        let ok = "SELECT `person`.`id` FROM `person` INNER JOIN `address` ON `address`.`id` = `person`.`address_id` WHERE (`address`.`city` = ?)";
        assert_eq!(missing_table(ok, '`'), None);
        let bad = "SELECT `person`.`id` FROM `person` WHERE (`address`.`city` = ?)";
        assert_eq!(missing_table(bad, '`').map(|(t, _)| t), Some("address".to_owned()));
        let pg = r#"SELECT "person"."id" FROM "person" WHERE EXISTS (SELECT 1 FROM "person" AS "r" WHERE "r"."manager_id" = "person"."id" AND ("r"."name" = $1))"#;
        assert_eq!(missing_table(pg, '"'), None);
        let literal = "SELECT `person`.`id` FROM `person` WHERE name = 'it''s `x`.`y`'";
        assert_eq!(missing_table(literal, '`'), None);
        // A table in a schema is brought in by its own name.
        let schema =
            r#"SELECT "person"."id" FROM "app"."person" WHERE ("app"."person"."name" = $1)"#;
        assert_eq!(missing_table(schema, '"'), None);
        let missing =
            r#"SELECT "person"."id" FROM "app"."person" WHERE ("app"."address"."city" = $1)"#;
        assert_eq!(missing_table(missing, '"').map(|(t, _)| t), Some("address".to_owned()));
        // An aliased join brings in its alias only.
        let aliased = "SELECT `person`.`id` FROM `person` LEFT OUTER JOIN `address` AS `t1` ON `t1`.`id` = `person`.`address_id` WHERE (`address`.`city` = ?)";
        assert_eq!(missing_table(aliased, '`').map(|(t, _)| t), Some("address".to_owned()));
    }
}
