//! The local sandbox (a temp directory and pg_ctl). Arrives next.
