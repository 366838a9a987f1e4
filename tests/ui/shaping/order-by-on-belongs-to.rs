#![allow(unused_imports)] // the derive fails before it uses the schema
use orm_core::prelude::*;
use orm_examples::schema::person;

#[derive(Model)]
#[orm(table = person)]
pub struct Person {
    pub id: i32,
    pub firstname: String,
    pub lastname: String,
    pub manager_id: Option<i32>,
    #[relation(belongs_to = Person, foreign_key = manager_id, order_by = lastname)]
    pub manager: Rel<Option<Person>>,
}

fn main() {}
