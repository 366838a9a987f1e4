// A relation whose target is not a model is one error, also where queries use the relation.
use orm_core::prelude::*;

diesel::table! { customers (id) { id -> Integer, name -> Text } }
diesel::table! { orders (id) { id -> Integer, customer_id -> Integer } }

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
    pub customer: Rel<Customer>,
}

fn main() {
    let mut conn = <diesel::SqliteConnection as diesel::Connection>::establish(":memory:").unwrap();
    let mut session = Session::new(&mut conn);
    let orders = Order::query().options(joined(Order::customer)).load(&mut session).unwrap();
    let _name: &str = &orders[0].get(Order::customer).name;
    let _lazy = orders[0].load(Order::customer, &mut session);
}
