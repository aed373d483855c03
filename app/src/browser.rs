//! What the page asks of the browser beyond the DOM: the clipboard, file downloads,
//! rasterizing an SVG, and keeping what was typed before the page went live. Only the wasm
//! build does anything; on the server these are no-ops (they run in event handlers and
//! effects, which the server never fires).

/// Form fields a person changed in the server-rendered page before the wasm took over.
/// Hydration writes each field's value from the page's state, which would silently drop
/// those edits; [`early_edits`] notes them first and [`EarlyEdits::replay`] puts them back.
#[derive(Default)]
pub struct EarlyEdits {
    #[cfg(feature = "hydrate")]
    edits: Vec<(web_sys::HtmlElement, Edit)>,
}

#[cfg(feature = "hydrate")]
enum Edit {
    Value(String),
    Checked(bool),
}

/// The fields whose value differs from the one the server rendered. Only the first call of
/// a page load looks (later pages are built in the browser, with nothing typed early).
pub fn early_edits() -> EarlyEdits {
    #[cfg(feature = "hydrate")]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static LOOKED: AtomicBool = AtomicBool::new(false);
        if LOOKED.swap(true, Ordering::Relaxed) {
            return EarlyEdits::default();
        }
        EarlyEdits {
            edits: web::early_edits(),
        }
    }
    #[cfg(not(feature = "hydrate"))]
    EarlyEdits::default()
}

impl EarlyEdits {
    /// Writes the edits back and fires `input` and `change` on each field, so the page's own
    /// handlers take them up as if they had been typed now.
    pub fn replay(self) {
        #[cfg(feature = "hydrate")]
        web::replay(self.edits);
    }
}

/// Copies text to the clipboard; false where the browser refuses (no permission, no secure
/// context), so the page can say to copy it by hand.
pub async fn copy_text(text: &str) -> bool {
    #[cfg(feature = "hydrate")]
    {
        let promise = leptos::prelude::window()
            .navigator()
            .clipboard()
            .write_text(text);
        wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = text;
        false
    }
}

/// Puts `url` in the address bar in place of the current entry, without navigating (the page
/// stays as it is; a reload opens `url`).
pub fn show_address(url: &str) {
    #[cfg(feature = "hydrate")]
    {
        if let Ok(history) = leptos::prelude::window().history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(url));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = url;
}

/// Offers `text` as a file download.
pub fn download_text(name: &str, mime: &str, text: &str) -> Result<(), String> {
    #[cfg(feature = "hydrate")]
    {
        let url = web::blob_url(mime, text)?;
        let result = web::click_download(name, &url);
        web::revoke_later(url);
        result
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (name, mime, text);
        Ok(())
    }
}

/// Rasterizes an SVG of `width` × `height` px at `scale` and offers it as a PNG download.
pub async fn download_png(
    name: &str,
    svg: &str,
    width: u32,
    height: u32,
    scale: u32,
) -> Result<(), String> {
    #[cfg(feature = "hydrate")]
    {
        web::png(name, svg, width, height, scale).await
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (name, svg, width, height, scale);
        Ok(())
    }
}

#[cfg(feature = "hydrate")]
mod web {
    use super::Edit;
    use leptos::prelude::{document, set_timeout};
    use wasm_bindgen::{JsCast, JsValue};
    use web_sys::{
        Blob, BlobPropertyBag, CanvasRenderingContext2d, Event, EventInit, HtmlAnchorElement,
        HtmlCanvasElement, HtmlElement, HtmlImageElement, HtmlInputElement, HtmlOptionElement,
        HtmlSelectElement, HtmlTextAreaElement, Url,
    };

    /// An edit of one field: its value now against the default the HTML gave it.
    fn edit_of(el: &HtmlElement) -> Option<Edit> {
        if let Some(t) = el.dyn_ref::<HtmlTextAreaElement>() {
            let v = t.value();
            // Unreadable default: keep the text rather than risk losing it.
            (!t.default_value().is_ok_and(|d| d == v)).then_some(Edit::Value(v))
        } else if let Some(i) = el.dyn_ref::<HtmlInputElement>() {
            match i.type_().as_str() {
                "checkbox" => {
                    (i.checked() != i.default_checked()).then_some(Edit::Checked(i.checked()))
                }
                // Of a group, only the newly picked one: replaying the one left would pick it.
                "radio" => (i.checked() && !i.default_checked()).then_some(Edit::Checked(true)),
                _ => {
                    let v = i.value();
                    (v != untouched_value(i)).then_some(Edit::Value(v))
                }
            }
        } else if let Some(s) = el.dyn_ref::<HtmlSelectElement>() {
            // The option shown untouched: the one marked selected, else the first.
            let opts = s.options();
            let untouched = (0..opts.length())
                .filter_map(|k| opts.item(k))
                .filter_map(|o| o.dyn_into::<HtmlOptionElement>().ok())
                .position(|o| o.default_selected())
                .unwrap_or(0);
            (s.selected_index() != untouched as i32).then(|| Edit::Value(s.value()))
        } else {
            None
        }
    }

    /// What an input would hold untouched: its `value` attribute as the browser sanitizes it
    /// for the input's type (a range without one sits at its midpoint, not at "").
    fn untouched_value(i: &HtmlInputElement) -> String {
        let probe = document()
            .create_element("input")
            .ok()
            .and_then(|e| e.dyn_into::<HtmlInputElement>().ok());
        let Some(probe) = probe else {
            return i.default_value();
        };
        for attr in ["type", "min", "max", "step", "value"] {
            if let Some(v) = i.get_attribute(attr) {
                let _ = probe.set_attribute(attr, &v);
            }
        }
        probe.value()
    }

    pub fn early_edits() -> Vec<(HtmlElement, Edit)> {
        let Ok(fields) = document().query_selector_all("input[name], textarea[name], select[name]")
        else {
            return Vec::new();
        };
        (0..fields.length())
            .filter_map(|k| fields.item(k))
            .filter_map(|n| n.dyn_into::<HtmlElement>().ok())
            .filter_map(|el| edit_of(&el).map(|e| (el, e)))
            .collect()
    }

    pub fn replay(edits: Vec<(HtmlElement, Edit)>) {
        for (el, edit) in edits {
            match edit {
                Edit::Value(v) => {
                    if let Some(t) = el.dyn_ref::<HtmlTextAreaElement>() {
                        t.set_value(&v);
                    } else if let Some(i) = el.dyn_ref::<HtmlInputElement>() {
                        i.set_value(&v);
                    } else if let Some(s) = el.dyn_ref::<HtmlSelectElement>() {
                        s.set_value(&v);
                    }
                }
                Edit::Checked(c) => {
                    if let Some(i) = el.dyn_ref::<HtmlInputElement>() {
                        i.set_checked(c);
                    }
                }
            }
            for kind in ["input", "change"] {
                let init = EventInit::new();
                init.set_bubbles(true);
                if let Ok(ev) = Event::new_with_event_init_dict(kind, &init) {
                    let _ = el.dispatch_event(&ev);
                }
            }
        }
    }

    fn js(e: JsValue) -> String {
        e.as_string()
            .or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()))
            .unwrap_or_else(|| "browser error".into())
    }

    pub fn blob_url(mime: &str, text: &str) -> Result<String, String> {
        let parts = js_sys::Array::of1(&JsValue::from_str(text));
        let opts = BlobPropertyBag::new();
        opts.set_type(mime);
        let blob = Blob::new_with_str_sequence_and_options(&parts, &opts).map_err(js)?;
        Url::create_object_url_with_blob(&blob).map_err(js)
    }

    pub fn revoke_later(url: String) {
        set_timeout(
            move || {
                let _ = Url::revoke_object_url(&url);
            },
            std::time::Duration::from_secs(30),
        );
    }

    pub fn click_download(name: &str, url: &str) -> Result<(), String> {
        let a: HtmlAnchorElement = document()
            .create_element("a")
            .map_err(js)?
            .dyn_into()
            .map_err(|_| "not an anchor".to_string())?;
        a.set_href(url);
        a.set_download(name);
        a.click();
        Ok(())
    }

    pub async fn png(name: &str, svg: &str, w: u32, h: u32, scale: u32) -> Result<(), String> {
        let url = blob_url("image/svg+xml", svg)?;
        let img = HtmlImageElement::new().map_err(js)?;
        img.set_src(&url);
        let decoded = wasm_bindgen_futures::JsFuture::from(img.decode()).await;
        let _ = Url::revoke_object_url(&url);
        decoded.map_err(|e| format!("the figure did not render: {}", js(e)))?;
        let canvas: HtmlCanvasElement = document()
            .create_element("canvas")
            .map_err(js)?
            .dyn_into()
            .map_err(|_| "not a canvas".to_string())?;
        canvas.set_width(w * scale);
        canvas.set_height(h * scale);
        let ctx: CanvasRenderingContext2d = canvas
            .get_context("2d")
            .map_err(js)?
            .ok_or("no 2d canvas")?
            .dyn_into()
            .map_err(|_| "not a 2d context".to_string())?;
        ctx.scale(f64::from(scale), f64::from(scale)).map_err(js)?;
        ctx.draw_image_with_html_image_element_and_dw_and_dh(&img, 0.0, 0.0, w.into(), h.into())
            .map_err(js)?;
        let data = canvas.to_data_url_with_type("image/png").map_err(js)?;
        click_download(name, &data)
    }
}
