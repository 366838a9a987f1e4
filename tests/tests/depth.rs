//! Resource bounds over the data's depth: a chain of 1,000,000 managers loads, prints and drops
//! on a thread with a 256 KiB stack.

use std::sync::Arc;

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_tests::*;

/// Levels of the chains.
const LEVELS: usize = 1_000_000;

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
    fn a_million_level_chain_walked_lazily_prints_and_drops_on_a_small_stack() {
        let mut conn = chain(LEVELS);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(false);
        let people = Person::query().order_by(person::id.desc()).load(&mut session).unwrap();
        assert_eq!(people.len(), LEVELS);
        let tail = people[0].clone().into_arc();
        // Walk to the top: every manager is held, no SQL.
        let mut levels = 1;
        session.assert_statements(0, |s| {
            let mut p = Arc::clone(&tail);
            while let Some(manager) = p.load(Person::manager, s).unwrap() {
                assert_eq!(Some(manager.id), p.manager_id);
                let next = p.manager.stored().unwrap().clone().unwrap();
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
