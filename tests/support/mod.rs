//! Test harness: real servers (PostgreSQL, Garage) started per test on loopback, each killed
//! when its guard drops or, should the test process die, by the kernel (parent-death signal).
#![allow(dead_code)]
// Test-only process control (prctl, kill, setsockopt) needs libc calls.
#![allow(unsafe_code)]

pub mod cluster;
pub mod drill;
pub mod garage;
pub mod patroni;
pub mod pgkeep;
pub mod podman;
pub mod postgres;
pub mod proc;
pub mod proxy;
pub mod receiver;
pub mod seeded;
