use orm_core::prelude::*;
use orm_examples::schema::person;
use orm_examples::Person;

fn main() {
    let _ = Person::query::<diesel::sqlite::Sqlite>()
        .options(lazy(Person::reports).order_by(person::lastname));
}
