//! The `suanli` binary: parses arguments and hands over to [`suanli::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    match suanli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
