//! Keys: the Rust types a primary or foreign key can have, and how each backend binds and
//! decodes them. The bottom of the crate: the identity map, the model and the SQL rendering all
//! name keys.

use std::fmt::Debug;
use std::hash::Hash;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::query_builder::AstPass;
use diesel::serialize::ToSql;
use diesel::sql_types::{
    BigInt, Binary, HasSqlType, Integer, SingleValue, SmallInt, SqlType, Text,
};
#[cfg(feature = "sqlite")]
use diesel::sqlite::Sqlite;
use diesel::QueryResult;

/// A Rust type usable as a primary or foreign key, with the SQL type it binds as.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a key type",
    note = "keys are `i16`, `i32`, `i64`, `String` and `Vec<u8>`, and `uuid::Uuid` in a PostgreSQL-only build with orm-core's `uuid` feature"
)]
pub trait SqlKey {
    /// The diesel SQL type of the key column.
    type SqlType: SqlType + SingleValue;

    /// The key as an array index, for keys that are small non-negative integers (ids from a
    /// sequence): the identity map keeps those in key order without hashing. `None` by default.
    fn as_index(&self) -> Option<usize> {
        None
    }
}

impl SqlKey for i16 {
    type SqlType = SmallInt;

    fn as_index(&self) -> Option<usize> {
        usize::try_from(*self).ok()
    }
}
impl SqlKey for i32 {
    type SqlType = Integer;

    fn as_index(&self) -> Option<usize> {
        usize::try_from(*self).ok()
    }
}
impl SqlKey for i64 {
    type SqlType = BigInt;

    fn as_index(&self) -> Option<usize> {
        usize::try_from(*self).ok()
    }
}
impl SqlKey for String {
    type SqlType = Text;
}
/// Bytes (`Binary`: SQLite's `BLOB`, PostgreSQL's `bytea`): a UUID stored as its 16 bytes, as
/// diesel maps it on SQLite.
impl SqlKey for Vec<u8> {
    type SqlType = Binary;
}
#[cfg(all(feature = "uuid", feature = "postgres"))]
impl SqlKey for uuid::Uuid {
    type SqlType = diesel::sql_types::Uuid;
}

/// Binding and decoding a key on one backend.
pub trait KeyFor<DB: Backend>: Sized {
    /// Pushes `self` as a bound parameter.
    fn push_bind<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>;
    /// Decodes a key from a raw value; `None` for SQL `NULL`.
    fn decode(value: Option<DB::RawValue<'_>>) -> deserialize::Result<Option<Self>>;
}

impl<DB, K> KeyFor<DB> for K
where
    DB: Backend + HasSqlType<K::SqlType>,
    K: SqlKey + ToSql<K::SqlType, DB> + FromSql<K::SqlType, DB>,
{
    fn push_bind<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_bind_param::<K::SqlType, K>(self)
    }

    fn decode(value: Option<DB::RawValue<'_>>) -> deserialize::Result<Option<Self>> {
        value.map(K::from_sql).transpose()
    }
}

/// A key type: hashable, ordered, and bindable and decodable on every enabled backend.
pub trait KeyValue:
    SqlKey + Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static + KeyForAll
{
}

impl<K> KeyValue for K where
    K: SqlKey + Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static + KeyForAll
{
}

/// [`KeyFor`] every enabled backend.
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a key type on every backend this build enables",
    note = "keys are `i16`, `i32`, `i64`, `String` and `Vec<u8>`; `uuid::Uuid` keys need a PostgreSQL-only build of orm-core (`default-features = false, features = [\"postgres\", \"uuid\"]`)"
)]
pub trait KeyForAll: KeyFor<Sqlite> {}
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
impl<K: KeyFor<Sqlite>> KeyForAll for K {}

/// [`KeyFor`] every enabled backend.
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a key type on every backend this build enables",
    note = "keys are `i16`, `i32`, `i64`, `String`, `Vec<u8>` and, with orm-core's `uuid` feature, `uuid::Uuid`"
)]
pub trait KeyForAll: KeyFor<Pg> + pg::ArrayKey {}
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
impl<K: KeyFor<Pg> + pg::ArrayKey> KeyForAll for K {}

/// [`KeyFor`] every enabled backend.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a key type on every backend this build enables",
    note = "keys are `i16`, `i32`, `i64`, `String` and `Vec<u8>`; `uuid::Uuid` keys need a PostgreSQL-only build of orm-core (`default-features = false, features = [\"postgres\", \"uuid\"]`): diesel maps `uuid` on PostgreSQL only"
)]
pub trait KeyForAll: KeyFor<Sqlite> + KeyFor<Pg> + pg::ArrayKey {}
#[cfg(all(feature = "sqlite", feature = "postgres"))]
impl<K: KeyFor<Sqlite> + KeyFor<Pg> + pg::ArrayKey> KeyForAll for K {}

/// PostgreSQL's array binding of keys.
#[cfg(feature = "postgres")]
pub(crate) mod pg {
    use diesel::pg::Pg;
    use diesel::query_builder::AstPass;
    use diesel::serialize::ToSql;
    use diesel::sql_types::{Array, HasSqlType};
    use diesel::QueryResult;

    use super::SqlKey;

    /// A key bound as one PostgreSQL array (`= ANY($1)`).
    pub trait ArrayKey: Sized {
        /// Pushes `keys` as one array parameter.
        fn push_array<'b>(keys: &'b [Self], out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
    }

    impl<K> ArrayKey for K
    where
        K: SqlKey + ToSql<K::SqlType, Pg>,
        Pg: HasSqlType<K::SqlType>,
    {
        fn push_array<'b>(keys: &'b [Self], out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            out.push_bind_param::<Array<K::SqlType>, [K]>(keys)
        }
    }
}

#[cfg(feature = "postgres")]
use diesel::pg::Pg;
