//! Kernel addresses to `function+0xoffset`, from /proc/kallsyms (read once;
//! addresses are only shown to root, whom netray drops needs anyway).

use std::fs;

#[derive(Debug, Default)]
pub struct Kallsyms {
    /// (address, name), sorted by address; text symbols only.
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    /// The running kernel's symbols; empty (addresses shown as numbers) when
    /// /proc/kallsyms cannot be read or hides the addresses.
    pub fn load() -> Kallsyms {
        let text = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Kallsyms {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable();
        Kallsyms { syms }
    }

    /// Whether any symbol is known (kptr_restrict can zero them all).
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The nearest symbol at or below `addr`, as `name+0xoff`; the address in
    /// hex when none is known.
    pub fn symbolise(&self, addr: u64) -> String {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        match i.checked_sub(1).map(|i| &self.syms[i]) {
            Some((a, name)) => format!("{name}+{:#x}", addr - a),
            None => format!("{addr:#x}"),
        }
    }

    /// The function name alone (the part before `+`).
    pub fn function(&self, addr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        i.checked_sub(1).map(|i| self.syms[i].1.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_lower_text_symbol_with_offset() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t udp_queue_rcv_skb\nffffffff81000200 D some_data\n",
        );
        assert_eq!(k.symbolise(0xffffffff81000123), "udp_queue_rcv_skb+0x23");
        assert_eq!(k.symbolise(0xffffffff81000000), "_stext+0x0");
        assert_eq!(k.symbolise(0x10), "0x10");
        assert_eq!(k.function(0xffffffff81000250), Some("udp_queue_rcv_skb"));
    }
}
