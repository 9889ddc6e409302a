use haul::prelude::*;

#[job]
async fn send_email(to: String, _: ...) {
    let _ = to;
}

fn main() {}
