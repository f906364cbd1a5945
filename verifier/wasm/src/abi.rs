//! The exported C ABI: the one place in the crate with unsafe code.
//!
//! The host copies a UTF-8 request into a buffer from [`alloc`], calls [`call`], reads
//! [`answer_len`] bytes at the returned pointer, then frees both buffers with [`dealloc`]. Every
//! buffer is a `Box<[u8]>` of exactly its length, so a pointer and that length free it.
#![allow(unsafe_code)] // raw pointers across the module boundary; each block says why it holds

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ops::{handle_bytes, too_large, MAX_REQUEST_BYTES};

/// The length of the last answer [`call`] returned.
static ANSWER_LEN: AtomicUsize = AtomicUsize::new(0);

fn into_raw(buf: Box<[u8]>) -> *mut u8 {
    Box::into_raw(buf).cast::<u8>()
}

/// A zeroed buffer of `len` bytes for the host to write a request into; null when `len` is over
/// the request limit (the host then calls [`call`] with a null pointer and gets the size error).
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    if len > MAX_REQUEST_BYTES {
        return std::ptr::null_mut();
    }
    into_raw(vec![0u8; len].into_boxed_slice())
}

/// Frees a buffer from [`alloc`] or [`call`].
///
/// # Safety
/// `ptr` and `len` must be a buffer this module handed out, not yet freed.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub unsafe extern "C" fn dealloc(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: by the contract above, (ptr, len) is a live Box<[u8]> of exactly len bytes.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// Answers the request of `len` bytes at `ptr` (see [`crate::handle`]); returns the answer's pointer,
/// its length is then [`answer_len`]. A request over the limit is answered without being read.
///
/// # Safety
/// Unless `len` is over the limit or `ptr` is null, `ptr` must point to `len` readable bytes
/// (a buffer from [`alloc`]).
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub unsafe extern "C" fn call(ptr: *const u8, len: usize) -> *mut u8 {
    let answer = if len > MAX_REQUEST_BYTES {
        too_large()
    } else if ptr.is_null() {
        handle_bytes(&[])
    } else {
        // SAFETY: by the contract above, ptr points to len readable bytes.
        handle_bytes(unsafe { std::slice::from_raw_parts(ptr, len) })
    };
    let buf = answer.into_bytes().into_boxed_slice();
    ANSWER_LEN.store(buf.len(), Ordering::Relaxed);
    into_raw(buf)
}

/// The length in bytes of the answer the last [`call`] returned.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn answer_len() -> usize {
    ANSWER_LEN.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The exported functions, called as a host calls them.
    #[test]
    fn abi_round_trip() {
        let request = br#"{"op": "sign_bundle"}"#;
        let p = alloc(request.len());
        assert!(!p.is_null());
        unsafe {
            std::ptr::copy_nonoverlapping(request.as_ptr(), p, request.len());
            let answer = call(p, request.len());
            let text = std::str::from_utf8(std::slice::from_raw_parts(answer, answer_len()))
                .unwrap()
                .to_owned();
            dealloc(answer, answer_len());
            dealloc(p, request.len());
            assert!(text.contains("unknown op"), "{text}");
            // Over the limit: no buffer, and the answer says why without reading anything.
            assert!(alloc(MAX_REQUEST_BYTES + 1).is_null());
            let answer = call(std::ptr::null(), MAX_REQUEST_BYTES + 1);
            let text = std::str::from_utf8(std::slice::from_raw_parts(answer, answer_len()))
                .unwrap()
                .to_owned();
            dealloc(answer, answer_len());
            assert!(text.contains("larger than"), "{text}");
        }
    }
}
