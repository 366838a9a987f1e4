//! On error: the errors, plus a `Model` impl with unreachable bodies so code using the model
//! does not add a cascade of follow-up errors (thiserror's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use super::private;

pub fn expand(input: &DeriveInput, error: Option<syn::Error>) -> TokenStream {
    let errors = error.map(|e| e.to_compile_error());
    let ident = &input.ident;
    let p = private();
    // A generic struct or an enum has no sensible impl to fake: the error alone is enough. Nor
    // has a struct with a `Rel<..>` of no known shape: rustc already rejects that field, and any
    // impl would repeat the error once per bound that needs the struct to be well-formed.
    if !input.generics.params.is_empty()
        || !matches!(input.data, syn::Data::Struct(_))
        || has_unknown_shape(input)
    {
        return quote!(#errors);
    }
    let (markers, relations) = relation_dummies(input);
    let vis = &input.vis;
    let state = quote::format_ident!("{}State", ident);
    quote! {
        #errors
        #markers
        #[doc(hidden)]
        #vis struct #state;
        #[allow(unreachable_code, non_upper_case_globals, clippy::all)]
        const _: () = {
            #relations
            #[automatically_derived]
            impl #ident {
                pub fn query<__DB: #p::OrmBackend>() -> #p::Query<Self, __DB> {
                    unreachable!()
                }
            }
            #[automatically_derived]
            impl #p::Model for #ident {
                type Key = i64;
                type Table = ();
                type Base = #state;
                type Bare = #state;
                const NAME: &'static str = stringify!(#ident);
                const FIELDS: &'static [&'static str] = &[];
                const COLUMNS: &'static [&'static str] = &[];
                const KEY_COLUMN: usize = 0;
                const RELATIONS: &'static [#p::RelationInfo] = &[];
                fn table() -> #p::SqlTable {
                    unreachable!()
                }
                fn key(&self) -> &i64 {
                    unreachable!()
                }
                fn same_row(&self, _: &Self) -> bool {
                    unreachable!()
                }
                fn visit_relation<__V: #p::RelationVisitor<Self>>(
                    _: usize,
                    _: __V,
                ) -> #p::Option<__V::Output> {
                    unreachable!()
                }
            }
            #p::impl_required_shape!(#ident);
            #[automatically_derived]
            impl #p::State for #state {
                type Model = #ident;
            }
            #[automatically_derived]
            impl<__DB: #p::diesel::backend::Backend> #p::Decode<__DB> for #ident {
                fn decode_at<'__a, __R: #p::diesel::row::Row<'__a, __DB>>(
                    _: &__R,
                    _: usize,
                    _: <Self as #p::Model>::Key,
                ) -> #p::diesel::deserialize::Result<Self>
                where
                    Self: #p::Model,
                {
                    unreachable!()
                }
            }
        };
    }
}

/// Relation handles for every `#[relation]` field, so `Person::address` still resolves. Their
/// impls are dummies: the model failed to derive, nothing runs.
fn relation_dummies(input: &DeriveInput) -> (TokenStream, TokenStream) {
    let syn::Data::Struct(data) = &input.data else {
        return Default::default();
    };
    let fields: Vec<&syn::Ident> = data
        .fields
        .iter()
        .filter(|f| f.attrs.iter().any(|a| a.path().is_ident("relation")))
        .filter_map(|f| f.ident.as_ref())
        .collect();
    if fields.is_empty() {
        return Default::default();
    }
    let p = private();
    let ident = &input.ident;
    let state = quote::format_ident!("{}State", ident);
    let vis = &input.vis;
    let module = quote::format_ident!("{}_rel", crate::case::snake_case(&ident.to_string()));
    let markers = quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis mod #module {
            #(#[derive(Clone, Copy, Debug, Default)] pub struct #fields;)*
        }
    };
    let relations = quote! {
        #(
            #[automatically_derived]
            impl #p::RelationOf<#ident> for #module::#fields {}
            #[automatically_derived]
            impl #p::Relation for #module::#fields {
                type Parent = #ident;
                type Target = #ident;
                type Shape = #p::Vec<#ident>;
                type JoinKey = i64;
                const INDEX: usize = 0;
                fn slot(_: &#ident) -> &#p::Rel<#p::Vec<#ident>> {
                    unreachable!()
                }
                fn parent_key(_: &#ident) -> #p::Option<&i64> {
                    unreachable!()
                }
                fn target_key(_: &#ident) -> #p::Option<&i64> {
                    unreachable!()
                }
            }
        )*
        #(
            #[automatically_derived]
            impl<__K, __Sub> #p::Apply<#state> for #p::RelOption<#module::#fields, __K, __Sub> {
                type Out = #state;
            }
        )*
        impl #ident {
            #(pub const #fields: #module::#fields = #module::#fields;)*
        }
    };
    (markers, relations)
}

/// Whether a relation field is a `Rel<..>` of no shape `Rel` supports (`Rel<Box<T>>`).
fn has_unknown_shape(input: &DeriveInput) -> bool {
    let syn::Data::Struct(data) = &input.data else { return false };
    data.fields.iter().filter(|f| f.attrs.iter().any(|a| a.path().is_ident("relation"))).any(|f| {
        matches!(
            crate::model::FieldShape::from_type(&f.ty),
            Some(crate::model::FieldShape::Required(syn::Type::Path(p)))
                if p.path.segments.iter().any(|s| !s.arguments.is_none())
        )
    })
}
