//! The job pool: runs jobs on N threads in list order as their dependencies finish, settles
//! the jobs whose dependency failed with that failure, and strips freshly compiled legacy
//! objects in batches once the pool is done.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use indicatif::{ProgressBar, ProgressStyle};

use super::flags::Inputs;
use super::job::{run_job, Outcome, Unstripped};
use super::plan::{Job, Project};
use super::toolchain::Toolchain;
use crate::process;

/// Per job: `Ok(true)` cached, `Ok(false)` compiled, `Err(message)` failed (the message
/// carries the tool's own output).
pub type JobResult = Result<bool, String>;

/// Everything a job needs besides itself.
pub struct Env<'a> {
    pub project: &'a Project,
    pub tc: &'a Toolchain,
    pub inputs: &'a Inputs,
    pub debug: bool,
}

/// Runs `jobs` on `threads` workers; results are in the jobs' order.
pub fn run(env: &Env, jobs: &[&Job], threads: usize) -> Vec<JobResult> {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.as_str(), i))
        .collect();
    // Indices of each job's dependencies among `jobs` (one outside the list is satisfied).
    let deps: Vec<Vec<usize>> = jobs
        .iter()
        .map(|j| {
            j.deps
                .iter()
                .filter_map(|k| index.get(k.as_str()).copied())
                .collect()
        })
        .collect();
    let state = Mutex::new(State {
        started: vec![false; jobs.len()],
        results: jobs.iter().map(|_| None).collect(),
    });
    let changed = Condvar::new();
    // Objects compiled with their DWARF still in, stripped together once the pool is done.
    let deferred: Mutex<Vec<(usize, Unstripped)>> = Mutex::new(Vec::new());
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("progress template"),
    );
    std::thread::scope(|s| {
        for _ in 0..threads.min(jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = {
                    let mut st = state.lock().expect("scheduler lock");
                    loop {
                        match st.next_ready(jobs, &deps, &bar) {
                            Next::Start(i) => break i,
                            // Something is still running that others wait for.
                            Next::Wait => st = changed.wait(st).expect("scheduler lock"),
                            Next::Done => {
                                changed.notify_all();
                                return;
                            }
                        }
                    }
                };
                let job = jobs[i];
                bar.set_message(format!("{} {}", job.what, job.outputs[0]));
                let r = run_job(env, job).map(|outcome| match outcome {
                    Outcome::Cached => true,
                    Outcome::Built => false,
                    Outcome::Unstripped(u) => {
                        deferred.lock().expect("deferred lock").push((i, u));
                        false
                    }
                });
                state.lock().expect("scheduler lock").results[i] = Some(r);
                bar.inc(1);
                changed.notify_all();
            });
        }
    });
    bar.finish_and_clear();
    let st = state.into_inner().expect("scheduler lock");
    let mut results: Vec<JobResult> = st
        .results
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect();
    strip_and_publish(
        env,
        deferred.into_inner().expect("deferred lock"),
        &mut results,
    );
    results
}

struct State {
    started: Vec<bool>,
    results: Vec<Option<JobResult>>,
}

enum Next {
    Start(usize),
    Wait,
    Done,
}

impl State {
    /// The first job in list order whose dependencies are done; jobs whose dependency failed
    /// are settled with that failure on the way.
    fn next_ready(&mut self, jobs: &[&Job], deps: &[Vec<usize>], bar: &ProgressBar) -> Next {
        let mut waiting = false;
        'jobs: for i in 0..jobs.len() {
            if self.started[i] {
                continue;
            }
            let mut ready = true;
            for &d in &deps[i] {
                match &self.results[d] {
                    None => ready = false,
                    Some(Err(e)) => {
                        let dep = jobs[d];
                        let msg = format!("{} ({}) did not build: {e}", dep.what, dep.outputs[0]);
                        self.started[i] = true;
                        self.results[i] = Some(Err(msg));
                        bar.inc(1);
                        continue 'jobs;
                    }
                    Some(Ok(_)) => {}
                }
            }
            if ready {
                self.started[i] = true;
                return Next::Start(i);
            }
            waiting = true;
        }
        if waiting {
            Next::Wait
        } else {
            Next::Done
        }
    }
}

/// Strips the DWARF of every freshly compiled legacy object with one `llvm-strip` per batch
/// (a process per object cost as much as a tenth of a cold bucket), then publishes each
/// job's output; a failure fails the jobs of its batch.
fn strip_and_publish(env: &Env, pending: Vec<(usize, Unstripped)>, results: &mut [JobResult]) {
    let mut pending = pending;
    while !pending.is_empty() {
        let rest = pending.split_off(pending.len().min(64));
        let batch = std::mem::replace(&mut pending, rest);
        let files: Vec<String> = batch
            .iter()
            .map(|(_, u)| u.object().display().to_string())
            .collect();
        let sh = process::shell_in(&env.inputs.project);
        let strip = &env.tc.llvm_strip;
        let stripped = process::output(xshell::cmd!(sh, "{strip} -g {files...}"));
        for (job, u) in batch {
            let published = match &stripped {
                Ok(_) => u.publish().map_err(|e| format!("{e:#}")),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = published {
                results[job] = Err(e);
            }
        }
    }
}
