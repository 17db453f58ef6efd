//! Interface names and indexes.

use std::ffi::CString;

use crate::{Error, Result};

/// A network interface of the current namespace, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

impl Interface {
    /// Resolves a name (or a decimal ifindex) to an interface.
    pub fn resolve(name: &str) -> Result<Interface> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
            return Err(Error::NoSuchInterface(name.to_string()));
        }
        let cname = CString::new(name).map_err(|_| Error::NoSuchInterface(name.to_string()))?;
        // SAFETY: cname is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index != 0 {
            return Ok(Interface { name: name.to_string(), index });
        }
        if let Ok(index) = name.parse::<u32>() {
            if let Some(name) = Self::name_of(index) {
                return Ok(Interface { name, index });
            }
        }
        Err(Error::NoSuchInterface(name.to_string()))
    }

    /// The current name of an ifindex, if the interface still exists.
    pub fn name_of(index: u32) -> Option<String> {
        let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
        // SAFETY: buf has IFNAMSIZ bytes as if_indextoname requires.
        let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Some(s.to_string_lossy().into_owned())
    }
}
