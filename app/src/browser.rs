//! What the page asks of the browser beyond the DOM: the clipboard, file downloads, and
//! rasterizing an SVG. Only the wasm build does anything; on the server these are no-ops
//! (they run in event handlers, which the server never fires).

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
    use leptos::prelude::{document, set_timeout};
    use wasm_bindgen::{JsCast, JsValue};
    use web_sys::{
        Blob, BlobPropertyBag, CanvasRenderingContext2d, HtmlAnchorElement, HtmlCanvasElement,
        HtmlImageElement, Url,
    };

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
