//! Applying an operation to the queue engine.

use std::sync::Arc;

use base64::Engine as _;

use super::error::Error;
use super::op::{Entry, Op, Page};
use super::output::{BatchOutput, Output, QueueUrls};
use crate::queue::storage::Storage;
use crate::queue::{Queue, QueueEngine, QueueError};

/// Who calls, and how they reached us.
pub struct Caller<'a> {
    /// The `Host` the client used, for queue URLs.
    pub host: &'a str,
    /// Who is calling (`SenderId` of sent messages).
    pub sender: Option<String>,
}

impl Op {
    /// Runs the operation.
    pub async fn apply<S: Storage>(
        self,
        engine: &Arc<QueueEngine<S>>,
        caller: Caller<'_>,
    ) -> Result<Output, Error> {
        let url = |name: &str| engine.url(caller.host, name);
        let queue = |url: &str| engine.queue_from_url(url);
        Ok(match self {
            Op::CreateQueue { name, attributes, tags } => {
                let q = engine.create_queue(&name, &attributes, tags).await?;
                Output::QueueUrl(url(&q.name))
            }
            Op::GetQueueUrl { name, owner } => {
                if owner.is_some_and(|o| o != engine.account().id) {
                    return Err(QueueError::no_queue().into());
                }
                Output::QueueUrl(url(&engine.queue(&name)?.name))
            }
            Op::ListQueues { prefix, page } => {
                let (names, next) = paginate(engine.list(prefix.as_deref()), page);
                Output::QueueUrls(QueueUrls { urls: names.iter().map(|n| url(n)).collect(), next })
            }
            Op::DeleteQueue { queue: q } => {
                engine.delete_queue(&*queue(&q)?).await?;
                Output::Empty
            }
            Op::PurgeQueue { queue: q } => {
                engine.purge(&*queue(&q)?).await?;
                Output::Empty
            }
            Op::GetQueueAttributes { queue: q, names } => {
                Output::Attributes(engine.get_attributes(&*queue(&q)?, &names).await?)
            }
            Op::SetQueueAttributes { queue: q, attributes } => {
                engine.set_attributes(&*queue(&q)?, &attributes).await?;
                Output::Empty
            }
            Op::SendMessage { queue: q, mut message } => {
                message.sender = caller.sender;
                let mut results = engine.send(&*queue(&q)?, vec![message]).await?;
                let r = results.pop().ok_or_else(|| QueueError::Internal("no result".into()))??;
                Output::Sent(r)
            }
            Op::SendMessageBatch { queue: q, entries, body_bytes } => {
                send_batch(engine, &*queue(&q)?, entries, body_bytes, caller.sender).await?
            }
            Op::ReceiveMessage { queue: q, request } => {
                Output::Messages(engine.receive(&queue(&q)?, &request).await?)
            }
            Op::DeleteMessage { queue: q, handle } => {
                engine.delete(&*queue(&q)?, &[handle]).await?.pop().unwrap_or(Ok(()))?;
                Output::Empty
            }
            Op::DeleteMessageBatch { queue: q, entries } => {
                let q = queue(&q)?;
                run_batch(entries, |handles| async move { engine.delete(&q, &handles).await }).await?
            }
            Op::ChangeMessageVisibility { queue: q, handle, timeout } => {
                engine
                    .change_visibility(&*queue(&q)?, &[(handle, timeout)])
                    .await?
                    .pop()
                    .unwrap_or(Ok(()))?;
                Output::Empty
            }
            Op::ChangeMessageVisibilityBatch { queue: q, entries } => {
                let q = queue(&q)?;
                run_batch(entries, |changes| async move { engine.change_visibility(&q, &changes).await })
                    .await?
            }
            Op::TagQueue { queue: q, tags } => {
                engine.tag(&*queue(&q)?, tags).await?;
                Output::Empty
            }
            Op::UntagQueue { queue: q, keys } => {
                engine.untag(&*queue(&q)?, &keys).await?;
                Output::Empty
            }
            Op::ListQueueTags { queue: q } => Output::Tags(queue(&q)?.record().tags),
            Op::ListDeadLetterSourceQueues { queue: q, page } => {
                let (names, next) = paginate(engine.dead_letter_sources(&*queue(&q)?), page);
                Output::SourceQueueUrls(QueueUrls { urls: names.iter().map(|n| url(n)).collect(), next })
            }
            Op::StartMessageMoveTask { source, destination, rate } => {
                let source = queue_from_arn(engine, &source)?;
                let destination = destination.map(|arn| queue_from_arn(engine, &arn)).transpose()?;
                Output::TaskHandle(engine.start_move_task(&source, destination, rate).await?)
            }
            Op::ListMessageMoveTasks { source, max } => {
                let source = queue_from_arn(engine, &source)?;
                Output::MoveTasks(engine.list_move_tasks(&source, max as usize))
            }
            Op::CancelMessageMoveTask { handle } => Output::Moved(engine.cancel_move_task(&handle)?),
        })
    }
}

fn queue_from_arn<S: Storage>(engine: &QueueEngine<S>, arn: &str) -> Result<Arc<Queue>, QueueError> {
    let name = arn.strip_prefix(&engine.account().arn_prefix()).ok_or_else(|| {
        QueueError::ResourceNotFound(format!("{arn} is not a queue ARN of this account and region."))
    })?;
    engine
        .queue(name)
        .map_err(|_| QueueError::ResourceNotFound(format!("The resource {arn} does not exist.")))
}

/// One page of `names` (sorted), and the token of the next.
fn paginate(names: Vec<String>, page: Page) -> (Vec<String>, Option<String>) {
    let rest: Vec<String> = names.into_iter().filter(|n| page.after.as_ref().is_none_or(|a| n > a)).collect();
    match page.max {
        Some(m) if rest.len() > m as usize => {
            let page: Vec<String> = rest.into_iter().take(m as usize).collect();
            let token = page.last().map(|l| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(l));
            (page, token)
        }
        _ => (rest, None),
    }
}

/// `SendMessageBatch`: refused whole if its bodies together exceed the
/// queue's message size, else each entry sent or failed on its own.
async fn send_batch<S: Storage>(
    engine: &QueueEngine<S>,
    q: &Queue,
    entries: Vec<Entry<crate::queue::SendRequest>>,
    body_bytes: usize,
    sender: Option<String>,
) -> Result<Output, Error> {
    let limit = q.attributes().max_message_size as usize;
    if body_bytes > limit {
        return Err(Error::BatchRequestTooLong(format!(
            "Batch requests cannot be longer than {limit} bytes. You have sent {body_bytes} bytes."
        )));
    }
    let (ids, mut requests, mut out) = split(entries);
    for r in &mut requests {
        r.sender.clone_from(&sender);
    }
    let results = if requests.is_empty() { Vec::new() } else { engine.send(q, requests).await? };
    for (id, r) in ids.into_iter().zip(results) {
        match r {
            Ok(r) => out.sent(id, r),
            Err(e) => out.fail(id, &e.into()),
        }
    }
    Ok(Output::Batch(out))
}

/// A batch whose successes answer only their ids: `run` applies the good
/// entries' items, answering one result each.
async fn run_batch<T, F>(entries: Vec<Entry<T>>, run: impl FnOnce(Vec<T>) -> F) -> Result<Output, Error>
where
    F: std::future::Future<Output = Result<Vec<Result<(), QueueError>>, QueueError>>,
{
    let (ids, items, mut out) = split(entries);
    let results = run(items).await?;
    for (id, r) in ids.into_iter().zip(results) {
        match r {
            Ok(()) => out.done(id),
            Err(e) => out.fail(id, &e.into()),
        }
    }
    Ok(Output::Batch(out))
}

/// The ids and items of a batch's good entries, and an answer holding the
/// failures of the others.
fn split<T>(entries: Vec<Entry<T>>) -> (Vec<String>, Vec<T>, BatchOutput) {
    let (mut ids, mut items, mut out) = (Vec::new(), Vec::new(), BatchOutput::default());
    for Entry { id, item } in entries {
        match item {
            Ok(x) => {
                ids.push(id);
                items.push(x);
            }
            Err(e) => out.fail(id, &e),
        }
    }
    (ids, items, out)
}
