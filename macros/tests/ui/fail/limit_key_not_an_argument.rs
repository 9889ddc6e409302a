use haul::prelude::*;

#[job(limit_key = account)]
async fn charge(State(_db): State<u8>, customer_id: u64) {
    let _ = customer_id;
}

fn main() {}
