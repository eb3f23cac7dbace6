//! Sending a body to an SQS queue: the business's own, or the template's forward queue.

use futures::future::BoxFuture;

use super::{Forward, ForwardError, MAX_FORWARDED_BODY};

#[derive(Debug, Clone)]
pub struct SqsForward {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsForward {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }

    /// The queue at `url`, reached as `target` says (its endpoint an emulator's in tests).
    pub async fn connect_to(url: String, target: &crate::aws::AwsTarget) -> Self {
        Self::new(aws_sdk_sqs::Client::new(&crate::aws::load(target).await), url)
    }

    /// The queue named by `arn`, reached in its own region with `sdk`'s credentials.
    pub fn for_arn(sdk: &aws_config::SdkConfig, arn: &str) -> Result<Self, QueueArnError> {
        let queue = QueueArn::parse(arn)?;
        let config =
            aws_sdk_sqs::config::Builder::from(sdk).region(aws_config::Region::new(queue.region.clone())).build();
        Ok(Self::new(aws_sdk_sqs::Client::from_conf(config), queue.url()))
    }
}

/// An SQS queue's ARN, `arn:<partition>:sqs:<region>:<account>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)")]
pub struct QueueArnError(String);

impl QueueArn {
    pub fn parse(arn: &str) -> Result<Self, QueueArnError> {
        let bad = || QueueArnError(arn.to_owned());
        let parts: Vec<&str> = arn.split(':').collect();
        let [prefix, partition, service, region, account, name] = parts[..] else { return Err(bad()) };
        let filled = [partition, region, account, name].iter().all(|part| !part.is_empty());
        if prefix != "arn" || service != "sqs" || !filled || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Self { partition: partition.into(), region: region.into(), account: account.into(), name: name.into() })
    }

    /// The queue's URL, which the SQS API names it by.
    pub fn url(&self) -> String {
        let domain = if self.partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
        format!("https://sqs.{}.{domain}/{}/{}", self.region, self.account, self.name)
    }
}

impl Forward for SqsForward {
    fn forward<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, Result<(), ForwardError>> {
        Box::pin(async move {
            if body.len() > MAX_FORWARDED_BODY {
                return Err(ForwardError::Refused(format!(
                    "{} bytes is over an SQS message's {MAX_FORWARDED_BODY}",
                    body.len()
                )));
            }
            // Meta's bodies are JSON, which is UTF-8; SQS takes text only.
            let text =
                std::str::from_utf8(body).map_err(|_| ForwardError::Refused("the body is not UTF-8 text".into()))?;
            let sent = self.client.send_message().queue_url(&self.url).message_body(text).send().await;
            sent.map(|_| ()).map_err(|e| {
                let detail = format!("the forward queue did not take the body: {}", crate::aws::readable(&e));
                // The queue refuses this body whatever the time (its own size limit, characters
                // it does not take): Meta's redelivery would meet the same answer.
                match e.as_service_error().and_then(|e| e.meta().code()) {
                    Some("InvalidParameterValue" | "InvalidMessageContents") => ForwardError::Refused(detail),
                    _ => ForwardError::Failed(detail),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_arn_gives_its_region_and_url() {
        let queue = QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012:inbox-webhooks").unwrap();
        assert_eq!(queue.region, "eu-west-1");
        assert_eq!(queue.url(), "https://sqs.eu-west-1.amazonaws.com/123456789012/inbox-webhooks");
        let china = QueueArn::parse("arn:aws-cn:sqs:cn-north-1:123456789012:inbox").unwrap();
        assert_eq!(china.url(), "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/inbox");
        for bad in [
            "",
            "https://sqs.eu-west-1.amazonaws.com/1/q",
            "arn:aws:sns:eu-west-1:123456789012:t",
            "arn:aws:sqs:eu-west-1:acct:q",
            "arn:aws:sqs:eu-west-1:123456789012:",
        ] {
            assert!(QueueArn::parse(bad).is_err(), "{bad}");
        }
    }
}
