// A primary key of a type that is not a key type (a float) names the key types.
use orm_core::prelude::*;

diesel::table! { reading (at) { at -> Double, value -> Double } }

#[derive(Model)]
#[orm(table = reading, primary_key = at)]
pub struct Reading {
    pub at: f64,
    pub value: f64,
}

fn main() {}
