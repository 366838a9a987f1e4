//! Shaped relation loads against the same results hand-written with diesel: the three latest
//! comments of every post (a window per post), and every post's number of comments (a count).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use criterion::Criterion;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Text};
use orm_core::prelude::*;
use orm_tests::blog::{comment, post, Post, SCHEMA};

use super::{counted, workload, Conn, Run, CHUNK};

/// Comments per post.
const COMMENTS: usize = 10;

/// `posts` posts with `COMMENTS` comments each, times and scores scrambled, and the index an
/// application showing the latest comments would have.
fn database(posts: usize) -> Conn {
    let mut conn = Conn::establish(":memory:").unwrap();
    conn.batch_execute(SCHEMA).unwrap();
    let comments = posts * COMMENTS;
    conn.batch_execute(&format!(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {posts})
         INSERT INTO post SELECT x, 'post ' || x FROM n;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {comments})
         INSERT INTO comment SELECT x, (x - 1) / {COMMENTS} + 1, 'comment ' || x,
                                    (x * 37) % 1000, (x * 13) % 7, x % 3 <> 0 FROM n;
         CREATE INDEX comment_latest ON comment (post_id, created_at DESC, id);"
    ))
    .unwrap();
    conn
}

/// A comment as hand-written code reads it.
#[derive(QueryableByName, Queryable, Selectable, Debug)]
#[diesel(table_name = comment)]
struct CommentRow {
    id: i32,
    post_id: i32,
    body: String,
    created_at: i32,
    score: i32,
    approved: bool,
}

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = post)]
struct PostRow {
    id: i32,
    title: String,
}

/// A post, then its comments' ids in order, each weighted by its position (so a wrong order
/// changes the sum).
fn post_sum(id: i32, title: &str) -> u64 {
    id as u64 * 31 + title.len() as u64
}

/// A comment's fields: id, time, body, score, approval.
type CommentFields<'a> = (i32, i32, &'a str, i32, bool);

fn comments_sum<'a>(comments: impl Iterator<Item = CommentFields<'a>>) -> u64 {
    let one = |(id, time, body, score, approved): CommentFields<'_>| {
        id as u64 * 7 + time as u64 + body.len() as u64 + score as u64 * 3 + u64::from(approved)
    };
    comments.enumerate().map(|(i, c)| (i as u64 + 1) * one(c)).sum()
}

fn orm_latest(conn: &mut Conn, joined_load: bool, per_parent: bool) -> (u64, usize) {
    let mut session = Session::new(conn);
    let query = Post::query().order_by(post::id);
    let posts = match (joined_load, per_parent) {
        (true, false) => query.options(joined(Post::comments).limit(3)).load(&mut session),
        (true, true) => {
            query.options(joined(Post::comments).limit(3).per_parent()).load(&mut session)
        }
        (false, false) => query.options(selectin(Post::comments).limit(3)).load(&mut session),
        (false, true) => {
            query.options(selectin(Post::comments).limit(3).per_parent()).load(&mut session)
        }
    }
    .unwrap();
    let sum = posts
        .iter()
        .map(|p| {
            let comments = p.comments.get().expect("loaded");
            let comments =
                comments.iter().map(|c| (c.id, c.created_at, c.body.as_str(), c.score, c.approved));
            post_sum(p.id, &p.title) + comments_sum(comments)
        })
        .sum();
    (sum, session.statements())
}

/// The posts, then one window statement per chunk of their keys, as a diesel user writes it
/// (`sql_query` with a bind per key), grouped per post.
fn hand_selectin_latest(conn: &mut Conn) -> (u64, usize) {
    hand_selectin(conn, |marks| {
        format!(
            "SELECT id, post_id, body, created_at, score, approved FROM (
                 SELECT comment.*, ROW_NUMBER() OVER (
                     PARTITION BY post_id ORDER BY created_at DESC, id) AS rn
                 FROM comment WHERE post_id IN ({marks}))
             WHERE rn <= 3 ORDER BY created_at DESC, id"
        )
    })
}

/// The same, each key driving a subquery of its three latest (the keys as a `VALUES` table).
fn hand_selectin_latest_by_post(conn: &mut Conn) -> (u64, usize) {
    hand_selectin(conn, |marks| {
        let rows = marks.replace('?', "(?)");
        format!(
            "SELECT c.id, c.post_id, c.body, c.created_at, c.score, c.approved
             FROM (VALUES {rows}) AS k INNER JOIN comment AS c ON c.id IN (
                 SELECT x.id FROM comment AS x WHERE x.post_id = k.column1
                 ORDER BY x.created_at DESC, x.id LIMIT 3)
             ORDER BY c.created_at DESC, c.id"
        )
    })
}

/// The posts, then the statement `sql` makes of a chunk's `?` marks, with a bind per key,
/// grouped per post.
fn hand_selectin(conn: &mut Conn, sql: impl Fn(&str) -> String) -> (u64, usize) {
    let statements = counted(conn);
    let posts: Vec<PostRow> =
        post::table.order_by(post::id).select(PostRow::as_select()).load(conn).unwrap();
    let mut by_post: HashMap<i32, Vec<CommentRow>> = HashMap::with_capacity(posts.len());
    for chunk in posts.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut query = diesel::sql_query(sql(&marks)).into_boxed();
        for p in chunk {
            query = query.bind::<Integer, _>(p.id);
        }
        for row in query.load::<CommentRow>(conn).unwrap() {
            by_post.entry(row.post_id).or_default().push(row);
        }
    }
    let sum = posts
        .iter()
        .map(|p| {
            let comments = by_post.get(&p.id).map(Vec::as_slice).unwrap_or_default();
            let comments =
                comments.iter().map(|c| (c.id, c.created_at, c.body.as_str(), c.score, c.approved));
            post_sum(p.id, &p.title) + comments_sum(comments)
        })
        .sum();
    (sum, statements.load(Ordering::Relaxed))
}

/// A post joined to its window of comments, one row per comment (or one for a post without).
#[derive(QueryableByName, Debug)]
struct JoinedRow {
    #[diesel(sql_type = Integer)]
    post_id: i32,
    #[diesel(sql_type = Text)]
    title: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Integer>)]
    id: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    body: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Integer>)]
    created_at: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Integer>)]
    score: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Bool>)]
    approved: Option<bool>,
}

/// One statement: the posts left-joined to a numbered derived table of comments.
fn hand_joined_latest(conn: &mut Conn) -> (u64, usize) {
    hand_joined(
        conn,
        "SELECT post.id AS post_id, post.title, c.id, c.body, c.created_at, c.score, c.approved
         FROM post LEFT OUTER JOIN (
             SELECT * FROM (
                 SELECT comment.*, ROW_NUMBER() OVER (
                     PARTITION BY post_id ORDER BY created_at DESC, id) AS rn
                 FROM comment)
             WHERE rn <= 3) AS c ON c.post_id = post.id
         ORDER BY post.id, c.created_at DESC, c.id",
    )
}

/// One statement: each post left-joined to the comments whose key is among its three latest
/// (a subquery per post, through the index).
fn hand_joined_latest_by_post(conn: &mut Conn) -> (u64, usize) {
    hand_joined(
        conn,
        "SELECT post.id AS post_id, post.title, c.id, c.body, c.created_at, c.score, c.approved
         FROM post LEFT OUTER JOIN comment AS c ON c.id IN (
             SELECT x.id FROM comment AS x WHERE x.post_id = post.id
             ORDER BY x.created_at DESC, x.id LIMIT 3)
         ORDER BY post.id, c.created_at DESC, c.id",
    )
}

/// Runs a statement of posts joined to their comments and folds its rows per post.
fn hand_joined(conn: &mut Conn, sql: &str) -> (u64, usize) {
    let statements = counted(conn);
    let rows: Vec<JoinedRow> = diesel::sql_query(sql).load(conn).unwrap();
    // The graph: each post with its comments, as the ORM builds it.
    let mut posts: Vec<(PostRow, Vec<CommentRow>)> = Vec::new();
    for row in rows {
        if posts.last().is_none_or(|(p, _)| p.id != row.post_id) {
            posts.push((PostRow { id: row.post_id, title: row.title }, Vec::new()));
        }
        let comments = &mut posts.last_mut().expect("pushed").1;
        if let (Some(id), Some(body), Some(created_at), Some(score), Some(approved)) =
            (row.id, row.body, row.created_at, row.score, row.approved)
        {
            comments.push(CommentRow {
                id,
                post_id: row.post_id,
                body,
                created_at,
                score,
                approved,
            });
        }
    }
    let sum = posts
        .iter()
        .map(|(p, comments)| {
            let comments =
                comments.iter().map(|c| (c.id, c.created_at, c.body.as_str(), c.score, c.approved));
            post_sum(p.id, &p.title) + comments_sum(comments)
        })
        .sum();
    (sum, statements.load(Ordering::Relaxed))
}

fn orm_counts(conn: &mut Conn) -> (u64, usize) {
    let mut session = Session::new(conn);
    let posts =
        Post::query().order_by(post::id).options(count(Post::comments)).load(&mut session).unwrap();
    let sum = posts
        .iter()
        .map(|p| post_sum(p.id, &p.title) + 1009 * p.counted(Post::comments).expect("counted"))
        .sum();
    (sum, session.statements())
}

/// The posts, then `GROUP BY` per chunk of their keys, with diesel's DSL.
fn hand_counts(conn: &mut Conn) -> (u64, usize) {
    let statements = counted(conn);
    let posts: Vec<PostRow> =
        post::table.order_by(post::id).select(PostRow::as_select()).load(conn).unwrap();
    let mut counts: HashMap<i32, i64> = HashMap::with_capacity(posts.len());
    for chunk in posts.chunks(CHUNK) {
        let ids: Vec<i32> = chunk.iter().map(|p| p.id).collect();
        let rows: Vec<(i32, i64)> = comment::table
            .filter(comment::post_id.eq_any(ids))
            .group_by(comment::post_id)
            .select((comment::post_id, diesel::dsl::count_star()))
            .load(conn)
            .unwrap();
        counts.extend(rows);
    }
    let sum = posts
        .iter()
        .map(|p| post_sum(p.id, &p.title) + 1009 * counts.get(&p.id).copied().unwrap_or(0) as u64)
        .sum();
    (sum, statements.load(Ordering::Relaxed))
}

/// The shaping workloads, at up to 10,000 posts (or `ORM_BENCH_SIZES`).
pub fn bench(c: &mut Criterion) {
    for n in super::sizes().into_iter().filter(|&n| n <= 10_000) {
        let mut conn = database(n);
        workload(
            c,
            &mut conn,
            n,
            "latest-comments",
            vec![
                (
                    "selectin",
                    Box::new(|c: &mut Conn| orm_latest(c, false, false)) as Run<'_>,
                    2,
                    Box::new(hand_selectin_latest),
                ),
                (
                    "selectin-per-parent",
                    Box::new(|c: &mut Conn| orm_latest(c, false, true)),
                    2,
                    Box::new(hand_selectin_latest_by_post),
                ),
                (
                    "joined",
                    Box::new(|c: &mut Conn| orm_latest(c, true, false)),
                    1,
                    Box::new(hand_joined_latest),
                ),
                (
                    "joined-per-parent",
                    Box::new(|c: &mut Conn| orm_latest(c, true, true)),
                    1,
                    Box::new(hand_joined_latest_by_post),
                ),
            ],
        );
        workload(
            c,
            &mut conn,
            n,
            "comment-counts",
            vec![("count", Box::new(orm_counts) as Run<'_>, 2, Box::new(hand_counts))],
        );
    }
}
