#![allow(unused_imports)]
use orm_core::prelude::*;
use orm_examples::schema::person_project;

// The link table's key is `(person_id, project_id)`: one of its columns would merge rows.
#[derive(Model)]
#[orm(table = person_project, primary_key = person_id)]
pub struct Membership {
    pub person_id: i32,
    pub project_id: i32,
}

fn main() {}
