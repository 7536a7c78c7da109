//! Plaintext buffers for the parts a restore decodes whole, kept for reuse.

/// A part's plaintext buffer, reused: a fresh 16 MiB allocation is a fresh mapping whose
/// every page faults in (zeroed by the kernel) and is unmapped again when freed. At most
/// `Buffer::KEPT` wait for reuse, so memory stays bounded by the parts in flight.
pub struct Buffer(Vec<u8>);

static BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

impl Buffer {
    const KEPT: usize = 4;

    pub fn take(capacity: usize) -> Buffer {
        let kept = BUFFERS.lock().ok().and_then(|mut b| b.pop());
        let mut v = kept.unwrap_or_default();
        v.clear();
        v.reserve(capacity);
        Buffer(v)
    }
}

impl std::ops::Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Ok(mut kept) = BUFFERS.lock()
            && kept.len() < Buffer::KEPT
        {
            kept.push(std::mem::take(&mut self.0));
        }
    }
}
