use orm_core::prelude::*;

#[derive(Model)]
pub struct Person(pub i32, pub String);

fn main() {}
