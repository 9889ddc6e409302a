use haul::prelude::*;

#[job(timeout = "thirty seconds")]
async fn send_email(to: String) {
    let _ = to;
}

fn main() {}
