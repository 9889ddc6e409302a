use haul::prelude::*;

#[job(max_attempts = 0)]
async fn send_email(to: String) {
    let _ = to;
}

fn main() {}
