use haul::prelude::*;

struct Mailer;

#[job]
async fn send_email(mailer: &State<Mailer>, to: String) {
    let _ = (mailer, to);
}

fn main() {}
