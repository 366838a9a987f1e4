//! The strategy never changes the graph: random data sets (NULL and dangling keys, self-managed
//! and cyclic manager chains, shared addresses, empty collections) loaded with random option
//! sets give exactly the graph lazy loading gives. Failing cases shrink to a small data set.

use orm_core::prelude::*;
use orm_core::{RelOption, Relation};
use orm_tests::*;
use proptest::prelude::*;

/// A generated data set: per person its address and manager (either may be NULL or dangle),
/// and per person the projects it works on.
#[derive(Debug, Clone)]
struct Data {
    addresses: i32,
    people: Vec<(Option<i32>, Option<i32>)>,
    memberships: Vec<Vec<i32>>,
}

fn data() -> impl Strategy<Value = Data> {
    (1..6i32, 1..4i32, 1..25usize)
        .prop_flat_map(|(addresses, projects, n)| {
            let person = (
                proptest::option::of(1..addresses + 3),
                proptest::option::of(1..n as i32 + 3),
                proptest::collection::btree_set(1..projects + 1, 0..3),
            );
            (Just(addresses), proptest::collection::vec(person, n))
        })
        .prop_map(|(addresses, people)| Data {
            addresses,
            memberships: people.iter().map(|(_, _, p)| p.iter().copied().collect()).collect(),
            people: people.into_iter().map(|(a, m, _)| (a, m)).collect(),
        })
}

/// Per relation: 0 = its declared strategy, 1 = joined, 2 = selectin; and the same for the
/// address of the manager and of each report.
type Choices = (u8, u8, u8, u8, u8, u8);

fn insert_sql(data: &Data) -> String {
    let mut sql = String::new();
    for id in 1..=data.addresses {
        sql += &format!("INSERT INTO address VALUES ({id}, 'street {id}', 'city {}');\n", id % 3);
    }
    let key = |k: Option<i32>| k.map_or("NULL".to_owned(), |k| k.to_string());
    for (i, (address, manager)) in data.people.iter().enumerate() {
        let id = i + 1;
        sql += &format!(
            "INSERT INTO person VALUES ({id}, 'first {id}', 'last {}', {}, {});\n",
            id % 4,
            key(*address),
            key(*manager)
        );
    }
    for id in 1..=4 {
        sql += &format!("INSERT INTO project VALUES ({id}, 'project {id}');\n");
    }
    for (i, projects) in data.memberships.iter().enumerate() {
        for project in projects {
            sql += &format!("INSERT INTO person_project VALUES ({}, {project});\n", i + 1);
        }
    }
    sql
}

fn nested<R: Relation<Target = Person>>(option: RelOption<R>, choice: u8) -> RelOption<R> {
    match choice {
        1 => option.then(joined(Person::address)),
        2 => option.then(selectin(Person::address)),
        _ => option,
    }
}

fn spec() -> Spec {
    Spec {
        address: true,
        manager: Some(Box::new(Spec { address: true, ..Spec::default() })),
        reports: Some(Box::new(Spec { address: true, ..Spec::default() })),
        projects: true,
    }
}

orm_tests::backend_tests! {
    fn trees(conn: &mut Conn, choices: Option<Choices>) -> Vec<PersonTree> {
        let mut session = Session::new(conn);
        let mut query = Person::query().order_by(person::id).options(lazy(Person::projects));
        if let Some((address, manager, reports, projects, manager_address, report_address)) = choices {
            query = match address {
                1 => query.options(joined(Person::address)),
                2 => query.options(selectin(Person::address)),
                _ => query,
            };
            query = match manager {
                1 => query.options(nested(joined(Person::manager), manager_address)),
                2 => query.options(nested(selectin(Person::manager), manager_address)),
                _ => query,
            };
            query = match reports {
                1 => query.options(nested(joined(Person::reports), report_address)),
                2 => query.options(nested(selectin(Person::reports), report_address)),
                _ => query,
            };
            query = match projects {
                1 => query.options(joined(Person::projects)),
                2 => query.options(selectin(Person::projects)),
                _ => query,
            };
        }
        let people = query.load(&mut session).unwrap();
        if let Some(choices) = choices {
            // joined adds no statement; each selectin adds at most one (these data sets are far
            // below the bind limit), none when the identity map already filled every parent.
            let (a, m, r, p, ma, ra) = choices;
            let selectins = [a, m, r, p].iter().filter(|&&c| c == 2).count()
                + usize::from(m != 0 && ma == 2)
                + usize::from(r != 0 && ra == 2);
            let statements = session.statements();
            assert!(
                (1..=1 + selectins).contains(&statements),
                "{statements} statements for {choices:?}: {:#?}",
                session.queries()
            );
            if selectins == 0 {
                assert_eq!(statements, 1);
            }
        }
        people.iter().map(|p| tree(p, &spec(), &mut session).unwrap()).collect()
    }

    #[test]
    fn every_option_set_builds_the_lazy_graph() {
        let config = ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48),
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(data in data(), choices in (0..3u8, 0..3u8, 0..3u8, 0..3u8, 0..3u8, 0..3u8))| {
            let mut conn = empty();
            without_foreign_keys(&mut conn, &insert_sql(&data));
            let lazy = trees(&mut conn, None);
            let eager = trees(&mut conn, Some(choices));
            prop_assert_eq!(lazy, eager);
        });
    }
}
