//! Text keys: cities keyed by slug with a text foreign key to countries keyed by code, against
//! the same graph hand-written with diesel (`String` keys in the hash maps).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::Criterion;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;

use super::{counted, workload, Conn, Run, CHUNK};

diesel::table! {
    country (code) {
        code -> Text,
        name -> Text,
    }
}

diesel::table! {
    city (slug) {
        slug -> Text,
        name -> Text,
        country_code -> Text,
    }
}

diesel::joinable!(city -> country (country_code));
diesel::allow_tables_to_appear_in_same_query!(country, city);

/// A country keyed by code.
#[derive(Model, Debug)]
#[orm(table = country, primary_key = code)]
pub struct Country {
    pub code: String,
    pub name: String,
    #[relation(has_many = City, foreign_key = country_code)]
    pub cities: Rel<Vec<City>>,
}

/// A city keyed by slug.
#[derive(Model, Debug)]
#[orm(table = city, primary_key = slug)]
pub struct City {
    pub slug: String,
    pub name: String,
    pub country_code: String,
    #[relation(belongs_to = Country, foreign_key = country_code)]
    pub country: Rel<Country>,
}

#[derive(Queryable, Selectable, Identifiable, Clone, Debug)]
#[diesel(table_name = country, primary_key(code))]
struct CountryRow {
    code: String,
    name: String,
}

#[derive(Queryable, Selectable, Identifiable, Associations, Clone, Debug)]
#[diesel(table_name = city, primary_key(slug), belongs_to(CountryRow, foreign_key = country_code))]
struct CityRow {
    slug: String,
    name: String,
    country_code: String,
}

fn text_sum(a: &str, b: &str) -> u64 {
    a.bytes().map(u64::from).sum::<u64>() * 31 + b.len() as u64
}

/// `n` cities over `n / 10` countries, in a fresh in-memory database.
fn database(n: usize) -> Conn {
    let mut conn = Conn::establish(":memory:").unwrap();
    conn.batch_execute(
        "CREATE TABLE country (code TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL);
         CREATE TABLE city (slug TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,
                            country_code TEXT NOT NULL REFERENCES country (code));",
    )
    .unwrap();
    let countries = (n / 10).max(1);
    let rows: Vec<_> = (0..countries)
        .map(|i| (country::code.eq(format!("C{i:05}")), country::name.eq(format!("Country {i}"))))
        .collect();
    for chunk in rows.chunks(10_000) {
        diesel::insert_into(country::table).values(chunk).execute(&mut conn).unwrap();
    }
    // Cities interleave their countries, so neither side's order follows the other's.
    let rows: Vec<_> = (0..n)
        .map(|i| {
            (
                city::slug.eq(format!("city-{i:07}")),
                city::name.eq(format!("City {i}")),
                city::country_code.eq(format!("C{:05}", (i * 7) % countries)),
            )
        })
        .collect();
    for chunk in rows.chunks(10_000) {
        diesel::insert_into(city::table).values(chunk).execute(&mut conn).unwrap();
    }
    conn
}

// Every city with its country (belongs_to over a text key).

fn orm_cities(conn: &mut Conn, options: impl QueryOptions<City>) -> (u64, usize) {
    let mut session = Session::new(conn);
    let cities = City::query().order_by(city::slug).options(options).load(&mut session).unwrap();
    let sum = cities
        .iter()
        .map(|c| {
            let country = c.country.get().expect("loaded");
            text_sum(&c.slug, &c.name) + text_sum(&country.code, &country.name)
        })
        .sum();
    (sum, session.statements())
}

fn hand_cities_sum(cities: &[(CityRow, Arc<CountryRow>)]) -> u64 {
    cities
        .iter()
        .map(|(c, country)| text_sum(&c.slug, &c.name) + text_sum(&country.code, &country.name))
        .sum()
}

fn hand_joined_cities(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<(CityRow, CountryRow)> = city::table
        .inner_join(country::table)
        .order_by(city::slug)
        .select((CityRow::as_select(), CountryRow::as_select()))
        .load(conn)
        .unwrap();
    let mut countries: HashMap<String, Arc<CountryRow>> = HashMap::new();
    let cities: Vec<(CityRow, Arc<CountryRow>)> = rows
        .into_iter()
        .map(|(c, country)| {
            let shared = countries.entry(country.code.clone()).or_insert_with(|| Arc::new(country));
            (c, Arc::clone(shared))
        })
        .collect();
    (hand_cities_sum(&cities), statements.load(Ordering::Relaxed))
}

fn hand_selectin_cities(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<CityRow> =
        city::table.order_by(city::slug).select(CityRow::as_select()).load(conn).unwrap();
    let mut codes: Vec<&str> = rows.iter().map(|c| c.country_code.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    let mut countries: HashMap<String, Arc<CountryRow>> = HashMap::with_capacity(codes.len());
    for chunk in codes.chunks(CHUNK) {
        let found: Vec<CountryRow> = country::table
            .filter(country::code.eq_any(chunk))
            .select(CountryRow::as_select())
            .load(conn)
            .unwrap();
        countries.extend(found.into_iter().map(|c| (c.code.clone(), Arc::new(c))));
    }
    let cities: Vec<(CityRow, Arc<CountryRow>)> = rows
        .into_iter()
        .map(|c| {
            let country = Arc::clone(&countries[&c.country_code]);
            (c, country)
        })
        .collect();
    (hand_cities_sum(&cities), statements.load(Ordering::Relaxed))
}

// Every country with its cities (has_many over a text key).

fn orm_countries(conn: &mut Conn, options: impl QueryOptions<Country>) -> (u64, usize) {
    let mut session = Session::new(conn);
    let countries =
        Country::query().order_by(country::code).options(options).load(&mut session).unwrap();
    let sum = countries
        .iter()
        .map(|c| {
            let cities = c.cities.get().expect("loaded");
            text_sum(&c.code, &c.name)
                + cities.iter().map(|t| text_sum(&t.slug, &t.name)).sum::<u64>()
        })
        .sum();
    (sum, session.statements())
}

fn hand_selectin_countries(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let countries: Vec<CountryRow> =
        country::table.order_by(country::code).select(CountryRow::as_select()).load(conn).unwrap();
    let mut cities: Vec<CityRow> = Vec::new();
    for chunk in countries.chunks(CHUNK) {
        cities.extend(
            CityRow::belonging_to(chunk)
                .order_by(city::slug)
                .select(CityRow::as_select())
                .load(conn)
                .unwrap(),
        );
    }
    let grouped = cities.grouped_by(&countries);
    let sum = countries
        .iter()
        .zip(grouped)
        .map(|(c, cities)| {
            text_sum(&c.code, &c.name)
                + cities.iter().map(|t| text_sum(&t.slug, &t.name)).sum::<u64>()
        })
        .sum();
    (sum, statements.load(Ordering::Relaxed))
}

/// The text-key workloads, at 10,000 cities (or `ORM_BENCH_SIZES`).
pub fn bench(c: &mut Criterion) {
    for n in super::sizes().into_iter().filter(|&n| n <= 10_000) {
        let mut conn = database(n);
        workload(
            c,
            &mut conn,
            n,
            "text-keys-city-country",
            vec![
                (
                    "joined",
                    Box::new(|c: &mut Conn| orm_cities(c, joined(City::country))) as Run<'_>,
                    1,
                    Box::new(hand_joined_cities),
                ),
                (
                    "selectin",
                    Box::new(|c: &mut Conn| orm_cities(c, selectin(City::country))),
                    2,
                    Box::new(hand_selectin_cities),
                ),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "text-keys-country-cities",
            vec![(
                "selectin",
                Box::new(|c: &mut Conn| orm_countries(c, selectin(Country::cities))) as Run<'_>,
                2,
                Box::new(hand_selectin_countries),
            )],
        );
    }
}
