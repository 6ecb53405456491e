//! The `#[actions]` attribute of `agency-sdk`; see that crate for documentation.
#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{
    parse_macro_input, spanned::Spanned, Attribute, Error, Expr, FnArg, GenericArgument, ImplItem,
    ImplItemFn, ItemImpl, Lit, Meta, Pat, PathArguments, ReturnType, Type,
};

/// Turns the methods marked `#[action]` in an `impl` block into the agent's actions and
/// registers the agent type. See `agency_sdk` for the full description.
#[proc_macro_attribute]
pub fn actions(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut block = parse_macro_input!(item as ItemImpl);
    match expand(attr.into(), &mut block) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// One `#[action]` method, as read from the source.
struct ActionFn {
    method: syn::Ident,
    name: String,
    access: Tokens,
    help: Option<String>,
    doc: Doc,
    params: Vec<Param>,
    output: Output,
}

enum Param {
    Context,
    Arg {
        name: String,
        ty: Box<Type>,
        optional: bool,
    },
}

enum Output {
    Nothing,
    Value(Type),
    Fallible(Option<Type>),
}

/// A doc comment split into description, argument notes and the `Returns:` note.
#[derive(Default)]
struct Doc {
    description: String,
    args: Vec<(String, String)>,
    returns: String,
}

/// What `#[actions(...)]` says: the type's name, and its concurrency if it has one.
#[derive(Default)]
struct Options {
    name: Option<String>,
    concurrency: Option<u32>,
}

impl Options {
    fn parse(attr: Tokens) -> Result<Options, Error> {
        let mut options = Options::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                options.name = Some(meta.value()?.parse::<syn::LitStr>()?.value());
            } else if meta.path.is_ident("concurrency") {
                let limit: syn::LitInt = meta.value()?.parse()?;
                let value = limit.base10_parse::<u32>()?;
                if value == 0 {
                    return Err(Error::new(limit.span(), "concurrency is at least 1"));
                }
                options.concurrency = Some(value);
            } else {
                return Err(meta.error("unknown key; expected name = \"...\" or concurrency = N"));
            }
            Ok(())
        });
        syn::parse::Parser::parse2(parser, attr)?;
        Ok(options)
    }
}

fn expand(attr: Tokens, block: &mut ItemImpl) -> Result<Tokens, Error> {
    let options = Options::parse(attr)?;
    let self_ty = block.self_ty.clone();
    let type_name = match (&*self_ty, options.name) {
        (_, Some(name)) => name,
        (Type::Path(path), None) => path
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => {
            return Err(Error::new(
                self_ty.span(),
                "#[actions] needs a named type, or #[actions(name = \"...\")]",
            ))
        }
    };
    let type_doc = Doc::parse(&block.attrs).description;
    let mut actions = Vec::new();
    for item in &mut block.items {
        if let ImplItem::Fn(method) = item {
            if let Some(action) = take_action(method)? {
                if options.concurrency.is_some() {
                    refuse_mut_self(method)?;
                }
                actions.push(action);
            }
        }
    }
    let specs = actions.iter().map(action_spec);
    let arms = actions.iter().map(dispatch_arm);
    let sdk = quote!(::agency_sdk);
    let private = quote!(#sdk::__private);
    let (table, receiver, create, concurrency) = match options.concurrency {
        None => (
            quote!(Actions),
            quote!(&mut self),
            quote!(create_agent),
            quote!(None),
        ),
        Some(limit) => (
            quote!(ConcurrentActions),
            quote!(&self),
            quote!(create_concurrent_agent),
            quote!(Some(#limit)),
        ),
    };
    let limit_check = options.concurrency.map(|limit| {
        quote! {
            const _: () = assert!(
                #limit <= #private::MAX_CONCURRENCY,
                "concurrency is at most agency_sdk::MAX_CONCURRENCY"
            );
        }
    });
    Ok(quote! {
        #block
        #limit_check

        impl #private::#table for #self_ty {
            fn type_spec() -> #private::AgentTypeSpec {
                #private::AgentTypeSpec {
                    name: #type_name.to_owned(),
                    description: #type_doc.to_owned(),
                    actions: vec![#(#specs),*],
                    concurrency: #concurrency,
                }
            }

            #[allow(unused_variables)]
            fn dispatch(
                #receiver,
                ctx: &mut #sdk::Context,
                name: &str,
                args: &#private::serde_json::Map<String, #private::serde_json::Value>,
            ) -> Option<Result<Option<#private::serde_json::Value>, #sdk::ActionError>> {
                match name {
                    #(#arms)*
                    _ => None,
                }
            }
        }

        #private::inventory::submit! {
            #sdk::AgentType {
                name: #type_name,
                spec: <#self_ty as #private::#table>::type_spec,
                create: #private::#create::<#self_ty>,
            }
        }
    })
}

/// A concurrent agent's actions run side by side: they take `&self`.
fn refuse_mut_self(method: &ImplItemFn) -> Result<(), Error> {
    match method.sig.receiver() {
        Some(receiver) if receiver.mutability.is_some() || receiver.reference.is_none() => {
            Err(Error::new(
                receiver.span(),
                "the actions of a concurrent agent (#[actions(concurrency = N)]) run in parallel: they take &self",
            ))
        }
        _ => Ok(()),
    }
}

/// Reads and removes the `#[action(...)]` attribute of a method, if it has one.
fn take_action(method: &mut ImplItemFn) -> Result<Option<ActionFn>, Error> {
    let Some(position) = method
        .attrs
        .iter()
        .position(|a| a.path().is_ident("action"))
    else {
        return Ok(None);
    };
    let attr = method.attrs.remove(position);
    let mut name = method.sig.ident.to_string();
    let mut access = quote!(Permitted);
    let mut help = None;
    if let Meta::List(_) = attr.meta {
        attr.parse_nested_meta(|meta| {
            let value: Lit = meta.value()?.parse()?;
            let Lit::Str(text) = value else {
                return Err(meta.error("expected a string"));
            };
            if meta.path.is_ident("name") {
                name = text.value();
            } else if meta.path.is_ident("access") {
                access = match text.value().as_str() {
                    "permitted" => quote!(Permitted),
                    "denied" => quote!(Denied),
                    "requested" => quote!(Requested),
                    _ => {
                        return Err(Error::new(
                            text.span(),
                            "access is \"permitted\", \"denied\" or \"requested\"",
                        ))
                    }
                };
            } else if meta.path.is_ident("help") {
                serde_json::from_str::<serde_json::Value>(&text.value())
                    .map_err(|e| Error::new(text.span(), format!("help must be JSON: {e}")))?;
                help = Some(text.value());
            } else {
                return Err(meta.error("unknown key; expected name, access or help"));
            }
            Ok(())
        })?;
    }
    let mut params = Vec::new();
    for input in &method.sig.inputs {
        let FnArg::Typed(typed) = input else { continue };
        if is_context(&typed.ty) {
            params.push(Param::Context);
            continue;
        }
        let Pat::Ident(ident) = &*typed.pat else {
            return Err(Error::new(
                typed.pat.span(),
                "action arguments must be plain names",
            ));
        };
        let (ty, optional) = match generic_of(&typed.ty, "Option") {
            Some(inner) => (Box::new(inner), true),
            None => (typed.ty.clone(), false),
        };
        params.push(Param::Arg {
            name: ident.ident.to_string().trim_start_matches("r#").to_owned(),
            ty,
            optional,
        });
    }
    let output = match &method.sig.output {
        ReturnType::Default => Output::Nothing,
        ReturnType::Type(_, ty) if is_unit(ty) => Output::Nothing,
        ReturnType::Type(_, ty) => match generic_of(ty, "Result") {
            Some(ok) if is_unit(&ok) => Output::Fallible(None),
            Some(ok) => Output::Fallible(Some(ok)),
            None => Output::Value((**ty).clone()),
        },
    };
    Ok(Some(ActionFn {
        method: method.sig.ident.clone(),
        name,
        access,
        help,
        doc: Doc::parse(&method.attrs),
        params,
        output,
    }))
}

/// `agency_sdk::__private::ActionSpec { ... }` for one action.
fn action_spec(action: &ActionFn) -> Tokens {
    let private = quote!(::agency_sdk::__private);
    let (name, description, access) = (&action.name, &action.doc.description, &action.access);
    let args = action.params.iter().filter_map(|param| {
        let Param::Arg { name, ty, optional } = param else { return None };
        let note = action.doc.arg(name);
        Some(quote! {
            #private::ArgSpec {
                name: #name.to_owned(),
                doc: #private::TypeDoc { json_type: ::agency_sdk::json_type::<#ty>(), description: #note.to_owned() },
                optional: #optional,
                schema: ::agency_sdk::schema::<#ty>(),
            }
        })
    });
    let returns = match &action.output {
        Output::Value(ty) | Output::Fallible(Some(ty)) => {
            let note = &action.doc.returns;
            quote!(Some(#private::TypeDoc { json_type: ::agency_sdk::json_type::<#ty>(), description: #note.to_owned() }))
        }
        _ => quote!(None),
    };
    let help = match &action.help {
        Some(json) => {
            quote!(Some(#private::serde_json::from_str(#json).expect("checked at compile time")))
        }
        None => quote!(None),
    };
    quote! {
        #private::ActionSpec {
            name: #name.to_owned(),
            description: #description.to_owned(),
            args: vec![#(#args),*],
            returns: #returns,
            access: #private::Access::#access,
            help: #help,
        }
    }
}

/// The `match` arm that reads the arguments, calls the method and encodes its result.
fn dispatch_arm(action: &ActionFn) -> Tokens {
    let (name, method) = (&action.name, &action.method);
    let private = quote!(::agency_sdk::__private);
    let mut reads = Vec::new();
    let mut call_args = Vec::new();
    let mut names = Vec::new();
    for (index, param) in action.params.iter().enumerate() {
        match param {
            Param::Context => call_args.push(quote!(ctx)),
            Param::Arg { name, ty, optional } => {
                let var = format_ident!("arg{index}");
                let read = if *optional {
                    quote!(optional)
                } else {
                    quote!(required)
                };
                reads.push(quote!(let #var = reader.#read::<#ty>(#name)?;));
                names.push(name);
                call_args.push(quote!(#var));
            }
        }
    }
    let to_value = quote!(#private::serde_json::to_value(value).map(Some).map_err(::agency_sdk::ActionError::from));
    let call = quote!(self.#method(#(#call_args),*));
    let finish = match &action.output {
        Output::Nothing => quote!({ #call; Ok(None) }),
        Output::Value(_) => quote!({ let value = #call; #to_value }),
        Output::Fallible(None) => {
            quote!(#call.map(|()| None).map_err(::agency_sdk::ActionError::from))
        }
        Output::Fallible(Some(_)) => quote!(match #call {
            Ok(value) => #to_value,
            Err(error) => Err(::agency_sdk::ActionError::from(error)),
        }),
    };
    quote! {
        #name => Some((|| -> Result<Option<#private::serde_json::Value>, ::agency_sdk::ActionError> {
            #[allow(unused_mut)]
            let mut reader = #private::ArgReader::new(name, args);
            #(#reads)*
            reader.finish(&[#(#names),*])?;
            #finish
        })()),
    }
}

fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) => matches!(&*reference.elem, Type::Path(p)
            if p.path.segments.last().is_some_and(|s| s.ident == "Context")),
        _ => false,
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// The first generic argument of `ty` if its last path segment is `wrapper`.
fn generic_of(ty: &Type, wrapper: &str) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    })
}

impl Doc {
    /// Splits doc comments: free text is the description, `- name: note` lines describe
    /// arguments, a `Returns: note` line describes the result.
    fn parse(attrs: &[Attribute]) -> Doc {
        let mut doc = Doc::default();
        let mut paragraphs: Vec<String> = vec![String::new()];
        for line in attrs.iter().filter_map(doc_line) {
            let line = line.trim();
            let item = line.strip_prefix("- ").or_else(|| line.strip_prefix("* "));
            if let Some((name, note)) = item.and_then(|item| item.split_once(':')) {
                doc.args.push((
                    name.trim().trim_matches('`').to_owned(),
                    note.trim().to_owned(),
                ));
            } else if let Some(note) = line.strip_prefix("Returns:") {
                doc.returns = note.trim().to_owned();
            } else if line.is_empty() {
                paragraphs.push(String::new());
            } else if let Some(last) = paragraphs.last_mut() {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(line);
            }
        }
        paragraphs.retain(|p| !p.is_empty());
        doc.description = paragraphs.join("\n\n");
        doc
    }

    fn arg(&self, name: &str) -> String {
        self.args
            .iter()
            .find(|(arg, _)| arg == name)
            .map(|(_, note)| note.clone())
            .unwrap_or_default()
    }
}

fn doc_line(attr: &Attribute) -> Option<String> {
    let Meta::NameValue(pair) = &attr.meta else {
        return None;
    };
    if !pair.path.is_ident("doc") {
        return None;
    }
    match &pair.value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Some(text.value()),
        _ => None,
    }
}
