//! A queue worker: long-polls a gatehouse queue with the AWS SDK for Rust,
//! prints each message and deletes it.
//!
//! ```text
//! cargo run --example worker -- --queue orders
//! cargo run --example worker -- --queue orders --endpoint http://127.0.0.1:9324
//! ```
//!
//! Any AWS SDK works the same way; only the endpoint URL points at
//! gatehouse. Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
//! when set (needed if `listen.aws.credentials` is configured).
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The queue to consume.
    #[arg(long, default_value = "orders")]
    queue: String,
    /// gatehouse's AWS listener.
    #[arg(long, default_value = "http://127.0.0.1:9324")]
    endpoint: String,
    /// Stop after this many messages (0: never).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "local".into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "local".into());
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(&args.endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(key, secret, None, None, "env"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let url = sqs.get_queue_url().queue_name(&args.queue).send().await?.queue_url.unwrap_or_default();
    println!("consuming {url}");
    let mut handled = 0;
    loop {
        // Long poll: the call returns as soon as a message arrives, or after 20 s.
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await?;
        if got.messages().is_empty() {
            continue;
        }
        let mut done = Vec::new();
        for (i, m) in got.messages().iter().enumerate() {
            let attrs: Vec<String> = m
                .message_attributes()
                .map(|a| a.iter().map(|(k, v)| format!("{k}={}", v.string_value().unwrap_or("…"))).collect())
                .unwrap_or_default();
            println!("{} {} [{}]", m.message_id().unwrap_or("?"), m.body().unwrap_or(""), attrs.join(" "));
            done.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or(""))
                    .build()?,
            );
        }
        sqs.delete_message_batch().queue_url(&url).set_entries(Some(done)).send().await?;
        handled += got.messages().len();
        if args.limit != 0 && handled >= args.limit {
            return Ok(());
        }
    }
}
