//! Pages.

pub mod api;
pub mod explain;
