//! Shared set-up for the behaviour tests: one test source, run on every backend.
//!
//! [`backend_tests!`] compiles the tests it wraps once per backend, in a module that brings in
//! that backend's [`sqlite`] or [`pg`] helpers under the same names (`Conn`, `seeded`, `empty`,
//! `pool`, `q`), so a test body is written once and runs on SQLite and, with the `postgres`
//! feature and a `DATABASE_URL`, on PostgreSQL.

pub use orm_examples::schema::{address, person, person_project, project};
pub use orm_examples::{populate, Address, Counts, Person, Project};

pub mod blog;

/// Wraps test items so they run on every enabled backend.
#[macro_export]
macro_rules! backend_tests {
    ($($item:item)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::sqlite::*;
            $($item)*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::pg::*;
            $($item)*
        }
    };
}

/// The SQLite side of the harness: in-memory databases, pools over a temporary file.
pub mod sqlite {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::r2d2::{ConnectionManager, Pool};

    use super::{populate, Counts};

    /// The connection type.
    pub type Conn = SqliteConnection;

    /// An in-memory database seeded with `people` people.
    pub fn seeded(people: usize) -> (Conn, Counts) {
        let mut conn = Conn::establish(":memory:").expect("in-memory SQLite opens");
        conn.batch_execute("PRAGMA foreign_keys = ON").expect("pragma");
        let counts = populate(&mut conn, people).expect("seeding succeeds");
        (conn, counts)
    }

    /// An empty in-memory database with the schema.
    pub fn empty() -> Conn {
        let mut conn = Conn::establish(":memory:").expect("in-memory SQLite opens");
        conn.batch_execute(orm_examples::CREATE_TABLES).expect("schema");
        conn
    }

    /// Runs `sql` with foreign key checks off.
    pub fn without_foreign_keys(conn: &mut Conn, sql: &str) {
        conn.batch_execute(&format!("PRAGMA foreign_keys = OFF; {sql}")).expect("statement runs");
    }

    /// An in-memory database whose `people` people form one chain: person `i` is managed by
    /// `i - 1`, person 1 by nobody.
    pub fn chain(people: usize) -> Conn {
        let mut conn = empty();
        conn.batch_execute(&format!(
            "INSERT INTO person (id, firstname, lastname, manager_id)
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {people})
             SELECT i, 'f', 'l', NULLIF(i - 1, 0) FROM n"
        ))
        .expect("chain");
        conn
    }

    /// A pool of `size` connections over a database seeded with `people` people; keep the
    /// returned directory alive while the pool is in use.
    pub fn pool(people: usize, size: u32) -> (tempfile::TempDir, Pool<ConnectionManager<Conn>>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pool.db");
        let url = path.to_str().expect("UTF-8 path").to_owned();
        populate(&mut Conn::establish(&url).expect("file opens"), people)
            .expect("seeding succeeds");
        let pool = Pool::builder()
            .max_size(size)
            .connection_customizer(Box::new(Wal))
            .build(ConnectionManager::<Conn>::new(url))
            .expect("pool builds");
        (dir, pool)
    }

    /// Readers that do not wait for the writer, and a writer that waits for the lock.
    #[derive(Debug)]
    struct Wal;

    impl diesel::r2d2::CustomizeConnection<Conn, diesel::r2d2::Error> for Wal {
        fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
            conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;")
                .map_err(diesel::r2d2::Error::QueryError)
        }
    }

    /// `sql` with identifiers quoted as this backend quotes them (tests write backticks).
    pub fn q(sql: &str) -> String {
        sql.to_owned()
    }

    /// How a `selectin` statement lists its keys here.
    pub const KEY_LIST: &str = " IN (";
}

/// The PostgreSQL side of the harness: every database is a fresh schema of `DATABASE_URL`.
#[cfg(feature = "postgres")]
pub mod pg {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::r2d2::{ConnectionManager, Pool};

    use super::{populate, Counts};

    /// The connection type.
    pub type Conn = PgConnection;

    fn url() -> String {
        std::env::var("DATABASE_URL").expect(
            "the postgres tests need DATABASE_URL; run them with `.ci/with-postgres cargo test -p orm-tests --features postgres`",
        )
    }

    /// A schema name no other test uses.
    fn fresh_schema() -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
    }

    fn connect(schema: &str) -> Conn {
        let mut conn = Conn::establish(&url()).expect("PostgreSQL at DATABASE_URL");
        conn.batch_execute(&format!(
            // A schema left by an earlier run whose process had the same id goes first.
            "SET client_min_messages TO WARNING; DROP SCHEMA IF EXISTS {schema} CASCADE; \
             CREATE SCHEMA {schema}; SET search_path TO {schema}"
        ))
        .expect("schema");
        conn
    }

    /// A fresh schema seeded with `people` people.
    pub fn seeded(people: usize) -> (Conn, Counts) {
        let mut conn = connect(&fresh_schema());
        let counts = populate(&mut conn, people).expect("seeding succeeds");
        (conn, counts)
    }

    /// A fresh schema with the tables and no rows.
    pub fn empty() -> Conn {
        let mut conn = connect(&fresh_schema());
        conn.batch_execute(orm_examples::CREATE_TABLES).expect("schema");
        conn
    }

    /// Runs `sql` with foreign key checks off.
    pub fn without_foreign_keys(conn: &mut Conn, sql: &str) {
        conn.batch_execute(&format!(
            "SET session_replication_role = replica; {sql}; SET session_replication_role = DEFAULT"
        ))
        .expect("statement runs");
    }

    /// A fresh schema whose `people` people form one chain: person `i` is managed by `i - 1`,
    /// person 1 by nobody.
    pub fn chain(people: usize) -> Conn {
        let mut conn = empty();
        conn.batch_execute(&format!(
            "INSERT INTO person (id, firstname, lastname, manager_id)
             SELECT i, 'f', 'l', NULLIF(i - 1, 0) FROM generate_series(1, {people}) AS i"
        ))
        .expect("chain");
        conn
    }

    /// A pool of `size` connections over a fresh schema seeded with `people` people.
    pub fn pool(people: usize, size: u32) -> ((), Pool<ConnectionManager<Conn>>) {
        let schema = fresh_schema();
        populate(&mut connect(&schema), people).expect("seeding succeeds");
        let separator = if url().contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}options=-c%20search_path%3D{schema}", url());
        let pool = Pool::builder()
            .max_size(size)
            .build(ConnectionManager::<Conn>::new(url))
            .expect("pool builds");
        ((), pool)
    }

    /// `sql` with identifiers quoted as this backend quotes them (tests write backticks).
    pub fn q(sql: &str) -> String {
        sql.replace('`', "\"")
    }

    /// How a `selectin` statement lists its keys here: one array parameter.
    pub const KEY_LIST: &str = " = ANY($1)";
}

/// A person graph as plain data, read through the session: what the tests compare between
/// strategies. Relations not in the spec are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonTree {
    /// `id firstname lastname`.
    pub person: String,
    /// `city` of the address, if read.
    pub address: Option<Option<String>>,
    /// The manager's tree, if read.
    pub manager: Option<Option<Box<PersonTree>>>,
    /// The reports' trees, if read.
    pub reports: Option<Vec<PersonTree>>,
    /// The project names, if read.
    pub projects: Option<Vec<String>>,
}

/// Which relations [`tree`] reads, nested.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Read `address`.
    pub address: bool,
    /// Read `manager`, then this spec on it.
    pub manager: Option<Box<Spec>>,
    /// Read `reports`, then this spec on each.
    pub reports: Option<Box<Spec>>,
    /// Read `projects`.
    pub projects: bool,
}

/// Reads `spec` from `p` through the session (lazy loads run where a relation is not loaded).
pub fn tree<C: orm_core::SessionConnection, S>(
    p: &orm_core::Loaded<Person, S>,
    spec: &Spec,
    session: &mut orm_core::Session<'_, C>,
) -> orm_core::Result<PersonTree> {
    let address = if spec.address {
        Some(p.load(Person::address, session)?.map(|a| a.city.clone()))
    } else {
        None
    };
    let manager = match &spec.manager {
        Some(inner) => Some(match p.load(Person::manager, session)? {
            Some(m) => Some(Box::new(tree(m, inner, session)?)),
            None => None,
        }),
        None => None,
    };
    let reports = match &spec.reports {
        Some(inner) => {
            let reports = p.load(Person::reports, session)?.to_vec();
            Some(reports.iter().map(|r| tree(r, inner, session)).collect::<Result<_, _>>()?)
        }
        None => None,
    };
    let projects = if spec.projects {
        Some(p.load(Person::projects, session)?.iter().map(|p| p.name.clone()).collect())
    } else {
        None
    };
    Ok(PersonTree {
        person: format!("{} {} {}", p.id, p.firstname, p.lastname),
        address,
        manager,
        reports,
        projects,
    })
}

/// Models over the seed's tables with other declared strategies, for the tests of defaults.
pub mod variants {
    use orm_core::prelude::*;
    use orm_examples::schema::{address, person};
    use orm_examples::Address;

    macro_rules! person_with_joined_manager {
        ($name:ident, $depth:literal) => {
            #[doc = concat!("`person` whose manager is joined ", stringify!($depth), " levels deep.")]
            #[derive(Model, Debug)]
            #[orm(table = person)]
            pub struct $name {
                /// Primary key.
                pub id: i32,
                /// First name.
                pub firstname: String,
                /// Foreign key to the manager.
                pub manager_id: Option<i32>,
                /// Foreign key to the address.
                pub address_id: Option<i32>,
                /// The manager, joined by default.
                #[relation(belongs_to = $name, foreign_key = manager_id, lazy = "joined", join_depth = $depth)]
                pub manager: Rel<Option<$name>>,
                /// The address, joined by default (at every joined level).
                #[relation(belongs_to = Address, foreign_key = address_id, lazy = "joined")]
                pub address: Rel<Option<Address>>,
            }
        };
    }

    person_with_joined_manager!(Depth1, 1);
    person_with_joined_manager!(Depth2, 2);
    person_with_joined_manager!(Depth3, 3);

    /// `person` with a joined home whose residents are joined back: a joined cycle.
    #[derive(Model, Debug)]
    #[orm(table = person)]
    pub struct Resident {
        /// Primary key.
        pub id: i32,
        /// Foreign key to the home.
        pub address_id: Option<i32>,
        /// The home, joined.
        #[relation(belongs_to = Home, foreign_key = address_id, lazy = "joined")]
        pub home: Rel<Option<Home>>,
    }

    /// `address` with its residents joined back, and a has_one.
    #[derive(Model, Debug)]
    #[orm(table = address)]
    pub struct Home {
        /// Primary key.
        pub id: i32,
        /// City.
        pub city: String,
        /// The residents, joined.
        #[relation(has_many = Resident, foreign_key = address_id, lazy = "joined")]
        pub residents: Rel<Vec<Resident>>,
        /// The resident with the smallest id (has_one over a non-unique key).
        #[relation(has_one = Resident, foreign_key = address_id)]
        pub first_resident: Rel<Option<Resident>>,
    }

    /// `person` whose reports load with `selectin` by default, level after level.
    #[derive(Model, Debug)]
    #[orm(table = person)]
    pub struct Boss {
        /// Primary key.
        pub id: i32,
        /// Foreign key to the manager.
        pub manager_id: Option<i32>,
        /// The reports, selectin by default.
        #[relation(has_many = Boss, foreign_key = manager_id, lazy = "selectin")]
        pub reports: Rel<Vec<Boss>>,
    }
}

/// The README's Rust code, compiled and run as this crate's doctests (`cargo test --doc -p
/// orm-tests`), so it cannot drift from the API. Each block's hidden lines (`# ..`) bring in
/// this module: the seed schema and models, and [`readme::seeded`].
#[doc = include_str!("../../README.md")]
pub mod readme {
    pub use diesel::prelude::*;
    pub use orm_core::prelude::*;
    pub use orm_examples::schema::*;
    pub use orm_examples::{address_rel, person_rel, project_rel, Address, Person, Project};

    /// What a README block's `main` returns.
    pub type Fallible = Result<(), Box<dyn std::error::Error>>;

    pub use crate::blog::{comment, post, post_rel, post_tag, tag, Comment, Post, Tag};

    /// An in-memory SQLite database seeded with 200 people of the example schema (Pierre, person
    /// 1, manages Pauline, person 2; both live in Paris).
    pub fn seeded() -> diesel::SqliteConnection {
        crate::sqlite::seeded(200).0
    }

    /// An in-memory SQLite database with a blog of 12 posts (`crate::blog`).
    pub fn blog() -> diesel::SqliteConnection {
        let mut conn = diesel::SqliteConnection::establish(":memory:").expect("SQLite opens");
        crate::blog::seed(&mut conn, 12);
        conn
    }
}
