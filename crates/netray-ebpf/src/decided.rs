//! What decided a packet, from the kernel's encoding of a decided rule: a rule
//! or limit id with the bits of `enum nr_fw_decided_bit` (netray_abi.h) above
//! it. The monitor event's `rule_id` and a flow's `last_rule` carry it whole;
//! this is the one place that reads those bits.

use std::fmt;

use crate::abi::nr_fw_decided_bit as B;

const fn bit(b: B) -> u32 {
    1 << b.0
}

const POLICY: u32 = bit(B::NR_FW_POLICY_BIT);
const ALLOW: u32 = bit(B::NR_FW_ALLOW_BIT);
const LIMITED: u32 = bit(B::NR_FW_LIMITED_BIT);
const PASSES: u32 = bit(B::NR_FW_PASSES_BIT);
const ID: u32 = !(POLICY | ALLOW | LIMITED | PASSES);

/// What decided a packet, as a user reads it ([`fmt::Display`]: `rule 7`,
/// `audit rule 2`, `allow rule 4`, `policy`, `limit 3`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decided {
    /// Nothing did (no rule matched, or an expired one): the packet passed.
    #[default]
    Nothing,
    /// A deny rule dropped it.
    Deny(u32),
    /// An audit rule matched: the packet passed, counted as the rule's hit.
    Audit(u32),
    /// An allow rule let it pass (the interface's policy did not apply).
    Allow(u32),
    /// The interface's drop policy dropped it; `audit` is an audit rule that
    /// also matched (and counted it).
    Policy { audit: Option<u32> },
    /// A rate limit dropped it.
    Limit(u32),
}

impl Decided {
    /// Decodes the kernel's decided rule.
    pub fn from_raw(raw: u32) -> Decided {
        let id = raw & ID;
        if raw & LIMITED != 0 {
            Decided::Limit(id)
        } else if raw & POLICY != 0 {
            Decided::Policy { audit: (id != 0).then_some(id) }
        } else if raw & PASSES != 0 {
            if raw & ALLOW != 0 { Decided::Allow(id) } else { Decided::Audit(id) }
        } else if id != 0 {
            Decided::Deny(id)
        } else {
            Decided::Nothing
        }
    }

    /// The id of the rule that decided (deny, audit or allow), or the audit
    /// rule a policy drop matched; None for a limit and for nothing.
    pub fn rule(self) -> Option<u32> {
        match self {
            Decided::Deny(id) | Decided::Audit(id) | Decided::Allow(id) => Some(id),
            Decided::Policy { audit } => audit,
            Decided::Limit(_) | Decided::Nothing => None,
        }
    }

    /// The id of the limit that dropped it.
    pub fn limit(self) -> Option<u32> {
        match self {
            Decided::Limit(id) => Some(id),
            _ => None,
        }
    }

    /// What a user reads, or None when nothing decided.
    pub fn describe(self) -> Option<String> {
        (self != Decided::Nothing).then(|| self.to_string())
    }
}

impl fmt::Display for Decided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decided::Nothing => f.write_str("none"),
            Decided::Deny(id) => write!(f, "rule {id}"),
            Decided::Audit(id) => write!(f, "audit rule {id}"),
            Decided::Allow(id) => write!(f, "allow rule {id}"),
            Decided::Policy { audit: None } => f.write_str("policy"),
            Decided::Policy { audit: Some(id) } => write!(f, "policy, audit rule {id}"),
            Decided::Limit(id) => write!(f, "limit {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_decided_rule_reads_as_a_user_expects() {
        let cases = [
            (0, Decided::Nothing, "none"),
            (7, Decided::Deny(7), "rule 7"),
            (PASSES | 2, Decided::Audit(2), "audit rule 2"),
            (PASSES | ALLOW | 4, Decided::Allow(4), "allow rule 4"),
            (POLICY, Decided::Policy { audit: None }, "policy"),
            (POLICY | 2, Decided::Policy { audit: Some(2) }, "policy, audit rule 2"),
            (LIMITED | 3, Decided::Limit(3), "limit 3"),
        ];
        for (raw, decided, text) in cases {
            assert_eq!(Decided::from_raw(raw), decided, "{raw:#x}");
            assert_eq!(decided.to_string(), text);
        }
        assert_eq!((POLICY, LIMITED), (268_435_456, 1_073_741_824), "the values users saw undecoded");
    }
}
