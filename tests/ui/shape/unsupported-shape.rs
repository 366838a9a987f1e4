use orm_core::prelude::*;

diesel::table! {
    person (id) {
        id -> Integer,
        name -> Text,
        address_id -> Nullable<Integer>,
        manager_id -> Nullable<Integer>,
    }
}
diesel::table! {
    address (id) {
        id -> Integer,
        city -> Text,
    }
}
diesel::table! {
    person_project (person_id, project_id) {
        person_id -> Integer,
        project_id -> Integer,
    }
}

#[derive(Model)]
#[orm(table = address)]
pub struct Address {
    pub id: i32,
    pub city: String,
}

#[derive(Model)]
#[orm(table = person)]
pub struct Person {
    pub id: i32,
    pub name: String,
    pub address_id: Option<i32>,
    pub manager_id: Option<i32>,
    #[relation(belongs_to = Address, foreign_key = address_id)]
    pub address: Rel<Box<Address>>,
}

fn main() {}
