//! A deadline on the whole request body: a client that sends its body slowly, even a byte at a
//! time, has it cut off `timeout` after the request head arrived. (tower-http's body timeout
//! restarts at each piece received, so a trickle would keep it alive.) The route then answers
//! 408 (the carrier's routes) or another 4xx, and the connection is closed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// The error a body past its deadline gives.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct TimedOut;

/// Whether `e`, or an error it wraps, is a body past its deadline.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<TimedOut>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Middleware (for `axum::middleware::map_request`) setting a deadline of `timeout` on each request
/// body: `router.layer(axum::middleware::map_request(move |r| deadline(r, timeout)))`.
pub async fn deadline(req: Request, timeout: Duration) -> Request {
    req.map(|body| Body::new(Deadline { inner: body, sleep: Box::pin(tokio::time::sleep(timeout)) }))
}

struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
