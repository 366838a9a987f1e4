//! Parsing and validation without a compile: the derive on `proc_macro2` tokens.

use proc_macro2::{TokenStream, TokenTree};
use syn::parse_quote;

use crate::expand::derive;

/// The `compile_error!` messages in an expansion, in order.
fn errors(output: &TokenStream) -> Vec<String> {
    let tokens: Vec<TokenTree> = output.clone().into_iter().collect();
    let mut messages = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Ident(ident) if ident == "compile_error" => {
                if let Some(TokenTree::Group(group)) = tokens.get(i + 2) {
                    let literal: syn::LitStr =
                        syn::parse2(group.stream()).expect("a string literal");
                    messages.push(literal.value());
                }
            }
            TokenTree::Group(group) => messages.extend(errors(&group.stream())),
            _ => {}
        }
    }
    messages
}

#[test]
fn a_valid_model_expands_without_errors() {
    let input = parse_quote! {
        #[orm(table = person)]
        pub struct Person {
            pub id: i32,
            pub manager_id: Option<i32>,
            #[relation(belongs_to = Person, foreign_key = manager_id, lazy = "joined", join_depth = 2)]
            pub manager: Rel<Option<Person>>,
            #[relation(has_many = Person, foreign_key = manager_id, lazy = "selectin")]
            pub reports: Rel<Vec<Person>>,
        }
    };
    let output = derive(&input);
    assert_eq!(errors(&output), Vec::<String>::new());
    let text = output.to_string();
    assert!(text.contains("pub mod person_rel"), "{text}");
    assert!(
        text.contains("join_depth : :: orm_core :: __private :: Option :: Some (2u32)"),
        "{text}"
    );
    assert!(text.contains("Strategy :: Selectin"), "{text}");
}

#[test]
fn every_mistake_is_reported_in_one_pass() {
    let input = parse_quote! {
        #[orm(table = person)]
        pub struct Person {
            pub id: i32,
            pub manager_id: Option<i32>,
            #[relation(belongs_to = Person, foreign_key = manger_id, lazy = "eagre")]
            pub manager: Rel<Option<Person>>,
            #[relation(has_many = Person, foreign_key = manager_id, join_depth = 0)]
            pub reports: Rel<Person>,
            #[relation(foreign_key = manager_id)]
            pub boss: Rel<Option<Person>>,
        }
    };
    let messages = errors(&derive(&input));
    assert_eq!(
        messages,
        vec![
            "unknown strategy `eagre`, expected one of `select`, `joined`, `selectin`, `raise`",
            "missing relation kind: add one of `belongs_to = T`, `has_one = T`, `has_many = T`, `many_to_many = T`",
            "`foreign_key = manger_id` names no column field of `Person`",
            "`has_many` relates a collection: use `Rel<Vec<Person>>`",
            "`join_depth` applies to `lazy = \"joined\"` and `lazy = \"selectin\"` only",
        ],
    );
}

#[test]
fn unknown_keys_suggest_the_near_miss() {
    let input = parse_quote! {
        #[orm(table = person, primary_kye = id)]
        pub struct Person {
            pub id: i32,
            #[relation(belongs_to = Person, foriegn_key = id, lazzy = "joined")]
            pub manager: Rel<Option<Person>>,
        }
    };
    let messages = errors(&derive(&input));
    assert_eq!(messages[0], "unknown `orm` key `primary_kye`; did you mean `primary_key`?");
    assert_eq!(messages[1], "unknown `relation` key `foriegn_key`; did you mean `foreign_key`?");
    assert_eq!(messages[2], "unknown `relation` key `lazzy`; did you mean `lazy`?");
}

#[test]
fn malformed_attributes_are_errors_not_panics() {
    let inputs: Vec<syn::DeriveInput> = vec![
        parse_quote!(
            #[orm(table)]
            pub struct A {
                pub id: i32,
            }
        ),
        parse_quote!(
            #[orm(table = )]
            pub struct A {
                pub id: i32,
            }
        ),
        parse_quote!(
            #[orm(table = person)]
            pub struct A {
                pub id: i32,
                #[relation]
                pub r: Rel<Option<A>>,
            }
        ),
        parse_quote!(
            #[orm(table = person)]
            pub struct A {
                pub id: i32,
                #[relation(belongs_to)]
                pub r: Rel<Option<A>>,
            }
        ),
        parse_quote!(
            #[orm(table = person)]
            pub struct A {
                pub id: i32,
                #[relation(join_depth = "x")]
                pub r: Rel<Option<A>>,
            }
        ),
        parse_quote!(
            #[orm(table = person)]
            pub struct A {
                pub id: i32,
                #[relation(lazy = 3)]
                pub r: Rel<Option<A>>,
            }
        ),
        parse_quote!(
            #[orm(table = person)]
            pub union A {
                pub id: i32,
            }
        ),
    ];
    for input in &inputs {
        let output = derive(input);
        assert!(!errors(&output).is_empty(), "{}", quote::quote!(#input));
    }
}

/// Arbitrary attribute token streams never panic the derive: they expand or they are errors.
mod fuzz {
    use proptest::prelude::*;

    use crate::expand::derive;

    const WORDS: &[&str] = &[
        "belongs_to",
        "has_one",
        "has_many",
        "many_to_many",
        "foreign_key",
        "target_key",
        "through",
        "lazy",
        "join_depth",
        "table",
        "primary_key",
        "Person",
        "Self",
        "person",
        "id",
        "manager_id",
        "\"joined\"",
        "\"selectin\"",
        "\"raise\"",
        "\"select\"",
        "\"eagre\"",
        "0",
        "1",
        "4294967296",
        "-1",
        "=",
        ",",
        "::",
        "(1)",
        "(Person)",
        "[x]",
        "#",
        "'a",
        "\"\"",
        "true",
    ];

    const TYPES: &[&str] = &[
        "Option<Person>",
        "Vec<Person>",
        "Person",
        "Box<Person>",
        "Option<Vec<Person>>",
        "i32",
        "()",
    ];

    fn tokens() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(WORDS), 0..12).prop_map(|w| w.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_parser_never_panics(
            orm in tokens(),
            relation in tokens(),
            ty in proptest::sample::select(TYPES),
        ) {
            let source = format!(
                "#[orm({orm})] pub struct Person {{ pub id: i32, pub manager_id: Option<i32>, \
                 #[relation({relation})] pub manager: Rel<{ty}> }}"
            );
            // Delimiters are balanced, so every input is a struct: the derive sees them all.
            let input = syn::parse_str::<syn::DeriveInput>(&source).expect("a struct");
            let _ = derive(&input);
        }
    }
}
