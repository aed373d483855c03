//! Pages.

pub mod explain;
