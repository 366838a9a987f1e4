//! `count(..)`: each object's number of related rows in one `GROUP BY` statement per relation,
//! read without SQL; and the lazy count, which the N+1 detector and the strict modes see. On
//! every backend, against the counts hand-written diesel reads.

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::{Error, Report};
use orm_tests::blog::{comment, post, post_rel, post_tag, seed, tag, Comment, Post, Tag};

/// A function that reads a count the type guarantees.
fn comments_of<I>(p: &Loaded<Post, impl HasCount<post_rel::comments, I>>) -> u64 {
    p.get_count(Post::comments)
}

orm_tests::backend_tests! {
    const POSTS: i32 = 12;

    fn blog(posts: i32) -> Conn {
        let mut conn = empty();
        seed(&mut conn, posts);
        conn
    }

    /// Each post's number of comments that `approved` keeps (`None`: all), hand-written.
    fn comment_counts(conn: &mut Conn, approved: Option<bool>) -> BTreeMap<i32, u64> {
        let mut counts: BTreeMap<i32, u64> =
            post::table.select(post::id).load::<i32>(conn).unwrap().into_iter().map(|p| (p, 0)).collect();
        let rows: Vec<(i32, bool)> =
            comment::table.select((comment::post_id, comment::approved)).load(conn).unwrap();
        for (post, ok) in rows {
            if approved.is_none_or(|a| a == ok) {
                *counts.get_mut(&post).unwrap() += 1;
            }
        }
        counts
    }

    /// Each post's number of tags, hand-written.
    fn tag_counts(conn: &mut Conn) -> BTreeMap<i32, u64> {
        let mut counts: BTreeMap<i32, u64> =
            post::table.select(post::id).load::<i32>(conn).unwrap().into_iter().map(|p| (p, 0)).collect();
        for post in post_tag::table.select(post_tag::post_id).load::<i32>(conn).unwrap() {
            *counts.get_mut(&post).unwrap() += 1;
        }
        counts
    }

    #[test]
    fn a_count_is_one_statement_and_read_without_sql() {
        let mut conn = blog(POSTS);
        let want = comment_counts(&mut conn, None);
        let mut session = Session::new(&mut conn);
        let posts = Post::query().options(count(Post::comments)).load(&mut session).unwrap();
        assert_eq!(session.statements(), 2, "{:#?}", session.queries());
        assert!(session.queries()[1].contains("GROUP BY"), "{:#?}", session.queries());
        let got: BTreeMap<i32, u64> =
            posts.iter().map(|p| (p.id, p.counted(Post::comments).expect("counted"))).collect();
        assert_eq!(got, want);
        assert!(got.values().any(|c| *c == 0), "a post without comments counts 0");
        for p in &posts {
            assert_eq!(p.count(Post::comments, &mut session).unwrap(), want[&p.id]);
            assert!(p.comments.get().is_none(), "counting loads no comment");
            assert_eq!(p.counted(Post::all_comments), None, "only the counted relation");
        }
        assert_eq!(session.statements(), 2);
    }

    #[test]
    fn the_statement_count_stays_flat_as_the_rows_grow() {
        for posts in [10, 300] {
            let mut conn = blog(posts);
            let want = comment_counts(&mut conn, Some(true));
            let mut session = Session::new(&mut conn);
            let loaded = Post::query()
                .options((
                    count(Post::comments).filter(comment::approved.eq(true)),
                    count(Post::tags),
                    selectin(Post::all_comments),
                ))
                .load(&mut session)
                .unwrap();
            assert_eq!(session.statements(), 4, "{posts} posts");
            for p in &loaded {
                assert_eq!(p.counted(Post::comments), Some(want[&p.id]));
                let comments = p.all_comments.get().unwrap();
                assert_eq!(p.counted(Post::comments).unwrap() as usize, comments.iter().filter(|c| c.approved).count());
            }
        }
    }

    #[test]
    fn many_to_many_counts_through_the_association_table() {
        let mut conn = blog(POSTS);
        let want = tag_counts(&mut conn);
        let mut session = Session::new(&mut conn);
        let posts = Post::query().options(count(Post::tags)).load(&mut session).unwrap();
        let got: BTreeMap<i32, u64> = posts.iter().map(|p| (p.id, p.counted(Post::tags).unwrap())).collect();
        assert_eq!(got, want);
        // The other side, filtered on the target's table.
        let tags = Tag::query()
            .order_by(tag::id)
            .options(count(Tag::posts).filter(post::id.gt(6)))
            .load(&mut session)
            .unwrap();
        for t in &tags {
            let expected = want
                .keys()
                .filter(|p| **p > 6)
                .filter(|p| (**p as usize + t.id as usize) % 3 != 0 && **p != 2)
                .count() as u64;
            assert_eq!(t.counted(Tag::posts), Some(expected), "tag {}", t.name);
        }
    }

    #[test]
    fn counts_nest_under_joined_and_selectin_levels() {
        let mut conn = blog(POSTS);
        let comments_of = comment_counts(&mut conn, None);
        let tags_of = tag_counts(&mut conn);
        let mut session = Session::new(&mut conn);
        let comments = Comment::query()
            .options(joined(Comment::post).then(count(Post::tags)))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 2);
        for c in &comments {
            let post = c.post.get().expect("joined");
            assert_eq!(post.counted(Post::tags), Some(tags_of[&post.id]));
        }
        drop(session);
        let mut session = Session::new(&mut conn);
        let tags = Tag::query()
            .options(selectin(Tag::posts).then(count(Post::comments)))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 3, "{:#?}", session.queries());
        for t in &tags {
            for p in t.posts.get().unwrap() {
                assert_eq!(p.counted(Post::comments), Some(comments_of[&p.id]));
            }
        }
    }

    #[test]
    fn a_lazy_count_is_one_statement_per_object_and_an_n_plus_one() {
        let mut conn = blog(POSTS);
        let want = comment_counts(&mut conn, None);
        let mut session = Session::new(&mut conn);
        session.detect_n_plus_one(true);
        let posts = Post::query().order_by(post::id).load(&mut session).unwrap();
        for p in &posts {
            assert_eq!(p.counted(Post::comments), None);
            assert_eq!(p.count(Post::comments, &mut session).unwrap(), want[&p.id]);
            // Kept: the second read runs nothing.
            assert_eq!(p.count(Post::comments, &mut session).unwrap(), want[&p.id]);
        }
        assert_eq!(session.statements(), 1 + POSTS as usize);
        let reports = session.reports();
        let fix = reports.iter().find_map(|r| match r {
            Report::NPlusOne { relation: "comments", count, fix, .. } => Some((*count, fix.clone())),
            _ => None,
        });
        assert_eq!(fix, Some((POSTS as usize, "count(Post::comments)".to_owned())), "{reports:#?}");
    }

    #[test]
    fn strict_sessions_refuse_a_lazy_count() {
        let mut conn = blog(POSTS);
        let mut session = Session::new(&mut conn).strict();
        let posts = Post::query().load(&mut session).unwrap();
        assert!(matches!(
            posts[0].count(Post::comments, &mut session),
            Err(Error::StrictLazyLoad { relation: "comments", .. })
        ));
        // Counted by the query: read in a strict session too.
        let posts = Post::query().options(count(Post::comments)).load(&mut session).unwrap();
        assert!(posts[0].count(Post::comments, &mut session).is_ok());
        drop(session);
        let mut session = Session::new(&mut conn).n_plus_one_only();
        let posts = Post::query().load(&mut session).unwrap();
        assert!(posts[0].count(Post::comments, &mut session).is_ok());
        assert!(matches!(
            posts[1].count(Post::comments, &mut session),
            Err(Error::NPlusOne { relation: "comments", .. })
        ));
    }

    #[test]
    fn the_typed_state_records_counts_beside_loaded_relations() {
        let mut conn = blog(POSTS);
        let comments = comment_counts(&mut conn, None);
        let tags = tag_counts(&mut conn);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::id)
            .options((count(Post::comments), selectin(Post::tags), count(Post::tags)))
            .load(&mut session)
            .unwrap();
        for p in &posts {
            assert_eq!(comments_of(p), comments[&p.id]);
            assert_eq!(p.get_count(Post::tags), tags[&p.id]);
            // Still typed as loading the tags, after a count and before another.
            assert_eq!(p.get(Post::tags).len() as u64, tags[&p.id]);
        }
        // Below a relation.
        let all = Tag::query()
            .options(selectin(Tag::posts).then(count(Post::comments)))
            .load(&mut session)
            .unwrap();
        for t in &all {
            for p in t.get(Tag::posts) {
                assert_eq!(comments_of(p), comments[&p.id]);
            }
        }
    }

    #[test]
    fn counts_and_windows_chunk_under_the_bind_limit() {
        // 70,000 posts, every tenth with comments: three chunks of keys on SQLite (one
        // statement each), one array on PostgreSQL.
        let mut conn = empty();
        conn.batch_execute(orm_tests::blog::SCHEMA).unwrap();
        conn.batch_execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 70000)
             INSERT INTO post SELECT x, 'post' FROM n;
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 35000)
             INSERT INTO comment SELECT x, ((x - 1) / 5) * 10 + 1, 'c', x % 7, x % 3, TRUE FROM n;",
        )
        .ok()
        .or_else(|| {
            // PostgreSQL: the same rows through generate_series.
            conn.batch_execute(
                "INSERT INTO post SELECT x, 'post' FROM generate_series(1, 70000) AS x;
                 INSERT INTO comment SELECT x, ((x - 1) / 5) * 10 + 1, 'c', x % 7, x % 3, TRUE
                 FROM generate_series(1, 35000) AS x;",
            )
            .ok()
        })
        .expect("rows");
        conn.batch_execute("CREATE INDEX comment_latest ON comment (post_id, created_at DESC, id)")
            .unwrap();
        let chunks = 70_000usize
            .div_ceil(<<Conn as Connection>::Backend as orm_core::OrmBackend>::MAX_KEYS_PER_STATEMENT);
        for per_parent in [false, true] {
            let mut session = Session::new(&mut conn);
            let latest = selectin(Post::comments).limit(2);
            let options = Options::new().with(count(Post::comments));
            let options = match per_parent {
                false => options.with(latest),
                true => options.with(latest.per_parent()),
            };
            let posts = Post::query().order_by(post::id).options(options).load(&mut session).unwrap();
            assert_eq!(session.statements(), 1 + 2 * chunks, "{chunks} chunks");
            check_chunked(&posts);
        }
    }

    fn check_chunked<S>(posts: &[Loaded<Post, S>]) {
        assert_eq!(posts.len(), 70_000);
        for p in posts {
            let latest = p.comments.get().expect("loaded");
            let count = p.counted(Post::comments).expect("counted");
            if p.id % 10 == 1 {
                assert_eq!((count, latest.len()), (5, 2), "post {}", p.id);
                assert!(latest[0].created_at >= latest[1].created_at);
            } else {
                assert_eq!((count, latest.len()), (0, 0), "post {}", p.id);
            }
        }
    }
}
