use diesel::prelude::*;
use orm_core::prelude::*;
use orm_examples::schema::{address, person};
use orm_examples::Person;

fn main() {
    let _ = Person::query::<diesel::sqlite::Sqlite>()
        .options(selectin(Person::reports).order_by((person::lastname, address::city.desc())));
}
