use orm_core::prelude::*;
use orm_examples::{Address, Person};

fn main() {
    // The second option names a relation of `Address`, not of `Person`.
    let _query = Person::query::<diesel::sqlite::Sqlite>()
        .options((joined(Person::manager), selectin(Address::residents)));
}
