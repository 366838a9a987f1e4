//! The seed article's schema (Person, Address, Project), its models, and a deterministic data
//! generator, shared by the examples, the tests and the benchmarks.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;

/// The diesel schema.
#[allow(missing_docs)]
pub mod schema {
    diesel::table! {
        /// People; `manager_id` makes a tree.
        person (id) {
            id -> Integer,
            firstname -> Text,
            lastname -> Text,
            address_id -> Nullable<Integer>,
            manager_id -> Nullable<Integer>,
        }
    }

    diesel::table! {
        /// Addresses, shared by several people.
        address (id) {
            id -> Integer,
            street -> Text,
            city -> Text,
        }
    }

    diesel::table! {
        /// Projects.
        project (id) {
            id -> Integer,
            name -> Text,
        }
    }

    diesel::table! {
        /// Who works on which project.
        person_project (person_id, project_id) {
            person_id -> Integer,
            project_id -> Integer,
        }
    }

    diesel::joinable!(person -> address (address_id));
    diesel::joinable!(person_project -> person (person_id));
    diesel::joinable!(person_project -> project (project_id));
    diesel::allow_tables_to_appear_in_same_query!(person, address, project, person_project);
}

use schema::{address, person, person_project, project};

/// A person, with a many-to-one address, a self-referential manager, the reverse collection of
/// reports, and projects through `person_project`.
#[derive(Model, Debug)]
#[orm(table = person)]
pub struct Person {
    /// Primary key.
    pub id: i32,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Foreign key to `address`.
    pub address_id: Option<i32>,
    /// Foreign key to the manager, another `person`.
    pub manager_id: Option<i32>,
    /// Where the person lives (lazy by default).
    #[relation(belongs_to = Address, foreign_key = address_id)]
    pub address: Rel<Option<Address>>,
    /// The manager (lazy by default).
    #[relation(belongs_to = Person, foreign_key = manager_id)]
    pub manager: Rel<Option<Person>>,
    /// The people this person manages.
    #[relation(has_many = Person, foreign_key = manager_id)]
    pub reports: Rel<Vec<Person>>,
    /// The projects; `raise` by default, so they must be loaded explicitly.
    #[relation(many_to_many = Project, through = person_project, lazy = "raise")]
    pub projects: Rel<Vec<Project>>,
}

/// An address.
#[derive(Model, Debug)]
#[orm(table = address)]
pub struct Address {
    /// Primary key.
    pub id: i32,
    /// Street.
    pub street: String,
    /// City.
    pub city: String,
    /// The people living here.
    #[relation(has_many = Person, foreign_key = address_id)]
    pub residents: Rel<Vec<Person>>,
}

/// A project.
#[derive(Model, Debug)]
#[orm(table = project)]
pub struct Project {
    /// Primary key.
    pub id: i32,
    /// Name.
    pub name: String,
    /// The people on the project.
    #[relation(many_to_many = Person, through = person_project)]
    pub members: Rel<Vec<Person>>,
}

/// The DDL of the schema.
pub const CREATE_TABLES: &str = "
    CREATE TABLE address (id INTEGER PRIMARY KEY NOT NULL, street TEXT NOT NULL, city TEXT NOT NULL);
    CREATE TABLE person (
        id INTEGER PRIMARY KEY NOT NULL,
        firstname TEXT NOT NULL,
        lastname TEXT NOT NULL,
        address_id INTEGER REFERENCES address (id),
        manager_id INTEGER REFERENCES person (id));
    CREATE INDEX person_address ON person (address_id);
    CREATE INDEX person_manager ON person (manager_id);
    CREATE TABLE project (id INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL);
    CREATE TABLE person_project (
        person_id INTEGER NOT NULL REFERENCES person (id),
        project_id INTEGER NOT NULL REFERENCES project (id),
        PRIMARY KEY (person_id, project_id));
    CREATE INDEX person_project_project ON person_project (project_id);
";

/// The sizes of a generated data set.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// People.
    pub people: usize,
    /// Addresses (about half as many as people).
    pub addresses: usize,
    /// Projects.
    pub projects: usize,
    /// Rows of `person_project`.
    pub memberships: usize,
}

const FIRST_NAMES: &[&str] =
    &["Pierre", "Pauline", "Marie", "Jean", "Lucie", "Paul", "Claire", "Louis"];
const LAST_NAMES: &[&str] = &["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit"];
const CITIES: &[&str] = &["Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Nantes", "Lille"];

/// A small deterministic generator (64-bit LCG), so every run sees the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

/// A connection the seed data can be written to: SQLite, and PostgreSQL with the `postgres`
/// feature.
pub trait Populate {
    /// See [`populate`].
    fn populate(&mut self, people: usize) -> QueryResult<Counts>;
}

/// Creates the tables and fills them with `people` people: about one in ten without an
/// address, half as many addresses as people (shared), a manager tree (person `i` reports to
/// `i / 10`, person 1 is the root), and zero to three projects each. Person 1 is Pierre and
/// person 2 is Pauline, living in Paris.
pub fn populate<C: Populate>(conn: &mut C, people: usize) -> QueryResult<Counts> {
    conn.populate(people)
}

macro_rules! impl_populate {
    ($conn:ty) => {
        impl Populate for $conn {
            fn populate(&mut self, people: usize) -> QueryResult<Counts> {
                let conn = self;
                conn.batch_execute(CREATE_TABLES)?;
                let mut rng = Lcg(42);
                let addresses = (people / 2).max(1);
                let projects = (people / 10).max(5);
                conn.transaction(|conn| {
                    let rows: Vec<_> = (1..=addresses as i32)
                        .map(|id| {
                            let city =
                                if id <= 2 { "Paris" } else { CITIES[rng.next(CITIES.len())] };
                            (
                                address::id.eq(id),
                                address::street.eq(format!("{id} rue de la Paix")),
                                address::city.eq(city),
                            )
                        })
                        .collect();
                    for chunk in rows.chunks(5_000) {
                        diesel::insert_into(address::table).values(chunk).execute(conn)?;
                    }
                    let rows: Vec<_> = (1..=people as i32)
                        .map(|id| {
                            let firstname = match id {
                                1 => "Pierre",
                                2 => "Pauline",
                                _ => FIRST_NAMES[rng.next(FIRST_NAMES.len())],
                            };
                            let address = match id {
                                1 | 2 => Some(id),
                                _ if rng.next(10) == 0 => None,
                                _ => Some(1 + rng.next(addresses) as i32),
                            };
                            let manager = (id > 1).then_some(if id < 10 { 1 } else { id / 10 });
                            (
                                person::id.eq(id),
                                person::firstname.eq(firstname),
                                person::lastname.eq(LAST_NAMES[rng.next(LAST_NAMES.len())]),
                                person::address_id.eq(address),
                                person::manager_id.eq(manager),
                            )
                        })
                        .collect();
                    for chunk in rows.chunks(5_000) {
                        diesel::insert_into(person::table).values(chunk).execute(conn)?;
                    }
                    let rows: Vec<_> = (1..=projects as i32)
                        .map(|id| (project::id.eq(id), project::name.eq(format!("Project {id}"))))
                        .collect();
                    for chunk in rows.chunks(5_000) {
                        diesel::insert_into(project::table).values(chunk).execute(conn)?;
                    }
                    let mut links = Vec::new();
                    for person in 1..=people as i32 {
                        let mut mine: Vec<i32> =
                            (0..rng.next(4)).map(|_| 1 + rng.next(projects) as i32).collect();
                        mine.sort_unstable();
                        mine.dedup();
                        links.extend(mine.into_iter().map(|p| {
                            (person_project::person_id.eq(person), person_project::project_id.eq(p))
                        }));
                    }
                    for chunk in links.chunks(10_000) {
                        diesel::insert_into(person_project::table).values(chunk).execute(conn)?;
                    }
                    Ok(Counts { people, addresses, projects, memberships: links.len() })
                })
            }
        }
    };
}

#[cfg(feature = "sqlite")]
impl_populate!(diesel::SqliteConnection);
#[cfg(feature = "postgres")]
impl_populate!(diesel::PgConnection);
