//! The typed loaded state: `PersonState<Address = No, ..>` with one slot per relation, its
//! `Has` impls (which slot is loaded) and `Apply` impls (what an option does to its slot).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use super::private;
use super::relations::{marker_module, target_alias, target_span};
use crate::attr::StrategyKw;
use crate::model::Model;

/// `PersonState` for `Person`.
pub fn state_ident(model: &Model<'_>) -> Ident {
    format_ident!("{}State", model.ident)
}

/// The slot parameters' names in the struct's declaration: `address` -> `Address`.
fn slot_names(model: &Model<'_>) -> Vec<Ident> {
    model
        .relations
        .iter()
        .map(|r| {
            let camel: String = r
                .ident
                .to_string()
                .split('_')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    let mut chars = part.chars();
                    chars
                        .next()
                        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
                })
                .collect();
            format_ident!("{}", camel, span = r.ident.span())
        })
        .collect()
}

/// The state struct, beside the model.
pub fn expand_state_struct(model: &Model<'_>) -> TokenStream {
    let p = private();
    let vis = model.vis;
    let ident = model.ident;
    let state = state_ident(model);
    let names = slot_names(model);
    let list = model.relations.iter().map(|r| format!("`{}`", r.ident)).collect::<Vec<_>>();
    let doc = if list.is_empty() {
        format!("The typed loaded state of [`{ident}`], which has no relations.")
    } else {
        format!(
            "The typed loaded state of [`{ident}`]: one slot per relation ({}), each \
             `No` or `Yes<state of the related objects>`. See `orm_core::Loaded`.",
            list.join(", ")
        )
    };
    quote! {
        #[doc = #doc]
        #vis struct #state<#(#names = #p::No),*>(#p::PhantomData<fn() -> (#(#names,)*)>);
    }
}

/// `impl State`, `impl Has` per relation, `impl Apply` per relation's options.
pub fn expand_state_impls(model: &Model<'_>) -> TokenStream {
    let p = private();
    let ident = model.ident;
    let state = state_ident(model);
    let module = marker_module(model);
    let params: Vec<Ident> =
        (0..model.relations.len()).map(|i| format_ident!("__S{}", i)).collect();
    let has = model.relations.iter().enumerate().map(|(index, relation)| {
        let marker = relation.ident;
        let others = params.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, p)| p);
        let slots = params.iter().enumerate().map(|(i, param)| {
            if i == index {
                quote!(#p::Yes<__I>)
            } else {
                quote!(#param)
            }
        });
        quote! {
            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl<__I, #(#others),*> #p::Has<#module::#marker> for #state<#(#slots),*> {
                type Inner = __I;
            }
        }
    });
    let apply = model.relations.iter().enumerate().map(|(index, relation)| {
        let marker = relation.ident;
        let target = target_alias(relation);
        let bare = quote_spanned!(target_span(&relation.target)=> <#target as #p::Model>::Bare);
        let slot = &params[index];
        let out = params.iter().enumerate().map(|(i, param)| {
            if i == index {
                quote!(<__K as #p::SlotFor<__Out>>::Slot)
            } else {
                quote!(#param)
            }
        });
        // `do_not_recommend`: a wrong option is reported with its own words, not with the list of
        // every relation's impl. Nested options are checked at `.then(..)`, so the error still
        // points at the inner option.
        quote! {
            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl<#(#params,)* __K, __Sub, __Cur, __Out> #p::Apply<#state<#(#params),*>>
                for #p::RelOption<#module::#marker, __K, __Sub>
            where
                #slot: #p::InnerOr<#bare, Inner = __Cur>,
                __Cur: #p::State<Model = #target>,
                __Sub: #p::Apply<__Cur, Out = __Out>,
                __K: #p::SlotFor<__Out>,
            {
                type Out = #state<#(#out),*>;
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl<#(#params),*> #p::State for #state<#(#params),*> {
            type Model = #ident;
        }
        #(#has)*
        #(#apply)*
    }
}

/// `type Base` (declared `joined`/`selectin` relations loaded) and `type Bare` of `impl Model`.
///
/// A declared eager relation is always loaded on the query's own objects (the root of the load
/// path, where no `join_depth` or cycle has cut it yet). Its objects are in their model's bare
/// state: further down, a cycle or `join_depth` can stop the declared default, which the type
/// cannot follow.
pub fn expand_base_types(model: &Model<'_>) -> TokenStream {
    let p = private();
    let state = state_ident(model);
    let slots = model.relations.iter().map(|relation| match relation.strategy.value {
        StrategyKw::Joined | StrategyKw::Selectin => {
            let target = target_alias(relation);
            let bare = quote_spanned!(target_span(&relation.target)=> <#target as #p::Model>::Bare);
            quote!(#p::Yes<#bare>)
        }
        StrategyKw::Select | StrategyKw::Raise => quote!(#p::No),
    });
    quote! {
        type Base = #state<#(#slots),*>;
        type Bare = #state;
    }
}
