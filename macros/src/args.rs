//! Parsing of the options inside `#[job(...)]`.
//!
//! This only checks the syntax (which option, and a value of the right shape);
//! `validate.rs` checks the values themselves.

use syn::{
    Expr, Ident, LitBool, LitInt, LitStr, Token,
    parse::{Parse, ParseStream},
};

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(queue);
    syn::custom_keyword!(priority);
    syn::custom_keyword!(max_attempts);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(backoff);
    syn::custom_keyword!(unique);
    syn::custom_keyword!(limit_key);
}

/// Every option name, in the order the error message lists them.
const OPTIONS: &str = "name, queue, priority, max_attempts, timeout, backoff, unique, limit_key";

/// The options as written, each `None` when absent.
#[derive(Default)]
pub(crate) struct JobArgs {
    /// `name = "..."`: the stored kind name.
    pub(crate) name: Option<LitStr>,
    /// `queue = "..."`.
    pub(crate) queue: Option<LitStr>,
    /// `priority = -3`.
    pub(crate) priority: Option<Priority>,
    /// `max_attempts = 5`.
    pub(crate) max_attempts: Option<LitInt>,
    /// `timeout = "30s"`.
    pub(crate) timeout: Option<LitStr>,
    /// `backoff = <expression of type RetryPolicy>`.
    pub(crate) backoff: Option<Expr>,
    /// `unique = true`: unique by kind and arguments among unfinished jobs.
    pub(crate) unique: Option<LitBool>,
    /// `limit_key = argument`: the stored argument whose value is the job's limit key.
    pub(crate) limit_key: Option<Ident>,
}

/// An integer literal with an optional leading minus sign.
pub(crate) struct Priority {
    pub(crate) minus: Option<Token![-]>,
    pub(crate) literal: LitInt,
}

impl Parse for Priority {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let lookahead = input.lookahead1();
        if lookahead.peek(Token![-]) || lookahead.peek(LitInt) {
            Ok(Self { minus: input.parse()?, literal: input.parse()? })
        } else {
            Err(lookahead.error())
        }
    }
}

impl Parse for JobArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Self::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                set::<kw::name, _>(input, &mut args.name, "name")?;
            } else if lookahead.peek(kw::queue) {
                set::<kw::queue, _>(input, &mut args.queue, "queue")?;
            } else if lookahead.peek(kw::priority) {
                set::<kw::priority, _>(input, &mut args.priority, "priority")?;
            } else if lookahead.peek(kw::max_attempts) {
                set::<kw::max_attempts, _>(input, &mut args.max_attempts, "max_attempts")?;
            } else if lookahead.peek(kw::timeout) {
                set::<kw::timeout, _>(input, &mut args.timeout, "timeout")?;
            } else if lookahead.peek(kw::backoff) {
                set::<kw::backoff, _>(input, &mut args.backoff, "backoff")?;
            } else if lookahead.peek(kw::unique) {
                set::<kw::unique, _>(input, &mut args.unique, "unique")?;
            } else if lookahead.peek(kw::limit_key) {
                set::<kw::limit_key, _>(input, &mut args.limit_key, "limit_key")?;
            } else if input.peek(Ident) {
                let unknown: Ident = input.parse()?;
                return Err(syn::Error::new(
                    unknown.span(),
                    format!("unknown argument `{unknown}`; expected one of: {OPTIONS}"),
                ));
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// Parses `keyword = value` into `slot`, refusing a second occurrence.
fn set<K: Parse + syn::spanned::Spanned, V: Parse>(
    input: ParseStream<'_>,
    slot: &mut Option<V>,
    name: &str,
) -> syn::Result<()> {
    let keyword: K = input.parse()?;
    if slot.is_some() {
        return Err(syn::Error::new(keyword.span(), format!("`{name}` specified more than once")));
    }
    input.parse::<Token![=]>()?;
    *slot = Some(input.parse()?);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(tokens: &str) -> syn::Result<JobArgs> {
        syn::parse_str(tokens)
    }

    #[test]
    fn every_option_parses_with_or_without_a_trailing_comma() {
        let args = parse(
            r#"name = "billing:charge", queue = "mail", priority = -3, max_attempts = 5,
               timeout = "30s", backoff = RetryPolicy::fixed(Duration::from_secs(5)),"#,
        )
        .unwrap();
        assert_eq!(args.name.unwrap().value(), "billing:charge");
        assert_eq!(args.queue.unwrap().value(), "mail");
        let priority = args.priority.unwrap();
        assert!(priority.minus.is_some());
        assert_eq!(priority.literal.base10_digits(), "3");
        assert_eq!(args.max_attempts.unwrap().base10_digits(), "5");
        assert_eq!(args.timeout.unwrap().value(), "30s");
        assert!(args.backoff.is_some());
        assert!(parse("").unwrap().queue.is_none());
    }

    #[test]
    fn a_repeated_option_is_refused() {
        let err = parse(r#"queue = "a", queue = "b""#).err().unwrap();
        assert_eq!(err.to_string(), "`queue` specified more than once");
    }

    #[test]
    fn an_unknown_option_lists_the_known_ones() {
        let err = parse(r#"retries = 3"#).err().unwrap();
        assert_eq!(
            err.to_string(),
            "unknown argument `retries`; expected one of: name, queue, priority, max_attempts, timeout, backoff, unique, \
             limit_key"
        );
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_refused() {
        assert!(parse(r#"queue = mail"#).is_err());
        assert!(parse(r#"priority = "high""#).is_err());
        assert!(parse(r#"max_attempts"#).is_err());
        assert!(parse(r#"queue = "a" queue = "b""#).is_err());
    }
}
