use haul::prelude::*;

#[job(queue = "mail", retries = 5)]
async fn send_email(to: String) {
    let _ = to;
}

fn main() {}
