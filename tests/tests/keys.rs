//! 64-bit keys (`BigInt`/`i64`) above 2^31, through every strategy, on every backend.
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;

diesel::table! {
    big_parent (id) {
        id -> BigInt,
        name -> Text,
    }
}

diesel::table! {
    big_child (id) {
        id -> BigInt,
        parent_id -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(big_parent, big_child);

/// A parent with a 64-bit key.
#[derive(Model, Debug)]
#[orm(table = big_parent)]
pub struct BigParent {
    /// Primary key, above 2^31.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The children.
    #[relation(has_many = BigChild, foreign_key = parent_id)]
    pub children: Rel<Vec<BigChild>>,
}

/// A child with a 64-bit foreign key.
#[derive(Model, Debug)]
#[orm(table = big_child)]
pub struct BigChild {
    /// Primary key, above 2^31.
    pub id: i64,
    /// Foreign key to the parent.
    pub parent_id: Option<i64>,
    /// The parent.
    #[relation(belongs_to = BigParent, foreign_key = parent_id)]
    pub parent: Rel<Option<BigParent>>,
}

const BASE: i64 = 5_000_000_000;

orm_tests::backend_tests! {
    fn big_keys() -> Conn {
        let mut conn = empty();
        conn.batch_execute(
            "CREATE TABLE big_parent (id BIGINT PRIMARY KEY NOT NULL, name TEXT NOT NULL);
             CREATE TABLE big_child (id BIGINT PRIMARY KEY NOT NULL, parent_id BIGINT REFERENCES big_parent (id));",
        )
        .unwrap();
        let parents: Vec<_> =
            (0..3).map(|i| (big_parent::id.eq(BASE + i), big_parent::name.eq(format!("p{i}")))).collect();
        diesel::insert_into(big_parent::table).values(&parents).execute(&mut conn).unwrap();
        let children: Vec<_> = (0..9)
            .map(|i| (big_child::id.eq(BASE * 2 + i), big_child::parent_id.eq(Some(BASE + i % 3))))
            .collect();
        diesel::insert_into(big_child::table).values(&children).execute(&mut conn).unwrap();
        conn
    }

    #[test]
    fn keys_above_two_to_the_31_load_with_every_strategy() {
        let mut conn = big_keys();
        let mut session = Session::new(&mut conn);
        let parent = session.get::<BigParent>(BASE + 1).unwrap().unwrap();
        assert_eq!(parent.name, "p1");
        let children: Vec<i64> =
            parent.load(BigParent::children, &mut session).unwrap().iter().map(|c| c.id).collect();
        assert_eq!(children, vec![BASE * 2 + 1, BASE * 2 + 4, BASE * 2 + 7]);

        for options in
            [Options::new().with(joined(BigChild::parent)), Options::new().with(selectin(BigChild::parent))]
        {
            session.clear_identity_map();
            let children = BigChild::query().order_by(big_child::id).options(options).load(&mut session).unwrap();
            let parents: Vec<i64> =
                children.iter().map(|c| c.parent.get().unwrap().unwrap().id).collect();
            assert_eq!(parents, (0..9).map(|i| BASE + i % 3).collect::<Vec<_>>());
        }
        session.clear_identity_map();
        let parents = BigParent::query().options(joined(BigParent::children)).load(&mut session).unwrap();
        assert_eq!(parents.iter().map(|p| p.children.get().unwrap().len()).sum::<usize>(), 9);
        let filtered = BigChild::query().filter(big_child::parent_id.eq(BASE + 2)).load(&mut session).unwrap();
        assert_eq!(filtered.len(), 3);
    }
}
