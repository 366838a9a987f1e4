#![allow(unused_imports)] // the derive fails before it uses the schema in most cases
use orm_core::prelude::*;
use orm_examples::Address;

diesel::table! {
    resident (id) {
        id -> Integer,
        home_id -> Integer,
    }
}

#[derive(Model)]
#[orm(table = resident)]
pub struct Resident {
    pub id: i32,
    pub home_id: i32,
    #[relation(belongs_to = Address, foreign_key = home_id)]
    pub home: Rel<Option<Address>>,
}

fn main() {}
