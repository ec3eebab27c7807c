//! [`GateFuture`]: the future of a layer that, at call time, refuses a
//! request, passes it on to the inner service, or must wait for something
//! first (auth refetching a key set, the WAF reading a body) and so boxes
//! the rest of its work.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;

use crate::body::GatewayBody;
use crate::error::BoxHttpError;

/// What a route's services answer.
pub type Answer = Result<Response<GatewayBody>, BoxHttpError>;

pin_project! {
    #[project = GateProj]
    pub enum GateFuture<F> {
        /// Refused at call time.
        Refused { error: Option<BoxHttpError> },
        /// Passed on: the inner service's future.
        Passed { #[pin] inner: F },
        /// Decided after a wait, then (perhaps) passed on.
        Later { future: BoxFuture<'static, Answer> },
    }
}

impl<F> GateFuture<F> {
    pub fn refuse(error: impl Into<BoxHttpError>) -> Self {
        GateFuture::Refused { error: Some(error.into()) }
    }
}

impl<F: Future<Output = Answer>> Future for GateFuture<F> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.project() {
            GateProj::Refused { error } => {
                Poll::Ready(Err(error.take().expect("a refused request is polled once")))
            }
            GateProj::Passed { inner } => inner.poll(cx),
            GateProj::Later { future } => future.as_mut().poll(cx),
        }
    }
}
