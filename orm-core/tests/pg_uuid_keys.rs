//! `uuid::Uuid` keys on PostgreSQL (`uuid` columns), through every strategy. They need a
//! PostgreSQL-only build (diesel maps `uuid` on PostgreSQL only, and every model decodes on every
//! enabled backend), so this test builds only there; CI runs it with
//! `.ci/with-postgres cargo test -p orm-core --no-default-features --features postgres,uuid --test pg_uuid_keys`.
#![cfg(all(feature = "postgres", feature = "uuid", not(feature = "sqlite")))]
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;
use uuid::Uuid;

diesel::table! {
    account (id) {
        id -> Uuid,
        name -> Text,
        parent_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    device (id) {
        id -> Uuid,
        account_id -> Uuid,
        label -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(account, device);

/// An account keyed by UUID, in a tree.
#[derive(Model, Debug)]
#[orm(table = account)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    #[relation(belongs_to = Account, foreign_key = parent_id)]
    pub parent: Rel<Option<Account>>,
    #[relation(has_many = Device, foreign_key = account_id)]
    pub devices: Rel<Vec<Device>>,
}

/// A device keyed by UUID.
#[derive(Model, Debug)]
#[orm(table = device)]
pub struct Device {
    pub id: Uuid,
    pub account_id: Uuid,
    pub label: String,
    #[relation(belongs_to = Account, foreign_key = account_id)]
    pub account: Rel<Account>,
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x5e5e_0000_0000_4000_8000_0000_0000_0000 | n)
}

/// A fresh schema of `DATABASE_URL` with two root accounts, a child of the first, and devices.
fn database() -> PgConnection {
    let url = std::env::var("DATABASE_URL").expect(
        "this test needs DATABASE_URL: `.ci/with-postgres cargo test -p orm-core --no-default-features --features postgres,uuid --test pg_uuid_keys`",
    );
    let mut conn = PgConnection::establish(&url).expect("PostgreSQL is reachable");
    let schema = format!("uuid_keys_{}", std::process::id());
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema};
         CREATE TABLE account (id uuid PRIMARY KEY, name text NOT NULL, parent_id uuid REFERENCES account (id));
         CREATE TABLE device (id uuid PRIMARY KEY, account_id uuid NOT NULL REFERENCES account (id), label text NOT NULL);"
    ))
    .unwrap();
    let accounts = [(1, "root", None), (2, "other", None), (3, "child", Some(1))];
    for (n, name, parent) in accounts {
        diesel::insert_into(account::table)
            .values((
                account::id.eq(id(n)),
                account::name.eq(name),
                account::parent_id.eq(parent.map(id)),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    for (n, owner) in [(10, 1), (11, 1), (12, 3), (13, 2)] {
        diesel::insert_into(device::table)
            .values((
                device::id.eq(id(n)),
                device::account_id.eq(id(owner)),
                device::label.eq(format!("d{n}")),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    conn
}

#[test]
fn uuid_keys_load_with_every_strategy() {
    let mut conn = database();
    let mut session = Session::new(&mut conn);
    let child = session.get::<Account>(id(3)).unwrap().expect("the child account");
    assert_eq!(child.name, "child");
    let parent = child.load(Account::parent, &mut session).unwrap().expect("a parent");
    assert_eq!(parent.id, id(1));
    let labels: Vec<&str> = parent
        .load(Account::devices, &mut session)
        .unwrap()
        .iter()
        .map(|d| d.label.as_str())
        .collect();
    assert_eq!(labels, ["d10", "d11"]);
    assert_eq!(session.statements(), 3);

    for (options, statements) in [
        (Options::new().with(joined(Device::account).then(joined(Account::parent))), 1),
        // The only parent (root) is one of the accounts already loaded: no third statement.
        (Options::new().with(selectin(Device::account).then(selectin(Account::parent))), 2),
    ] {
        session.clear_identity_map();
        let before = session.statements();
        let devices =
            Device::query().order_by(device::label).options(options).load(&mut session).unwrap();
        assert_eq!(session.statements() - before, statements);
        let owners: Vec<(&str, Option<&str>)> = devices
            .iter()
            .map(|d| {
                let account = d.account.get().expect("loaded");
                (
                    account.name.as_str(),
                    account.parent.get().expect("loaded").map(|p| p.name.as_str()),
                )
            })
            .collect();
        assert_eq!(
            owners,
            [("root", None), ("root", None), ("child", Some("root")), ("other", None)]
        );
    }

    session.clear_identity_map();
    let with_devices = Account::query()
        .filter(Account::devices.any(device::label.eq("d12")))
        .options(raise(Account::parent))
        .load(&mut session)
        .unwrap();
    assert_eq!(with_devices.len(), 1);
    assert_eq!(with_devices[0].id, id(3));
    assert!(matches!(
        with_devices[0].load(Account::parent, &mut session),
        Err(Error::NotLoaded { .. })
    ));
}
