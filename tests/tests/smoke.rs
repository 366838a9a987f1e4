use diesel::prelude::*;
use orm_core::prelude::*;
use orm_tests::*;

#[test]
fn smoke() {
    let (mut conn, _) = seeded(50);
    let mut session = Session::new(&mut conn);
    let people = Person::query()
        .filter(person::id.le(5))
        .order_by(person::id)
        .load(&mut session)
        .unwrap();
    assert_eq!(people.len(), 5);
    println!("{:?}", session.queries());
    let a = people[1].load(Person::address, &mut session).unwrap();
    println!("{a:?}");
    let people = Person::query()
        .filter(person::id.le(5))
        .options((
            joined(Person::address),
            selectin(Person::reports),
            joined(Person::projects),
        ))
        .load(&mut session)
        .unwrap();
    println!("{:#?}", people[0]);
    for s in session.queries() {
        println!("{s}");
    }
}
