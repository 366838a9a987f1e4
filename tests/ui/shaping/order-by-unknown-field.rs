use orm_core::prelude::*;
use orm_examples::schema::person;

#[derive(Model)]
#[orm(table = person)]
pub struct Person {
    pub id: i32,
    pub firstname: String,
    pub lastname: String,
    pub manager_id: Option<i32>,
    #[relation(has_many = Person, foreign_key = manager_id, order_by = (lastname, nickname.desc()))]
    pub reports: Rel<Vec<Person>>,
}

fn main() {}
