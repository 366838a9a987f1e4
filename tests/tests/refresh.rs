//! Sessions over time: what a load returns when it reaches an object the session already holds
//! and the row changed; `populate_existing`, `refresh`, `expire`, `expire_all`,
//! `expire_on_commit`, and what a rolled-back transaction leaves in the identity map.

use std::collections::BTreeSet;
use std::ptr;

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::{Error, Report};
use orm_examples::person_rel;
use orm_tests::*;

/// Person 12 is managed by 1 in the seed; 3 is another manager.
const MOVED: i32 = 12;

/// The ids of `p`'s loaded reports.
fn report_ids(p: &Person) -> BTreeSet<i32> {
    p.reports.get().expect("reports loaded").iter().map(|r| r.id).collect()
}

/// Needs the reports loaded: the typed state a load promised.
fn typed_report_count(p: &Loaded<Person, impl Has<person_rel::reports>>) -> usize {
    p.get(Person::reports).len()
}

orm_tests::backend_tests! {
    /// Inserts person 10,001, "New Hire", managed by `manager`, with plain diesel.
    fn hire(conn: &mut Conn, manager: i32) {
        diesel::insert_into(person::table)
            .values((
                person::id.eq(10_001),
                person::firstname.eq("New"),
                person::lastname.eq("Hire"),
                person::manager_id.eq(Some(manager)),
            ))
            .execute(conn)
            .unwrap();
    }

    /// Person `id` as `session.get` hands it out, with exactly `statements` statements (0: from
    /// the identity map).
    fn get_with(session: &mut Session<'_, Conn>, id: i32, statements: usize) -> Loaded<Person> {
        session.assert_statements(statements, |s| s.get::<Person>(id).unwrap().unwrap())
    }

    #[test]
    fn a_changed_row_replaces_the_held_object_in_every_strategy() {
        for strategy in ["joined", "selectin", "lazy"] {
            let (mut conn, _) = seeded(200);
            let mut session = Session::new(&mut conn);
            session.detect_n_plus_one(false);
            let old = Person::query()
                .filter(person::id.eq(MOVED))
                .options(joined(Person::manager))
                .first(&mut session)
                .unwrap()
                .unwrap();
            let firstname = old.firstname.clone();
            diesel::update(person::table.find(MOVED))
                .set((person::firstname.eq("Renamed"), person::manager_id.eq(Some(3))))
                .execute(session.connection())
                .unwrap();

            let query = Person::query().filter(person::id.eq(MOVED));
            let fresh = match strategy {
                "joined" => query.options(joined(Person::manager)).first(&mut session).map(|p| p.map(|p| p.untyped())),
                "selectin" => query.options(selectin(Person::manager)).first(&mut session).map(|p| p.map(|p| p.untyped())),
                _ => query.first(&mut session).map(|p| p.map(|p| p.untyped())),
            };
            let fresh = fresh.unwrap().unwrap();
            // The new object agrees with itself: its fields and its manager come from one row.
            assert_eq!((fresh.firstname.as_str(), fresh.manager_id), ("Renamed", Some(3)), "{strategy}");
            let manager = fresh.load(Person::manager, &mut session).unwrap().unwrap();
            assert_eq!(manager.id, 3, "{strategy}");
            // The old handle keeps its snapshot, whole.
            assert_eq!((old.firstname.as_str(), old.manager_id), (firstname.as_str(), Some(1)));
            assert_eq!(old.manager.get().unwrap().unwrap().id, 1);
            assert!(!ptr::eq(&*old, &*fresh));
            // From now on the session hands out the new object.
            let got = get_with(&mut session, MOVED, 0);
            assert!(ptr::eq(&*got, &*fresh), "{strategy}");
        }
    }

    #[test]
    fn a_changed_row_reached_as_a_related_object_is_new_too() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        let pauline = session.get::<Person>(2).unwrap().unwrap();
        diesel::update(person::table.find(2))
            .set(person::lastname.eq("Changed"))
            .execute(session.connection())
            .unwrap();
        // Person 20's manager is 2: joined reads 2's row again, sees it changed.
        let p = Person::query()
            .filter(person::id.eq(20))
            .options(joined(Person::manager))
            .first(&mut session)
            .unwrap()
            .unwrap();
        let manager = p.manager.get().unwrap().unwrap();
        assert_eq!(manager.lastname, "Changed");
        assert_ne!(pauline.lastname, "Changed");
        // A many-to-one `selectin` answers a held target from the identity map (its key is all it
        // needs to agree with), so it returns the object the joined load just stored.
        let q = Person::query()
            .filter(person::id.eq(21))
            .options(selectin(Person::manager))
            .first(&mut session)
            .unwrap()
            .unwrap();
        assert_eq!(session.statements(), 4, "get, update, joined, and no statement for a held manager: {:#?}", session.queries());
        assert!(Loaded::ptr_eq(q.manager.get().unwrap().unwrap(), manager));
    }

    #[test]
    fn an_unchanged_row_keeps_the_held_object_and_its_relations() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        let first = Person::query()
            .filter(person::id.eq(1))
            .options(selectin(Person::reports))
            .first(&mut session)
            .unwrap()
            .unwrap();
        let again = Person::query().filter(person::id.eq(1)).first(&mut session).unwrap().unwrap();
        assert!(ptr::eq(&*first, &*again));
        assert_eq!(report_ids(&again).len(), 18);
        // A new report: reading person 1 again without `populate_existing` keeps the collection
        // the session loaded (the row of person 1 did not change; SQLAlchemy does the same).
        hire(session.connection(), 1);
        let kept = Person::query()
            .filter(person::id.eq(1))
            .options(selectin(Person::reports))
            .first(&mut session)
            .unwrap()
            .unwrap();
        assert!(ptr::eq(&*first, &*kept));
        assert_eq!(report_ids(&kept).len(), 18);
    }

    #[test]
    fn populate_existing_replaces_held_objects_and_their_loaded_relations() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        let before = Person::query()
            .filter(person::id.le(3))
            .order_by(person::id)
            .options(selectin(Person::reports))
            .load(&mut session)
            .unwrap();
        assert_eq!(report_ids(&before[0]).len(), 18);
        hire(session.connection(), 1);
        session.reset_statements();
        let after = Person::query()
            .filter(person::id.le(3))
            .order_by(person::id)
            .options(selectin(Person::reports))
            .populate_existing()
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 2);
        // The typed state is the query's, as without `populate_existing`.
        assert_eq!(typed_report_count(&after[0]), 19);
        assert!(report_ids(&after[0]).contains(&10_001));
        // Every object the load reached is new, changed or not; the old graph is untouched.
        for (old, new) in before.iter().zip(&after) {
            assert!(!ptr::eq(&**old, &**new));
        }
        let old_report = &before[0].reports.get().unwrap()[0];
        let new_report = &after[0].reports.get().unwrap()[0];
        assert_eq!(old_report.id, new_report.id);
        assert!(!ptr::eq(&**old_report, &**new_report));
        assert_eq!(typed_report_count(&before[0]), 18);
        // The identity map points at the new objects.
        let got = get_with(&mut session, 1, 0);
        assert!(ptr::eq(&*got, &*after[0]));
    }

    #[test]
    fn refresh_reloads_one_object_and_the_relations_it_had_loaded() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        let pierre = Person::query()
            .filter(person::id.eq(1))
            .options((selectin(Person::reports), joined(Person::address)))
            .first(&mut session)
            .unwrap()
            .unwrap();
        diesel::update(person::table.find(1))
            .set(person::lastname.eq("Refreshed"))
            .execute(session.connection())
            .unwrap();
        diesel::update(person::table.find(19)).set(person::manager_id.eq(Some(2))).execute(session.connection()).unwrap();
        session.reset_statements();
        let fresh = session.refresh(&pierre).unwrap();
        // The person, then its two loaded relations; the others stay as they were.
        assert_eq!(session.statements(), 3, "{:#?}", session.queries());
        assert_eq!(fresh.lastname, "Refreshed");
        assert_eq!(report_ids(&fresh).len(), 17);
        assert!(!report_ids(&fresh).contains(&19));
        assert_eq!(fresh.address.get().unwrap().map(|a| a.id), fresh.address_id);
        assert!(!fresh.manager.is_loaded());
        assert!(fresh.projects.is_raise(), "projects raise by default and were not loaded");
        assert!(matches!(fresh.load(Person::projects, &mut session), Err(Error::NotLoaded { .. })));
        assert_ne!(pierre.lastname, "Refreshed");
        assert_eq!(report_ids(&pierre).len(), 18);
        let again = session.refresh(&fresh).unwrap();
        assert!(!ptr::eq(&*again, &*fresh));
        assert_eq!(again.lastname, "Refreshed");
        let got = get_with(&mut session, 1, 0);
        assert!(ptr::eq(&*got, &*again));
    }

    #[test]
    fn refreshing_a_deleted_row_is_an_error_and_forgets_it() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        let p = session.get::<Person>(150).unwrap().unwrap();
        diesel::delete(person_project::table.filter(person_project::person_id.eq(150)))
            .execute(session.connection())
            .unwrap();
        diesel::delete(person::table.find(150)).execute(session.connection()).unwrap();
        match session.refresh(&p) {
            Err(error @ Error::Deleted { model: "Person", .. }) => {
                assert_eq!(error.to_string(), "cannot refresh `Person` 150: its row no longer exists");
            }
            other => panic!("expected Error::Deleted, got {other:?}"),
        }
        // Forgotten: `get` asks the database, which has no such row.
        session.reset_statements();
        assert!(session.get::<Person>(150).unwrap().is_none());
        assert_eq!(session.statements(), 1);
    }

    #[test]
    fn expire_and_expire_all_make_the_next_load_read_the_row() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        let five = session.get::<Person>(5).unwrap().unwrap();
        let six = session.get::<Person>(6).unwrap().unwrap();
        session.reset_statements();
        session.assert_statements(0, |s| s.get::<Person>(5).unwrap());
        diesel::update(person::table.filter(person::id.le(6))).set(person::lastname.eq("Later")).execute(session.connection()).unwrap();
        // Held, so `get` answers from the map: the old row.
        let held = get_with(&mut session, 5, 0);
        assert!(ptr::eq(&*held, &*five));
        session.expire::<Person>(&5);
        let five_again = get_with(&mut session, 5, 1);
        assert_eq!(five_again.lastname, "Later");
        // Only 5 was expired.
        let six_held = get_with(&mut session, 6, 0);
        assert!(ptr::eq(&*six_held, &*six));
        session.expire_all();
        let six_again = get_with(&mut session, 6, 1);
        assert_eq!(six_again.lastname, "Later");
        assert_ne!(six.lastname, "Later");
        // A lazy many-to-one reads an expired target too.
        let seven = session.get::<Person>(7).unwrap().unwrap();
        session.expire_all();
        let manager = session.assert_statements(1, |s| seven.load(Person::manager, s).unwrap().map(|m| m.id));
        assert_eq!(manager, Some(1));
    }

    #[test]
    fn a_commit_expires_the_map_only_with_expire_on_commit() {
        for expire in [false, true] {
            let (mut conn, _) = seeded(50);
            let mut session = Session::new(&mut conn);
            session.expire_on_commit(expire);
            let five = session.get::<Person>(5).unwrap().unwrap();
            session
                .transaction(|s| {
                    // Loads inside the transaction keep the map either way.
                    s.get::<Person>(6)?;
                    diesel::update(person::table.find(5))
                        .set(person::lastname.eq("Committed"))
                        .execute(s.connection())
                        .unwrap();
                    // A savepoint's commit does not expire.
                    let _seven = s.transaction(|s| s.get::<Person>(7))?;
                    s.assert_statements(0, |s| s.get::<Person>(7))?;
                    Ok(())
                })
                .unwrap();
            session.reset_statements();
            let after = session.get::<Person>(5).unwrap().unwrap();
            if expire {
                assert_eq!(session.statements(), 1);
                assert_eq!(after.lastname, "Committed");
            } else {
                assert_eq!(session.statements(), 0);
                assert!(ptr::eq(&*after, &*five));
            }
        }
    }

    #[test]
    fn a_rollback_forgets_the_objects_loaded_inside_it() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn);
        let before = session.get::<Person>(5).unwrap().unwrap();
        let inside = session
            .transaction(|s| -> orm_core::Result<()> {
                diesel::update(person::table.find(6))
                    .set(person::lastname.eq("Rolled back"))
                    .execute(s.connection())
                    .unwrap();
                let six = s.get::<Person>(6)?.unwrap();
                assert_eq!(six.lastname, "Rolled back");
                // Held from before: still answered from the map inside.
                s.assert_statements(0, |s| s.get::<Person>(5))?;
                Err(Error::Database { sql: String::new(), source: diesel::result::Error::RollbackTransaction })
            });
        assert!(inside.is_err());
        // Person 6 was read with the undone write: forgotten, so `get` reads the row again.
        let six = get_with(&mut session, 6, 1);
        assert_ne!(six.lastname, "Rolled back");
        // Person 5 was loaded before the transaction: kept.
        let five = get_with(&mut session, 5, 0);
        assert!(ptr::eq(&*five, &*before));
    }

    #[test]
    fn a_writer_on_another_connection_between_two_loads() {
        let (_keep, pool) = pool(200, 2);
        let mut conn = pool.get().unwrap();
        let mut writer = pool.get().unwrap();
        let mut session = Session::new(&mut *conn);
        session.detect_n_plus_one(false);
        let load = |session: &mut Session<'_, _>| {
            Person::query()
                .filter(person::id.le(40))
                .order_by(person::id)
                .options((joined(Person::manager), selectin(Person::reports)))
                .load(session)
                .unwrap()
        };
        let first = load(&mut session);
        writer
            .transaction::<_, diesel::result::Error, _>(|c| {
                diesel::update(person::table.find(MOVED))
                    .set((person::firstname.eq("Moved"), person::manager_id.eq(Some(3))))
                    .execute(c)?;
                hire(c, 2);
                Ok(())
            })
            .unwrap();
        let second = load(&mut session);
        let moved = &second[MOVED as usize - 1];
        assert_eq!((moved.firstname.as_str(), moved.manager_id), ("Moved", Some(3)));
        assert_eq!(moved.manager.get().unwrap().unwrap().id, 3);
        // The old person 12 in the old graph: as it was, with its old manager.
        let old = &first[MOVED as usize - 1];
        assert_eq!((old.manager_id, old.manager.get().unwrap().unwrap().id), (Some(1), 1));
        // No relation in either graph contradicts the keys of the object holding it.
        for p in first.iter().chain(&second) {
            assert_eq!(p.manager.get().unwrap().map(|m| m.id), p.manager_id, "person {}", p.id);
            for r in p.reports.get().unwrap() {
                assert_eq!(r.manager_id, Some(p.id), "report {} of {}", r.id, p.id);
            }
        }
        // Persons 2 and 3 read unchanged rows: the held objects, with the collections loaded by
        // the first load (so the new hire and the moved person are not in them yet).
        assert!(ptr::eq(&*first[1], &*second[1]));
        assert!(!report_ids(&second[1]).contains(&10_001));
        // With `populate_existing`, the second load's snapshot throughout.
        let third = Person::query()
            .filter(person::id.le(3))
            .order_by(person::id)
            .options(selectin(Person::reports))
            .populate_existing()
            .load(&mut session)
            .unwrap();
        assert!(!report_ids(&third[0]).contains(&MOVED));
        assert!(report_ids(&third[1]).contains(&10_001));
        assert!(report_ids(&third[2]).contains(&MOVED));
    }

    #[test]
    fn refreshed_objects_count_relations_as_loaded_only_if_this_load_loaded_them() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        let _first = Person::query()
            .filter(person::id.between(2, 11))
            .options(selectin(Person::reports))
            .load(&mut session)
            .unwrap();
        diesel::update(person::table.filter(person::id.between(2, 11)))
            .set(person::lastname.eq("Changed"))
            .execute(session.connection())
            .unwrap();
        let people = Person::query().filter(person::id.between(2, 11)).load(&mut session).unwrap();
        // New objects: their reports are not loaded, so reading them is a lazy load each, which
        // the detector reports.
        assert!(people.iter().all(|p| !p.reports.is_loaded() && p.lastname == "Changed"));
        session.reset_statements();
        let line = line!() + 2;
        for p in &people {
            p.load(Person::reports, &mut session).unwrap();
        }
        assert_eq!(session.statements(), 10);
        let reports = session.reports();
        assert!(
            reports.iter().any(|r| matches!(r, Report::NPlusOne { relation: "reports", count: 10, location, .. } if location.line() == line)),
            "{reports:#?}"
        );
    }

    #[test]
    fn an_old_and_a_new_object_of_one_row_both_get_their_collection() {
        let mut conn = empty();
        without_foreign_keys(
            &mut conn,
            "INSERT INTO person VALUES (1, 'One', 'l', NULL, 1);
             INSERT INTO person VALUES (2, 'Two', 'l', NULL, 1);",
        );
        let mut session = Session::new(&mut conn);
        let held = Person::query().order_by(person::id).load(&mut session).unwrap();
        // Person 2 holds the old person 1 as its manager, and the old person 1 itself.
        for p in &held {
            p.load(Person::manager, &mut session).unwrap();
        }
        diesel::update(person::table.find(1)).set(person::firstname.eq("Changed")).execute(session.connection()).unwrap();
        // The managers' managers' reports: the old person 1 (through 2's loaded manager) and
        // the new one (read again as a root) are both parents of one `reports` load.
        let people = Person::query()
            .order_by(person::id)
            .options(selectin(Person::manager).then(joined(Person::manager).then(joined(Person::reports))))
            .load(&mut session)
            .unwrap();
        for p in &people {
            let boss = p.manager.get().unwrap().unwrap().manager.get().unwrap().unwrap();
            assert_eq!(report_ids(boss), BTreeSet::from([1, 2]), "person {}'s manager's manager", p.id);
        }
        assert_eq!(people[0].firstname, "Changed");
        assert_eq!(people[1].manager.get().unwrap().unwrap().firstname, "One");
    }
}
