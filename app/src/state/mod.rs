//! What defines a view, and what a view holds.
//!
//! [`ViewState`] is everything needed to reproduce a view by recomputing it (model, prompt,
//! what was run, the view settings); it lives in the URL query, as LIT keeps its state.
//! [`Snapshot`] is a view with its computed results: what a permalink stores. [`Context`]
//! says what a result was computed for, and so whether one serves a view.
//!
//! Every stored type takes defaults for missing fields (`#[serde(default)]`), so a permalink
//! stored before a field existed still opens (tests/fixtures/permalinks).

mod compare;
mod context;
mod snapshot;
mod streamed;
mod view;

pub use compare::{pin_steered, retarget, side_context, side_request, CompareView};
pub use context::{Context, Input};
pub use snapshot::{Replayed, Snapshot};
pub use streamed::{AnswerState, MatrixState, Partial, Streamed};
pub use view::{ExplainSpec, GenSpec, ViewState, DEFAULT_MAX_NEW};

#[cfg(test)]
mod tests;
