//! A blog: posts, their comments (with times, scores and approvals) and tags, for the tests
//! and benchmarks of shaped relation loads (order, filters, windows, counts).
#![allow(missing_docs)] // `diesel::table!` declares undocumented items

use diesel::connection::SimpleConnection;
use orm_core::prelude::*;

diesel::table! {
    post (id) {
        id -> Integer,
        title -> Text,
    }
}

diesel::table! {
    comment (id) {
        id -> Integer,
        post_id -> Integer,
        body -> Text,
        created_at -> Integer,
        score -> Integer,
        approved -> Bool,
    }
}

diesel::table! {
    tag (id) {
        id -> Integer,
        name -> Text,
    }
}

diesel::table! {
    post_tag (post_id, tag_id) {
        post_id -> Integer,
        tag_id -> Integer,
    }
}

diesel::joinable!(comment -> post (post_id));
diesel::allow_tables_to_appear_in_same_query!(post, comment, tag, post_tag);

/// A blog post.
#[derive(Model, Debug)]
#[orm(table = post)]
pub struct Post {
    /// Primary key.
    pub id: i32,
    /// Title.
    pub title: String,
    /// Newest first (ties: by key).
    #[relation(has_many = Comment, foreign_key = post_id, order_by = created_at.desc())]
    pub comments: Rel<Vec<Comment>>,
    /// In key order: no declared order.
    #[relation(has_many = Comment, foreign_key = post_id)]
    pub all_comments: Rel<Vec<Comment>>,
    /// The best-scored comment, the oldest of equal scores.
    #[relation(has_one = Comment, foreign_key = post_id, order_by = (score.desc(), created_at))]
    pub top_comment: Rel<Option<Comment>>,
    /// By name.
    #[relation(many_to_many = Tag, through = post_tag, order_by = name.asc())]
    pub tags: Rel<Vec<Tag>>,
    /// The oldest comment; joined inner, when joined.
    #[relation(has_one = Comment, foreign_key = post_id, order_by = created_at, innerjoin = true)]
    pub first_comment: Rel<Option<Comment>>,
}

/// A comment on a post.
#[derive(Model, Debug)]
#[orm(table = comment)]
pub struct Comment {
    /// Primary key.
    pub id: i32,
    /// The post commented on.
    pub post_id: i32,
    /// Text.
    pub body: String,
    /// When, as a number.
    pub created_at: i32,
    /// Votes.
    pub score: i32,
    /// Whether a moderator approved it.
    pub approved: bool,
    /// The post.
    #[relation(belongs_to = Post, foreign_key = post_id)]
    pub post: Rel<Post>,
}

/// A tag.
#[derive(Model, Debug)]
#[orm(table = tag)]
pub struct Tag {
    /// Primary key.
    pub id: i32,
    /// Name.
    pub name: String,
    /// Newest post first.
    #[relation(many_to_many = Post, through = post_tag, foreign_key = tag_id, target_key = post_id, order_by = id.desc())]
    pub posts: Rel<Vec<Post>>,
}

/// The tables.
pub const SCHEMA: &str = "
    CREATE TABLE post (id INTEGER PRIMARY KEY NOT NULL, title TEXT NOT NULL);
    CREATE TABLE comment (id INTEGER PRIMARY KEY NOT NULL,
                          post_id INTEGER NOT NULL REFERENCES post (id),
                          body TEXT NOT NULL, created_at INTEGER NOT NULL,
                          score INTEGER NOT NULL, approved BOOLEAN NOT NULL);
    CREATE TABLE tag (id INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL);
    CREATE TABLE post_tag (post_id INTEGER NOT NULL REFERENCES post (id),
                           tag_id INTEGER NOT NULL REFERENCES tag (id),
                           PRIMARY KEY (post_id, tag_id));
";

/// Creates the tables with posts 1..=`posts`; post 2 has no comment and no tag. Comment times, scores and approvals are
/// scrambled so that no order is the key order, with ties in time and in score.
pub fn seed(conn: &mut impl SimpleConnection, posts: i32) {
    let mut sql = String::from(SCHEMA);
    let tags = ["zeta", "alpha", "rust", "mid"];
    for (i, name) in tags.iter().enumerate() {
        sql += &format!("INSERT INTO tag VALUES ({}, '{name}');", i + 1);
    }
    let mut comment = 0;
    for post in 1..=posts {
        sql += &format!("INSERT INTO post VALUES ({post}, 'post {:03}');", (post * 7) % posts);
        if post == 2 {
            continue;
        }
        for _ in 0..(post % 5 + 1) {
            comment += 1;
            let (time, score) = ((comment * 37) % 11, (comment * 13) % 4);
            let approved = if comment % 3 == 0 { "FALSE" } else { "TRUE" };
            sql += &format!(
                "INSERT INTO comment VALUES ({comment}, {post}, 'c{comment}', {time}, {score}, {approved});"
            );
        }
        for tag in 1..=tags.len() {
            if (post as usize + tag) % 3 != 0 {
                sql += &format!("INSERT INTO post_tag VALUES ({post}, {tag});");
            }
        }
    }
    conn.batch_execute(&sql).unwrap();
}
