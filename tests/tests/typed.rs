//! Typed loaded state: typed reads see what untyped reads see, with no SQL and no `Result`; the
//! state follows the options (nested, merged, in any order), the declared defaults and `upgrade`.
//! What must not compile is in `ui/typed/`.

#![allow(clippy::type_complexity)] // these tests spell states out on purpose

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::{Joined, Loads, No, Selectin, Yes};
use orm_examples::{person_rel, AddressState, PersonState, ProjectState};
use orm_tests::variants::{Home, HomeState, Resident, ResidentState};
use orm_tests::*;

/// Needs `address` loaded; reads it with no SQL.
fn city(p: &Loaded<Person, impl Has<person_rel::address>>) -> Option<String> {
    p.get(Person::address).map(|a| a.city.clone())
}

/// Needs the reports and their addresses loaded.
fn report_cities(
    p: &Loaded<Person, impl Has<person_rel::reports, Inner: Has<person_rel::address>>>,
) -> Vec<Option<String>> {
    p.get(Person::reports).iter().map(city).collect()
}

/// A shape named once, for struct fields and return types.
type PersonCard = Loads<
    Person,
    (Joined<person_rel::address>, Selectin<person_rel::reports, (Joined<person_rel::address>,)>),
>;

orm_tests::backend_tests! {
    #[test]
    fn typed_reads_see_the_untyped_values_with_no_sql() {
        let (mut conn, _) = seeded(300);
        let mut session = Session::new(&mut conn);
        let people = Person::query()
            .order_by(person::id)
            .options((
                joined(Person::address),
                selectin(Person::reports).then(joined(Person::address)),
            ))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 2);
        session.reset_statements();
        let mut with_reports = 0;
        for p in &people {
            // Untyped, through `Deref` and the runtime accessors.
            let untyped_city = p.address.get().flatten().map(|a| a.city.clone());
            let untyped_reports: Vec<Option<String>> = p
                .reports
                .get()
                .unwrap()
                .iter()
                .map(|r| r.address.get().flatten().map(|a| a.city.clone()))
                .collect();
            assert_eq!(city(p), untyped_city);
            assert_eq!(report_cities(p), untyped_reports);
            // The typed view is the same shared object, not a copy.
            let typed: Vec<i32> = p.get(Person::reports).iter().map(|r| r.id).collect();
            let plain: Vec<i32> = p.reports.get().unwrap().iter().map(|r| r.id).collect();
            assert_eq!(typed, plain);
            with_reports += usize::from(!typed.is_empty());
        }
        assert!(with_reports > 10, "the data set has managers");
        assert_eq!(session.statements(), 0, "typed reads run no SQL");
    }

    #[test]
    fn the_state_is_the_same_whatever_the_option_order_and_merges_options() {
        let (mut conn, _) = seeded(50);
        let mut session = Session::new(&mut conn);
        // Each binding states the type the query must have: these compile only if the fold is
        // order-independent and merges the two options on `reports`.
        let in_order: Vec<PersonCard> = Person::query()
            .options((
                joined(Person::address),
                selectin(Person::reports).then(joined(Person::address)),
            ))
            .load(&mut session)
            .unwrap();
        let reversed: Vec<PersonCard> = Person::query()
            .options((
                selectin(Person::reports).then(joined(Person::address)),
                joined(Person::address),
            ))
            .load(&mut session)
            .unwrap();
        let merged: Vec<PersonCard> = Person::query()
            .options(joined(Person::address))
            .options(selectin(Person::reports))
            .options(selectin(Person::reports).then(joined(Person::address)))
            .load(&mut session)
            .unwrap();
        let spelled: Vec<
            Loaded<Person, PersonState<Yes<AddressState>, No, Yes<PersonState<Yes<AddressState>>>>>,
        > = merged.clone();
        let cities = |people: &[PersonCard]| people.iter().map(report_cities).collect::<Vec<_>>();
        assert_eq!(cities(&in_order), cities(&reversed));
        assert_eq!(cities(&in_order), cities(&spelled));
    }

    #[test]
    fn a_later_option_on_the_same_relation_wins_in_the_type_as_at_run_time() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let people: Vec<Loaded<Person, PersonState<No, Yes<PersonState>>>> = Person::query()
            .options((selectin(Person::address), joined(Person::manager), raise(Person::address)))
            .load(&mut session)
            .unwrap();
        let p = &people[0];
        assert!(!p.address.is_loaded(), "raise, the later option, applied");
        assert!(matches!(p.load(Person::address, &mut session), Err(Error::NotLoaded { .. })));
        assert!(p.manager.is_loaded());
    }

    #[test]
    fn upgrade_loads_lazily_and_records_the_relation() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        let bare: Loaded<Person, PersonState> =
            Person::query().filter(person::id.eq(5)).first(&mut session).unwrap().unwrap();
        session.reset_statements();
        let upgraded = bare.upgrade(Person::address, &mut session).unwrap();
        assert!(session.statements() <= 1, "one lazy load at most");
        let expected = bare.address.get().flatten().map(|a| a.city.clone());
        assert_eq!(city(&upgraded), expected);
        // Upgrading again, or a relation the state already has, keeps the type's other slots.
        let twice: Loaded<Person, PersonState<Yes<AddressState>, No, Yes<PersonState>>> =
            upgraded.upgrade(Person::reports, &mut session).unwrap();
        assert_eq!(city(&twice), expected);
        // A raised relation does not upgrade: the error is the runtime one.
        let raised = Person::query()
            .filter(person::id.eq(5))
            .options(raise(Person::projects))
            .first(&mut session)
            .unwrap()
            .unwrap();
        assert!(matches!(
            raised.upgrade(Person::projects, &mut session),
            Err(Error::NotLoaded { .. })
        ));
    }

    #[test]
    fn declared_defaults_count_at_the_query_level_only() {
        let (mut conn, _) = seeded(30);
        let mut session = Session::new(&mut conn);
        // `Resident.home` is declared joined: loaded in the base state, with no option.
        let residents: Vec<Loaded<Resident, ResidentState<Yes<HomeState>>>> =
            Resident::query().load(&mut session).unwrap();
        for r in &residents {
            assert_eq!(
                r.get(Resident::home).map(|h| h.id),
                r.home.get().flatten().map(|h| h.id)
            );
        }
        // Below it, the home's own joined `residents` is not claimed: a joined cycle stops there.
        let homes: Vec<Loaded<Home, HomeState<Yes<ResidentState>, No>>> =
            Home::query().load(&mut session).unwrap();
        assert!(homes.iter().any(|h| !h.get(Home::residents).is_empty()));
    }

    #[test]
    fn options_built_at_run_time_and_raise_all_claim_nothing() {
        let (mut conn, _) = seeded(20);
        let mut session = Session::new(&mut conn);
        // One type whatever the run-time choice: the address is loaded, but not claimed.
        for with_address in [false, true] {
            let mut options = Options::new();
            if with_address {
                options = options.with(joined(Person::address));
            }
            let people: Vec<Loaded<Person, PersonState>> =
                Person::query().options(options).load(&mut session).unwrap();
            assert_eq!(people[0].address.is_loaded(), with_address);
        }
        // raise_all first keeps what the options after it name.
        let people: Vec<Loaded<Person, PersonState<No, No, No, Yes<ProjectState>>>> =
            Person::query()
                .order_by(person::id)
                .options((raise_all(), selectin(Person::projects)))
                .load(&mut session)
                .unwrap();
        for p in &people {
            let mut expected: Vec<i32> = person_project::table
                .filter(person_project::person_id.eq(p.id))
                .select(person_project::project_id)
                .load(session.connection())
                .unwrap();
            expected.sort_unstable();
            let typed: Vec<i32> = p.get(Person::projects).iter().map(|p| p.id).collect();
            assert_eq!(typed, expected, "person {}", p.id);
        }
        assert!(!people[0].manager.is_loaded() && people[0].manager.is_raise());
    }

    #[test]
    fn a_collection_held_from_before_a_data_change_still_gets_the_nested_loads() {
        let (mut conn, _) = seeded(100);
        let mut session = Session::new(&mut conn);
        // Person 1's reports, loaded and held; then one report moves to another manager.
        let before = Person::query()
            .filter(person::id.eq(1))
            .options(selectin(Person::reports))
            .load(&mut session)
            .unwrap();
        let held: Vec<i32> = before[0].get(Person::reports).iter().map(|r| r.id).collect();
        assert!(held.len() >= 2, "person 1 has reports");
        diesel::update(person::table.filter(person::id.eq(held[0])))
            .set(person::manager_id.eq(2))
            .execute(session.connection())
            .unwrap();
        // The held collection keeps the moved report, whose row the join no longer brings: its
        // address is loaded all the same, so the typed read cannot find it missing.
        let after = Person::query()
            .filter(person::id.eq(1))
            .options(joined(Person::reports).then(joined(Person::address)))
            .load(&mut session)
            .unwrap();
        let reports = after[0].get(Person::reports);
        assert_eq!(reports.iter().map(|r| r.id).collect::<Vec<_>>(), held);
        for r in reports {
            assert!(r.address.is_loaded(), "report {} has its address loaded", r.id);
            assert_eq!(r.get(Person::address).map(|a| a.id), r.address_id);
        }
    }
}
