//! The chat template the model file carries (`tokenizer.chat_template`, Jinja as Hugging
//! Face writes it), rendered with minijinja: the model sees its conversation exactly as it
//! was trained to (ChatML for SmolLM2), not a format guessed here.

use crate::error::LoadError;
use minijinja::{context, Environment, Error, ErrorKind, Value};

/// Who said a turn of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The instructions the model follows.
    System,
    /// Someone talking to the model.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name in chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl Turn {
    /// A turn of `role` saying `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts templates may use.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, LoadError> {
        let mut env = Environment::new();
        env.add_function("raise_exception", |message: String| -> Result<(), Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", source.to_owned())
            .map_err(|error| LoadError::Template(error.to_string()))?;
        let template = Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        };
        // A template that cannot render a plain exchange is refused now, not at `say`.
        template
            .render(&[Turn::new(Role::User, "hello")])
            .map_err(|error| LoadError::Template(error.to_string()))?;
        Ok(template)
    }

    /// The prompt for `turns`, ending where the model's answer starts.
    pub fn render(&self, turns: &[Turn]) -> Result<String, Error> {
        self.env.get_template("chat")?.render(context! {
            messages => turns.iter().map(|turn| Value::from_pairs([
                ("role", Value::from(turn.role.as_str())),
                ("content", Value::from(turn.content.as_str())),
            ])).collect::<Vec<_>>(),
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as its GGUF file carries it.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_with_and_without_a_system_turn() {
        let template = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(
            template.render(&[Turn::new(Role::User, "Hi")]).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let turns = [
            Turn::new(Role::System, "Be brief."),
            Turn::new(Role::User, "Hi"),
            Turn::new(Role::Assistant, "Hello."),
            Turn::new(Role::User, "2+2?"),
        ];
        assert_eq!(
            template.render(&turns).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_template_that_does_not_render_is_refused() {
        let error = ChatTemplate::new("{{ raise_exception('no') }}", "", "")
            .err()
            .unwrap();
        assert!(error.to_string().contains("no"), "{error}");
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }
}
