//! The API Gateway management adapter of [`ConnectionPoster`]: `PostToConnection` and
//! `DeleteConnection` on the WebSocket API's stage, a `GoneException` reported as
//! [`PostError::Gone`].

use crate::ports::{ConnectionPoster, PostError};

/// Posts through `aws-sdk-apigatewaymanagement`, to the endpoint of the WebSocket API's stage
/// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`, or the local gateway's).
#[derive(Clone, Debug)]
pub struct ApiGatewayPoster {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayPoster {
    /// A poster for the stage at `endpoint`, with the default credentials chain.
    pub async fn new(endpoint: &str, region: &str) -> Self {
        let conf = crate::config::aws_loader(region, None).load().await;
        Self::from_sdk(&conf, endpoint)
    }

    /// A poster for the stage at `endpoint` from an SDK configuration.
    pub fn from_sdk(conf: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(conf)
            .endpoint_url(endpoint)
            .build();
        ApiGatewayPoster {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(conf),
        }
    }
}

impl ConnectionPoster for ApiGatewayPoster {
    async fn post(&self, connection: &str, data: &str) -> Result<(), PostError> {
        use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
        match self
            .client
            .post_to_connection()
            .connection_id(connection)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                data.as_bytes(),
            ))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => Err(PostError::Gone),
                _ => Err(PostError::Other(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string(),
                )),
            },
        }
    }

    async fn close(&self, connection: &str) -> Result<(), PostError> {
        use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
        match self
            .client
            .delete_connection()
            .connection_id(connection)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(DeleteConnectionError::GoneException(_)) => Err(PostError::Gone),
                _ => Err(PostError::Other(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string(),
                )),
            },
        }
    }
}
