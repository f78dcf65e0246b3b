//! The tag set: `O` outside any entity, then `B-T` (first token) and `I-T` (later token) for
//! each entity kind the tagger labels.

use crate::EntityType;

/// The entity kinds the tagger labels; the others have exact recognisers.
pub const TYPES: [EntityType; 9] = [
    EntityType::Person,
    EntityType::Location,
    EntityType::Organization,
    EntityType::Address,
    EntityType::Date,
    EntityType::Title,
    EntityType::Nrp,
    EntityType::Age,
    EntityType::Postcode,
];

/// Tags: `O`, then `B-T`, `I-T` for each of [`TYPES`].
pub const NT: usize = 1 + 2 * TYPES.len();

pub(super) const O: usize = 0;
pub(super) fn b_tag(t: usize) -> usize {
    1 + 2 * t
}
pub(super) fn i_tag(t: usize) -> usize {
    2 + 2 * t
}
pub(super) fn tag_type(tag: usize) -> Option<usize> {
    (tag > 0).then(|| (tag - 1) / 2)
}
pub(super) fn is_inside(tag: usize) -> bool {
    tag > 0 && tag.is_multiple_of(2)
}

/// The tag index of a span's first token (`begin`) or later token.
pub fn tag_for(entity: EntityType, begin: bool) -> Option<usize> {
    let t = TYPES.iter().position(|x| *x == entity)?;
    Some(if begin { b_tag(t) } else { i_tag(t) })
}
