//! `#[orm(..)]` and `#[relation(..)]` -> typed attributes with spans. Syntax only: duplicate and
//! unknown keys are reported here, the rules that relate keys to each other live in validate.rs.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Ident, LitInt, LitStr, Path};

use crate::case::did_you_mean;
use crate::ctxt::Ctxt;

/// A value together with the tokens it came from.
#[derive(Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// An attribute value that may be given at most once.
struct Once<'c, T> {
    cx: &'c Ctxt,
    key: &'static str,
    value: Option<Spanned<T>>,
}

impl<'c, T> Once<'c, T> {
    fn new(cx: &'c Ctxt, key: &'static str) -> Self {
        Once { cx, key, value: None }
    }

    fn set(&mut self, key_span: &Path, value: T, span: Span) {
        if self.value.is_some() {
            self.cx.error_spanned_by(key_span, format!("duplicate `{}` key", self.key));
        } else {
            self.value = Some(Spanned { value, span });
        }
    }

    fn get(self) -> Option<Spanned<T>> {
        self.value
    }
}

/// `#[orm(..)]` on the struct.
pub struct OrmAttr {
    pub table: Option<Spanned<Path>>,
    pub primary_key: Option<Spanned<Ident>>,
}

const ORM_KEYS: &[&str] = &["table", "primary_key"];

impl OrmAttr {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut table = Once::new(cx, "table");
        let mut primary_key = Once::new(cx, "primary_key");
        for attr in attrs.iter().filter(|a| a.path().is_ident("orm")) {
            let result = attr.parse_nested_meta(|meta| {
                // #[orm(table = person)]
                if meta.path.is_ident("table") {
                    let path: Path = meta.value()?.parse()?;
                    let span = spanned_path(&path);
                    table.set(&meta.path, path, span);
                // #[orm(primary_key = id)]
                } else if meta.path.is_ident("primary_key") {
                    let ident: Ident = meta.value()?.parse()?;
                    let span = ident.span();
                    primary_key.set(&meta.path, ident, span);
                } else {
                    unknown_key(cx, &meta, "orm", ORM_KEYS)?;
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        }
        OrmAttr { table: table.get(), primary_key: primary_key.get() }
    }
}

/// The relation kind keyword.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KindKw {
    BelongsTo,
    HasOne,
    HasMany,
    ManyToMany,
}

impl KindKw {
    pub fn keyword(self) -> &'static str {
        match self {
            KindKw::BelongsTo => "belongs_to",
            KindKw::HasOne => "has_one",
            KindKw::HasMany => "has_many",
            KindKw::ManyToMany => "many_to_many",
        }
    }

    const ALL: [KindKw; 4] =
        [KindKw::BelongsTo, KindKw::HasOne, KindKw::HasMany, KindKw::ManyToMany];
}

/// The strategy keyword of `lazy = ".."`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StrategyKw {
    Select,
    Joined,
    Selectin,
    Raise,
}

const STRATEGIES: &[(&str, StrategyKw)] = &[
    ("select", StrategyKw::Select),
    ("joined", StrategyKw::Joined),
    ("selectin", StrategyKw::Selectin),
    ("raise", StrategyKw::Raise),
];

/// `#[relation(..)]` on a field.
pub struct RelationAttr {
    /// Every kind key given (validation wants exactly one).
    pub kinds: Vec<(Spanned<KindKw>, Path)>,
    pub foreign_key: Option<Spanned<Ident>>,
    pub target_key: Option<Spanned<Ident>>,
    pub through: Option<Spanned<Path>>,
    pub lazy: Option<Spanned<StrategyKw>>,
    pub join_depth: Option<Spanned<u32>>,
    /// The declared order, as fields of the target.
    pub order_by: Option<Spanned<Vec<OrderField>>>,
    /// `innerjoin = true`: joined loads use an inner join.
    pub innerjoin: Option<Spanned<bool>>,
    /// The attribute itself, for errors about what it lacks.
    pub attr_span: Span,
}

const RELATION_KEYS: &[&str] = &[
    "belongs_to",
    "has_one",
    "has_many",
    "many_to_many",
    "foreign_key",
    "target_key",
    "through",
    "lazy",
    "join_depth",
    "order_by",
    "innerjoin",
];

/// One term of `order_by`: a field of the target and its direction.
#[derive(Clone)]
pub struct OrderField {
    pub field: Ident,
    pub descending: bool,
}

impl RelationAttr {
    pub fn from_ast(cx: &Ctxt, attr: &Attribute) -> Self {
        let mut kinds = Vec::new();
        let mut foreign_key = Once::new(cx, "foreign_key");
        let mut target_key = Once::new(cx, "target_key");
        let mut through = Once::new(cx, "through");
        let mut lazy = Once::new(cx, "lazy");
        let mut join_depth = Once::new(cx, "join_depth");
        let mut order_by = Once::new(cx, "order_by");
        let mut innerjoin = Once::new(cx, "innerjoin");
        let result = attr.parse_nested_meta(|meta| {
            // #[relation(belongs_to = Address)], has_one, has_many, many_to_many
            if let Some(kind) = KindKw::ALL.into_iter().find(|k| meta.path.is_ident(k.keyword())) {
                let target: Path = meta.value()?.parse()?;
                let span = meta.path.get_ident().map_or_else(Span::call_site, Ident::span);
                if kinds.iter().any(|(k, _): &(Spanned<KindKw>, Path)| k.value == kind) {
                    cx.error_spanned_by(&meta.path, format!("duplicate `{}` key", kind.keyword()));
                } else {
                    kinds.push((Spanned { value: kind, span }, target));
                }
            // #[relation(foreign_key = address_id)]
            } else if meta.path.is_ident("foreign_key") {
                let ident = ident_value(&meta)?;
                foreign_key.set(&meta.path, ident.clone(), ident.span());
            // #[relation(target_key = project_id)]
            } else if meta.path.is_ident("target_key") {
                let ident = ident_value(&meta)?;
                target_key.set(&meta.path, ident.clone(), ident.span());
            // #[relation(through = person_project)]
            } else if meta.path.is_ident("through") {
                let path: Path = meta.value()?.parse()?;
                let span = spanned_path(&path);
                through.set(&meta.path, path, span);
            // #[relation(lazy = "joined")]
            } else if meta.path.is_ident("lazy") {
                let lit: LitStr = meta.value()?.parse()?;
                match STRATEGIES.iter().find(|(name, _)| lit.value() == *name) {
                    Some((_, strategy)) => lazy.set(&meta.path, *strategy, lit.span()),
                    None => cx.error_spanned_by(&lit, unknown_strategy(&lit.value())),
                }
            // #[relation(join_depth = 2)]
            } else if meta.path.is_ident("join_depth") {
                let lit: LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<u32>() {
                    Ok(depth) => join_depth.set(&meta.path, depth, lit.span()),
                    Err(_) => cx.error_spanned_by(&lit, "`join_depth` must be a positive integer"),
                }
            // #[relation(order_by = created_at.desc())], or a tuple of such terms
            } else if meta.path.is_ident("order_by") {
                let expr: syn::Expr = meta.value()?.parse()?;
                let span = syn::spanned::Spanned::span(&expr);
                match order_fields(&expr) {
                    Ok(fields) => order_by.set(&meta.path, fields, span),
                    Err(error) => cx.syn_error(error),
                }
            // #[relation(innerjoin = true)]
            } else if meta.path.is_ident("innerjoin") {
                let lit: syn::LitBool = meta.value()?.parse()?;
                innerjoin.set(&meta.path, lit.value, lit.span);
            } else {
                unknown_key(cx, &meta, "relation", RELATION_KEYS)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
        RelationAttr {
            kinds,
            foreign_key: foreign_key.get(),
            target_key: target_key.get(),
            through: through.get(),
            lazy: lazy.get(),
            join_depth: join_depth.get(),
            order_by: order_by.get(),
            innerjoin: innerjoin.get(),
            attr_span: attr_span(attr),
        }
    }
}

/// The terms of `order_by = ..`: `field`, `field.asc()`, `field.desc()`, or a tuple of them.
fn order_fields(expr: &syn::Expr) -> syn::Result<Vec<OrderField>> {
    use syn::Expr;
    let field = |expr: &Expr| match expr {
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident().cloned(),
        _ => None,
    };
    match expr {
        Expr::Tuple(tuple) if !tuple.elems.is_empty() => {
            let mut fields = Vec::new();
            for elem in &tuple.elems {
                fields.extend(order_fields(elem)?);
            }
            Ok(fields)
        }
        Expr::Paren(paren) => order_fields(&paren.expr),
        Expr::MethodCall(call) if call.args.is_empty() && call.turbofish.is_none() => {
            let descending = match call.method.to_string().as_str() {
                "asc" => false,
                "desc" => true,
                other => {
                    return Err(syn::Error::new(
                        call.method.span(),
                        format!("unknown order `{other}`, expected `asc()` or `desc()`"),
                    ))
                }
            };
            match field(&call.receiver) {
                Some(field) => Ok(vec![OrderField { field, descending }]),
                None => Err(order_error(&call.receiver)),
            }
        }
        _ => match field(expr) {
            Some(field) => Ok(vec![OrderField { field, descending: false }]),
            None => Err(order_error(expr)),
        },
    }
}

fn order_error(expr: &syn::Expr) -> syn::Error {
    syn::Error::new_spanned(
        expr,
        "expected a field of the relation's target, `field.asc()` or `field.desc()`, or a tuple of them, e.g. `order_by = (score.desc(), id)`",
    )
}

fn ident_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Ident> {
    meta.value()?.parse()
}

fn unknown_strategy(value: &str) -> String {
    let names: Vec<&str> = STRATEGIES.iter().map(|(name, _)| *name).collect();
    let list = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    match did_you_mean(value, &names) {
        Some(hint) => {
            format!("unknown strategy `{value}`, expected one of {list}; did you mean `{hint}`?")
        }
        None => format!("unknown strategy `{value}`, expected one of {list}"),
    }
}

/// Reports an unknown key and skips its value so the rest of the attribute is still read.
fn unknown_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    attr: &str,
    keys: &[&str],
) -> syn::Result<()> {
    let name = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
    let message = match did_you_mean(&name, keys) {
        Some(hint) => format!("unknown `{attr}` key `{name}`; did you mean `{hint}`?"),
        None => {
            let list = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            format!("unknown `{attr}` key `{name}`, expected one of {list}")
        }
    };
    cx.error_spanned_by(&meta.path, message);
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        meta.parse_nested_meta(|_| Ok(()))?;
    }
    Ok(())
}

fn spanned_path(path: &Path) -> Span {
    let mut tokens = quote::ToTokens::to_token_stream(path).into_iter();
    tokens.next().map_or_else(Span::call_site, |t| t.span())
}

fn attr_span(attr: &Attribute) -> Span {
    attr.path().get_ident().map_or_else(Span::call_site, Ident::span)
}
