use haul::prelude::*;

struct Mailer;

impl Mailer {
    #[job]
    async fn send_email(&self, to: String) {
        let _ = to;
    }
}

fn main() {}
