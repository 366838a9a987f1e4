//! The traits `#[derive(Model)]` implements, and the static description of relations.

use diesel::backend::Backend;
use diesel::deserialize;
#[cfg(feature = "postgres")]
use diesel::pg::Pg;
use diesel::row::Row;
#[cfg(feature = "sqlite")]
use diesel::sqlite::Sqlite;

use crate::key::KeyValue;
use crate::rel::{Rel, Shape};

/// A struct mapped to a diesel `table!`, with its relations. Implemented by `#[derive(Model)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "relation targets must `#[derive(Model)]`",
    note = "add `#[derive(Model)]` and `#[orm(table = ..)]` to `{Self}`"
)]
pub trait Model: AllBackends + Sized + Send + Sync + 'static {
    /// The primary key's Rust type.
    type Key: KeyValue;
    /// The diesel `table!` type (`person::table`); `alias!`es of it name this model in joins.
    type Table: 'static;
    /// The [typed state](crate::Loaded) a query starts from: the relations declared
    /// `lazy = "joined"` or `"selectin"` are loaded, their objects in the [`Bare`](Model::Bare)
    /// state of their model.
    type Base: crate::State<Model = Self>;
    /// The [typed state](crate::Loaded) with no relation loaded (`PersonState`).
    type Bare: crate::State<Model = Self>;

    /// The struct's name, for messages.
    const NAME: &'static str;
    /// The Rust field names of the columns, in field order (parallel to [`Model::COLUMNS`]).
    const FIELDS: &'static [&'static str];
    /// The SQL column names, in field order; the row decoder reads them by position.
    const COLUMNS: &'static [&'static str];
    /// The index of the primary key in [`Model::COLUMNS`].
    const KEY_COLUMN: usize;
    /// The relations, in field order; a relation's [`Relation::INDEX`] points in here.
    const RELATIONS: &'static [RelationInfo];

    /// The SQL table, as diesel's `table!` names it (its `sql_name` and schema).
    fn table() -> SqlTable;

    /// The primary key of this row.
    fn key(&self) -> &Self::Key;

    /// Whether `other`, this row read again, has the same values: every column field whose type
    /// is `PartialEq` is compared (a field of another type counts as unchanged). A load that
    /// reaches a held object whose row changed builds a new object from the row (see
    /// [`Session`](crate::Session), "held objects").
    #[doc(hidden)]
    fn same_row(&self, other: &Self) -> bool;

    /// Calls `visitor` with the relation type at `index` of [`Model::RELATIONS`].
    #[doc(hidden)]
    fn visit_relation<V: RelationVisitor<Self>>(index: usize, visitor: V) -> Option<V::Output>;
}

/// The bundle of per-backend decoders every [`Model`] provides.
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
pub trait AllBackends: Decode<Sqlite> {}
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
impl<M: Decode<Sqlite>> AllBackends for M {}

/// The bundle of per-backend decoders every [`Model`] provides.
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
pub trait AllBackends: Decode<Pg> {}
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
impl<M: Decode<Pg>> AllBackends for M {}

/// The bundle of per-backend decoders every [`Model`] provides.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub trait AllBackends: Decode<Sqlite> + Decode<Pg> {}
#[cfg(all(feature = "sqlite", feature = "postgres"))]
impl<M: Decode<Sqlite> + Decode<Pg>> AllBackends for M {}

/// Positional row decoding on backend `DB`. Implemented by `#[derive(Model)]` for every
/// backend whose SQL types the fields can hold.
pub trait Decode<DB: Backend>: Sized {
    /// Decodes the model whose first column is at `offset` of `row`; its primary key, already
    /// read by the loader, is `key`.
    fn decode_at<'a, R: Row<'a, DB>>(
        row: &R,
        offset: usize,
        key: <Self as Model>::Key,
    ) -> deserialize::Result<Self>
    where
        Self: Model;
}

/// The four relation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// Many-to-one: the foreign key is on this table.
    BelongsTo,
    /// One-to-one: the foreign key is on the target table.
    HasOne,
    /// One-to-many: the foreign key is on the target table.
    HasMany,
    /// Many-to-many through an association table.
    ManyToMany,
}

impl RelationKind {
    /// Whether the relation holds a collection.
    pub fn is_collection(self) -> bool {
        matches!(self, RelationKind::HasMany | RelationKind::ManyToMany)
    }
}

/// How a relation is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// `lazy = "select"`: one query on first access, through the session.
    Lazy,
    /// `lazy = "joined"`: a `LEFT OUTER JOIN` in the parent's statement.
    Joined,
    /// `lazy = "selectin"`: one `WHERE key IN (...)` statement per relation after the parents.
    Selectin,
    /// `lazy = "raise"`: reading it unloaded is [`Error::NotLoaded`](crate::Error::NotLoaded).
    Raise,
    /// A query option only: fill the relation from the query's own `.join(..)` of it.
    ContainsEager,
}

/// The SQL columns that link a parent to its related rows.
#[derive(Debug, Clone, Copy)]
pub enum Link {
    /// `target.pk = parent.column` (belongs_to).
    ParentColumn(&'static str),
    /// `target.column = parent.pk` (has_one, has_many).
    TargetColumn(&'static str),
    /// `through.parent_column = parent.pk AND target.pk = through.target_column` (many_to_many).
    Through {
        /// The association table.
        table: fn() -> SqlTable,
        /// Its column referencing the parent's key.
        parent_column: &'static str,
        /// Its column referencing the target's key.
        target_column: &'static str,
    },
}

/// A table as diesel's `table!` names it in SQL: its `sql_name`, in its schema if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlTable {
    /// The schema (`table! { app.person .. }`), if named.
    pub schema: Option<&'static str>,
    /// The table's SQL name: the name it is referred to by in the statement.
    pub name: &'static str,
}

impl SqlTable {
    /// The names of the `table!` type `T`, as diesel renders its `FROM` clause (once per table
    /// and process: the strings live as long as the program, like the `table!` itself).
    pub fn of<T>() -> SqlTable
    where
        T: diesel::QuerySource + Default,
        T::FromClause: diesel::query_builder::QueryFragment<names::Backend>,
    {
        use diesel::query_builder::{QueryBuilder, QueryFragment};
        let mut builder = <names::Backend as Backend>::QueryBuilder::default();
        let rendered = T::default()
            .from_clause()
            .to_sql(&mut builder, &names::Backend::default())
            .map(|()| builder.finish())
            .unwrap_or_default();
        let mut parts = quoted_identifiers(&rendered, names::QUOTE);
        let name = parts.pop().unwrap_or(rendered);
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        SqlTable { schema: parts.pop().map(leak), name: leak(name) }
    }
}

/// The first backend this build enables: what renders what every backend spells alike.
pub(crate) use names::Backend as FirstBackend;

/// The backend [`SqlTable::of`] renders a `FROM` clause on to read a table's names (any enabled
/// one: all spell them alike), and its identifier quote.
#[cfg(feature = "sqlite")]
mod names {
    pub(crate) type Backend = diesel::sqlite::Sqlite;
    pub(super) const QUOTE: char = '`';
}
/// The backend [`SqlTable::of`] renders a `FROM` clause on to read a table's names (any enabled
/// one: all spell them alike), and its identifier quote.
#[cfg(not(feature = "sqlite"))]
mod names {
    pub(crate) type Backend = diesel::pg::Pg;
    pub(super) const QUOTE: char = '"';
}

/// The identifiers of `sql`, a dotted chain of identifiers quoted with `quote` (doubled inside).
pub(crate) fn quoted_identifiers(sql: &str, quote: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != quote {
            continue;
        }
        let mut ident = String::new();
        while let Some(c) = chars.next() {
            if c == quote {
                if chars.next_if_eq(&quote).is_some() {
                    ident.push(quote);
                    continue;
                }
                break;
            }
            ident.push(c);
        }
        parts.push(ident);
    }
    parts
}

/// The SQL name of the column whose field is `field`, from a model's [`Model::FIELDS`] and
/// [`Model::COLUMNS`] (`field` itself if no field has that name: the derive reports it).
#[doc(hidden)]
pub const fn column_named(
    fields: &'static [&'static str],
    columns: &'static [&'static str],
    field: &'static str,
) -> &'static str {
    let mut i = 0;
    while i < fields.len() && i < columns.len() {
        if str_eq(fields[i], field) {
            return columns[i];
        }
        i += 1;
    }
    field
}

/// Whether `fields` (a model's [`Model::FIELDS`]) has `field`: the derive's check of a declared
/// `order_by` against the target's fields.
#[doc(hidden)]
pub const fn has_field(fields: &'static [&'static str], field: &'static str) -> bool {
    let mut i = 0;
    while i < fields.len() {
        if str_eq(fields[i], field) {
            return true;
        }
        i += 1;
    }
    false
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The static description of one relation field.
#[derive(Debug, Clone, Copy)]
pub struct RelationInfo {
    /// The field name.
    pub name: &'static str,
    /// The related model's name.
    pub target: &'static str,
    /// Which kind of relation.
    pub kind: RelationKind,
    /// The strategy used when no query option names this relation.
    pub strategy: Strategy,
    /// For `joined`/`selectin`: how many times the relation may repeat along one load path.
    pub join_depth: Option<u32>,
    /// The columns linking both sides.
    pub link: Link,
    /// The declared order of a collection (`order_by = created_at.desc()`), on the target's
    /// columns; empty for key order. A `has_one` takes the first row in this order.
    pub order_by: &'static [OrderTerm],
    /// `innerjoin = true`: a joined load uses an `INNER JOIN`, which drops the parents without
    /// a related row (SQLAlchemy's `innerjoin=True`).
    pub innerjoin: bool,
}

/// One term of a relation's order: a column of the target's table and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderTerm {
    /// The column's SQL name.
    pub column: &'static str,
    /// `DESC` rather than `ASC`.
    pub descending: bool,
}

/// A relation, as a type: the marker struct `#[derive(Model)]` generates per relation field.
///
/// Values of these types are the relation handles (`Person::address`) used in load options and joins.
pub trait Relation: Copy + Send + Sync + 'static {
    /// The model owning the relation field.
    type Parent: Model;
    /// The related model.
    type Target: Model;
    /// The field's shape: `Option<T>`, `T` or `Vec<T>`.
    type Shape: Shape<Target = Self::Target>;
    /// The key both sides are matched on: the target's key for belongs_to, the parent's otherwise.
    type JoinKey: KeyValue;

    /// Index in `Parent::RELATIONS`.
    const INDEX: usize;

    /// The relation's static description.
    fn info() -> &'static RelationInfo {
        &<Self::Parent as Model>::RELATIONS[Self::INDEX]
    }

    /// The relation slot on a parent.
    fn slot(parent: &Self::Parent) -> &Rel<Self::Shape>;

    /// The join key on the parent side (`None` for a `NULL` foreign key).
    fn parent_key(parent: &Self::Parent) -> Option<&Self::JoinKey>;

    /// The join key on the target side; `None` for many-to-many, whose link lives in the
    /// association table.
    fn target_key(target: &Self::Target) -> Option<&Self::JoinKey>;
}

/// Calls back with a relation as a type, given its runtime index (see [`Model::visit_relation`]).
#[doc(hidden)]
pub trait RelationVisitor<M: Model> {
    /// The visitor's result.
    type Output;
    /// Called with the relation type.
    fn visit<R: Relation<Parent = M>>(self) -> Self::Output;
}

/// A foreign key field: `K` or `Option<K>`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "foreign key of type `{Self}` does not match the related key type `{K}`",
    label = "expected `{K}` or `Option<{K}>`"
)]
pub trait AsKey<K> {
    /// The key, `None` for `NULL`.
    fn as_key(&self) -> Option<&K>;
}

impl<K: KeyValue> AsKey<K> for K {
    fn as_key(&self) -> Option<&K> {
        Some(self)
    }
}

impl<K: KeyValue> AsKey<K> for Option<K> {
    fn as_key(&self) -> Option<&K> {
        self.as_ref()
    }
}
