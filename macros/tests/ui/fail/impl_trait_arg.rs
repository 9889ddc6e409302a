use haul::prelude::*;

#[job]
async fn send_email(to: impl Into<String>) {
    let _ = to.into();
}

fn main() {}
