//! Checks the annotated function and the option values, collecting every problem,
//! and builds the model `expand.rs` turns into tokens.

use std::time::Duration;

use proc_macro2::Span;
use quote::{ToTokens, format_ident};
use syn::{
    Attribute, Expr, FnArg, GenericArgument, Ident, ItemFn, LitInt, LitStr, Pat, PathArguments, PathSegment,
    ReturnType, Type, ext::IdentExt, spanned::Spanned,
};

use crate::args::{JobArgs, Priority};

/// Longest accepted queue or kind name (haul_core::MAX_NAME_LEN).
const MAX_NAME_LEN: usize = 100;

/// Names the generated struct must not take: shadowing them in the user's module
/// would break unrelated code there (the std prelude and haul's prelude).
const RESERVED_STRUCT_NAMES: &[&str] = &[
    "AsMut",
    "AsRef",
    "Box",
    "Clone",
    "Copy",
    "Default",
    "Discard",
    "Drop",
    "Duration",
    "Eq",
    "Extend",
    "Fn",
    "FnMut",
    "FnOnce",
    "From",
    "Into",
    "IntoIterator",
    "Iterator",
    "JobContext",
    "JobError",
    "JobId",
    "JobState",
    "MemoryStorage",
    "Option",
    "Ord",
    "PartialEq",
    "PartialOrd",
    "Queue",
    "Result",
    "RetryAfter",
    "RetryPolicy",
    "Send",
    "Sized",
    "Snooze",
    "State",
    "Storage",
    "String",
    "Sync",
    "ToOwned",
    "ToString",
    "Unpin",
    "Vec",
    "Worker",
];

/// A checked `#[job]`: everything the expansion needs.
pub(crate) struct JobFn<'a> {
    /// The user's function, emitted unchanged.
    pub(crate) func: &'a ItemFn,
    /// The generated struct's name (`send_email` -> `SendEmail`).
    pub(crate) struct_ident: Ident,
    /// The stored kind name.
    pub(crate) kind: LitStr,
    /// The kind's static options.
    pub(crate) options: Options,
    /// The function's parameters, in order.
    pub(crate) params: Vec<Param>,
    /// The function's `#[cfg(..)]` attributes, repeated on every generated item.
    pub(crate) cfgs: Vec<&'a Attribute>,
    /// Where a wrong return type is reported.
    pub(crate) return_span: Span,
}

/// The option values, checked.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) queue: Option<LitStr>,
    pub(crate) priority: Option<i16>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) backoff: Option<Expr>,
    pub(crate) unique: bool,
    /// The stored argument whose value (by `Display`) is the job's limit key.
    pub(crate) limit_key: Option<Ident>,
}

/// One parameter of the handler.
pub(crate) enum Param {
    /// Serialized with the job: a field of the struct.
    Stored { ident: Ident, ty: Type },
    /// Taken from the running job's context (`State<T>`, `JobContext`).
    Injected { ty: Type },
    /// `&JobContext`.
    ContextRef,
}

/// Collects errors so that one compile reports every problem.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }
}

/// Checks the options (already parsed, or the parse error) and the function.
pub(crate) fn validate(args: syn::Result<JobArgs>, func: &ItemFn) -> syn::Result<JobFn<'_>> {
    let mut errors = Errors::default();
    let args = args.unwrap_or_else(|error| {
        errors.push(error);
        JobArgs::default()
    });

    check_signature(func, &mut errors);
    let params: Vec<Param> = func.sig.inputs.iter().filter_map(|arg| check_param(arg, &mut errors)).collect();

    let fn_name = func.sig.ident.unraw().to_string();
    let kind = match args.name {
        Some(name) => {
            check_name(&name, "job name", NameRule::Kind, &mut errors);
            name
        }
        None => {
            let default = LitStr::new(&fn_name, func.sig.ident.span());
            if let Err(reason) = name_problem(&fn_name, NameRule::Kind) {
                errors.at(
                    &func.sig.ident,
                    format!(
                        "the function name `{fn_name}` is not a valid job name ({reason}); \
                         set one with `#[job(name = \"...\")]`"
                    ),
                );
            }
            default
        }
    };

    let struct_ident = struct_ident(&func.sig.ident, &mut errors);

    let options = Options {
        queue: args.queue.inspect(|queue| check_name(queue, "queue name", NameRule::Queue, &mut errors)),
        priority: args.priority.and_then(|priority| check_priority(&priority, &mut errors)),
        max_attempts: args.max_attempts.and_then(|max| check_max_attempts(&max, &mut errors)),
        timeout: args.timeout.and_then(|timeout| check_timeout(&timeout, &mut errors)),
        backoff: args.backoff,
        unique: args.unique.is_some_and(|unique| unique.value),
        limit_key: args.limit_key.inspect(|key| check_limit_key(key, &params, &mut errors)),
    };

    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg")).collect();
    let return_span = match &func.sig.output {
        ReturnType::Default => func.sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };

    match errors.0 {
        Some(error) => Err(error),
        None => Ok(JobFn { func, struct_ident, kind, options, params, cfgs, return_span }),
    }
}

/// `limit_key` must name one of the stored arguments (an injected one is not stored
/// with the job, so it has no value at enqueue).
fn check_limit_key(key: &Ident, params: &[Param], errors: &mut Errors) {
    let stored: Vec<String> = params
        .iter()
        .filter_map(|param| match param {
            Param::Stored { ident, .. } => Some(ident.to_string()),
            Param::Injected { .. } | Param::ContextRef => None,
        })
        .collect();
    if !stored.iter().any(|name| key == name) {
        let expected = if stored.is_empty() { "the job has none".to_owned() } else { stored.join(", ") };
        errors.at(
            key,
            format!("`limit_key = {key}` must name a stored argument of the job; stored arguments: {expected}"),
        );
    }
}

fn check_signature(func: &ItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.at(sig.fn_token, "`#[job]` requires an `async fn`");
    }
    if let Some(constness) = &sig.constness {
        errors.at(constness, "a job cannot be a `const fn`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(unsafety, "a job cannot be an `unsafe fn`: the worker calls it without an `unsafe` block");
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi, "a job cannot have an `extern` ABI");
    }
    let generics = &sig.generics;
    if let Some(lifetime) = generics.lifetimes().next() {
        errors.at(
            lifetime,
            "a job cannot have lifetime parameters: its arguments are stored with the job, so they must be owned",
        );
    }
    if let Some(param) = generics.type_params().next() {
        errors.at(param, "a job cannot be generic: it is stored by kind name and decoded into one concrete type");
    }
    if let Some(param) = generics.const_params().next() {
        errors.at(
            param,
            "a job cannot have const parameters: it is stored by kind name and decoded into one concrete type",
        );
    }
    if generics.params.is_empty()
        && let Some(where_clause) = &generics.where_clause
    {
        errors.at(where_clause, "a job cannot have a `where` clause");
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic, "a job cannot be variadic");
    }
}

/// Classifies one parameter, or records why it cannot be a job parameter.
fn check_param(arg: &FnArg, errors: &mut Errors) -> Option<Param> {
    let typed = match arg {
        FnArg::Receiver(receiver) => {
            errors.at(receiver, "`#[job]` goes on a free function, not a method: a job cannot take `self`");
            return None;
        }
        FnArg::Typed(typed) => typed,
    };
    for attr in &typed.attrs {
        if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
            errors.at(attr, "`#[cfg]` on a job argument is not supported");
            return None;
        }
    }
    let ty = &*typed.ty;
    if is_injected(ty) {
        // Injected values are passed by position, so any pattern works (`State(db): State<Db>`).
        return Some(Param::Injected { ty: ty.clone() });
    }
    if let Type::Reference(reference) = ungroup(ty) {
        let elem = &*reference.elem;
        if reference.mutability.is_none() && is_context(elem) {
            return Some(Param::ContextRef);
        }
        let message = if is_context(elem) {
            "take the job context as `&JobContext` or `JobContext`".to_owned()
        } else if is_state(elem) {
            "take `State<..>` by value: it is a cheap handle (`Arc`) injected from the worker's state".to_owned()
        } else {
            let owned = match ungroup(elem) {
                Type::Path(path) if path.path.is_ident("str") => " (`String` instead of `&str`)",
                Type::Slice(_) => " (`Vec<T>` instead of `&[T]`)",
                _ => "",
            };
            format!("a job argument must be owned{owned}: it is serialized when the job is enqueued")
        };
        errors.at(reference, message);
        return None;
    }
    if let Type::ImplTrait(impl_trait) = ungroup(ty) {
        errors.at(impl_trait, "a job argument needs a concrete type: it is decoded from the stored job");
        return None;
    }
    match &*typed.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
            Some(Param::Stored { ident: pat.ident.clone(), ty: ty.clone() })
        }
        pat => {
            errors.at(
                pat,
                "a stored job argument must be a plain name (`name: Type`): it becomes a field of the job struct",
            );
            None
        }
    }
}

fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

fn last_segment(ty: &Type) -> Option<&PathSegment> {
    match ungroup(ty) {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

/// `State<T>` (any path ending in `State` with one type argument).
fn is_state(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|segment| {
        segment.ident == "State"
            && matches!(&segment.arguments, PathArguments::AngleBracketed(generic)
                if generic.args.len() == 1 && matches!(generic.args.first(), Some(GenericArgument::Type(_))))
    })
}

/// `JobContext` (any path ending in `JobContext`).
fn is_context(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|segment| segment.ident == "JobContext" && segment.arguments.is_none())
}

fn is_injected(ty: &Type) -> bool {
    is_state(ty) || is_context(ty)
}

/// `send_email` -> `SendEmail`, spanned at the function name.
fn struct_ident(fn_ident: &Ident, errors: &mut Errors) -> Ident {
    let fn_name = fn_ident.unraw().to_string();
    let mut pascal = String::with_capacity(fn_name.len());
    for word in fn_name.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            pascal.extend(first.to_uppercase());
            pascal.push_str(chars.as_str());
        }
    }
    if pascal.is_empty() || pascal.starts_with(|c: char| c.is_ascii_digit()) {
        errors.at(fn_ident, format!("cannot derive a struct name from the function name `{fn_name}`"));
        return format_ident!("InvalidJobName", span = fn_ident.span());
    }
    if RESERVED_STRUCT_NAMES.contains(&pascal.as_str()) {
        errors.at(
            fn_ident,
            format!(
                "the job struct would be named `{pascal}`, which shadows the prelude's `{pascal}`; \
                 rename the function (keep the stored name with `#[job(name = \"{fn_name}\")]`)"
            ),
        );
    }
    format_ident!("{}", pascal, span = fn_ident.span())
}

#[derive(Clone, Copy)]
enum NameRule {
    /// `A-Z a-z 0-9 _ - .` (haul_core::validate_queue_name).
    Queue,
    /// `A-Z a-z 0-9 _ - . :` (haul_core::validate_kind_name).
    Kind,
}

/// Why `name` breaks `rule`, if it does (the same rules as haul_core's validators).
fn name_problem(name: &str, rule: NameRule) -> Result<(), String> {
    let (allowed, listed): (fn(char) -> bool, &str) = match rule {
        NameRule::Queue => (|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'), "A-Z a-z 0-9 _ - ."),
        NameRule::Kind => (|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'), "A-Z a-z 0-9 _ - . :"),
    };
    if name.is_empty() {
        return Err("it must not be empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("it must be at most {MAX_NAME_LEN} characters"));
    }
    match name.chars().find(|&c| !allowed(c)) {
        Some(bad) => Err(format!("{bad:?} is not allowed; use only {listed}")),
        None => Ok(()),
    }
}

fn check_name(lit: &LitStr, what: &str, rule: NameRule, errors: &mut Errors) {
    if let Err(reason) = name_problem(&lit.value(), rule) {
        errors.at(lit, format!("invalid {what} {:?}: {reason}", lit.value()));
    }
}

fn check_priority(priority: &Priority, errors: &mut Errors) -> Option<i16> {
    let Priority { minus, literal } = priority;
    let whole = quote::quote!(#minus #literal);
    if !matches!(literal.suffix(), "" | "i16") {
        errors.at(&whole, "`priority` is an `i16`: write a plain integer such as `priority = -5`");
        return None;
    }
    let value = literal
        .base10_parse::<u64>()
        .ok()
        .map(|magnitude| if minus.is_some() { -i128::from(magnitude) } else { i128::from(magnitude) })
        .and_then(|value| i16::try_from(value).ok());
    if value.is_none() {
        errors.at(&whole, "`priority` must be between -32768 and 32767 (an `i16`; lower runs first)");
    }
    value
}

fn check_max_attempts(max: &LitInt, errors: &mut Errors) -> Option<u32> {
    if !matches!(max.suffix(), "" | "u32") {
        errors.at(max, "`max_attempts` is a `u32`: write a plain integer such as `max_attempts = 5`");
        return None;
    }
    match max.base10_parse::<u32>() {
        Ok(0) => {
            errors.at(max, "`max_attempts` must be at least 1");
            None
        }
        Ok(value) => Some(value),
        Err(_) => {
            errors.at(max, format!("`max_attempts` must be between 1 and {}", u32::MAX));
            None
        }
    }
}

fn check_timeout(timeout: &LitStr, errors: &mut Errors) -> Option<Duration> {
    match humantime::parse_duration(&timeout.value()) {
        Ok(duration) if duration.is_zero() => {
            errors.at(timeout, "`timeout` must be greater than zero (leave it out for no timeout)");
            None
        }
        Ok(duration) => Some(duration),
        Err(error) => {
            errors.at(
                timeout,
                format!(
                    "invalid `timeout` {:?}: {error}; write a duration such as \"30s\", \"5m\" or \"1h 30m\"",
                    timeout.value()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(args: &str, func: &str) -> Result<(), String> {
        let func: ItemFn = syn::parse_str(func).unwrap();
        validate(syn::parse_str(args), &func)
            .map(drop)
            .map_err(|error| error.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
    }

    #[test]
    fn struct_names_are_the_pascal_case_of_the_function_name() {
        let mut errors = Errors::default();
        for (name, expected) in
            [("send_email", "SendEmail"), ("r#type", "Type"), ("_private_job", "PrivateJob"), ("v2_sync", "V2Sync")]
        {
            let ident: Ident = syn::parse_str(name).unwrap();
            assert_eq!(struct_ident(&ident, &mut errors).to_string(), expected);
        }
        assert!(errors.0.is_none());
    }

    #[test]
    fn names_follow_the_rules_of_haul_core() {
        assert!(name_problem("billing:charge", NameRule::Kind).is_ok());
        assert!(name_problem("billing:charge", NameRule::Queue).is_err());
        assert!(name_problem("mail.high-2_x", NameRule::Queue).is_ok());
        assert!(name_problem("", NameRule::Queue).is_err());
        assert!(name_problem(&"q".repeat(100), NameRule::Queue).is_ok());
        assert!(name_problem(&"q".repeat(101), NameRule::Queue).is_err());
        assert!(name_problem("café", NameRule::Kind).is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = check(r#"queue = "a b", max_attempts = 0"#, "fn f<T>(self, x: &str) {}").unwrap_err();
        let lines: Vec<_> = errors.lines().collect();
        assert_eq!(lines.len(), 6, "{errors}");
    }

    #[test]
    fn a_well_formed_job_passes() {
        check(
            r#"queue = "mail", priority = -32768, max_attempts = 1, timeout = "1h 30m""#,
            "async fn f(State(db): State<Db>, ctx: &JobContext, mut to: String) {}",
        )
        .unwrap();
    }

    #[test]
    fn option_values_are_checked() {
        let func = "async fn f() {}";
        assert!(check("priority = 32768", func).is_err());
        assert!(check("priority = -32769", func).is_err());
        assert!(check("priority = 5u8", func).is_err());
        assert!(check("max_attempts = 4294967296", func).is_err());
        assert!(check(r#"timeout = "0s""#, func).is_err());
        assert!(check(r#"timeout = "soon""#, func).is_err());
        assert!(check(r#"name = """#, func).is_err());
    }
}
