//! A calculator agent: a few numeric actions, some of which refuse bad input.

use agency_sdk::prelude::*;

agency_sdk::export_plugin!();

/// Does arithmetic on numbers.
pub struct Calculator;

impl Agent for Calculator {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Calculator)
    }
}

/// Does arithmetic on numbers.
#[actions]
impl Calculator {
    /// Adds two numbers.
    ///
    /// - a: the first number
    /// - b: the second number
    ///
    /// Returns: a + b
    #[action]
    fn add(&mut self, a: f64, b: f64) -> f64 {
        a + b
    }

    /// Subtracts one number from another.
    ///
    /// - a: the number to subtract from
    /// - b: the number to subtract
    ///
    /// Returns: a - b
    #[action]
    fn subtract(&mut self, a: f64, b: f64) -> f64 {
        a - b
    }

    /// Multiplies two numbers.
    ///
    /// - a: the first factor
    /// - b: the second factor
    ///
    /// Returns: a × b
    #[action]
    fn multiply(&mut self, a: f64, b: f64) -> f64 {
        a * b
    }

    /// Divides one number by another; dividing by zero is an error.
    ///
    /// - a: the dividend
    /// - b: the divisor, not zero
    ///
    /// Returns: a ÷ b
    #[action]
    fn divide(&mut self, a: f64, b: f64) -> Result<f64, ActionError> {
        if b == 0.0 {
            return Err(ActionError::new("ZeroDivisionError", "division by zero"));
        }
        Ok(a / b)
    }

    /// The square root of a number; negative numbers are an error.
    ///
    /// - x: a number, zero or more
    ///
    /// Returns: √x
    #[action]
    fn sqrt(&mut self, x: f64) -> Result<f64, ActionError> {
        if x < 0.0 {
            return Err(ActionError::new(
                "ValueError",
                format!("cannot take the square root of {x}"),
            ));
        }
        Ok(x.sqrt())
    }

    /// Adds up a list of numbers.
    ///
    /// - numbers: the numbers to add
    ///
    /// Returns: their sum (0 for an empty list)
    #[action]
    fn sum(&mut self, numbers: Vec<f64>) -> f64 {
        numbers.iter().sum()
    }
}
