//! Byte buffers lent while data is in flight and returned when it is gone, so an idle connection
//! holds none: the tunnel relay's bursts and the TLS layer's records each draw from a pool of
//! their own size.

use std::sync::{Mutex, PoisonError};

/// Buffers of one size, at most `keep` of them kept for reuse; more are freed.
pub(crate) struct Pool {
    size: usize,
    keep: usize,
    free: Mutex<Vec<Box<[u8]>>>,
}

// === impl Pool ===

impl Pool {
    /// A pool of `size`-byte buffers keeping at most `keep`.
    pub(crate) const fn new(size: usize, keep: usize) -> Self {
        Self {
            size,
            keep,
            free: Mutex::new(Vec::new()),
        }
    }

    /// The size of every buffer this pool lends.
    pub(crate) const fn size(&self) -> usize {
        self.size
    }

    /// A buffer of [`Pool::size`] bytes: a returned one, or a new one.
    pub(crate) fn take(&self) -> Box<[u8]> {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    /// Returns `buf` for reuse; one of another size, or one past `keep`, is freed.
    pub(crate) fn give(&self, buf: Box<[u8]>) {
        if buf.len() != self.size {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_buffers_are_reused_up_to_the_bound() {
        let pool = Pool::new(16, 1);
        let a = pool.take();
        let b = pool.take();
        let a_at = a.as_ptr();
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        let again = pool.take();
        assert_eq!(again.as_ptr(), a_at);
    }

    #[test]
    fn a_buffer_of_another_size_is_not_kept() {
        let pool = Pool::new(16, 4);
        pool.give(vec![0u8; 8].into_boxed_slice());
        assert!(pool.free.lock().unwrap().is_empty());
        assert_eq!(pool.take().len(), 16);
    }
}
