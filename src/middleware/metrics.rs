//! Counts and times every answer of the public listener:
//! `http_requests_total{route,method,status_class}` and
//! `http_request_duration_seconds` with the same labels, from the moment
//! the request reaches the app to the moment its answer leaves it.
//!
//! The route is the matched template (`/passkeys/{id}`, never the path
//! itself, which carries ids); a request no route matched is `unmatched`.
//! Methods outside the usual set are `OTHER`. So the series are bounded by
//! the routes the app has, whatever clients send.
//!
//! Each worker caches the handles of the series it has seen, so a request
//! costs one small allocation (the template actix builds) and a map lookup
//! with no lock; the answer itself is passed through untouched.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{Method, StatusCode};
use futures_util::future::LocalBoxFuture;

use crate::telemetry::{HttpSeries, Metrics};

/// The label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The middleware factory (one [`HttpMetricsService`] per worker).
pub struct HttpMetrics {
    metrics: Metrics,
}

impl HttpMetrics {
    pub fn new(metrics: Metrics) -> Self {
        HttpMetrics { metrics }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            service: Rc::new(service),
            series: Rc::new(Series {
                metrics: self.metrics.clone(),
                cache: RefCell::default(),
            }),
        }))
    }
}

type SeriesKey = (Cow<'static, str>, &'static str, &'static str);

/// One worker's handles, by (route, method, status class).
struct Series {
    metrics: Metrics,
    cache: RefCell<HashMap<SeriesKey, HttpSeries>>,
}

impl Series {
    fn record(
        &self,
        route: Cow<'static, str>,
        method: &'static str,
        status: StatusCode,
        secs: f64,
    ) {
        let class = status_class(status);
        let mut cache = self.cache.borrow_mut();
        let series =
            cache
                .entry((route, method, class))
                .or_insert_with_key(|(route, method, class)| {
                    self.metrics.http_series(route, method, class)
                });
        series.requests.increment(1);
        series.duration.record(secs);
    }
}

pub struct HttpMetricsService<S> {
    service: Rc<S>,
    series: Rc<Series>,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = method_label(req.method());
        let series = self.series.clone();
        let answer = self.service.call(req);
        Box::pin(async move {
            let result = answer.await;
            let secs = started.elapsed().as_secs_f64();
            match &result {
                Ok(res) => {
                    let route = match res.request().match_pattern() {
                        Some(template) => Cow::Owned(template),
                        None => Cow::Borrowed(UNMATCHED),
                    };
                    series.record(route, method, res.status(), secs);
                }
                // An error no inner layer turned into an answer (actix
                // answers it): the request is gone with it, so its route
                // is not known.
                Err(err) => {
                    let status = err.as_response_error().status_code();
                    series.record(Cow::Borrowed(UNMATCHED), method, status, secs);
                }
            }
            result
        })
    }
}

/// The method as a label: the usual ones by name, any other `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::NOT_MODIFIED), "3xx");
        assert_eq!(status_class(StatusCode::TOO_MANY_REQUESTS), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }
}
