//! Tokens from a validated `Model`: the entry point and the `const _` wrapper.

mod fallback;
mod model_impl;
mod relations;
mod state;

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::ctxt::Ctxt;
use crate::model::Model;
use crate::validate;

/// The derive, on `proc_macro2` types so unit tests can call it.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let model = Model::from_ast(&cx, input);
    if let Some(model) = &model {
        validate::check(&cx, model);
    }
    match (cx.check(), model) {
        (Ok(()), Some(model)) => expand(&model),
        (result, _) => fallback::expand(input, result.err()),
    }
}

/// The absolute path generated code names runtime items by.
pub fn private() -> TokenStream {
    quote!(::orm_core::__private)
}

fn expand(model: &Model<'_>) -> TokenStream {
    let markers = relations::expand_markers(model);
    let fallbacks = model_impl::expand_column_fallbacks(model);
    let columns = model_impl::expand_columns(model);
    let targets = relations::expand_targets(model);
    let model_impl = model_impl::expand_model(model);
    let decode_impl = model_impl::expand_decode(model);
    let relation_impls = relations::expand_relations(model);
    let state = state::expand_state_struct(model);
    let state_impls = state::expand_state_impls(model);
    let ident = model.ident;
    quote! {
        #markers
        #state
        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all)]
        const _: () = {
            #fallbacks
            const _: () = {
                #columns
                #targets
                #model_impl
                #decode_impl
                #relation_impls
                #state_impls
                ::orm_core::__private::impl_required_shape!(#ident);
            };
        };
    }
}
