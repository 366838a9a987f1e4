//! The SQL echo: every statement a session runs is one `tracing` event with its SQL, binds, rows,
//! duration and cause. A global subscriber (in this test binary only) keeps each thread's
//! events apart, so the tests of both backends can run at once.

use std::sync::{Mutex, Once};

use diesel::prelude::*;
use orm_core::prelude::*;
use orm_tests::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One event's fields, as `(name, value)`.
type Fields = Vec<(String, String)>;

/// The `orm_core::sql` events seen, with the name of the thread that emitted them.
static EVENTS: Mutex<Vec<(String, Fields)>> = Mutex::new(Vec::new());

struct Capture;

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Visitor(Fields);
        impl Visit for Visitor {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push((field.name().to_owned(), format!("{value:?}")));
            }
        }
        if event.metadata().target() == "orm_core::sql" {
            let mut fields = Visitor(Vec::new());
            event.record(&mut fields);
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            EVENTS.lock().unwrap().push((thread, fields.0));
        }
    }
}

fn install_subscriber() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("no other global subscriber in this binary");
    });
}

fn events_of_this_thread() -> Vec<Fields> {
    let me = std::thread::current().name().unwrap_or_default().to_owned();
    EVENTS.lock().unwrap().iter().filter(|(t, _)| *t == me).map(|(_, f)| f.clone()).collect()
}

fn field<'a>(event: &'a [(String, String)], name: &str) -> &'a str {
    event.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

orm_tests::backend_tests! {
    #[test]
    fn echo_emits_one_event_per_statement() {
        install_subscriber();
        let (mut conn, _) = seeded(30);
        let log = {
            let mut session = Session::new(&mut conn);
            let people = Person::query()
                .filter(person::id.le(10))
                .options(selectin(Person::reports))
                .load(&mut session)
                .unwrap();
            people[0].load(Person::address, &mut session).unwrap();
            session.statement_log()
        };
        let events = events_of_this_thread();
        assert_eq!(events.len(), log.len());
        // BEGIN (and PostgreSQL's snapshot statement), people, reports, COMMIT, the lazy load.
        let causes: Vec<&str> = events.iter().map(|e| field(e, "cause")).collect();
        let snapshot = <<Conn as diesel::Connection>::Backend as orm_core::OrmBackend>::SNAPSHOT;
        let mut expected = vec!["transaction"];
        expected.extend(snapshot.map(|_| "transaction"));
        expected.extend(["Person query", "Person.reports selectin", "transaction", "Person.address lazy load"]);
        assert_eq!(causes, expected);
        let people = &events[expected.len() - 4];
        assert!(field(people, "sql").contains(&q("FROM `person`")));
        assert_eq!(field(people, "rows"), "10");
        assert_eq!(field(people, "binds"), "1");
        assert!(field(events.last().unwrap(), "duration_us").parse::<u64>().is_ok());
    }

}
