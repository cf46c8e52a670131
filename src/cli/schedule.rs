//! `schedule --crontab | --systemd`: prints, ready to install, a crontab line or a systemd
//! service and timer that run `cachevault --config FILE run-due` every few minutes.
//! `run-due` decides what is due; the schedule only has to call it often enough.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use super::args::ScheduleArgs;
use super::{exit, Ctx, Outcome};

/// Name of the generated units.
const UNIT: &str = "cachevault";

/// Quotes a word for `/bin/sh` inside a crontab line: single quotes, and `%` escaped
/// because cron turns a bare `%` into a newline.
fn cron_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''").replace('%', "\\%"))
}

/// Quotes a word for a systemd `ExecStart=`: double quotes with C escapes, `%` doubled
/// (specifiers) and `$` doubled (variable expansion).
fn systemd_quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    format!("\"{escaped}\"")
}

/// The crontab line (with a comment above it).
fn crontab(exe: &str, config: &str, every: u32) -> String {
    let when = if every >= 60 {
        "0 * * * *".to_string()
    } else {
        format!("*/{every} * * * *")
    };
    format!(
        "# cachevault: every {every} minutes, run whatever is due (backups, retention, validation, size limits).\n\
         # Errors go to stderr, which cron mails; every run is also in `cachevault history`.\n\
         {when} {} --config {} --quiet run-due >/dev/null\n",
        cron_quote(exe),
        cron_quote(config)
    )
}

/// The `.service` unit.
fn service(exe: &str, config: &str, user: Option<&str>) -> String {
    let user_line = match user {
        Some(u) => format!("User={}\n", u.replace('%', "%%")),
        None => "# User=<the owner of the repository>\n".to_string(),
    };
    format!(
        "[Unit]\n\
         Description=cachevault: run due backups, retention, validation and size limits\n\
         After=local-fs.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={} --config {} --quiet run-due\n\
         {user_line}\
         Nice=10\n\
         IOSchedulingClass=idle\n",
        systemd_quote(exe),
        systemd_quote(config)
    )
}

/// The `.timer` unit.
fn timer(every: u32) -> String {
    let calendar = if every >= 60 {
        "hourly".to_string()
    } else {
        format!("*:0/{every}")
    };
    format!(
        "[Unit]\n\
         Description=Run cachevault run-due every {every} minutes\n\
         \n\
         [Timer]\n\
         OnCalendar={calendar}\n\
         Persistent=true\n\
         AccuracySec=1min\n\
         Unit={UNIT}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    )
}

/// `p` made absolute against the current folder, as written otherwise (no symlink resolved).
fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current folder")?
            .join(p)
    })
}

/// The binary as the user invoked it: argv[0] found on PATH when it is a bare name, made
/// absolute when it is a relative path, never canonicalized. A schedule that names the
/// installed path (`/usr/local/bin/cachevault`, a symlink that upgrades repoint) keeps working
/// after an upgrade, where the resolved file (a versioned folder, a cargo build folder) would
/// not. Falls back to the running executable when argv[0] cannot be found.
fn invoked_binary() -> Result<PathBuf> {
    let arg0 = std::env::args_os().next().map(PathBuf::from);
    if let Some(arg0) = arg0.filter(|a| !a.as_os_str().is_empty()) {
        if arg0.components().count() > 1 || arg0.is_absolute() {
            return absolute(&arg0);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            let candidate = absolute(&dir.join(&arg0))?;
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    std::env::current_exe().context("finding the cachevault binary")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn text(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("{} is not valid UTF-8", p.display()))
}

pub fn schedule(ctx: &Ctx, a: &ScheduleArgs) -> Result<Outcome> {
    let cfg = ctx.need_config(
        "schedule",
        "the scheduled command is `cachevault --config FILE run-due`",
    )?;
    let config = cfg
        .file
        .canonicalize()
        .with_context(|| format!("resolving {}", cfg.file.display()))?;
    let exe = match &a.binary {
        Some(b) => absolute(b)?,
        None => invoked_binary()?,
    };
    let (exe, config) = (text(&exe)?, text(&config)?);
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
    let command = vec![
        exe.to_string(),
        "--config".into(),
        config.to_string(),
        "--quiet".into(),
        "run-due".into(),
    ];
    if a.crontab {
        let line = crontab(exe, config, a.every);
        return Ok(Outcome::new(
            json!({"format": "crontab", "every_minutes": a.every, "command": command, "crontab": line}),
            line,
            exit::OK,
        ));
    }
    let service = service(exe, config, user.as_deref());
    let timer = timer(a.every);
    let human = format!(
        "# Install: save the two units below, then\n\
         #   systemctl daemon-reload && systemctl enable --now {UNIT}.timer\n\
         \n\
         # /etc/systemd/system/{UNIT}.service\n\
         {service}\n\
         # /etc/systemd/system/{UNIT}.timer\n\
         {timer}"
    );
    Ok(Outcome::new(
        json!({
            "format": "systemd",
            "every_minutes": a.every,
            "command": command,
            "service_name": format!("{UNIT}.service"),
            "service": service,
            "timer_name": format!("{UNIT}.timer"),
            "timer": timer,
        }),
        human,
        exit::OK,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_awkward_paths() {
        assert_eq!(cron_quote("/a b/it's 100%"), "'/a b/it'\\''s 100\\%'");
        assert_eq!(
            systemd_quote("/a b/\"x\"/$HOME/50%"),
            "\"/a b/\\\"x\\\"/$$HOME/50%%\""
        );
    }

    #[test]
    fn intervals() {
        assert!(crontab("/bin/cv", "/c.json", 15).contains("\n*/15 * * * * '/bin/cv'"));
        assert!(crontab("/bin/cv", "/c.json", 60).contains("\n0 * * * * "));
        assert!(timer(5).contains("OnCalendar=*:0/5\n"));
        assert!(timer(60).contains("OnCalendar=hourly\n"));
    }
}
