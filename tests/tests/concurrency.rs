//! Snapshots and concurrency: loads of several statements on a pool while a writer commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_tests::*;

/// Commits by the writer; each adds a report to person 1 and sets its lastname to `v<n>`.
const COMMITS: i32 = 60;

orm_tests::backend_tests! {
    #[test]
    fn a_loaded_graph_is_read_on_other_threads_after_its_session_ends() {
        let (mut conn, _) = seeded(100);
        let people = {
            let mut session = Session::new(&mut conn);
            Person::query()
                .order_by(person::id)
                .options((joined(Person::manager), selectin(Person::reports).then(joined(Person::address))))
                .load(&mut session)
                .unwrap()
        };
        let people = Arc::new(people);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let people = Arc::clone(&people);
                thread::spawn(move || {
                    people
                        .iter()
                        .map(|p| {
                            let reports = p.get(Person::reports);
                            assert!(reports.iter().all(|r| r.manager_id == Some(p.id)));
                            assert_eq!(p.get(Person::manager).map(|m| m.id), p.manager_id);
                            reports.len()
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        for reader in readers {
            // Everyone but person 1 is someone's report.
            assert_eq!(reader.join().unwrap(), 99);
        }
    }

    #[test]
    fn readers_see_one_snapshot_while_a_writer_commits() {
        let (_keep, pool) = pool(200, 9);
        let baseline = {
            let mut conn = pool.get().unwrap();
            person::table.filter(person::manager_id.eq(1)).count().get_result::<i64>(&mut conn).unwrap()
        };
        let done = Arc::new(AtomicBool::new(false));

        let writer = {
            let (pool, done) = (pool.clone(), Arc::clone(&done));
            thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                for n in 1..=COMMITS {
                    conn.transaction::<_, diesel::result::Error, _>(|c| {
                        diesel::insert_into(person::table)
                            .values((
                                person::id.eq(10_000 + n),
                                person::firstname.eq("New"),
                                person::lastname.eq("Hire"),
                                person::manager_id.eq(Some(1)),
                            ))
                            .execute(c)?;
                        diesel::update(person::table.find(1))
                            .set(person::lastname.eq(format!("v{n}")))
                            .execute(c)?;
                        Ok(())
                    })
                    .unwrap();
                }
                done.store(true, Ordering::SeqCst);
            })
        };

        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (pool, done) = (pool.clone(), Arc::clone(&done));
                thread::spawn(move || {
                    let mut loads = 0;
                    // Bounded: stop when the writer is done, or after 2,000 loads.
                    while !done.load(Ordering::SeqCst) && loads < 2_000 {
                        let mut conn = pool.get().unwrap();
                        let mut session = Session::new(&mut conn);
                        let pierre = Person::query()
                            .filter(person::id.eq(1))
                            .options(selectin(Person::reports))
                            .first(&mut session)
                            .unwrap()
                            .unwrap();
                        // Two statements, one snapshot: the version on person 1 and the number
                        // of reports were committed together.
                        let version: i64 = pierre.lastname.strip_prefix('v').map_or(0, |v| v.parse().unwrap());
                        let reports = pierre.reports.get().unwrap().len() as i64;
                        assert_eq!(reports, baseline + version, "a torn graph: {} with {reports} reports", pierre.lastname);
                        loads += 1;
                    }
                    loads
                })
            })
            .collect();

        writer.join().unwrap();
        let loads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(loads > 0);
        // No lost writes.
        let mut conn = pool.get().unwrap();
        let reports = person::table.filter(person::manager_id.eq(1)).count().get_result::<i64>(&mut conn).unwrap();
        assert_eq!(reports, baseline + i64::from(COMMITS));
    }
}
