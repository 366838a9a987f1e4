//! A tour of the four loading strategies on the seed article's schema.
//!
//! Creates and seeds its own SQLite file, then runs the same loop (every person's city and
//! manager's first name) with lazy, joined and selectin loading, printing the statements each
//! one ran, how long it took and what the N+1 detector reports, and shows what `raise` does,
//! the typed state, rows changed over time, graph ownership, and shaping a relation's rows
//! (order, top-N per parent, counts).
//!
//! ```text
//! cargo run --example tour            # 5,000 people
//! cargo run --example tour -- 20000   # another size
//! ```

use std::time::{Duration, Instant};

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_examples::schema::person;
use orm_examples::{person_rel, populate, Person};

/// A function that needs `address` loaded says so in its type, and reads it with no `Result`:
/// passing a person whose query did not load `address` does not compile.
fn city(p: &Loaded<Person, impl Has<person_rel::address>>) -> &str {
    p.get(Person::address).map_or("-", |a| a.city.as_str())
}

/// The loop of the article: read two relations of every person.
fn the_loop<S>(
    people: &[Loaded<Person, S>],
    session: &mut Session<'_, SqliteConnection>,
) -> orm_core::Result<usize> {
    let mut checksum = 0;
    for p in people {
        let city = p.load(Person::address, session)?.map_or("-", |a| a.city.as_str());
        let manager = p.load(Person::manager, session)?.map_or("-", |m| m.firstname.as_str());
        checksum += city.len() + manager.len();
    }
    Ok(checksum)
}

fn run(
    conn: &mut SqliteConnection,
    name: &str,
    options: impl QueryOptions<Person>,
    note: &str,
) -> orm_core::Result<usize> {
    let mut session = Session::new(conn);
    session.detect_n_plus_one(true);
    let start = Instant::now();
    let people = Person::query().order_by(person::id).options(options).load(&mut session)?;
    let checksum = the_loop(&people, &mut session)?;
    let elapsed = start.elapsed();
    println!("{name:<10}{:>12}{:>12}   {note}", session.statements(), millis(elapsed));
    for report in session.reports() {
        println!("{:>34} detector: {report}", "");
    }
    Ok(checksum)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let people: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(5_000);
    let path = std::env::temp_dir().join("orm-core-tour.db");
    let _ = std::fs::remove_file(&path);
    let mut conn = SqliteConnection::establish(path.to_str().ok_or("temp path is not UTF-8")?)?;
    let counts = populate(&mut conn, people)?;
    println!(
        "seeded {}: {} people, {} addresses, {} projects, {} memberships\n",
        path.display(),
        counts.people,
        counts.addresses,
        counts.projects,
        counts.memberships
    );

    println!("for each person: read `address` (many-to-one) and `manager` (self-referential)");
    println!("{:<10}{:>12}{:>12}", "strategy", "statements", "time");
    let by_lazy = run(
        &mut conn,
        "lazy",
        (),
        "1 + one per distinct address; every manager is already in the identity map",
    )?;
    let by_joined = run(
        &mut conn,
        "joined",
        (joined(Person::address), joined(Person::manager)),
        "one statement with two LEFT OUTER JOINs",
    )?;
    let by_selectin = run(
        &mut conn,
        "selectin",
        (selectin(Person::address), selectin(Person::manager)),
        "the people, then one `IN (...)` per relation",
    )?;
    assert!(
        by_lazy == by_joined && by_joined == by_selectin,
        "every strategy reads the same graph"
    );

    println!("\nthe first statements of the lazy loop:");
    let mut session = Session::new(&mut conn);
    let everyone = Person::query().order_by(person::id).limit(3).load(&mut session)?;
    the_loop(&everyone, &mut session)?;
    for sql in session.queries() {
        println!("  {sql}");
    }

    println!(
        "\n`projects` is declared `lazy = \"raise\"`: reading it unloaded is an error, not a query"
    );
    let pauline = session.get::<Person>(2)?.ok_or("person 2 exists")?;
    session.reset_statements();
    match pauline.load(Person::projects, &mut session) {
        Err(error) => println!("  Error: {error}"),
        Ok(_) => unreachable!("projects raise"),
    }
    println!("  statements run: {}", session.statements());
    let pauline = Person::query()
        .filter(person::id.eq(2))
        .options(selectin(Person::projects))
        .first(&mut session)?
        .ok_or("person 2 exists")?;
    let projects: Vec<&str> =
        pauline.projects.get().unwrap_or_default().iter().map(|p| p.name.as_str()).collect();
    println!("  with `selectin(Person::projects)`: {projects:?}");

    println!("\ntyped state: the query's type records what it loaded");
    let typed = Person::query()
        .filter(person::id.le(3))
        .options(joined(Person::address))
        .load(&mut session)?;
    let cities: Vec<&str> = typed.iter().map(city).collect();
    println!("  `city` requires `address` loaded, so it runs no SQL: {cities:?}");
    let bare = Person::query().filter(person::id.eq(2)).first(&mut session)?.ok_or("person 2")?;
    // `city(&bare)` would not compile: "relation `address` is not loaded in `PersonState`".
    let upgraded = bare.upgrade(Person::address, &mut session)?;
    println!("  after `upgrade(Person::address)`: {}", city(&upgraded));

    println!("\nover time: rows changed since a load");
    let boss = Person::query()
        .filter(person::id.eq(1))
        .options(selectin(Person::reports))
        .first(&mut session)?
        .ok_or("person 1 exists")?;
    diesel::update(person::table.filter(person::id.eq(12)))
        .set(person::manager_id.eq(Some(2)))
        .execute(session.connection())?;
    // Person 12 read again: its row changed, so this is a new object with the new manager; the
    // `boss` graph keeps its snapshot.
    let moved = Person::query()
        .filter(person::id.eq(12))
        .options(joined(Person::manager))
        .first(&mut session)?
        .ok_or("person 12 exists")?;
    let manager = moved.get(Person::manager).map_or("-", |m| m.firstname.as_str());
    println!("  person 12 read again: manager_id {:?}, manager {manager}", moved.manager_id);
    let reports = |p: &Person| p.reports.get().map_or(0, <[_]>::len);
    println!("  person 1's reports, as loaded: {}", reports(&boss));
    let fresh = session.refresh(&boss)?;
    println!(
        "  after `session.refresh(&boss)`: {} (the old handle: {})",
        reports(&fresh),
        reports(&boss)
    );

    println!("\nownership: a graph with both directions loaded frees itself");
    let people = Person::query()
        .options((joined(Person::manager), selectin(Person::reports)))
        .load(&mut session)?;
    drop(session);
    // The handles keep their graph after the session ends, on any thread; relations point
    // within it, so the cycles (a manager's reports' manager) hold nothing alive on their own.
    let pauline = people.iter().find(|p| p.id == 2).ok_or("person 2")?.clone();
    drop(people);
    let summary = std::thread::spawn(move || {
        let boss = pauline.get(Person::manager).map_or("-", |m| m.firstname.as_str());
        let first = pauline.get(Person::reports).first();
        let back = first.and_then(|r| r.manager.get().flatten()).map(|m| m.firstname.clone());
        format!("{} reports to {boss}; her first report's manager is {back:?}", pauline.firstname)
    })
    .join()
    .map_err(|_| "the thread panicked")?;
    println!("  {summary} (read on another thread, after the session ended)");

    println!("\nshaping: the first managers' first three reports by name, and how many they have");
    let mut session = Session::new(&mut conn);
    let managers = Person::query()
        .filter(person::id.le(3))
        .order_by(person::id)
        .options((
            selectin(Person::reports).order_by((person::lastname, person::firstname)).limit(3),
            count(Person::reports),
        ))
        .load(&mut session)?;
    for m in &managers {
        let first: Vec<String> = m
            .get(Person::reports)
            .iter()
            .map(|r| format!("{} {}", r.lastname, r.firstname))
            .collect();
        let count = m.get_count(Person::reports);
        println!("  {} {}: {count} reports, the first three {first:?}", m.firstname, m.lastname);
    }
    println!(
        "  statements run: {} (the managers, one window of reports, one count)",
        session.statements()
    );
    Ok(())
}
