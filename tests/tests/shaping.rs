//! Shaping what a relation loads: a declared `order_by`, a query's `.order_by(..)` and
//! `.filter(..)` on `joined` and `selectin`, through every strategy, on every backend. Each
//! graph is checked against the rows hand-written diesel reads.
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use std::collections::BTreeMap;

use diesel::prelude::*;
use orm_core::prelude::*;

use orm_tests::blog::{comment, post, post_tag, seed, tag, Comment, Post, Tag};

orm_tests::backend_tests! {
    const POSTS: i32 = 12;

    fn blog() -> Conn {
        let mut conn = empty();
        seed(&mut conn, POSTS);
        conn
    }

    /// Each post's comments, as `(id, post_id, created_at, score, approved)` rows, hand-written.
    fn comment_rows(conn: &mut Conn) -> Vec<(i32, i32, i32, i32, bool)> {
        comment::table
            .select((comment::id, comment::post_id, comment::created_at, comment::score, comment::approved))
            .load(conn)
            .unwrap()
    }

    /// The ids of each post's comments that `keep` keeps, sorted by `key` then id.
    fn expected<K: Ord>(
        conn: &mut Conn,
        key: impl Fn(&(i32, i32, i32, i32, bool)) -> K,
        keep: impl Fn(&(i32, i32, i32, i32, bool)) -> bool,
    ) -> BTreeMap<i32, Vec<i32>> {
        let mut rows = comment_rows(conn);
        rows.sort_by(|a, b| key(a).cmp(&key(b)).then(a.0.cmp(&b.0)));
        let mut out: BTreeMap<i32, Vec<i32>> = (1..=POSTS).map(|p| (p, Vec::new())).collect();
        for row in rows.iter().filter(|r| keep(r)) {
            out.get_mut(&row.1).unwrap().push(row.0);
        }
        out
    }

    /// Each post's tag names that `keep` keeps, by name (hand-written).
    fn expected_tags(conn: &mut Conn, keep: impl Fn(&str) -> bool) -> BTreeMap<i32, Vec<String>> {
        let mut rows: Vec<(i32, String)> = post_tag::table
            .inner_join(tag::table.on(tag::id.eq(post_tag::tag_id)))
            .select((post_tag::post_id, tag::name))
            .load(conn)
            .unwrap();
        rows.sort();
        let mut out: BTreeMap<i32, Vec<String>> = (1..=POSTS).map(|p| (p, Vec::new())).collect();
        for (post, name) in rows.into_iter().filter(|(_, n)| keep(n)) {
            out.get_mut(&post).unwrap().push(name);
        }
        out
    }

    fn ids<S>(posts: &[Loaded<Post, S>], read: impl Fn(&Post) -> Vec<i32>) -> BTreeMap<i32, Vec<i32>> {
        posts.iter().map(|p| (p.id, read(p))).collect()
    }

    fn comment_ids(rel: &Rel<Vec<Comment>>) -> Vec<i32> {
        rel.get().expect("loaded").iter().map(|c| c.id).collect()
    }

    fn tag_names(p: &Post) -> Vec<String> {
        p.tags.get().expect("loaded").iter().map(|t| t.name.clone()).collect()
    }

    /// Newest first: `created_at DESC`, then the key.
    fn newest(r: &(i32, i32, i32, i32, bool)) -> std::cmp::Reverse<i32> {
        std::cmp::Reverse(r.2)
    }

    #[test]
    fn a_declared_order_is_the_same_in_every_strategy() {
        let mut conn = blog();
        let want = expected(&mut conn, newest, |_| true);
        let mut session = Session::new(&mut conn);

        let posts = Post::query().options(joined(Post::comments)).load(&mut session).unwrap();
        assert_eq!(session.statements(), 1);
        assert_eq!(ids(&posts, |p| comment_ids(&p.comments)), want, "joined");

        drop(session);
        let mut session = Session::new(&mut conn);
        let posts = Post::query().options(selectin(Post::comments)).load(&mut session).unwrap();
        assert_eq!(session.statements(), 2);
        assert_eq!(ids(&posts, |p| comment_ids(&p.comments)), want, "selectin");

        drop(session);
        let mut session = Session::new(&mut conn);
        let posts = Post::query().load(&mut session).unwrap();
        let mut lazy = BTreeMap::new();
        for p in &posts {
            let comments = p.load(Post::comments, &mut session).unwrap();
            lazy.insert(p.id, comments.iter().map(|c| c.id).collect::<Vec<_>>());
        }
        assert_eq!(session.statements(), 1 + POSTS as usize);
        assert_eq!(lazy, want, "lazy");
    }

    #[test]
    fn a_relation_without_an_order_stays_in_key_order() {
        let mut conn = blog();
        let want = expected(&mut conn, |_| 0, |_| true);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .options((joined(Post::all_comments), joined(Post::comments)))
            .load(&mut session)
            .unwrap();
        assert_eq!(ids(&posts, |p| comment_ids(&p.all_comments)), want);
        let queries = session.queries();
        assert!(queries[0].contains("ORDER BY"), "the ordered relation orders the statement: {queries:?}");
    }

    #[test]
    fn a_query_order_replaces_the_declared_one_in_joined_and_selectin() {
        let mut conn = blog();
        // Best first, then oldest: two terms, with ties in both.
        let want = expected(&mut conn, |r| (std::cmp::Reverse(r.3), r.2), |_| true);
        let order = (comment::score.desc(), comment::created_at.asc());
        for joined_load in [true, false] {
            let mut session = Session::new(&mut conn);
            let posts = if joined_load {
                Post::query().options(joined(Post::comments).order_by(order)).load(&mut session)
            } else {
                Post::query().options(selectin(Post::comments).order_by(order)).load(&mut session)
            }
            .unwrap();
            assert_eq!(ids(&posts, |p| comment_ids(&p.comments)), want, "joined: {joined_load}");
            // A relation with no declared order takes the query's as well.
            drop(session);
            let mut session = Session::new(&mut conn);
            let posts = Post::query()
                .options(selectin(Post::all_comments).order_by(order))
                .load(&mut session)
                .unwrap();
            assert_eq!(ids(&posts, |p| comment_ids(&p.all_comments)), want);
        }
    }

    #[test]
    fn has_one_takes_the_first_row_in_its_order() {
        let mut conn = blog();
        let best = expected(&mut conn, |r| (std::cmp::Reverse(r.3), r.2), |_| true);
        let want: BTreeMap<i32, Option<i32>> =
            best.into_iter().map(|(post, ids)| (post, ids.first().copied())).collect();
        fn top<S>(posts: &[Loaded<Post, S>]) -> BTreeMap<i32, Option<i32>> {
            posts.iter().map(|p| (p.id, p.top_comment.get().expect("loaded").map(|c| c.id))).collect()
        }
        let mut session = Session::new(&mut conn);
        let posts = Post::query().options(Options::new().with(joined(Post::top_comment))).load(&mut session).unwrap();
        assert_eq!(top(&posts), want, "joined");
        drop(session);
        let mut session = Session::new(&mut conn);
        let posts =
            Post::query().options(Options::new().with(selectin(Post::top_comment))).load(&mut session).unwrap();
        assert_eq!(top(&posts), want, "selectin");
        drop(session);
        let mut session = Session::new(&mut conn);
        let posts = Post::query().load(&mut session).unwrap();
        for p in &posts {
            let lazy = p.load(Post::top_comment, &mut session).unwrap().map(|c| c.id);
            assert_eq!(lazy, want[&p.id], "lazy, post {}", p.id);
        }
    }

    #[test]
    fn many_to_many_orders_through_the_association_table() {
        let mut conn = blog();
        let want = expected_tags(&mut conn, |_| true);
        for joined_load in [true, false] {
            let mut session = Session::new(&mut conn);
            let posts = if joined_load {
                Post::query().options(joined(Post::tags)).load(&mut session)
            } else {
                Post::query().options(selectin(Post::tags)).load(&mut session)
            }
            .unwrap();
            let got: BTreeMap<i32, Vec<String>> = posts.iter().map(|p| (p.id, tag_names(p))).collect();
            assert_eq!(got, want, "joined: {joined_load}");
        }
        // The other side, declared newest post first, loaded lazily.
        let mut session = Session::new(&mut conn);
        let rust = Tag::query().filter(tag::name.eq("rust")).load(&mut session).unwrap();
        let posts: Vec<i32> = rust[0].load(Tag::posts, &mut session).unwrap().iter().map(|p| p.id).collect();
        let mut sorted = posts.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(posts, sorted);
        assert!(!posts.is_empty());
    }

    #[test]
    fn crossed_joined_collections_keep_both_orders() {
        let mut conn = blog();
        let comments = expected(&mut conn, newest, |_| true);
        let tags = expected_tags(&mut conn, |_| true);
        let key_order = expected(&mut conn, |_| 0, |_| true);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::title.desc())
            .options((joined(Post::comments), joined(Post::tags), joined(Post::all_comments)))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 1);
        assert_eq!(ids(&posts, |p| comment_ids(&p.comments)), comments);
        assert_eq!(ids(&posts, |p| comment_ids(&p.all_comments)), key_order);
        let got: BTreeMap<i32, Vec<String>> = posts.iter().map(|p| (p.id, tag_names(p))).collect();
        assert_eq!(got, tags);
        // The query's own order still orders the roots.
        let titles: Vec<&str> = posts.iter().map(|p| p.title.as_str()).collect();
        let mut sorted = titles.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(titles, sorted);
    }

    #[test]
    fn a_limited_query_keeps_its_page_and_each_relation_its_order() {
        let mut conn = blog();
        let want = expected(&mut conn, newest, |_| true);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::title)
            .limit(4)
            .offset(1)
            .options(joined(Post::comments))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 1);
        drop(session);
        let mut titles: Vec<(String, i32)> = post::table
            .select((post::title, post::id))
            .load(&mut conn)
            .unwrap();
        titles.sort();
        let page: Vec<i32> = titles[1..5].iter().map(|(_, id)| *id).collect();
        assert_eq!(posts.iter().map(|p| p.id).collect::<Vec<_>>(), page);
        for p in &posts {
            assert_eq!(comment_ids(&p.comments), want[&p.id], "post {}", p.id);
        }
    }

    #[test]
    fn a_filter_loads_the_matching_rows_and_keeps_every_parent() {
        let mut conn = blog();
        let want = expected(&mut conn, newest, |r| r.4);
        for joined_load in [true, false] {
            let mut session = Session::new(&mut conn);
            let approved = comment::approved.eq(true);
            let posts = if joined_load {
                Post::query().options(joined(Post::comments).filter(approved)).load(&mut session)
            } else {
                Post::query().options(selectin(Post::comments).filter(approved)).load(&mut session)
            }
            .unwrap();
            assert_eq!(session.statements(), if joined_load { 1 } else { 2 });
            assert_eq!(posts.len(), POSTS as usize, "parents without a match stay");
            assert_eq!(ids(&posts, |p| comment_ids(&p.comments)), want, "joined: {joined_load}");
        }
    }

    #[test]
    fn filters_and_orders_nest_under_then() {
        let mut conn = blog();
        let want = expected(&mut conn, |r| std::cmp::Reverse(r.3), |r| r.2 >= 5);
        let tags = expected_tags(&mut conn, |n| n != "rust");
        let mut session = Session::new(&mut conn);
        let rows = Comment::query()
            .order_by(comment::id)
            .options(joined(Comment::post).then((
                selectin(Post::all_comments)
                    .filter(comment::created_at.ge(5))
                    .order_by(comment::score.desc()),
                joined(Post::tags).filter(tag::name.ne("rust")),
            )))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 2, "{:#?}", session.queries());
        for c in &rows {
            let post = c.post.get().expect("joined");
            assert_eq!(comment_ids(&post.all_comments), want[&post.id], "post {}", post.id);
            assert_eq!(tag_names(post), tags[&post.id], "post {}", post.id);
        }
        // Values are bound, never written into the SQL.
        let queries = session.queries();
        assert!(queries.iter().any(|q| q.contains("rust")), "{queries:#?}");
        for q in &queries {
            let sql = q.split("-- binds").next().unwrap();
            assert!(!sql.contains("rust"), "a value in the SQL text: {q}");
        }
    }

    #[test]
    fn a_filtered_many_to_many_join_drops_the_links_it_filters_out() {
        let mut conn = blog();
        let want = expected_tags(&mut conn, |n| n.starts_with('z') || n.starts_with('m'));
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .options((
                joined(Post::tags).filter(tag::name.like("z%").or(tag::name.like("m%"))),
                joined(Post::comments),
            ))
            .load(&mut session)
            .unwrap();
        let got: BTreeMap<i32, Vec<String>> = posts.iter().map(|p| (p.id, tag_names(p))).collect();
        assert_eq!(got, want);
        assert_eq!(posts.len(), POSTS as usize);
    }

    #[test]
    fn a_filtered_self_reference_joins_under_its_own_name() {
        use orm_tests::{person, Person};
        let (mut conn, _) = seeded(60);
        let mut expected: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let rows: Vec<(i32, Option<i32>, String)> =
            person::table.select((person::id, person::manager_id, person::lastname)).load(&mut conn).unwrap();
        for (id, _, _) in &rows {
            expected.insert(*id, Vec::new());
        }
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        for (id, manager, lastname) in &sorted {
            if let Some(m) = manager {
                if lastname.as_str() > "M" {
                    expected.get_mut(m).unwrap().push(*id);
                }
            }
        }
        for joined_load in [true, false] {
            let mut session = Session::new(&mut conn);
            let people = if joined_load {
                Person::query()
                    .options(joined(Person::reports).filter(person::lastname.gt("M")).order_by(person::lastname.desc()))
                    .load(&mut session)
            } else {
                Person::query()
                    .options(selectin(Person::reports).filter(person::lastname.gt("M")).order_by(person::lastname.desc()))
                    .load(&mut session)
            }
            .unwrap();
            let got = reports_by_person(&people);
            assert_eq!(got, expected, "joined: {joined_load}");
        }
    }

    #[test]
    fn a_held_collection_keeps_what_it_loaded_until_populate_existing() {
        let mut conn = blog();
        let approved = expected(&mut conn, newest, |r| r.4);
        let all = expected(&mut conn, newest, |_| true);
        let mut session = Session::new(&mut conn);
        let filtered = Post::query()
            .options(selectin(Post::comments).filter(comment::approved.eq(true)))
            .load(&mut session)
            .unwrap();
        // The objects are held: a later load reuses their loaded collection.
        let again = Post::query().options(selectin(Post::comments)).load(&mut session).unwrap();
        assert_eq!(ids(&again, |p| comment_ids(&p.comments)), approved);
        let fresh = Post::query()
            .populate_existing()
            .options(selectin(Post::comments))
            .load(&mut session)
            .unwrap();
        assert_eq!(ids(&fresh, |p| comment_ids(&p.comments)), all);
        drop(filtered);
    }

    fn reports_by_person<S>(people: &[Loaded<orm_tests::Person, S>]) -> BTreeMap<i32, Vec<i32>> {
        people
            .iter()
            .map(|p| (p.id, p.reports.get().expect("loaded").iter().map(|r| r.id).collect()))
            .collect()
    }

    fn post_ids<S>(posts: &[Loaded<Post, S>]) -> Vec<i32> {
        posts.iter().map(|p| p.id).collect()
    }

    /// The posts with at least one comment `keep` keeps, in id order.
    fn posts_with(conn: &mut Conn, keep: impl Fn(&(i32, i32, i32, i32, bool)) -> bool) -> Vec<i32> {
        expected(conn, |_| 0, keep).into_iter().filter(|(_, c)| !c.is_empty()).map(|(p, _)| p).collect()
    }

    #[test]
    fn an_inner_join_drops_the_parents_without_a_related_row() {
        let mut conn = blog();
        let all = expected(&mut conn, newest, |_| true);
        let approved = expected(&mut conn, newest, |r| r.4);
        let commented = posts_with(&mut conn, |_| true);
        let with_approved = posts_with(&mut conn, |r| r.4);
        assert!(commented.len() < POSTS as usize && with_approved.len() < commented.len());
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::id)
            .options(joined(Post::comments).inner())
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 1);
        assert!(session.queries()[0].contains("INNER JOIN"), "{:?}", session.queries());
        assert_eq!(post_ids(&posts), commented);
        for p in &posts {
            assert_eq!(comment_ids(&p.comments), all[&p.id]);
        }
        // With a filter: the parents with a matching row (a new session: held objects keep the
        // collections they loaded).
        drop(session);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::id)
            .options(joined(Post::comments).filter(comment::approved.eq(true)).inner())
            .load(&mut session)
            .unwrap();
        assert_eq!(post_ids(&posts), with_approved);
        for p in &posts {
            assert_eq!(comment_ids(&p.comments), approved[&p.id]);
        }
    }

    #[test]
    fn a_declared_innerjoin_applies_when_joined_and_outer_overrides_it() {
        let mut conn = blog();
        let oldest = expected(&mut conn, |r| r.2, |_| true);
        let commented = posts_with(&mut conn, |_| true);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::id)
            .options(joined(Post::first_comment))
            .load(&mut session)
            .unwrap();
        assert_eq!(post_ids(&posts), commented);
        for p in &posts {
            let first = p.first_comment.get().expect("joined").map(|c| c.id);
            assert_eq!(first, oldest[&p.id].first().copied(), "post {}", p.id);
        }
        let posts = Post::query()
            .order_by(post::id)
            .options(joined(Post::first_comment).outer())
            .load(&mut session)
            .unwrap();
        assert_eq!(posts.len(), POSTS as usize);
        // selectin and lazy loads ignore it: they never drop a parent.
        let posts = Post::query().options(selectin(Post::first_comment)).load(&mut session).unwrap();
        assert_eq!(posts.len(), POSTS as usize);
    }

    #[test]
    fn an_inner_join_below_an_outer_one_stays_outer() {
        let mut conn = blog();
        let tags = expected_tags(&mut conn, |_| true);
        let mut session = Session::new(&mut conn);
        let all = Comment::query().load(&mut session).unwrap().len();
        drop(session);
        let rust_posts: Vec<i32> = expected_tags(&mut conn, |n| n == "rust")
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(p, _)| p)
            .collect();
        let mut session = Session::new(&mut conn);
        // Comment.post outer, its tags inner: no comment is dropped.
        let comments = Comment::query()
            .options(joined(Comment::post).outer().then(joined(Post::tags).inner()))
            .load(&mut session)
            .unwrap();
        assert_eq!(comments.len(), all);
        for c in &comments {
            let post = c.post.get().expect("joined");
            assert_eq!(tag_names(post), tags[&post.id]);
        }
        // Both inner: the comments whose post has a `rust` tag.
        drop(session);
        let mut session = Session::new(&mut conn);
        let comments = Comment::query()
            .order_by(comment::id)
            .options(joined(Comment::post).inner().then(
                joined(Post::tags).inner().filter(tag::name.eq("rust")),
            ))
            .load(&mut session)
            .unwrap();
        assert!(!comments.is_empty());
        for c in &comments {
            let post = c.post.get().expect("joined");
            assert!(rust_posts.contains(&post.id), "comment {} of post {}", c.id, post.id);
            assert_eq!(tag_names(post), ["rust"]);
        }
        let kept = comments.iter().filter(|c| rust_posts.contains(&c.post_id)).count();
        assert_eq!(kept, comments.len());
    }

    #[test]
    fn a_limited_query_pages_the_parents_its_inner_joins_keep() {
        let mut conn = blog();
        let unapproved = posts_with(&mut conn, |r| !r.4);
        let tagged_mid: Vec<i32> = expected_tags(&mut conn, |n| n == "mid")
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(p, _)| p)
            .collect();
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::id)
            .limit(3)
            .offset(1)
            .options(joined(Post::comments).filter(comment::approved.eq(false)).inner())
            .load(&mut session)
            .unwrap();
        assert_eq!(post_ids(&posts), unapproved[1..4]);
        for p in &posts {
            assert!(p.comments.get().unwrap().iter().all(|c| !c.approved));
        }
        // An inner many-to-many beside a to-one joined inner, paged.
        drop(session);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::id.desc())
            .limit(2)
            .options((
                joined(Post::tags).inner().filter(tag::name.eq("mid")),
                joined(Post::first_comment),
                joined(Post::all_comments),
            ))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 1);
        let mut want: Vec<i32> = tagged_mid.iter().rev().copied().collect();
        want.retain(|p| *p != 2);
        want.truncate(2);
        assert_eq!(post_ids(&posts), want, "{:#?}", session.queries());
    }

    /// `want`'s lists cut to the rows after `after`, at most `n` of them.
    fn window<T: Clone>(want: BTreeMap<i32, Vec<T>>, after: usize, n: usize) -> BTreeMap<i32, Vec<T>> {
        want.into_iter().map(|(k, v)| (k, v.into_iter().skip(after).take(n).collect())).collect()
    }

    #[test]
    fn a_limit_keeps_the_first_rows_of_each_parent_in_one_statement() {
        let mut conn = blog();
        let latest = window(expected(&mut conn, newest, |_| true), 0, 3);
        for (joined_load, per_parent) in [(true, false), (false, false), (true, true), (false, true)] {
            let mut session = Session::new(&mut conn);
            let posts = match (joined_load, per_parent) {
                (true, false) => Post::query().options(joined(Post::comments).limit(3)).load(&mut session),
                (false, false) => Post::query().options(selectin(Post::comments).limit(3)).load(&mut session),
                (true, true) => {
                    Post::query().options(joined(Post::comments).limit(3).per_parent()).load(&mut session)
                }
                (false, true) => {
                    Post::query().options(selectin(Post::comments).limit(3).per_parent()).load(&mut session)
                }
            }
            .unwrap();
            assert_eq!(session.statements(), if joined_load { 1 } else { 2 });
            let at = format!("joined: {joined_load}, per parent: {per_parent}");
            assert_eq!(ids(&posts, |p| comment_ids(&p.comments)), latest, "{at}");
            let sql = session.queries().join("\n");
            // By default the rows are numbered per parent; `per_parent` reads each parent's
            // first rows: a `LATERAL` subquery on PostgreSQL, the keys `IN` one on SQLite
            // (selectin from the parents' keys as a table).
            let lateral = <<Conn as Connection>::Backend as orm_core::OrmBackend>::LATERAL;
            let form = match (per_parent, lateral) {
                (false, _) => "ROW_NUMBER() OVER (PARTITION BY",
                (true, true) => "LATERAL (SELECT",
                (true, false) => "IN (SELECT",
            };
            assert!(sql.contains(form), "{at}: {sql}");
        }
    }

    #[test]
    fn offset_order_and_filter_shape_one_window() {
        let mut conn = blog();
        let best = |r: &(i32, i32, i32, i32, bool)| std::cmp::Reverse(r.3);
        let want = window(expected(&mut conn, best, |r| r.4), 1, 2);
        let skipped = window(expected(&mut conn, newest, |_| true), 2, usize::MAX);
        for joined_load in [true, false] {
            let mut session = Session::new(&mut conn);
            let shaped = selectin(Post::all_comments)
                .order_by(comment::score.desc())
                .filter(comment::approved.eq(true))
                .offset(1)
                .limit(2);
            let posts = if joined_load {
                let shaped = joined(Post::all_comments)
                    .order_by(comment::score.desc())
                    .filter(comment::approved.eq(true))
                    .offset(1)
                    .limit(2);
                Post::query().options((shaped, joined(Post::comments).offset(2))).load(&mut session)
            } else {
                Post::query().options((shaped, selectin(Post::comments).offset(2))).load(&mut session)
            }
            .unwrap();
            assert_eq!(ids(&posts, |p| comment_ids(&p.all_comments)), want, "joined: {joined_load}");
            assert_eq!(ids(&posts, |p| comment_ids(&p.comments)), skipped, "joined: {joined_load}");
        }
    }

    #[test]
    fn a_many_to_many_window_counts_each_parents_links() {
        let mut conn = blog();
        let want = window(expected_tags(&mut conn, |_| true), 0, 2);
        let second = window(expected_tags(&mut conn, |n| n != "alpha"), 1, 1);
        for (joined_load, per_parent) in [(true, false), (false, false), (true, true), (false, true)] {
            let at = format!("joined: {joined_load}, per parent: {per_parent}");
            let mut options = Options::new();
            options = match (joined_load, per_parent) {
                (true, false) => options.with(joined(Post::tags).limit(2)),
                (true, true) => options.with(joined(Post::tags).limit(2).per_parent()),
                (false, false) => options.with(selectin(Post::tags).limit(2)),
                (false, true) => options.with(selectin(Post::tags).limit(2).per_parent()),
            };
            let mut session = Session::new(&mut conn);
            let posts = Post::query().options(options).load(&mut session).unwrap();
            let got: BTreeMap<i32, Vec<String>> = posts.iter().map(|p| (p.id, tag_names(p))).collect();
            assert_eq!(got, want, "{at}");
            drop(session);
            let not_alpha = tag::name.ne("alpha");
            let mut options = Options::new();
            options = match (joined_load, per_parent) {
                (true, false) => options.with(joined(Post::tags).filter(not_alpha).offset(1).limit(1)),
                (true, true) => {
                    options.with(joined(Post::tags).filter(not_alpha).offset(1).limit(1).per_parent())
                }
                (false, false) => options.with(selectin(Post::tags).filter(not_alpha).offset(1).limit(1)),
                (false, true) => {
                    options.with(selectin(Post::tags).filter(not_alpha).offset(1).limit(1).per_parent())
                }
            };
            let mut session = Session::new(&mut conn);
            let posts = Post::query().options(options).load(&mut session).unwrap();
            let got: BTreeMap<i32, Vec<String>> = posts.iter().map(|p| (p.id, tag_names(p))).collect();
            assert_eq!(got, second, "{at}");
        }
    }

    #[test]
    fn a_has_one_window_takes_the_row_after_the_offset() {
        let mut conn = blog();
        let best = expected(&mut conn, |r| (std::cmp::Reverse(r.3), r.2), |_| true);
        let want: BTreeMap<i32, Option<i32>> =
            best.into_iter().map(|(post, ids)| (post, ids.get(1).copied())).collect();
        for joined_load in [true, false] {
            let mut session = Session::new(&mut conn);
            let posts = if joined_load {
                Post::query().options(joined(Post::top_comment).offset(1)).load(&mut session)
            } else {
                Post::query().options(selectin(Post::top_comment).offset(1)).load(&mut session)
            }
            .unwrap();
            let got: BTreeMap<i32, Option<i32>> = posts
                .iter()
                .map(|p| (p.id, p.top_comment.get().expect("loaded").map(|c| c.id)))
                .collect();
            assert_eq!(got, want, "joined: {joined_load}");
        }
    }

    #[test]
    fn windows_nest_and_page_with_inner_joins() {
        let mut conn = blog();
        let newest_one = window(expected(&mut conn, newest, |_| true), 0, 1);
        let commented = posts_with(&mut conn, |_| true);
        let mut session = Session::new(&mut conn);
        // The two newest posts of each tag, each with its newest comment.
        let tags = Tag::query()
            .options(selectin(Tag::posts).limit(2).then(joined(Post::comments).limit(1)))
            .load(&mut session)
            .unwrap();
        assert_eq!(session.statements(), 2);
        for t in &tags {
            let posts = t.posts.get().expect("loaded");
            assert!(posts.len() <= 2);
            for p in posts {
                assert_eq!(comment_ids(&p.comments), newest_one[&p.id], "post {}", p.id);
            }
        }
        drop(session);
        let mut session = Session::new(&mut conn);
        let posts = Post::query()
            .order_by(post::id)
            .limit(3)
            .options(joined(Post::comments).limit(1).inner())
            .load(&mut session)
            .unwrap();
        assert_eq!(post_ids(&posts), commented[..3]);
        for p in &posts {
            assert_eq!(comment_ids(&p.comments), newest_one[&p.id]);
        }
    }

    #[test]
    fn a_self_reference_windows_under_its_own_name() {
        use orm_tests::{person, Person};
        let (mut conn, _) = seeded(80);
        let rows: Vec<(i32, Option<i32>, String)> =
            person::table.select((person::id, person::manager_id, person::lastname)).load(&mut conn).unwrap();
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        let mut want: BTreeMap<i32, Vec<i32>> = rows.iter().map(|r| (r.0, Vec::new())).collect();
        for (id, manager, _) in &sorted {
            if let Some(m) = manager {
                let reports = want.get_mut(m).unwrap();
                if reports.len() < 2 {
                    reports.push(*id);
                }
            }
        }
        for joined_load in [true, false] {
            let mut session = Session::new(&mut conn);
            let people = if joined_load {
                Person::query()
                    .options(joined(Person::reports).order_by(person::lastname).limit(2))
                    .load(&mut session)
            } else {
                Person::query()
                    .options(selectin(Person::reports).order_by(person::lastname).limit(2))
                    .load(&mut session)
            }
            .unwrap();
            let got = reports_by_person(&people);
            assert_eq!(got, want, "joined: {joined_load}");
        }
    }
}
