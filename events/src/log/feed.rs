//! Names of the per-node dispatch feeds: one Kafka topic per node, named by a template.
//!
//! The coordinator (`serve --node-feed-topic TEMPLATE`) writes each node's feed; the node
//! reads its own (`prlx-node run --log kafka://HOST:PORT/TEMPLATE`). Both expand the same
//! template the same way, here, so they cannot disagree on a name.
//!
//! Why a topic per node and not a partition per node of one topic: Kafka authorizes reads
//! per topic, not per partition, so only a topic of its own can be closed to every other
//! node (a prefixed ACL per node's principal). What each feed carries is documented in
//! docs/kafka-topics.md.

use crate::NodeId;

/// What the template holds where the node's id goes.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// The longest name Kafka allows for a topic.
const MAX_TOPIC_LEN: usize = 249;

/// A template with one `{node}`, which becomes the node's id (64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedTopics {
    template: String,
}

/// Why a template is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node feed topic template {template:?}: {reason}")]
pub struct FeedTemplateError {
    pub template: String,
    pub reason: String,
}

impl FeedTopics {
    /// Checks that `template` has exactly one `{node}` and that every name it gives is a
    /// valid Kafka topic name (1 to 249 of `[a-zA-Z0-9._-]`).
    pub fn parse(template: &str) -> Result<Self, FeedTemplateError> {
        let error = |reason: &str| FeedTemplateError {
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        if template.matches(NODE_PLACEHOLDER).count() != 1 {
            return Err(error(
                "it must hold {node} exactly once, where the node's id goes",
            ));
        }
        let rest = template.replace(NODE_PLACEHOLDER, "");
        if !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(error(
                "besides {node}, a Kafka topic name has only [a-zA-Z0-9._-]",
            ));
        }
        if rest.len() + 64 > MAX_TOPIC_LEN {
            return Err(error(
                "with a 64-digit node id it is longer than Kafka's 249",
            ));
        }
        Ok(Self {
            template: template.to_owned(),
        })
    }

    /// Whether `text` holds the placeholder (a log URL naming a feed rather than a log).
    pub fn is_template(text: &str) -> bool {
        text.contains(NODE_PLACEHOLDER)
    }

    /// The template as given.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The topic of `node`'s feed.
    pub fn topic(&self, node: NodeId) -> String {
        self.template.replace(NODE_PLACEHOLDER, &node.0.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hash32;

    #[test]
    fn the_template_names_one_topic_per_node() {
        let t = FeedTopics::parse("prlx-node.{node}").unwrap();
        let node = NodeId(Hash32([0xab; 32]));
        assert_eq!(t.topic(node), format!("prlx-node.{}", "ab".repeat(32)));
        assert_ne!(t.topic(NodeId(Hash32([1; 32]))), t.topic(node));
        assert!(FeedTopics::is_template("kafka://h:1/prlx-node.{node}"));
        assert!(!FeedTopics::is_template("kafka://h:1/prlx-events"));
    }

    #[test]
    fn bad_templates_say_why() {
        for (bad, why) in [
            ("prlx-node", "exactly once"),
            ("{node}.{node}", "exactly once"),
            ("feeds/{node}", "[a-zA-Z0-9._-]"),
            (&format!("{}{{node}}", "x".repeat(200)), "249"),
        ] {
            let err = FeedTopics::parse(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }
}
