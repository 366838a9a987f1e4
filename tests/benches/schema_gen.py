"""Generates a crate of N models over orm-core, for compile-time measurements (docs/design.md,
"Compile time of the choice"): each model has four columns, two `belongs_to` (to the next two
models, a ring), the two matching `has_many`, every 8th a self-reference both ways, and one query
loading `(joined(..), selectin(..))`.

    python3 tests/benches/schema_gen.py 60 /tmp/gen60 "$PWD/orm-core"
    cd /tmp/gen60 && touch src/lib.rs && CARGO_INCREMENTAL=0 cargo check

No diesel-derive twin yet (issue 21 asks for one).
"""
import sys, os
n = int(sys.argv[1]); out = sys.argv[2]; core = sys.argv[3]
os.makedirs(out + "/src", exist_ok=True)
open(out + "/Cargo.toml", "w").write(f'''[package]
name = "gen{n}"
version = "0.1.0"
edition = "2021"
[dependencies]
orm-core = {{ path = "{core}" }}
diesel = {{ version = "2.3", default-features = false, features = ["sqlite", "32-column-tables"] }}
[workspace]
''')
def fks(i):  # belongs_to targets of model i
    return [(i + 1) % n, (i + 2) % n]
src = ["use orm_core::prelude::*;", "pub mod schema {"]
for i in range(n):
    cols = [f"id -> Integer", f"name{i} -> Text", f"value{i} -> Integer", f"note{i} -> Nullable<Text>"]
    for t in fks(i):
        cols.append(f"m{t}_id -> Nullable<Integer>")
    if i % 8 == 0:
        cols.append("parent_id -> Nullable<Integer>")
    src.append(f"    diesel::table! {{ t{i} (id) {{ " + ", ".join(cols) + " } }")
src.append("    diesel::allow_tables_to_appear_in_same_query!(" + ", ".join(f"t{i}" for i in range(n)) + ");")
src.append("}")
src.append("use schema::*;")
for i in range(n):
    fields = [f"pub id: i32", f"pub name{i}: String", f"pub value{i}: i32", f"pub note{i}: Option<String>"]
    for t in fks(i):
        fields.append(f"pub m{t}_id: Option<i32>")
    if i % 8 == 0:
        fields.append("pub parent_id: Option<i32>")
    rels = []
    for t in fks(i):
        rels.append(f"#[relation(belongs_to = M{t}, foreign_key = m{t}_id)] pub to{t}: Rel<Option<M{t}>>")
    for j in range(n):
        if i in fks(j):
            rels.append(f"#[relation(has_many = M{j}, foreign_key = m{i}_id)] pub from{j}: Rel<Vec<M{j}>>")
    if i % 8 == 0:
        rels.append(f"#[relation(belongs_to = M{i}, foreign_key = parent_id)] pub parent: Rel<Option<M{i}>>")
        rels.append(f"#[relation(has_many = M{i}, foreign_key = parent_id)] pub children: Rel<Vec<M{i}>>")
    src.append(f"#[derive(Model, Debug)] #[orm(table = t{i})] pub struct M{i} {{ " + ", ".join(fields + rels) + " }")
src.append("pub fn queries(conn: &mut diesel::sqlite::SqliteConnection) -> orm_core::Result<usize> {")
src.append("    let mut session = Session::new(conn); let mut total = 0;")
for i in range(n):
    a, b = fks(i)
    j = (i - 1) % n
    src.append(f"    total += M{i}::query().options((joined(M{i}::to{a}), selectin(M{i}::from{j}))).load(&mut session)?.len();")
src.append("    Ok(total) }")
open(out + "/src/lib.rs", "w").write("\n".join(src) + "\n")
