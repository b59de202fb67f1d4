//! Namespace policy: what clients may do on the channels of one namespace.

use std::collections::HashMap;
use std::sync::Arc;

/// What the hub does when a subscriber's queue is full. In configuration files: `"disconnect"` or `"drop"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Close the connection with 4000; the client reconnects and recovers. The default.
    #[default]
    #[serde(rename = "disconnect")]
    Disconnect,
    /// Drop this message for this subscriber and count the drop.
    #[serde(rename = "drop")]
    DropMessage,
}

/// The policy of one namespace (PROTOCOL.md, "Channels"). It (de)serializes with these field names, every
/// field optional and unknown fields refused, so a server can read it straight from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespaceConfig {
    /// May clients publish? Default `true`.
    pub allow_publish: bool,
    /// May anonymous connections subscribe? Default `true`.
    pub allow_anonymous: bool,
    /// May clients ask who is subscribed? Default `false`.
    pub presence: bool,
    /// Are `join` and `leave` events sent to subscribers? Default `false`.
    pub join_leave: bool,
    /// How many recent publications each channel keeps for history and recovery; 0 keeps none. Default 0.
    pub history_size: usize,
    /// How long a kept publication stays, in milliseconds; 0 means until pushed out. Default 0.
    pub history_ttl_ms: u64,
    /// The largest `data` a client may publish, in bytes. Default 65,536.
    pub max_payload_bytes: usize,
    /// What happens when a subscriber's queue is full. Default [`SlowConsumerPolicy::Disconnect`].
    pub slow_consumer: SlowConsumerPolicy,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            allow_publish: true,
            allow_anonymous: true,
            presence: false,
            join_leave: false,
            history_size: 0,
            history_ttl_ms: 0,
            max_payload_bytes: 64 * 1024,
            slow_consumer: SlowConsumerPolicy::Disconnect,
        }
    }
}

impl NamespaceConfig {
    /// Sets [`Self::allow_publish`].
    #[must_use]
    pub fn allow_publish(mut self, on: bool) -> Self {
        self.allow_publish = on;
        self
    }
    /// Sets [`Self::allow_anonymous`].
    #[must_use]
    pub fn allow_anonymous(mut self, on: bool) -> Self {
        self.allow_anonymous = on;
        self
    }
    /// Sets [`Self::presence`].
    #[must_use]
    pub fn presence(mut self, on: bool) -> Self {
        self.presence = on;
        self
    }
    /// Sets [`Self::join_leave`].
    #[must_use]
    pub fn join_leave(mut self, on: bool) -> Self {
        self.join_leave = on;
        self
    }
    /// Sets [`Self::history_size`] and [`Self::history_ttl_ms`].
    #[must_use]
    pub fn history(mut self, size: usize, ttl_ms: u64) -> Self {
        self.history_size = size;
        self.history_ttl_ms = ttl_ms;
        self
    }
    /// Sets [`Self::max_payload_bytes`].
    #[must_use]
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }
    /// Sets [`Self::slow_consumer`].
    #[must_use]
    pub fn slow_consumer(mut self, policy: SlowConsumerPolicy) -> Self {
        self.slow_consumer = policy;
        self
    }
}

/// The namespaces a hub knows: the default namespace (channels with no `:`)
/// and named ones. A channel whose namespace is not configured gets the
/// default namespace's policy.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    default: Arc<NamespaceConfig>,
    named: HashMap<String, Arc<NamespaceConfig>>,
}

impl Namespaces {
    /// Namespaces with the given default policy and no named ones.
    #[must_use]
    pub fn new(default: NamespaceConfig) -> Self {
        Self { default: Arc::new(default), named: HashMap::new() }
    }

    /// Adds or replaces a named namespace.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, config: NamespaceConfig) -> Self {
        let name = name.into();
        if name.is_empty() {
            self.default = Arc::new(config);
        } else {
            self.named.insert(name, Arc::new(config));
        }
        self
    }

    /// The policy for a namespace name (`""` is the default namespace).
    #[must_use]
    pub fn get(&self, namespace: &str) -> &Arc<NamespaceConfig> {
        self.named.get(namespace).unwrap_or(&self.default)
    }

    /// The default namespace's policy.
    #[must_use]
    pub fn default_policy(&self) -> &Arc<NamespaceConfig> {
        &self.default
    }
}
