use orm_core::prelude::*;
use orm_examples::{person_rel, Person};

fn report_cities(
    p: &Loaded<Person, impl Has<person_rel::reports, Inner: Has<person_rel::address>>>,
) -> Vec<String> {
    let reports = p.get(Person::reports);
    reports.iter().filter_map(|r| r.get(Person::address).map(|a| a.city.clone())).collect()
}

fn run(mut session: Session<'_, diesel::SqliteConnection>) -> orm_core::Result<()> {
    // The reports are loaded, their addresses are not: `.then(joined(Person::address))` is missing.
    let people = Person::query().options(selectin(Person::reports)).load(&mut session)?;
    let _ = report_cities(&people[0]);
    Ok(())
}

fn main() {}
