//! Body types of the request path.
//!
//! [`GatewayBody`] is what every response carries: a fixed buffer (error
//! answers, fixed responses) or an upstream's streamed body. Keeping it a
//! plain enum rather than a boxed trait object saves an allocation per
//! request on the proxy's hot path.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = GatewayBodyProj]
    pub enum GatewayBody {
        Full { data: Option<Bytes> },
        Upstream {
            #[pin]
            body: Incoming,
            // Held until the body is finished or dropped.
            in_flight: Option<InFlight>,
        },
    }
}

impl GatewayBody {
    pub fn empty() -> Self {
        GatewayBody::Full { data: None }
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        GatewayBody::Full { data: (!data.is_empty()).then_some(data) }
    }

    pub fn upstream(body: Incoming, in_flight: Option<InFlight>) -> Self {
        GatewayBody::Upstream { body, in_flight }
    }
}

impl Default for GatewayBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            GatewayBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            GatewayBodyProj::Upstream { body, in_flight } => {
                let polled = body.poll_frame(cx).map_err(|e| Box::new(e) as BoxError);
                if let Poll::Ready(None | Some(Err(_))) = &polled {
                    in_flight.take();
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full { data } => data.is_none(),
            GatewayBody::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            GatewayBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}

/// Counts one unit of in-flight work on a shared counter until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
