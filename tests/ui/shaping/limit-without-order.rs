use orm_core::prelude::*;
use orm_examples::Person;

fn main() {
    // `Person.reports` declares no order: the first three in which order?
    let _ = Person::query::<diesel::sqlite::Sqlite>()
        .options(selectin(Person::reports).limit(3));
}
