//! Fault safety: a panic or an error anywhere in a load (user code inside a transaction, a
//! `FromSql` mid-decode, on any statement of a multi-statement load) leaves no transaction open,
//! keeps the session's identity map, frees the partial graph, and lets the next write commit.
//!
//! Faults are injected by [`Tripwire`], a text field whose decoding panics or fails at a chosen
//! decode. Live heap is measured by a counting allocator (per thread: the tests run in
//! parallel).
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use std::cell::{Cell, RefCell};
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};

use diesel::connection::{Connection, SimpleConnection, TransactionManager};
use diesel::deserialize::{self, FromSql};
use diesel::prelude::*;
use diesel::sql_types::Text;
use orm_core::prelude::*;
use orm_tests::*;

// ---------------------------------------------------------------------------------------------
// Live heap, per thread.

mod heap {
    #![allow(unsafe_code)] // a `GlobalAlloc` is unsafe to implement; it only forwards to `System`

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Forwards to the system allocator and counts the bytes each thread holds.
    struct Counting;

    thread_local! {
        // `const` and `Copy`: no lazy initialisation, no destructor, no allocation.
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    fn add(bytes: isize) {
        let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
    }

    // SAFETY: every call is forwarded to `System` with the caller's own arguments.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Bytes allocated and not yet freed by this thread.
    pub fn live() -> isize {
        LIVE.with(Cell::get)
    }
}

// ---------------------------------------------------------------------------------------------
// Fault injection.

/// The payload of an injected panic (silenced in the panic hook: the tests inject hundreds).
#[derive(Debug)]
struct Injected;

/// What the next decodes do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Decode normally.
    None,
    /// Panic at decode number `n` (from 1).
    Panic(u64),
    /// Fail at decode number `n`.
    Error(u64),
    /// Run the nested load at every decode.
    Nested,
}

thread_local! {
    static FAULT: Cell<Fault> = const { Cell::new(Fault::None) };
    static DECODES: Cell<u64> = const { Cell::new(0) };
    static FIRED: Cell<bool> = const { Cell::new(false) };
    static NESTED: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
}

/// Arms `fault` for the following decodes, counting them from zero.
fn arm(fault: Fault) {
    silence_injected_panics();
    FAULT.set(fault);
    DECODES.set(0);
    FIRED.set(false);
}

/// Disarms, returning the decodes since [`arm`] and whether the fault fired.
fn disarm() -> (u64, bool) {
    FAULT.set(Fault::None);
    (DECODES.get(), FIRED.get())
}

fn silence_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Injected>() {
                default(info);
            }
        }));
    });
}

/// One decode: counts it, and fires the armed fault if it is the one.
fn trip() -> deserialize::Result<()> {
    let n = DECODES.get() + 1;
    DECODES.set(n);
    match FAULT.get() {
        Fault::Panic(at) if at == n => {
            FIRED.set(true);
            std::panic::panic_any(Injected)
        }
        Fault::Error(at) if at == n => {
            FIRED.set(true);
            Err("injected decode error".into())
        }
        Fault::Nested => {
            // Out of the cell while it runs: the nested load decodes no `Tripwire`, but a
            // `RefCell` borrow held across it would be the very re-entrancy bug under test.
            let nested = NESTED.with(|cell| cell.borrow_mut().take());
            if let Some(mut nested) = nested {
                nested();
                NESTED.with(|cell| *cell.borrow_mut() = Some(nested));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A text field whose decoding runs [`trip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripwire(pub String);

impl FromSql<Text, diesel::sqlite::Sqlite> for Tripwire {
    fn from_sql(value: diesel::sqlite::SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, diesel::sqlite::Sqlite>>::from_sql(value)?;
        trip()?;
        Ok(Tripwire(text))
    }
}

#[cfg(feature = "postgres")]
impl FromSql<Text, diesel::pg::Pg> for Tripwire {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, diesel::pg::Pg>>::from_sql(value)?;
        trip()?;
        Ok(Tripwire(text))
    }
}

/// `person`, with a [`Tripwire`] name.
#[derive(Model, Debug)]
#[orm(table = person)]
pub struct Staff {
    pub id: i32,
    pub firstname: Tripwire,
    pub manager_id: Option<i32>,
    pub address_id: Option<i32>,
    #[relation(belongs_to = Staff, foreign_key = manager_id)]
    pub manager: Rel<Option<Staff>>,
    #[relation(has_many = Staff, foreign_key = manager_id)]
    pub reports: Rel<Vec<Staff>>,
    #[relation(belongs_to = Office, foreign_key = address_id)]
    pub office: Rel<Option<Office>>,
}

/// `address`, with a [`Tripwire`] city.
#[derive(Model, Debug)]
#[orm(table = address)]
pub struct Office {
    pub id: i32,
    pub city: Tripwire,
    #[relation(has_many = Staff, foreign_key = address_id)]
    pub staff: Rel<Vec<Staff>>,
}

/// The transactions and savepoints open on `conn`.
fn depth<C: Connection>(conn: &mut C) -> Option<NonZeroU32> {
    C::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .expect("the transaction manager is not broken")
}

/// The three-statement load the tests fault: the root, its reports, theirs (on the seed's
/// tree: 1, then 2-19, then 20-199), with the offices of the last level joined.
macro_rules! three_levels {
    ($session:expr) => {
        Staff::query()
            .filter(person::manager_id.is_null())
            .options(
                selectin(Staff::reports).then(selectin(Staff::reports).then(joined(Staff::office))),
            )
            .load($session)
            .map(|roots| roots.len())
    };
}

/// The loads the property test faults: multi-statement loads of several shapes (selectin
/// levels, joined collections under selectin, many-to-one selectin, lazy loads one by one).
const LOADS: usize = 5;

macro_rules! run_load {
    ($n:expr, $session:expr) => {{
        let session = $session;
        match $n {
            0 => three_levels!(session),
            1 => Staff::query()
                .filter(person::id.le(60))
                .options((
                    selectin(Staff::office),
                    selectin(Staff::reports).then(selectin(Staff::office)),
                ))
                .load(session)
                .map(|roots| roots.len()),
            2 => Office::query()
                .filter(address::id.le(40))
                .options(
                    selectin(Office::staff)
                        .then((joined(Staff::manager), selectin(Staff::reports))),
                )
                .load(session)
                .map(|roots| roots.len()),
            3 => Staff::query()
                .filter(person::manager_id.is_null())
                .options(
                    joined(Staff::reports)
                        .then(selectin(Staff::reports).then(joined(Staff::office))),
                )
                .load(session)
                .map(|roots| roots.len()),
            // In a transaction, as a unit of work would be: the people it drops on failure are
            // dead identity entries until the next pruning otherwise, which the heap check
            // would count.
            _ => session.transaction(|session| {
                let people = Staff::query().filter(person::id.between(20, 35)).load(session)?;
                for p in &people {
                    p.load(Staff::office, session)?;
                    p.load(Staff::reports, session)?;
                }
                Ok(people.len())
            }),
        }
    }};
}

// ---------------------------------------------------------------------------------------------

orm_tests::backend_tests! {
    #[test]
    fn a_panic_in_a_transaction_rolls_it_back_and_the_next_one_commits() {
        let (_dir, pool) = pool(20, 2);
        let mut conn = pool.get().unwrap();
        let mut other = pool.get().unwrap();
        let mut session = Session::new(&mut conn);
        let insert = |id: i32| {
            diesel::insert_into(address::table)
                .values((address::id.eq(id), address::street.eq("s"), address::city.eq("c")))
        };
        silence_injected_panics();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            session
                .transaction(|s| -> orm_core::Result<()> {
                    insert(1001).execute(s.connection()).unwrap();
                    std::panic::panic_any(Injected)
                })
                .unwrap();
        }));
        assert!(caught.unwrap_err().is::<Injected>());
        assert_eq!(depth(session.connection()), None);
        // The other connection writes meanwhile: nothing holds the database's write lock.
        insert(1002).execute(&mut other).unwrap();
        // The next transaction commits: it is not a savepoint inside a stale transaction.
        session.transaction(|s| Ok(insert(1003).execute(s.connection()).unwrap())).unwrap();
        drop(session);
        drop(conn);
        let ids: Vec<i32> = address::table
            .select(address::id)
            .filter(address::id.gt(1000))
            .order_by(address::id)
            .load(&mut other)
            .unwrap();
        assert_eq!(ids, [1002, 1003]);
    }

    #[test]
    fn a_panic_inside_a_diesel_transaction_in_the_body_rolls_back_both_levels() {
        let (_dir, pool) = pool(20, 1);
        let mut conn = pool.get().unwrap();
        let mut session = Session::new(&mut conn);
        silence_injected_panics();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let _ = session.transaction(|s| {
                let _ = s
                    .connection()
                    .transaction(|_| -> QueryResult<()> { std::panic::panic_any(Injected) });
                Ok(())
            });
        }));
        assert!(caught.is_err());
        assert_eq!(depth(session.connection()), None);
    }

    #[test]
    fn a_panic_on_the_second_or_third_statement_closes_the_load_transaction() {
        for statement in [2, 3] {
            let (_dir, pool) = pool(200, 2);
            let mut conn = pool.get().unwrap();
            let mut other = pool.get().unwrap();
            let mut session = Session::new(&mut conn);
            // Decodes per statement: 1 root, 18 reports, 180 of theirs (and their offices).
            let first = match statement {
                2 => 1 + 5,
                _ => 1 + 18 + 5,
            };
            arm(Fault::Panic(first));
            let caught = catch_unwind(AssertUnwindSafe(|| three_levels!(&mut session)));
            assert_eq!(disarm(), (first, true));
            assert!(caught.unwrap_err().is::<Injected>());
            let log = session.statement_log();
            assert_eq!(log.iter().filter(|s| !s.transaction_control).count(), statement, "{log:#?}");
            assert!(log.last().unwrap().sql.starts_with("ROLLBACK"), "{log:#?}");
            assert_eq!(depth(session.connection()), None);
            // A write on this connection now commits: another connection sees it once this
            // one is gone.
            diesel::delete(person_project::table).execute(session.connection()).unwrap();
            drop(session);
            drop(conn);
            let links: i64 = person_project::table.count().get_result(&mut other).unwrap();
            assert_eq!(links, 0, "statement {statement}");
        }
    }

    fn reports_of_15(session: &mut Session<'_, Conn>) -> Vec<orm_core::Loads<Staff, (orm_core::Selectin<staff_rel::reports>,)>> {
        Staff::query().filter(person::id.eq(15)).options((selectin(Staff::reports),)).load(session).unwrap()
    }

    #[test]
    fn a_panic_mid_decode_keeps_the_identity_map_and_frees_the_partial_graph() {
        let (mut conn, _) = seeded(200);
        // Each attempt: a session holding Staff 150 (reached by the third statement, which
        // joins its office), the load, and the panic. Warm the connection's statement cache
        // with the same load first, counting its decodes.
        let decodes = {
            let mut session = Session::new(&mut conn);
            session.detect_n_plus_one(false);
            let _held = session.get::<Staff>(150).unwrap().unwrap();
            arm(Fault::None);
            three_levels!(&mut session).unwrap();
            let decodes = disarm().0;
            reports_of_15(&mut session);
            decodes
        };
        let baseline = heap::live();
        for at in [1, decodes / 2, decodes - 1] {
            let mut session = Session::new(&mut conn);
            session.detect_n_plus_one(false);
            let held = session.get::<Staff>(150).unwrap().unwrap();
            arm(Fault::Panic(at));
            let caught = catch_unwind(AssertUnwindSafe(|| three_levels!(&mut session)));
            assert_eq!(disarm(), (at, true));
            drop(caught);
            // The session still hands out the held object, without SQL.
            session.reset_statements();
            let again = session.assert_statements(0, |s| s.get::<Staff>(150).unwrap().unwrap());
            assert!(Loaded::ptr_eq(&held, &again));
            // The next load on this thread works, and reaches the held object.
            let roots = reports_of_15(&mut session);
            let reports = roots[0].reports.get().unwrap();
            assert!(reports.iter().any(|r| Loaded::ptr_eq(r, &held)));
            // Everything the session and its loads made, the partial graph included, goes
            // with the session and the last handle.
            drop((roots, again, held, session));
            assert_eq!(heap::live() - baseline, 0, "live heap after a panic at decode {at}");
        }
    }

    #[test]
    fn a_load_run_from_user_code_mid_decode_works() {
        let (mut conn, _) = seeded(30);
        let (mut inner, _) = seeded(12);
        let results = std::rc::Rc::new(RefCell::new(Vec::new()));
        let seen = std::rc::Rc::clone(&results);
        NESTED.with(|cell| {
            *cell.borrow_mut() = Some(Box::new(move || {
                let mut session = Session::new(&mut inner);
                let loaded = Person::query()
                    .options(selectin(Person::reports))
                    .load(&mut session)
                    .map(|people| people.iter().map(|p| p.reports.get().unwrap().len()).sum::<usize>());
                seen.borrow_mut().push(loaded.map_err(|e| e.to_string()));
            }))
        });
        let mut session = Session::new(&mut conn);
        arm(Fault::Nested);
        let roots = Staff::query()
            .filter(person::manager_id.is_null())
            .options(selectin(Staff::reports).then(joined(Staff::office)))
            .load(&mut session)
            .unwrap();
        let (decodes, _) = disarm();
        NESTED.with(|cell| cell.borrow_mut().take());
        // Every decode ran a whole load of its own, each right.
        let results = results.borrow();
        assert_eq!(results.len() as u64, decodes);
        assert!(results.iter().all(|r| r == &Ok(11)), "{:?}", &results[..3]);
        // And the outer graph is whole: 1, then 2-19 with their offices.
        let reports = roots[0].reports.get().unwrap();
        assert_eq!(reports.len(), 18);
        assert!(reports.iter().all(|r| r.office.is_loaded()));
        assert_eq!(session.statements(), 2);
    }

    #[test]
    fn an_injected_decode_error_is_a_decode_error_naming_model_and_column() {
        let (mut conn, _) = seeded(200);
        let mut session = Session::new(&mut conn);
        arm(Fault::Error(30));
        let error = three_levels!(&mut session).unwrap_err();
        disarm();
        assert!(
            matches!(
                error,
                Error::Decode { model: "Staff", column: "firstname", .. }
                    | Error::Decode { model: "Office", column: "city", .. }
            ),
            "{error:?}"
        );
        assert_eq!(depth(session.connection()), None);
    }

    #[test]
    fn placeholder_counting_never_overflows() {
        let (mut conn, _) = seeded(1);
        let mut session = Session::new(&mut conn);
        session.connection().batch_execute("SELECT 1 /* $99999999999999999999 ? */").unwrap();
        let log = session.statement_log();
        assert_eq!(log[0].binds, usize::MAX);
    }
    /// Random loads with a panic or an error injected at a random decode (a random row of a
    /// random statement); after each: no transaction open, the identity map intact, the live
    /// heap back where it was, and a write that commits. `ORM_FAULT_CASES` sets the cases.
    #[test]
    fn random_faults_in_random_loads_leave_the_session_whole() {
        use proptest::test_runner::{Config, TestRunner};
        let cases = std::env::var("ORM_FAULT_CASES").map_or(48, |n| n.parse().unwrap());
        let (_dir, pool) = pool(200, 2);
        // `run` takes an `Fn`: the connections are borrowed per case.
        let conn = RefCell::new(pool.get().unwrap());
        let other = RefCell::new(pool.get().unwrap());
        let mut runner =
            TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let case = Cell::new(0);
        let strategy = (0..LOADS, proptest::bool::ANY, 0.0..1.0f64);
        runner
            .run(&strategy, |(load, panics, at)| {
                case.set(case.get() + 1);
                let mut conn = conn.borrow_mut();
                let fault = |n: u64| if panics { Fault::Panic(n) } else { Fault::Error(n) };
                // Count the decodes of the load in a session holding Staff 150, as the faulted
                // one will (and warm the connection's statement cache).
                let decodes = {
                    let mut session = Session::new(&mut *conn);
                    session.detect_n_plus_one(false);
                    let _held = session.get::<Staff>(150).unwrap().unwrap();
                    arm(Fault::None);
                    run_load!(load, &mut session).unwrap();
                    disarm().0
                };
                let baseline = heap::live();

                let mut session = Session::new(&mut *conn);
                session.detect_n_plus_one(false);
                let held = session.get::<Staff>(150).unwrap().unwrap();
                let at = 1 + ((decodes - 1) as f64 * at) as u64;
                arm(fault(at));
                let outcome = catch_unwind(AssertUnwindSafe(|| run_load!(load, &mut session)));
                assert_eq!(disarm(), (at, true), "load {load}");
                match &outcome {
                    Err(payload) => assert!(panics && payload.is::<Injected>()),
                    Ok(Err(Error::Decode { .. })) => assert!(!panics),
                    Ok(other) => panic!("load {load} at decode {at}: {other:?}"),
                }
                drop(outcome);
                assert_eq!(depth(session.connection()), None, "load {load} at decode {at}");
                let again = session.assert_statements(0, |s| s.get::<Staff>(150).unwrap().unwrap());
                assert!(Loaded::ptr_eq(&held, &again));
                drop((again, held, session));
                assert_eq!(heap::live() - baseline, 0, "load {load}, fault at decode {at} of {decodes}");
                let mut session = Session::new(&mut *conn);

                let name = format!("case {}", case.get());
                session
                    .transaction(|s| {
                        let target = person::table.filter(person::id.eq(3));
                        diesel::update(target).set(person::lastname.eq(&name)).execute(s.connection()).unwrap();
                        Ok(())
                    })
                    .unwrap();
                let seen: String = person::table
                    .select(person::lastname)
                    .filter(person::id.eq(3))
                    .first(&mut *other.borrow_mut())
                    .unwrap();
                assert_eq!(seen, name);
                Ok(())
            })
            .unwrap();
        assert_eq!(case.get(), cases);
    }
}

/// PostgreSQL: a schema change on another connection makes the statements diesel prepared on
/// this one stale (`cached plan must not change result type`, forever, since diesel keeps
/// them); the session prepares them again.
#[cfg(feature = "postgres")]
mod stale_statements {
    use super::*;
    use orm_tests::pg::*;

    /// Changes the type of a text column of `table` on `other`: every plan reading it is stale.
    fn alter(other: &mut impl SimpleConnection, table: &str, column: &str, length: u32) {
        other
            .batch_execute(&format!(
                "ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar({length})"
            ))
            .unwrap();
    }

    #[test]
    fn a_statement_a_schema_change_made_stale_is_prepared_again_once() {
        let (_, pool) = pool(60, 2);
        let mut conn = pool.get().unwrap();
        let mut other = pool.get().unwrap();
        let mut session = Session::new(&mut conn);
        let people = Person::query().order_by(person::id).load(&mut session).unwrap();
        let with_address: Vec<_> = people.iter().filter(|p| p.address_id.is_some()).collect();
        // Prepared once each: a lazy load (a statement with a static id), a root query, and a
        // selectin load (cached by their SQL).
        let first = with_address[0];
        assert!(first.load(Person::address, &mut session).unwrap().is_some());
        let selectin_load = |session: &mut Session<'_, _>| {
            Person::query()
                .options(selectin(Person::reports))
                .load(session)
                .map(|people| people.iter().map(|p| p.reports.get().unwrap().len()).sum::<usize>())
        };
        assert_eq!(selectin_load(&mut session).unwrap(), 59);

        // A lazy load: the failed statement, `DEALLOCATE ALL`, and the statement again.
        alter(&mut other, "address", "city", 200);
        let next = with_address.iter().find(|p| p.address_id != first.address_id).unwrap();
        session.reset_statements();
        let address = next.load(Person::address, &mut session).unwrap().unwrap();
        assert_eq!(Some(address.id), next.address_id);
        let log = session.statement_log();
        assert_eq!(log.len(), 3, "{log:#?}");
        assert!(log[0].error.as_deref().unwrap().contains("cached plan"), "{log:#?}");
        assert_eq!(log[1].sql, "DEALLOCATE ALL");
        assert_eq!(log[2].error, None);
        // Prepared anew, it stays good.
        let third = with_address.iter().rev().find(|p| !p.address.is_loaded()).unwrap();
        session.assert_statements(1, |s| third.load(Person::address, s).map(|_| ())).unwrap();

        // A root query, outside a transaction.
        alter(&mut other, "person", "firstname", 200);
        assert_eq!(Person::query().order_by(person::id).load(&mut session).unwrap().len(), 60);

        // A load of several statements in the transaction it opens: run again as a whole.
        alter(&mut other, "person", "firstname", 300);
        assert_eq!(selectin_load(&mut session).unwrap(), 59);

        // In the caller's transaction the failure aborted it: the error reaches the caller, and
        // the transaction run again succeeds.
        alter(&mut other, "person", "firstname", 400);
        let error = session.transaction(|s| selectin_load(s)).unwrap_err();
        assert!(error.to_string().contains("cached plan"), "{error}");
        assert_eq!(session.transaction(|s| selectin_load(s)).unwrap(), 59);
    }
}
