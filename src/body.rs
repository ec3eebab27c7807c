//! The response body every layer of the request path carries: a fixed
//! buffer (error answers, fixed responses, admin pages) or an upstream's
//! streamed body. A plain enum rather than a boxed trait object, which saves
//! an allocation per request on the proxy's hot path.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::proxy::ResponseBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = GatewayBodyProj]
    pub enum GatewayBody {
        Full { data: Option<Bytes> },
        Upstream { #[pin] body: ResponseBody },
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
}

impl From<Bytes> for GatewayBody {
    fn from(data: Bytes) -> Self {
        GatewayBody::full(data)
    }
}

impl From<ResponseBody> for GatewayBody {
    fn from(body: ResponseBody) -> Self {
        GatewayBody::Upstream { body }
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
            GatewayBodyProj::Upstream { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full { data } => data.is_none(),
            GatewayBody::Upstream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            GatewayBody::Upstream { body } => body.size_hint(),
        }
    }
}
