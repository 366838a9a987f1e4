#![allow(unused_imports)] // the derive fails before it uses the schema in most cases
use orm_core::prelude::*;
use orm_examples::schema::person;
use orm_examples::{Address, Project};

#[derive(Model)]
#[orm(table = person)]
pub struct Person {
    pub id: i32,
    pub firstname: String,
    pub lastname: String,
    pub address_id: Option<i32>,
    pub manager_id: Option<i32>,
    #[relation(belongs_to = Address, foreign_key = address_id)]
    pub address: Rel<Option<Project>>,
}

fn main() {}
