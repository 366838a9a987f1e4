#![allow(unused_imports)]
use orm_core::prelude::*;
use orm_examples::schema::person;

#[derive(Model)]
#[orm(table = person, primary_key = firstname)]
pub struct Person {
    pub id: i32,
    pub firstname: String,
}

fn main() {}
