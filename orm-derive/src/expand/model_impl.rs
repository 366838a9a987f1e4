//! `impl Model` (metadata, key, relation dispatch) and `impl Decode<DB>` (positional decoder).

use proc_macro2::Ident;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::private;
use super::relations::{marker_module, relation_info};
use crate::model::Model;

/// The local alias of a column's type: `__orm_column_<field>`.
pub fn column_alias(field: &Ident) -> Ident {
    format_ident!("__orm_column_{}", field)
}

/// One alias per column, so a wrong column is reported once, where it is named, however many
/// places use it. Goes inside [`expand_column_fallbacks`]' block, after the `table!` module's
/// glob import: a field the table lacks resolves to its fallback instead of the column.
pub fn expand_columns(model: &Model<'_>) -> TokenStream {
    let table = &model.table;
    // Imported under its own name, so rustc's messages name the user's module.
    let table_alias = table_module(model);
    let aliases = model.columns.iter().map(|c| {
        let alias = column_alias(c.ident);
        let field = c.ident;
        quote_spanned!(field.span()=> type #alias = #field;)
    });
    quote! {
        #[allow(unused_imports)]
        use #table as #table_alias;
        #[allow(unused_imports)]
        use #table_alias::*;
        #(#[allow(non_camel_case_types)] #aliases)*
    }
}

/// Per column field, a type of the field's name that fails to compile, with a message naming
/// the field and the table, wherever it is used. The block with the generated code imports the
/// `table!` module's names (its columns) over these, so a field is its column when the table
/// has one and this fallback when it does not: one error, at the field, which silences every
/// later use (a path to the missing column would be rustc's "cannot find type").
pub fn expand_column_fallbacks(model: &Model<'_>) -> TokenStream {
    let p = private();
    let table = table_module(model);
    let table_path = &model.table;
    let fallbacks = model.columns.iter().map(|c| {
        let field = c.ident;
        let message = format!(
            "no column `{field}` in table `{table}`: each field of a model is a column of its \
             `table!` (a relation field needs `#[relation(..)]`)"
        );
        let fail = quote_spanned!(field.span()=> ::core::panic!(#message));
        // Naming the table in the constant keeps a table that does not resolve at all to its own
        // one error: a constant that does not compile is not evaluated.
        quote! {
            #[allow(non_camel_case_types, dead_code)]
            type #field = <#p::Gate<{
                let _ = #table_path::table;
                #fail
            }> as #p::Pick<()>>::Type;
        }
    });
    quote!(#(#fallbacks)*)
}

/// The `table!` module's name, as imported in the generated block.
fn table_module(model: &Model<'_>) -> Ident {
    let last = model.table.segments.last().map(|s| s.ident.clone());
    last.unwrap_or_else(|| format_ident!("__orm_table"))
}

pub fn expand_model(model: &Model<'_>) -> TokenStream {
    let p = private();
    let ident = model.ident;
    let table_module = table_module(model);
    let Some((key_index, key)) = model.key_column() else {
        return TokenStream::new();
    };
    let key_ident = key.ident;
    // The key type named through a gate, as relation targets are (relations.rs): a type that is
    // not a key is one error at the key field, not one per bound it misses at every use.
    let key_ty = key.ty;
    let message = format!(
        "`{}` is not a key type: keys are `i16`, `i32`, `i64`, `String` and `Vec<u8>` (and \
         `uuid::Uuid` in a PostgreSQL-only build with orm-core's `uuid` feature)",
        quote!(#key_ty).to_string().replace(' ', "")
    );
    let check = quote_spanned! {key_ty.span()=>
        if !<#p::KeyProbe<#key_ty>>::IS_KEY {
            ::core::panic!(#message)
        }
    };
    let key_ty = quote! {
        <#p::Gate<{
            #[allow(unused_imports)]
            use #p::NotAKey as _;
            #check
            true
        }> as #p::Pick<#key_ty>>::Type
    };
    let columns = model.columns.iter().map(|c| {
        let column = column_alias(c.ident);
        quote!(<#column as #p::diesel::Column>::NAME)
    });
    // The declared key must be the `table!`'s: another column would merge distinct rows. At the
    // key's token: "expected `isbn`, found `id`".
    let key_column = &model.primary_key;
    let table_at_key = Ident::new(&table_module.to_string(), key_column.span());
    let key_check = quote_spanned! {key_column.span()=>
        const _: fn() = || {
            let _: <#table_at_key::table as #p::diesel::Table>::PrimaryKey = #table_at_key::#key_column;
        };
    };
    let fields = model.columns.iter().map(|c| c.ident.to_string());
    let compared = model.columns.iter().map(|c| {
        let field = c.ident;
        quote!((&#p::Compare(&self.#field, &__other.#field)).same())
    });
    let infos = model.relations.iter().map(relation_info);
    let module = marker_module(model);
    let visitor = quote!(__visitor);
    let state_types = super::state::expand_base_types(model);
    let arms = model.relations.iter().enumerate().map(|(index, r)| {
        let marker = r.ident;
        // At the target: a target that is not a model is reported there only.
        let at_target = super::relations::target_span(&r.target);
        quote_spanned!(at_target=> #index => #p::Option::Some(#visitor.visit::<#module::#marker>()),)
    });
    let query_doc = format!("A query over `{ident}`'s table; `.load(&mut session)` runs it.");
    quote! {
        #key_check
        #[automatically_derived]
        impl #ident {
            #[doc = #query_doc]
            pub fn query<__DB: #p::OrmBackend>() -> #p::Query<Self, __DB> {
                #p::Query::new()
            }
        }
        #[automatically_derived]
        impl #p::Model for #ident {
            type Key = #key_ty;
            type Table = #table_module::table;
            #state_types
            const NAME: &'static str = stringify!(#ident);
            const FIELDS: &'static [&'static str] = &[#(#fields),*];
            const COLUMNS: &'static [&'static str] = &[#(#columns),*];
            const KEY_COLUMN: usize = #key_index;
            const RELATIONS: &'static [#p::RelationInfo] = &[#(#infos),*];

            fn table() -> #p::SqlTable {
                static TABLE: #p::OnceLock<#p::SqlTable> = #p::OnceLock::new();
                *TABLE.get_or_init(#p::SqlTable::of::<#table_module::table>)
            }

            fn key(&self) -> &Self::Key {
                &self.#key_ident
            }

            fn same_row(&self, __other: &Self) -> bool {
                #[allow(unused_imports)]
                use #p::{SameByDefault as _, SameByEq as _};
                true #(&& #compared)*
            }

            fn visit_relation<__V: #p::RelationVisitor<Self>>(
                __index: usize,
                __visitor: __V,
            ) -> #p::Option<__V::Output> {
                match __index {
                    #(#arms)*
                    _ => #p::Option::None,
                }
            }
        }
    }
}

/// One `impl Decode<DB>` per backend orm-core enables. Each field is decoded by a call spanned
/// at the field's type, so a type that cannot hold the column's SQL type is an error there.
pub fn expand_decode(model: &Model<'_>) -> TokenStream {
    let p = private();
    let ident = model.ident;
    let model_name = ident.to_string();
    let mut key_check = TokenStream::new();
    let columns = model.columns.iter().enumerate().map(|(index, c)| {
        let field = c.ident;
        let ty = c.ty;
        let column = column_alias(field);
        // Located at the field's type for the error, resolved at the call site for hygiene.
        let at_ty = proc_macro2::Span::call_site().located_at(ty.span());
        if *field == model.primary_key {
            // The loader reads the key first; check its type against the column all the same.
            key_check = quote_spanned! {at_ty=>
                const _: fn() = || {
                    #p::assert_column::<<#column as #p::diesel::Expression>::SqlType, #ty, $db>();
                };
            };
            return quote!(#field: __key,);
        }
        let decode = quote_spanned! {at_ty=>
            #p::field_at::<__DB, <#column as #p::diesel::Expression>::SqlType, #ty, __R>(
                __row,
                __offset + #index,
                #model_name,
                <#column as #p::diesel::Column>::NAME,
            )
        };
        quote!(#field: #decode?,)
    });
    let columns: Vec<TokenStream> = columns.collect();
    let relations = model.relations.iter().map(|r| {
        let field = r.ident;
        quote!(#field: #p::Rel::new(),)
    });
    quote! {
        macro_rules! __orm_decode {
            ($db:ty) => {
                #[automatically_derived]
                impl #p::Decode<$db> for #ident {
                    fn decode_at<'__a, __R: #p::diesel::row::Row<'__a, $db>>(
                        __row: &__R,
                        __offset: usize,
                        __key: <Self as #p::Model>::Key,
                    ) -> #p::diesel::deserialize::Result<Self>
                    where
                        Self: #p::Model,
                    {
                        type __DB = $db;
                        #p::Result::Ok(#ident {
                            #(#columns)*
                            #(#relations)*
                        })
                    }
                }
                #key_check
            };
        }
        #p::for_each_backend!(__orm_decode);
    }
}
