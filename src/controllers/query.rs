//! The query-string extractor: a parameter that does not parse is a 400
//! `invalid_request` whose detail names it (as JSON body errors do).

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use serde::de::DeserializeOwned;

use crate::errors::ApiError;

#[derive(Debug)]
pub struct Query<T>(pub T);

/// Parses `query` (without the `?`) into a `T`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        if field == "." || field.is_empty() {
            ApiError::InvalidRequest(format!("query string: {}", e.inner()))
        } else {
            ApiError::InvalidRequest(format!("{field}: {}", e.inner()))
        }
    })
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(Query))
    }
}
