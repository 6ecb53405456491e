//! A `host` agent exposing the operating system: run commands, read, write and list files.
//!
//! Every action is `requested`: each call asks the space's permission prompt (in
//! `agency run`, a y/n question on the console) and is refused without a yes.

use std::{fs, io, process::Command};

use agency_sdk::prelude::*;

agency_sdk::export_plugin!();

/// Runs commands and reads and writes files on this machine, with permission.
pub struct Host;

impl Agent for Host {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Host)
    }
}

/// Runs commands and reads and writes files on this machine, with permission.
#[actions]
impl Host {
    /// Runs a program (no shell) and waits for it.
    ///
    /// - command: the program to run
    /// - args: its arguments
    ///
    /// Returns: an object with the exit `status`, `stdout` and `stderr`
    #[action(access = "requested")]
    fn run_command(
        &mut self,
        command: String,
        args: Option<Vec<String>>,
    ) -> Result<Value, ActionError> {
        let output = Command::new(&command)
            .args(args.unwrap_or_default())
            .output()
            .map_err(|e| os_error(format!("cannot run {command:?}"), e))?;
        Ok(json!({
            "status": output.status.code(),
            "stdout": String::from_utf8_lossy(&output.stdout),
            "stderr": String::from_utf8_lossy(&output.stderr),
        }))
    }

    /// Reads a UTF-8 text file.
    ///
    /// - path: the file to read
    ///
    /// Returns: the file's text
    #[action(access = "requested")]
    fn read_file(&mut self, path: String) -> Result<String, ActionError> {
        fs::read_to_string(&path).map_err(|e| os_error(format!("cannot read {path:?}"), e))
    }

    /// Writes a text file, replacing it if it exists.
    ///
    /// - path: the file to write
    /// - content: the text to write
    ///
    /// Returns: the number of bytes written
    #[action(access = "requested")]
    fn write_file(&mut self, path: String, content: String) -> Result<usize, ActionError> {
        fs::write(&path, &content).map_err(|e| os_error(format!("cannot write {path:?}"), e))?;
        Ok(content.len())
    }

    /// Lists the entries of a folder, sorted.
    ///
    /// - path: the folder to list
    ///
    /// Returns: the entry names
    #[action(access = "requested")]
    fn list_files(&mut self, path: String) -> Result<Vec<String>, ActionError> {
        let mut names = fs::read_dir(&path)
            .and_then(|entries| {
                entries
                    .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| os_error(format!("cannot list {path:?}"), e))?;
        names.sort();
        Ok(names)
    }
}

/// An I/O failure with the kind Python gives it, saying what was being done.
fn os_error(doing: String, error: io::Error) -> ActionError {
    let kind = match error.kind() {
        io::ErrorKind::NotFound => "FileNotFoundError",
        io::ErrorKind::PermissionDenied => "PermissionError",
        io::ErrorKind::AlreadyExists => "FileExistsError",
        io::ErrorKind::IsADirectory => "IsADirectoryError",
        io::ErrorKind::NotADirectory => "NotADirectoryError",
        _ => "OSError",
    };
    ActionError::new(kind, format!("{doing}: {error}"))
}
