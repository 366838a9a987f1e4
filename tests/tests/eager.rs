//! `joined` and `selectin`: constant statement counts, the same graph as lazy loading,
//! self-references with `join_depth`, options overriding defaults, bind limits, LIMIT.

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::{OrmBackend, QueryOptions};
use orm_tests::variants::{Boss, Depth1, Depth2, Depth3, Home, Resident};
use orm_tests::*;

orm_tests::backend_tests! {
    const SIZES: [usize; 3] = [10, 100, 1_000];

    fn full_spec() -> Spec {
        Spec {
            address: true,
            manager: Some(Box::new(Spec {
                address: true,
                ..Spec::default()
            })),
            reports: Some(Box::new(Spec::default())),
            projects: true,
        }
    }

    /// The graph as lazy loading builds it, on a fresh session.
    fn lazy_trees(conn: &mut Conn, spec: &Spec) -> Vec<PersonTree> {
        let mut session = Session::new(conn);
        let people = Person::query()
            .order_by(person::id)
            .options(lazy(Person::projects))
            .load(&mut session)
            .unwrap();
        let trees = people
            .iter()
            .map(|p| tree(p, spec, &mut session).unwrap())
            .collect();
        // Lazy loading is 1 + N: the test would be meaningless if it were not.
        assert!(session.statements() > people.len());
        trees
    }

    /// Loads with `options`, checks the statement count, then reads `spec` with no further SQL.
    fn eager_trees(
        conn: &mut Conn,
        options: impl QueryOptions<Person>,
        spec: &Spec,
        statements: usize,
    ) -> Vec<PersonTree> {
        let mut session = Session::new(conn);
        let people = Person::query()
            .order_by(person::id)
            .options(options)
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), statements, "{:#?}", session.queries());
        session.reset_statements();
        let trees = people
            .iter()
            .map(|p| tree(p, spec, &mut session).unwrap())
            .collect();
        assert_eq!(
            session.statements(),
            0,
            "eager graph needed lazy loads: {:#?}",
            session.queries()
        );
        trees
    }

    #[test]
    fn joined_is_one_statement_and_the_lazy_graph() {
        for size in SIZES {
            let (mut conn, _) = seeded(size);
            let spec = full_spec();
            let expected = lazy_trees(&mut conn, &spec);
            let options = (
                joined(Person::address),
                joined(Person::manager).then(joined(Person::address)),
                joined(Person::reports),
                joined(Person::projects),
            );
            let actual = eager_trees(&mut conn, options, &spec, 1);
            assert_eq!(actual.len(), size);
            assert_eq!(actual, expected, "size {size}");
        }
    }

    #[test]
    fn selectin_is_one_statement_per_relation_and_the_lazy_graph() {
        for size in SIZES {
            let (mut conn, _) = seeded(size);
            let spec = full_spec();
            let expected = lazy_trees(&mut conn, &spec);
            let options = (
                selectin(Person::address),
                selectin(Person::manager).then(selectin(Person::address)),
                selectin(Person::reports),
                selectin(Person::projects),
            );
            // people, address, reports, projects. Every manager is also a root: the session
            // holds them all, so `manager` needs no statement (as in SQLAlchemy, a many-to-one
            // selectin queries only the keys the identity map lacks), nor does `manager.address`,
            // which the first selectin loaded.
            let actual = eager_trees(&mut conn, options, &spec, 4);
            assert_eq!(actual, expected, "size {size}");
        }
    }

    #[test]
    fn nested_options_mix_strategies_per_hop() {
        for size in SIZES {
            let (mut conn, _) = seeded(size);
            let spec = Spec {
                reports: Some(Box::new(Spec {
                    address: true,
                    projects: true,
                    ..Spec::default()
                })),
                manager: Some(Box::new(Spec {
                    reports: Some(Box::new(Spec::default())),
                    ..Spec::default()
                })),
                ..Spec::default()
            };
            let expected = lazy_trees(&mut conn, &spec);
            let options = (
                selectin(Person::reports).then((joined(Person::address), selectin(Person::projects))),
                joined(Person::manager).then(selectin(Person::reports)),
            );
            // people + manager (joined); reports (+ their address, joined); reports.projects.
            // `manager.reports` finds every manager (a root) already loaded: no statement.
            let actual = eager_trees(&mut conn, options, &spec, 3);
            assert_eq!(actual, expected, "size {size}");
        }
    }

    #[test]
    fn joined_misses_are_loaded_empty() {
        let (mut conn, _) = seeded(100);
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .options((
                joined(Person::address),
                joined(Person::reports),
                joined(Person::manager),
            ))
            .load(&mut session)
            .unwrap();
        let homeless = people
            .iter()
            .find(|p| p.address_id.is_none())
            .expect("one in ten has no address");
        assert!(homeless.address.is_loaded());
        assert!(homeless.address.get().unwrap().is_none());
        let leaf = people.iter().find(|p| p.id == 99).unwrap();
        assert_eq!(leaf.reports.get().unwrap().len(), 0);
        let root = people.iter().find(|p| p.id == 1).unwrap();
        assert!(root.manager.get().unwrap().is_none());
        // Parents come back once each, though reports multiply rows.
        assert_eq!(people.len(), 100);
    }

    #[test]
    fn related_rows_are_decoded_once_and_shared() {
        let (mut conn, _) = seeded(200);
        for options in [
            Options::new().with(joined(Person::address)),
            Options::new().with(selectin(Person::address)),
        ] {
            let mut session = Session::new(&mut conn);
            let people = Person::query().options(options).load(&mut session).unwrap();
            // Take the most shared address.
            let mut by_address = std::collections::HashMap::<i32, Vec<&Person>>::new();
            for p in &people {
                by_address
                    .entry(p.address_id.unwrap_or(0))
                    .or_default()
                    .push(p);
            }
            by_address.remove(&0);
            let shared = by_address.into_values().max_by_key(Vec::len).unwrap();
            assert!(shared.len() >= 3, "an address is shared");
            let first = shared[0].address.get().unwrap().unwrap();
            for p in &shared[1..] {
                assert!(Loaded::ptr_eq(first, p.address.get().unwrap().unwrap()));
            }
        }
    }

    #[test]
    fn join_depth_loads_exactly_that_many_levels() {
        let (mut conn, _) = seeded(2_000);
        // Person 1234 -> 123 -> 12 -> 1 -> none.
        let mut session = Session::new(&mut conn);
        let p = Depth1::query()
            .filter(person::id.eq(1234))
            .first(&mut session)
            .unwrap()
            .unwrap();
        assert_eq!(session.statements(), 1);
        let m1 = p.manager.get().unwrap().unwrap();
        assert_eq!(m1.id, 123);
        assert!(
            m1.address.is_loaded(),
            "the address is joined at every level"
        );
        assert!(!m1.manager.is_loaded(), "join_depth = 1 stops here");
        // The deeper level falls back to its lazy load: one statement, which joins again from there.
        let m2 = m1.load(Depth1::manager, &mut session).unwrap().unwrap();
        assert_eq!(m2.id, 12);
        assert_eq!(session.statements(), 2);
        assert!(
            m2.manager.is_loaded(),
            "the lazy load of 12 joined its manager too"
        );

        drop(session);
        let mut session = Session::new(&mut conn);
        let p = Depth2::query()
            .filter(person::id.eq(1234))
            .first(&mut session)
            .unwrap()
            .unwrap();
        let m2 = p
            .manager
            .get()
            .unwrap()
            .unwrap()
            .manager
            .get()
            .unwrap()
            .unwrap();
        assert_eq!(m2.id, 12);
        assert!(!m2.manager.is_loaded());
        assert_eq!(session.statements(), 1);

        drop(session);
        let mut session = Session::new(&mut conn);
        let p = Depth3::query()
            .filter(person::id.eq(1234))
            .first(&mut session)
            .unwrap()
            .unwrap();
        let m2 = p
            .manager
            .get()
            .unwrap()
            .unwrap()
            .manager
            .get()
            .unwrap()
            .unwrap();
        let m3 = m2.manager.get().unwrap().unwrap();
        assert_eq!(m3.id, 1);
        assert!(!m3.manager.is_loaded());
        assert_eq!(session.statements(), 1);
        let sql = &session.queries()[0];
        assert_eq!(sql.matches(&q("LEFT OUTER JOIN `person`")).count(), 3, "{sql}");
        assert!(m3.load(Depth3::manager, &mut session).unwrap().is_none());
        assert_eq!(session.statements(), 1, "a NULL manager needs no SQL");
    }

    #[test]
    fn options_override_defaults_both_ways() {
        let (mut conn, _) = seeded(100);
        let mut session = Session::new(&mut conn);
        // A joined default turned lazy for one query.
        let people = Depth1::query()
            .options((lazy(Depth1::manager), lazy(Depth1::address)))
            .load(&mut session)
            .unwrap();
        assert!(people
            .iter()
            .all(|p| !p.manager.is_loaded() && !p.address.is_loaded()));
        assert!(!session.queries()[0].contains("JOIN"));
        // A lazy default turned joined.
        let people = Person::query()
            .options(joined(Person::address))
            .load(&mut session)
            .unwrap();
        assert!(people.iter().all(|p| p.address.is_loaded()));
        assert_eq!(session.statements(), 2);
        // The wildcard raises every relation no option names.
        session.clear_identity_map();
        let people = Person::query()
            .options((joined(Person::address), raise_all()))
            .load(&mut session)
            .unwrap();
        let error = people[5].load(Person::reports, &mut session).unwrap_err();
        assert!(matches!(
            error,
            Error::NotLoaded {
                relation: "reports",
                ..
            }
        ));
        assert!(people[5].load(Person::address, &mut session).is_ok());
        assert_eq!(session.statements(), 3);
    }

    #[test]
    fn joined_cycle_across_models_terminates() {
        let (mut conn, _) = seeded(100);
        let mut session = Session::new(&mut conn);
        let residents = Resident::query().load(&mut session).unwrap();
        assert_eq!(session.statements(), 1);
        assert_eq!(residents.len(), 100);
        let sql = &session.queries()[0];
        // Resident.home, then Home.residents, then the cycle stops.
        assert_eq!(sql.matches("LEFT OUTER JOIN").count(), 2, "{sql}");
        let with_home = residents.iter().find(|r| r.address_id == Some(1)).unwrap();
        let home = with_home.home.get().unwrap().unwrap();
        let ids: Vec<i32> = home.residents.get().unwrap().iter().map(|r| r.id).collect();
        let expected: Vec<i32> = person::table
            .filter(person::address_id.eq(1))
            .order_by(person::id)
            .select(person::id)
            .load(session.connection())
            .unwrap();
        assert_eq!(ids, expected);
        // has_one picks one row of a non-unique key: the smallest key.
        let first = home
            .load(Home::first_resident, &mut session)
            .unwrap()
            .unwrap();
        assert_eq!(first.id, expected[0]);
    }

    #[test]
    fn selectin_default_loads_level_after_level() {
        let (mut conn, _) = seeded(1_000);
        let mut session = Session::new(&mut conn);
        let root = Boss::query()
            .filter(person::id.eq(1))
            .first(&mut session)
            .unwrap()
            .unwrap();
        // 1 -> 2..19 -> 20..199 -> 200..999 -> leaves: the root, four levels, then an empty level.
        let log = session.statement_log();
        assert_eq!(session.statements(), 5, "{log:#?}");
        assert!(log.first().unwrap().transaction_control && log.last().unwrap().transaction_control);
        fn count(b: &Boss) -> usize {
            1 + b
                .reports
                .get()
                .unwrap()
                .iter()
                .map(|r| count(r))
                .sum::<usize>()
        }
        assert_eq!(count(&root), 1_000);
    }

    #[test]
    fn selectin_over_the_bind_limit_is_chunked() {
        let (mut conn, _) = seeded(100_000);
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .options(selectin(Person::reports))
            .load(&mut session)
            .unwrap();
        assert_eq!(people.len(), 100_000);
        // 100,000 distinct keys: in chunks under SQLite's bind limit (32,000 keys: 4 statements),
        // as one array parameter on PostgreSQL (1 statement).
        let chunks = 100_000usize.div_ceil(<<Conn as diesel::Connection>::Backend as OrmBackend>::MAX_KEYS_PER_STATEMENT);
        assert_eq!(session.statements(), 1 + chunks);
        assert!(session.queries()[1].contains(KEY_LIST), "{}", &session.queries()[1][..200]);
        let total: usize = people.iter().map(|p| p.reports.get().unwrap().len()).sum();
        assert_eq!(
            total,
            100_000 - 1,
            "everyone but the root reports to someone"
        );
    }

    #[test]
    fn limit_counts_parents_with_joined_collections() {
        let (mut conn, _) = seeded(300);
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .filter(person::id.ge(2))
            .order_by(person::id)
            .limit(3)
            .offset(1)
            .options((joined(Person::reports), joined(Person::projects)))
            .load(&mut session)
            .unwrap();
        assert_eq!(
            people.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(session.statements(), 1);
        let reports: Vec<i32> = people[0]
            .reports
            .get()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(reports, (30..=39).collect::<Vec<_>>());
    }

    #[test]
    fn multi_statement_loads_run_in_one_transaction() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn);
        Person::query()
            .options(selectin(Person::address))
            .load(&mut session)
            .unwrap();
        // PostgreSQL adds its snapshot statement (REPEATABLE READ) after the outermost BEGIN.
        let snapshot = <<Conn as diesel::Connection>::Backend as OrmBackend>::SNAPSHOT;
        let statements = |session: &Session<'_, Conn>| -> Vec<String> {
            let log: Vec<String> = session.statement_log().into_iter().map(|s| s.sql).collect();
            if let Some(sql) = snapshot {
                assert!(log[1].starts_with(sql), "{log:#?}");
            }
            log.into_iter().filter(|s| snapshot.is_none_or(|sql| !s.starts_with(sql))).collect()
        };
        let log = statements(&session);
        assert_eq!(log.len(), 4, "{log:#?}");
        assert!(log[0].starts_with("BEGIN"));
        assert!(log[3].starts_with("COMMIT"));
        // Inside the caller's transaction, the load nests as a savepoint.
        session.reset_statements();
        session
            .transaction(|s| Person::query().options(selectin(Person::address)).load(s))
            .unwrap();
        let log = statements(&session);
        assert_eq!(log.len(), 6, "{log:#?}");
        assert!(log[0].starts_with("BEGIN") && log[1].starts_with("SAVEPOINT"), "{log:#?}");
        assert!(log[4].starts_with("RELEASE SAVEPOINT") && log[5].starts_with("COMMIT"), "{log:#?}");
        assert_eq!(session.statements(), 2);
    }

    #[test]
    fn many_to_one_selectin_queries_only_the_targets_the_session_lacks() {
        let (mut conn, _) = seeded(300);
        let distinct: Vec<Option<i32>> =
            person::table.select(person::address_id).distinct().load(&mut conn).unwrap();
        let distinct: Vec<i32> = distinct.into_iter().flatten().collect();
        let mut session = Session::new(&mut conn);
        // The session holds (while these are alive) the addresses with ids up to 10.
        let held = Address::query().filter(address::id.le(10)).load(&mut session).unwrap();
        assert_eq!(held.len(), 10);
        session.reset_statements();
        let people = Person::query().options(selectin(Person::address)).load(&mut session).unwrap();
        let log = session.statement_log();
        let selectin = log.iter().filter(|s| s.cause == "Person.address selectin").collect::<Vec<_>>();
        assert_eq!(selectin.len(), 1, "{log:#?}");
        let missing = distinct.iter().filter(|&&id| id > 10).count();
        // The bound keys (`[11, 12, ..]` on SQLite, one array `[[11, 12, ..]]` on PostgreSQL).
        let binds = selectin[0].sql.split(" -- binds: ").nth(1).unwrap();
        assert_eq!(binds.split(',').count(), missing, "only the keys the session lacks: {binds}");
        // Ascending, each once: the database indexes the `IN` list, in order at the least cost.
        let keys: Vec<i32> = binds
            .split(',')
            .map(|k| k.trim_matches(|c: char| c == '[' || c == ']' || c.is_whitespace()))
            .map(|k| k.parse().unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys sorted and distinct: {binds}");
        for p in &people {
            let address = p.address.get().expect("loaded");
            assert_eq!(address.map(|a| a.id), p.address_id);
            if let Some(a) = address.filter(|a| a.id <= 10) {
                let same = held.iter().any(|h| Loaded::ptr_eq(h, a));
                assert!(same, "a held address is shared, not decoded again");
            }
        }
    }
}
