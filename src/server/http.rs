//! The app's HTTP endpoint: every request goes to the handler registered by the code at HEAD,
//! or at the version named by the `X-Push-Version` header.
//!
//! Handlers run in the node's Python worker processes; this module only translates HTTP to a runtime call and
//! back. A handler that raises becomes a 500 whose traceback goes to the node log only.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::limits::{AcceptErrors, Admitted, Limits, Stage, Waiting};
use super::streaming::{self, read_start, BodyError};
use crate::node::Node;
use crate::runtime::wire::Done;
use crate::runtime::HttpRequest;
use crate::shutdown::Shutdown;
use crate::workers::{HttpEvent, WorkerError};

/// The part of a request body sent along with the request; the rest streams after it.
pub const FIRST_PART: usize = 64 << 10;
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

/// `a=1&b=x%20y` as pairs, decoded as `application/x-www-form-urlencoded` (`+` is a space,
/// a `%` not followed by two hex digits stays as it is).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `GET /metrics`: this node's Prometheus metrics (text format 0.0.4).
async fn metrics(State(front): State<Arc<Front>>) -> Response {
    match super::metrics_page::render(&front.node) {
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
async fn handle(State(front): State<Arc<Front>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let app = req
        .headers()
        .get(APP_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(push_protocol::DEFAULT_APP)
        .to_string();
    let method = req.method().as_str().to_string();
    let channel = req
        .uri()
        .path()
        .strip_prefix(super::channels::PREFIX)
        .filter(|_| req.method() == axum::http::Method::GET)
        .map(str::to_string);
    let response = match channel {
        Some(name) => super::channels::subscribe(front.node.clone(), app.clone(), &name, &req),
        None => handle_app(&front, app.clone(), req).await,
    };
    crate::metrics::metrics().http(&app, &method, response.status().as_u16(), started.elapsed());
    response
}

async fn handle_app(front: &Front, app: String, req: Request) -> Response {
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
    let limit = front.max_body;
    let length = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n > limit) {
        return body_refused(BodyError::TooLarge, limit, front);
    }
    let deadline = std::time::Instant::now() + front.body_timeout;
    let mut body = body;
    let (first, more) = match read_start(&mut body, FIRST_PART, limit, deadline).await {
        Ok(read) => read,
        Err(e) => return body_refused(e, limit, front),
    };
    let (client, server) = parts
        .extensions
        .get::<Addresses>()
        .map(|a| (a.client.clone(), a.server.clone()))
        .unwrap_or_default();
    let sent = first.len() as u64;
    let request = HttpRequest {
        app: app.clone(),
        pinned,
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(parse_query).unwrap_or_default(),
        query_string: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_string(), v.to_string()))
            })
            .collect(),
        body: first.into(),
        more,
        client,
        server,
    };
    let mut call = match front.node.workers.http(request).await {
        Ok(call) => call,
        Err(e) => return unavailable(&app, parts.uri.path(), e),
    };
    let (over_tx, mut over) = tokio::sync::oneshot::channel();
    if more {
        streaming::pump_rest(body, sent, limit, deadline, call.body_sender(), over_tx);
    }
    let first_event = tokio::select! {
        biased;
        Ok(e) = &mut over => return body_refused(e, limit, front),
        event = call.events.recv() => event,
    };
    if let Some(HttpEvent::Head {
        status,
        headers,
        version,
    }) = first_event
    {
        return streaming::response(call, status, headers, version, VERSION_HEADER, app);
    }
    let out = match (&mut call.done).await {
        Ok(Ok(Done::Http(out))) => {
            call.finished();
            // The app answered the cut-off body (499): the body's fault is the answer.
            if let Ok(e) = over.try_recv() {
                return body_refused(e, limit, front);
            }
            out
        }
        Ok(Ok(other)) => {
            tracing::error!(%app, "unexpected answer to an HTTP job: {other:?}");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500: the python worker gave an unexpected answer; see the node's log\n".into(),
            );
        }
        Ok(Err(e)) => return unavailable(&app, parts.uri.path(), e),
        Err(_) => {
            return unavailable(
                &app,
                parts.uri.path(),
                WorkerError::Lost("the worker's link closed".into()),
            )
        }
    };
    if let Some(traceback) = &out.error {
        tracing::error!(%app, version = ?out.version, path = %parts.uri.path(), "handler raised:\n{traceback}");
    }
    let mut response = Response::new(Body::from(out.body.into_vec()));
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

/// The answer when no worker could run a request.
fn unavailable(app: &str, path: &str, e: WorkerError) -> Response {
    tracing::error!(%app, %path, "no answer from python: {e}");
    let status = match e {
        // The worker running it died: the gateway's upstream failed.
        WorkerError::Lost(_) => StatusCode::BAD_GATEWAY,
        WorkerError::NoWorker(_) | WorkerError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(
        status,
        format!(
            "{}: the python worker running this request {}\n",
            status.as_u16(),
            if status == StatusCode::BAD_GATEWAY {
                "ended; see the node's log (it restarts by itself)"
            } else {
                "is not available; see the node's log"
            }
        ),
    )
}

/// The answer to a request body that could not be taken (the connection closes after it).
fn body_refused(e: BodyError, limit: u64, front: &Front) -> Response {
    let mut response = match e {
        BodyError::TooLarge => plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {limit} bytes on this node (its --http-max-body); send less or raise the limit\n"),
        ),
        BodyError::Late => plain(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms; send it faster or in smaller requests\n",
                front.body_timeout.as_millis()
            ),
        ),
        BodyError::Broken(e) => plain(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}\n"),
        ),
    };
    response
        .headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    response
}

/// The two ends of a request's connection, for WSGI's and ASGI's addresses.
#[derive(Clone, Default)]
struct Addresses {
    client: String,
    server: String,
}

/// What the handlers share: the node, the body deadline and size limit.
struct Front {
    node: Arc<Node>,
    body_timeout: Duration,
    max_body: u64,
}

/// The answer to a connection over a per-IP cap, written before closing it.
fn refusal(status: &str, text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

/// Serves app HTTP on `listener` until shutdown, within the HTTP budgets of `limits`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    mut shutdown: Shutdown,
    limits: Arc<Limits>,
) {
    let front = Arc::new(Front {
        node,
        body_timeout: limits.settings.http_body_timeout,
        max_body: limits.settings.http_max_body,
    });
    let app = Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .fallback(handle)
        .with_state(front);
    let mut errors = AcceptErrors::new("http");
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    errors.failed(&e).await;
                    continue;
                }
            },
        };
        errors.succeeded();
        match limits.http.admit(peer.ip()) {
            Ok(waiting) => {
                stream.set_nodelay(true).ok();
                let addresses = Addresses {
                    client: peer.to_string(),
                    server: stream
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                };
                tokio::spawn(connection(
                    stream,
                    app.clone(),
                    waiting,
                    (
                        limits.settings.http_header_timeout,
                        limits.settings.http_max_head,
                    ),
                    addresses,
                    shutdown.clone(),
                ));
            }
            Err(refused) => {
                let _ =
                    stream.try_write(&refusal("503 Service Unavailable", &format!("{refused}\n")));
            }
        }
    }
}

/// One HTTP/1.1 connection: a complete request head of at most `max_head` bytes is due
/// within `header_timeout` of the accept or of the previous response (a larger head gets 431);
/// the first request moves it out of the waiting pool.
async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    waiting: Waiting,
    (header_timeout, max_head): (Duration, usize),
    addresses: Addresses,
    mut shutdown: Shutdown,
) {
    let bell = waiting.bell();
    let port = waiting.port().clone();
    let waiting = Arc::new(std::sync::Mutex::new(Some(waiting)));
    let held = Arc::new(std::sync::Mutex::new(None::<Admitted>));
    let service = hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
        let mut app = app.clone();
        req.extensions_mut().insert(addresses.clone());
        let promoted = match waiting.lock().unwrap_or_else(|e| e.into_inner()).take() {
            None => Ok(()),
            Some(w) => w.promote(Stage::Active).map(|a| {
                *held.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
            }),
        };
        async move {
            if let Err(refused) = promoted {
                let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, format!("{refused}\n"));
                let headers = response.headers_mut();
                headers.insert("connection", HeaderValue::from_static("close"));
                headers.insert("retry-after", HeaderValue::from_static("1"));
                return Ok::<_, std::convert::Infallible>(response);
            }
            tower_service::Service::call(&mut app, req.map(Body::new)).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_head)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if served.is_err_and(|e| e.is_timeout()) {
                port.closed("deadline");
            }
        }
        // A newer connection took this silent one's place in a full waiting pool.
        _ = bell.notified() => {}
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
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
        // `%+5` is not an escape (from_str_radix once read "+5" as 5).
        assert_eq!(
            parse_query("a=%+5&b=%-1"),
            vec![
                ("a".to_string(), "% 5".to_string()),
                ("b".to_string(), "%-1".to_string()),
            ]
        );
    }
}
