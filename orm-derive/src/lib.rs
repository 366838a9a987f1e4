//! `#[derive(Model)]` for `orm-core`. Use it through `orm_core::Model`; the attribute
//! reference lives there.

mod attr;
mod case;
mod ctxt;
mod expand;
mod model;
mod validate;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `orm_core::Model`; see the attribute reference in `orm_core`.
#[proc_macro_derive(Model, attributes(orm, relation))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
