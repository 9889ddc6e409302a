//! The struct, its fields and `new` take the function's visibility, are documented
//! (so `missing_docs` and `unreachable_pub` stay quiet), and nothing generated warns.
#![deny(warnings, missing_docs, unreachable_pub)]

/// Jobs.
pub mod jobs {
    use haul::prelude::*;

    /// Sends a newsletter.
    #[job(queue = "mail")]
    pub async fn send_newsletter(issue: u32, mut recipients: Vec<String>) {
        recipients.sort();
        let _ = issue;
    }

    #[job]
    pub(crate) async fn internal(r#type: String) {
        let _ = r#type;
    }
}

fn main() {
    let job = jobs::SendNewsletter::new(7, vec!["b".to_owned(), "a".to_owned()]);
    let jobs::SendNewsletter { issue, recipients } = job;
    let _ = (issue, recipients, jobs::Internal::new("x").r#type);
}
