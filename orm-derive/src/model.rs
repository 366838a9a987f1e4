//! The IR: a `Model` with its column fields and relations, defaults resolved, spans kept.

use syn::{
    Data, DeriveInput, Field as SynField, Fields, GenericArgument, Ident, Path, PathArguments,
    Type, Visibility,
};

use crate::attr::{KindKw, OrderField, OrmAttr, RelationAttr, Spanned, StrategyKw};
use crate::case::snake_case;
use crate::ctxt::Ctxt;

/// A struct deriving `Model`.
pub struct Model<'a> {
    pub ident: &'a Ident,
    pub vis: &'a Visibility,
    /// The diesel `table!` module.
    pub table: Path,
    /// The field holding the primary key.
    pub primary_key: Ident,
    pub columns: Vec<Column<'a>>,
    pub relations: Vec<Relation<'a>>,
}

/// A field mapped to a column of the table.
pub struct Column<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
}

/// A `#[relation(..)]` field.
pub struct Relation<'a> {
    pub ident: &'a Ident,
    /// The field's whole type (`Rel<Option<Address>>`).
    pub ty: &'a Type,
    /// What `Rel<..>` wraps, if the field is a `Rel`.
    pub shape: Option<FieldShape<'a>>,
    pub kind: Spanned<KindKw>,
    /// The related model, as written (`Self` replaced by the struct's name).
    pub target: Path,
    pub self_referential: bool,
    /// The key column referring to the parent side: on this table for belongs_to, on the target
    /// for has_one/has_many, on the association table for many_to_many.
    pub foreign_key: Spanned<Ident>,
    /// Whether `foreign_key` was written or inferred.
    pub foreign_key_explicit: bool,
    /// For many_to_many: the association table's column referring to the target.
    pub target_key: Option<Spanned<Ident>>,
    pub through: Option<Spanned<Path>>,
    pub strategy: Spanned<StrategyKw>,
    pub join_depth: Option<Spanned<u32>>,
    /// The declared order of the target's rows (`order_by = ..`).
    pub order_by: Option<Spanned<Vec<OrderField>>>,
    pub attr: RelationAttr,
}

/// The type inside `Rel<..>`.
pub enum FieldShape<'a> {
    /// `Rel<Option<T>>`
    Optional(#[allow(dead_code)] &'a Type),
    /// `Rel<Vec<T>>`
    Collection(#[allow(dead_code)] &'a Type),
    /// `Rel<T>`
    Required(&'a Type),
}

impl<'a> Model<'a> {
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(fields) => &fields.named,
                _ => {
                    cx.error_spanned_by(
                        &input.ident,
                        "`Model` needs a struct with named fields, one per column",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "`Model` can only be derived for a struct, not an enum",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "`Model` can only be derived for a struct, not a union",
                );
                return None;
            }
        };
        if let Some(param) = input.generics.params.first() {
            cx.error_spanned_by(param, "`Model` cannot be derived for a generic struct");
            return None;
        }
        let orm = OrmAttr::from_ast(cx, &input.attrs);
        let Some(table) = orm.table else {
            cx.error_spanned_by(
                &input.ident,
                "missing `#[orm(table = ..)]`: name the diesel `table!` this struct maps to, e.g. `#[orm(table = person)]`",
            );
            return None;
        };

        let mut columns = Vec::new();
        let mut relations = Vec::new();
        for field in fields {
            let ident = field.ident.as_ref()?;
            let mut relation_attrs = field.attrs.iter().filter(|a| a.path().is_ident("relation"));
            match relation_attrs.next() {
                None => columns.push(Column { ident, ty: &field.ty }),
                Some(attr) => {
                    if let Some(extra) = relation_attrs.next() {
                        cx.error_spanned_by(extra, "a field takes one `#[relation(..)]` attribute");
                    }
                    let attr = RelationAttr::from_ast(cx, attr);
                    relations.extend(Relation::from_ast(cx, &input.ident, field, ident, attr));
                }
            }
        }
        let primary_key =
            orm.primary_key.map_or_else(|| Ident::new("id", input.ident.span()), |pk| pk.value);
        Some(Model {
            ident: &input.ident,
            vis: &input.vis,
            table: table.value,
            primary_key,
            columns,
            relations,
        })
    }

    pub fn key_column(&self) -> Option<(usize, &Column<'a>)> {
        self.columns.iter().enumerate().find(|(_, c)| *c.ident == self.primary_key)
    }
}

impl<'a> Relation<'a> {
    fn from_ast(
        cx: &Ctxt,
        model: &Ident,
        field: &'a SynField,
        ident: &'a Ident,
        attr: RelationAttr,
    ) -> Option<Self> {
        let Some((kind, target)) = attr.kinds.first().cloned() else {
            cx.syn_error(syn::Error::new(
                attr.attr_span,
                "missing relation kind: add one of `belongs_to = T`, `has_one = T`, `has_many = T`, `many_to_many = T`",
            ));
            return None;
        };
        for (extra, _) in attr.kinds.iter().skip(1) {
            cx.syn_error(syn::Error::new(
                extra.span,
                format!(
                    "a relation has one kind, but `{}` and `{}` are both given",
                    kind.value.keyword(),
                    extra.value.keyword()
                ),
            ));
        }
        let target_name = target.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        let self_referential = target_name == "Self" || *model == target_name;
        let target = if target.is_ident("Self") { Path::from(model.clone()) } else { target };
        let (foreign_key, foreign_key_explicit) = match &attr.foreign_key {
            Some(fk) => (fk.clone(), true),
            None => {
                let name = match kind.value {
                    KindKw::BelongsTo => format!("{ident}_id"),
                    _ => format!("{}_id", snake_case(&model.to_string())),
                };
                (Spanned { value: Ident::new(&name, kind.span), span: kind.span }, false)
            }
        };
        let target_key = match kind.value {
            KindKw::ManyToMany => Some(attr.target_key.clone().unwrap_or_else(|| {
                let name = format!("{}_id", snake_case(&target_name));
                Spanned { value: Ident::new(&name, kind.span), span: kind.span }
            })),
            _ => attr.target_key.clone(),
        };
        let strategy = attr
            .lazy
            .clone()
            .unwrap_or(Spanned { value: StrategyKw::Select, span: attr.attr_span });
        Some(Relation {
            ident,
            ty: &field.ty,
            shape: FieldShape::from_type(&field.ty),
            kind,
            target,
            self_referential,
            foreign_key,
            foreign_key_explicit,
            target_key,
            through: attr.through.clone(),
            strategy,
            join_depth: attr.join_depth.clone(),
            order_by: attr.order_by.clone(),
            attr,
        })
    }
}

impl<'a> FieldShape<'a> {
    /// Reads `Rel<Option<T>>`, `Rel<Vec<T>>` or `Rel<T>`; `None` if the type is not a `Rel<..>`.
    pub fn from_type(ty: &'a Type) -> Option<Self> {
        let inner = single_argument(ty, "Rel")?;
        Some(if let Some(t) = single_argument(inner, "Option") {
            FieldShape::Optional(t)
        } else if let Some(t) = single_argument(inner, "Vec") {
            FieldShape::Collection(t)
        } else {
            FieldShape::Required(inner)
        })
    }
}

/// `T` of `Name<T>` (by the path's last segment).
pub fn single_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}
