//! pcap-filter expression → classic BPF, by libpcap itself.
//!
//! Using libpcap (rather than a parser of our own) is what makes "verdict-for-verdict
//! equality with libpcap" achievable: the syntax, the generated code and the error
//! messages are libpcap's.

use crate::cbpf::{self, CbpfInsn};

/// Why an expression could not be compiled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// libpcap rejected the expression; the message is libpcap's, verbatim
    /// (e.g. "syntax error in filter expression: syntax error").
    #[error("{0}")]
    Pcap(String),
    /// The expression contains a NUL byte and cannot be passed to libpcap.
    #[error("filter expression contains a NUL byte")]
    Nul,
    /// A snap length of 0 would make every packet a non-match.
    #[error("snap length must be at least 1")]
    ZeroSnaplen,
    /// libpcap produced an instruction we could not read back (should not happen).
    #[error("unexpected instruction from libpcap: {0}")]
    BadInstruction(String),
}

/// Compiles `expr` for Ethernet (DLT_EN10MB) with libpcap's optimizer on and netmask 0.
///
/// Every accepting `ret #k` is rewritten to `ret #snaplen`: libpcap's dead handles have a
/// fixed snap length of 65535, and a capture program wants the caller's. Rejecting
/// `ret #0` stays 0.
pub fn compile(expr: &str, snaplen: u32) -> Result<Vec<CbpfInsn>, FilterError> {
    if snaplen == 0 {
        return Err(FilterError::ZeroSnaplen);
    }
    let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(map_err)?;
    let prog = cap.compile(expr, true).map_err(map_err)?;
    prog.get_instructions()
        .iter()
        .map(|i| {
            // The pcap crate exposes the raw fields only through Display ("code jt jf k");
            // parsing that keeps this crate free of unsafe layout assumptions.
            let text = i.to_string();
            let f: Vec<u64> = text.split(' ').filter_map(|s| s.parse().ok()).collect();
            let [code, jt, jf, k] = f[..] else {
                return Err(FilterError::BadInstruction(text));
            };
            let mut insn = CbpfInsn::new(code as u16, jt as u8, jf as u8, k as u32);
            if cbpf::class(insn.code) == cbpf::BPF_RET
                && cbpf::rval(insn.code) == cbpf::BPF_K
                && insn.k != 0
            {
                insn.k = snaplen;
            }
            Ok(insn)
        })
        .collect()
}

fn map_err(e: pcap::Error) -> FilterError {
    match e {
        pcap::Error::PcapError(msg) => FilterError::Pcap(msg),
        pcap::Error::InvalidInputString => FilterError::Nul,
        other => FilterError::Pcap(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepting_returns_use_the_callers_snaplen() {
        let prog = compile("tcp port 80 or icmp", 96).unwrap();
        assert!(prog.len() > 5);
        let rets: Vec<u32> = prog
            .iter()
            .filter(|i| i.code == cbpf::BPF_RET | cbpf::BPF_K)
            .map(|i| i.k)
            .collect();
        assert!(rets.contains(&96) && rets.contains(&0));
        assert!(rets.iter().all(|k| *k == 0 || *k == 96));
    }

    #[test]
    fn errors_are_libpcaps() {
        let e = compile("tcp port", 100).unwrap_err();
        assert!(
            matches!(&e, FilterError::Pcap(m) if m.contains("syntax error")),
            "{e}"
        );
        assert!(matches!(
            compile("port 99999999", 100),
            Err(FilterError::Pcap(_))
        ));
        assert_eq!(compile("tcp\0", 100), Err(FilterError::Nul));
        assert_eq!(compile("tcp", 0), Err(FilterError::ZeroSnaplen));
    }

    #[test]
    fn empty_expression_accepts_everything() {
        let prog = compile("", 1500).unwrap();
        assert_eq!(
            prog,
            vec![CbpfInsn::stmt(cbpf::BPF_RET | cbpf::BPF_K, 1500)]
        );
    }
}
