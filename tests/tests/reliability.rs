//! Bad data, bind limits and failures: integers a field cannot hold, hostile strings, 100,000
//! many-to-many links, a statement failing in the middle of a multi-statement load, a busy
//! database.
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;
use orm_tests::*;

diesel::table! {
    counter (id) {
        id -> Integer,
        hits -> Integer,
    }
}

/// A row whose `hits` column holds more than an `i32` in the database.
#[derive(Model, Debug)]
#[orm(table = counter)]
pub struct Counter {
    pub id: i32,
    pub hits: i32,
}

diesel::table! {
    tally (id) {
        id -> BigInt,
        hits -> BigInt,
    }
}

/// 64-bit integers: SQLite's REAL or TEXT in them is an error too.
#[derive(Model, Debug)]
#[orm(table = tally)]
pub struct Tally {
    pub id: i64,
    pub hits: i64,
}

diesel::table! {
    ghost (id) {
        id -> Integer,
        person_id -> Integer,
    }
}

/// A model over a table the database does not have.
#[derive(Model, Debug)]
#[orm(table = ghost)]
pub struct Ghost {
    pub id: i32,
    pub person_id: i32,
}

/// `person` with a selectin relation to the missing table.
#[derive(Model, Debug)]
#[orm(table = person)]
pub struct Haunted {
    pub id: i32,
    pub address_id: Option<i32>,
    #[relation(belongs_to = Address, foreign_key = address_id, lazy = "selectin")]
    pub address: Rel<Option<Address>>,
    #[relation(has_many = Ghost, foreign_key = person_id, lazy = "selectin")]
    pub ghosts: Rel<Vec<Ghost>>,
}

orm_tests::backend_tests! {
    #[test]
    fn an_integer_the_field_cannot_hold_is_an_error_naming_model_and_column() {
        // SQLite keeps 5,000,000,000 in any integer column and diesel would narrow it to an
        // `i32` silently; PostgreSQL's BIGINT is refused by diesel. Both are the same error here.
        let mut conn = empty();
        conn.batch_execute(
            "CREATE TABLE counter (id INTEGER PRIMARY KEY NOT NULL, hits BIGINT NOT NULL);
             INSERT INTO counter VALUES (2, 5000000000);",
        )
        .unwrap();
        let mut session = Session::new(&mut conn);
        let error = Counter::query().load(&mut session).unwrap_err();
        assert!(
            matches!(error, Error::Decode { model: "Counter", column: "hits", .. }),
            "{error:?}"
        );
        drop(session);
        // The key column too: 5,000,000,000 is no `i32` key.
        let mut conn = empty();
        conn.batch_execute(
            "CREATE TABLE counter (id BIGINT PRIMARY KEY NOT NULL, hits INTEGER NOT NULL);
             INSERT INTO counter VALUES (5000000000, 1);",
        )
        .unwrap();
        let mut session = Session::new(&mut conn);
        let error = Counter::query().load(&mut session).unwrap_err();
        assert!(matches!(error, Error::Decode { model: "Counter", column: "id", .. }), "{error:?}");
    }

    #[test]
    fn a_null_primary_key_is_an_error_naming_model_and_column() {
        let mut conn = empty();
        conn.batch_execute(
            "CREATE TABLE counter (id INTEGER, hits INTEGER NOT NULL); INSERT INTO counter VALUES (NULL, 1);",
        )
        .unwrap();
        let mut session = Session::new(&mut conn);
        let error = Counter::query().load(&mut session).unwrap_err();
        match &error {
            Error::Decode { model: "Counter", column: "id", source } => {
                assert_eq!(source.to_string(), "NULL in the primary key")
            }
            other => panic!("expected a decode error of `Counter.id`, got {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "cannot decode column `id` of `Counter`: NULL in the primary key"
        );
    }

    #[test]
    fn two_rows_with_one_primary_key_are_an_error_not_a_merged_object() {
        let mut conn = empty();
        conn.batch_execute(
            "DROP TABLE person_project; DROP TABLE person; DROP TABLE address;
             CREATE TABLE address (id INTEGER NOT NULL, street TEXT NOT NULL, city TEXT NOT NULL);
             CREATE TABLE person (id INTEGER NOT NULL, firstname TEXT NOT NULL, lastname TEXT NOT NULL,
                                  address_id INTEGER, manager_id INTEGER);
             INSERT INTO address VALUES (1, 'rue', 'Paris'), (1, 'rue', 'Lyon'), (2, 'quai', 'Nice');
             INSERT INTO person VALUES (1, 'Pierre', 'Martin', 1, NULL), (2, 'Pauline', 'Martin', 2, NULL),
                                       (2, 'Paul', 'Durand', 2, NULL);",
        )
        .unwrap();
        let mut session = Session::new(&mut conn);
        let duplicate = |result: orm_core::Result<usize>| match result {
            Err(Error::DuplicateKey { model, key }) => (model, key),
            other => panic!("expected DuplicateKey, got {other:?}"),
        };
        // Two people with id 2 (diesel would return both; the identity map would merge them).
        let roots = Person::query().load(&mut session).map(|p| p.len());
        assert_eq!(duplicate(roots), ("Person", "2".to_owned()));
        let one = || Person::query().filter(person::id.eq(1));
        // Two addresses with id 1, found by a selectin statement, a lazy load, or a join (which
        // repeats person 1's row).
        let by_selectin = one().options(selectin(Person::address)).load(&mut session).map(|p| p.len());
        assert_eq!(duplicate(by_selectin), ("Address", "1".to_owned()));
        let pierre = one().load(&mut session).unwrap();
        let lazy = pierre[0].load(Person::address, &mut session).map(|_| 0);
        assert_eq!(duplicate(lazy), ("Address", "1".to_owned()));
        let by_join = one().options(joined(Person::address)).load(&mut session).map(|p| p.len());
        assert_eq!(duplicate(by_join), ("Person", "1".to_owned()));
        // A statement that repeats roots by design is no duplicate...
        let both = Person::query().filter(person::id.eq(1)).options(joined(Person::reports)).load(&mut session);
        assert_eq!(both.unwrap().len(), 1);
        // ... but two rows with the same keys in every table are: the joined collection does
        // not hide the two addresses with id 1.
        let with_reports = one().options((joined(Person::address), joined(Person::reports))).load(&mut session).map(|p| p.len());
        assert_eq!(duplicate(with_reports), ("Person", "1".to_owned()));
        // A failed statement leaves the objects the session held as they were: Pierre's address
        // (read from the first of the rows) is not filled by the statement that failed.
        let held = session.get::<Person>(1).unwrap().unwrap();
        assert!(!held.address.is_loaded());
        let all = Person::query().order_by(person::id).options(joined(Person::address)).load(&mut session).map(|p| p.len());
        assert!(matches!(all, Err(Error::DuplicateKey { .. })));
        assert!(!held.address.is_loaded());
    }

    #[test]
    fn hostile_strings_round_trip_as_bound_parameters() {
        let mut conn = empty();
        let long = "ab'c".repeat(5_000);
        let hostile = [
            "O'Brien",
            "Robert'); DROP TABLE person;--",
            "100% _match_",
            r"back\slash \' \\",
            "\"double\" `tick`",
            "ünïcödé 名前 🚀",
            long.as_str(),
        ];
        for (i, name) in hostile.iter().enumerate() {
            diesel::insert_into(person::table)
                .values((
                    person::id.eq(i as i32 + 1),
                    person::firstname.eq(*name),
                    person::lastname.eq(*name),
                ))
                .execute(&mut conn)
                .unwrap();
        }
        let mut session = Session::new(&mut conn);
        for name in hostile {
            let found = Person::query().filter(person::firstname.eq(name.to_owned())).load(&mut session).unwrap();
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].lastname, name);
            let sql = session.queries().pop().unwrap();
            let text = sql.split(" -- binds: ").next().unwrap();
            let head: String = name.chars().take(12).collect();
            assert!(!text.contains(&head), "the value reached the SQL text: {text}");
        }
        // LIKE wildcards in a value match themselves only when bound as written.
        let like = Person::query().filter(person::firstname.like("100\\% \\_match\\_").escape('\\')).load(&mut session).unwrap();
        assert_eq!(like.len(), 1);
    }

    #[test]
    fn a_failing_statement_mid_load_returns_no_graph_and_leaves_the_session_usable() {
        let (mut conn, _) = seeded(30);
        let mut session = Session::new(&mut conn);
        let error = Haunted::query().load(&mut session).unwrap_err();
        match &error {
            Error::Database { sql, .. } => assert!(sql.contains(&q("FROM `ghost`")), "{sql}"),
            other => panic!("expected the ghost statement's error, got {other:?}"),
        }
        let log = session.statement_log();
        assert!(log.last().unwrap().sql.starts_with("ROLLBACK"), "{log:#?}");
        // The session goes on: the identity map holds nothing half-loaded that a later load
        // would take for loaded.
        let people = Person::query().options(selectin(Person::address)).load(&mut session).unwrap();
        assert_eq!(people.len(), 30);
        assert!(people.iter().all(|p| p.address.is_loaded()));
    }
}

mod links {
    use super::*;

    orm_tests::backend_tests! {
    #[test]
    fn selectin_many_to_many_over_100000_links() {
        let (mut conn, counts) = seeded(100_000);
        assert!(counts.memberships > 100_000, "{counts:?}");
        let mut session = Session::new(&mut conn);
        let people = Person::query().options(selectin(Person::projects)).load(&mut session).unwrap();
        let links: usize = people.iter().map(|p| p.projects.get().unwrap().len()).sum();
        assert_eq!(links, counts.memberships);
        let chunks = 100_000usize
            .div_ceil(<<Conn as diesel::Connection>::Backend as orm_core::OrmBackend>::MAX_KEYS_PER_STATEMENT);
        assert_eq!(session.statements(), 1 + chunks);
    }
    }
}

/// SQLite only (PostgreSQL's columns hold their declared type): a value of another storage
/// class than the field's (TEXT in an integer, INTEGER in a text) is an error quoting the value
/// read, never a converted one.
#[test]
fn sqlite_values_of_another_storage_class_are_errors_quoting_the_value() {
    let cases = [
        ("counter", "1, 1e30", "Counter", "hits", "REAL value 1e30 is not an integer"),
        ("counter", "1, 3.7", "Counter", "hits", "REAL value 3.7 is not an integer"),
        ("counter", "1, 'abc'", "Counter", "hits", r#"TEXT value "abc" is not an integer"#),
        ("counter", "1, '12abc'", "Counter", "hits", r#"TEXT value "12abc" is not an integer"#),
        ("counter", "1, x'0102'", "Counter", "hits", "BLOB value of 2 bytes is not an integer"),
        (
            "counter",
            "1, 5000000000",
            "Counter",
            "hits",
            "value 5000000000 does not fit in a 32-bit integer field",
        ),
        ("counter", "'abc', 1", "Counter", "id", r#"TEXT value "abc" is not an integer"#),
        ("tally", "1, 1e30", "Tally", "hits", "REAL value 1e30 is not an integer"),
        ("tally", "1.5, 1", "Tally", "id", "REAL value 1.5 is not an integer"),
    ];
    for (table, values, model, column, message) in cases {
        let mut conn = orm_tests::sqlite::empty();
        conn.batch_execute(&format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, hits INTEGER NOT NULL); INSERT INTO {table} VALUES ({values});"
        ))
        .unwrap();
        let mut session = Session::new(&mut conn);
        let error = match table {
            "counter" => Counter::query().load(&mut session).map(|_| ()).unwrap_err(),
            _ => Tally::query().load(&mut session).map(|_| ()).unwrap_err(),
        };
        match &error {
            Error::Decode { model: m, column: c, source } => {
                assert_eq!(
                    (*m, *c, source.to_string().as_str()),
                    (model, column, message),
                    "{values}"
                )
            }
            other => panic!("{values}: expected a decode error, got {other:?}"),
        }
    }
    // An association table's key column too (no declared type: SQLite keeps the REAL, which
    // equals the integer key in the `IN` list).
    let (mut conn, _) = orm_tests::sqlite::seeded(20);
    conn.batch_execute(
        "DROP TABLE person_project; CREATE TABLE person_project (person_id, project_id);
         INSERT INTO person_project VALUES (1.0, 1);",
    )
    .unwrap();
    let mut session = Session::new(&mut conn);
    let error = Person::query().options(selectin(Person::projects)).load(&mut session).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot decode column `person_id` of `person_project`: REAL value 1.0 is not an integer"
    );
    // Text fields: what a column without type affinity keeps as it came, on every path that
    // decodes the row (root, joined, selectin, lazy).
    let cases = [
        ("12", "INTEGER value 12 is not text"),
        ("1.5", "REAL value 1.5 is not text"),
        ("x'00ff'", "BLOB value of 2 bytes is not text"),
    ];
    for (city, message) in cases {
        let mut conn = orm_tests::sqlite::empty();
        conn.batch_execute(&format!(
            "DROP TABLE person; DROP TABLE address;
             CREATE TABLE address (id INTEGER PRIMARY KEY, street, city);
             CREATE TABLE person (id INTEGER PRIMARY KEY, firstname, lastname, address_id INTEGER, manager_id INTEGER);
             INSERT INTO address VALUES (1, 'rue', {city});
             INSERT INTO person VALUES (1, 'Pierre', 'Martin', 1, NULL);"
        ))
        .unwrap();
        let mut session = Session::new(&mut conn);
        let decode_error = |result: orm_core::Result<()>| match result.unwrap_err() {
            Error::Decode { model: "Address", column: "city", source } => source.to_string(),
            other => panic!("{city}: expected a decode error of `Address.city`, got {other:?}"),
        };
        let root = Address::query().load(&mut session).map(|_| ());
        let joined =
            Person::query().options(joined(Person::address)).load(&mut session).map(|_| ());
        let selectin =
            Person::query().options(selectin(Person::address)).load(&mut session).map(|_| ());
        let people = Person::query().load(&mut session).unwrap();
        let lazy = people[0].load(Person::address, &mut session).map(|_| ());
        for result in [root, joined, selectin, lazy] {
            assert_eq!(decode_error(result), message);
        }
    }
    // What SQLite's integer affinity stored as an integer reads as one.
    let mut conn = orm_tests::sqlite::empty();
    conn.batch_execute(
        "CREATE TABLE tally (id INT PRIMARY KEY, hits INTEGER NOT NULL); INSERT INTO tally VALUES ('7', 3.0);",
    )
    .unwrap();
    let mut session = Session::new(&mut conn);
    let tally = Tally::query().load(&mut session).unwrap();
    assert_eq!((tally[0].id, tally[0].hits), (7, 3));
}

/// SQLite only: a database locked by another connection past the busy timeout fails the load
/// with the database's error, and the same session loads again once the lock is gone.
#[test]
fn a_busy_database_fails_the_load_and_the_session_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("busy.db").to_str().unwrap().to_owned();
    let mut writer = SqliteConnection::establish(&url).unwrap();
    populate(&mut writer, 50).unwrap();
    let mut reader = SqliteConnection::establish(&url).unwrap();
    reader.batch_execute("PRAGMA busy_timeout = 50").unwrap();
    writer.batch_execute("BEGIN EXCLUSIVE").unwrap();
    let mut session = Session::new(&mut reader);
    let error = Person::query().options(selectin(Person::reports)).load(&mut session).unwrap_err();
    match &error {
        Error::Database { source, .. } => {
            assert!(source.to_string().contains("locked"), "{source}")
        }
        other => panic!("expected the busy database's error, got {other:?}"),
    }
    writer.batch_execute("COMMIT").unwrap();
    let people = Person::query().options(selectin(Person::reports)).load(&mut session).unwrap();
    assert_eq!(people.len(), 50);
    assert!(people.iter().all(|p| p.reports.is_loaded()));
}
