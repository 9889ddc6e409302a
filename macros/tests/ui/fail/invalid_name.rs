use haul::prelude::*;

#[job(name = "billing/charge")]
async fn charge(cents: i64) {
    let _ = cents;
}

fn main() {}
