//! The names of the running kernel's drop reasons, read from its BTF
//! (`enum skb_drop_reason` in /sys/kernel/btf/vmlinux): kernels add and rename
//! reasons, so netray carries no table of its own.

use std::collections::HashMap;
use std::ffi::CStr;

const ENUM_NAME: &CStr = c"skb_drop_reason";
const PREFIX: &str = "SKB_DROP_REASON_";

/// Reason code -> name as the kernel names it, prefix stripped ("NO_SOCKET").
#[derive(Debug, Clone, Default)]
pub struct Reasons {
    names: HashMap<u32, String>,
}

impl Reasons {
    /// The running kernel's reasons; Err says what is missing (no BTF, or a
    /// kernel without `enum skb_drop_reason`).
    pub fn load() -> Result<Reasons, String> {
        // SAFETY: plain loader; the result is freed below.
        let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
        if btf.is_null() {
            return Err("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
        }
        let mut names = HashMap::new();
        // SAFETY: btf is valid until btf__free. An enum's btf_type is followed
        // by vlen struct btf_enum {name_off, val} entries (linux/btf.h).
        unsafe {
            let id = libbpf_sys::btf__find_by_name_kind(btf, ENUM_NAME.as_ptr(), libbpf_sys::BTF_KIND_ENUM);
            if id > 0 {
                let t = libbpf_sys::btf__type_by_id(btf, id as u32);
                let vlen = ((*t).info & 0xffff) as usize;
                let members = t.add(1).cast::<libbpf_sys::btf_enum>();
                for i in 0..vlen {
                    let m = &*members.add(i);
                    let name = libbpf_sys::btf__name_by_offset(btf, m.name_off);
                    if name.is_null() {
                        continue;
                    }
                    let name = CStr::from_ptr(name).to_string_lossy();
                    let name = name.strip_prefix(PREFIX).unwrap_or(&name).to_string();
                    names.insert(m.val as u32, name);
                }
            }
            libbpf_sys::btf__free(btf);
        }
        if names.is_empty() {
            return Err("the kernel's BTF has no enum skb_drop_reason (kernels before 5.17 give no drop reasons)".into());
        }
        Ok(Reasons { names })
    }

    /// The name of a reason code; a code the kernel's enum lacks (a subsystem's
    /// own reasons) is shown as a number.
    pub fn name(&self, code: u32) -> String {
        self.names.get(&code).cloned().unwrap_or_else(|| format!("REASON_{code}"))
    }

    /// The code of a name (without the SKB_DROP_REASON_ prefix, any case).
    pub fn code(&self, name: &str) -> Option<u32> {
        let name = name.trim().to_ascii_uppercase();
        let name = name.strip_prefix(PREFIX).unwrap_or(&name);
        self.names.iter().find(|(_, n)| n.as_str() == name).map(|(c, _)| *c)
    }

    /// All names, sorted by code (for error messages and help).
    pub fn all(&self) -> Vec<&str> {
        let mut v: Vec<(&u32, &String)> = self.names.iter().collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.as_str()).collect()
    }

    /// Codes that are frees, not drops: SKB_CONSUMED (6.3+) and SKB_NOT_DROPPED_YET.
    pub fn consumed(&self) -> Option<u32> {
        self.code("SKB_CONSUMED")
    }

    pub fn not_dropped_yet(&self) -> Option<u32> {
        self.code("SKB_NOT_DROPPED_YET")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_kernel_names_no_socket_and_consumed_is_not_a_drop() {
        let r = Reasons::load().expect("this kernel has BTF with enum skb_drop_reason");
        let code = r.code("NO_SOCKET").expect("NO_SOCKET");
        assert_eq!(r.name(code), "NO_SOCKET");
        assert_eq!(r.code("skb_drop_reason_no_socket"), Some(code));
        assert!(r.not_dropped_yet().is_some());
        assert_eq!(r.name(0xfff_ffff), "REASON_268435455");
    }
}
