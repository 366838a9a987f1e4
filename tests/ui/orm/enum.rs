use orm_core::prelude::*;

#[derive(Model)]
pub enum Person {
    Pierre,
    Pauline,
}

fn main() {}
