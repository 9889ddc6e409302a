use haul::prelude::*;

#[job(queue = "mail queue")]
async fn send_email(to: String) {
    let _ = to;
}

fn main() {}
