//! Cross-field checks on the IR. One `check_*` per rule; rustc checks the rest through the
//! spanned assertions in expand/ (target is a model, key types match, columns exist).

use crate::attr::{KindKw, StrategyKw};
use crate::ctxt::Ctxt;
use crate::model::{single_argument, FieldShape, Model, Relation};

pub fn check(cx: &Ctxt, model: &Model<'_>) {
    check_primary_key(cx, model);
    for relation in &model.relations {
        check_field_shape(cx, model, relation);
        check_join_depth(cx, relation);
        check_self_join_depth(cx, relation);
        check_foreign_key(cx, model, relation);
        check_through(cx, relation);
        check_order_by(cx, relation);
    }
}

// A declared order picks which rows come first: a collection's order, a has_one's row. A
// belongs_to has one row by its key, nothing to order.
fn check_order_by(cx: &Ctxt, relation: &Relation<'_>) {
    if let (Some(order), KindKw::BelongsTo) = (&relation.order_by, relation.kind.value) {
        cx.syn_error(syn::Error::new(
            order.span,
            "`order_by` applies to `has_one`, `has_many` and `many_to_many`: a `belongs_to` has one row, found by its key",
        ));
    }
}

// The primary key names a column field: the identity map and every join use it.
fn check_primary_key(cx: &Ctxt, model: &Model<'_>) {
    if model.key_column().is_none() {
        let name = &model.primary_key;
        cx.error_spanned_by(
            name,
            format!("no column field `{name}` for the primary key: add it, or name the key field with `#[orm(primary_key = ..)]`"),
        );
    }
}

// The field type fits the kind: a `Rel<Vec<T>>` for collections, a `Rel<Option<T>>` or `Rel<T>`
// for a single row. Anything else would decode into a shape the loader cannot fill.
fn check_field_shape(cx: &Ctxt, model: &Model<'_>, relation: &Relation<'_>) {
    let kind = relation.kind.value.keyword();
    let target = path_name(&relation.target);
    match (&relation.shape, relation.kind.value) {
        (None, _) => cx.error_spanned_by(
            relation.ty,
            format!("a relation field must have type `Rel<..>`, e.g. `Rel<{}>`", expected_shape(model, relation)),
        ),
        (Some(FieldShape::Collection(_)), KindKw::BelongsTo | KindKw::HasOne) => cx.error_spanned_by(
            relation.ty,
            format!(
                "`{kind}` relates one row: use `Rel<{}>`, or `has_many` for a collection",
                expected_shape(model, relation)
            ),
        ),
        (Some(FieldShape::Optional(_) | FieldShape::Required(_)), KindKw::HasMany | KindKw::ManyToMany) => {
            cx.error_spanned_by(relation.ty, format!("`{kind}` relates a collection: use `Rel<Vec<{target}>>`"))
        }
        (Some(FieldShape::Required(inner)), _) if !is_plain_path(inner) => cx.error_spanned_by(
            relation.ty,
            format!(
                "unsupported relation field type: use `Rel<Option<{target}>>`, `Rel<{target}>` or `Rel<Vec<{target}>>`"
            ),
        ),
        (Some(FieldShape::Required(_)), KindKw::HasOne) => cx.error_spanned_by(
            relation.ty,
            format!("`has_one` may find no row: use `Rel<Option<{target}>>`"),
        ),
        _ => {}
    }
}

/// A type path with no generic arguments (`Address`, `crate::models::Address`).
fn is_plain_path(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(p) if p.qself.is_none()
        && p.path.segments.iter().all(|s| s.arguments.is_none()))
}

/// What `Rel<..>` should hold for the relation's kind: one row of a `belongs_to` is optional
/// exactly when its foreign key field is (`check_foreign_key` holds it to that), so the
/// suggestion is the one that compiles.
fn expected_shape(model: &Model<'_>, relation: &Relation<'_>) -> String {
    let target = path_name(&relation.target);
    match relation.kind.value {
        KindKw::HasMany | KindKw::ManyToMany => format!("Vec<{target}>"),
        KindKw::BelongsTo if foreign_key_nullable(model, relation) == Some(false) => target,
        KindKw::BelongsTo | KindKw::HasOne => format!("Option<{target}>"),
    }
}

/// Whether a `belongs_to`'s foreign key field is an `Option`; `None` if no column field has its
/// name (`check_foreign_key` reports that).
fn foreign_key_nullable(model: &Model<'_>, relation: &Relation<'_>) -> Option<bool> {
    let fk = &relation.foreign_key.value;
    let column = model.columns.iter().find(|c| c.ident == fk)?;
    Some(single_argument(column.ty, "Option").is_some())
}

// `join_depth` bounds how often an eager relation repeats along one path (a self-reference or a
// cycle: joined ones need it, selectin ones stop when the data does); it means nothing for
// lazy and raise, and 0 would load nothing.
fn check_join_depth(cx: &Ctxt, relation: &Relation<'_>) {
    let Some(depth) = &relation.join_depth else {
        return;
    };
    if !matches!(relation.strategy.value, StrategyKw::Joined | StrategyKw::Selectin) {
        cx.syn_error(syn::Error::new(
            depth.span,
            "`join_depth` applies to `lazy = \"joined\"` and `lazy = \"selectin\"` only",
        ));
    } else if depth.value == 0 {
        cx.syn_error(syn::Error::new(depth.span, "`join_depth` must be at least 1"));
    }
}

// A self-referential joined relation needs a depth: SQLAlchemy silently stops, we refuse.
fn check_self_join_depth(cx: &Ctxt, relation: &Relation<'_>) {
    if relation.self_referential
        && relation.strategy.value == StrategyKw::Joined
        && relation.join_depth.is_none()
    {
        cx.syn_error(syn::Error::new(
            relation.strategy.span,
            "a self-referential `joined` relation needs `join_depth = N`: how many levels to join",
        ));
    }
}

// A belongs_to foreign key is a column field of this struct, and its nullability matches the
// field's shape: a nullable key with `Rel<T>` would fail on every NULL, a non-null key with
// `Rel<Option<T>>` hides a schema mistake.
fn check_foreign_key(cx: &Ctxt, model: &Model<'_>, relation: &Relation<'_>) {
    if relation.kind.value != KindKw::BelongsTo {
        return;
    }
    let fk = &relation.foreign_key;
    if model.relations.iter().any(|r| *r.ident == fk.value) {
        cx.syn_error(syn::Error::new(
            fk.span,
            format!(
                "`{}` is a relation field; `foreign_key` names the column field holding the key",
                fk.value
            ),
        ));
        return;
    }
    let Some(column) = model.columns.iter().find(|c| *c.ident == fk.value) else {
        let hint = if relation.foreign_key_explicit {
            String::new()
        } else {
            " (inferred from the field name; set it with `foreign_key = ..`)".to_owned()
        };
        cx.syn_error(syn::Error::new(
            fk.span,
            format!(
                "`foreign_key = {}` names no column field of `{}`{hint}",
                fk.value, model.ident
            ),
        ));
        return;
    };
    let nullable = single_argument(column.ty, "Option").is_some();
    match (&relation.shape, nullable) {
        (Some(FieldShape::Required(inner)), _) if !is_plain_path(inner) => {}
        (Some(FieldShape::Required(_)), true) => cx.syn_error(syn::Error::new(
            fk.span,
            format!(
                "foreign key `{}` is nullable but the relation is not optional: use `Rel<Option<{}>>`",
                fk.value,
                path_name(&relation.target)
            ),
        )),
        (Some(FieldShape::Optional(_)), false) => cx.syn_error(syn::Error::new(
            fk.span,
            format!(
                "foreign key `{}` is not nullable, so the relation always has a row: use `Rel<{}>`",
                fk.value,
                path_name(&relation.target)
            ),
        )),
        _ => {}
    }
}

// many_to_many goes through an association table; the other kinds have no use for one.
fn check_through(cx: &Ctxt, relation: &Relation<'_>) {
    match (&relation.through, relation.kind.value) {
        (None, KindKw::ManyToMany) => cx.syn_error(syn::Error::new(
            relation.kind.span,
            "`many_to_many` needs `through = <association table>`, e.g. `through = person_project`",
        )),
        (Some(through), kind) if kind != KindKw::ManyToMany => cx.syn_error(syn::Error::new(
            through.span,
            format!("`through` applies to `many_to_many` only, not `{}`", kind.keyword()),
        )),
        _ => {}
    }
    if relation.kind.value != KindKw::ManyToMany {
        if let Some(target_key) = &relation.attr.target_key {
            cx.syn_error(syn::Error::new(
                target_key.span,
                "`target_key` applies to `many_to_many` only",
            ));
        }
    }
}

fn path_name(path: &syn::Path) -> String {
    path.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("::")
}
