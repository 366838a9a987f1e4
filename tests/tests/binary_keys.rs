//! Byte keys (`Binary`/`Vec<u8>`): UUIDs stored as their 16 bytes, as diesel maps them on
//! SQLite (`BLOB`) and PostgreSQL (`bytea`), through every strategy, counts and windows, on every
//! backend. The ids hold bytes a text conversion would mangle (0x00, 0xff, invalid UTF-8).
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;

diesel::table! {
    gadget (id) {
        id -> Binary,
        name -> Text,
        parent_id -> Nullable<Binary>,
    }
}

diesel::table! {
    reading (id) {
        id -> Binary,
        gadget_id -> Binary,
        value -> Integer,
    }
}

diesel::allow_tables_to_appear_in_same_query!(gadget, reading);

/// A device, keyed by a UUID's bytes, in a tree.
#[derive(Model, Debug)]
#[orm(table = gadget)]
pub struct Gadget {
    pub id: Vec<u8>,
    pub name: String,
    pub parent_id: Option<Vec<u8>>,
    #[relation(belongs_to = Gadget, foreign_key = parent_id)]
    pub parent: Rel<Option<Gadget>>,
    #[relation(has_many = Gadget, foreign_key = parent_id)]
    pub children: Rel<Vec<Gadget>>,
    /// Highest first.
    #[relation(has_many = Reading, foreign_key = gadget_id, order_by = value.desc())]
    pub readings: Rel<Vec<Reading>>,
}

/// A measurement of a gadget.
#[derive(Model, Debug)]
#[orm(table = reading)]
pub struct Reading {
    pub id: Vec<u8>,
    pub gadget_id: Vec<u8>,
    pub value: i32,
    #[relation(belongs_to = Gadget, foreign_key = gadget_id)]
    pub gadget: Rel<Gadget>,
}

/// A UUID-like 16-byte id: `n` and bytes no text survives (0x00, 0xff, a lone continuation
/// byte).
fn uuid(n: u32) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[6] = 0x40;
    id[8] = 0x80;
    id[14] = 0xff;
    id[15] = (n % 251) as u8;
    id
}

/// Gadget `n`'s parent: a tree of 3 roots (gadgets 0..3).
fn parent_of(n: u32) -> Option<u32> {
    (n >= 3).then(|| n / 3 - 1)
}

const GADGETS: u32 = 40;

/// What the rows say of gadget `n`: its parent, its children, its readings' values (highest
/// first).
#[derive(Debug, PartialEq, Eq)]
struct Node {
    parent: Option<String>,
    children: Vec<String>,
    readings: Vec<i32>,
}

fn expected() -> BTreeMap<String, Node> {
    (0..GADGETS)
        .map(|n| {
            let mut children: Vec<(Vec<u8>, String)> = (0..GADGETS)
                .filter(|c| parent_of(*c) == Some(n))
                .map(|c| (uuid(c), format!("g{c}")))
                .collect();
            children.sort();
            let mut readings: Vec<(i32, Vec<u8>)> =
                (0..n % 4).map(|r| ((r * 7 % 5) as i32, uuid(1000 + n * 10 + r))).collect();
            readings.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let node = Node {
                parent: parent_of(n).map(|p| format!("g{p}")),
                children: children.into_iter().map(|(_, name)| name).collect(),
                readings: readings.into_iter().map(|(v, _)| v).collect(),
            };
            (format!("g{n}"), node)
        })
        .collect()
}

fn node<S>(g: &Loaded<Gadget, S>) -> Node {
    let name = |g: &Gadget| g.name.clone();
    Node {
        parent: g.parent.get().expect("parent loaded").map(|p| name(p)),
        children: g.children.get().expect("children loaded").iter().map(|c| name(c)).collect(),
        readings: g.readings.get().expect("readings loaded").iter().map(|r| r.value).collect(),
    }
}

orm_tests::backend_tests! {
    fn devices() -> Conn {
        let mut conn = empty();
        // `BLOB` on SQLite, `bytea` on PostgreSQL: diesel's `Binary` on each.
        let postgres = <<Conn as Connection>::Backend as orm_core::OrmBackend>::QUOTE == '"';
        let bytes = if postgres { "BYTEA" } else { "BLOB" };
        conn.batch_execute(&format!(
            "CREATE TABLE gadget (id {bytes} PRIMARY KEY NOT NULL, name TEXT NOT NULL,
                                  parent_id {bytes} REFERENCES gadget (id));
             CREATE TABLE reading (id {bytes} PRIMARY KEY NOT NULL,
                                   gadget_id {bytes} NOT NULL REFERENCES gadget (id),
                                   value INTEGER NOT NULL);"
        ))
        .unwrap();
        for n in 0..GADGETS {
            diesel::insert_into(gadget::table)
                .values((
                    gadget::id.eq(uuid(n)),
                    gadget::name.eq(format!("g{n}")),
                    gadget::parent_id.eq(parent_of(n).map(uuid)),
                ))
                .execute(&mut conn)
                .unwrap();
            for r in 0..n % 4 {
                diesel::insert_into(reading::table)
                    .values((
                        reading::id.eq(uuid(1000 + n * 10 + r)),
                        reading::gadget_id.eq(uuid(n)),
                        reading::value.eq((r * 7 % 5) as i32),
                    ))
                    .execute(&mut conn)
                    .unwrap();
            }
        }
        conn
    }

    #[test]
    fn byte_keys_find_one_row_and_load_it_lazily() {
        let mut conn = devices();
        let mut session = Session::new(&mut conn);
        let g = session.get::<Gadget>(uuid(10)).unwrap().expect("gadget 10");
        assert_eq!(g.name, "g10");
        let mut other = uuid(10);
        other[15] ^= 1;
        assert!(session.get::<Gadget>(other).unwrap().is_none(), "keys compare byte for byte");
        assert_eq!(g.load(Gadget::parent, &mut session).unwrap().map(|p| p.name.as_str()), Some("g2"));
        let children: Vec<&str> =
            g.load(Gadget::children, &mut session).unwrap().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(children, expected()["g10"].children);
        let readings = g.load(Gadget::readings, &mut session).unwrap();
        assert_eq!(readings[0].load(Reading::gadget, &mut session).unwrap().name, "g10");
        // Two gets, the parent, the children, the readings; the reading's gadget is held.
        assert_eq!(session.statements(), 5);
    }

    #[test]
    fn byte_keys_load_the_same_graph_with_every_strategy() {
        let mut conn = devices();
        let want = expected();
        let all = || (joined(Gadget::parent), joined(Gadget::children), joined(Gadget::readings));
        // Every parent is a gadget the query holds: the many-to-one reads the identity map, so
        // selectin runs two statements after the gadgets, and lazy two per gadget.
        let lazy = 1 + 2 * GADGETS as usize;
        for (strategy, statements) in [("joined", 1), ("selectin", 3), ("lazy", lazy)] {
            let mut session = Session::new(&mut conn);
            let gadgets = match strategy {
                "joined" => untyped(Gadget::query().options(all()).load(&mut session)),
                "selectin" => untyped(
                    Gadget::query()
                        .options((
                            selectin(Gadget::parent),
                            selectin(Gadget::children),
                            selectin(Gadget::readings),
                        ))
                        .load(&mut session),
                ),
                _ => {
                    let gadgets = Gadget::query().load(&mut session).unwrap();
                    for g in &gadgets {
                        g.load(Gadget::parent, &mut session).unwrap();
                        g.load(Gadget::children, &mut session).unwrap();
                        g.load(Gadget::readings, &mut session).unwrap();
                    }
                    gadgets.iter().map(Loaded::untyped).collect()
                }
            };
            assert_eq!(session.statements(), statements, "{strategy}");
            let got: BTreeMap<String, Node> = gadgets.iter().map(|g| (g.name.clone(), node(g))).collect();
            assert_eq!(got, want, "{strategy}");
        }
    }

    #[test]
    fn byte_keys_count_and_window() {
        let mut conn = devices();
        let want = expected();
        for per_parent in [false, true] {
            let mut session = Session::new(&mut conn);
            let top = selectin(Gadget::readings).limit(2);
            let options = Options::new().with(count(Gadget::children));
            let options = if per_parent { options.with(top.per_parent()) } else { options.with(top) };
            let gadgets = Gadget::query().options(options).load(&mut session).unwrap();
            assert_eq!(session.statements(), 3);
            for g in &gadgets {
                let node = &want[&g.name];
                assert_eq!(g.counted(Gadget::children), Some(node.children.len() as u64));
                let top: Vec<i32> = g.readings.get().unwrap().iter().map(|r| r.value).collect();
                assert_eq!(top, node.readings.iter().copied().take(2).collect::<Vec<_>>());
            }
        }
    }
}

/// A load's results with their typed state erased.
fn untyped<S>(loaded: orm_core::Result<Vec<Loaded<Gadget, S>>>) -> Vec<Loaded<Gadget>> {
    loaded.unwrap().iter().map(Loaded::untyped).collect()
}
