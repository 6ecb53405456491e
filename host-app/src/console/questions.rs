//! Permission questions at the console: put to the user one at a time as a y/n prompt,
//! answered by the next line read for it, or decided elsewhere first (on the web page),
//! in which case the question is taken off the screen and a line meant as its answer is
//! not sent as a command.

use std::sync::Arc;

use agency_operator::{permissions::verdict, Question, TooLate};

use super::{
    show::{describe, prompt},
    Console,
};
use crate::terminal::{self, inline};

/// Whether a line reads as an answer to a permission question.
pub fn is_answer(line: &str) -> bool {
    matches!(
        line.trim().to_lowercase().as_str(),
        "y" | "yes" | "n" | "no"
    )
}

impl Console {
    /// A new question: asked now if it is the only one, else queued.
    pub(super) fn on_asked(&mut self, question: Arc<Question>) {
        self.prompts.push_back(question);
        if self.prompts.len() == 1 {
            self.ask();
        }
    }

    /// A line read as the answer to the first question.
    pub(super) fn on_answer(&mut self, line: &str) {
        self.prompt_on_screen = false;
        let allowed = match line.trim().to_lowercase().as_str() {
            "y" | "yes" => true,
            "" | "n" | "no" => false,
            _ => {
                self.say(&format!(
                    "please answer y (yes) or n (no), not {}",
                    inline(line.trim())
                ));
                self.show_prompt();
                self.next_line();
                return;
            }
        };
        let question = self.prompts.pop_front().expect("a question is asked");
        let text = match self.session.answer(question.id, allowed) {
            Ok(()) => format!("{} {}", verdict(allowed), describe(&question)),
            Err(too_late) => format!(
                "too late: {} was already {}",
                describe(&question),
                match too_late {
                    TooLate::Decided(decision) => decision.to_string(),
                    TooLate::NeverAsked(_) => "decided".into(),
                }
            ),
        };
        self.say(&text);
        if !self.prompts.is_empty() {
            self.ask();
        } else if self.blocking.is_none() {
            self.next_line();
        }
    }

    /// Puts the first question: what was typed before it is discarded (at a terminal),
    /// then the next line is its answer.
    /// While the line editor reads a command, the question is only announced: it is
    /// asked once that line ends.
    pub(super) fn ask(&mut self) {
        if self.editing && self.reader_busy {
            if let Some(question) = self.prompts.front() {
                let text = format!(
                    "permission wanted: {}. Press Enter to answer (a line being typed is run \
                     first, as a command)",
                    describe(question)
                );
                self.say(&text);
            }
            return;
        }
        terminal::discard_typed_ahead();
        self.show_prompt();
        self.next_line();
    }

    /// Prints the first question, and notes that it is the last thing on screen.
    pub(super) fn show_prompt(&mut self) {
        if let Some(question) = self.prompts.front() {
            if terminal::print(&prompt(question)).is_err() {
                self.output_closed = true;
            }
            self.prompt_on_screen = true;
        }
    }

    /// Refuses every question waiting, saying why.
    pub(super) fn refuse_prompts(&mut self, why: &str) {
        self.leave_prompt();
        let refused: Vec<_> = self.prompts.drain(..).collect();
        for question in refused {
            self.refuse(&question, why);
        }
    }

    /// Refuses `question` (unless decided elsewhere first), saying why.
    pub(super) fn refuse(&mut self, question: &Question, why: &str) {
        if self.session.answer(question.id, false).is_ok() {
            self.say(&format!("refused {}: {why}", describe(question)));
        }
    }

    /// Question `id` was decided by `by`: unless that was this console, it is taken off
    /// the queue and its outcome shown; the next question, if any, is asked.
    pub(super) fn decided_elsewhere(&mut self, id: u64, allowed: bool, by: &str) {
        if by == self.session.name() {
            return;
        }
        let Some(position) = self.prompts.iter().position(|q| q.id == id) else {
            return;
        };
        let question = self.prompts.remove(position).expect("found");
        let asking = position == 0 && self.leave_prompt();
        self.say(&format!(
            "{} by the {}: {}",
            verdict(allowed),
            inline(by),
            describe(&question)
        ));
        // The line being read was meant as its answer.
        self.stale_answer |= asking;
        if position == 0 && !self.prompts.is_empty() {
            self.ask();
        }
    }
}
