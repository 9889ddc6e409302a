use haul::prelude::*;

#[job(backoff = Duration::from_secs(5))]
async fn send_email(to: String) {
    let _ = to;
}

fn main() {}
