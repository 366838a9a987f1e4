use orm_core::prelude::*;
use orm_tests::blog::{post_rel, Post};

fn comments_of<I>(p: &Loaded<Post, impl HasCount<post_rel::comments, I>>) -> u64 {
    p.get_count(Post::comments)
}

fn main() {
    let mut conn = orm_tests::readme::blog();
    let mut session = Session::new(&mut conn);
    // The query loads the comments but counts nothing: the count is not in the type.
    let posts = Post::query().options(selectin(Post::comments)).load(&mut session).unwrap();
    comments_of(&posts[0]);
}
