use haul::prelude::*;

#[job(queue = mail)]
async fn send_email(to: String) {
    let _ = to;
}

fn main() {}
