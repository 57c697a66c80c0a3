//! A topic's settings as the brokers keep them: read with DescribeConfigs
//! and changed one key at a time with IncrementalAlterConfigs (KIP-339),
//! spoken over the Kafka protocol (`kafka-protocol` encodes the messages).
//!
//! Why not the Kafka client library: librdkafka, through rdkafka 0.39,
//! offers only the legacy AlterConfigs, which replaces every setting of the
//! topic (those not sent revert to the broker's defaults) and drops each
//! resource's error; some brokers (tansu) do not implement it at all.
//! Requests go to the first bootstrap broker that answers (port 9092 when
//! none is given, as librdkafka defaults); brokers forward topic config
//! changes to the controller themselves. Whether a broker supports a
//! request is asked first (ApiVersions), so a broker lacking it is told
//! apart from one that went away. Plaintext only, as the rest of
//! Tributary's Kafka use today.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The resource type of a topic in config requests.
const TOPIC: i8 = 2;
/// IncrementalAlterConfigs' SET operation.
const SET: i8 = 0;
/// Versions spoken: the oldest that carry what is needed (Kafka 1.1 and
/// 2.3), for the widest range of brokers.
const DESCRIBE_VERSION: i16 = 1;
const ALTER_VERSION: i16 = 0;
/// Longest answer read (a topic's configs are a few kB).
const MAX_RESPONSE: usize = 16 << 20;

/// Why a topic's settings could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Kafka at {bootstrap} did not answer: {message}")]
    Unreachable { bootstrap: String, message: String },
    /// The broker does not implement the request, or will not let it
    /// change the setting (a policy, the operator's rights): a lasting
    /// state to report, not to retry.
    #[error("{0}")]
    Refused(String),
    /// Anything else the broker answered.
    #[error("{0}")]
    Failed(String),
}

/// Answers meaning "this broker will not do it".
fn lasting(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::UnsupportedVersion
            | ResponseError::InvalidRequest
            | ResponseError::PolicyViolation
            | ResponseError::InvalidConfig
            | ResponseError::ClusterAuthorizationFailed
            | ResponseError::TopicAuthorizationFailed
    )
}

fn from_code(code: i16, message: Option<&StrBytes>) -> Result<(), ConfigError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => {
            let text = match message.map(StrBytes::as_str) {
                Some(m) if !m.is_empty() => format!("{e}: {m}"),
                _ => e.to_string(),
            };
            Err(if lasting(e) {
                ConfigError::Refused(text)
            } else {
                ConfigError::Failed(text)
            })
        }
    }
}

/// Topic settings on the brokers of one bootstrap list.
pub struct TopicConfigs {
    bootstrap: String,
    timeout: Duration,
}

impl TopicConfigs {
    /// Requests time out after `timeout`.
    pub fn new(bootstrap: &str, timeout: Duration) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            timeout,
        }
    }

    fn unreachable(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Unreachable {
            bootstrap: self.bootstrap.clone(),
            message: message.into(),
        }
    }

    /// One request to the first broker that takes the connection, once it
    /// said it supports `key` at `version`.
    async fn call<Req, Resp>(
        &self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ConfigError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let mut last = String::from("no broker in the list");
        for broker in self
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            let broker = with_port(broker);
            let connected =
                tokio::time::timeout(self.timeout, TcpStream::connect(broker.as_str())).await;
            let mut stream = match connected {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = format!("{broker}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("{broker}: no connection within {:?}", self.timeout);
                    continue;
                }
            };
            let asked = async {
                let versions: ApiVersionsResponse = exchange(
                    &mut stream,
                    ApiKey::ApiVersions,
                    0,
                    &ApiVersionsRequest::default(),
                )
                .await?;
                let supported = versions.api_keys.iter().any(|k| {
                    k.api_key == key as i16 && (k.min_version..=k.max_version).contains(&version)
                });
                if !supported {
                    return Ok(Err(ConfigError::Refused(format!(
                        "{broker} does not support {key:?} version {version}"
                    ))));
                }
                exchange(&mut stream, key, version, request).await.map(Ok)
            };
            return tokio::time::timeout(self.timeout, asked)
                .await
                .map_err(|_| {
                    self.unreachable(format!("{broker}: no answer within {:?}", self.timeout))
                })?
                .map_err(|e| match e {
                    Exchange::Closed => self.unreachable(format!("{broker} closed the connection")),
                    Exchange::Io(m) => self.unreachable(format!("{broker}: {m}")),
                    Exchange::Protocol(m) => ConfigError::Failed(format!("{broker}: {m}")),
                })?;
        }
        Err(self.unreachable(last))
    }

    /// The topic's `key` setting as the broker reports it (`None`: not
    /// reported, the broker's default applies).
    pub async fn get(&self, topic: &str, key: &'static str) -> Result<Option<String>, ConfigError> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                // Every key (null), as librdkafka asks: tansu cannot decode a
                // list of names here.
                .with_configuration_keys(None),
        ]);
        let response: DescribeConfigsResponse = self
            .call(ApiKey::DescribeConfigs, DESCRIBE_VERSION, &request)
            .await?;
        let Some(result) = response.results.first() else {
            return Err(ConfigError::Failed(format!(
                "no result for topic {topic} in the answer"
            )));
        };
        from_code(result.error_code, result.error_message.as_ref())?;
        Ok(result
            .configs
            .iter()
            .find(|c| c.name.as_str() == key)
            .and_then(|c| c.value.as_ref().map(|v| v.as_str().to_owned())))
    }

    /// Sets the topic's `key` to `value`, leaving its other settings as
    /// they are.
    pub async fn set(
        &self,
        topic: &str,
        key: &'static str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_static_str(key))
                        .with_config_operation(SET)
                        .with_value(Some(StrBytes::from_string(value.to_owned()))),
                ]),
        ]);
        let response: IncrementalAlterConfigsResponse = self
            .call(ApiKey::IncrementalAlterConfigs, ALTER_VERSION, &request)
            .await?;
        match response.responses.first() {
            Some(r) => from_code(r.error_code, r.error_message.as_ref()),
            None => Err(ConfigError::Failed(format!(
                "no result for topic {topic} in the answer"
            ))),
        }
    }
}

/// `host:port`, with Kafka's port where `broker` gives none.
fn with_port(broker: &str) -> String {
    let has_port = match broker.rsplit_once(':') {
        // `[::1]:9092`, `host:9092`; a bare IPv6 address has no port.
        Some((host, port)) => {
            (host.ends_with(']') || !host.contains(':')) && port.parse::<u16>().is_ok()
        }
        None => false,
    };
    if has_port {
        broker.to_owned()
    } else {
        format!("{broker}:9092")
    }
}

enum Exchange {
    /// Closed before an answer: what brokers do with a request they do not
    /// know.
    Closed,
    Io(String),
    Protocol(String),
}

async fn exchange<Req, Resp>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, Exchange>
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let correlation = key as i32 + 1;
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("tributary")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .and_then(|()| request.encode(&mut body, version))
        .map_err(|e| Exchange::Protocol(format!("encoding the request: {e}")))?;
    let length = i32::try_from(body.len())
        .map_err(|_| Exchange::Protocol("request too large".to_owned()))?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&body);
    stream
        .write_all(&frame)
        .await
        .map_err(|e| Exchange::Io(e.to_string()))?;
    let mut size = [0u8; 4];
    match stream.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Exchange::Closed),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(Exchange::Closed),
        Err(e) => return Err(Exchange::Io(e.to_string())),
    }
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|&n| n <= MAX_RESPONSE)
        .ok_or_else(|| Exchange::Protocol("an answer of impossible size".to_owned()))?;
    let mut answer = vec![0u8; size];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| Exchange::Io(e.to_string()))?;
    let mut answer = bytes::Bytes::from(answer);
    let header = ResponseHeader::decode(&mut answer, Resp::header_version(version))
        .map_err(|e| Exchange::Protocol(format!("decoding the answer's header: {e}")))?;
    if header.correlation_id != correlation {
        return Err(Exchange::Protocol(format!(
            "an answer to request {} instead of {correlation}",
            header.correlation_id
        )));
    }
    let decoded = Resp::decode(&mut answer, version)
        .map_err(|e| Exchange::Protocol(format!("decoding the answer: {e}")))?;
    if answer.has_remaining() {
        return Err(Exchange::Protocol(format!(
            "{} bytes left after the answer",
            answer.remaining()
        )));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_without_a_port_get_kafkas() {
        assert_eq!(with_port("kafka"), "kafka:9092");
        assert_eq!(with_port("kafka:9093"), "kafka:9093");
        assert_eq!(with_port("[::1]:9093"), "[::1]:9093");
    }
}
