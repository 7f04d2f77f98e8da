//! The two streamed directions of an app request: the request body from the client to the
//! worker (after its first part), and a streamed answer from the worker to the client, each
//! chunk written out as it arrives (chunked transfer encoding unless the app set a length).
//!
//! Each chunk taken by the socket is acknowledged to the worker ([`HttpCall::sent`]), whose
//! `send` waits once a window of bytes is unacknowledged: a slow client holds back the app's
//! generator, and the node holds at most that window plus hyper's write buffer per answer.
//!
//! Dropping the answer's body (the client went away) drops its [`HttpCall`], which tells the
//! worker, so the app sees `http.disconnect` (ASGI) or its generator closed (WSGI).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::runtime::wire::Done;
use crate::workers::{BodySender, HttpCall, HttpEvent};

/// How a body read ended badly.
pub enum BodyError {
    /// Over the node's limit (bytes).
    TooLarge,
    /// The body's deadline passed.
    Late,
    /// The client's bytes were not a valid body.
    Broken(String),
}

/// Reads the start of `body`: up to `first` bytes or its end, whichever comes first, within
/// `deadline`, refusing more than `limit` bytes. Returns the bytes and whether more follow.
pub async fn read_start(
    body: &mut Body,
    first: usize,
    limit: u64,
    deadline: Instant,
) -> Result<(Vec<u8>, bool), BodyError> {
    let mut bytes = Vec::new();
    loop {
        if http_body::Body::is_end_stream(body) {
            return Ok((bytes, false));
        }
        if bytes.len() >= first {
            return Ok((bytes, true));
        }
        match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return Err(BodyError::Late),
            Ok(None) => return Ok((bytes, false)),
            Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                    if bytes.len() as u64 > limit {
                        return Err(BodyError::TooLarge);
                    }
                }
            }
        }
    }
}

/// Streams the rest of `body` (after `sent` bytes) to the worker. If it passes `limit` the
/// worker is told the client is gone and `over` fires, so the front answers 413 unless the
/// app has already started answering.
pub fn pump_rest(
    mut body: Body,
    sent: u64,
    limit: u64,
    deadline: Instant,
    to: BodySender,
    over: oneshot::Sender<BodyError>,
) {
    tokio::spawn(async move {
        let mut total = sent;
        loop {
            match tokio::time::timeout_at(deadline.into(), body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        total += data.len() as u64;
                        if total > limit {
                            // The reason first: the app answers the cut-off quickly, and
                            // the front must already know why when that answer arrives.
                            let _ = over.send(BodyError::TooLarge);
                            to.disconnect();
                            return;
                        }
                        to.body(Some(data.to_vec()));
                    }
                }
                Ok(None) => return to.body(None),
                Ok(Some(Err(e))) => {
                    let _ = over.send(BodyError::Broken(e.to_string()));
                    to.disconnect();
                    return;
                }
                Err(_) => {
                    let _ = over.send(BodyError::Late);
                    to.disconnect();
                    return;
                }
            }
        }
    });
}

/// Headers an app may not set: the front frames the connection itself.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection" | "transfer-encoding" | "keep-alive" | "upgrade" | "te" | "trailer"
    )
}

/// The response whose head the worker sent; its body follows from `call` as it comes.
pub fn response(
    call: HttpCall,
    status: u16,
    headers: Vec<(String, String)>,
    version: Option<u64>,
    version_header: &'static str,
    app: String,
) -> Response {
    let mut response = Response::new(Body::new(Streamed { call, app }));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let out = response.headers_mut();
    for (k, v) in headers {
        if hop_by_hop(&k) {
            continue;
        }
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
            out.append(k, v);
        }
    }
    if let Some(v) = version {
        out.insert(version_header, HeaderValue::from(v));
    }
    response
}

/// A streamed answer's body: each chunk from the worker becomes one data frame.
struct Streamed {
    call: HttpCall,
    app: String,
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    /// A cut-off answer (the app raised or its worker died midway): the connection is closed
    /// without the final chunk, so the client sees the answer is incomplete.
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.call.events.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(HttpEvent::Chunk(data))) => {
                self.call.sent(data.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))))
            }
            // A second head cannot happen; skip it rather than corrupt the body.
            Poll::Ready(Some(HttpEvent::Head { .. })) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(None) => {
                self.call.finished();
                // The job's end is ready once its events are closed.
                let why = match self.call.done.try_recv() {
                    Ok(Ok(Done::Http(r))) => r.error.map(|traceback| {
                        tracing::error!(app = %self.app, "streamed handler raised:\n{traceback}");
                        "the handler raised midway".to_string()
                    }),
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => {
                        tracing::error!(app = %self.app, "the worker streaming an answer: {e}");
                        Some(e.to_string())
                    }
                    Err(_) => Some("the worker's answer was lost".to_string()),
                };
                match why {
                    None => Poll::Ready(None),
                    Some(why) => Poll::Ready(Some(Err(std::io::Error::other(why)))),
                }
            }
        }
    }
}
