use diesel::prelude::*;
use orm_core::prelude::*;
use orm_examples::schema::address;
use orm_examples::Person;

fn main() {
    let _ = Person::query::<diesel::sqlite::Sqlite>()
        .options(joined(Person::reports).filter(address::city.eq("Paris")));
}
