//! Every option at once, with a trailing comma.
#![deny(warnings)]

use haul::prelude::*;

#[job(
    name = "billing:charge.v2",
    queue = "billing-high",
    priority = -32768,
    max_attempts = 4_294_967_295,
    timeout = "1h 30m 15s",
    backoff = RetryPolicy::exponential(Duration::from_millis(500)).max_delay(Duration::from_secs(60)),
    unique = true,
)]
async fn charge(customer_id: u64, cents: i64) -> Result<(), JobError> {
    let _ = (customer_id, cents);
    Ok(())
}

#[job(priority = 32767i16, max_attempts = 1u32, timeout = "1ns")]
async fn suffixed_literals() {}

fn main() {
    let _ = Charge::new(1, -5);
    let _ = SuffixedLiterals::new();
}
