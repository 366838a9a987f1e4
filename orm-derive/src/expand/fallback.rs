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
    // A generic struct or an enum has no sensible impl to fake: the error alone is enough.
    if !input.generics.params.is_empty() || !matches!(input.data, syn::Data::Struct(_)) {
        return quote!(#errors);
    }
    quote! {
        #errors
        #[allow(unreachable_code, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #p::Model for #ident {
                type Key = i64;
                const NAME: &'static str = stringify!(#ident);
                const TABLE: &'static str = "";
                const COLUMNS: &'static [&'static str] = &[];
                const KEY_COLUMN: usize = 0;
                const RELATIONS: &'static [#p::RelationInfo] = &[];
                fn key(&self) -> &i64 {
                    unreachable!()
                }
                fn visit_relation<__V: #p::RelationVisitor<Self>>(
                    _: usize,
                    _: __V,
                ) -> #p::Option<__V::Output> {
                    unreachable!()
                }
            }
            #[automatically_derived]
            impl<__DB: #p::diesel::backend::Backend> #p::Decode<__DB> for #ident {
                fn decode_at<'__a, __R: #p::diesel::row::Row<'__a, __DB>>(
                    _: &__R,
                    _: usize,
                ) -> #p::diesel::deserialize::Result<Self> {
                    unreachable!()
                }
            }
        };
    }
}
