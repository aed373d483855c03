//! TokenLens' web front end: Leptos components and server functions.
//!
//! Built twice: with `ssr` into the server (server functions run there, next to the engine)
//! and with `hydrate` into the wasm bundle. The wasm build sees only tokenlens' engine-free
//! modules (`types`, `colormap`, `text`, `granularity`), never candle.

pub mod browser;
pub mod compare;
pub mod components;
pub mod display;
pub mod export;
pub mod format;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod pace;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod permalinks;
#[cfg(feature = "ssr")]
pub mod rate_limit;
pub mod record;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod state;
#[cfg(feature = "ssr")]
pub mod store;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <HydrationScripts options/>
                <MetaTags/>
                <link rel="icon" href="data:,"/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The application: the explain page, permalinks and the compare page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="tokenlens" href="/style.css"/>
        <Title text="TokenLens"/>
        <Router>
            <Routes fallback=|| view! { <p class="error">"Page not found."</p> }>
                <Route path=path!("/") view=|| view! { <pages::explain::ExplainPage/> }/>
                <Route path=path!("/s/:id") view=pages::shared::SharedPage/>
                <Route path=path!("/compare") view=|| view! { <pages::compare::ComparePage/> }/>
            </Routes>
        </Router>
    }
}

/// The wasm entry point.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
