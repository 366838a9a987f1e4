//! Every loading strategy against the hand-written diesel a careful engineer would write for the
//! same graph, in the same run, at 1,000, 10,000 and 100,000 people (`ORM_BENCH_SIZES=1000,10000`
//! to choose). Before timing, each pair is checked to build the same graph (a checksum over the
//! loaded fields) with the expected number of statements. The peak heap of the 100,000-person
//! joined graph is measured with a counting allocator. Results: BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p orm-tests --bench graphs
//! ```

// The counting allocator is the one unsafe piece of the workspace: a GlobalAlloc must be.
#![allow(unsafe_code)]
#![allow(missing_docs)] // `diesel::alias!` declares undocumented items

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use orm_core::prelude::*;
use orm_tests::sqlite::seeded;
use orm_tests::variants::Boss;
use orm_tests::{address, person, person_project, project, Person};

/// The global allocator, counting the live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwards to the system allocator with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap bytes above the live bytes at the start of `f`, and `f`'s result.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let value = f();
    (PEAK.load(Ordering::Relaxed) - base, value)
}

diesel::alias!(person as manager: ManagerAlias, person as report: ReportAlias);

/// The rows hand-written diesel decodes into.
mod rows {
    use diesel::prelude::*;
    use orm_tests::{address, person, person_project, project};

    #[derive(Queryable, Selectable, Identifiable, Associations, Clone, Debug)]
    #[diesel(table_name = person, belongs_to(PersonRow, foreign_key = manager_id))]
    pub struct PersonRow {
        pub id: i32,
        pub firstname: String,
        pub lastname: String,
        pub address_id: Option<i32>,
        pub manager_id: Option<i32>,
    }

    #[derive(Queryable, Selectable, Identifiable, Clone, Debug)]
    #[diesel(table_name = address)]
    pub struct AddressRow {
        pub id: i32,
        pub street: String,
        pub city: String,
    }

    #[derive(Queryable, Selectable, Identifiable, Clone, Debug)]
    #[diesel(table_name = project)]
    pub struct ProjectRow {
        pub id: i32,
        pub name: String,
    }

    #[derive(Queryable, Selectable, Identifiable, Associations, Debug)]
    #[diesel(table_name = person_project, primary_key(person_id, project_id))]
    #[diesel(belongs_to(PersonRow, foreign_key = person_id))]
    pub struct Membership {
        pub person_id: i32,
        pub project_id: i32,
    }
}

use rows::{AddressRow, Membership, PersonRow, ProjectRow};

mod ownership;
mod shaping;
mod text_keys;

type Conn = SqliteConnection;

/// Counts the statements hand-written code runs, without the session's log and echo.
fn counted(conn: &mut Conn) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let sink = Arc::clone(&count);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { .. } = event {
            sink.fetch_add(1, Ordering::Relaxed);
        }
    });
    count
}
const CHUNK: usize = 30_000;

// ---------------------------------------------------------------------------------------------
// Checksums: the same fold over the ORM's graph and the hand-written one.

fn person_sum(id: i32, firstname: &str) -> u64 {
    id as u64 * 31 + firstname.len() as u64
}

fn address_sum(a: Option<(i32, &str)>) -> u64 {
    a.map_or(7, |(id, city)| id as u64 * 17 + city.len() as u64)
}

fn orm_people_sum<S>(people: &[Loaded<Person, S>]) -> u64 {
    people
        .iter()
        .map(|p| {
            let address = p.address.get().flatten().map(|a| (a.id, a.city.as_str()));
            let boss = p.manager.get().flatten().map_or(3, |m| person_sum(m.id, &m.firstname));
            person_sum(p.id, &p.firstname) + address_sum(address) + boss
        })
        .sum()
}

/// A person with address and manager, as hand-written code holds it (related rows shared).
struct HandPerson {
    row: PersonRow,
    address: Option<Arc<AddressRow>>,
    manager: Option<Arc<PersonRow>>,
}

fn hand_people_sum(people: &[HandPerson]) -> u64 {
    people
        .iter()
        .map(|p| {
            let address = p.address.as_ref().map(|a| (a.id, a.city.as_str()));
            let boss = p.manager.as_ref().map_or(3, |m| person_sum(m.id, &m.firstname));
            person_sum(p.row.id, &p.row.firstname) + address_sum(address) + boss
        })
        .sum()
}

fn orm_collection_sum<T, S>(
    people: &[Loaded<Person, S>],
    each: impl Fn(&Person) -> &[Loaded<T>],
    item: impl Fn(&T) -> u64,
) -> u64 {
    people
        .iter()
        .map(|p| person_sum(p.id, &p.firstname) + each(p).iter().map(|t| item(t)).sum::<u64>())
        .sum()
}

fn hand_collection_sum<T>(people: &[(PersonRow, Vec<Arc<T>>)], item: impl Fn(&T) -> u64) -> u64 {
    people
        .iter()
        .map(|(p, items)| {
            person_sum(p.id, &p.firstname) + items.iter().map(|t| item(t)).sum::<u64>()
        })
        .sum()
}

fn report_sum(r: &Person) -> u64 {
    person_sum(r.id, &r.firstname)
}

fn report_row_sum(r: &PersonRow) -> u64 {
    person_sum(r.id, &r.firstname)
}

fn project_sum(id: i32, name: &str) -> u64 {
    id as u64 * 13 + name.len() as u64
}

// ---------------------------------------------------------------------------------------------
// Workload 1: all people with address and manager.

fn orm_people(
    conn: &mut Conn,
    options: impl QueryOptions<Person>,
    lazy: bool,
    detect: bool,
) -> (u64, usize) {
    orm_people_echo(conn, options, lazy, detect, true)
}

fn orm_people_echo(
    conn: &mut Conn,
    options: impl QueryOptions<Person>,
    lazy: bool,
    detect: bool,
    echo: bool,
) -> (u64, usize) {
    let mut session = Session::new(conn);
    session.detect_n_plus_one(detect);
    session.echo(echo);
    let people = Person::query().order_by(person::id).options(options).load(&mut session).unwrap();
    if lazy {
        for p in &people {
            p.load(Person::address, &mut session).unwrap();
            p.load(Person::manager, &mut session).unwrap();
        }
    }
    (orm_people_sum(&people), session.statements())
}

/// [`orm_people`] with the session scoped to the load: it ends before the graph, so each object
/// is freed once, with its fields (the default order frees the fields with the graph and the
/// object's block with the session's weak entry).
fn orm_people_scoped(conn: &mut Conn, options: impl QueryOptions<Person>) -> (u64, usize) {
    let (people, statements) = {
        let mut session = Session::new(conn);
        session.detect_n_plus_one(false);
        let people =
            Person::query().order_by(person::id).options(options).load(&mut session).unwrap();
        (people, session.statements())
    };
    (orm_people_sum(&people), statements)
}

/// The N+1 loop with an identity map of its own: people by id, addresses cached once read.
fn hand_lazy_people(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<PersonRow> =
        person::table.order_by(person::id).select(PersonRow::as_select()).load(conn).unwrap();
    let by_id: HashMap<i32, Arc<PersonRow>> =
        rows.iter().map(|p| (p.id, Arc::new(p.clone()))).collect();
    let mut addresses: HashMap<i32, Option<Arc<AddressRow>>> = HashMap::new();
    let mut people = Vec::with_capacity(rows.len());
    for row in rows {
        let address = match row.address_id {
            None => None,
            Some(id) => match addresses.get(&id) {
                Some(found) => found.clone(),
                None => {
                    let found = address::table
                        .find(id)
                        .select(AddressRow::as_select())
                        .first(conn)
                        .optional()
                        .unwrap()
                        .map(Arc::new);
                    addresses.insert(id, found.clone());
                    found
                }
            },
        };
        let boss = row.manager_id.and_then(|id| by_id.get(&id).cloned());
        people.push(HandPerson { row, address, manager: boss });
    }
    (hand_people_sum(&people), statements.load(Ordering::Relaxed))
}

/// One statement: LEFT JOIN address, LEFT JOIN person AS manager; related rows shared by id.
fn hand_joined_people(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<(PersonRow, Option<AddressRow>, Option<PersonRow>)> = person::table
        .left_join(address::table)
        .left_join(manager.on(person::manager_id.eq(manager.field(person::id).nullable())))
        .order_by(person::id)
        .select((
            PersonRow::as_select(),
            Option::<AddressRow>::as_select(),
            manager
                .fields((
                    person::id,
                    person::firstname,
                    person::lastname,
                    person::address_id,
                    person::manager_id,
                ))
                .nullable(),
        ))
        .load(conn)
        .unwrap();
    let mut addresses: HashMap<i32, Arc<AddressRow>> = HashMap::new();
    let mut managers: HashMap<i32, Arc<PersonRow>> = HashMap::new();
    let people: Vec<HandPerson> = rows
        .into_iter()
        .map(|(row, address, boss)| HandPerson {
            row,
            address: address.map(|a| addresses.entry(a.id).or_insert_with(|| Arc::new(a)).clone()),
            manager: boss.map(|m| managers.entry(m.id).or_insert_with(|| Arc::new(m)).clone()),
        })
        .collect();
    (hand_people_sum(&people), statements.load(Ordering::Relaxed))
}

/// The people, then `IN (...)` per relation, chunked under the bind limit, stitched by id.
fn hand_selectin_people(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<PersonRow> =
        person::table.order_by(person::id).select(PersonRow::as_select()).load(conn).unwrap();
    let mut address_ids: Vec<i32> = rows.iter().filter_map(|p| p.address_id).collect();
    address_ids.sort_unstable();
    address_ids.dedup();
    let mut addresses: HashMap<i32, Arc<AddressRow>> = HashMap::with_capacity(address_ids.len());
    for chunk in address_ids.chunks(CHUNK) {
        let found: Vec<AddressRow> = address::table
            .filter(address::id.eq_any(chunk))
            .select(AddressRow::as_select())
            .load(conn)
            .unwrap();
        addresses.extend(found.into_iter().map(|a| (a.id, Arc::new(a))));
    }
    let mut manager_ids: Vec<i32> = rows.iter().filter_map(|p| p.manager_id).collect();
    manager_ids.sort_unstable();
    manager_ids.dedup();
    let mut managers: HashMap<i32, Arc<PersonRow>> = HashMap::with_capacity(manager_ids.len());
    for chunk in manager_ids.chunks(CHUNK) {
        let found: Vec<PersonRow> = person::table
            .filter(person::id.eq_any(chunk))
            .select(PersonRow::as_select())
            .load(conn)
            .unwrap();
        managers.extend(found.into_iter().map(|m| (m.id, Arc::new(m))));
    }
    let people: Vec<HandPerson> = rows
        .into_iter()
        .map(|row| {
            let address = row.address_id.and_then(|id| addresses.get(&id).cloned());
            let boss = row.manager_id.and_then(|id| managers.get(&id).cloned());
            HandPerson { row, address, manager: boss }
        })
        .collect();
    (hand_people_sum(&people), statements.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Workload 2: the first tenth of people with their reports (one-to-many).

fn orm_reports(
    conn: &mut Conn,
    n: usize,
    options: impl QueryOptions<Person>,
    lazy: bool,
) -> (u64, usize) {
    let mut session = Session::new(conn);
    let people = Person::query()
        .filter(person::id.le((n / 10) as i32))
        .order_by(person::id)
        .options(options)
        .load(&mut session)
        .unwrap();
    if lazy {
        for p in &people {
            p.load(Person::reports, &mut session).unwrap();
        }
    }
    let sum = orm_collection_sum(&people, |p| p.reports.get().unwrap_or_default(), report_sum);
    (sum, session.statements())
}

fn hand_parents(conn: &mut Conn, n: usize) -> Vec<PersonRow> {
    person::table
        .filter(person::id.le((n / 10) as i32))
        .order_by(person::id)
        .select(PersonRow::as_select())
        .load(conn)
        .unwrap()
}

fn hand_lazy_reports(conn: &mut Conn, n: usize) -> (u64, usize) {
    let statements = counted(conn);
    let parents = hand_parents(conn, n);
    let people: Vec<(PersonRow, Vec<Arc<PersonRow>>)> = parents
        .into_iter()
        .map(|p| {
            let reports: Vec<PersonRow> =
                PersonRow::belonging_to(&p).select(PersonRow::as_select()).load(conn).unwrap();
            (p, reports.into_iter().map(Arc::new).collect())
        })
        .collect();
    (hand_collection_sum(&people, report_row_sum), statements.load(Ordering::Relaxed))
}

fn hand_joined_reports(conn: &mut Conn, n: usize) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<(PersonRow, Option<PersonRow>)> = person::table
        .left_join(report.on(report.field(person::manager_id).eq(person::id.nullable())))
        .filter(person::id.le((n / 10) as i32))
        .order_by(person::id)
        .select((
            PersonRow::as_select(),
            report
                .fields((
                    person::id,
                    person::firstname,
                    person::lastname,
                    person::address_id,
                    person::manager_id,
                ))
                .nullable(),
        ))
        .load(conn)
        .unwrap();
    let mut people: Vec<(PersonRow, Vec<Arc<PersonRow>>)> = Vec::new();
    for (parent, child) in rows {
        if people.last().is_none_or(|(p, _)| p.id != parent.id) {
            people.push((parent, Vec::new()));
        }
        if let (Some(child), Some((_, children))) = (child, people.last_mut()) {
            children.push(Arc::new(child));
        }
    }
    (hand_collection_sum(&people, report_row_sum), statements.load(Ordering::Relaxed))
}

fn hand_selectin_reports(conn: &mut Conn, n: usize) -> (u64, usize) {
    let statements = counted(conn);
    let parents = hand_parents(conn, n);
    let mut reports: Vec<PersonRow> = Vec::new();
    for chunk in parents.chunks(CHUNK) {
        reports.extend(
            PersonRow::belonging_to(chunk).select(PersonRow::as_select()).load(conn).unwrap(),
        );
    }
    let grouped = reports.grouped_by(&parents);
    let people: Vec<(PersonRow, Vec<Arc<PersonRow>>)> = parents
        .into_iter()
        .zip(grouped)
        .map(|(p, r)| (p, r.into_iter().map(Arc::new).collect()))
        .collect();
    (hand_collection_sum(&people, report_row_sum), statements.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Workload 3: all people with their projects (many-to-many).

fn orm_projects(conn: &mut Conn, options: impl QueryOptions<Person>) -> (u64, usize) {
    let mut session = Session::new(conn);
    let people = Person::query().order_by(person::id).options(options).load(&mut session).unwrap();
    let sum = orm_collection_sum(
        &people,
        |p| p.projects.get().unwrap_or_default(),
        |t| project_sum(t.id, &t.name),
    );
    (sum, session.statements())
}

fn hand_joined_projects(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<(PersonRow, Option<ProjectRow>)> = person::table
        .left_join(person_project::table.left_join(project::table))
        .order_by(person::id)
        .select((PersonRow::as_select(), Option::<ProjectRow>::as_select()))
        .load(conn)
        .unwrap();
    let mut shared: HashMap<i32, Arc<ProjectRow>> = HashMap::new();
    let mut people: Vec<(PersonRow, Vec<Arc<ProjectRow>>)> = Vec::new();
    for (person, project) in rows {
        if people.last().is_none_or(|(p, _)| p.id != person.id) {
            people.push((person, Vec::new()));
        }
        if let (Some(project), Some((_, projects))) = (project, people.last_mut()) {
            projects.push(shared.entry(project.id).or_insert_with(|| Arc::new(project)).clone());
        }
    }
    (
        hand_collection_sum(&people, |t| project_sum(t.id, &t.name)),
        statements.load(Ordering::Relaxed),
    )
}

fn hand_selectin_projects(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let people: Vec<PersonRow> =
        person::table.order_by(person::id).select(PersonRow::as_select()).load(conn).unwrap();
    let mut links: Vec<(Membership, ProjectRow)> = Vec::new();
    for chunk in people.chunks(CHUNK) {
        links.extend(
            Membership::belonging_to(chunk)
                .inner_join(project::table)
                .select((Membership::as_select(), ProjectRow::as_select()))
                .load::<(Membership, ProjectRow)>(conn)
                .unwrap(),
        );
    }
    let mut shared: HashMap<i32, Arc<ProjectRow>> = HashMap::new();
    let mut by_person: HashMap<i32, Vec<Arc<ProjectRow>>> = HashMap::new();
    for (link, project) in links {
        let project = shared.entry(project.id).or_insert_with(|| Arc::new(project)).clone();
        by_person.entry(link.person_id).or_default().push(project);
    }
    let people: Vec<(PersonRow, Vec<Arc<ProjectRow>>)> = people
        .into_iter()
        .map(|p| {
            let projects = by_person.remove(&p.id).unwrap_or_default();
            (p, projects)
        })
        .collect();
    (
        hand_collection_sum(&people, |t| project_sum(t.id, &t.name)),
        statements.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------------------------
// Workload 4: filters through relations; workload 5: decoding person + address rows.

fn orm_in_city(conn: &mut Conn) -> (u64, usize) {
    let mut session = Session::new(conn);
    let people = Person::query()
        .join(Person::address)
        .filter(address::city.eq("Paris"))
        .order_by(person::id)
        .load(&mut session)
        .unwrap();
    (people.iter().map(|p| person_sum(p.id, &p.firstname)).sum(), session.statements())
}

fn hand_in_city(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let people: Vec<PersonRow> = person::table
        .inner_join(address::table)
        .filter(address::city.eq("Paris"))
        .order_by(person::id)
        .select(PersonRow::as_select())
        .load(conn)
        .unwrap();
    (
        people.iter().map(|p| person_sum(p.id, &p.firstname)).sum(),
        statements.load(Ordering::Relaxed),
    )
}

fn orm_self_join(conn: &mut Conn) -> (u64, usize) {
    let mut session = Session::new(conn);
    let people = Person::query()
        .filter(person::firstname.eq("Pauline"))
        .join_as(Person::manager, manager)
        .filter(manager.field(person::firstname).eq("Pierre"))
        .order_by(person::id)
        .load(&mut session)
        .unwrap();
    (people.iter().map(|p| person_sum(p.id, &p.firstname)).sum(), session.statements())
}

fn hand_self_join(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let people: Vec<PersonRow> = person::table
        .inner_join(manager.on(person::manager_id.eq(manager.field(person::id).nullable())))
        .filter(person::firstname.eq("Pauline"))
        .filter(manager.field(person::firstname).eq("Pierre"))
        .order_by(person::id)
        .select(PersonRow::as_select())
        .load(conn)
        .unwrap();
    (
        people.iter().map(|p| person_sum(p.id, &p.firstname)).sum(),
        statements.load(Ordering::Relaxed),
    )
}

fn orm_decode(conn: &mut Conn) -> (u64, usize) {
    let mut session = Session::new(conn);
    let people = Person::query()
        .order_by(person::id)
        .options(joined(Person::address))
        .load(&mut session)
        .unwrap();
    let sum = people
        .iter()
        .map(|p| {
            person_sum(p.id, &p.firstname)
                + address_sum(p.address.get().flatten().map(|a| (a.id, a.city.as_str())))
        })
        .sum();
    (sum, session.statements())
}

fn hand_decode(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<(PersonRow, Option<AddressRow>)> = person::table
        .left_join(address::table)
        .order_by(person::id)
        .select((PersonRow::as_select(), Option::<AddressRow>::as_select()))
        .load(conn)
        .unwrap();
    let sum = rows
        .iter()
        .map(|(p, a)| {
            person_sum(p.id, &p.firstname)
                + address_sum(a.as_ref().map(|a| (a.id, a.city.as_str())))
        })
        .sum();
    (sum, statements.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// The harness.

fn sizes() -> Vec<usize> {
    std::env::var("ORM_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

type Run<'a> = Box<dyn Fn(&mut Conn) -> (u64, usize) + 'a>;

/// One workload: the ORM's strategies and the hand-written counterparts, checked, then timed.
fn workload(
    c: &mut Criterion,
    conn: &mut Conn,
    n: usize,
    name: &str,
    pairs: Vec<(&str, Run<'_>, usize, Run<'_>)>,
) {
    // `ORM_BENCH_ONLY=decode-person-address` runs one workload (for profiling).
    if std::env::var("ORM_BENCH_ONLY").is_ok_and(|only| only != name) {
        return;
    }
    let mut group = c.benchmark_group(name);
    group.sample_size(if n >= 100_000 { 10 } else { 20 });
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(if n >= 100_000 { 6 } else { 3 }));
    for (strategy, orm, statements, hand) in &pairs {
        let (orm_sum, orm_statements) = orm(conn);
        let (hand_sum, _) = hand(conn);
        assert_eq!(
            orm_sum, hand_sum,
            "{name}/{strategy} at {n}: the ORM and the hand-written graph differ"
        );
        assert_eq!(orm_statements, *statements, "{name}/{strategy} at {n}: statement count");
        println!("check {name}/{strategy}/{n}: checksum {orm_sum}, {orm_statements} statements");
        group.bench_with_input(BenchmarkId::new(format!("orm-{strategy}"), n), &n, |b, _| {
            b.iter(|| black_box(orm(conn)))
        });
        group.bench_with_input(BenchmarkId::new(format!("hand-{strategy}"), n), &n, |b, _| {
            b.iter(|| black_box(hand(conn)))
        });
    }
    group.finish();
}

fn chunks(keys: usize) -> usize {
    keys.div_ceil(32_000).max(1)
}

fn distinct_addresses(conn: &mut Conn) -> usize {
    let ids: Vec<Option<i32>> =
        person::table.select(person::address_id).distinct().load(conn).unwrap();
    ids.iter().flatten().count()
}

fn memory(conn: &mut Conn, n: usize) {
    let (orm_peak, orm) = peak_heap(|| {
        orm_people(conn, (joined(Person::address), joined(Person::manager)), false, false)
    });
    let (hand_peak, hand) = peak_heap(|| hand_joined_people(conn));
    assert_eq!(orm.0, hand.0);
    let line = format!(
        "peak heap, {n} people joined with address and manager: orm {:.1} MiB, hand-written {:.1} MiB, ratio {:.2}",
        orm_peak as f64 / 1048576.0,
        hand_peak as f64 / 1048576.0,
        orm_peak as f64 / hand_peak as f64
    );
    println!("{line}");
    let _ = std::fs::write(format!("{}/bench-memory-{n}.txt", env!("CARGO_TARGET_TMPDIR")), line);
}

fn graphs(c: &mut Criterion) {
    for n in sizes() {
        let (mut conn, _) = seeded(n);
        memory(&mut conn, n);
        let addresses = distinct_addresses(&mut conn);
        let tenth = n / 10;
        let both = || (joined(Person::address), joined(Person::manager));
        workload(
            c,
            &mut conn,
            n,
            "people-address-manager",
            vec![
                (
                    "lazy",
                    Box::new(|c: &mut Conn| orm_people(c, (), true, false)),
                    1 + addresses,
                    Box::new(hand_lazy_people),
                ),
                (
                    "joined",
                    Box::new(move |c: &mut Conn| orm_people(c, both(), false, false)),
                    1,
                    Box::new(hand_joined_people),
                ),
                (
                    "selectin",
                    Box::new(|c: &mut Conn| {
                        orm_people(
                            c,
                            (selectin(Person::address), selectin(Person::manager)),
                            false,
                            false,
                        )
                    }),
                    1 + chunks(addresses), // every manager is a root: the identity map answers
                    Box::new(hand_selectin_people),
                ),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "detector-overhead",
            vec![
                (
                    "joined+detector",
                    Box::new(move |c: &mut Conn| orm_people(c, both(), false, true)),
                    1,
                    Box::new(move |c: &mut Conn| orm_people(c, both(), false, false)),
                ),
                (
                    "selectin+detector",
                    Box::new(|c: &mut Conn| {
                        orm_people(
                            c,
                            (selectin(Person::address), selectin(Person::manager)),
                            false,
                            true,
                        )
                    }),
                    1 + chunks(addresses), // every manager is a root: the identity map answers
                    Box::new(|c: &mut Conn| {
                        orm_people(
                            c,
                            (selectin(Person::address), selectin(Person::manager)),
                            false,
                            false,
                        )
                    }),
                ),
            ],
        );
        let selectin_both = || (selectin(Person::address), selectin(Person::manager));
        workload(
            c,
            &mut conn,
            n,
            "session-scope",
            vec![
                (
                    "joined",
                    Box::new(move |c: &mut Conn| orm_people_scoped(c, both())),
                    1,
                    Box::new(move |c: &mut Conn| orm_people(c, both(), false, false)),
                ),
                (
                    "selectin",
                    Box::new(move |c: &mut Conn| orm_people_scoped(c, selectin_both())),
                    1 + chunks(addresses), // every manager is a root: the identity map answers
                    Box::new(move |c: &mut Conn| orm_people(c, selectin_both(), false, false)),
                ),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "echo-overhead",
            vec![
                (
                    "joined+echo",
                    Box::new(move |c: &mut Conn| orm_people_echo(c, both(), false, false, true)),
                    1,
                    Box::new(move |c: &mut Conn| orm_people_echo(c, both(), false, false, false)),
                ),
                (
                    "selectin+echo",
                    Box::new(move |c: &mut Conn| {
                        orm_people_echo(c, selectin_both(), false, false, true)
                    }),
                    1 + chunks(addresses), // every manager is a root: the identity map answers
                    Box::new(move |c: &mut Conn| {
                        orm_people_echo(c, selectin_both(), false, false, false)
                    }),
                ),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "first-tenth-reports",
            vec![
                (
                    "lazy",
                    Box::new(move |c: &mut Conn| orm_reports(c, n, (), true)),
                    1 + tenth,
                    Box::new(move |c: &mut Conn| hand_lazy_reports(c, n)),
                ),
                (
                    "joined",
                    Box::new(move |c: &mut Conn| orm_reports(c, n, joined(Person::reports), false)),
                    1,
                    Box::new(move |c: &mut Conn| hand_joined_reports(c, n)),
                ),
                (
                    "selectin",
                    Box::new(move |c: &mut Conn| {
                        orm_reports(c, n, selectin(Person::reports), false)
                    }),
                    1 + chunks(tenth),
                    Box::new(move |c: &mut Conn| hand_selectin_reports(c, n)),
                ),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "people-projects",
            vec![
                (
                    "joined",
                    Box::new(|c: &mut Conn| orm_projects(c, joined(Person::projects))),
                    1,
                    Box::new(hand_joined_projects),
                ),
                (
                    "selectin",
                    Box::new(|c: &mut Conn| orm_projects(c, selectin(Person::projects))),
                    1 + chunks(n),
                    Box::new(hand_selectin_projects),
                ),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "filters",
            vec![
                ("in-city", Box::new(orm_in_city), 1, Box::new(hand_in_city)),
                ("self-join", Box::new(orm_self_join), 1, Box::new(hand_self_join)),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "decode-person-address",
            vec![("joined", Box::new(orm_decode), 1, Box::new(hand_decode))],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Deep data: a chain of managers 100,000 levels deep.

/// Levels of the deep chain (`ORM_BENCH_CHAIN` to choose).
fn chain_levels() -> usize {
    std::env::var("ORM_BENCH_CHAIN").map_or(100_000, |n| n.parse().expect("a number"))
}

/// The ORM's chain: every person loaded, each manager read through the session (from the
/// identity map), the chain held by its last person alone.
fn orm_chain(conn: &mut Conn) -> Loaded<Person> {
    let mut session = Session::new(conn);
    session.detect_n_plus_one(false);
    let people = Person::query().order_by(person::id.desc()).load(&mut session).unwrap();
    let tail = people[0].untyped();
    let mut p = tail.clone();
    while let Some(boss) = p.load(Person::manager, &mut session).unwrap() {
        let next = boss.clone();
        p = next;
    }
    tail
}

/// The hand-written chain: the rows, and each row's manager as an index.
fn hand_chain(conn: &mut Conn) -> (Vec<PersonRow>, Vec<Option<usize>>) {
    let rows: Vec<PersonRow> =
        person::table.select(PersonRow::as_select()).order_by(person::id).load(conn).unwrap();
    let index: HashMap<i32, usize> = rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let managers = rows.iter().map(|r| r.manager_id.and_then(|m| index.get(&m).copied())).collect();
    (rows, managers)
}

/// The declared `selectin` self-reference from the top: one statement per level.
fn orm_selectin_chain(conn: &mut Conn) -> (u64, usize) {
    let mut session = Session::new(conn);
    session.detect_n_plus_one(false);
    let top = Boss::query().filter(person::id.eq(1)).load(&mut session).unwrap();
    let mut sum = 0u64;
    let mut level = top[0].reports.get().unwrap().to_vec();
    while let Some(next) = level.first().cloned() {
        sum += next.id as u64;
        level = next.reports.get().unwrap().to_vec();
    }
    (sum, session.statements())
}

/// The same, hand-written: the reports of the last level's people, level after level.
fn hand_selectin_chain(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let mut sum = 0u64;
    let mut level = vec![1];
    loop {
        let rows: Vec<PersonRow> = person::table
            .select(PersonRow::as_select())
            .filter(person::manager_id.eq_any(&level))
            .order_by(person::id)
            .load(conn)
            .unwrap();
        if rows.is_empty() {
            break;
        }
        sum += rows.iter().map(|r| r.id as u64).sum::<u64>();
        level = rows.iter().map(|r| r.id).collect();
    }
    (sum, statements.load(Ordering::Relaxed))
}

fn deep_chain(c: &mut Criterion) {
    if std::env::var("ORM_BENCH_ONLY").is_ok_and(|only| only != "deep-chain") {
        return;
    }
    let levels = chain_levels();
    let mut conn = orm_tests::sqlite::chain(levels);
    let (orm_peak, tail) = peak_heap(|| orm_chain(&mut conn));
    let (hand_peak, hand) = peak_heap(|| hand_chain(&mut conn));
    assert_eq!(hand.0.len(), levels);
    drop((tail, hand));
    let line = format!(
        "peak heap, a chain of {levels} managers: orm {:.1} MiB, hand-written {:.1} MiB, ratio {:.2}",
        orm_peak as f64 / 1048576.0,
        hand_peak as f64 / 1048576.0,
        orm_peak as f64 / hand_peak as f64
    );
    println!("{line}");
    let _ =
        std::fs::write(format!("{}/bench-chain-{levels}.txt", env!("CARGO_TARGET_TMPDIR")), line);
    let (orm_sum, orm_statements) = orm_selectin_chain(&mut conn);
    let (hand_sum, hand_statements) = hand_selectin_chain(&mut conn);
    assert_eq!((orm_sum, orm_statements), (hand_sum, hand_statements + 1));

    let mut group = c.benchmark_group("deep-chain");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(6));
    // Dropping the graph, built outside the timing.
    group.bench_with_input(BenchmarkId::new("orm-drop", levels), &levels, |b, _| {
        b.iter_batched(|| orm_chain(&mut conn), drop, criterion::BatchSize::PerIteration)
    });
    group.bench_with_input(BenchmarkId::new("hand-drop", levels), &levels, |b, _| {
        b.iter_batched(|| hand_chain(&mut conn), drop, criterion::BatchSize::PerIteration)
    });
    group.bench_with_input(BenchmarkId::new("orm-selectin", levels), &levels, |b, _| {
        b.iter(|| black_box(orm_selectin_chain(&mut conn)))
    });
    group.bench_with_input(BenchmarkId::new("hand-selectin", levels), &levels, |b, _| {
        b.iter(|| black_box(hand_selectin_chain(&mut conn)))
    });
    group.finish();
}

criterion_group!(
    benches,
    graphs,
    deep_chain,
    text_keys::bench,
    shaping::bench,
    ownership::prototypes
);
criterion_main!(benches);
