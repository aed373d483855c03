//! Pages.

pub mod api;
pub mod compare;
pub mod explain;
pub mod shared;
