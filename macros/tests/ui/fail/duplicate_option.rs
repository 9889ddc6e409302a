use haul::prelude::*;

#[job(queue = "mail", max_attempts = 3, queue = "email")]
async fn send_email(to: String) {
    let _ = to;
}

fn main() {}
