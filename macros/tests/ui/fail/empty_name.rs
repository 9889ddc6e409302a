use haul::prelude::*;

#[job(name = "")]
async fn charge(cents: i64) {
    let _ = cents;
}

fn main() {}
