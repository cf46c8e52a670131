//! How output meets the terminal on stdout: the width tables fit (the terminal's, or
//! `COLUMNS`), and whether levels are coloured (a terminal, and `NO_COLOR` unset). Decided
//! once, in `main`; text for pipes, files and `--json` is never cut or coloured.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// The layout decisions for this process's stdout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    /// Columns tables must fit in; `None`: no limit (not a terminal, or `--json`).
    pub width: Option<usize>,
    /// Whether ok/warning/critical words are coloured.
    pub colour: bool,
}

static TERMINAL: OnceLock<Terminal> = OnceLock::new();

/// Decides, from stdout and the environment, once; `json` output is for machines.
pub fn init(json: bool) {
    let tty = !json && std::io::stdout().is_terminal();
    let width = tty.then(width_of_stdout).flatten();
    // NO_COLOR (no-color.org): present and not empty disables colour.
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = TERMINAL.set(Terminal {
        width,
        colour: tty && !no_colour,
    });
}

/// The decisions made by [`init`] (none before it: plain, unlimited).
pub fn get() -> Terminal {
    TERMINAL.get().copied().unwrap_or_default()
}

/// `COLUMNS` when it is a positive number (the user's override), else the terminal's size.
fn width_of_stdout() -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(c);
    }
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|c| *c > 0)
}

/// `text` in the colour of a level word (`ok` green, `warning` yellow, `critical`/`failed`
/// red), when colour is on; as it is otherwise.
pub fn paint(level: &str, text: &str) -> String {
    if !get().colour {
        return text.to_string();
    }
    let code = match level.to_ascii_lowercase().as_str() {
        "ok" | "ran" => "32",
        "warning" | "warn" | "deferred" | "partial" => "33",
        "critical" | "fail" | "failed" | "error" => "31",
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Characters a cell takes on screen: ANSI colour sequences take none.
pub fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// `s` cut to `width` characters with `…` in the middle, so that both the start and the end
/// (a file's name, a message's last words) stay readable. Coloured text is left whole.
pub fn elide(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if len <= width || s.contains('\x1b') {
        return s.to_string();
    }
    if width <= 1 {
        return "…".chars().take(width).collect();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(len - tail).collect();
    format!("{start}…{end}")
}

/// Column widths that fit `total` columns (two spaces between columns): the widest columns
/// give way first, none below `min` (or its natural width if narrower). Widths as they are
/// when they fit, or when nothing could make them fit.
pub fn fit(widths: &[usize], total: usize, min: usize) -> Vec<usize> {
    let mut w = widths.to_vec();
    let gaps = 2 * w.len().saturating_sub(1);
    loop {
        let used: usize = w.iter().sum::<usize>() + gaps;
        if used <= total {
            return w;
        }
        let Some((i, widest)) = w
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, c)| *c > min.min(widths[*i]))
            .max_by_key(|(_, c)| *c)
        else {
            return w;
        };
        w[i] = widest - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eliding_keeps_both_ends() {
        assert_eq!(
            elide("cached_products/awkward/file.json", 12),
            "cache…e.json"
        );
        assert_eq!(elide("short", 12), "short");
        assert_eq!(
            elide("\x1b[31mcritical\x1b[0m", 3),
            "\x1b[31mcritical\x1b[0m"
        );
        assert_eq!(visible_len("\x1b[31mcritical\x1b[0m"), 8);
    }

    #[test]
    fn the_widest_columns_give_way() {
        assert_eq!(fit(&[5, 10, 60], 40, 8), vec![5, 10, 21]);
        assert_eq!(fit(&[5, 30, 30], 40, 8), vec![5, 16, 15]);
        assert_eq!(fit(&[5, 10], 80, 8), vec![5, 10]);
        // Cannot fit: every column at its minimum.
        assert_eq!(fit(&[20, 20, 20], 10, 8), vec![8, 8, 8]);
    }
}
