//! `GET /_push/channels/NAME` on the app HTTP port: a channel's events as Server-Sent Events.
//!
//! Every node serves its own subscribers from its applied state: a subscriber waits on the
//! state machine's "applied" signal, then reads the events after its cursor from the
//! channel's replicated history, so each event reaches it once, in id order, whichever node
//! it is connected to. Nothing is buffered per subscriber beyond one small queue of ready
//! chunks: the next events are read only once the previous ones were taken by the socket.
//! A subscriber so slow that the history dropped events it had not been sent yet gets a
//! `fell-behind` event and is closed; one resuming (`Last-Event-ID` header or
//! `?last_event_id=`) from an id older than the history gets a `missed` event first.
//!
//! The port is public like app routes: anyone who reaches it may subscribe. The channel
//! belongs to the app the `X-Push-App` header (or `?app=`, for browsers' `EventSource`)
//! names, else the default app, as routes pick theirs.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use tokio::sync::mpsc;

use crate::model::channels::{check_name, Event};
use crate::node::Node;

/// The path prefix of channel subscriptions.
pub const PREFIX: &str = "/_push/channels/";
/// An idle stream gets a comment this often (proxies and browsers keep it open).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most events read from the history per chunk.
const PER_CHUNK: usize = 64;
/// Ready chunks waiting for the socket.
const QUEUED: usize = 4;

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Answers a subscription request for channel `name` of `app`.
pub fn subscribe(node: Arc<Node>, app: String, name: &str, req: &Request) -> Response {
    if let Err(e) = check_name(name) {
        return plain(StatusCode::BAD_REQUEST, format!("{}\n", e.message));
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let app = query
        .iter()
        .find(|(k, _)| k == "app")
        .map_or(app, |(_, v)| v.clone());
    if app != push_protocol::DEFAULT_APP && node.read(|s| s.code.app(&app).is_none()) {
        return plain(
            StatusCode::NOT_FOUND,
            format!("no app called {app:?} was deployed; name a deployed app with the X-Push-App header or ?app=\n"),
        );
    }
    let resume = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "last_event_id")
                .map(|(_, v)| v.clone())
        });
    let after = match resume.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("Last-Event-ID must be an event id (a number), not {v:?}\n"),
                )
            }
        },
    };
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::spawn(feed(node, app, name.to_string(), after, tx));
    let mut response = Response::new(Body::new(Sse(rx)));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One event in the SSE wire format: its id, then one `data:` line per line of its data.
pub fn format_event(event: &Event, out: &mut String) {
    out.push_str(&format!("id: {}\n", event.id));
    for line in event.data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
}

/// Sends the channel's events after the cursor to `tx` until the subscriber leaves, falls
/// behind the history, or the node stops applying.
async fn feed(
    node: Arc<Node>,
    app: String,
    name: String,
    after: Option<u64>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut applied = node.state.subscribe();
    let resuming = after.is_some();
    let mut cursor = after.unwrap_or_else(|| node.read(|s| s.channels.last_id(&app, &name)));
    let hello = format!(": subscribed to {name} after event {cursor}\nretry: 1000\n\n");
    if tx.send(Bytes::from(hello)).await.is_err() {
        return;
    }
    let mut first = true;
    loop {
        applied.borrow_and_update();
        let since = node.read(|s| s.channels.since(&app, &name, cursor, PER_CHUNK));
        let mut chunk = String::new();
        if let Some((from, count)) = since.missed {
            let to = from + count - 1;
            if first && resuming {
                chunk.push_str(&format!(
                    "event: missed\ndata: events {from} to {to} are no longer in the history (it keeps the last {} events); continuing after them\n\n",
                    crate::model::channels::HISTORY_EVENTS
                ));
            } else {
                let text = format!(
                    "event: fell-behind\ndata: this subscriber read too slowly: events {from} to {to} left the history before it took them; reconnect with Last-Event-ID to resume from what is kept\n\n"
                );
                let _ = tx.send(Bytes::from(text)).await;
                return;
            }
        }
        first = false;
        if let Some(last) = since.events.last() {
            cursor = last.id;
        } else if since.missed.is_some() {
            cursor = since.last_id;
        }
        for event in &since.events {
            format_event(event, &mut chunk);
        }
        if !chunk.is_empty() {
            if tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

/// The response body: the chunks `feed` makes, as they are ready.
struct Sse(mpsc::Receiver<Bytes>);

impl http_body::Body for Sse {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_an_id_and_a_data_line_per_line() {
        let mut out = String::new();
        let event = Event {
            id: 7,
            time_ms: 0,
            data: "a\r\nb".into(),
        };
        format_event(&event, &mut out);
        assert_eq!(out, "id: 7\ndata: a\ndata: b\n\n");
    }
}
