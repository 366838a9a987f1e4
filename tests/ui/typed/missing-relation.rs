use orm_core::prelude::*;
use orm_examples::{person_rel, Person};

fn city(p: &Loaded<Person, impl Has<person_rel::address>>) -> Option<&str> {
    p.get(Person::address).map(|a| a.city.as_str())
}

fn run(mut session: Session<'_, diesel::SqliteConnection>) -> orm_core::Result<()> {
    // Loads `manager`, not `address`.
    let people = Person::query().options(joined(Person::manager)).load(&mut session)?;
    let _ = city(&people[0]);
    Ok(())
}

fn main() {}
