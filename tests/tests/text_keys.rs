//! Text keys (`Text`/`String`) and 16-bit keys (`SmallInt`/`i16`) through every strategy, on
//! every backend: a country code, a city slug, a category tree keyed by slug, tags through a link
//! table keyed by text on both sides.
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;

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

diesel::table! {
    tag (name) {
        name -> Text,
    }
}

diesel::table! {
    city_tag (city_slug, tag_name) {
        city_slug -> Text,
        tag_name -> Text,
    }
}

diesel::table! {
    category (slug) {
        slug -> Text,
        parent_slug -> Nullable<Text>,
    }
}

diesel::table! {
    floor (id) {
        id -> SmallInt,
        below_id -> Nullable<SmallInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(country, city, tag, city_tag);

/// A country, keyed by its ISO code.
#[derive(Model, Debug)]
#[orm(table = country, primary_key = code)]
pub struct Country {
    /// `FR`, `DE`, ..
    pub code: String,
    /// Name.
    pub name: String,
    /// Its cities.
    #[relation(has_many = City, foreign_key = country_code)]
    pub cities: Rel<Vec<City>>,
}

/// A city, keyed by its slug.
#[derive(Model, Debug)]
#[orm(table = city, primary_key = slug)]
pub struct City {
    /// `paris`, `lyon`, ..
    pub slug: String,
    /// Name.
    pub name: String,
    /// Its country's code.
    pub country_code: String,
    /// Its country.
    #[relation(belongs_to = Country, foreign_key = country_code)]
    pub country: Rel<Country>,
    /// Its tags, through `city_tag`.
    #[relation(many_to_many = Tag, through = city_tag, foreign_key = city_slug, target_key = tag_name)]
    pub tags: Rel<Vec<Tag>>,
}

/// A tag, keyed by its name.
#[derive(Model, Debug)]
#[orm(table = tag, primary_key = name)]
pub struct Tag {
    /// The tag.
    pub name: String,
    /// The cities with this tag.
    #[relation(many_to_many = City, through = city_tag, foreign_key = tag_name, target_key = city_slug)]
    pub cities: Rel<Vec<City>>,
}

/// A category tree keyed by slug, its parent joined two levels up by default.
#[derive(Model, Debug)]
#[orm(table = category, primary_key = slug)]
pub struct Category {
    /// Slug.
    pub slug: String,
    /// The parent's slug.
    pub parent_slug: Option<String>,
    /// The parent, joined two levels.
    #[relation(belongs_to = Category, foreign_key = parent_slug, lazy = "joined", join_depth = 2)]
    pub parent: Rel<Option<Category>>,
    /// The children, selectin at any depth.
    #[relation(has_many = Category, foreign_key = parent_slug)]
    pub children: Rel<Vec<Category>>,
}

/// A floor of a building, with a 16-bit key.
#[derive(Model, Debug)]
#[orm(table = floor)]
pub struct Floor {
    /// Primary key.
    pub id: i16,
    /// The floor below.
    pub below_id: Option<i16>,
    /// The floor below.
    #[relation(belongs_to = Floor, foreign_key = below_id)]
    pub below: Rel<Option<Floor>>,
    /// The floors above (one, or none).
    #[relation(has_many = Floor, foreign_key = below_id)]
    pub above: Rel<Vec<Floor>>,
}

const SCHEMA: &str = "
    CREATE TABLE country (code TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL);
    CREATE TABLE city (slug TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,
                       country_code TEXT NOT NULL REFERENCES country (code));
    CREATE TABLE tag (name TEXT PRIMARY KEY NOT NULL);
    CREATE TABLE city_tag (city_slug TEXT NOT NULL REFERENCES city (slug),
                           tag_name TEXT NOT NULL REFERENCES tag (name),
                           PRIMARY KEY (city_slug, tag_name));
    CREATE TABLE category (slug TEXT PRIMARY KEY NOT NULL, parent_slug TEXT REFERENCES category (slug));
    CREATE TABLE floor (id SMALLINT PRIMARY KEY NOT NULL, below_id SMALLINT REFERENCES floor (id));
    INSERT INTO country VALUES ('FR', 'France'), ('DE', 'Germany'), ('IS', 'Iceland');
    INSERT INTO city VALUES ('paris', 'Paris', 'FR'), ('lyon', 'Lyon', 'FR'),
                            ('berlin', 'Berlin', 'DE'), ('o''brien', 'Quoted', 'DE');
    INSERT INTO tag VALUES ('capital'), ('river'), ('l''été');
    INSERT INTO city_tag VALUES ('paris', 'capital'), ('paris', 'river'), ('lyon', 'river'),
                                ('berlin', 'capital'), ('o''brien', 'l''été');
    INSERT INTO category VALUES ('root', NULL), ('books', 'root'), ('novels', 'books'),
                                ('sf', 'novels'), ('music', 'root');
    INSERT INTO floor VALUES (-2, NULL), (-1, -2), (0, -1), (1, 0), (32000, 1);
";

/// `(slug, [tag names])` of each city, in slug order.
fn tags_of<S>(cities: &[Loaded<City, S>]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<_> = cities
        .iter()
        .map(|c| {
            let tags = c.tags.get().expect("tags loaded").iter().map(|t| t.name.clone()).collect();
            (c.slug.clone(), tags)
        })
        .collect();
    out.sort();
    out
}

fn expected_tags() -> Vec<(String, Vec<String>)> {
    let row = |city: &str, tags: &[&str]| {
        (city.to_owned(), tags.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>())
    };
    vec![
        row("berlin", &["capital"]),
        row("lyon", &["river"]),
        row("o'brien", &["l'été"]),
        row("paris", &["capital", "river"]),
    ]
}

orm_tests::backend_tests! {
    fn text_keyed() -> Conn {
        let mut conn = empty();
        conn.batch_execute(SCHEMA).unwrap();
        conn
    }

    #[test]
    fn text_keys_find_one_row_and_load_it_lazily() {
        let mut conn = text_keyed();
        let mut session = Session::new(&mut conn);
        let france = session.get::<Country>("FR".to_owned()).unwrap().expect("FR exists");
        assert_eq!(france.name, "France");
        assert!(session.get::<Country>("fr".to_owned()).unwrap().is_none(), "keys compare exactly");
        let cities: Vec<&str> =
            france.load(Country::cities, &mut session).unwrap().iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(cities, ["lyon", "paris"]);
        let quoted = session.get::<City>("o'brien".to_owned()).unwrap().expect("a quote in a key");
        assert_eq!(quoted.load(City::country, &mut session).unwrap().code, "DE");
        let tags: Vec<&str> =
            quoted.load(City::tags, &mut session).unwrap().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tags, ["l'été"]);
        assert_eq!(session.statements(), 6);
    }

    #[test]
    fn text_keys_load_the_same_graph_with_every_eager_strategy() {
        let mut conn = text_keyed();
        let mut session = Session::new(&mut conn);
        for (options, statements) in [
            (Options::new().with(joined(City::country)).with(joined(City::tags)), 1),
            (Options::new().with(selectin(City::country)).with(selectin(City::tags)), 3),
            (Options::new().with(joined(City::country)).with(selectin(City::tags)), 2),
        ] {
            session.clear_identity_map();
            let before = session.statements();
            let cities = City::query().order_by(city::slug).options(options).load(&mut session).unwrap();
            assert_eq!(session.statements() - before, statements);
            let countries: Vec<&str> = cities.iter().map(|c| c.country.get().unwrap().code.as_str()).collect();
            assert_eq!(countries, ["DE", "FR", "DE", "FR"]);
            assert_eq!(tags_of(&cities), expected_tags());
        }
        // The other side of the link table, and a has_many, each one statement more.
        session.clear_identity_map();
        let before = session.statements();
        let tags = Tag::query().order_by(tag::name).options(selectin(Tag::cities)).load(&mut session).unwrap();
        let countries = Country::query().order_by(country::code).options(joined(Country::cities)).load(&mut session).unwrap();
        assert_eq!(session.statements() - before, 3);
        let on: Vec<usize> = tags.iter().map(|t| t.cities.get().unwrap().len()).collect();
        assert_eq!(on, [2, 1, 2], "capital, l'été, river");
        let per: Vec<(&str, usize)> =
            countries.iter().map(|c| (c.code.as_str(), c.cities.get().unwrap().len())).collect();
        assert_eq!(per, [("DE", 2), ("FR", 2), ("IS", 0)]);
    }

    #[test]
    fn text_keys_raise_join_and_filter_through_relations() {
        let mut conn = text_keyed();
        let mut session = Session::new(&mut conn);
        let cities = City::query().order_by(city::slug).options(raise(City::country)).load(&mut session).unwrap();
        assert!(matches!(cities[0].load(City::country, &mut session), Err(Error::NotLoaded { .. })));
        // A join through the relation filters in SQL and loads the country from the same rows.
        let french = City::query()
            .join(City::country)
            .filter(country::name.eq("France"))
            .order_by(city::slug)
            .options(contains_eager(City::country))
            .load(&mut session)
            .unwrap();
        let slugs: Vec<&str> = french.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(slugs, ["lyon", "paris"]);
        assert!(french.iter().all(|c| c.country.get().unwrap().code == "FR"));
        // EXISTS through the link table.
        let capitals = City::query()
            .filter(City::tags.any(tag::name.eq("capital")))
            .order_by(city::slug)
            .load(&mut session)
            .unwrap();
        let slugs: Vec<&str> = capitals.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(slugs, ["berlin", "paris"]);
        let with_cities = Country::query().filter(Country::cities.any(city::name.like("%i%"))).order_by(country::code).load(&mut session).unwrap();
        let codes: Vec<&str> = with_cities.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["DE", "FR"]);
    }

    #[test]
    fn a_text_keyed_tree_joins_to_its_depth_and_selects_its_children() {
        let mut conn = text_keyed();
        let mut session = Session::new(&mut conn);
        let sf = Category::query().filter(category::slug.eq("sf")).load(&mut session).unwrap();
        assert_eq!(session.statements(), 1, "the parent two levels up is joined");
        let novels = sf[0].parent.get().unwrap().unwrap();
        let books = novels.parent.get().unwrap().unwrap();
        assert_eq!((novels.slug.as_str(), books.slug.as_str()), ("novels", "books"));
        assert!(books.parent.get().is_none(), "join_depth = 2 stops there");
        let root = Category::query()
            .filter(category::slug.eq("root"))
            .options(selectin(Category::children).then(selectin(Category::children)))
            .load(&mut session)
            .unwrap();
        let children: Vec<&str> = root[0].children.get().unwrap().iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(children, ["books", "music"]);
        let grandchildren: Vec<&str> =
            root[0].children.get().unwrap()[0].children.get().unwrap().iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(grandchildren, ["novels"]);
    }

    #[test]
    fn a_dangling_text_key_of_a_required_relation_is_an_error_naming_it() {
        let mut conn = text_keyed();
        // On SQLite the integer is stored as the text '12' (the column's TEXT affinity).
        without_foreign_keys(&mut conn, "INSERT INTO city VALUES ('twelve', 'Twelve', 12)");
        let mut session = Session::new(&mut conn);
        for options in [Options::new().with(selectin(City::country)), Options::new().with(joined(City::country))] {
            let error = City::query()
                .filter(city::slug.eq("twelve"))
                .options(options)
                .load(&mut session)
                .unwrap_err();
            assert!(matches!(error, Error::Dangling { .. }), "{error:?}");
            assert_eq!(
                error.to_string(),
                "relation `City.country` is not optional but no `Country` row matches key \"12\""
            );
        }
    }

    #[test]
    fn small_integer_keys_load_with_every_strategy() {
        let mut conn = text_keyed();
        let mut session = Session::new(&mut conn);
        let top = session.get::<Floor>(32000).unwrap().expect("floor 32000");
        assert_eq!(top.load(Floor::below, &mut session).unwrap().map(|f| f.id), Some(1));
        for options in [
            Options::new().with(joined(Floor::below)).with(joined(Floor::above)),
            Options::new().with(selectin(Floor::below)).with(selectin(Floor::above)),
        ] {
            session.clear_identity_map();
            let floors = Floor::query().order_by(floor::id).options(options).load(&mut session).unwrap();
            let below: Vec<Option<i16>> = floors.iter().map(|f| f.below.get().unwrap().map(|b| b.id)).collect();
            assert_eq!(below, [None, Some(-2), Some(-1), Some(0), Some(1)]);
            let above: Vec<Vec<i16>> = floors
                .iter()
                .map(|f| f.above.get().unwrap().iter().map(|a| a.id).collect())
                .collect();
            assert_eq!(above, [vec![-1], vec![0], vec![1], vec![32000], vec![]]);
        }
    }
    #[test]
    fn with_text_keys_every_strategy_builds_the_lazy_graph() {
        use proptest::prelude::*;
        use equivalence::*;
        let config = ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(32),
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(data in data(), picks in (pick(), pick(), pick()))| {
            let mut conn = empty();
            conn.batch_execute(SCHEMA.split("INSERT").next().unwrap()).unwrap();
            insert(&mut conn, &data);
            let lazy = graph(&mut Session::new(&mut conn), None);
            let eager = graph(&mut Session::new(&mut conn), Some(picks));
            prop_assert_eq!(&lazy, &eager, "options {:?}", picks);
            let cities: usize = lazy.iter().map(|(_, c)| c.len()).sum();
            prop_assert_eq!(cities, data.cities.len());
        });
    }
}

/// SQLite keeps any value in any column: a key that does not fit its field is an error naming
/// the value, never a key that silently matches another row.
mod sqlite_storage {
    use super::*;
    use orm_tests::sqlite::*;

    #[test]
    fn a_small_integer_key_out_of_range_is_an_error() {
        let mut conn = empty();
        conn.batch_execute(SCHEMA).unwrap();
        without_foreign_keys(&mut conn, "INSERT INTO floor VALUES (40000, 1)");
        let mut session = Session::new(&mut conn);
        let error = Floor::query().load(&mut session).unwrap_err();
        assert!(error.to_string().contains("40000 does not fit in a 16-bit integer"), "{error}");
    }
}

/// The strategy never changes the graph with text keys either: random countries, cities and
/// tags (keys with quotes, accents, a prefix of another key, and case variants), loaded from
/// the countries with a random strategy on each relation at each level, give exactly the graph
/// lazy loading gives.
mod equivalence {
    use super::*;
    use orm_core::RelationOf;
    use proptest::prelude::*;

    /// Keys that stress text comparison: a prefix of another, case variants, a quote, accents.
    const NAMES: &[&str] = &["a", "ab", "A", "l'été", "ÆØÅ", "a b", "x", "zz"];

    #[derive(Debug, Clone)]
    pub struct Data {
        pub countries: Vec<usize>,
        /// Per city: its country (an index into `countries`) and its tags (indices into NAMES).
        pub cities: Vec<(usize, Vec<usize>)>,
    }

    pub fn data() -> impl Strategy<Value = Data> {
        (proptest::sample::subsequence((0..NAMES.len()).collect::<Vec<_>>(), 1..5))
            .prop_flat_map(|countries| {
                let n = countries.len();
                let city = (0..n, proptest::collection::btree_set(0..NAMES.len(), 0..3));
                let cities = proptest::collection::vec(city, 0..10);
                (Just(countries), cities)
            })
            .prop_map(|(countries, cities)| Data {
                countries,
                cities: cities.into_iter().map(|(c, t)| (c, t.into_iter().collect())).collect(),
            })
    }

    /// SQL inserting `data`, every value as a bound parameter would quote it.
    pub fn insert(conn: &mut impl SimpleConnection, data: &Data) {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let mut sql = String::new();
        for &c in &data.countries {
            sql += &format!("INSERT INTO country VALUES ({}, 'n');\n", quote(NAMES[c]));
        }
        for name in NAMES {
            sql += &format!("INSERT INTO tag VALUES ({});\n", quote(name));
        }
        for (i, (country, tags)) in data.cities.iter().enumerate() {
            let slug = format!("{}-{i}", NAMES[data.countries[*country]]);
            let code = NAMES[data.countries[*country]];
            sql += &format!("INSERT INTO city VALUES ({}, 'c', {});\n", quote(&slug), quote(code));
            for &t in tags {
                sql += &format!(
                    "INSERT INTO city_tag VALUES ({}, {});\n",
                    quote(&slug),
                    quote(NAMES[t])
                );
            }
        }
        conn.batch_execute(&sql).unwrap();
    }

    #[derive(Debug, Clone, Copy)]
    pub enum Pick {
        Lazy,
        Joined,
        Selectin,
    }

    pub fn pick() -> impl Strategy<Value = Pick> {
        prop_oneof![Just(Pick::Lazy), Just(Pick::Joined), Just(Pick::Selectin)]
    }

    fn with<P: Model, R, T: Model>(
        options: Options<P>,
        rel: R,
        pick: Pick,
        below: Options<T>,
    ) -> Options<P>
    where
        R: Relation<Target = T> + RelationOf<P>,
    {
        match pick {
            Pick::Lazy => options.with(lazy(rel).then(below)),
            Pick::Joined => options.with(joined(rel).then(below)),
            Pick::Selectin => options.with(selectin(rel).then(below)),
        }
    }

    /// The graph as plain data: per country its code and, per city, its slug, its country's code
    /// read back through the city, and its tags; every relation read with `load` (no SQL when
    /// an option loaded it).
    pub type Graph = Vec<(String, Vec<(String, String, Vec<String>)>)>;

    pub fn graph<C: orm_core::SessionConnection>(
        session: &mut Session<'_, C>,
        options: Option<(Pick, Pick, Pick)>,
    ) -> Graph {
        let options = match options {
            None => Options::new(),
            Some((cities, country, tags)) => {
                let below = with(Options::new(), City::country, country, Options::new());
                let below = with(below, City::tags, tags, Options::new());
                with(Options::new(), Country::cities, cities, below)
            }
        };
        let countries = Country::query().options(options).load(session).unwrap();
        let mut graph: Graph = countries
            .iter()
            .map(|c| {
                let cities = c.load(Country::cities, session).unwrap();
                let cities = cities
                    .iter()
                    .map(|city| {
                        let back = city.load(City::country, session).unwrap().code.clone();
                        let tags = city
                            .load(City::tags, session)
                            .unwrap()
                            .iter()
                            .map(|t| t.name.clone())
                            .collect();
                        (city.slug.clone(), back, tags)
                    })
                    .collect();
                (c.code.clone(), cities)
            })
            .collect();
        // Collections come in key order; the roots in the database's order.
        graph.sort();
        graph
    }
}
