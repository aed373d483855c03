//! Pages.

pub mod api;
pub mod explain;
pub mod shared;
