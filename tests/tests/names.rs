//! SQL names come from diesel's `table!`: a PascalCase schema declared through `sql_name` (as
//! diesel requires for the Chinook sample database), a renamed table and column, and on
//! PostgreSQL a table in a schema of its own. Every strategy, joins, EXISTS filters and `get`
//! read the tables diesel reads, and build the graph plain diesel builds.
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;

diesel::table! {
    #[sql_name = "Artist"]
    artist (artist_id) {
        #[sql_name = "ArtistId"]
        artist_id -> Integer,
        #[sql_name = "Name"]
        name -> Text,
    }
}

diesel::table! {
    #[sql_name = "Album"]
    album (album_id) {
        #[sql_name = "AlbumId"]
        album_id -> Integer,
        #[sql_name = "Title"]
        title -> Text,
        #[sql_name = "ArtistId"]
        artist_id -> Integer,
    }
}

diesel::table! {
    #[sql_name = "Genre"]
    genre (genre_id) {
        #[sql_name = "GenreId"]
        genre_id -> Integer,
        #[sql_name = "Name"]
        name -> Text,
    }
}

diesel::table! {
    #[sql_name = "AlbumGenre"]
    album_genre (album_id, genre_id) {
        #[sql_name = "AlbumId"]
        album_id -> Integer,
        #[sql_name = "GenreId"]
        genre_id -> Integer,
    }
}

diesel::joinable!(album -> artist (artist_id));
diesel::allow_tables_to_appear_in_same_query!(artist, album, genre, album_genre);

#[derive(Model, Debug)]
#[orm(table = artist, primary_key = artist_id)]
pub struct Artist {
    pub artist_id: i32,
    pub name: String,
    #[relation(has_many = Album, foreign_key = artist_id)]
    pub albums: Rel<Vec<Album>>,
}

#[derive(Model, Debug)]
#[orm(table = album, primary_key = album_id)]
pub struct Album {
    pub album_id: i32,
    pub title: String,
    pub artist_id: i32,
    #[relation(belongs_to = Artist, foreign_key = artist_id)]
    pub artist: Rel<Artist>,
    #[relation(many_to_many = Genre, through = album_genre, foreign_key = album_id, target_key = genre_id)]
    pub genres: Rel<Vec<Genre>>,
}

#[derive(Model, Debug)]
#[orm(table = genre, primary_key = genre_id)]
pub struct Genre {
    pub genre_id: i32,
    pub name: String,
}

/// The schema, quoted as both backends accept, and a few rows.
const CREATE: &str = r#"
    CREATE TABLE "Artist" ("ArtistId" INTEGER PRIMARY KEY NOT NULL, "Name" TEXT NOT NULL);
    CREATE TABLE "Album" ("AlbumId" INTEGER PRIMARY KEY NOT NULL, "Title" TEXT NOT NULL,
                          "ArtistId" INTEGER NOT NULL REFERENCES "Artist" ("ArtistId"));
    CREATE TABLE "Genre" ("GenreId" INTEGER PRIMARY KEY NOT NULL, "Name" TEXT NOT NULL);
    CREATE TABLE "AlbumGenre" ("AlbumId" INTEGER NOT NULL, "GenreId" INTEGER NOT NULL,
                               PRIMARY KEY ("AlbumId", "GenreId"));
    INSERT INTO "Artist" VALUES (1, 'AC/DC'), (2, 'Accept'), (3, 'Aerosmith');
    INSERT INTO "Album" VALUES (1, 'For Those About To Rock', 1), (2, 'Balls to the Wall', 2),
                               (3, 'Restless and Wild', 2), (4, 'Let There Be Rock', 1);
    INSERT INTO "Genre" VALUES (1, 'Rock'), (2, 'Metal');
    INSERT INTO "AlbumGenre" VALUES (1, 1), (2, 1), (2, 2), (3, 2), (4, 1);
"#;

orm_tests::backend_tests! {
    #[test]
    fn a_sql_name_schema_loads_under_every_strategy() {
        let mut conn = empty();
        conn.batch_execute(CREATE).unwrap();
        // What plain diesel reads.
        let expected: Vec<(String, Vec<String>)> = artist::table
            .order_by(artist::artist_id)
            .load::<(i32, String)>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|(id, name)| {
                let titles = album::table
                    .filter(album::artist_id.eq(id))
                    .order_by(album::album_id)
                    .select(album::title)
                    .load::<String>(&mut conn)
                    .unwrap();
                (name, titles)
            })
            .collect();
        assert_eq!(expected[0], ("AC/DC".to_owned(), vec!["For Those About To Rock".to_owned(), "Let There Be Rock".to_owned()]));
        let mut session = Session::new(&mut conn);
        let read = |artists: &[Loaded<Artist, _>]| -> Vec<(String, Vec<String>)> {
            artists
                .iter()
                .map(|a| (a.name.clone(), a.albums.get().unwrap().iter().map(|b| b.title.clone()).collect()))
                .collect()
        };
        let by_selectin = Artist::query().order_by(artist::artist_id).options(selectin(Artist::albums)).load(&mut session).unwrap();
        assert_eq!(read(&by_selectin), expected);
        drop(by_selectin);
        session.clear_identity_map();
        let by_join = Artist::query().order_by(artist::artist_id).options(joined(Artist::albums)).load(&mut session).unwrap();
        assert_eq!(read(&by_join), expected);
        drop(by_join);
        session.clear_identity_map();
        let lazy = Artist::query().order_by(artist::artist_id).load(&mut session).unwrap();
        for (a, (name, titles)) in lazy.iter().zip(&expected) {
            let albums = a.load(Artist::albums, &mut session).unwrap();
            assert_eq!((&a.name, albums.iter().map(|b| &b.title).collect::<Vec<_>>()), (name, titles.iter().collect()));
        }
        drop(lazy);

        // belongs_to and many_to_many, joined and selectin.
        session.clear_identity_map();
        let albums = Album::query()
            .order_by(album::album_id)
            .options((joined(Album::artist), selectin(Album::genres)))
            .load(&mut session)
            .unwrap();
        let genres: Vec<Vec<&str>> = albums.iter().map(|a| a.genres.get().unwrap().iter().map(|g| g.name.as_str()).collect()).collect();
        assert_eq!(genres, [vec!["Rock"], vec!["Rock", "Metal"], vec!["Metal"], vec!["Rock"]]);
        assert_eq!(albums[1].artist.get().unwrap().name, "Accept");
        drop(albums);
        session.clear_identity_map();
        let albums = Album::query().order_by(album::album_id).options(joined(Album::genres)).load(&mut session).unwrap();
        assert_eq!(albums[1].genres.get().unwrap().len(), 2);

        // An explicit join filtered with diesel's DSL, an EXISTS filter, and `get`.
        let accept = Album::query()
            .join(Album::artist)
            .filter(artist::name.eq("Accept"))
            .order_by(album::album_id)
            .options(contains_eager(Album::artist))
            .load(&mut session)
            .unwrap();
        assert_eq!(accept.iter().map(|a| a.album_id).collect::<Vec<_>>(), [2, 3]);
        let rockers = Artist::query()
            .filter(Artist::albums.any(album::title.like("%Rock%")))
            .load(&mut session)
            .unwrap();
        assert_eq!(rockers.iter().map(|a| a.artist_id).collect::<Vec<_>>(), [1]);
        let metal = Genre::query().filter(genre::name.eq("Metal")).load(&mut session).unwrap();
        assert_eq!(metal.len(), 1);
        assert_eq!(session.get::<Artist>(3).unwrap().unwrap().name, "Aerosmith");
    }
}

/// PostgreSQL: tables in a schema of their own (`table! { orm_media.record .. }`), with tables
/// of the same names and other rows on the connection's search path: the ORM reads the
/// schema's, as diesel does.
#[cfg(feature = "postgres")]
mod schema {
    use super::*;
    use orm_tests::pg::*;

    diesel::table! {
        orm_media.record (id) {
            id -> Integer,
            title -> Text,
        }
    }

    diesel::table! {
        orm_media.track (id) {
            id -> Integer,
            name -> Text,
            record_id -> Integer,
        }
    }

    diesel::joinable!(track -> record (record_id));
    diesel::allow_tables_to_appear_in_same_query!(record, track);

    #[derive(Model, Debug)]
    #[orm(table = record)]
    pub struct Record {
        pub id: i32,
        pub title: String,
        #[relation(has_many = Track)]
        pub tracks: Rel<Vec<Track>>,
    }

    #[derive(Model, Debug)]
    #[orm(table = track)]
    pub struct Track {
        pub id: i32,
        pub name: String,
        pub record_id: i32,
        #[relation(belongs_to = Record)]
        pub record: Rel<Record>,
    }

    #[test]
    fn tables_in_a_schema_are_read_there() {
        let mut conn = empty();
        conn.batch_execute(
            "DROP SCHEMA IF EXISTS orm_media CASCADE; CREATE SCHEMA orm_media;
             CREATE TABLE orm_media.record (id INTEGER PRIMARY KEY, title TEXT NOT NULL);
             CREATE TABLE orm_media.track (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                           record_id INTEGER NOT NULL REFERENCES orm_media.record);
             INSERT INTO orm_media.record VALUES (1, 'Kind of Blue'), (2, 'Blue Train');
             INSERT INTO orm_media.track VALUES (1, 'So What', 1), (2, 'Freddie Freeloader', 1),
                                                (3, 'Moment''s Notice', 2);
             CREATE TABLE record (id INTEGER PRIMARY KEY, title TEXT NOT NULL);
             CREATE TABLE track (id INTEGER PRIMARY KEY, name TEXT NOT NULL, record_id INTEGER NOT NULL);
             INSERT INTO record VALUES (1, 'decoy'), (9, 'decoy');
             INSERT INTO track VALUES (1, 'decoy', 9);",
        )
        .unwrap();
        let mut session = Session::new(&mut conn);
        let titles = |records: &[Loaded<Record, _>]| -> Vec<(String, usize)> {
            records.iter().map(|r| (r.title.clone(), r.tracks.get().unwrap().len())).collect()
        };
        let expected = vec![("Kind of Blue".to_owned(), 2), ("Blue Train".to_owned(), 1)];
        let by_selectin = Record::query()
            .order_by(record::id)
            .options(selectin(Record::tracks))
            .load(&mut session)
            .unwrap();
        assert_eq!(titles(&by_selectin), expected);
        drop(by_selectin);
        session.clear_identity_map();
        let by_join = Record::query()
            .order_by(record::id)
            .options(joined(Record::tracks))
            .load(&mut session)
            .unwrap();
        assert_eq!(titles(&by_join), expected);
        drop(by_join);
        session.clear_identity_map();
        let tracks = Track::query()
            .join(Track::record)
            .filter(record::title.eq("Blue Train"))
            .options(contains_eager(Track::record))
            .load(&mut session)
            .unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].record.get().unwrap().title, "Blue Train");
        let with_so_what = Record::query()
            .filter(Record::tracks.any(track::name.eq("So What")))
            .load(&mut session)
            .unwrap();
        assert_eq!(with_so_what.iter().map(|r| r.id).collect::<Vec<_>>(), [1]);
        drop(tracks);
        session.clear_identity_map();
        let first = Track::query().filter(track::id.eq(1)).load(&mut session).unwrap();
        assert_eq!(first[0].load(Track::record, &mut session).unwrap().title, "Kind of Blue");
        // diesel agrees.
        let names: Vec<String> = track::table
            .order_by(track::id)
            .select(track::name)
            .load(session.connection())
            .unwrap();
        assert_eq!(names, ["So What", "Freddie Freeloader", "Moment's Notice"]);
    }
}
