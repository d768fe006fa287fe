//! `kafka-util`: Kafka plumbing of the stages that use Kafka (edge, ingest,
//! migrate; the api and aggregator link no Kafka client): the base client
//! config and idempotent topic creation.

use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use schemas::topics::TopicSpec;

/// Errors of topic administration.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The broker could not be reached or refused the request (retryable).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Creating a topic failed for another reason than "already exists".
    #[error("kafka: creating topic {topic}: {code}")]
    Create {
        /// Topic name.
        topic: String,
        /// Broker error code.
        code: RDKafkaErrorCode,
    },
    /// Setting the configs of an existing topic was refused.
    #[error("kafka: setting the configs of {resource}: {code}")]
    Configure {
        /// The topic (or resource) refused.
        resource: String,
        /// Broker error code.
        code: RDKafkaErrorCode,
    },
    /// An existing topic has fewer partitions than its spec (never shrunk
    /// or grown silently: repartitioning moves keys between partitions).
    #[error("kafka: topic {topic} has {actual} partitions, expected {expected}")]
    PartitionMismatch {
        /// Topic name.
        topic: String,
        /// Partitions found.
        actual: usize,
        /// Partitions in the spec.
        expected: i32,
    },
}

/// Base librdkafka config for `brokers` (comma-separated `host:port`): client
/// id and the socket timeouts every client of ours uses.
pub fn base_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        .set("socket.timeout.ms", "10000")
        .set("socket.keepalive.enable", "true");
    c
}

/// What [`ensure_topics`] did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    /// Topic name.
    pub name: String,
    /// Partitions it has now.
    pub partitions: usize,
    /// True when this call created it; false when it existed.
    pub created: bool,
}

/// Creates every topic of `specs` that does not exist, with its partition
/// count, replication and configs; sets the configs of those that existed
/// (so a retention changed in `schemas` reaches them: the personal data the
/// raw events hold must not outlive it); then checks each has its
/// partitions. Idempotent. Errors: broker unreachable, creation or config
/// change refused, or an existing topic with a different partition count.
pub async fn ensure_topics(brokers: &str, specs: &[TopicSpec]) -> Result<Vec<TopicOutcome>, TopicError> {
    let admin: AdminClient<DefaultClientContext> = base_config(brokers, "smartlinks-migrate").create()?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            s.config
                .iter()
                .fold(NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(s.replication)), |t, (k, v)| {
                    t.set(k, v)
                })
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(new_topics.iter(), &opts).await?;
    let mut created = std::collections::HashSet::new();
    for r in results {
        match r {
            Ok(name) => {
                created.insert(name);
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    let existing: Vec<AlterConfig<'_>> = specs
        .iter()
        .filter(|s| !created.contains(&s.name) && !s.config.is_empty())
        .map(|s| s.config.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(&s.name)), |a, (k, v)| a.set(k, v)))
        .collect();
    if !existing.is_empty() {
        for r in admin.alter_configs(existing.iter(), &opts).await? {
            if let Err((resource, code)) = r {
                let resource = match resource {
                    rdkafka::admin::OwnedResourceSpecifier::Topic(t) => t,
                    other => format!("{other:?}"),
                };
                return Err(TopicError::Configure { resource, code });
            }
        }
    }
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let partitions = partition_count(&admin, &s.name).await?;
        if partitions != s.partitions as usize {
            return Err(TopicError::PartitionMismatch {
                topic: s.name.clone(),
                actual: partitions,
                expected: s.partitions,
            });
        }
        out.push(TopicOutcome { name: s.name.clone(), partitions, created: created.contains(&s.name) });
    }
    Ok(out)
}

/// Partitions of `topic` from broker metadata; 0 when the topic is still
/// unknown after 10 s (a just-created topic can take a moment to show its
/// partitions: polled every 100 ms).
async fn partition_count(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<usize, KafkaError> {
    enum Poll {
        Empty,
        Failed(KafkaError),
    }
    let fetch = || async {
        let md = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(Poll::Failed)?;
        match md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len()) {
            0 => Err(Poll::Empty),
            n => Ok(n),
        }
    };
    let backoff = ConstantBuilder::new().with_delay(Duration::from_millis(100)).with_max_times(100);
    match fetch.retry(backoff).when(|e| matches!(e, Poll::Empty)).await {
        Ok(n) => Ok(n),
        Err(Poll::Empty) => Ok(0),
        Err(Poll::Failed(e)) => Err(e),
    }
}

/// Asks the cluster for its metadata through a throwaway producer: a real
/// round trip, used by readiness checks. Returns the broker count.
pub fn probe(brokers: &str, timeout: Duration) -> Result<usize, KafkaError> {
    let p: rdkafka::producer::BaseProducer = base_config(brokers, "smartlinks-probe").create()?;
    let md = p.client().fetch_metadata(None, timeout)?;
    Ok(md.brokers().len())
}
