//! The features a dispatcher runs: each is a bit of `nr_if_config`'s feature
//! words (one word per hook), read by the kernel on every packet.

/// A feature the dispatcher can run (a bit of nr_if_config.features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Firewall,
    Monitor,
    Flows,
    Capture,
    ChainNext,
    /// `firewall policy in drop`: drop what no rule decides (ingress hooks).
    PolicyDrop,
    /// Note the replies to what this host sends (TC egress), for PolicyDrop.
    Replies,
    /// An event for each packet the firewall drops (`netray drops`), on the monitor's ring.
    Drops,
}

impl Feature {
    pub const ALL: [Feature; 8] = [
        Feature::Firewall,
        Feature::Monitor,
        Feature::Flows,
        Feature::Capture,
        Feature::ChainNext,
        Feature::Drops,
        Feature::PolicyDrop,
        Feature::Replies,
    ];

    pub fn bit(self) -> u32 {
        use netray_ebpf::abi::nr_feature as F;
        (match self {
            Feature::Firewall => F::NR_FEAT_FIREWALL,
            Feature::Monitor => F::NR_FEAT_MONITOR,
            Feature::Flows => F::NR_FEAT_FLOWS,
            Feature::Capture => F::NR_FEAT_CAPTURE,
            Feature::ChainNext => F::NR_FEAT_CHAIN_NEXT,
            Feature::PolicyDrop => F::NR_FEAT_POLICY_DROP,
            Feature::Replies => F::NR_FEAT_REPLIES,
            Feature::Drops => F::NR_FEAT_DROPS,
        })
        .0
    }

    pub fn name(self) -> &'static str {
        match self {
            Feature::Firewall => "firewall",
            Feature::Monitor => "monitor",
            Feature::Flows => "flows",
            Feature::Capture => "capture",
            Feature::ChainNext => "chain",
            Feature::PolicyDrop => "policy-drop",
            Feature::Replies => "replies",
            Feature::Drops => "drops",
        }
    }

    pub fn names(bits: u32) -> Vec<&'static str> {
        Feature::ALL.iter().filter(|f| bits & f.bit() != 0).map(|f| f.name()).collect()
    }
}
