// A `belongs_to` over a non-null key holds `Rel<Customer>`: the fix says so at once.
use orm_core::prelude::*;

diesel::table! { customers (id) { id -> Integer, name -> Text } }
diesel::table! { orders (id) { id -> Integer, customer_id -> Integer } }

#[derive(Model)]
#[orm(table = customers)]
pub struct Customer {
    pub id: i32,
    pub name: String,
}

#[derive(Model)]
#[orm(table = orders)]
pub struct Order {
    pub id: i32,
    pub customer_id: i32,
    #[relation(belongs_to = Customer, foreign_key = customer_id)]
    pub customer: Rel<Vec<Customer>>,
}

fn main() {}
