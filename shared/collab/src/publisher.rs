//! The broadcast port and its SNS adapter.
//!
//! Messages carry the attributes `document_id` and `replica_id` (String), so that each replica's
//! subscription can filter out its own messages (`{"replica_id": [{"anything-but": ["<id>"]}]}`).

use std::future::Future;

use aws_sdk_sns::types::MessageAttributeValue;

use crate::config::Config;
use crate::message::Outbound;

/// Why a publish failed (the message stays in the outbox).
#[derive(Debug, thiserror::Error)]
#[error("publish failed: {0}")]
pub struct PublishError(pub String);

/// Sends messages to the other replicas.
pub trait EventPublisher: Send + Sync {
    /// Publishes one message (at most 256 KiB as SNS counts it).
    fn publish(&self, message: &Outbound) -> impl Future<Output = Result<(), PublishError>> + Send;
}

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
