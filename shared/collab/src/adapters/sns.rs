//! The SNS adapter of [`EventPublisher`].
//!
//! Messages carry the attributes `document_id` and `replica_id` (String), so that each replica's
//! subscription can filter out its own messages (`{"replica_id": [{"anything-but": ["<id>"]}]}`).

use aws_sdk_sns::types::MessageAttributeValue;

use crate::config::Config;
use crate::ports::{EventPublisher, PublishError, batches};
use crate::wire::Outbound;

/// Publishes to an SNS topic through the real `aws-sdk-sns` client.
#[derive(Clone, Debug)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsPublisher {
    /// A publisher for `topic_arn` using `client`.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        SnsPublisher {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    /// Builds the client from the configuration: the topic's own region (a replica in another
    /// region publishes across), and `AWS_ENDPOINT_URL` when set.
    pub async fn from_config(config: &Config) -> Self {
        let region = topic_region(&config.sns_topic)
            .unwrap_or(&config.aws_region)
            .to_owned();
        let shared = crate::config::aws_loader(&region, config.endpoint_url.as_deref())
            .load()
            .await;
        SnsPublisher::new(aws_sdk_sns::Client::new(&shared), config.sns_topic.clone())
    }

    /// The topic.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// The underlying client.
    pub fn client(&self) -> &aws_sdk_sns::Client {
        &self.client
    }
}

/// The region field of a topic ARN (`arn:aws:sns:<region>:<account>:<name>`).
pub fn topic_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

fn string_attr(value: String) -> Result<MessageAttributeValue, PublishError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| PublishError(e.to_string()))
}

impl EventPublisher for SnsPublisher {
    async fn publish(&self, message: &Outbound) -> Result<(), PublishError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(&message.body)
            .message_attributes("document_id", string_attr(message.document_id.to_string())?)
            .message_attributes("replica_id", string_attr(message.origin.to_string())?)
            .send()
            .await
            .map_err(|e| PublishError(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    /// `PublishBatch`: up to ten messages (256 KiB in all) per call.
    async fn publish_batch(&self, messages: &[Outbound]) -> Vec<Result<(), PublishError>> {
        use aws_sdk_sns::types::PublishBatchRequestEntry;
        let mut out: Vec<Result<(), PublishError>> = Vec::with_capacity(messages.len());
        for range in batches(messages) {
            let chunk = &messages[range.clone()];
            let entries: Result<Vec<_>, PublishError> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    PublishBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message(&m.body)
                        .message_attributes("document_id", string_attr(m.document_id.to_string())?)
                        .message_attributes("replica_id", string_attr(m.origin.to_string())?)
                        .build()
                        .map_err(|e| PublishError(e.to_string()))
                })
                .collect();
            let sent = match entries {
                Ok(entries) => self
                    .client
                    .publish_batch()
                    .topic_arn(&self.topic_arn)
                    .set_publish_batch_request_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| {
                        PublishError(aws_sdk_sns::error::DisplayErrorContext(e).to_string())
                    }),
                Err(e) => Err(e),
            };
            match sent {
                Ok(answer) => {
                    let mut results: Vec<Result<(), PublishError>> = (0..chunk.len())
                        .map(|_| Err(PublishError("SNS did not report this entry".into())))
                        .collect();
                    for ok in answer.successful() {
                        if let Some(i) = ok.id().and_then(|id| id.parse::<usize>().ok())
                            && i < results.len()
                        {
                            results[i] = Ok(());
                        }
                    }
                    for failed in answer.failed() {
                        if let Ok(i) = failed.id().parse::<usize>()
                            && i < results.len()
                        {
                            results[i] = Err(PublishError(format!(
                                "{}: {}",
                                failed.code(),
                                failed.message().unwrap_or("")
                            )));
                        }
                    }
                    out.extend(results);
                }
                Err(e) => out.extend(chunk.iter().map(|_| Err(PublishError(e.0.clone())))),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_topic_arn() {
        assert_eq!(
            topic_region("arn:aws:sns:eu-west-1:123456789012:collab"),
            Some("eu-west-1")
        );
        assert_eq!(topic_region("arn:aws:sns::123456789012:collab"), None);
        assert_eq!(topic_region("collab"), None);
    }
}
