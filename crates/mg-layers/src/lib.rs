//! tmp
/// tmp
pub fn x() {}
