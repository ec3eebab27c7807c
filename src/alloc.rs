//! The process's allocator: mimalloc, asked for plain blocks when the
//! alignment asked is one every block has anyway.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every request to
//! `mi_malloc_aligned`. Its fast path only covers blocks up to 1 KiB;
//! larger ones (a connection's read buffer, a boxed request future) take
//! the generic aligned path first, about 230 instructions each, even though
//! mimalloc aligns every block to 16 bytes. Rust asks for 8 or 16 almost
//! always. `bench/proxy-instructions.sh` counted 29,010 instructions per
//! protected request (`PROTECT=both`) before this shim; the figure with it
//! is in bench/RESULTS.md ("Edge protection I").
//!
//! The only module of gatehouse with `unsafe` code: the crate denies it
//! everywhere else.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every block mimalloc hands out is aligned to this (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc, as the global allocator of the `gatehouse` binary.
pub struct Allocator;

/// `malloc`'s rule (as std's `System` applies it): a plain block will do
/// when the alignment is at most the guaranteed one and not above the size.
#[inline]
fn plain(layout: &Layout) -> bool {
    layout.align() <= PLAIN_ALIGN && layout.align() <= layout.size()
}

// SAFETY: each method forwards to mimalloc, which returns blocks of at
// least the size asked, aligned as asked (plain blocks are 16-aligned,
// see `plain`), or null; `mi_free` and `mi_realloc*` accept any block
// mimalloc returned, whichever function returned it.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= PLAIN_ALIGN && layout.align() <= new_size {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_bytes() {
        let a = Allocator;
        for (size, align) in [(1, 1), (8, 8), (24, 16), (3000, 8), (64, 64), (8, 16), (5000, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "{size}/{align}");
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                p.write_bytes(0xab, size);
                let q = a.realloc(p, layout, size * 3);
                assert_eq!(q as usize % align, 0, "{size}/{align} grown");
                assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0xab));
                a.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
            }
        }
    }
}
