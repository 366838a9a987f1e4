//! Shared set-up for the behaviour tests: seeded SQLite databases and plain-SQL oracles.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

pub use orm_examples::schema::{address, person, person_project, project};
pub use orm_examples::{populate, Address, Counts, Person, Project};

/// An in-memory SQLite database seeded with `people` people.
pub fn seeded(people: usize) -> (SqliteConnection, Counts) {
    let mut conn = SqliteConnection::establish(":memory:").expect("in-memory SQLite opens");
    conn.batch_execute("PRAGMA foreign_keys = ON")
        .expect("pragma");
    let counts = populate(&mut conn, people).expect("seeding succeeds");
    (conn, counts)
}

/// An empty in-memory database with the schema.
pub fn empty() -> SqliteConnection {
    let mut conn = SqliteConnection::establish(":memory:").expect("in-memory SQLite opens");
    conn.batch_execute(orm_examples::CREATE_TABLES)
        .expect("schema");
    conn
}
