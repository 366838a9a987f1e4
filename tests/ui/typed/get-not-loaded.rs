use orm_core::prelude::*;
use orm_examples::Person;

fn run(mut session: Session<'_, diesel::SqliteConnection>) -> orm_core::Result<()> {
    let people = Person::query().options(joined(Person::address)).load(&mut session)?;
    let _address = people[0].get(Person::address); // loaded: fine
    let _manager = people[0].get(Person::manager); // not loaded by this query
    Ok(())
}

fn main() {}
