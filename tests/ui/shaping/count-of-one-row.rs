use orm_core::prelude::*;
use orm_examples::Person;

fn main() {
    // A manager is one row: nothing to count.
    let _ = Person::query::<diesel::sqlite::Sqlite>().options(count(Person::manager));
}
