//! Seeing and stopping N+1: statement assertions, strict sessions, the N+1 and unused-eager-load
//! detector, and `to_sql` (the SQL echo is in echo.rs).

use std::panic::{catch_unwind, AssertUnwindSafe};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::Report;
use orm_tests::*;

orm_tests::backend_tests! {
    #[test]
    fn the_detector_reports_a_lazy_loop_once_with_its_call_site() {
        let (mut conn, _) = seeded(100);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        let people = Person::query().filter(person::id.le(10)).load(&mut session).unwrap();
        let line = line!() + 2;
        for p in &people {
            p.load(Person::reports, &mut session).unwrap();
        }
        let reports = session.reports();
        assert_eq!(reports.len(), 1, "{reports:#?}");
        match &reports[0] {
            Report::NPlusOne { model, relation, count, location, fix } => {
                assert_eq!((*model, *relation, *count), ("Person", "reports", 10));
                assert_eq!(location.line(), line);
                assert!(location.file().ends_with("observe.rs"));
                assert_eq!(fix, "selectin(Person::reports)");
            }
            other => panic!("expected an N+1 report, got {other:?}"),
        }
        assert!(reports[0].to_string().contains("load it with `selectin(Person::reports)`"));
    }

    #[test]
    fn one_call_site_over_many_queries_is_one_report() {
        let (mut conn, _) = seeded(100);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        let mut line = 0;
        for _ in 0..50 {
            let people = Person::query().filter(person::id.le(10)).load(&mut session).unwrap();
            line = line!() + 2;
            for p in &people {
                p.load(Person::reports, &mut session).unwrap();
            }
        }
        let reports = session.reports();
        assert_eq!(reports.len(), 1, "{reports:#?}");
        match &reports[0] {
            Report::NPlusOne { count, location, .. } => {
                assert_eq!((*count, location.line()), (500, line));
            }
            other => panic!("expected an N+1 report, got {other:?}"),
        }
    }

    #[test]
    fn a_single_lazy_read_is_not_n_plus_one() {
        let (mut conn, _) = seeded(100);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        let pierre = Person::query().filter(person::id.eq(1)).first(&mut session).unwrap().unwrap();
        pierre.load(Person::reports, &mut session).unwrap();
        // Two objects of one query, one lazy read each on different relations: no pattern.
        let two = Person::query().filter(person::id.between(5, 6)).load(&mut session).unwrap();
        two[0].load(Person::reports, &mut session).unwrap();
        two[1].load(Person::address, &mut session).unwrap();
        assert_eq!(session.reports(), vec![]);
    }

    #[test]
    fn an_unused_eager_load_is_reported_until_read() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        let people = Person::query()
            .options((joined(Person::address), selectin(Person::reports)))
            .load(&mut session)
            .unwrap();
        let unused = session.reports();
        assert_eq!(unused.len(), 2, "{unused:#?}");
        assert!(unused.contains(&Report::UnusedEagerLoad {
            model: "Person",
            relation: "address",
            strategy: orm_core::Strategy::Joined,
            objects: 50,
            loads: 1,
            declared: false,
        }));
        assert!(unused[0].to_string().ends_with("never read; drop the option"), "{}", unused[0]);
        let _ = people[3].address.get();
        let left = session.reports();
        assert_eq!(left.len(), 1);
        assert!(matches!(left[0], Report::UnusedEagerLoad { relation: "reports", .. }));
        let _ = people[0].load(Person::reports, &mut session).unwrap();
        assert_eq!(session.reports(), vec![]);
    }

    #[test]
    fn a_declared_eager_default_is_reported_as_declared_once_per_relation_and_judged_on_every_level() {
        use orm_tests::variants::Depth3;
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        // `manager` is declared joined three levels deep, `address` joined at every level.
        for _ in 0..2 {
            let people = Depth3::query().load(&mut session).unwrap();
            // The addresses of the roots are read; the deeper levels' are not.
            for p in &people {
                let _ = p.address.get();
            }
        }
        let reports = session.reports();
        // Read on one level of each load: not unused. The managers, read on none: one report,
        // the two loads and their three levels merged.
        assert_eq!(reports.len(), 1, "{reports:#?}");
        let Report::UnusedEagerLoad { relation, loads, declared, .. } = &reports[0] else {
            panic!("{reports:#?}");
        };
        assert_eq!((*relation, *loads, *declared), ("manager", 2, true));
        let text = reports[0].to_string();
        assert!(text.contains("`Depth3.manager` is declared `lazy = \"joined\"`"), "{text}");
        assert!(text.contains("by 2 loads") && text.contains("lazy(Depth3::manager)"), "{text}");
        drop(session);
        // The same relation named by an option is the option's report.
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        let _people = Depth3::query().options(joined(Depth3::manager)).load(&mut session).unwrap();
        let reports = session.reports();
        assert!(
            reports.iter().any(|r| matches!(
                r,
                Report::UnusedEagerLoad { relation: "manager", declared: false, loads: 1, .. }
            )),
            "{reports:#?}"
        );
    }

    #[test]
    fn a_strict_session_refuses_every_lazy_load() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn).strict();
        let people = Person::query().options(joined(Person::address)).load(&mut session).unwrap();
        assert!(people[4].load(Person::address, &mut session).is_ok(), "loaded by the query");
        let line = line!() + 1;
        let error = people[4].load(Person::manager, &mut session).unwrap_err();
        match error {
            Error::StrictLazyLoad { model: "Person", relation: "manager", location } => {
                assert_eq!(location.line(), line)
            }
            other => panic!("expected StrictLazyLoad, got {other:?}"),
        }
        assert_eq!(session.statements(), 1);
    }

    #[test]
    fn n_plus_one_only_allows_one_lazy_load_per_query() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn).n_plus_one_only();
        let people = Person::query().filter(person::id.le(3)).order_by(person::id).load(&mut session).unwrap();
        people[0].load(Person::reports, &mut session).unwrap();
        let error = people[1].load(Person::reports, &mut session).unwrap_err();
        assert!(matches!(error, Error::NPlusOne { model: "Person", relation: "reports", .. }), "{error:?}");
        assert!(error.to_string().contains("selectin(Person::reports)"));
        // Another relation of the same query, and a lone object of another query, are fine.
        people[1].load(Person::address, &mut session).unwrap();
        let lone = Person::query().filter(person::id.eq(7)).first(&mut session).unwrap().unwrap();
        lone.load(Person::reports, &mut session).unwrap();
    }

    #[test]
    fn statement_assertions_list_what_ran() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let people = session.assert_statements(2, |s| {
            Person::query().options(selectin(Person::reports)).load(s).unwrap()
        });
        assert_eq!(people.len(), 20);
        session.assert_at_most_statements(1, |s| Person::query().limit(1).load(s).unwrap());
        let failure = catch_unwind(AssertUnwindSafe(|| {
            session.assert_statements(1, |s| {
                for p in people.iter().take(2) {
                    p.load(Person::address, s).unwrap();
                }
            })
        }))
        .unwrap_err();
        let message = failure.downcast_ref::<String>().unwrap();
        assert!(message.starts_with("expected exactly 1 statements, 2 ran:"), "{message}");
        assert!(message.contains(&q("1. SELECT `address`.`id`")), "{message}");
        assert!(message.contains("Person.address lazy load"), "{message}");
    }

    #[test]
    fn the_statement_log_keeps_the_latest_statements_and_counts_every_one() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn);
        let people = Person::query().filter(person::id.le(10)).order_by(person::id).load(&mut session).unwrap();
        session.statement_log_limit(3);
        for p in &people[..6] {
            p.load(Person::reports, &mut session).unwrap();
        }
        assert_eq!(session.statements(), 7, "counted whatever the log keeps");
        let log = session.statement_log();
        let kept: Vec<(String, &str)> = log
            .iter()
            // `[4]` on SQLite (`= ?`), `[[4]]` on PostgreSQL (`= ANY($1)`).
            .map(|s| (s.cause.clone(), s.sql.rsplit(" -- binds: ").next().unwrap()))
            .map(|(cause, binds)| (cause, binds.trim_matches(|c| c == '[' || c == ']')))
            .collect();
        let lazy = "Person.reports lazy load".to_owned();
        assert_eq!(kept, [(lazy.clone(), "4"), (lazy.clone(), "5"), (lazy, "6")]);

        // An assertion that fails after more statements than the log keeps says so.
        let failure = catch_unwind(AssertUnwindSafe(|| {
            session.assert_statements(0, |s| {
                for p in &people[6..] {
                    p.load(Person::reports, s).unwrap();
                }
            })
        }))
        .unwrap_err();
        let message = failure.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("expected exactly 0 statements, 4 ran (the first 1 of them no longer in the log: see"),
            "{message}"
        );
        let binds = |key: i32| [format!("-- binds: [{key}]"), format!("-- binds: [[{key}]]")];
        let listed = |key: i32| binds(key).iter().any(|b| message.contains(b.as_str()));
        assert!(message.contains("1. SELECT") && listed(8), "{message}");
        assert!(message.contains("3. SELECT") && listed(10), "{message}");
        assert!(!listed(7), "{message}");
        assert_eq!(session.statements(), 11);

        session.reset_statements();
        assert_eq!((session.statements(), session.statement_log().len()), (0, 0));
    }

    #[test]
    fn the_statement_log_keeps_ten_thousand_statements_and_512_kib_by_default() {
        let (mut conn, _) = seeded(1);
        let mut session = Session::new(&mut conn);
        let run = |session: &mut Session<'_, Conn>, n: usize| {
            for _ in 0..n {
                session.connection().batch_execute("SELECT 1").unwrap();
            }
        };
        run(&mut session, 10_001);
        assert_eq!(session.statements(), 10_001);
        // Bytes first: each entry holds a few hundred bytes with its text.
        let kept = session.statement_log().len();
        assert!((512..10_000).contains(&kept), "{kept}");
        // Without the byte limit, 10,000 statements.
        session.statement_log_bytes(usize::MAX);
        run(&mut session, 10_001);
        assert_eq!(session.statement_log().len(), 10_000);
        // With no room at all, still the latest statement, whatever its size.
        session.statement_log_bytes(0);
        let long = format!("SELECT '{}'", "x".repeat(100_000));
        session.connection().batch_execute(&long).unwrap();
        let log = session.statement_log();
        assert_eq!(log.len(), 1);
        assert!(log[0].sql.ends_with(" ..."), "cut after 16 KiB");
        assert_eq!(session.statements(), 20_003);
    }

    #[test]
    fn to_sql_shows_the_statement_without_running_it() {
        let (mut conn, _) = seeded(20);
        let session = Session::new(&mut conn);
        let query = Person::query::<<Conn as diesel::Connection>::Backend>()
            .filter(person::lastname.eq("Martin"))
            .options((joined(Person::address), selectin(Person::reports)));
        let sql = query.to_sql().unwrap();
        assert!(sql.contains(&q("LEFT OUTER JOIN `address` AS `t1`")), "{sql}");
        assert!(sql.contains("\"Martin\""), "the bound values are shown: {sql}");
        assert!(sql.ends_with("-- then one selectin statement per relation: reports"), "{sql}");
        let counted = Person::query::<<Conn as diesel::Connection>::Backend>()
            .options((count(Person::reports), count(Person::projects)))
            .to_sql()
            .unwrap();
        assert!(counted.ends_with("-- then one count statement per relation: reports, projects"), "{counted}");
        assert_eq!(session.statements(), 0);
    }
}
