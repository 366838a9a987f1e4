"""Generates an application crate of N models, over orm-core or over diesel's own derives, for
the compile-time benchmark (`tests/benches/compile_time.py`, BENCHMARKS.md "Compile time").

    python3 tests/benches/schema_gen.py 60 /tmp/gen60 "$PWD/orm-core"           # orm-core
    python3 tests/benches/schema_gen.py 60 /tmp/diesel60 "$PWD/orm-core" diesel  # the twin
    python3 tests/benches/schema_gen.py 60 /tmp/models60 "$PWD/orm-core" orm queries=0  # no query

The schema (issue 21's): model i has 7 columns of its own, two foreign keys to the next two
models of a ring (`belongs_to`, and the matching `has_many` on their side), every 8th model a
self-reference (`parent_id`, both directions), and every 10th model a many-to-many to the model
5 further through a link table keyed by both ids (N/10 link tables): 9-10 columns each. One query
per model loads two relations: its first `belongs_to` in the same statement and the `has_many`
from the model before it in a second one.

The orm-core crate spells that `M{i}::query().options((joined(..), selectin(..)))`. The diesel
twin has the same `table!`s, `#[derive(Queryable, Selectable, Identifiable, Associations)]`
structs, and per model a `left_join` for the first relation and `belonging_to` + `grouped_by`
for the second: what a diesel user writes for the same graph.
"""
import os
import sys

n = int(sys.argv[1])
out = sys.argv[2]
core = sys.argv[3]
flavour = sys.argv[4] if len(sys.argv) > 4 else "orm"
assert flavour in ("orm", "diesel")
# `queries=0`: the models alone (to tell what the queries cost from what the models cost).
queries = "queries=0" not in sys.argv[5:]


def fks(i):
    """The models model i belongs to."""
    return [(i + 1) % n, (i + 2) % n]


def links():
    """The many-to-many pairs (a, b) and their link tables."""
    return [(i, (i + 5) % n) for i in range(0, n, 10) if (i + 5) % n != i]


os.makedirs(out + "/src", exist_ok=True)
deps = f'orm-core = {{ path = "{core}" }}\n' if flavour == "orm" else ""
open(out + "/Cargo.toml", "w").write(f'''[package]
name = "gen-{flavour}-{n}"
version = "0.1.0"
edition = "2021"
[dependencies]
{deps}diesel = {{ version = "2.3", default-features = false, features = ["sqlite", "32-column-tables"] }}
[workspace]
''')

src = ["#![allow(dead_code, unused, clippy::all)]"]
src.append("use orm_core::prelude::*;" if flavour == "orm" else "use diesel::prelude::*;")
src.append("pub mod schema {")
for i in range(n):
    cols = ["id -> Integer", f"name{i} -> Text", f"value{i} -> Integer", f"note{i} -> Nullable<Text>",
            f"created{i} -> Text", f"flag{i} -> Bool", f"score{i} -> Double"]
    cols += [f"m{t}_id -> Nullable<Integer>" for t in fks(i)]
    if i % 8 == 0:
        cols.append("parent_id -> Nullable<Integer>")
    src.append(f"    diesel::table! {{ t{i} (id) {{ " + ", ".join(cols) + " } }")
for a, b in links():
    src.append(f"    diesel::table! {{ l{a}_{b} (a_id, b_id) {{ a_id -> Integer, b_id -> Integer }} }}")
# The pairs the queries join (the twin's `left_join`), not every table in one list: diesel's
# macro recurses once per table and stops at the default recursion limit past 128 tables.
for i in range(n):
    src.append(f"    diesel::allow_tables_to_appear_in_same_query!(t{i}, t{fks(i)[0]});")
src.append("}")
src.append("use schema::*;")


def columns(i):
    fields = ["pub id: i32", f"pub name{i}: String", f"pub value{i}: i32", f"pub note{i}: Option<String>",
              f"pub created{i}: String", f"pub flag{i}: bool", f"pub score{i}: f64"]
    fields += [f"pub m{t}_id: Option<i32>" for t in fks(i)]
    if i % 8 == 0:
        fields.append("pub parent_id: Option<i32>")
    return fields


if flavour == "orm":
    for i in range(n):
        rels = []
        for t in fks(i):
            rels.append(f"#[relation(belongs_to = M{t}, foreign_key = m{t}_id)] pub to{t}: Rel<Option<M{t}>>")
        for j in range(n):
            if i in fks(j):
                rels.append(f"#[relation(has_many = M{j}, foreign_key = m{i}_id)] pub from{j}: Rel<Vec<M{j}>>")
        if i % 8 == 0:
            rels.append(f"#[relation(belongs_to = M{i}, foreign_key = parent_id)] pub parent: Rel<Option<M{i}>>")
            rels.append(f"#[relation(has_many = M{i}, foreign_key = parent_id)] pub children: Rel<Vec<M{i}>>")
        for a, b in links():
            if i == a:
                rels.append(f"#[relation(many_to_many = M{b}, through = l{a}_{b}, foreign_key = a_id, target_key = b_id)] pub linked{b}: Rel<Vec<M{b}>>")
            if i == b:
                rels.append(f"#[relation(many_to_many = M{a}, through = l{a}_{b}, foreign_key = b_id, target_key = a_id)] pub linked{a}: Rel<Vec<M{a}>>")
        src.append(f"#[derive(Model, Debug)] #[orm(table = t{i})] pub struct M{i} {{ " + ", ".join(columns(i) + rels) + " }")
    src.append("pub fn queries(conn: &mut diesel::sqlite::SqliteConnection) -> orm_core::Result<usize> {")
    src.append("    let mut session = Session::new(conn);")
    src.append("    let mut total = 0;")
    for i in range(n if queries else 0):
        a = fks(i)[0]
        j = (i - 1) % n
        src.append(f"    total += M{i}::query().options((joined(M{i}::to{a}), selectin(M{i}::from{j}))).load(&mut session)?.len();")
    src.append("    Ok(total)")
    src.append("}")
else:
    for i in range(n):
        belongs = [f"#[diesel(belongs_to(D{t}, foreign_key = m{t}_id))]" for t in fks(i)]
        if i % 8 == 0:
            belongs.append(f"#[diesel(belongs_to(D{i}, foreign_key = parent_id))]")
        src.append("#[derive(Queryable, Selectable, Identifiable, Associations, Debug, Clone)] "
                   f"#[diesel(table_name = t{i})] " + " ".join(belongs) +
                   f" pub struct D{i} {{ " + ", ".join(columns(i)) + " }")
    for a, b in links():
        src.append("#[derive(Queryable, Selectable, Identifiable, Associations, Debug)] "
                   f"#[diesel(table_name = l{a}_{b}, primary_key(a_id, b_id))] "
                   f"#[diesel(belongs_to(D{a}, foreign_key = a_id))] #[diesel(belongs_to(D{b}, foreign_key = b_id))] "
                   f"pub struct L{a}_{b} {{ pub a_id: i32, pub b_id: i32 }}")
    src.append("pub fn queries(conn: &mut diesel::sqlite::SqliteConnection) -> QueryResult<usize> {")
    src.append("    let mut total = 0;")
    for i in range(n if queries else 0):
        a = fks(i)[0]
        j = (i - 1) % n
        src.append("    {")
        src.append(f"        let rows: Vec<(D{i}, Option<D{a}>)> = t{i}::table"
                   f".left_join(t{a}::table.on(t{i}::m{a}_id.eq(t{a}::id.nullable())))"
                   f".select((D{i}::as_select(), Option::<D{a}>::as_select())).load(conn)?;")
        src.append(f"        let parents: Vec<D{i}> = rows.iter().map(|(p, _)| p.clone()).collect();")
        src.append(f"        let children: Vec<D{j}> = D{j}::belonging_to(&parents).select(D{j}::as_select()).load(conn)?;")
        src.append("        let grouped = children.grouped_by(&parents);")
        src.append("        total += rows.len() + grouped.len();")
        src.append("    }")
    src.append("    Ok(total)")
    src.append("}")

open(out + "/src/lib.rs", "w").write("\n".join(src) + "\n")
