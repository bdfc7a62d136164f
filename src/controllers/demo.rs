//! The demo page from `public/`, compiled into the binary so it is served
//! the same whatever the working directory.

use actix_web::http::header::ContentType;
use actix_web::HttpResponse;

const INDEX_HTML: &str = include_str!("../../public/index.html");
const APP_JS: &str = include_str!("../../public/app.js");
const STYLE_CSS: &str = include_str!("../../public/style.css");

/// The page and its assets may be cached but must be revalidated, so a new
/// deployment is picked up at once.
const ASSET_CACHE_CONTROL: (&str, &str) = ("cache-control", "no-cache");

pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ASSET_CACHE_CONTROL)
        .content_type(ContentType::html())
        .body(INDEX_HTML)
}

pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ASSET_CACHE_CONTROL)
        .content_type("text/javascript; charset=utf-8")
        .body(APP_JS)
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ASSET_CACHE_CONTROL)
        .content_type("text/css; charset=utf-8")
        .body(STYLE_CSS)
}
