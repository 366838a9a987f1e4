//! Resource bounds. Over the data's depth: a chain of 1,000,000 managers loads, prints and drops
//! on a thread with a 256 KiB stack; a declared `selectin` self-reference loads level by level in
//! memory linear in the levels; a cycle of declared `selectin` relations stops. Over time: a
//! session that runs 200 loads stays the size it was after the first, and graphs with both
//! directions of a relation loaded (or longer cycles) free themselves when dropped.

#![allow(missing_docs)] // test models

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::Report;
use orm_tests::variants::Boss;
use orm_tests::*;

mod heap {
    #![allow(unsafe_code)] // a `GlobalAlloc` is unsafe to implement; it only forwards to `System`

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Forwards to the system allocator, counting the bytes each thread holds and their peak.
    struct Counting;

    thread_local! {
        // `const` and `Copy`: no lazy initialisation, no destructor, no allocation.
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(bytes: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + bytes;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
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

    /// What this thread holds now.
    pub fn live() -> isize {
        LIVE.with(Cell::get)
    }

    /// What this thread holds now; the peak starts again from it.
    pub fn mark() -> isize {
        let live = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(live));
        live
    }

    /// The most this thread held since `mark`, above what it held then.
    pub fn peak_above(mark: isize) -> isize {
        PEAK.with(Cell::get) - mark
    }
}

/// `person` with declared `selectin` reports, three levels deep at most.
#[derive(Model, Debug)]
#[orm(table = person)]
pub struct ShallowBoss {
    pub id: i32,
    pub manager_id: Option<i32>,
    #[relation(has_many = ShallowBoss, foreign_key = manager_id, lazy = "selectin", join_depth = 3)]
    pub reports: Rel<Vec<ShallowBoss>>,
}

/// `person` whose home loads with `selectin`, and the home's residents too: a declared cycle
/// (SQLAlchemy's `EagerTest.test_cyclical`, selectin variant).
#[derive(Model, Debug)]
#[orm(table = person)]
pub struct Tenant {
    pub id: i32,
    pub address_id: Option<i32>,
    #[relation(belongs_to = Flat, foreign_key = address_id, lazy = "selectin")]
    pub flat: Rel<Option<Flat>>,
}

/// `address` whose residents load with `selectin`.
#[derive(Model, Debug)]
#[orm(table = address)]
pub struct Flat {
    pub id: i32,
    pub city: String,
    #[relation(has_many = Tenant, foreign_key = address_id, lazy = "selectin")]
    pub tenants: Rel<Vec<Tenant>>,
}

/// 200 loads of 10,000 people in one session: the live heap grows by less than 1 MB after the
/// first (the statement log filling up to its 512 KiB).
macro_rules! long_session {
    ($detector:expr) => {{
        let (mut conn, _) = seeded(10_000);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one($detector);
        let mut after_first = 0;
        for i in 0..LOADS {
            let people = Person::query()
                .options((selectin(Person::reports), joined(Person::address)))
                .load(&mut session)
                .unwrap();
            assert_eq!(people.len(), 10_000);
            // Read one relation of a few, as an application would.
            assert!(people[..10].iter().all(|p| p.address.get().is_some()));
            drop(people);
            if i == 0 {
                after_first = heap::live();
            }
        }
        let grown = heap::live() - after_first;
        eprintln!("detector {}: live heap grew {grown} bytes over {LOADS} loads", $detector);
        assert!(grown < 1_000_000, "the session grew {grown} bytes");
    }};
}

/// The leak loop: `ROUNDS` rounds of loading every person of 10,000 with `options` and dropping
/// the results, in one session (`one_session`) or a new one per round (dropped before the
/// results: they outlive it). Returns how much the live heap grew after the first round.
macro_rules! leak_loop {
    ($options:expr, $one_session:expr) => {{
        const ROUNDS: usize = 12;
        let (mut conn, _) = seeded(10_000);
        let load = |session: &mut Session<'_, Conn>| {
            let people = Person::query().options($options).load(session).unwrap();
            assert_eq!(people.len(), 10_000);
            // Both directions are there: a report's manager is the person it is listed under.
            let boss = people.iter().find(|p| p.reports.get().is_some_and(|r| !r.is_empty()));
            let report = &boss.expect("someone has reports").reports.get().unwrap()[0];
            assert_eq!(report.manager.get().flatten().map(|m| m.id), Some(boss.unwrap().id));
            people
        };
        let mut after_first = 0;
        if $one_session {
            // Measured while the session lives: it keeps the last graph (cleared, memory kept,
            // by the next load).
            let mut session = Session::new(&mut conn);
            session.detect_n_plus_one(false);
            for round in 0..ROUNDS {
                drop(load(&mut session));
                if round == 0 {
                    after_first = heap::live();
                }
            }
            heap::live() - after_first
        } else {
            for round in 0..ROUNDS {
                let people = {
                    let mut session = Session::new(&mut conn);
                    session.detect_n_plus_one(false);
                    load(&mut session)
                };
                drop(people);
                if round == 0 {
                    after_first = heap::live();
                }
            }
            heap::live() - after_first
        }
    }};
}

/// Walks a `Boss` chain from `top`: how many levels are loaded below it.
fn loaded_levels(top: &Boss) -> usize {
    let mut levels = 0;
    let mut reports = top.reports.get().unwrap().to_vec();
    while let Some(next) = reports.first().cloned() {
        levels += 1;
        reports = next.reports.get().unwrap().to_vec();
    }
    levels
}

/// Loads of the long session.
const LOADS: usize = 200;

/// Levels of the chains.
const LEVELS: usize = 1_000_000;

/// Levels of the declared `selectin` chain: a statement per level, so 100,000 unless
/// `ORM_SELECTIN_LEVELS` says otherwise (1,000,000 took 40 s on SQLite in a debug build).
fn selectin_levels() -> usize {
    std::env::var("ORM_SELECTIN_LEVELS").map_or(100_000, |n| n.parse().expect("a number"))
}

/// Runs `f` on a thread with a 256 KiB stack (std and tokio threads have 2 MiB).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("thread starts")
        .join()
        .expect("no stack overflow")
}

orm_tests::backend_tests! {
    #[test]
    fn graphs_with_both_directions_of_a_relation_free_themselves() {
        for one_session in [false, true] {
            let grown = leak_loop!((selectin(Person::reports), joined(Person::manager)), one_session);
            eprintln!("one session {one_session}: live heap grew {grown} bytes");
            // Under the old ownership (an `Arc` per object, relations holding them) this leaked
            // 2.3 MiB per round.
            assert!(grown < 1_000_000, "one session {one_session}: grew {grown} bytes");
        }
    }

    #[test]
    fn graphs_with_longer_cycles_free_themselves() {
        // A person's reports' manager is the person: a cycle through two relations and a level.
        for one_session in [false, true] {
            let grown = leak_loop!(
                (joined(Person::manager), selectin(Person::reports).then(joined(Person::manager))),
                one_session
            );
            eprintln!("one session {one_session}: live heap grew {grown} bytes");
            assert!(grown < 1_000_000, "one session {one_session}: grew {grown} bytes");
        }
    }

    #[test]
    fn a_long_session_stays_the_size_it_was_after_its_first_load() {
        long_session!(false);
    }

    #[test]
    fn a_long_session_with_the_detector_on_stays_the_size_it_was_after_its_first_load() {
        long_session!(true);
    }

    #[test]
    fn a_declared_selectin_chain_loads_level_by_level_on_a_small_stack() {
        let levels = selectin_levels();
        let (top, statements) = on_small_stack(move || {
            let mut conn = chain(levels);
            let mut session = Session::new(&mut conn);
            session.detect_n_plus_one(false);
            let top = Boss::query().filter(person::id.eq(1)).load(&mut session).unwrap();
            (top.into_iter().next().unwrap(), session.statements())
        });
        // One statement per level, the last finding no reports.
        assert_eq!(statements, levels + 1);
        assert_eq!(loaded_levels(&top), levels - 1);
        on_small_stack(move || drop(top));
    }

    #[test]
    fn the_detector_judges_a_declared_selectin_chain_on_a_small_stack() {
        // Every level is a load of `Boss.reports` in the same query: the detector's verdict on it
        // must not grow with the levels (nor recurse over them when it is read).
        let levels = 20_000;
        let reports = on_small_stack(move || {
            let mut conn = chain(levels);
            let mut session = Session::new(&mut conn);
            session.detect_n_plus_one(true);
            let top = Boss::query().filter(person::id.eq(1)).load(&mut session).unwrap();
            let unread = session.reports();
            // The top's reports read: the relation was used.
            let _ = top[0].reports.get();
            (unread, session.reports())
        });
        let (unread, read) = reports;
        assert_eq!(unread.len(), 1, "{unread:#?}");
        let Report::UnusedEagerLoad { relation, loads, declared, objects, .. } = &unread[0] else {
            panic!("{unread:#?}");
        };
        assert_eq!((*relation, *loads, *declared, *objects), ("reports", 1, true, levels));
        assert_eq!(read, vec![]);
    }

    #[test]
    fn a_declared_selectin_chain_takes_memory_linear_in_its_levels() {
        let mut per_level = Vec::new();
        for levels in [1_000, 10_000, 100_000] {
            let mut conn = chain(levels);
            let mut session = Session::new(&mut conn);
            session.detect_n_plus_one(false);
            session.statement_log_limit(1);
            let mark = heap::mark();
            let top = Boss::query().filter(person::id.eq(1)).load(&mut session).unwrap();
            let peak = heap::peak_above(mark);
            assert_eq!(loaded_levels(&top[0]), levels - 1);
            per_level.push(peak as f64 / levels as f64);
        }
        eprintln!("peak heap bytes per level at 1k, 10k, 100k levels: {per_level:?}");
        // The same bytes per level at 1k, 10k and 100k levels (before: 33 MB at 1k, 1.28 GB
        // at 10k).
        let (low, high) = per_level.iter().fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
        assert!(high < 2.0 * low, "peak bytes per level at 1k, 10k, 100k levels: {per_level:?}");
        assert!(high < 2_000.0, "peak bytes per level: {per_level:?}");
    }

    #[test]
    fn join_depth_bounds_a_declared_selectin_self_reference() {
        let mut conn = chain(10);
        let mut session = Session::new(&mut conn);
        let top = ShallowBoss::query().filter(person::id.eq(1)).load(&mut session).unwrap();
        assert_eq!(session.statements(), 1 + 3);
        let mut level = top[0].reports.get().unwrap()[0].clone();
        for _ in 1..3 {
            level = level.reports.get().unwrap()[0].clone();
        }
        // The fourth level is person 4: its reports are left to a lazy load.
        assert_eq!(level.id, 4);
        assert!(!level.reports.is_loaded());
        assert_eq!(level.load(ShallowBoss::reports, &mut session).unwrap()[0].id, 5);
    }

    #[test]
    fn a_cycle_of_declared_selectin_relations_stops_when_a_level_brings_nothing_new() {
        let (mut conn, counts) = seeded(60);
        let mut session = Session::new(&mut conn);
        let tenants = Tenant::query().load(&mut session).unwrap();
        // The people, their flats, the flats' tenants (all held): three statements, and every
        // relation on both sides loaded.
        assert_eq!(session.statements(), 3, "{:#?}", session.queries());
        assert_eq!(tenants.len(), 60);
        let mut flats = 0;
        for tenant in &tenants {
            match tenant.flat.get().unwrap() {
                Some(flat) => {
                    flats += 1;
                    assert!(flat.tenants.get().unwrap().iter().any(|t| t.id == tenant.id));
                    assert!(flat.tenants.get().unwrap().iter().all(|t| t.flat.is_loaded()));
                }
                None => assert_eq!(tenant.address_id, None),
            }
        }
        assert!(flats > 0 && counts.addresses > 0);
        drop(tenants);
        drop(session);
        // From the other side too.
        let mut session = Session::new(&mut conn);
        let flats = Flat::query().load(&mut session).unwrap();
        // The flats, their tenants, whose flats the session holds: two statements.
        assert_eq!(session.statements(), 2, "{:#?}", session.queries());
        assert!(flats.iter().all(|f| f.tenants.get().unwrap().iter().all(|t| t.flat.is_loaded())));
    }

    #[test]
    fn a_million_level_chain_walked_lazily_prints_and_drops_on_a_small_stack() {
        let mut conn = chain(LEVELS);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(false);
        let people = Person::query().order_by(person::id.desc()).load(&mut session).unwrap();
        assert_eq!(people.len(), LEVELS);
        let tail = people[0].untyped();
        // Walk to the top: every manager is held, no SQL.
        let mut levels = 1;
        session.assert_statements(0, |s| {
            let mut p = tail.clone();
            while let Some(manager) = p.load(Person::manager, s).unwrap() {
                assert_eq!(Some(manager.id), p.manager_id);
                let next = manager.clone();
                p = next;
                levels += 1;
            }
        });
        assert_eq!(levels, LEVELS);
        drop(people);
        drop(session);
        // `tail` is the only handle on a chain of 1,000,000 objects.
        let printed = on_small_stack(move || {
            let printed = format!("{tail:?}");
            drop(tail);
            printed
        });
        assert!(printed.contains(&format!("manager: Loaded(Some(Person({})))", LEVELS - 1)), "{printed}");
    }
}
