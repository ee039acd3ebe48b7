//! The job pool: runs jobs on N threads in list order as their dependencies finish, settles
//! the jobs whose dependency failed with that failure, and, once the pool is done, lowers the
//! legacy collectors' bitcode to BPF objects and strips them, in batches.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use indicatif::{ProgressBar, ProgressStyle};

use super::job::{run_job, Bitcode, Env, Outcome};
use super::plan::Job;
use crate::{bpf_codegen, process};

/// Per job: `Ok(true)` cached, `Ok(false)` compiled, `Err(message)` failed (the message
/// carries the tool's own output).
pub type JobResult = Result<bool, String>;

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
    // Legacy bitcode, lowered, stripped and published together once the pool is done.
    let deferred: Mutex<Vec<(usize, Bitcode)>> = Mutex::new(Vec::new());
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
                    Outcome::Bitcode(b) => {
                        deferred.lock().expect("deferred lock").push((i, b));
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
    let lowered = lower(
        env,
        deferred.into_inner().expect("deferred lock"),
        &mut results,
        threads,
    );
    strip_and_publish(env, lowered, &mut results);
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
        'jobs: for (i, job_deps) in deps.iter().enumerate() {
            if self.started[i] {
                continue;
            }
            let mut ready = true;
            for &d in job_deps {
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

/// Pairs of bitcode and object one `bpf-codegen` run takes at most (its command line).
const LOWER_BATCH: usize = 128;

/// Lowers every job's bitcode to its object, `threads` helper processes at once (each loads
/// libLLVM once for its whole batch); returns the jobs whose object was written. A job whose
/// object is missing fails with its batch's error.
fn lower(
    env: &Env,
    pending: Vec<(usize, Bitcode)>,
    results: &mut [JobResult],
    threads: usize,
) -> Vec<(usize, Bitcode)> {
    // Objects llc already wrote (upstream's way, for `bench build`) need no lowering.
    let (mut done, todo): (Vec<_>, Vec<_>) =
        pending.into_iter().partition(|(_, b)| b.object().is_file());
    if todo.is_empty() {
        return done;
    }
    let threads = threads.max(1);
    let size = todo.len().div_ceil(threads).min(LOWER_BATCH);
    let batches: Vec<&[(usize, Bitcode)]> = todo.chunks(size).collect();
    let next = Mutex::new(0..batches.len());
    let errors: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; batches.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.min(batches.len()) {
            s.spawn(|| loop {
                let Some(b) = next.lock().expect("batch lock").next() else {
                    return;
                };
                let pairs: Vec<_> = batches[b].iter().map(|(_, bc)| bc.pair()).collect();
                let lowered =
                    bpf_codegen::lower_batch(&env.tc.libllvm, &env.inputs.project, &pairs);
                errors.lock().expect("batch lock")[b] = lowered.err();
            });
        }
    });
    let errors = errors.into_inner().expect("batch lock");
    for (n, (job, bitcode)) in todo.into_iter().enumerate() {
        if bitcode.object().is_file() {
            done.push((job, bitcode));
        } else {
            let batch_error = errors[n / size].as_deref();
            let own = batch_error.and_then(|e| bpf_codegen::failure_of(e, bitcode.bitcode()));
            results[job] = Err(own
                .or_else(|| batch_error.map(str::to_string))
                .unwrap_or_else(|| "bpf-codegen succeeded but wrote no object".into()));
        }
    }
    done
}

/// Strips the DWARF of every lowered object (unless `--debug`) with one `llvm-strip` per batch
/// (a process per object cost as much as a tenth of a cold bucket), then publishes each
/// job's output; a failure fails the jobs of its batch.
fn strip_and_publish(env: &Env, pending: Vec<(usize, Bitcode)>, results: &mut [JobResult]) {
    let mut pending = pending;
    while !pending.is_empty() {
        let rest = pending.split_off(pending.len().min(64));
        let batch = std::mem::replace(&mut pending, rest);
        let stripped = if env.debug {
            Ok(())
        } else {
            let files: Vec<String> = batch
                .iter()
                .map(|(_, b)| b.object().display().to_string())
                .collect();
            let sh = process::shell_in(&env.inputs.project);
            let strip = &env.tc.llvm_strip;
            process::output(xshell::cmd!(sh, "{strip} -g {files...}"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for (job, b) in batch {
            let published = match &stripped {
                Ok(()) => b.publish().map_err(|e| format!("{e:#}")),
                Err(e) => Err(e.clone()),
            };
            if let Err(e) = published {
                results[job] = Err(e);
            }
        }
    }
}
