use orm_core::prelude::*;
use orm_examples::{person_rel, Person};

fn count(p: &Loaded<Person, impl Has<person_rel::reports>>) -> usize {
    p.get(Person::reports).len()
}

fn run(mut session: Session<'_, diesel::SqliteConnection>) -> orm_core::Result<()> {
    // The later option on the same relation wins: `reports` ends up not loaded.
    let people = Person::query()
        .options((selectin(Person::reports), raise(Person::reports)))
        .load(&mut session)?;
    let _ = count(&people[0]);
    Ok(())
}

fn main() {}
