//! Shaped loads build the graph the rows say: random blogs (tied times and scores, posts without
//! comments, comments of missing posts) and random people (NULL, dangling and self managers, tied
//! names) loaded with a random order, filter and window on a relation, `joined` or `selectin`,
//! at the root and one level down, against the rows sorted, filtered and cut in Rust. Lazy loads
//! take no query shaping, so the oracle stands in for "the lazy graph". Failing cases shrink.

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use orm_core::prelude::*;
use orm_core::RelOption;
use orm_tests::blog::{comment, post_rel, Comment, Post, SCHEMA};
use proptest::prelude::*;

/// 48 cases, or `PROPTEST_CASES`; failures are printed, not saved.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A comment row: post (maybe missing), time, score, approved.
type Row = (i32, i32, i32, bool);

#[derive(Debug, Clone)]
struct Blog {
    posts: i32,
    comments: Vec<Row>,
}

fn blog() -> impl Strategy<Value = Blog> {
    (1..7i32).prop_flat_map(|posts| {
        let row = (1..posts + 2, 0..4i32, 0..3i32, any::<bool>());
        (Just(posts), proptest::collection::vec(row, 0..30))
            .prop_map(|(posts, comments)| Blog { posts, comments })
    })
}

fn insert_sql(blog: &Blog) -> String {
    let mut sql = String::new();
    for id in 1..=blog.posts {
        sql += &format!("INSERT INTO post VALUES ({id}, 'post {id}');\n");
    }
    for (i, (post, time, score, approved)) in blog.comments.iter().enumerate() {
        let approved = if *approved { "TRUE" } else { "FALSE" };
        sql += &format!(
            "INSERT INTO comment VALUES ({}, {post}, 'c', {time}, {score}, {approved});\n",
            i + 1
        );
    }
    sql
}

/// An order of a post's comments, on the query or, for `Declared`, the relation's own
/// (`created_at DESC`).
#[derive(Debug, Clone, Copy)]
enum Order {
    Declared,
    ScoreDesc,
    ScoreThenOldest,
    Oldest,
}

#[derive(Debug, Clone, Copy)]
enum Filter {
    Approved,
    Scored,
    Early,
}

/// How the comments of each post are loaded.
#[derive(Debug, Clone, Copy)]
struct Shape {
    joined: bool,
    order: Order,
    filter: Option<Filter>,
    /// Offset and limit.
    window: Option<(u32, Option<u32>)>,
    /// The window read per parent rather than numbered.
    per_parent: bool,
    /// Joined inner (joined only).
    inner: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    let order = prop_oneof![
        Just(Order::Declared),
        Just(Order::ScoreDesc),
        Just(Order::ScoreThenOldest),
        Just(Order::Oldest)
    ];
    let filter = proptest::option::of(prop_oneof![
        Just(Filter::Approved),
        Just(Filter::Scored),
        Just(Filter::Early)
    ]);
    let window = proptest::option::of((0..3u32, proptest::option::of(1..4u32)));
    (any::<bool>(), order, filter, window, proptest::bool::weighted(0.2), any::<bool>()).prop_map(
        |(joined, order, filter, window, inner, per_parent)| Shape {
            joined,
            order,
            filter,
            window,
            inner: inner && joined,
            per_parent,
        },
    )
}

/// The option on `Post.comments` with the window and filter of `shape`, on an option of any
/// kind that can take them (an order of its own, or the declared one).
fn finish<K>(option: RelOption<post_rel::comments, K>, shape: &Shape) -> Options<Post>
where
    K: orm_core::Shapes,
    RelOption<post_rel::comments, K>: orm_core::Windowed + orm_core::IntoOptions<Post>,
{
    let mut option = match shape.filter {
        None => option,
        Some(Filter::Approved) => option.filter(comment::approved.eq(true)),
        Some(Filter::Scored) => option.filter(comment::score.ge(1)),
        Some(Filter::Early) => option.filter(comment::created_at.lt(2)),
    };
    if let Some((offset, limit)) = shape.window {
        option = option.offset(offset);
        if let Some(limit) = limit {
            option = option.limit(limit);
        }
        if shape.per_parent {
            option = option.per_parent();
        }
    }
    Options::new().with(option)
}

fn ordered<K>(option: RelOption<post_rel::comments, K>, shape: &Shape) -> Options<Post>
where
    K: orm_core::Shapes,
    K::Ordered: orm_core::Shapes,
    RelOption<post_rel::comments, K>: orm_core::Windowed + orm_core::IntoOptions<Post>,
    RelOption<post_rel::comments, K::Ordered>: orm_core::Windowed + orm_core::IntoOptions<Post>,
{
    match shape.order {
        Order::Declared => finish(option, shape),
        Order::ScoreDesc => finish(option.order_by(comment::score.desc()), shape),
        Order::ScoreThenOldest => {
            finish(option.order_by((comment::score.desc(), comment::created_at.asc())), shape)
        }
        Order::Oldest => finish(option.order_by(comment::created_at), shape),
    }
}

fn options(shape: &Shape) -> Options<Post> {
    if shape.joined {
        let option = joined(Post::comments);
        if shape.inner {
            ordered(option.inner(), shape)
        } else {
            ordered(option, shape)
        }
    } else {
        ordered(selectin(Post::comments), shape)
    }
}

/// What the rows say: each post's comment ids, shaped; posts an inner join drops are absent.
fn oracle(blog: &Blog, shape: &Shape) -> BTreeMap<i32, Vec<i32>> {
    let mut out = BTreeMap::new();
    for post in 1..=blog.posts {
        let mut rows: Vec<(i32, Row)> = (1..)
            .zip(blog.comments.iter().copied())
            .filter(|(_, row)| row.0 == post)
            .filter(|(_, (_, time, score, approved))| match shape.filter {
                None => true,
                Some(Filter::Approved) => *approved,
                Some(Filter::Scored) => *score >= 1,
                Some(Filter::Early) => *time < 2,
            })
            .collect();
        rows.sort_by_key(|&(id, (_, time, score, _))| match shape.order {
            Order::Declared => (-time, 0, id),
            Order::ScoreDesc => (-score, 0, id),
            Order::ScoreThenOldest => (-score, time, id),
            Order::Oldest => (time, 0, id),
        });
        let mut ids: Vec<i32> = rows.into_iter().map(|(id, _)| id).collect();
        if let Some((offset, limit)) = shape.window {
            ids = ids
                .into_iter()
                .skip(offset as usize)
                .take(limit.map_or(usize::MAX, |l| l as usize))
                .collect();
        }
        if shape.inner && ids.is_empty() {
            continue;
        }
        out.insert(post, ids);
    }
    out
}

/// People: each one's manager (NULL, dangling, themselves or another) and last name (ties).
fn people() -> impl Strategy<Value = Vec<(Option<i32>, u8)>> {
    (1..20usize).prop_flat_map(|n| {
        proptest::collection::vec((proptest::option::of(1..n as i32 + 3), 0..3u8), n)
    })
}

/// How each person's reports are loaded: joined or selectin, by last name ascending or
/// descending (key breaking ties), reports whose last name is not `skip`, and a window.
#[derive(Debug, Clone, Copy)]
struct Reports {
    joined: bool,
    descending: bool,
    skip: Option<u8>,
    window: Option<(u32, u32)>,
    per_parent: bool,
}

fn reports() -> impl Strategy<Value = Reports> {
    let window = proptest::option::of((0..2u32, 1..3u32));
    (any::<bool>(), any::<bool>(), proptest::option::of(0..3u8), window, any::<bool>()).prop_map(
        |(joined, descending, skip, window, per_parent)| Reports {
            joined,
            descending,
            skip,
            window,
            per_parent,
        },
    )
}

fn last_name(n: u8) -> &'static str {
    ["a", "b", "c"][usize::from(n)]
}

fn ids(rel: &Rel<Vec<Comment>>) -> Vec<i32> {
    rel.get().expect("loaded").iter().map(|c| c.id).collect()
}

orm_tests::backend_tests! {
    fn database(blog: &Blog) -> Conn {
        let mut conn = empty();
        conn.batch_execute(SCHEMA).unwrap();
        without_foreign_keys(&mut conn, &insert_sql(blog));
        conn
    }

    #[test]
    fn shaped_comments_are_the_rows_sorted_filtered_and_cut() {
        proptest!(config(), |(blog in blog(), shape in shape())| {
            let mut conn = database(&blog);
            let want = oracle(&blog, &shape);
            let mut session = Session::new(&mut conn);
            let posts = Post::query().options(options(&shape)).load(&mut session).unwrap();
            prop_assert_eq!(session.statements(), if shape.joined { 1 } else { 2 });
            let got: BTreeMap<i32, Vec<i32>> = posts.iter().map(|p| (p.id, ids(&p.comments))).collect();
            prop_assert_eq!(got, want);
        });
    }

    #[test]
    fn shaped_comments_one_level_down_are_the_same() {
        proptest!(config(), |(blog in blog(), shape in shape())| {
            let mut conn = database(&blog);
            let mut want = oracle(&blog, &Shape { inner: false, ..shape });
            let mut session = Session::new(&mut conn);
            // Every comment's post (a post reached by several comments), with that post's
            // comments shaped.
            let outer = Shape { inner: false, ..shape };
            let comments = Comment::query()
                .filter(comment::post_id.le(blog.posts))
                .options(joined(Comment::post).then(options(&outer)))
                .load(&mut session)
                .unwrap();
            let mut got = BTreeMap::new();
            for c in &comments {
                if let Some(post) = c.post.get() {
                    got.insert(post.id, ids(&post.comments));
                }
            }
            want.retain(|post, _| got.contains_key(post));
            prop_assert_eq!(got, want);
        });
    }

    #[test]
    fn shaped_self_references_are_the_rows_sorted_filtered_and_cut() {
        use orm_tests::{person, Person};
        proptest!(config(), |(people in people(), shape in reports())| {
            let mut conn = empty();
            let mut sql = String::new();
            for (i, (manager, last)) in people.iter().enumerate() {
                let manager = manager.map_or("NULL".to_owned(), |m| m.to_string());
                sql += &format!(
                    "INSERT INTO person VALUES ({}, 'f{}', '{}', NULL, {manager});\n",
                    i + 1, i + 1, last_name(*last)
                );
            }
            without_foreign_keys(&mut conn, &sql);
            let mut want: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for (i, _) in people.iter().enumerate() {
                let id = i as i32 + 1;
                let mut reports: Vec<(u8, i32)> = (1..)
                    .zip(&people)
                    .filter(|(_, (m, last))| *m == Some(id) && Some(*last) != shape.skip)
                    .map(|(r, (_, last))| (*last, r))
                    .collect();
                reports.sort_by(|a, b| {
                    let by_name = if shape.descending { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) };
                    by_name.then(a.1.cmp(&b.1))
                });
                let (offset, limit) = shape.window.unwrap_or((0, u32::MAX));
                want.insert(
                    id,
                    reports.into_iter().map(|(_, r)| r).skip(offset as usize).take(limit as usize).collect(),
                );
            }
            let mut session = Session::new(&mut conn);
            let skip = last_name(shape.skip.unwrap_or(0));
            let keep_all = shape.skip.is_none();
            macro_rules! shaped {
                ($option:expr) => {{
                    let option = $option.filter(person::lastname.ne(skip).or(keep_all.into_sql::<diesel::sql_types::Bool>()));
                    let mut options = Options::new();
                    match (shape.descending, shape.window) {
                        (false, None) => options = options.with(option.order_by(person::lastname)),
                        (true, None) => options = options.with(option.order_by(person::lastname.desc())),
                        (false, Some((o, l))) if shape.per_parent => options = options.with(option.order_by(person::lastname).offset(o).limit(l).per_parent()),
                        (true, Some((o, l))) if shape.per_parent => options = options.with(option.order_by(person::lastname.desc()).offset(o).limit(l).per_parent()),
                        (false, Some((o, l))) => options = options.with(option.order_by(person::lastname).offset(o).limit(l)),
                        (true, Some((o, l))) => options = options.with(option.order_by(person::lastname.desc()).offset(o).limit(l)),
                    }
                    options
                }};
            }
            let options = if shape.joined {
                shaped!(joined(Person::reports))
            } else {
                shaped!(selectin(Person::reports))
            };
            let loaded = Person::query().options(options).load(&mut session).unwrap();
            prop_assert_eq!(session.statements(), if shape.joined { 1 } else { 2 });
            let got: BTreeMap<i32, Vec<i32>> = loaded
                .iter()
                .map(|p| (p.id, p.reports.get().expect("loaded").iter().map(|r| r.id).collect()))
                .collect();
            prop_assert_eq!(got, want);
        });
    }
}
