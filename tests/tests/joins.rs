//! Querying through relations: joins by relation handle, aliased self-joins, EXISTS filters,
//! contains_eager, and filters on tables the query does not join.
#![allow(missing_docs)] // `diesel::alias!` declares undocumented items

use std::collections::BTreeSet;

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_tests::*;

orm_tests::backend_tests! {
    // Aliases of `person` for the self-joins (diesel wants aliases of one table declared together).
    diesel::alias!(
        person as manager: ManagerAlias,
        person as grand: GrandAlias,
        person as report: ReportAlias,
        person as t1: T1Alias
    );

    fn ids<S>(people: &[Loaded<Person, S>]) -> Vec<i32> {
        people.iter().map(|p| p.id).collect()
    }

    #[test]
    fn people_living_in_paris() {
        for size in [100, 1_000, 5_000] {
            let (mut conn, _) = seeded(size);
            let expected: Vec<i32> = person::table
                .inner_join(address::table)
                .filter(address::city.eq("Paris"))
                .order_by(person::id)
                .select(person::id)
                .load(&mut conn)
                .unwrap();
            assert!(expected.len() >= 2);
            let mut session = Session::new(&mut conn);
            let people = Person::query()
                .join(Person::address)
                .filter(address::city.eq("Paris"))
                .order_by(person::id)
                .load(&mut session)
                .unwrap();
            assert_eq!(ids(&people), expected);
            assert_eq!(session.statements(), 1);
            // The join filters only: the relation stays unloaded.
            assert!(!people[0].address.is_loaded());
        }
    }

    #[test]
    fn pauline_whose_manager_is_pierre() {
        let (mut conn, _) = seeded(2_000);
        // Every 'Pauline' whose manager is a 'Pierre', in plain diesel.
        let expected: Vec<i32> = person::table
            .inner_join(manager.on(person::manager_id.eq(manager.field(person::id).nullable())))
            .filter(person::firstname.eq("Pauline"))
            .filter(manager.field(person::firstname).eq("Pierre"))
            .order_by(person::id)
            .select(person::id)
            .load(&mut conn)
            .unwrap();
        assert!(
            expected.contains(&2),
            "the seed's Pauline reports to Pierre"
        );
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .filter(person::firstname.eq("Pauline"))
            .join_as(Person::manager, manager)
            .filter(manager.field(person::firstname).eq("Pierre"))
            .order_by(person::id)
            .load(&mut session)
            .unwrap();
        assert_eq!(ids(&people), expected);
        assert_eq!(session.statements(), 1);
        assert!(session.queries()[0].contains(&q("INNER JOIN `person` AS `manager`")));
    }

    #[test]
    fn two_aliases_of_one_table() {
        let (mut conn, _) = seeded(2_000);
        let expected: Vec<i32> = person::table
            .inner_join(manager.on(person::manager_id.eq(manager.field(person::id).nullable())))
            .inner_join(
                grand.on(manager
                    .field(person::manager_id)
                    .eq(grand.field(person::id).nullable())),
            )
            .filter(grand.field(person::id).eq(1))
            .filter(manager.field(person::firstname).eq("Marie"))
            .order_by(person::id)
            .select(person::id)
            .load(&mut conn)
            .unwrap();
        assert!(!expected.is_empty());
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .join_as(Person::manager, manager)
            .join_from_as(manager, Person::manager, grand)
            .filter(grand.field(person::id).eq(1))
            .filter(manager.field(person::firstname).eq("Marie"))
            .order_by(person::id)
            .load(&mut session)
            .unwrap();
        assert_eq!(ids(&people), expected);
        assert_eq!(session.statements(), 1);
    }

    #[test]
    fn exists_filters_return_each_parent_once() {
        let (mut conn, _) = seeded(2_000);
        // People with at least one report named Marie: a join would repeat the managers.
        let joined_rows: Vec<i32> = person::table
            .inner_join(report.on(report.field(person::manager_id).eq(person::id.nullable())))
            .filter(report.field(person::firstname).eq("Marie"))
            .select(person::id)
            .load(&mut conn)
            .unwrap();
        let expected: Vec<i32> = joined_rows
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert!(
            joined_rows.len() > expected.len(),
            "the join repeats managers"
        );
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .filter(Person::reports.any_as(report, report.field(person::firstname).eq("Marie")))
            .order_by(person::id)
            .load(&mut session)
            .unwrap();
        assert_eq!(ids(&people), expected);
        assert_eq!(session.statements(), 1);
        assert!(session.queries()[0].contains(&q("EXISTS (SELECT 1 FROM `person` AS `report`")));

        // has(): a many-to-one; and any() through the association table.
        let in_paris = Person::query()
            .filter(Person::address.has(address::city.eq("Paris")))
            .order_by(person::id)
            .load(&mut session)
            .unwrap();
        let expected: Vec<i32> = person::table
            .inner_join(address::table)
            .filter(address::city.eq("Paris"))
            .order_by(person::id)
            .select(person::id)
            .load(session.connection())
            .unwrap();
        assert_eq!(ids(&in_paris), expected);
        let on_project_7 = Person::query()
            .filter(Person::projects.any(project::id.eq(7)))
            .order_by(person::id)
            .load(&mut session)
            .unwrap();
        let expected: Vec<i32> = person_project::table
            .filter(person_project::project_id.eq(7))
            .order_by(person_project::person_id)
            .select(person_project::person_id)
            .load(session.connection())
            .unwrap();
        assert_eq!(ids(&on_project_7), expected);
    }

    #[test]
    fn a_self_referential_exists_needs_an_alias() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let error = Person::query()
            .filter(Person::reports.any(person::firstname.eq("Marie")))
            .load(&mut session)
            .unwrap_err();
        assert!(
            error.to_string().contains("use `any_as(alias, ..)`"),
            "{error}"
        );
    }

    #[test]
    fn contains_eager_loads_from_the_join() {
        let (mut conn, _) = seeded(1_000);
        {
            let mut session = Session::new(&mut conn);
            let people = Person::query()
                .join(Person::address)
                .filter(address::city.eq("Paris"))
                .options(contains_eager(Person::address))
                .load(&mut session)
                .unwrap();
            assert_eq!(session.statements(), 1);
            assert!(
                !session.queries()[0].contains("LEFT OUTER JOIN"),
                "one join serves both"
            );
            session.reset_statements();
            for p in &people {
                assert_eq!(
                    p.load(Person::address, &mut session).unwrap().unwrap().city,
                    "Paris"
                );
            }
            assert_eq!(session.statements(), 0);
        }
        // Through an alias, and nested: the manager from the join, the manager's address joined.
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .filter(person::id.eq(2))
            .join_as(Person::manager, manager)
            .options(contains_eager(Person::manager).then(joined(Person::address)))
            .load(&mut session)
            .unwrap();
        let boss = people[0].manager.get().unwrap().unwrap();
        assert_eq!(boss.id, 1);
        assert_eq!(boss.address.get().unwrap().unwrap().id, 1);
        assert_eq!(session.statements(), 1);
    }

    #[test]
    fn contains_eager_without_its_join_is_an_error() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let error = Person::query()
            .options(contains_eager(Person::address))
            .load(&mut session)
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::ContainsEagerWithoutJoin {
                    relation: "address",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(session.statements(), 0);
    }

    #[test]
    fn joins_and_eager_options_combine_without_alias_clashes() {
        let (mut conn, _) = seeded(500);
        let mut session = Session::new(&mut conn);
        // The user's alias is called `t1`, the name the first eager join would take.
        let people = Person::query()
            .join_as(Person::manager, t1)
            .filter(t1.field(person::id).eq(1))
            .options((
                joined(Person::address),
                joined(Person::reports),
                selectin(Person::projects),
            ))
            .order_by(person::id)
            .load(&mut session)
            .unwrap();
        assert_eq!(ids(&people), (2..=19).collect::<Vec<_>>());
        assert_eq!(session.statements(), 2);
        let sql = &session.queries()[0];
        assert!(
            sql.contains(&q("INNER JOIN `person` AS `t1`"))
                && sql.contains(&q("LEFT OUTER JOIN `address` AS `t2`")),
            "{sql}"
        );
        session.reset_statements();
        for p in &people {
            p.load(Person::address, &mut session).unwrap();
            p.load(Person::reports, &mut session).unwrap();
            p.load(Person::projects, &mut session).unwrap();
        }
        assert_eq!(session.statements(), 0);
    }

    #[test]
    fn a_filter_on_a_table_only_an_eager_load_joins_says_to_join_it() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        // `joined(..)` joins under an anonymous alias: the filter cannot see `address`.
        let error = Person::query()
            .options(joined(Person::address))
            .filter(address::city.eq("Paris"))
            .load(&mut session)
            .unwrap_err();
        match &error {
            Error::TableNotInQuery { table, .. } => assert_eq!(table, "address"),
            other => panic!("expected TableNotInQuery, got {other:?}"),
        }
        assert!(error.to_string().contains("`.join(..)` the relation and load it with `contains_eager(..)`"), "{error}");
        // As the hint says.
        let parisians = Person::query()
            .join(Person::address)
            .filter(address::city.eq("Paris"))
            .options(contains_eager(Person::address))
            .load(&mut session)
            .unwrap();
        assert!(!parisians.is_empty());
        assert!(parisians.iter().all(|p| p.address.get().flatten().unwrap().city == "Paris"));
    }

    #[test]
    fn a_filter_on_a_table_not_joined_names_the_table() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let error = Person::query()
            .filter(address::city.eq("Paris"))
            .load(&mut session)
            .unwrap_err();
        match error {
            Error::TableNotInQuery { table, available } => {
                assert_eq!(table, "address");
                assert_eq!(available, vec!["person".to_owned()]);
            }
            other => panic!("expected TableNotInQuery, got {other:?}"),
        }
        assert_eq!(session.statements(), 1, "the database refused it; the error says why");
        let error = Person::query()
            .filter(manager.field(person::firstname).eq("Pierre"))
            .load(&mut session)
            .unwrap_err();
        assert!(
            matches!(&error, Error::TableNotInQuery { table, .. } if table == "manager"),
            "{error}"
        );
    }

    #[test]
    fn invalid_joins_are_errors() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let error = Person::query()
            .join(Address::residents)
            .load(&mut session)
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidJoin {
                    relation: "residents",
                    ..
                }
            ),
            "{error}"
        );
        let error = Person::query()
            .join(Person::manager)
            .load(&mut session)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("join it under another name with `join_as`"),
            "{error}"
        );
        assert_eq!(session.statements(), 0);
        // Chained along nested relations: the people living with someone named Pierre.
        let people = Address::query()
            .join(Address::residents)
            .filter(person::firstname.eq("Pierre"))
            .load(&mut session)
            .unwrap();
        assert!(people.iter().any(|a| a.id == 1));
    }

    #[test]
    fn limit_with_a_to_many_join_pages_parents_by_their_first_row() {
        let (mut conn, _) = seeded(300);
        let mut session = Session::new(&mut conn);
        // Every combination of ordering (none, the parent's column, the joined table's, both
        // ways) and LIMIT/OFFSET; the expected page is plain diesel's rows, each address once
        // at its first row.
        macro_rules! page {
            ([$($order:expr),*], [$($diesel_order:expr),+], $limit:expr, $offset:expr) => {{
                let mut rows = address::table
                    .inner_join(person::table)
                    .filter(person::lastname.ne("Zzz"))
                    .select(address::id)
                    .into_boxed();
                $( rows = rows.then_order_by($diesel_order); )+
                let rows: Vec<i32> = rows.load(session.connection()).unwrap();
                let mut seen = std::collections::HashSet::new();
                let firsts: Vec<i32> = rows.into_iter().filter(|a| seen.insert(*a)).collect();
                let limit: Option<i64> = $limit;
                let offset: Option<i64> = $offset;
                let expected: Vec<i32> = firsts
                    .into_iter()
                    .skip(offset.unwrap_or(0) as usize)
                    .take(limit.map_or(usize::MAX, |l| l as usize))
                    .collect();
                let mut query = Address::query()
                    .join(Address::residents)
                    .filter(person::lastname.ne("Zzz"))
                    .options(joined(Address::residents));
                $( query = query.order_by($order); )*
                if let Some(limit) = limit {
                    query = query.limit(limit);
                }
                if let Some(offset) = offset {
                    query = query.offset(offset);
                }
                let addresses = query.load(&mut session).unwrap();
                let got: Vec<i32> = addresses.iter().map(|a| a.id).collect();
                assert_eq!(got, expected, "order {}, limit {limit:?}, offset {offset:?}", stringify!($($order),*));
                // The joined collection holds every resident, whatever the join's filter.
                for address in &addresses {
                    let residents = address.residents.get().unwrap().len() as i64;
                    let all: i64 = person::table
                        .filter(person::address_id.eq(address.id))
                        .count()
                        .get_result(session.connection())
                        .unwrap();
                    assert_eq!(residents, all);
                }
                session.clear_identity_map();
            }};
        }
        for (limit, offset) in [(Some(3), None), (Some(4), Some(2)), (None, Some(140))] {
            // Unordered, parents come by key.
            page!([], [address::id], limit, offset);
            page!([address::id.desc()], [address::id.desc()], limit, offset);
            page!([person::id.desc()], [person::id.desc()], limit, offset);
            page!(
                [person::firstname.asc(), person::id.asc()],
                [person::firstname.asc(), person::id.asc()],
                limit,
                offset
            );
            page!(
                [address::city.desc(), person::id.desc()],
                [address::city.desc(), person::id.desc()],
                limit,
                offset
            );
        }
    }

    #[test]
    fn limit_with_a_join_and_a_joined_collection_counts_parents() {
        let (mut conn, _) = seeded(1_000);
        let expected: Vec<i32> = person::table
            .inner_join(address::table)
            .filter(address::city.eq("Paris"))
            .order_by(person::id)
            .select(person::id)
            .limit(3)
            .load(&mut conn)
            .unwrap();
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .join(Person::address)
            .filter(address::city.eq("Paris"))
            .order_by(person::id)
            .limit(3)
            .options(joined(Person::reports))
            .load(&mut session)
            .unwrap();
        assert_eq!(ids(&people), expected);
        assert_eq!(session.statements(), 1);
        let reports: Vec<i32> = people[0]
            .reports
            .get()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(reports, (2..=19).collect::<Vec<_>>());
    }
}
