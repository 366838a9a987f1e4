//! Per relation: a marker type (the handle's type), its `impl Relation`, the `Person::address`
//! handle constant, and its static `RelationInfo`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use super::private;
use crate::attr::{KindKw, StrategyKw};
use crate::case::snake_case;
use crate::model::{FieldShape, Model, Relation};

/// The module holding the relation markers: `person_rel` for `Person`.
pub fn marker_module(model: &Model<'_>) -> Ident {
    format_ident!("{}_rel", snake_case(&model.ident.to_string()))
}

pub fn expand_markers(model: &Model<'_>) -> TokenStream {
    if model.relations.is_empty() {
        return TokenStream::new();
    }
    let vis = model.vis;
    let module = marker_module(model);
    let doc = format!("Relation handle types of [`{}`], one per relation field.", model.ident);
    let markers = model.relations.iter().map(|r| {
        let marker = r.ident;
        let doc = format!("The type of the relation handle `{}::{}`.", model.ident, marker);
        quote! {
            #[doc = #doc]
            #[derive(Clone, Copy, Debug, Default)]
            pub struct #marker;
        }
    });
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis mod #module {
            #(#markers)*
        }
    }
}

/// The local name generated code gives a relation's target: `__orm_target_<field>`.
pub fn target_alias(relation: &Relation<'_>) -> Ident {
    format_ident!("__orm_target_{}", relation.ident)
}

/// One alias per relation for its target, named through a gate that fails to compile when the
/// target is not a model: one error, at the target, and none from the code that uses it.
pub fn expand_targets(model: &Model<'_>) -> TokenStream {
    let p = private();
    let aliases = model.relations.iter().map(|relation| {
        let alias = target_alias(relation);
        let target = &relation.target;
        let name = quote!(#target).to_string().replace(' ', "");
        let message = format!(
            "`{name}` is not a model: relation targets must `#[derive(Model)]`; add \
             `#[derive(Model)]` and `#[orm(table = ..)]` to `{name}`"
        );
        let check = quote_spanned! {target_span(target)=>
            if !<#p::Probe<#target>>::IS_MODEL {
                ::core::panic!(#message)
            }
        };
        quote! {
            #[allow(non_camel_case_types)]
            type #alias = <#p::Gate<{
                #[allow(unused_imports)]
                use #p::NotAModel as _;
                #check
                true
            }> as #p::Pick<#target>>::Type;
        }
    });
    quote!(#(#aliases)*)
}

pub fn relation_info(relation: &Relation<'_>) -> TokenStream {
    let p = private();
    let name = relation.ident.to_string();
    let target = relation.target.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
    let kind = match relation.kind.value {
        KindKw::BelongsTo => quote!(BelongsTo),
        KindKw::HasOne => quote!(HasOne),
        KindKw::HasMany => quote!(HasMany),
        KindKw::ManyToMany => quote!(ManyToMany),
    };
    let strategy = match relation.strategy.value {
        StrategyKw::Select => quote!(Lazy),
        StrategyKw::Joined => quote!(Joined),
        StrategyKw::Selectin => quote!(Selectin),
        StrategyKw::Raise => quote!(Raise),
    };
    let join_depth = match &relation.join_depth {
        Some(depth) => {
            let depth = depth.value;
            quote!(#p::Option::Some(#depth))
        }
        None => quote!(#p::Option::None),
    };
    let fk = &relation.foreign_key.value;
    let link = match (relation.kind.value, &relation.through, &relation.target_key) {
        (KindKw::BelongsTo, _, _) => {
            let column = super::model_impl::column_alias(fk);
            quote!(#p::Link::ParentColumn(<#column as #p::diesel::Column>::NAME))
        }
        (KindKw::ManyToMany, Some(through), Some(target_key)) => {
            let through_path = &through.value;
            let parent = quote_spanned!(fk.span()=> #through_path::#fk);
            let tk = &target_key.value;
            let target_column = quote_spanned!(tk.span()=> #through_path::#tk);
            // diesel's names for the association table (its `sql_name`, its schema), once.
            let table = quote!({
                fn __orm_through() -> #p::SqlTable {
                    static TABLE: #p::OnceLock<#p::SqlTable> = #p::OnceLock::new();
                    *TABLE.get_or_init(#p::SqlTable::of::<#through_path::table>)
                }
                __orm_through
            });
            quote!(#p::Link::Through {
                table: #table,
                parent_column: <#parent as #p::diesel::Column>::NAME,
                target_column: <#target_column as #p::diesel::Column>::NAME,
            })
        }
        _ => {
            // The target's field: its column's SQL name comes from the target model.
            let field = fk.to_string();
            let target = target_alias(relation);
            let at_target = target_span(&relation.target);
            quote_spanned!(at_target=> #p::Link::TargetColumn(#p::column_named(
                <#target as #p::Model>::FIELDS,
                <#target as #p::Model>::COLUMNS,
                #field,
            )))
        }
    };
    let order_by = expand_order_by(relation);
    let innerjoin = relation.attr.innerjoin.as_ref().is_some_and(|i| i.value);
    quote! {
        #p::RelationInfo {
            name: #name,
            target: #target,
            kind: #p::RelationKind::#kind,
            strategy: #p::Strategy::#strategy,
            join_depth: #join_depth,
            link: #link,
            order_by: #order_by,
            innerjoin: #innerjoin,
        }
    }
}

/// The declared order's terms: each field's column on the target.
fn expand_order_by(relation: &Relation<'_>) -> TokenStream {
    let p = private();
    let Some(order) = &relation.order_by else {
        return quote!(&[]);
    };
    let target = target_alias(relation);
    let terms = order.value.iter().map(|term| {
        let field = term.field.to_string();
        let descending = term.descending;
        quote_spanned! {term.field.span()=>
            #p::OrderTerm {
                column: #p::column_named(
                    <#target as #p::Model>::FIELDS,
                    <#target as #p::Model>::COLUMNS,
                    #field,
                ),
                descending: #descending,
            }
        }
    });
    quote!(&[#(#terms),*])
}

/// The declared order's fields are fields of the target: one error per unknown field, at it (a
/// free constant, evaluated by `cargo check` too).
fn order_by_check(relation: &Relation<'_>) -> TokenStream {
    let p = private();
    let Some(order) = &relation.order_by else {
        return TokenStream::new();
    };
    let target = target_alias(relation);
    let target_name =
        relation.target.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
    let checks = order.value.iter().map(|term| {
        let field = term.field.to_string();
        let message = format!(
            "no field `{field}` in `{target_name}`: `order_by` names fields of the relation's target"
        );
        quote_spanned! {term.field.span()=>
            const _: () = if !#p::has_field(<#target as #p::Model>::FIELDS, #field) {
                ::core::panic!(#message)
            };
        }
    });
    quote!(#(#checks)*)
}

pub(crate) fn expand_relations(model: &Model<'_>) -> TokenStream {
    let p = private();
    let ident = model.ident;
    let module = marker_module(model);
    let impls = model.relations.iter().enumerate().map(|(index, relation)| {
        let field = relation.ident;
        let field_ty = relation.ty;
        let target = &relation.target;
        // The shape's type is the target (validated): both are named through the gated alias.
        let target_ty = target_alias(relation);
        let shape = match &relation.shape {
            Some(FieldShape::Optional(_)) => quote!(#p::Option<#target_ty>),
            Some(FieldShape::Collection(_)) => quote!(#p::Vec<#target_ty>),
            Some(FieldShape::Required(_)) | None => quote!(#target_ty),
        };
        let fk = &relation.foreign_key.value;
        // Everything that needs the target to be a model is spanned at the target, so a target
        // that is not a model is one error there.
        let at_target = target_span(target);
        let at_fk = Span::call_site().located_at(fk.span());
        // Locals are interpolated, so their hygiene stays the call site's.
        let target_arg = quote!(__target);
        let (join_key, parent_key, target_key) = match relation.kind.value {
            KindKw::BelongsTo => (
                quote_spanned!(at_target=> <#target_ty as #p::Model>::Key),
                quote_spanned!(at_fk=> #p::AsKey::<Self::JoinKey>::as_key(&__parent.#fk)),
                quote_spanned!(at_target=> #p::Option::Some(#p::Model::key(#target_arg))),
            ),
            KindKw::HasOne | KindKw::HasMany => (
                quote!(<#ident as #p::Model>::Key),
                quote!(#p::Option::Some(#p::Model::key(__parent))),
                quote_spanned!(at_fk=> #p::AsKey::<Self::JoinKey>::as_key(&(*__target).#fk)),
            ),
            KindKw::ManyToMany => (
                quote!(<#ident as #p::Model>::Key),
                quote!(#p::Option::Some(#p::Model::key(__parent))),
                quote!({
                    let _ = __target;
                    #p::Option::None
                }),
            ),
        };
        let through_check = through_check(model, relation);
        let order_by_check = order_by_check(relation);
        let declared_order = relation.order_by.as_ref().map(|_| {
            quote! {
                #[automatically_derived]
                impl #p::DeclaredOrder for #module::#field {}
            }
        });
        // A field whose `Rel<..>` holds another type than the target is one error, at its type.
        let at_field_ty = Span::call_site().located_at(syn::spanned::Spanned::span(field_ty));
        let slot = quote_spanned!(at_field_ty=> &__parent.#field);
        quote! {
            #[automatically_derived]
            impl #p::RelationOf<#ident> for #module::#field {}
            #[automatically_derived]
            impl #p::Relation for #module::#field {
                type Parent = #ident;
                type Target = #target_ty;
                type Shape = #shape;
                type JoinKey = #join_key;
                const INDEX: usize = #index;

                fn slot(__parent: &#ident) -> &#p::Rel<Self::Shape> {
                    #slot
                }

                fn parent_key(__parent: &#ident) -> #p::Option<&Self::JoinKey> {
                    #parent_key
                }

                fn target_key(__target: &Self::Target) -> #p::Option<&Self::JoinKey> {
                    #target_key
                }
            }
            #through_check
            #order_by_check
            #declared_order
        }
    });
    let handles = model.relations.iter().map(|relation| {
        let field = relation.ident;
        let doc =
            format!("The relation handle of `{}.{}`, for load options and joins.", ident, field);
        quote! {
            #[doc = #doc]
            pub const #field: #module::#field = #module::#field;
        }
    });
    quote! {
        #(#impls)*
        #[automatically_derived]
        impl #ident {
            #(#handles)*
        }
    }
}

/// For many_to_many: the association table's key columns hold the keys of both sides.
fn through_check(model: &Model<'_>, relation: &Relation<'_>) -> TokenStream {
    let (Some(through), Some(target_key)) = (&relation.through, &relation.target_key) else {
        return TokenStream::new();
    };
    if relation.kind.value != KindKw::ManyToMany {
        return TokenStream::new();
    }
    let p = private();
    let ident = model.ident;
    let target = target_alias(relation);
    let path = &through.value;
    let fk = &relation.foreign_key.value;
    let tk = &target_key.value;
    let parent_check = quote_spanned! {fk.span()=>
        #p::assert_key_column::<<#path::#fk as #p::diesel::Expression>::SqlType, <#ident as #p::Model>::Key>();
    };
    let target_check = quote_spanned! {tk.span()=>
        #p::assert_key_column::<<#path::#tk as #p::diesel::Expression>::SqlType, <#target as #p::Model>::Key>();
    };
    quote! {
        const _: fn() = || {
            #parent_check
            #target_check
        };
    }
}

/// The span of the target path's first token.
pub fn target_span(target: &syn::Path) -> proc_macro2::Span {
    quote::ToTokens::to_token_stream(target)
        .into_iter()
        .next()
        .map_or_else(proc_macro2::Span::call_site, |t| t.span())
}
