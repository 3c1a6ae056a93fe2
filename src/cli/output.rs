//! What the command lines print: standard output (a closed pipe ends a command quietly) and
//! a client error's line and exit code.

use std::process::ExitCode;

use crate::client::ClientError;

/// Writes to standard output. A reader that went away (`hyperdex search ... | head`) ends
/// the command quietly with success, as it ends `cat`; any other failure to write is an
/// error (exit 1). Use through [`out!`](crate::out) and [`outln!`](crate::outln).
pub fn print_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `print!` for the command line: see [`print_out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::print_out(format_args!($($arg)*))
    };
}

/// `println!` for the command line: see [`print_out`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::print_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Reports a client error on standard error; exit code 2.
pub fn fail(e: &ClientError) -> ExitCode {
    eprintln!("error: {} [{}]", e.message, e.code);
    ExitCode::from(2)
}
