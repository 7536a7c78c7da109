//! The container sandbox (Docker Engine API through bollard). Arrives next.
