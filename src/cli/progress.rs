//! indicatif progress bars behind the library's `Progress` trait; hidden unless stderr is a terminal.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bars {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new(enabled: bool) -> Bars {
        Bars {
            enabled,
            bar: Mutex::new(None),
        }
    }
}

impl cachevault::Progress for Bars {
    fn start(&self, phase: &str, total: u64) {
        if !self.enabled {
            return;
        }
        // A total of 0 is an unknown one (a filtered restore reading its list as it goes):
        // the bytes count up without a bar.
        let (bar, template) = if total == 0 {
            (
                ProgressBar::new_spinner(),
                "{prefix:>9} {spinner} {bytes} {bytes_per_sec}",
            )
        } else {
            (
                ProgressBar::new(total),
                "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(phase.to_string());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn inc(&self, delta: u64) {
        if let Some(b) = self.bar.lock().expect("progress lock").as_ref() {
            b.inc(delta);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
    }
}
