//! The app's HTTP endpoint: every request goes to the handler registered by the code at HEAD,
//! or at the version named by the `X-Push-Version` header.
//!
//! Handlers run on the Python threads; this module only translates HTTP to a runtime call and
//! back. A handler that raises becomes a 500 whose traceback goes to the node log only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::node::Node;
use crate::runtime::HttpRequest;
use crate::shutdown::Shutdown;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 << 20;
/// Header that pins a request to a version.
pub const VERSION_HEADER: &str = "x-push-version";
/// Header that picks an app other than the default.
pub const APP_HEADER: &str = "x-push-app";

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=x%20y` as pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode_component(k), decode_component(v)),
            None => (decode_component(pair), String::new()),
        })
        .collect()
}

/// `GET /metrics`: this node's Prometheus metrics (text format 0.0.4).
async fn metrics(State(node): State<Arc<Node>>) -> Response {
    match super::metrics_page::render(&node) {
        Ok(text) => (
            StatusCode::OK,
            [("content-type", super::metrics_page::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render metrics: {e}; see the node log\n"),
        ),
    }
}

/// Answers one app request and counts it by app, method and status class.
async fn handle(State(node): State<Arc<Node>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let app = req
        .headers()
        .get(APP_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(push_protocol::DEFAULT_APP)
        .to_string();
    let method = req.method().as_str().to_string();
    let response = handle_app(node, app.clone(), req).await;
    crate::metrics::metrics().http(&app, &method, response.status().as_u16(), started.elapsed());
    response
}

async fn handle_app(node: Arc<Node>, app: String, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let pinned = match parts.headers.get(VERSION_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => match v.trim().trim_start_matches('v').parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("{VERSION_HEADER} must be a version number, not {v:?}\n"),
                )
            }
        },
        Some(Err(_)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("{VERSION_HEADER} is not text\n"),
            )
        }
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request bodies are limited to {MAX_BODY} bytes\n"),
            )
        }
    };
    let request = HttpRequest {
        app: app.clone(),
        pinned,
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(parse_query).unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_string(), v.to_string()))
            })
            .collect(),
        body,
    };
    let out = match node.runtime.http(request).await {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(%app, "handler dispatch failed: {e}");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error\n".into(),
            );
        }
    };
    if let Some(traceback) = &out.error {
        tracing::error!(%app, version = ?out.version, path = %parts.uri.path(), "handler raised:\n{traceback}");
    }
    let mut response = Response::new(Body::from(out.body));
    *response.status_mut() =
        StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (k, v) in out.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            headers.insert(k, v);
        }
    }
    if let Some(v) = out.version {
        headers.insert(VERSION_HEADER, HeaderValue::from(v));
    }
    response
}

/// Serves app HTTP on `listener` until shutdown.
pub async fn serve(listener: tokio::net::TcpListener, node: Arc<Node>, mut shutdown: Shutdown) {
    let app = Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .fallback(handle)
        .with_state(node);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await;
    if let Err(e) = result {
        tracing::error!("http server stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        assert_eq!(
            parse_query("a=1&b=x%20y&c&d=caf%C3%A9+ok&e=%zz"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x y".to_string()),
                ("c".to_string(), String::new()),
                ("d".to_string(), "café ok".to_string()),
                ("e".to_string(), "%zz".to_string()),
            ]
        );
    }
}
