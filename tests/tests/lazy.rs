//! Lazy (`select`) and `raise` loading, the identity map, and statement counting.

use std::collections::HashSet;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::{NotLoadedReason, Statement};
use orm_tests::*;

orm_tests::backend_tests! {
    #[test]
    fn options_under_lazy_apply_when_the_relation_loads_later() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(false);
        let people = Person::query()
            .filter(person::id.between(2, 6))
            .options(lazy(Person::reports).then(joined(Person::address)))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 1);
        // Each lazy load joins the reports' addresses: one statement per person, none to read
        // the addresses after.
        let mut reports = Vec::new();
        for p in &people {
            reports.extend(p.load(Person::reports, &mut session).unwrap().iter().cloned());
        }
        assert_eq!(session.statements(), 1 + 5);
        assert!(reports.len() > 20);
        session.assert_statements(0, |s| {
            for r in &reports {
                assert_eq!(r.load(Person::address, s).unwrap().map(|a| a.id), r.address_id);
            }
        });
        // A many-to-one loaded by SQL later brings what its option loads (here a selectin: the
        // manager, then its projects, in one transaction).
        session.clear_identity_map();
        let people = Person::query()
            .filter(person::id.between(20, 21))
            .options(lazy(Person::manager).then(selectin(Person::projects)))
            .load(&mut session)
            .unwrap();
        session.reset_statements();
        let manager = people[0].load(Person::manager, &mut session).unwrap().unwrap();
        assert_eq!(session.statements(), 2, "the manager, then its projects: {:#?}", session.queries());
        assert!(manager.projects.is_loaded());
        // Without the option, the same lazy load leaves projects unloaded.
        session.clear_identity_map();
        let plain = Person::query().filter(person::id.eq(30)).load(&mut session).unwrap();
        let manager = plain[0].load(Person::manager, &mut session).unwrap().unwrap();
        assert!(!manager.projects.is_loaded());
    }

    #[test]
    fn lazy_loop_runs_one_statement_per_row() {
        for size in [10, 100, 1_000] {
            let (mut conn, _) = seeded(size);
            let mut session = Session::new(&mut conn);
            let people = Person::query()
                .order_by(person::id)
                .load(&mut session)
                .unwrap();
            assert_eq!(people.len(), size);
            assert_eq!(session.statements(), 1);
            for p in &people {
                p.load(Person::reports, &mut session).unwrap();
            }
            // reports is a one-to-many: the identity map cannot answer it, so 1 + N.
            assert_eq!(session.statements(), 1 + size, "size {size}");
        }
    }

    #[test]
    fn identity_map_answers_many_to_one_without_sql() {
        for size in [10, 100, 1_000] {
            let (mut conn, counts) = seeded(size);
            let distinct_addresses: HashSet<i32> = person::table
                .select(person::address_id)
                .load::<Option<i32>>(&mut conn)
                .unwrap()
                .into_iter()
                .flatten()
                .collect();
            let mut session = Session::new(&mut conn);
            let people = Person::query()
                .order_by(person::id)
                .load(&mut session)
                .unwrap();
            for p in &people {
                p.load(Person::address, &mut session).unwrap();
                p.load(Person::manager, &mut session).unwrap();
            }
            // Every manager is a person the session already holds; each distinct address is one
            // statement, the first time it is read.
            assert_eq!(
                session.statements(),
                1 + distinct_addresses.len(),
                "size {size}"
            );
            assert!(distinct_addresses.len() <= counts.addresses);
            // Reading again runs nothing.
            session.reset_statements();
            for p in &people {
                p.load(Person::address, &mut session).unwrap();
                p.load(Person::manager, &mut session).unwrap();
            }
            assert_eq!(session.statements(), 0);
        }
    }

    #[test]
    fn lazy_values_match_plain_sql() {
        let (mut conn, _) = seeded(300);
        let expected: Vec<(i32, Option<String>, Option<String>)> = person::table
            .left_join(address::table)
            .select((
                person::id,
                address::city.nullable(),
                person::manager_id.nullable(),
            ))
            .order_by(person::id)
            .load::<(i32, Option<String>, Option<i32>)>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|(id, city, manager)| (id, city, manager.map(|m| m.to_string())))
            .collect();
        let managers: std::collections::HashMap<i32, String> = person::table
            .select((person::id, person::firstname))
            .load::<(i32, String)>(&mut conn)
            .unwrap()
            .into_iter()
            .collect();
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .order_by(person::id)
            .load(&mut session)
            .unwrap();
        let actual: Vec<_> = people
            .iter()
            .map(|p| {
                let city = p
                    .load(Person::address, &mut session)
                    .unwrap()
                    .map(|a| a.city.clone());
                let manager = p
                    .load(Person::manager, &mut session)
                    .unwrap()
                    .map(|m| m.id.to_string());
                (p.id, city, manager)
            })
            .collect();
        assert_eq!(actual, expected);
        let first_manager = people[5]
            .load(Person::manager, &mut session)
            .unwrap()
            .unwrap();
        assert_eq!(first_manager.firstname, managers[&first_manager.id]);
    }

    #[test]
    fn loaded_relation_is_kept_on_the_object() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn);
        let pierre = Person::query()
            .filter(person::id.eq(1))
            .first(&mut session)
            .unwrap()
            .unwrap();
        assert!(!pierre.reports.is_loaded());
        assert!(pierre.reports.get().is_none());
        let reports = pierre.load(Person::reports, &mut session).unwrap();
        // Persons 2..=9 report to 1 (id < 10), and so do 10..=19 (id / 10).
        assert_eq!(
            reports.iter().map(|r| r.id).collect::<Vec<_>>(),
            (2..=19).collect::<Vec<_>>()
        );
        assert_eq!(session.statements(), 2);
        assert!(pierre.reports.is_loaded());
        assert_eq!(pierre.reports.get().unwrap().len(), 18);
        pierre.load(Person::reports, &mut session).unwrap();
        assert_eq!(session.statements(), 2);
    }

    #[test]
    fn null_foreign_key_is_none_without_sql() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let root = Person::query()
            .filter(person::manager_id.is_null())
            .first(&mut session)
            .unwrap()
            .unwrap();
        assert_eq!(root.id, 1);
        session.reset_statements();
        assert!(root.load(Person::manager, &mut session).unwrap().is_none());
        assert_eq!(session.statements(), 0);
        assert!(root.manager.is_loaded());
    }

    #[test]
    fn dangling_foreign_key_is_none() {
        let (mut conn, _) = seeded(20);
        without_foreign_keys(&mut conn, "INSERT INTO person VALUES (500, 'Lost', 'Soul', 9999, 8888)");
        let mut session = Session::new(&mut conn);
        let lost = session.get::<Person>(500).unwrap().unwrap();
        assert!(lost.load(Person::address, &mut session).unwrap().is_none());
        assert!(lost.load(Person::manager, &mut session).unwrap().is_none());
        assert_eq!(session.statements(), 3);
        // Eager strategies agree.
        session.clear_identity_map();
        let lost = Person::query()
            .filter(person::id.eq(500))
            .options((joined(Person::address), selectin(Person::manager)))
            .first(&mut session)
            .unwrap()
            .unwrap();
        assert!(lost.address.get().unwrap().is_none());
        assert!(lost.manager.get().unwrap().is_none());
    }

    #[test]
    fn raise_is_an_error_without_sql() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let pierre = session.get::<Person>(1).unwrap().unwrap();
        session.reset_statements();
        // `projects` is declared `lazy = "raise"`.
        let error = pierre.load(Person::projects, &mut session).unwrap_err();
        assert!(
            matches!(
                error,
                Error::NotLoaded {
                    model: "Person",
                    relation: "projects",
                    reason: NotLoadedReason::Raise
                }
            ),
            "{error:?}"
        );
        assert_eq!(session.statements(), 0);
        assert_eq!(
            error.to_string(),
            "relation `Person.projects` uses `raise` and was not loaded: load it with `joined(..)` or `selectin(..)`"
        );
        // The `raise` option does the same to a lazy relation, for one query.
        session.clear_identity_map();
        let pauline = Person::query()
            .filter(person::id.eq(2))
            .options(raise(Person::address))
            .first(&mut session)
            .unwrap()
            .unwrap();
        let error = pauline.load(Person::address, &mut session).unwrap_err();
        assert!(
            matches!(
                error,
                Error::NotLoaded {
                    relation: "address",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(session.statements(), 1);
    }

    #[test]
    fn lookup_by_primary_key_uses_the_identity_map() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let pauline = session.get::<Person>(2).unwrap().unwrap();
        assert_eq!(pauline.firstname, "Pauline");
        assert_eq!(session.statements(), 1);
        let again = session.get::<Person>(2).unwrap().unwrap();
        assert!(Loaded::ptr_eq(&pauline, &again));
        assert_eq!(session.statements(), 1);
        assert!(session.get::<Person>(12345).unwrap().is_none());
        assert_eq!(session.statements(), 2);
    }

    #[test]
    fn the_identity_map_keeps_one_object_per_key_across_key_ranges() {
        // An id far beyond what the session holds is hashed; ids below about twice the number of
        // objects held are kept by index, and the hashed ones that range grows over move into
        // it: the object held before must stay the one every later load returns.
        let (mut conn, _) = seeded(3000);
        let mut session = Session::new(&mut conn);
        let early = session.get::<Person>(2500).unwrap().unwrap();
        let everyone = Person::query().order_by(person::id).load(&mut session).unwrap();
        assert_eq!(everyone.len(), 3000);
        assert!(Loaded::ptr_eq(&early, &everyone[2499]));
        let statements = session.statements();
        let again = session.get::<Person>(2500).unwrap().unwrap();
        assert!(Loaded::ptr_eq(&early, &again));
        assert_eq!(session.statements(), statements, "answered from the identity map");
        // Every object once: 3,000 distinct objects.
        let distinct: std::collections::HashSet<*const Person> =
            everyone.iter().map(|p| &**p as *const Person).collect();
        assert_eq!(distinct.len(), 3000);
    }

    #[test]
    fn query_builder_filters_orders_limits_in_sql() {
        let (mut conn, _) = seeded(200);
        let expected: Vec<i32> = person::table
            .filter(
                person::firstname
                    .eq("Marie")
                    .and(person::address_id.is_not_null()),
            )
            .order_by(person::lastname.desc())
            .then_order_by(person::id.asc())
            .limit(7)
            .offset(3)
            .select(person::id)
            .load(&mut conn)
            .unwrap();
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .filter(person::firstname.eq("Marie"))
            .filter(person::address_id.is_not_null())
            .order_by(person::lastname.desc())
            .order_by(person::id.asc())
            .limit(7)
            .offset(3)
            .load(&mut session)
            .unwrap();
        assert_eq!(people.iter().map(|p| p.id).collect::<Vec<_>>(), expected);
        assert_eq!(session.statements(), 1);
        // The value is a bound parameter, never SQL text.
        let sql = &session.queries()[0];
        assert!(
            !sql.contains("'Marie'") && sql.contains("-- binds: [\"Marie\""),
            "{sql}"
        );
    }

    #[test]
    fn database_errors_name_the_statement() {
        let mut conn = empty();
        conn.batch_execute("ALTER TABLE address RENAME TO address_gone").unwrap();
        let mut session = Session::new(&mut conn);
        let error = Person::query()
            .options(joined(Person::address))
            .load(&mut session)
            .unwrap_err();
        match error {
            Error::Database { sql, .. } => assert!(sql.contains(&q("LEFT OUTER JOIN `address`")), "{sql}"),
            other => panic!("expected a database error, got {other:?}"),
        }
        // The session stays usable.
        assert!(Person::query().load(&mut session).unwrap().is_empty());
    }

    #[test]
    fn pooled_connection_counts_and_detaches() {
        let (_keep, pool) = pool(100, 1);
        {
            let mut conn = pool.get().unwrap();
            let mut session = Session::new(&mut conn);
            let people = Person::query()
                .filter(person::id.le(10))
                .load(&mut session)
                .unwrap();
            for p in &people {
                p.load(Person::reports, &mut session).unwrap();
            }
            assert_eq!(session.statements(), 11);
        }
        // The next checkout of the same physical connection (r2d2 checks it with `SELECT 1`) is not
        // counted by the old session, and a new session starts at zero.
        let mut conn = pool.get().unwrap();
        let mut session = Session::new(&mut conn);
        assert_eq!(session.statements(), 0);
        Person::query().limit(1).load(&mut session).unwrap();
        assert_eq!(session.statements(), 1);
        let log = session.statement_log();
        assert_eq!(log.len(), 1);
        assert!(matches!(
            &log[0],
            Statement {
                transaction_control: false,
                ..
            }
        ));
    }
}
