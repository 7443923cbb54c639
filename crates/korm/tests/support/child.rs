//! Memory tests measure in a fresh process: the test binary runs one of its own tests again
//! as a child (with an environment variable saying so), which prints `figures N N ...`.

use std::process::Command;

/// Runs `test` of this test binary in a child process with `var=value` set, asserts it
/// succeeded, and returns the numbers of the line it printed after `figures `.
pub fn child_figures(test: &str, var: &str, value: &str) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(var, value)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|line| line.split_once("figures ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no figures from the child\n{stdout}\n{stderr}"));
    line.split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect()
}
