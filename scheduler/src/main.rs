//! `pgkeepd`: the scheduled backup daemon. Scheduling, leases and the HTTP status endpoints
//! arrive with issue 5; for now it only reports its version, so the workspace builds it.

fn main() {
    println!(
        "pgkeepd {} (scheduler not implemented yet)",
        env!("CARGO_PKG_VERSION")
    );
}
