use orm_core::prelude::*;

#[derive(Model)]
pub struct Person<T> {
    pub id: i32,
    pub data: T,
}

fn main() {}
